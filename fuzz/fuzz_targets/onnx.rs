//! Any bytes as an ONNX model (no external data): an error, or a model that compiles and runs a
//! zero sample.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = sinter::io::onnx::from_bytes(data, "fuzz.onnx".as_ref(), None) {
        common::compile_and_run(&model);
    }
});

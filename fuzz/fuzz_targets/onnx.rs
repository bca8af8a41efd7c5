//! Any bytes as an ONNX model (no external data): an error, or a model that compiles and runs a
//! zero sample. Symbolic axes besides the batch are given size 8, so that encoders reach the
//! attention rewrite and its mask probes.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = sinter::io::LoadOptions::new().seq(8);
    if let Ok(model) = sinter::io::onnx::from_bytes_with(data, "fuzz.onnx".as_ref(), None, &opts) {
        common::compile_and_run(&model);
    }
});

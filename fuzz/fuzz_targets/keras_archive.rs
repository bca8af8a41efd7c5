//! Any bytes as a `.keras` archive: an error, or a model that compiles and runs a zero sample.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = sinter::io::keras::from_archive(data, "fuzz.keras".as_ref()) {
        common::compile_and_run(&model);
    }
});

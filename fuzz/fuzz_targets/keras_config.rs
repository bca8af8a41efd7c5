//! Any bytes as `config.json` beside the fixed seed weights: an error, or a model that compiles
//! and runs a zero sample.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

const WEIGHTS: &[u8] = include_bytes!("../../tests/fixtures/seed.weights.h5");

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = sinter::io::keras::from_parts(data, WEIGHTS, "fuzz.json".as_ref()) {
        common::compile_and_run(&model);
    }
});

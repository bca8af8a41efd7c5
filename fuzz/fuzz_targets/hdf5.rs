//! Any bytes through the HDF5 reader: errors only, no panic, while walking every group (depth
//! <= 8, <= 64 members each, <= 4096 paths in all, as hard links may form cycles) and reading
//! each path as a dataset and its `name`, `layer_names` and `weight_names` attributes; then the
//! same bytes as a whole-model Keras HDF5 file (its `model_config`, legacy weights), which must
//! load and run or be an error.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use sinter::io::hdf5::File;

fn walk(f: &File, path: &str, depth: usize, budget: &mut usize) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    let _ = f.dataset(path);
    let _ = f.attr_string(path, "name");
    let _ = f.attr_strings(path, "weight_names");
    let _ = f.attr_strings(path, "layer_names");
    if depth < 8 && let Ok(members) = f.members(path) {
        for m in members.iter().take(64) {
            walk(f, &format!("{}/{m}", path.trim_end_matches('/')), depth + 1, budget);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = File::parse(data) {
        walk(&f, "/", 0, &mut 4096);
    }
    let opts = sinter::io::LoadOptions::default();
    if let Ok(model) = sinter::io::keras::from_h5_with(data, "fuzz.h5".as_ref(), &opts) {
        common::compile_and_run(&model);
    }
});

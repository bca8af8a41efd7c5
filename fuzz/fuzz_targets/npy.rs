//! Any bytes through the `.npy` reader: an error or a tensor whose size matches its shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sinter::io::npy::Array;

fuzz_target!(|data: &[u8]| {
    if let Ok((shape, values)) = sinter::io::npy::from_bytes_any(data, "fuzz.npy".as_ref()) {
        let n = match values {
            Array::F32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::I64(v) => v.len(),
        };
        assert_eq!(shape.iter().product::<usize>(), n);
    }
});

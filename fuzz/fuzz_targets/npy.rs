//! Any bytes through the `.npy` reader: an error or a tensor whose size matches its shape.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((shape, values)) = sinter::io::npy::from_bytes_any(data, "fuzz.npy".as_ref()) {
        let n = values.values().len();
        assert_eq!(shape.iter().product::<usize>(), n);
    }
});

//! `.npy` reading: round trip, and bad files as errors (never a panic, never a huge allocation).

use sinter::Error;
use sinter::io::npy::{from_bytes, read_f32, write_f32};
use std::path::Path;

fn header(descr: &str, shape: &str) -> Vec<u8> {
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((h.len() as u16).to_le_bytes());
    out.extend(h.as_bytes());
    out
}

/// `b` with the first `from` replaced by `to` (same length, so the header length holds).
fn swap(mut b: Vec<u8>, from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = b
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap();
    b[at..at + to.len()].copy_from_slice(to.as_bytes());
    b
}

#[test]
fn round_trip() {
    let p = std::env::temp_dir().join(format!("sinter-npy-{}.npy", std::process::id()));
    let data: Vec<f32> = (0..12).map(|i| i as f32 * -0.5).collect();
    write_f32(&p, &[3, 4], &data).unwrap();
    let (shape, back) = read_f32(&p).unwrap();
    assert_eq!(shape, [3, 4]);
    assert_eq!(back, data);
}

#[test]
fn scalar_and_spacing_variants_parse() {
    let mut b = header("<f4", "()");
    b.extend(2.5f32.to_le_bytes());
    assert_eq!(
        from_bytes(&b, Path::new("s.npy")).unwrap(),
        (vec![], vec![2.5])
    );
    let text = b"{\"shape\":(1 , 1,) ,\"fortran_order\":False,\"descr\":\"<f4\"}  \n";
    let mut b = b"\x93NUMPY\x02\x00".to_vec();
    b.extend((text.len() as u32).to_le_bytes());
    b.extend(text);
    b.extend((-1.0f32).to_le_bytes());
    assert_eq!(
        from_bytes(&b, Path::new("s.npy")).unwrap(),
        (vec![1, 1], vec![-1.0])
    );
}

#[test]
fn hand_written_header_parses() {
    let mut b = header("<f4", "(2, 2)");
    for v in [1.0f32, 2.0, 3.0, 4.0] {
        b.extend(v.to_le_bytes());
    }
    let (shape, data) = from_bytes(&b, Path::new("x.npy")).unwrap();
    assert_eq!((shape, data), (vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
}

#[test]
fn bad_files_are_errors() {
    let p = Path::new("bad.npy");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("wrong magic", b"PK\x03\x04 not numpy at all".to_vec()),
        ("float64", {
            let mut b = header("<f8", "(1,)");
            b.extend(1.0f64.to_le_bytes());
            b
        }),
        ("truncated data", {
            let mut b = header("<f4", "(4,)");
            b.extend(1.0f32.to_le_bytes());
            b
        }),
        (
            "huge declared shape",
            header("<f4", "(4000000000, 4000000000)"),
        ),
        (
            "overflowing shape",
            header("<f4", "(18446744073709551615, 2)"),
        ),
        ("truncated header", header("<f4", "(4,)")[..20].to_vec()),
        ("trailing bytes", {
            let mut b = header("<f4", "(1,)");
            b.extend([0; 6]);
            b
        }),
        ("unknown version", {
            let mut b = header("<f4", "(0,)");
            b[6] = 4;
            b
        }),
        (
            "Fortran order",
            swap(header("<f4", "(0,)"), "False", "True "),
        ),
        ("structured dtype", header("[('a', '<f4')]", "(0,)")),
        ("negative dimension", header("<f4", "(-1,)")),
        ("unterminated tuple", header("<f4", "(1, 2")),
        (
            "missing shape",
            swap(header("<f4", "(0,)"), "'shape'", "'shapf'"),
        ),
    ];
    for (what, bytes) in cases {
        match from_bytes(&bytes, p) {
            Err(Error::Format { path, msg }) => {
                assert_eq!(path, p, "{what}");
                assert!(!msg.is_empty(), "{what}");
            }
            other => panic!("{what}: expected a format error, got {other:?}"),
        }
    }
    assert!(matches!(
        read_f32(Path::new("/nonexistent/x.npy")),
        Err(Error::Io { .. })
    ));
}

/// Found by the `npy` fuzz target: a version-3 preamble declaring a 3.28 GB header in a
/// 90-byte file made the `.npy` reader allocate the header before reading it (libFuzzer
/// out-of-memory). The declared length is now checked against the file first.
#[test]
fn declared_header_longer_than_file_is_refused_before_allocation() {
    let mut fuzz_case = b"\x93NUMPY\x03\x00\x76\x00".to_vec();
    fuzz_case.extend([0xc3; 66]);
    fuzz_case.extend(b"{MPr'");
    let mut v1 = header("<f4", "(1,)");
    v1[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
    let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
    v2.extend(u32::MAX.to_le_bytes());
    v2.extend(b"{'descr': '<f4'");
    for (what, bytes) in [("fuzz case", fuzz_case), ("v1", v1), ("v2", v2)] {
        match from_bytes(&bytes, Path::new("h.npy")) {
            Err(Error::Format { msg, .. }) => {
                assert!(msg.contains("header declares"), "{what}: {msg}")
            }
            other => panic!("{what}: expected a format error, got {other:?}"),
        }
    }
}

/// What sinter writes, NumPy's format as another reader (npyz) reads it: dtype, shape, values,
/// and the data aligned to 64 bytes as NumPy writes it.
#[test]
fn written_files_read_back_elsewhere() {
    let dir = std::env::temp_dir().join(format!("sinter-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for shape in [vec![], vec![5], vec![2, 3], vec![1, 2, 2]] {
        let n = shape.iter().product::<usize>();
        let f: Vec<f32> = (0..n).map(|i| i as f32 * -0.75 + 1e-40).collect();
        let path = dir.join("f.npy");
        write_f32(&path, &shape, &f).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let data_at = 10 + usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
        assert_eq!(data_at % 64, 0, "{shape:?}: data at {data_at}");
        let file = npyz::NpyFile::new(&bytes[..]).unwrap();
        let want: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        assert_eq!(file.shape(), &want[..]);
        let back: Vec<f32> = file.into_vec().unwrap();
        assert_eq!(
            back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            f.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(read_f32(&path).unwrap(), (shape.clone(), f));

        let l: Vec<i64> = (0..n as i64).map(|i| i * -3_000_000_000).collect();
        sinter::io::npy::write_i64(&path, &shape, l.iter().copied()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let back: Vec<i64> = npyz::NpyFile::new(&bytes[..]).unwrap().into_vec().unwrap();
        assert_eq!(back, l);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn arrays_join_padded_to_the_longest_or_not_at_all() {
    use sinter::io::npy::Array;
    let (a, b) = (Array::I64(vec![1, 2, 3, 4]), Array::I64(vec![5, 6, 7]));
    // Two samples of 2 and one of 3, each padded to 3 values.
    let joined = Array::join_padded(&[(&a, 2, 3), (&b, 3, 3)], false).unwrap();
    assert_eq!(joined, Array::I64(vec![1, 2, 0, 3, 4, 0, 5, 6, 7]));
    let f = Array::F32(vec![1.0; 3]);
    assert_eq!(
        Array::join_padded(&[(&a, 2, 3), (&f, 3, 3)], false),
        None,
        "two types"
    );
    assert_eq!(
        Array::join_padded(&[(&b, 3, 2)], false),
        None,
        "want below have"
    );
    assert_eq!(
        Array::join_padded(&[(&b, 2, 2)], false),
        None,
        "not whole samples"
    );
    assert_eq!(Array::join_padded(&[], false), None);
    assert_eq!(
        Array::join_padded(&[(&b, 3, usize::MAX)], false),
        None,
        "too large to hold"
    );
}

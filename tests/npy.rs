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

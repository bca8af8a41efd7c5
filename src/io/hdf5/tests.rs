//! The reader against h5py-written fixtures, and hostile bytes: truncations, corruptions,
//! cycles, huge declared sizes.

use super::header::{
    MSG_ATTRIBUTE_INFO, MSG_CONTINUATION, MSG_DATASPACE, MSG_LAYOUT, MSG_LINK_INFO,
    MSG_SYMBOL_TABLE,
};
use super::*;
use crate::io::f16_to_f32;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/hdf5/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn values(f: &File<'_>, path: &str) -> (Vec<usize>, Vec<f32>) {
    let d = f
        .dataset(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("{path}: missing"));
    assert_eq!(
        d.data.len(),
        d.shape.iter().product::<usize>(),
        "{path}: data length vs shape"
    );
    (d.shape, d.data)
}

fn ramp(n: usize, scale: f64, offset: f64) -> Vec<f32> {
    (0..n).map(|i| (i as f64 * scale + offset) as f32).collect()
}

fn err(r: Result<impl fmt::Debug, String>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

/// The address of the first message of `kind` in the header of the object at `path`.
fn message_at(f: &File<'_>, path: &str, kind: u16) -> usize {
    assert_eq!(f.base, 0);
    let addr = f.resolve(path).unwrap().unwrap();
    let msgs = f.header(addr).unwrap();
    let m = msgs.iter().find(|m| m.kind == kind).unwrap();
    m.at as usize
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn groups_and_members() {
    let bytes = fixture("basic.h5");
    let f = File::parse(&bytes).unwrap();
    assert_eq!(f.version, 0);
    assert_eq!(f.members("/").unwrap(), ["a", "data", "layers"]);
    assert_eq!(f.members("").unwrap(), f.members("/").unwrap());
    assert_eq!(f.members("a/b").unwrap(), ["c"]);
    assert_eq!(f.members("/a/b/c/").unwrap(), ["leaf"]);
    assert_eq!(
        f.members("data").unwrap(),
        [
            "compact",
            "empty",
            "empty2",
            "f16",
            "f32be",
            "f64",
            "f64be",
            "i32",
            "i64be",
            "r1",
            "r2",
            "r3",
            "scalar",
            "text",
            "u8",
            "unwritten"
        ]
    );
    assert_eq!(
        f.members("layers/dense/vars").unwrap(),
        Vec::<String>::new()
    );
    assert!(err(f.members("nope")).contains("no such object"));
    assert_eq!(err(f.members("data/r1")), "group data/r1: not a group");
    assert_eq!(values(&f, "a/b/c/leaf"), (vec![2], vec![1.5, -2.5]));
}

#[test]
fn float_datasets() {
    let bytes = fixture("basic.h5");
    let f = File::parse(&bytes).unwrap();
    assert_eq!(values(&f, "data/scalar"), (vec![], vec![3.25]));
    assert_eq!(values(&f, "/data/r1"), (vec![7], ramp(7, 0.25, -1.0)));
    assert_eq!(values(&f, "data/r2"), (vec![3, 4], ramp(12, 0.25, -1.0)));
    assert_eq!(values(&f, "data/r3"), (vec![2, 3, 4], ramp(24, 0.5, -1.0)));
    assert_eq!(values(&f, "data/f64"), (vec![5], ramp(5, 0.1, -1.0)));
    assert_eq!(values(&f, "data/f32be"), (vec![2, 2], ramp(4, 0.25, -1.0)));
    assert_eq!(values(&f, "data/f64be"), (vec![3], ramp(3, 0.25, -1.0)));
    assert_eq!(values(&f, "data/compact"), (vec![2, 3], ramp(6, 1.0, 10.0)));
    let (shape, half) = values(&f, "data/f16");
    assert_eq!(shape, [8]);
    let want = [
        0.5,
        -1.0,
        65504.0,
        2f32.powi(-14),
        2f32.powi(-24),
        0.0,
        -0.0,
        0.333_251_95,
    ];
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&half), bits(&want));
}

#[test]
fn f16_special_values() {
    assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
    assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
    assert!(f16_to_f32(0x7e00).is_nan());
    // A signalling NaN comes out quiet, payload kept, as F16C's conversion makes it.
    assert_eq!(f16_to_f32(0x7c01).to_bits(), 0x7fc0_2000);
    assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
    assert_eq!(f16_to_f32(0x3c01), 1.0 + 2f32.powi(-10));
}

#[test]
fn integer_and_empty_datasets() {
    let bytes = fixture("basic.h5");
    let f = File::parse(&bytes).unwrap();
    assert_eq!(
        values(&f, "data/i32"),
        (vec![4], vec![-3.0, 0.0, 7.0, 1_048_576.0])
    );
    assert_eq!(values(&f, "data/u8"), (vec![3], vec![0.0, 1.0, 255.0]));
    assert_eq!(values(&f, "data/i64be"), (vec![2], vec![-5.0, 9.0]));
    assert_eq!(values(&f, "data/empty"), (vec![0], vec![]));
    assert_eq!(values(&f, "data/empty2"), (vec![3, 0], vec![]));
}

#[test]
fn dataset_errors() {
    let bytes = fixture("basic.h5");
    let f = File::parse(&bytes).unwrap();
    assert_eq!(f.dataset("nope"), Ok(None));
    assert_eq!(f.dataset("data/nope"), Ok(None));
    assert_eq!(f.dataset("data/nope/deeper"), Ok(None));
    assert_eq!(f.dataset("data/r1/below_a_dataset"), Ok(None));
    assert_eq!(
        err(f.dataset("data")),
        "dataset data: is a group, not a dataset"
    );
    assert_eq!(err(f.dataset("/")), "dataset /: is a group, not a dataset");
    assert_eq!(
        err(f.dataset("data/text")),
        "dataset data/text: datatype is a string, not numeric"
    );
    assert_eq!(
        err(f.dataset("data/unwritten")),
        "dataset data/unwritten: storage was never written (undefined address)"
    );
    let bytes = fixture("chunked.h5");
    let f = File::parse(&bytes).unwrap();
    assert_eq!(
        err(f.dataset("chunked")),
        "dataset chunked: chunked storage is not supported"
    );
}

#[test]
fn string_attributes() {
    let bytes = fixture("basic.h5");
    let f = File::parse(&bytes).unwrap();
    let attr = |path: &str, name: &str| f.attr_string(path, name);
    assert_eq!(attr("/", "title"), Ok(Some("fixture root".into())));
    assert_eq!(attr("", "vlen_title"), Ok(Some("variable root".into())));
    assert_eq!(attr("/", "missing"), Ok(None));
    assert_eq!(
        err(attr("/", "answer")),
        "attribute answer of /: numeric, not a string"
    );
    assert_eq!(attr("a/b/c", "name"), Ok(Some("deep group".into())));
    assert_eq!(attr("a/b/c/leaf", "name"), Ok(None));
    assert_eq!(attr("layers/dense/vars", "name"), Ok(Some("dense".into())));
    assert_eq!(
        attr("layers/dense/vars", "fixed_name"),
        Ok(Some("dense_fixed".into()))
    );
    assert!(err(attr("nope", "name")).contains("no such object"));
}

#[test]
fn many_members_multilevel_btree_superblock_v1() {
    let bytes = fixture("many.h5");
    let f = File::parse(&bytes).unwrap();
    assert_eq!(f.version, 1);
    let want: Vec<String> = (0..100).map(|i| format!("m{i:03}")).collect();
    assert_eq!(f.members("many").unwrap(), want);
    // Members are hard links to the datasets m000, m025, m050, m075.
    for i in [0, 1, 24, 25, 37, 50, 99] {
        let path = format!("many/m{i:03}");
        assert_eq!(values(&f, &path), (vec![1], vec![(i / 25 * 25) as f32]));
    }
    // The group B-tree has internal nodes.
    let btree = {
        let at = message_at(&f, "many", MSG_SYMBOL_TABLE);
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize
    };
    assert_eq!(&bytes[btree..btree + 4], b"TREE");
    assert!(bytes[btree + 5] >= 2, "root level {}", bytes[btree + 5]);
}

#[test]
fn superblock_v3_object_header_v2() {
    let bytes = fixture("latest.h5");
    let f = File::parse(&bytes).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.members("/").unwrap(), ["g"]);
    assert_eq!(f.members("g").unwrap(), ["x"]);
    assert_eq!(values(&f, "g/x"), (vec![2, 3], ramp(6, 0.25, -1.0)));
    assert_eq!(f.attr_string("/", "title"), Ok(Some("latest root".into())));
    assert_eq!(f.dataset("g/y"), Ok(None));
}

/// The addresses a link or attribute info message of the object at `path` holds: the
/// fractal heap and the name index B-tree.
fn dense_addrs(f: &File<'_>, path: &str, kind: u16) -> (u64, u64) {
    let addr = f.resolve(path).unwrap().unwrap();
    let msgs = f.header(addr).unwrap();
    let m = msgs.iter().find(|m| m.kind == kind).unwrap();
    let mut c = Cur::new(m.data, "info", m.at);
    c.skip(1).unwrap();
    let flags = c.u8().unwrap();
    let extra = match (kind, flags & 1) {
        (_, 0) => 0,
        (MSG_LINK_INFO, _) => 8,
        _ => 2,
    };
    c.skip(extra).unwrap();
    (f.addr(&mut c).unwrap(), f.addr(&mut c).unwrap())
}

#[test]
fn dense_links_and_attributes() {
    let bytes = fixture("dense.h5");
    let f = File::parse(&bytes).unwrap();
    let want: Vec<String> = (0..200).map(|i| format!("m{i:03}")).collect();
    assert_eq!(f.members("wide").unwrap(), want);
    assert_eq!(f.members("/").unwrap(), ["attrs", "wide"]);
    // Members are hard links to the datasets m000, m050, m100, m150.
    for i in [0, 1, 49, 50, 123, 199] {
        let path = format!("wide/m{i:03}");
        assert_eq!(values(&f, &path), (vec![1], vec![(i / 50 * 50) as f32]));
    }
    // The storage really is dense, with an indirect root block and a two-level index.
    let (heap, btree) = dense_addrs(&f, "wide", MSG_LINK_INFO);
    let (heap, btree) = (heap as usize, btree as usize);
    assert_eq!(&bytes[heap..heap + 4], b"FRHP");
    assert_eq!(&bytes[btree..btree + 4], b"BTHD");
    assert!(bytes[btree + 12] >= 1, "B-tree depth {}", bytes[btree + 12]);
    let h = f.fractal_heap(heap as u64).unwrap();
    assert!(h.root_rows > 0, "root is a direct block");

    for i in 0..20 {
        let got = f.attr_string("attrs", &format!("s{i:02}"));
        assert_eq!(got, Ok(Some(format!("value {i}"))));
    }
    assert_eq!(
        f.attr_string("attrs", "fixed"),
        Ok(Some("fixed-len".into()))
    );
    assert_eq!(
        f.attr_strings("attrs", "list"),
        Ok(Some(vec!["a".into(), "bc".into()]))
    );
    assert_eq!(
        f.attr_strings("attrs", "vlist"),
        Ok(Some(vec!["x".into(), "yz".into()]))
    );
    assert!(err(f.attr_string("attrs", "number")).contains("numeric, not a string"));
    assert_eq!(f.attr_string("attrs", "missing"), Ok(None));
    let (heap, btree) = dense_addrs(&f, "attrs", MSG_ATTRIBUTE_INFO);
    assert_eq!(&bytes[heap as usize..heap as usize + 4], b"FRHP");
    assert_eq!(&bytes[btree as usize..btree as usize + 4], b"BTHD");
}

#[test]
fn fractal_heap_ids_are_checked() {
    let bytes = fixture("dense.h5");
    let f = File::parse(&bytes).unwrap();
    let h = f
        .fractal_heap(dense_addrs(&f, "wide", MSG_LINK_INFO).0)
        .unwrap();
    // Tiny objects live in the ID itself.
    assert_eq!(
        f.heap_object(&h, &[0x22, b'a', b'b', b'c', 0, 0, 0]),
        Ok(&b"abc"[..])
    );
    let e = err(f.heap_object(&h, &[0x2f, 1, 2, 3, 4, 5, 6]));
    assert!(e.contains("tiny object of 16 bytes overruns the ID"), "{e}");
    assert!(err(f.heap_object(&h, &[0x10, 0, 0, 0, 0, 0, 0])).contains("huge objects"));
    assert!(err(f.heap_object(&h, &[0x40, 0, 0, 0, 0, 0, 0])).contains("ID version 1"));
    assert!(err(f.heap_object(&h, &[])).contains("empty"));
    // Managed: offsets past the managed space, and zero lengths, are refused.
    let e = err(f.heap_object(&h, &[0, 0xff, 0xff, 0xff, 0x7f, 8, 0]));
    assert!(e.contains("outside the"), "{e}");
    assert!(err(f.heap_object(&h, &[0, 20, 0, 0, 0, 0, 0])).contains("outside the"));
    // An offset inside a block's header is not an object.
    let e = err(f.heap_object(&h, &[0, 1, 0, 0, 0, 4, 0]));
    assert!(e.contains("does not fit its"), "{e}");
}

#[test]
fn keras_weights_match_h5py() {
    let bytes = fixture("keras_tiny.weights.h5");
    let json = String::from_utf8(fixture("keras_tiny.json")).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&json).unwrap();
    let expected = expected.as_object().unwrap();
    let f = File::parse(&bytes).unwrap();
    assert_eq!(f.members("/").unwrap(), ["layers", "vars"]);
    assert_eq!(f.members("layers").unwrap(), ["dense", "dense_1"]);
    assert_eq!(f.members("layers/dense").unwrap(), ["vars"]);
    assert_eq!(f.members("layers/dense/vars").unwrap(), ["0", "1"]);
    assert_eq!(f.members("vars").unwrap(), Vec::<String>::new());
    assert_eq!(f.attr_string("vars", "name"), Ok(Some("sequential".into())));
    assert_eq!(
        f.attr_string("layers/dense_1/vars", "name"),
        Ok(Some("dense_1".into()))
    );
    assert_eq!(expected.len(), 4);
    for (path, want) in expected {
        let shape: Vec<usize> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let data: Vec<f32> = want["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(values(&f, path), (shape, data), "{path}");
    }
}

#[test]
fn rejects_what_it_does_not_read() {
    assert!(err(File::parse(b"")).contains("not an HDF5 file"));
    assert!(err(File::parse(b"\x89HDF\r\n\x1a\n")).contains("superblock"));
    let mut bytes = fixture("basic.h5");
    bytes[8] = 4;
    assert_eq!(
        err(File::parse(&bytes)),
        "superblock version 4 is not supported"
    );
    // A 1 KiB user block in front: addresses are relative to the signature.
    let mut shifted = vec![0u8; 1024];
    shifted.extend_from_slice(&fixture("keras_tiny.weights.h5"));
    let f = File::parse(&shifted).unwrap();
    assert_eq!(f.members("layers").unwrap(), ["dense", "dense_1"]);
    assert_eq!(values(&f, "layers/dense/vars/1").0, [3]);
}

/// Reads everything reachable, ignoring errors; only panics and hangs fail. `budget` caps
/// the calls: a corrupt hard link back to an ancestor makes the tree infinite.
fn walk(f: &File<'_>, path: &str, depth: usize, budget: &mut usize) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    let _ = f.dataset(path);
    let _ = f.attr_string(path, "name");
    if depth < 6
        && let Ok(members) = f.members(path)
    {
        for m in members.iter().take(64) {
            walk(f, &format!("{path}/{m}"), depth + 1, budget);
        }
    }
}

fn parse_and_walk(bytes: &[u8]) {
    if let Ok(f) = File::parse(bytes) {
        walk(&f, "", 0, &mut 400);
    }
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    for name in ["keras_tiny.weights.h5", "latest.h5"] {
        let bytes = fixture(name);
        for len in 0..bytes.len() {
            parse_and_walk(&bytes[..len]);
        }
    }
    // The superblock itself cut short.
    let bytes = fixture("keras_tiny.weights.h5");
    assert_eq!(
        err(File::parse(&bytes[..60])),
        "superblock at 0x0: truncated (need 8 bytes, 4 left)"
    );
}

#[test]
fn every_single_byte_corruption_is_survived() {
    for name in ["keras_tiny.weights.h5", "latest.h5"] {
        let bytes = fixture(name);
        let mut bad = bytes.clone();
        for i in 0..bytes.len() {
            for v in [bytes[i] ^ 0xff, 0xff] {
                bad[i] = v;
                parse_and_walk(&bad);
            }
            bad[i] = bytes[i];
        }
    }
}

/// Dense storage: every truncation and single-byte corruption of the heap and B-tree
/// area, read through the wide group and the attributes (a full walk would re-list 200
/// links per member).
#[test]
fn dense_storage_corruption_is_survived() {
    let bytes = fixture("dense.h5");
    let read = |b: &[u8]| {
        if let Ok(f) = File::parse(b) {
            let _ = f.members("wide");
            let _ = f.dataset("wide/m123");
            for name in ["s00", "s19", "list", "missing"] {
                let _ = f.attr_strings("attrs", name);
            }
        }
    };
    for len in 0..bytes.len() {
        read(&bytes[..len]);
    }
    let mut bad = bytes.clone();
    for i in 0..bytes.len() {
        for v in [bytes[i] ^ 0xff, 0xff, 0] {
            bad[i] = v;
            read(&bad);
        }
        bad[i] = bytes[i];
    }
}

#[test]
fn huge_declared_dataspace_is_refused_without_allocating() {
    // 2^40 f32 elements would be a 4 TiB allocation: it would abort, not return Err.
    let mut bytes = fixture("keras_tiny.weights.h5");
    let f = File::parse(&bytes).unwrap();
    let space = message_at(&f, "layers/dense/vars/0", MSG_DATASPACE);
    put_u64(&mut bytes, space + 8, 1 << 40);
    let f = File::parse(&bytes).unwrap();
    let e = err(f.dataset("layers/dense/vars/0"));
    assert!(e.contains("contiguous storage of 60 bytes"), "{e}");
    // Storage size patched to match: still refused, the bytes are not in the file.
    let layout = message_at(&f, "layers/dense/vars/0", MSG_LAYOUT);
    put_u64(&mut bytes, layout + 10, (1 << 40) * 12);
    let f = File::parse(&bytes).unwrap();
    let e = err(f.dataset("layers/dense/vars/0"));
    assert!(e.contains("do not fit in the file"), "{e}");
    // Every dimension 2^40: the element count overflows u64.
    put_u64(&mut bytes, space + 16, 1 << 40);
    let f = File::parse(&bytes).unwrap();
    let e = err(f.dataset("layers/dense/vars/0"));
    assert!(e.contains("too many elements"), "{e}");
    // Compact storage: the size check is against the message body.
    let mut bytes = fixture("basic.h5");
    let f = File::parse(&bytes).unwrap();
    let space = message_at(&f, "data/compact", MSG_DATASPACE);
    put_u64(&mut bytes, space + 8, 1 << 40);
    let f = File::parse(&bytes).unwrap();
    let e = err(f.dataset("data/compact"));
    assert!(e.contains("compact data holds 24 bytes"), "{e}");
    // Rank above the limit.
    let mut bytes = fixture("basic.h5");
    bytes[space + 1] = 200;
    let f = File::parse(&bytes).unwrap();
    assert!(err(f.dataset("data/compact")).contains("rank 200 exceeds 32"));
}

#[test]
fn self_referencing_btree_is_an_error() {
    let bytes = fixture("many.h5");
    let f = File::parse(&bytes).unwrap();
    let at = message_at(&f, "many", MSG_SYMBOL_TABLE);
    let root = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    // First child pointer: signature, type, level, entries, 2 siblings, key 0.
    let child0 = root as usize + 8 + 16 + 8;
    let child1 = child0 + 16;
    let mut looped = bytes.clone();
    put_u64(&mut looped, child0, root);
    let f = File::parse(&looped).unwrap();
    assert!(err(f.members("many")).contains("B-tree node"));
    // The same child twice (a DAG): refused too, so work stays linear in the file size.
    let mut shared = bytes.clone();
    shared.copy_within(child0..child0 + 8, child1);
    let f = File::parse(&shared).unwrap();
    assert!(err(f.members("many")).contains("visited twice"));
    // A node that claims to be its own level-0 child must not be read as a symbol node
    // forever either.
    let mut flat = looped.clone();
    flat[root as usize + 5] = 0;
    let f = File::parse(&flat).unwrap();
    assert!(f.members("many").is_err());
}

#[test]
fn continuation_cycles_are_errors() {
    let bytes = fixture("keras_tiny.weights.h5");
    let f = File::parse(&bytes).unwrap();
    let header = f.resolve("vars").unwrap().unwrap() as usize;
    let cont = message_at(&f, "vars", MSG_CONTINUATION);
    // Continuation back to the header itself.
    let mut bad = bytes.clone();
    put_u64(&mut bad, cont, header as u64);
    let f = File::parse(&bad).unwrap();
    assert!(err(f.members("vars")).contains("visited twice"));
    // Continuation to a block that is just this very continuation message.
    let mut bad = bytes.clone();
    put_u64(&mut bad, cont, cont as u64 - 8);
    put_u64(&mut bad, cont + 8, 24);
    let f = File::parse(&bad).unwrap();
    let e = err(f.attr_string("vars", "name"));
    assert_eq!(
        e,
        format!(
            "attribute name of vars: object header at {header:#x}: continuation block at {:#x} visited twice",
            cont - 8
        )
    );
}

/// Random multi-byte corruptions of every fixture; run with `--ignored` for a longer soak.
#[test]
#[ignore]
fn soak_random_corruptions() {
    let rounds: usize = std::env::var("HDF5_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for name in [
        "basic.h5",
        "many.h5",
        "latest.h5",
        "chunked.h5",
        "dense.h5",
        "keras_tiny.weights.h5",
    ] {
        let bytes = fixture(name);
        for _ in 0..rounds {
            let mut bad = bytes.clone();
            for _ in 0..1 + next() % 8 {
                let i = (next() % bad.len() as u64) as usize;
                bad[i] = match next() % 4 {
                    0 => 0,
                    1 => 0xff,
                    _ => next() as u8,
                };
            }
            parse_and_walk(&bad);
            let cut = (next() % bad.len() as u64) as usize;
            parse_and_walk(&bad[..cut]);
        }
    }
}

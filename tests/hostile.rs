//! Bad model files are typed errors with context, never panics or huge allocations: wrong
//! magic, truncation, corruption, sizes that disagree with the data, config/weights shape
//! mismatches, unknown layers and ops, cycles, zip bombs, escaping external-data paths.

use prost::Message;
use sinter::io::onnx::proto::*;
use sinter::{Error, LoadError, LoadErrorKind, Site};
use std::io::Write;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sinter-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The error's message, asserting it is a load error about `path`.
fn format_error(r: sinter::Result<sinter::model::Model>, path: &Path) -> String {
    match r {
        Err(Error::Load(e)) => {
            let msg = e.to_string();
            assert_eq!(e.file, path, "error names the wrong file: {msg}");
            msg
        }
        Err(e) => panic!("expected a load error, got {e:?}"),
        Ok(_) => panic!("a bad file loaded"),
    }
}

/// The load error of `r`, which must be one.
fn load_error(r: &sinter::Result<sinter::model::Model>) -> &LoadError {
    match r {
        Err(Error::Load(e)) => e,
        Err(e) => panic!("expected a load error, got {e:?}"),
        Ok(_) => panic!("a bad file loaded"),
    }
}

/// The load error's kind and site (node or layer), asserting it is a load error.
fn kind_and_site(r: &sinter::Result<sinter::model::Model>) -> (&LoadErrorKind, Option<&Site>) {
    let e = load_error(r);
    (&e.kind, e.site.as_ref())
}

/// A Keras layer as a load error's site.
fn layer(name: &str, class: &str) -> Option<Site> {
    Some(Site {
        name: name.into(),
        op: class.into(),
        opset: None,
    })
}

/// The name of a [`LoadErrorKind`] variant, for asserting on it.
fn kind(r: &sinter::Result<sinter::model::Model>) -> &'static str {
    match kind_and_site(r).0 {
        LoadErrorKind::Malformed(_) => "Malformed",
        LoadErrorKind::Unsupported(_) => "Unsupported",
        LoadErrorKind::Invalid(_) => "Invalid",
        LoadErrorKind::Limit(_) => "Limit",
        LoadErrorKind::Model(_) => "Model",
        _ => "other",
    }
}

/// The ONNX op type of the node an error is located at.
fn site_op(r: &sinter::Result<sinter::model::Model>) -> Option<String> {
    kind_and_site(r).1.map(|s| s.op.clone())
}

fn onnx_bytes(bytes: &[u8]) -> sinter::Result<sinter::model::Model> {
    sinter::io::onnx::from_bytes(bytes, Path::new("m.onnx"), None)
}

fn keras_bytes(bytes: &[u8]) -> sinter::Result<sinter::model::Model> {
    sinter::io::keras::from_archive(bytes, Path::new("m.keras"))
}

// ---------------------------------------------------------------- ONNX built in memory

fn tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: dtype::FLOAT,
        name: name.into(),
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: format!("{op}_{output}"),
        op_type: op.into(),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: dtype::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            dim_value: *d,
                            dim_param: d.is_none().then(|| "N".into()),
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

/// `x[N,4] -> MatMul(W[4,3]) -> Add(b) -> Relu -> y`, opset 13.
fn small_graph() -> ModelProto {
    ModelProto {
        ir_version: 8,
        producer_name: "test".into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(GraphProto {
            name: "g".into(),
            node: vec![
                node("MatMul", &["x", "W"], "m"),
                node("Add", &["m", "b"], "a"),
                node("Relu", &["a"], "y"),
            ],
            initializer: vec![
                tensor("W", &[4, 3], &[0.5; 12]),
                tensor("b", &[3], &[0.1, 0.2, 0.3]),
            ],
            input: vec![value_info("x", &[None, Some(4)])],
            output: vec![value_info("y", &[None, Some(3)])],
        }),
    }
}

#[test]
fn onnx_small_graph_loads_and_runs() {
    let model = onnx_bytes(&small_graph().encode_to_vec()).unwrap();
    let plan = std::sync::Arc::new(model.compile(&Default::default()).unwrap());
    let y = plan.run(&[1.0, 1.0, 1.0, -1.0]).unwrap();
    assert_eq!(y, [1.1, 1.2, 1.3]);
}

#[test]
fn onnx_garbage_is_an_error() {
    for bytes in [
        &b"PK\x03\x04 not a protobuf"[..],
        &[0xff; 64],
        b"\x0a\xff\xff\xff\xff\x0f",
    ] {
        assert_eq!(kind(&onnx_bytes(bytes)), "Malformed");
        let msg = format_error(onnx_bytes(bytes), Path::new("m.onnx"));
        assert!(msg.contains("not an ONNX model"), "{msg}");
    }
    // Valid protobuf, but no graph / no opset.
    assert_eq!(kind(&onnx_bytes(&[])), "Invalid");
    let msg = format_error(onnx_bytes(&[]), Path::new("m.onnx"));
    assert!(msg.contains("opset"), "{msg}");
}

#[test]
fn onnx_every_truncation_is_an_error() {
    let bytes = small_graph().encode_to_vec();
    for len in 0..bytes.len() {
        assert!(
            onnx_bytes(&bytes[..len]).is_err(),
            "prefix of {len} bytes loaded"
        );
    }
}

/// A GELU-shaped chain whose last node has no output (found by the `onnx` fuzz target: the
/// pattern rewrite indexed its missing output) is an error, not a panic.
#[test]
fn onnx_pattern_ending_in_a_node_without_output_is_an_error() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx_pattern_without_output.onnx");
    let bytes = std::fs::read(path).unwrap();
    assert!(onnx_bytes(&bytes).is_err());
}

#[test]
fn onnx_corruption_never_panics() {
    let bytes = small_graph().encode_to_vec();
    for i in 0..bytes.len() {
        for flip in [0xff, 0x80, 0x01] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            let _ = onnx_bytes(&b);
        }
    }
}

#[test]
fn onnx_data_size_mismatch_names_the_initializer() {
    let mut m = small_graph();
    let g = m.graph.as_mut().unwrap();
    g.initializer[0].dims = vec![4, 30];
    let r = onnx_bytes(&m.encode_to_vec());
    assert_eq!((kind(&r), site_op(&r)), ("Invalid", None));
    let msg = format_error(onnx_bytes(&m.encode_to_vec()), Path::new("m.onnx"));
    assert!(msg.contains("\"W\"") && msg.contains("120 values"), "{msg}");
}

#[test]
fn onnx_huge_declared_dims_are_refused_before_allocating() {
    for dims in [vec![1 << 40, 1 << 40], vec![1 << 62, 4], vec![-3, 4]] {
        let mut m = small_graph();
        m.graph.as_mut().unwrap().initializer[0].dims = dims.clone();
        let want = if dims[0] < 0 { "Invalid" } else { "Limit" };
        assert_eq!(kind(&onnx_bytes(&m.encode_to_vec())), want, "{dims:?}");
        let msg = format_error(onnx_bytes(&m.encode_to_vec()), Path::new("m.onnx"));
        assert!(msg.contains("\"W\""), "{dims:?}: {msg}");
    }
    let mut m = small_graph();
    m.graph.as_mut().unwrap().input[0] = value_info("x", &[None, Some(1 << 60)]);
    assert!(onnx_bytes(&m.encode_to_vec()).is_err());
    assert_eq!(kind(&onnx_bytes(&m.encode_to_vec())), "Limit");
}

/// `y = x + table[positions]` over `x [N, S, 4]` with `S` symbolic: the positions are
/// `position_ids[:, start:end]` of a `[1, 6]` constant, `start` and `end` computed from
/// `S` by `bounds` (nodes reading `s`, `Shape(x)[1]` as `[1]`, writing `start` and `end`).
fn positions_graph(bounds: Vec<NodeProto>) -> ModelProto {
    let mut m = small_graph();
    let g = m.graph.as_mut().unwrap();
    let ints = |name: &str, v: &[i64]| TensorProto {
        dims: vec![v.len() as i64],
        data_type: dtype::INT64,
        name: name.into(),
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    };
    let mut ids = ints("position_ids", &[0, 1, 2, 3, 4, 5]);
    ids.dims = vec![1, 6];
    let table: Vec<f32> = (0..24).map(|i| i as f32).collect();
    g.initializer = vec![
        ids,
        tensor("table", &[6, 4], &table),
        ints("zero", &[0]),
        ints("one", &[1]),
        ints("two", &[2]),
        ints("six", &[6]),
    ];
    let mut shape = node("Shape", &["x"], "shape");
    shape.name = "shape".into();
    g.node = vec![shape, node("Slice", &["shape", "one", "two"], "s")];
    g.node.extend(bounds);
    g.node.extend([
        node("Slice", &["position_ids", "start", "end", "one"], "pos"),
        node("Gather", &["table", "pos"], "emb"),
        node("Add", &["x", "emb"], "y"),
    ]);
    let seq = |name: &str| {
        let mut v = value_info(name, &[None, None, Some(4)]);
        let t = v.r#type.as_mut().unwrap().tensor_type.as_mut().unwrap();
        t.shape.as_mut().unwrap().dim[1].dim_param = Some("S".into());
        v
    };
    g.input = vec![seq("x")];
    g.output = vec![seq("y")];
    m
}

#[test]
fn onnx_a_constant_that_follows_the_sequence_otherwise_fixes_its_length() {
    let load = |m: ModelProto| {
        let opts = sinter::io::LoadOptions::new().seq(5);
        let model =
            sinter::io::onnx::from_bytes_with(&m.encode_to_vec(), Path::new("m.onnx"), None, &opts)
                .unwrap();
        let plan = std::sync::Arc::new(model.compile(&Default::default()).unwrap());
        (model, plan)
    };
    // position_ids[:, 0:S]: the first S rows at any length.
    let (model, plan) = load(positions_graph(vec![
        node("Identity", &["zero"], "start"),
        node("Identity", &["s"], "end"),
    ]));
    assert_eq!(model.seq_inputs(), [true]);
    assert_eq!(plan.seq_range(), Some(1..=5));
    let mut session = plan.session().unwrap();
    let x = [0.5f32; 8];
    let y = session
        .run_seq(2, &[(&x[..]).into()])
        .unwrap()
        .get(0)
        .to_vec();
    assert_eq!(y, [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5]);
    // position_ids[:, 6-S:6]: the last S rows, not a prefix; the length stays 5.
    let (model, plan) = load(positions_graph(vec![
        node("Sub", &["six", "s"], "start"),
        node("Identity", &["six"], "end"),
    ]));
    assert_eq!(model.seq_inputs(), [false]);
    assert!(
        model.origin().contains("depends on the sequence length"),
        "{}",
        model.origin()
    );
    assert_eq!(plan.seq_range(), None);
    let err = plan
        .session()
        .unwrap()
        .run_seq(2, &[(&x[..]).into()])
        .unwrap_err();
    assert!(err.to_string().contains("no variable sequence"), "{err}");
}

/// Hugging Face's buffered `token_type_ids`, folded at load time: a `[1, 4]` buffer gathered
/// by `GatherElements`, expanded to `[batch, 4]` (the batch size from `Shape`; the shape's
/// `-1` entries replaced through `Equal`/`Where`, as the exporter writes `expand(b, -1)`), the
/// embedding rows it picks added to the input.
#[test]
fn onnx_constants_expanded_to_the_batch_are_folded() {
    let mut m = small_graph();
    let g = m.graph.as_mut().unwrap();
    let ints = |name: &str, dims: &[i64], v: &[i64]| TensorProto {
        dims: dims.to_vec(),
        data_type: dtype::INT64,
        name: name.into(),
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    };
    let mut gather = node("GatherElements", &["buffer", "order"], "picked");
    gather.attribute.push(AttributeProto {
        name: "axis".into(),
        i: 1,
        ..Default::default()
    });
    let table: Vec<f32> = (0..12).map(|i| i as f32 * 10.0).collect();
    g.initializer = vec![
        ints("buffer", &[1, 4], &[2, 0, 1, 2]),
        ints("order", &[1, 4], &[3, 2, 1, 0]),
        ints("zero", &[1], &[0]),
        ints("minus", &[2], &[-1, -1]),
        ints("ones", &[2], &[1, 1]),
        ints("rest", &[1], &[-1]),
        tensor("table", &[3, 4], &table),
    ];
    let mut shape = node("Shape", &["x"], "shape");
    shape.attribute.push(AttributeProto {
        name: "end".into(),
        i: 1,
        ..Default::default()
    });
    g.node = vec![
        gather,
        shape,
        node("Concat", &["shape", "rest"], "wanted"),
        node("Equal", &["wanted", "minus"], "free"),
        node("Where", &["free", "ones", "wanted"], "target"),
        node("Expand", &["picked", "target"], "types"),
        node("Gather", &["table", "types"], "rows"),
        node("Add", &["x", "rows"], "y"),
    ];
    g.node[2].attribute.push(AttributeProto {
        name: "axis".into(),
        i: 0,
        ..Default::default()
    });
    g.input = vec![value_info("x", &[None, Some(4), Some(4)])];
    g.output = vec![value_info("y", &[None, Some(4), Some(4)])];
    let model = onnx_bytes(&m.encode_to_vec()).unwrap();
    let plan = std::sync::Arc::new(model.compile(&Default::default()).unwrap());
    // picked = buffer[0, order] = [2, 1, 0, 2]: rows 2, 1, 0, 2 of the table, per sample.
    let x = [0.5f32; 32];
    let y = plan.run_all(&[(&x[..]).into()]).unwrap();
    let row = |r: usize| (0..4).map(move |c| (r * 4 + c) as f32 * 10.0 + 0.5);
    let one: Vec<f32> = [2, 1, 0, 2].into_iter().flat_map(row).collect();
    assert_eq!(y[0], [one.clone(), one].concat());
}

#[test]
fn onnx_unsupported_op_names_op_node_and_opset() {
    let mut m = small_graph();
    m.graph.as_mut().unwrap().node[2] = node("Conv", &["a"], "y");
    let msg = format_error(onnx_bytes(&m.encode_to_vec()), Path::new("m.onnx"));
    for want in ["Conv", "\"Conv_y\"", "opset 13"] {
        assert!(msg.contains(want), "missing {want}: {msg}");
    }
    // A Conv of a [N, 3] tensor breaks ONNX's rules (it needs [N, C, W..]).
    let r = onnx_bytes(&m.encode_to_vec());
    let site = Site {
        name: "Conv_y".into(),
        op: "Conv".into(),
        opset: Some(13),
    };
    assert_eq!(kind(&r), "Invalid");
    assert_eq!(kind_and_site(&r).1, Some(&site));
}

#[test]
fn onnx_unsupported_opset_and_domain() {
    let mut m = small_graph();
    m.opset_import[0].version = 9;
    let msg = format_error(onnx_bytes(&m.encode_to_vec()), Path::new("m.onnx"));
    assert!(msg.contains("opset 9"), "{msg}");
    let r = onnx_bytes(&m.encode_to_vec());
    assert_eq!((kind(&r), site_op(&r)), ("Unsupported", None));
    m.opset_import[0].version = 29;
    let r = onnx_bytes(&m.encode_to_vec());
    assert_eq!((kind(&r), site_op(&r)), ("Unsupported", None));
    let mut m = small_graph();
    m.graph.as_mut().unwrap().node[2].domain = "com.microsoft".into();
    let msg = format_error(onnx_bytes(&m.encode_to_vec()), Path::new("m.onnx"));
    assert!(
        msg.contains("com.microsoft") && msg.contains("before optimization"),
        "{msg}"
    );
    let r = onnx_bytes(&m.encode_to_vec());
    assert_eq!(
        (kind(&r), site_op(&r)),
        ("Unsupported", Some("Relu".into()))
    );
}

#[test]
fn onnx_cycles_and_dangling_inputs() {
    // `m` reads `y`, which is produced later: a cycle in a file that must be topologically sorted.
    let mut m = small_graph();
    m.graph.as_mut().unwrap().node[0] = node("MatMul", &["y", "W"], "m");
    let msg = format_error(onnx_bytes(&m.encode_to_vec()), Path::new("m.onnx"));
    assert!(
        msg.contains("\"y\"") && msg.contains("before this node"),
        "{msg}"
    );
    let r = onnx_bytes(&m.encode_to_vec());
    assert_eq!((kind(&r), site_op(&r)), ("Invalid", Some("MatMul".into())));
    let mut m = small_graph();
    m.graph.as_mut().unwrap().output[0].name = "nowhere".into();
    let msg = format_error(onnx_bytes(&m.encode_to_vec()), Path::new("m.onnx"));
    assert!(msg.contains("nowhere"), "{msg}");
    let r = onnx_bytes(&m.encode_to_vec());
    assert_eq!((kind(&r), site_op(&r)), ("Invalid", None));
}

#[test]
fn onnx_weights_that_do_not_fit_the_input() {
    let mut m = small_graph();
    m.graph.as_mut().unwrap().input[0] = value_info("x", &[None, Some(5)]);
    let msg = format_error(onnx_bytes(&m.encode_to_vec()), Path::new("m.onnx"));
    assert!(msg.contains("expect 4 features"), "{msg}");
    let r = onnx_bytes(&m.encode_to_vec());
    assert_eq!((kind(&r), site_op(&r)), ("Invalid", Some("MatMul".into())));
}

#[test]
fn onnx_external_data_is_confined_and_checked() {
    let dir = tmp("ext");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("w.bin"), [0u8; 40]).unwrap();
    let external = |location: &str, offset: &str, length: &str| {
        let mut m = small_graph();
        let w = &mut m.graph.as_mut().unwrap().initializer[0];
        w.raw_data.clear();
        w.data_location = 1;
        w.external_data = [
            ("location", location),
            ("offset", offset),
            ("length", length),
        ]
        .iter()
        .map(|(k, v)| StringStringEntryProto {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect();
        let path = dir.join("m.onnx");
        std::fs::write(&path, m.encode_to_vec()).unwrap();
        (sinter::io::onnx::load(&path), path)
    };
    let (ok, _) = external("w.bin", "0", "48");
    assert!(ok.is_err(), "48 bytes from a 40-byte file");
    let (r, path) = external("w.bin", "0", "40");
    let msg = format_error(r, &path);
    assert!(
        msg.contains("12 values") || msg.contains("40 bytes"),
        "{msg}"
    );
    let (r, path) = external("../w.bin", "0", "48");
    assert_eq!(kind(&r), "Invalid");
    assert!(format_error(r, &path).contains("plain relative path"));
    let (r, path) = external("/etc/passwd", "0", "48");
    assert!(format_error(r, &path).contains("plain relative path"));
    let (r, path) = external("w.bin", "18446744073709551615", "48");
    assert_eq!(kind(&r), "Invalid");
    assert!(format_error(r, &path).contains("beyond its end"));
    // Read from memory, a model has no directory to take external data from.
    let mut m = small_graph();
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    w.raw_data.clear();
    w.data_location = 1;
    w.external_data = vec![StringStringEntryProto {
        key: "location".into(),
        value: "w.bin".into(),
    }];
    let r = onnx_bytes(&m.encode_to_vec());
    assert_eq!(kind(&r), "Unsupported");
    assert!(format_error(r, Path::new("m.onnx")).contains("read from memory"));
    std::fs::write(dir.join("w.bin"), [0u8; 48]).unwrap();
    let (r, _) = external("w.bin", "0", "48");
    assert!(r.is_ok(), "{:?}", r.err());
}

// ---------------------------------------------------------------- .keras archives

fn zip_with(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// The members of the committed seed archive.
fn seed_members() -> (String, Vec<u8>) {
    let bytes = std::fs::read(fixture("seed.keras")).unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut read = |n: &str| {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut z.by_name(n).unwrap(), &mut v).unwrap();
        v
    };
    (
        String::from_utf8(read("config.json")).unwrap(),
        read("model.weights.h5"),
    )
}

#[test]
fn keras_seed_archive_loads() {
    let m = sinter::io::load(fixture("seed.keras")).unwrap();
    assert_eq!(m.input_shape(), &[784]);
    assert_eq!(m.output_shape(), &[8]);
    assert_eq!(m.count_params(), 25_384);
}

#[test]
fn keras_wrong_magic_and_missing_members() {
    let r = keras_bytes(b"\x89HDF\r\n\x1a\n not a zip");
    assert!(matches!(load_error(&r).kind, LoadErrorKind::Malformed(_)));
    let msg = format_error(r, Path::new("m.keras"));
    assert!(msg.contains("not a .keras archive"), "{msg}");
    let (config, _) = seed_members();
    let r = keras_bytes(&zip_with(&[("config.json", config.as_bytes())]));
    assert!(matches!(load_error(&r).kind, LoadErrorKind::Invalid(_)));
    let msg = format_error(r, Path::new("m.keras"));
    assert!(msg.contains("model.weights.h5"), "{msg}");
    let (_, weights) = seed_members();
    let r = keras_bytes(&zip_with(&[
        ("config.json", b"{\"class_name\": "),
        ("model.weights.h5", &weights),
    ]));
    let e = load_error(&r);
    assert!(matches!(e.kind, LoadErrorKind::Malformed(_)), "{e}");
    assert_eq!(e.site, None);
    let msg = format_error(r, Path::new("m.keras"));
    assert!(msg.contains("JSON"), "{msg}");
}

#[test]
fn keras_truncations_and_corruptions_never_panic() {
    let bytes = std::fs::read(fixture("seed.keras")).unwrap();
    let step = (bytes.len() / 400).max(1);
    for len in (0..bytes.len()).step_by(step) {
        assert!(
            keras_bytes(&bytes[..len]).is_err(),
            "prefix of {len} bytes loaded"
        );
    }
    // Corrupt the weights file itself (inside an archive the zip's CRC would catch raw flips):
    // every byte of the first 4 KiB (superblock, object headers, B-trees, heaps), then a spread.
    let (config, weights) = seed_members();
    let parts =
        |w: &[u8]| sinter::io::keras::from_parts(config.as_bytes(), w, Path::new("m.keras"));
    let step = (weights.len() / 500).max(1);
    for i in (0..weights.len().min(4096)).chain((4096..weights.len()).step_by(step)) {
        for flip in [0xff, 0x01] {
            let mut w = weights.clone();
            w[i] ^= flip;
            let _ = parts(&w);
        }
    }
    for len in (0..weights.len()).step_by(step) {
        assert!(
            parts(&weights[..len]).is_err(),
            "weights truncated to {len} bytes loaded"
        );
    }
}

fn with_config(edit: impl Fn(&str) -> String) -> sinter::Result<sinter::model::Model> {
    let (config, weights) = seed_members();
    let edited = edit(&config);
    assert_ne!(edited, config, "the edit did not apply");
    keras_bytes(&zip_with(&[
        ("config.json", edited.as_bytes()),
        ("model.weights.h5", &weights),
    ]))
}

#[test]
fn keras_config_weights_shape_mismatch() {
    let r = with_config(|c| c.replacen("\"units\": 32", "\"units\": 16", 1));
    // Refused by the model it builds: the typed error from model building, kept as it is.
    match &load_error(&r).kind {
        LoadErrorKind::Model(e) => assert!(matches!(**e, Error::Weights { .. }), "{e:?}"),
        k => panic!("expected a model error, got {k:?}"),
    }
    let msg = format_error(r, Path::new("m.keras"));
    assert!(msg.contains("dense") && msg.contains("kernel"), "{msg}");
    let msg = format_error(
        with_config(|c| c.replacen("[null, 784]", "[null, 785]", 1)),
        Path::new("m.keras"),
    );
    assert!(msg.contains("kernel"), "{msg}");
}

#[test]
fn keras_unknown_layer_and_activation() {
    let r = with_config(|c| {
        c.replacen(
            "\"class_name\": \"Activation\"",
            "\"class_name\": \"Conv3DTranspose\"",
            1,
        )
    });
    let e = load_error(&r);
    assert!(matches!(e.kind, LoadErrorKind::Unsupported(_)), "{e}");
    assert_eq!(e.site, layer("activation", "Conv3DTranspose"));
    let msg = format_error(r, Path::new("m.keras"));
    assert!(msg.contains("Conv3DTranspose"), "{msg}");
    let r = with_config(|c| c.replacen("\"activation\": \"tanh\"", "\"activation\": \"tanhh\"", 1));
    let e = load_error(&r);
    assert!(matches!(e.kind, LoadErrorKind::Unsupported(_)), "{e}");
    assert_eq!(e.site, layer("dense", "Dense"));
    let msg = format_error(r, Path::new("m.keras"));
    assert!(msg.contains("tanhh"), "{msg}");
    // The file is named once, the layer once, at the front.
    assert_eq!(msg.matches("m.keras").count(), 1, "{msg}");
    assert!(
        msg.starts_with("m.keras: layer \"dense\" (Dense): unknown activation"),
        "{msg}"
    );
}

/// EinsumDense is read where it is a Dense layer over the last axis; another equation is
/// refused with it named.
#[test]
fn keras_einsum_dense_outside_the_dense_form_is_refused() {
    let r = with_config(|c| {
        c.replacen(
            "\"class_name\": \"Dense\", \"config\": {",
            "\"class_name\": \"EinsumDense\", \"config\": {\"equation\": \"abc,cde->abde\", \"output_shape\": [2, 3], ",
            1,
        )
    });
    let e = load_error(&r);
    assert!(matches!(e.kind, LoadErrorKind::Unsupported(_)), "{e}");
    let msg = format_error(r, Path::new("m.keras"));
    assert!(
        msg.contains("abc,cde->abde") && msg.contains("EinsumDense"),
        "{msg}"
    );
}

#[test]
fn keras_cycle_is_an_error() {
    // The first Dense reads the second one, which reads the Activation, which reads the first.
    let r = with_config(|c| {
        c.replacen(
            "\"keras_history\": [\"input_layer\", 0, 0]",
            "\"keras_history\": [\"dense_1\", 0, 0]",
            1,
        )
    });
    let e = load_error(&r);
    assert!(matches!(e.kind, LoadErrorKind::Invalid(_)), "{e}");
    assert_eq!(e.site, layer("dense_1", "Dense"));
    let msg = format_error(r, Path::new("m.keras"));
    assert!(msg.contains("cycle"), "{msg}");
}

#[test]
fn keras_zip_bomb_is_refused() {
    // 80 MiB of spaces deflates to ~80 KiB; the config limit is 64 MiB.
    let (_, weights) = seed_members();
    let bomb = vec![b' '; 80 << 20];
    let bytes = zip_with(&[("config.json", &bomb), ("model.weights.h5", &weights)]);
    assert!(bytes.len() < 1 << 20);
    let r = keras_bytes(&bytes);
    assert!(matches!(load_error(&r).kind, LoadErrorKind::Limit(_)));
    let msg = format_error(r, Path::new("m.keras"));
    assert!(msg.contains("limit"), "{msg}");
}

/// The largest single allocation or reallocation this thread has asked for since [`reset`]:
/// tests running on other threads do not count.
mod largest_alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        // Const-initialized and without a destructor: reading it never allocates.
        static LARGEST: Cell<usize> = const { Cell::new(0) };
    }

    fn note(size: usize) {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }

    pub fn reset() {
        LARGEST.with(|l| l.set(0));
    }

    pub fn get() -> usize {
        LARGEST.with(Cell::get)
    }

    pub struct Tracking;

    // SAFETY: forwards every call to the system allocator unchanged; only records sizes.
    unsafe impl GlobalAlloc for Tracking {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            // SAFETY: same contract as ours.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            // SAFETY: same contract as ours.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
            note(new);
            // SAFETY: same contract as ours.
            unsafe { System.realloc(ptr, layout, new) }
        }
    }
}

#[global_allocator]
static GLOBAL: largest_alloc::Tracking = largest_alloc::Tracking;

/// Offset of the one zip header with signature `sig` whose file name (at `name_at` in the
/// header) is `name`.
fn zip_header(bytes: &[u8], sig: &[u8; 4], name_at: usize, name: &[u8]) -> usize {
    let hits: Vec<usize> = (0..bytes.len().saturating_sub(name_at + name.len()))
        .filter(|&i| &bytes[i..i + 4] == sig && &bytes[i + name_at..][..name.len()] == name)
        .collect();
    assert_eq!(hits.len(), 1, "{name:?} headers with signature {sig:?}");
    hits[0]
}

/// Sets the 32-bit little-endian field at `at`, checking it held `was`.
fn patch_u32(bytes: &mut [u8], at: usize, was: u32, now: u32) {
    let field = &mut bytes[at..at + 4];
    assert_eq!(u32::from_le_bytes(field.try_into().unwrap()), was);
    field.copy_from_slice(&now.to_le_bytes());
}

/// A member that understates its size: `model.weights.h5` declares 1 KiB in its local header
/// and in its central directory entry, while its deflate stream inflates to 64 MiB (of zeros,
/// ~64 KiB compressed). The declared size passes the declared-size check, and the CRC is left
/// as the zip writer computed it for the whole 64 MiB, so a reader without a limit would
/// inflate everything and find the checksum right: only the limits applied while inflating can
/// stop it. With `max_weight_bytes` at 1 MiB there are two: the zip crate's reader (9.x)
/// errors past the declared size, and sinter reads at most the limit plus one byte. The load
/// must be a typed error naming the member, and no allocation may approach the inflated size.
#[test]
fn keras_member_inflating_past_its_declared_size_is_refused() {
    const REAL: usize = 64 << 20;
    const DECLARED: u32 = 1 << 10;
    const LIMIT: u64 = 1 << 20;
    let (config, _) = seed_members();
    let name = b"model.weights.h5";
    let mut bytes = zip_with(&[
        ("config.json", config.as_bytes()),
        ("model.weights.h5", &vec![0u8; REAL]),
    ]);
    assert!(bytes.len() < 1 << 20, "{} bytes", bytes.len());
    // Uncompressed size: at 22 in the local file header (name at 30), at 24 in the central
    // directory entry (name at 46).
    let local = zip_header(&bytes, b"PK\x03\x04", 30, name);
    let central = zip_header(&bytes, b"PK\x01\x02", 46, name);
    patch_u32(&mut bytes, local + 22, REAL as u32, DECLARED);
    patch_u32(&mut bytes, central + 24, REAL as u32, DECLARED);
    {
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).unwrap();
        assert_eq!(
            z.by_name("model.weights.h5").unwrap().size(),
            u64::from(DECLARED)
        );
    }

    let opts = sinter::io::LoadOptions::new().max_weight_bytes(LIMIT);
    largest_alloc::reset();
    let r = sinter::io::keras::from_archive_with(&bytes, Path::new("m.keras"), &opts);
    let largest = largest_alloc::get();
    // Stopped by the zip reader (the stream disagrees with its header) or by sinter's limit.
    let kind = &load_error(&r).kind;
    assert!(
        matches!(kind, LoadErrorKind::Malformed(_) | LoadErrorKind::Limit(_)),
        "{kind:?}"
    );
    let msg = format_error(r, Path::new("m.keras"));
    assert!(msg.contains("archive member model.weights.h5"), "{msg}");
    assert!(
        largest <= 4 * LIMIT as usize,
        "an allocation of {largest} bytes for a member limited to {LIMIT} ({msg})"
    );
}

#[test]
fn keras_deep_json_is_an_error_not_a_stack_overflow() {
    let (_, weights) = seed_members();
    let deep = "[".repeat(100_000);
    let r = keras_bytes(&zip_with(&[
        ("config.json", deep.as_bytes()),
        ("model.weights.h5", &weights),
    ]));
    assert!(matches!(load_error(&r).kind, LoadErrorKind::Malformed(_)));
    let msg = format_error(r, Path::new("m.keras"));
    assert!(msg.contains("JSON"), "{msg}");
}

#[test]
fn unknown_extension_and_missing_file() {
    let p = tmp("model.txt");
    std::fs::write(&p, "hello").unwrap();
    assert!(format_error(sinter::io::load(&p), &p).contains("unknown model format"));
    assert!(matches!(
        sinter::io::load(tmp("absent.onnx")),
        Err(Error::Io { .. })
    ));
}

/// The conv fixture's archive with its config edited.
fn conv_with_config(edit: impl Fn(&str) -> String) -> sinter::Result<sinter::model::Model> {
    let bytes = std::fs::read(fixture("conv/conv1d_builtin.keras")).unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut read = |n: &str| {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut z.by_name(n).unwrap(), &mut v).unwrap();
        v
    };
    let config = String::from_utf8(read("config.json")).unwrap();
    let weights = read("model.weights.h5");
    let edited = edit(&config);
    assert_ne!(edited, config, "the edit did not apply");
    sinter::io::keras::from_parts(edited.as_bytes(), &weights, Path::new("m.keras"))
}

#[test]
fn keras_bad_conv_configs_are_errors() {
    for (from, to, want) in [
        (
            "\"kernel_size\": [3]",
            "\"kernel_size\": [0]",
            "kernel_size",
        ),
        ("\"kernel_size\": [3]", "\"kernel_size\": [4]", "kernel"),
        ("\"kernel_size\": [3]", "\"kernel_size\": [3, 3]", "1-D"),
        (
            "\"padding\": \"same\"",
            "\"padding\": \"reflect\"",
            "reflect",
        ),
        (
            "\"data_format\": \"channels_last\"",
            "\"data_format\": \"channels_first\"",
            "channels_first",
        ),
        ("\"strides\": [1]", "\"strides\": [1e30]", "strides"),
        ("\"axis\": -1", "\"axis\": 0", "axis"),
    ] {
        let msg = format_error(
            conv_with_config(|c| c.replacen(from, to, 1)),
            Path::new("m.keras"),
        );
        assert!(msg.contains(want), "{to}: {msg}");
    }
    // A value Keras writes but sinter does not run, and one Keras would not write: both at
    // the layer.
    let r = conv_with_config(|c| {
        c.replacen(
            "\"data_format\": \"channels_last\"",
            "\"data_format\": \"channels_first\"",
            1,
        )
    });
    let e = load_error(&r);
    assert!(matches!(e.kind, LoadErrorKind::Unsupported(_)), "{e}");
    assert_eq!(e.site, layer("conv1d", "Conv1D"));
    let r = conv_with_config(|c| c.replacen("\"kernel_size\": [3]", "\"kernel_size\": [0]", 1));
    let e = load_error(&r);
    assert!(matches!(e.kind, LoadErrorKind::Invalid(_)), "{e}");
    assert_eq!(e.site, layer("conv1d", "Conv1D"));
}

/// A `model.to_json()` config and its weights file: a fault of the weights is reported
/// against the weights file, a fault of the config against the config, each path once.
#[test]
fn keras_split_files_name_the_file_at_fault() {
    let config = std::fs::read_to_string(fixture("seed.json")).unwrap();
    let weights = std::fs::read(fixture("seed.weights.h5")).unwrap();
    let pair = |name: &str, config: &str, weights: &[u8]| {
        let (c, w) = (
            tmp(&format!("{name}.json")),
            tmp(&format!("{name}.weights.h5")),
        );
        std::fs::write(&c, config).unwrap();
        std::fs::write(&w, weights).unwrap();
        (c, w)
    };
    // Weights cut short: the layer's variables are missing.
    let (c, w) = pair("cut", &config, &weights[..weights.len() / 2]);
    for path in [&c, &w] {
        let r = sinter::io::load(path);
        let e = load_error(&r);
        assert!(matches!(e.kind, LoadErrorKind::Invalid(_)), "{e}");
        assert_eq!(e.site, layer("dense", "Dense"));
        let msg = format_error(r, &w);
        assert_eq!(msg.matches(w.to_str().unwrap()).count(), 1, "{msg}");
        assert!(!msg.contains("weights:"), "{msg}");
    }
    // Not HDF5 at all.
    let (c, w) = pair("garbage", &config, b"not hdf5");
    let r = sinter::io::load(&c);
    assert!(matches!(load_error(&r).kind, LoadErrorKind::Malformed(_)));
    format_error(r, &w);
    // An unknown class: the config's fault.
    let unknown = config.replacen(
        "\"class_name\": \"Activation\"",
        "\"class_name\": \"Conv3DTranspose\"",
        1,
    );
    assert_ne!(unknown, config);
    let (c, _) = pair("unknown", &unknown, &weights);
    let r = sinter::io::load(&c);
    assert_eq!(load_error(&r).site, layer("activation", "Conv3DTranspose"));
    let msg = format_error(r, &c);
    assert_eq!(msg.matches(c.to_str().unwrap()).count(), 1, "{msg}");
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// `x[N, 8, 3] -> Transpose(0,2,1) -> Conv(W[4, 3, 3], pads 1,1) -> Transpose -> Flatten -> y`.
fn conv_graph() -> ModelProto {
    let mut m = small_graph();
    let g = m.graph.as_mut().unwrap();
    let mut t1 = node("Transpose", &["x"], "xt");
    t1.attribute = vec![attr_ints("perm", &[0, 2, 1])];
    let mut conv = node("Conv", &["xt", "W"], "c");
    conv.attribute = vec![attr_ints("pads", &[1, 1]), attr_ints("kernel_shape", &[3])];
    let mut t2 = node("Transpose", &["c"], "ct");
    t2.attribute = vec![attr_ints("perm", &[0, 2, 1])];
    g.node = vec![t1, conv, t2, node("Flatten", &["ct"], "y")];
    g.initializer = vec![tensor("W", &[4, 3, 3], &[0.25; 36])];
    g.input = vec![value_info("x", &[None, Some(8), Some(3)])];
    g.output = vec![value_info("y", &[None, Some(32)])];
    m
}

#[test]
fn onnx_conv_layouts_are_checked() {
    let m = onnx_bytes(&conv_graph().encode_to_vec()).unwrap();
    assert_eq!(m.output_shape(), &[32]);
    // Conv straight on the input: ONNX reads it as channels-first [N, C=8, W=3], which the
    // 3-channel kernel does not fit.
    let mut bad = conv_graph();
    bad.graph.as_mut().unwrap().node[1].input[0] = "x".into();
    let msg = format_error(onnx_bytes(&bad.encode_to_vec()), Path::new("m.onnx"));
    assert!(msg.contains("for 8 input channels"), "{msg}");
    // Flatten of the channels-first tensor reads values in ONNX's (channel-major) order: the
    // loader writes the layout out with a Permute first (values: tests/onnx_layout.rs).
    let mut cm = conv_graph();
    cm.graph.as_mut().unwrap().node[3].input[0] = "c".into();
    let m = onnx_bytes(&cm.encode_to_vec()).unwrap();
    assert!(m.summary().contains("Permute"), "{}", m.summary());
    // Other permutations, grouped convs and unsupported (negative) pads are refused by name.
    let mut bad = conv_graph();
    bad.graph.as_mut().unwrap().node[0].attribute = vec![attr_ints("perm", &[1, 0, 2])];
    assert!(format_error(onnx_bytes(&bad.encode_to_vec()), Path::new("m.onnx")).contains("perm"));
    let mut bad = conv_graph();
    bad.graph.as_mut().unwrap().node[1].attribute[0] = attr_ints("pads", &[-1, 2]);
    assert!(format_error(onnx_bytes(&bad.encode_to_vec()), Path::new("m.onnx")).contains("pads"));
    let mut bad = conv_graph();
    bad.graph.as_mut().unwrap().initializer[0].dims = vec![4, 2, 3];
    assert!(onnx_bytes(&bad.encode_to_vec()).is_err());
}

#[test]
fn load_options_limits_are_errors() {
    use sinter::io::LoadOptions;
    let seed = fixture("seed.keras");
    let tight = |f: fn(&mut LoadOptions)| {
        let mut o = LoadOptions::default();
        f(&mut o);
        o
    };
    let msg = |r: sinter::Result<sinter::model::Model>| match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("loaded over a limit"),
    };
    // Weight bytes: the archive, the ONNX file, external data.
    let m = msg(sinter::io::load_with(
        &seed,
        &tight(|o| o.max_weight_bytes = 50_000),
    ));
    assert!(m.contains("limit"), "{m}");
    for o in [
        tight(|o| o.max_weight_bytes = 50_000),
        tight(|o| o.max_tensor_elems = 700),
        tight(|o| o.max_layers = 2),
        tight(|o| o.max_json_depth = 3),
    ] {
        let r = sinter::io::load_with(&seed, &o);
        assert!(
            matches!(load_error(&r).kind, LoadErrorKind::Limit(_)),
            "{o:?}"
        );
    }
    let m = msg(sinter::io::load_with(
        fixture("seed.onnx"),
        &tight(|o| o.max_weight_bytes = 50_000),
    ));
    assert!(m.contains("limit"), "{m}");
    let m = msg(sinter::io::load_with(
        fixture("seed_ext.onnx"),
        &tight(|o| o.max_weight_bytes = 50_000),
    ));
    assert!(m.contains("limit"), "{m}");
    for o in [
        tight(|o| o.max_weight_bytes = 50_000),
        tight(|o| o.max_tensor_elems = 700),
        tight(|o| o.max_layers = 2),
    ] {
        for f in ["seed.onnx", "seed_ext.onnx"] {
            assert_eq!(kind(&sinter::io::load_with(fixture(f), &o)), "Limit", "{f}");
        }
        let bytes = std::fs::read(fixture("seed.onnx")).unwrap();
        let r = sinter::io::onnx::from_bytes_with(&bytes, Path::new("m.onnx"), None, &o);
        assert_eq!(kind(&r), "Limit");
    }
    // Tensor elements: the 784 x 32 kernel, the input.
    for path in [fixture("seed.onnx"), seed.clone()] {
        let m = msg(sinter::io::load_with(
            &path,
            &tight(|o| o.max_tensor_elems = 700),
        ));
        assert!(m.contains("elements"), "{m}");
    }
    // Layers and nodes.
    for path in [fixture("seed.onnx"), seed.clone()] {
        let m = msg(sinter::io::load_with(&path, &tight(|o| o.max_layers = 2)));
        assert!(m.contains("limit of 2"), "{m}");
    }
    // JSON nesting.
    let m = msg(sinter::io::load_with(
        &seed,
        &tight(|o| o.max_json_depth = 3),
    ));
    assert!(m.contains("levels deep"), "{m}");
    // Defaults load every fixture.
    assert!(sinter::io::load_with(&seed, &LoadOptions::default()).is_ok());
}

/// Requesting some outputs converts only what they need: an unsupported op on another
/// output's branch does not stop the load; asking for it names the op; an unknown output name
/// lists the real ones.
#[test]
fn onnx_requested_outputs_prune_the_graph_before_conversion() {
    let mut m = small_graph();
    let g = m.graph.as_mut().unwrap();
    g.node.push(node("Relu", &["a"], "y1"));
    g.node.push(node("Einsum", &["a"], "y2"));
    g.output = vec![
        value_info("y1", &[None, Some(2)]),
        value_info("y2", &[None, Some(2)]),
    ];
    let bytes = m.encode_to_vec();
    let with = |outputs: Option<Vec<&str>>| {
        let mut opts = sinter::io::LoadOptions::new();
        opts.outputs = outputs.map(|o| o.into_iter().map(String::from).collect());
        sinter::io::onnx::from_bytes_with(&bytes, Path::new("m.onnx"), None, &opts)
    };
    let err = format_error(with(None), Path::new("m.onnx"));
    assert!(err.contains("Einsum"), "{err}");
    // An unknown op is Unsupported, at its node, and the message lists the ops sinter reads.
    assert_eq!(kind(&with(None)), "Unsupported");
    assert_eq!(site_op(&with(None)).as_deref(), Some("Einsum"));
    assert!(
        err.contains("(sinter reads Abs, Add,") && err.contains("Relu"),
        "{err}"
    );
    let model = with(Some(vec!["y1"])).expect("only y1's branch is converted");
    assert_eq!(model.output_names(), ["y1"]);
    assert!(!model.summary().contains("Einsum"));
    assert_eq!(kind(&with(Some(vec!["y3"]))), "Invalid");
    let err = format_error(with(Some(vec!["y3"])), Path::new("m.onnx"));
    assert!(
        err.contains("no output named \"y3\" (outputs: y1, y2)"),
        "{err}"
    );
}

/// scikit-learn's shape of output: an int64 `label` (ArgMax of the probabilities) before the
/// `probabilities`. Labels come out as exact whole numbers, typed int64.
#[test]
fn onnx_argmax_gives_int64_labels() {
    let mut m = small_graph();
    let g = m.graph.as_mut().unwrap();
    g.initializer[0] = tensor(
        "W",
        &[4, 3],
        &[
            0.5, -0.2, 0.1, 0.3, 0.9, -0.4, -0.6, 0.2, 0.8, 0.1, 0.0, 0.3,
        ],
    );
    g.node[2] = node("Softmax", &["a"], "probabilities");
    let mut am = node("ArgMax", &["probabilities"], "label");
    am.attribute = vec![
        AttributeProto {
            name: "axis".into(),
            i: 1,
            ..Default::default()
        },
        AttributeProto {
            name: "keepdims".into(),
            i: 0,
            ..Default::default()
        },
    ];
    g.node.push(am);
    g.output = vec![
        value_info("label", &[None]),
        value_info("probabilities", &[None, Some(3)]),
    ];
    let model = onnx_bytes(&m.encode_to_vec()).unwrap();
    assert_eq!(model.output_names(), ["label", "probabilities"]);
    let plan = std::sync::Arc::new(model.compile(&Default::default()).unwrap());
    assert_eq!(plan.outputs()[0].dtype, sinter::model::DType::I64);
    // keepdims=0 over the last axis: one label per sample, ONNX shape [N].
    assert_eq!(plan.outputs()[0].shape, [0usize; 0]);
    let x = [1.0, 2.0, -1.0, 0.5, -3.0, 0.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0];
    let mut s = plan.session().unwrap();
    let out = s.run_all(&[sinter::plan::Values::F32(&x)]).unwrap();
    let labels: Vec<i64> = out.ints(0).collect();
    let probs = out.get(1);
    for (r, &l) in labels.iter().enumerate() {
        let row = &probs[r * 3..r * 3 + 3];
        let want = (0..3).fold(0, |b, j| if row[j] > row[b] { j } else { b });
        assert_eq!(l, want as i64, "row {r}: {row:?}");
    }
    // The last axis only; ArgMax over the batch is refused by name.
    let mut bad = m.clone();
    bad.graph.as_mut().unwrap().node[3].attribute[0].i = 0;
    let msg = format_error(onnx_bytes(&bad.encode_to_vec()), Path::new("m.onnx"));
    assert!(
        msg.contains("ArgMax") && msg.contains("only the last axis"),
        "{msg}"
    );
    let r = onnx_bytes(&bad.encode_to_vec());
    assert_eq!(
        (kind(&r), site_op(&r)),
        ("Unsupported", Some("ArgMax".into()))
    );
}

/// Fuzzing found `Max` with no inputs indexing an empty list: now an error naming the node.
#[test]
fn onnx_variadic_ops_without_inputs_are_errors() {
    for op in ["Max", "Min", "Sum", "Mean", "Sub", "Mul"] {
        let mut m = small_graph();
        let g = m.graph.as_mut().unwrap();
        g.node.push(node(op, &[], "z"));
        g.output = vec![value_info("z", &[None, Some(3)])];
        let msg = format_error(onnx_bytes(&m.encode_to_vec()), Path::new("m.onnx"));
        assert!(msg.contains(op) && msg.contains("inputs"), "{op}: {msg}");
        let r = onnx_bytes(&m.encode_to_vec());
        assert_eq!(
            (kind(&r), site_op(&r)),
            ("Invalid", Some(op.into())),
            "{op}"
        );
    }
}

fn int64_tensor(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 7,
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i,
        ..Default::default()
    }
}

/// `x[N, 4] -> MatMul -> (node under test on "m") -> y` with extra initializers.
fn graph_after_matmul(extra: Vec<NodeProto>, inits: Vec<TensorProto>) -> ModelProto {
    let mut m = small_graph();
    let g = m.graph.as_mut().unwrap();
    g.node.truncate(1);
    g.node.extend(extra);
    g.initializer.extend(inits);
    g.output = vec![value_info("y", &[None, None])];
    m
}

/// The elementwise, shape and classifier ops refuse what they cannot do, naming the op and
/// what is wrong; none loads into a wrong answer.
#[test]
fn onnx_new_ops_refuse_by_name() {
    let cases: Vec<(ModelProto, &str)> = vec![
        // A constant broadcast along a non-channel axis.
        (
            graph_after_matmul(
                vec![node("Add", &["m", "c"], "y")],
                vec![tensor("c", &[2, 3], &[1.0; 6])],
            ),
            "broadcast against [N, 3]",
        ),
        // Division of two computed tensors.
        (
            graph_after_matmul(vec![node("Div", &["m", "m"], "y")], vec![]),
            "Div of two computed tensors",
        ),
        // A constant divided by a tensor.
        (
            graph_after_matmul(
                vec![node("Div", &["c", "m"], "y")],
                vec![tensor("c", &[], &[2.0])],
            ),
            "a constant divided by a tensor",
        ),
        // Pow with a computed exponent.
        (
            graph_after_matmul(vec![node("Pow", &["m", "m"], "y")], vec![]),
            "constant scalar exponent",
        ),
        // ArgMax over the batch axis.
        (
            graph_after_matmul(
                vec![{
                    let mut n = node("ArgMax", &["m"], "y");
                    n.attribute = vec![attr_int("axis", 0)];
                    n
                }],
                vec![],
            ),
            "axis 0",
        ),
        // Float to integer casts of computed values.
        (
            graph_after_matmul(
                vec![{
                    let mut n = node("Cast", &["m"], "y");
                    n.attribute = vec![attr_int("to", 7)];
                    n
                }],
                vec![],
            ),
            "a cast from F32 to int64",
        ),
        // Squeeze of an axis that is not 1 long.
        (
            graph_after_matmul(
                vec![node("Squeeze", &["m", "ax"], "y")],
                vec![int64_tensor("ax", &[1], &[1])],
            ),
            "axis 1 has length 3",
        ),
        // A shape chain that multiplies the batch size: not known at load time.
        (
            graph_after_matmul(
                vec![
                    node("Shape", &["m"], "s"),
                    node("Mul", &["s", "two"], "s2"),
                    node("Reshape", &["m", "s2"], "y"),
                ],
                vec![int64_tensor("two", &[], &[2])],
            ),
            "arithmetic on the batch size",
        ),
        // Class labels other than 0..n.
        (
            graph_after_matmul(
                vec![
                    {
                        let mut n = node("ArgMax", &["m"], "i");
                        n.attribute = vec![attr_int("axis", 1)];
                        n
                    },
                    {
                        let mut n = node("ArrayFeatureExtractor", &["classes", "i"], "y");
                        n.domain = "ai.onnx.ml".into();
                        n
                    },
                ],
                vec![int64_tensor("classes", &[3], &[5, 7, 9])],
            ),
            "class labels other than 0..n",
        ),
        // Another ai.onnx.ml op.
        (
            graph_after_matmul(
                vec![{
                    let mut n = node("Normalizer", &["m"], "y");
                    n.domain = "ai.onnx.ml".into();
                    n
                }],
                vec![],
            ),
            "operator Normalizer of domain \"ai.onnx.ml\"",
        ),
    ];
    // Each is valid ONNX sinter does not run, but for the Squeeze of a long axis.
    let kinds = [
        "Unsupported",
        "Unsupported",
        "Unsupported",
        "Unsupported",
        "Unsupported",
        "Unsupported",
        "Invalid",
        "Unsupported",
        "Unsupported",
        "Unsupported",
    ];
    assert_eq!(cases.len(), kinds.len());
    for (k, ((m, words), want)) in cases.into_iter().zip(kinds).enumerate() {
        let e = format_error(onnx_bytes(&m.encode_to_vec()), Path::new("m.onnx"));
        assert!(
            e.contains(words),
            "case {k}: {e:?} should contain {words:?}"
        );
        assert_eq!(kind(&onnx_bytes(&m.encode_to_vec())), want, "case {k}: {e}");
    }
}

/// Near misses of the activation patterns are not rewritten: `x / 1.5` before `Erf` is not
/// GELU, and runs op by op with its own answer.
#[test]
fn onnx_pattern_near_miss_runs_op_by_op() {
    let gelu_like = |divisor: f32| {
        graph_after_matmul(
            vec![
                node("Div", &["m", "d"], "q"),
                node("Erf", &["q"], "e"),
                node("Add", &["e", "one"], "a"),
                node("Mul", &["m", "a"], "p"),
                node("Mul", &["p", "half"], "y"),
            ],
            vec![
                tensor("d", &[], &[divisor]),
                tensor("one", &[], &[1.0]),
                tensor("half", &[], &[0.5]),
            ],
        )
    };
    let x = [0.3f32, -1.2, 0.7, 2.0];
    let m = 0.5 * x.iter().sum::<f32>(); // every column of the MatMul (W = 0.5)
    for (divisor, pattern) in [(std::f32::consts::SQRT_2, true), (1.5, false)] {
        let model = onnx_bytes(&gelu_like(divisor).encode_to_vec()).unwrap();
        assert_eq!(
            model.origin().contains("gelu_erf"),
            pattern,
            "{}",
            model.origin()
        );
        let plan = std::sync::Arc::new(model.compile(&Default::default()).unwrap());
        let y = plan.run(&x).unwrap();
        let want = 0.5 * m * (1.0 + libm::erff(m / divisor));
        for v in y {
            assert!((v - want).abs() < 1e-6, "divisor {divisor}: {v} vs {want}");
        }
    }
}

/// Found by fuzzing: a `Reshape` to an empty target shape indexed past its end.
#[test]
fn onnx_reshape_to_an_empty_shape_is_an_error() {
    let m = graph_after_matmul(
        vec![node("Reshape", &["m", "s"], "y")],
        vec![int64_tensor("s", &[0], &[])],
    );
    let e = format_error(onnx_bytes(&m.encode_to_vec()), Path::new("m.onnx"));
    assert!(e.contains("empty target shape"), "{e}");
    let r = onnx_bytes(&m.encode_to_vec());
    assert_eq!((kind(&r), site_op(&r)), ("Invalid", Some("Reshape".into())));
}

/// Found by fuzzing: the pattern matcher indexed the inputs a node should have; nodes with
/// fewer (a `Div`, `Sub`, `Mul` or `Sqrt` short of an input) are errors, not panics.
#[test]
fn onnx_pattern_nodes_short_of_inputs_are_errors() {
    for op in [
        "Div",
        "Sub",
        "Mul",
        "Sqrt",
        "Erf",
        "Tanh",
        "BatchNormalization",
    ] {
        let m = graph_after_matmul(
            vec![
                node("ReduceMean", &["m"], "r"),
                node("Sub", &["m"], "d"),
                node(op, &[], "q"),
                node("Div", &["d"], "y"),
            ],
            vec![],
        );
        let e = format_error(onnx_bytes(&m.encode_to_vec()), Path::new("m.onnx"));
        assert!(e.contains("node"), "{op}: {e}");
    }
}

/// Found by fuzzing: a `Conv` whose weights are an integer tensor indexed an empty float
/// list; it is an error.
#[test]
fn onnx_conv_with_integer_weights_is_an_error() {
    let mut m = conv_graph();
    let g = m.graph.as_mut().unwrap();
    let dims = g.initializer[0].dims.clone();
    let n: i64 = dims.iter().product();
    g.initializer[0] = int64_tensor("W", &dims, &vec![1; n as usize]);
    let e = format_error(onnx_bytes(&m.encode_to_vec()), Path::new("m.onnx"));
    assert!(e.contains("W must be a float tensor"), "{e}");
    let r = onnx_bytes(&m.encode_to_vec());
    assert_eq!((kind(&r), site_op(&r)), ("Invalid", Some("Conv".into())));
}

/// A model the loader converts but [`sinter::model::Model`] refuses carries the model's typed
/// error: two graph inputs of one name make two layers of one name.
#[test]
fn onnx_model_errors_keep_their_type() {
    let mut m = small_graph();
    let g = m.graph.as_mut().unwrap();
    g.input.push(value_info("x", &[None, Some(4)]));
    let r = onnx_bytes(&m.encode_to_vec());
    match kind_and_site(&r).0 {
        LoadErrorKind::Model(e) => {
            assert!(matches!(**e, Error::Model(_)), "{e:?}");
        }
        k => panic!("expected LoadErrorKind::Model, got {k:?}"),
    }
    let msg = format_error(r, Path::new("m.onnx"));
    assert!(msg.contains("two layers are named \"x\""), "{msg}");
}

/// `x[N, 5, 4] -> Transpose(1, 0, 2) -> LSTM(hidden 3) -> Squeeze(1) -> Transpose(1, 0, 2) ->
/// y[N, 5, 3]`, as the TorchScript exporter writes `nn.LSTM(batch_first=True)`.
fn lstm_graph() -> ModelProto {
    let mut m = small_graph();
    let g = m.graph.as_mut().unwrap();
    let mut t1 = node("Transpose", &["x"], "xt");
    t1.attribute = vec![attr_ints("perm", &[1, 0, 2])];
    let mut lstm = node("LSTM", &["xt", "W", "R"], "y4");
    lstm.attribute = vec![AttributeProto {
        name: "hidden_size".into(),
        i: 3,
        ..Default::default()
    }];
    let mut sq = node("Squeeze", &["y4", "axes"], "y3");
    sq.attribute = vec![];
    let mut t2 = node("Transpose", &["y3"], "y");
    t2.attribute = vec![attr_ints("perm", &[1, 0, 2])];
    g.node = vec![t1, lstm, sq, t2];
    let mut axes = tensor("axes", &[1], &[]);
    axes.data_type = 7;
    axes.float_data = vec![];
    axes.int64_data = vec![1];
    g.initializer = vec![
        tensor("W", &[1, 12, 4], &[0.1; 48]),
        tensor("R", &[1, 12, 3], &[0.1; 36]),
        axes,
    ];
    g.input = vec![value_info("x", &[None, Some(5), Some(4)])];
    g.output = vec![value_info("y", &[None, Some(5), Some(3)])];
    m
}

#[test]
fn onnx_recurrent_ops_are_checked() {
    let m = onnx_bytes(&lstm_graph().encode_to_vec()).unwrap();
    assert_eq!(m.output_shape(), &[5, 3]);
    let err = |edit: &dyn Fn(&mut ModelProto)| {
        let mut bad = lstm_graph();
        edit(&mut bad);
        format_error(onnx_bytes(&bad.encode_to_vec()), Path::new("m.onnx"))
    };
    // Weights of the wrong shape, a zero hidden size.
    let msg =
        err(&|m| m.graph.as_mut().unwrap().initializer[0] = tensor("W", &[1, 12, 2], &[0.1; 24]));
    assert!(msg.contains("W has shape") && msg.contains("LSTM"), "{msg}");
    let msg = err(&|m| m.graph.as_mut().unwrap().node[1].attribute[0].i = 0);
    assert!(msg.contains("hidden_size"), "{msg}");
    // sequence_lens, and an LSTM straight on the batch-first input `[N, 5, 2]`: ONNX reads
    // it as `[T, N, F]`, so its symbolic axis 0 is the steps, which need a size.
    let msg = err(&|m| {
        let n = &mut m.graph.as_mut().unwrap().node[1];
        n.input.extend(["".into(), "x".into()]);
    });
    assert!(msg.contains("sequence_lens"), "{msg}");
    let msg = err(&|m| m.graph.as_mut().unwrap().node[1].input[0] = "x".into());
    assert!(msg.contains("time-major"), "{msg}");
    // Initial states: a constant that is not zeros, a state of the wrong size, a GRU's
    // initial_c.
    let msg = err(&|m| {
        let g = m.graph.as_mut().unwrap();
        g.initializer.push(tensor("h0", &[1, 1, 3], &[0.5; 3]));
        g.node[1].input.extend(["".into(), "".into(), "h0".into()]);
    });
    assert!(msg.contains("initial_h") && msg.contains("LSTM"), "{msg}");
    let msg = err(&|m| {
        let g = m.graph.as_mut().unwrap();
        g.input.push(value_info("h0", &[Some(1), None, Some(4)]));
        g.input.push(value_info("c0", &[Some(1), None, Some(3)]));
        g.node[1]
            .input
            .extend(["".into(), "".into(), "h0".into(), "c0".into()]);
    });
    assert!(
        msg.contains("initial_h") && msg.contains("expected 1 x 3"),
        "{msg}"
    );
    let msg = err(&|m| {
        let g = m.graph.as_mut().unwrap();
        g.input.push(value_info("h0", &[Some(1), None, Some(3)]));
        g.node[1].op_type = "GRU".into();
        g.initializer[0] = tensor("W", &[1, 9, 4], &[0.1; 36]);
        g.initializer[1] = tensor("R", &[1, 9, 3], &[0.1; 27]);
        g.node[1]
            .input
            .extend(["".into(), "".into(), "h0".into(), "h0".into()]);
    });
    assert!(msg.contains("initial_c"), "{msg}");
    // Any other reader of a time-major tensor is refused, naming the readers it may have.
    let msg = err(&|m| m.graph.as_mut().unwrap().node[2].op_type = "Relu".into());
    assert!(msg.contains("time-major") && msg.contains("Relu"), "{msg}");
}

/// A Keras 3 mask argument whose `Masking` is not on the layer's path (the LSTM reads the
/// input itself): an error naming the tensor, not a lookup that panics.
#[test]
fn keras_mask_of_a_layer_off_the_path_is_an_error() {
    let bytes = std::fs::read(fixture("recurrent/masking.keras")).unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut read = |n: &str| {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut z.by_name(n).unwrap(), &mut v).unwrap();
        v
    };
    let (config, weights) = (
        String::from_utf8(read("config.json")).unwrap(),
        read("model.weights.h5"),
    );
    assert!(
        sinter::io::keras::from_parts(config.as_bytes(), &weights, Path::new("m.keras")).is_ok()
    );
    let edited = config.replacen("[\"masking\", 0, 0]", "[\"input_layer\", 0, 0]", 1);
    assert_ne!(edited, config);
    let r = sinter::io::keras::from_parts(edited.as_bytes(), &weights, Path::new("m.keras"));
    let msg = format_error(r, Path::new("m.keras"));
    assert!(
        msg.contains("\"masking\"") && msg.contains("before it is computed"),
        "{msg}"
    );
}

//! ONNX files as the real exporters write them: PyTorch's TorchScript and dynamo exporters,
//! Keras 3's `model.export(format="onnx")`, tf2onnx and skl2onnx
//! (`tests/fixtures/exporters/`, made by `scripts/make_exporter_fixtures.py`). Every case
//! loads, runs fused, separate and on two threads with identical bits, and reproduces the
//! framework's own outputs (PyTorch's forward, Keras's predict, scikit-learn's predict and
//! predict_proba) within `atol = rtol = 2e-5`; integer labels exactly. An output the manifest
//! has no values for (skl2onnx's ZipMap) is refused by name when asked for, and the rest of
//! the model serves without it. torchvision's `squeezenet1_1` and `mobilenet_v3_small`
//! (`tests/fixtures/torchvision/`, `scripts/make_torchvision_fixtures.py`) are checked the
//! same way against torch's forward.

mod common;

use serde_json::Value;
use sinter::io::npy::{self, Array};
use sinter::model::DType;
use sinter::plan::{CompileOptions, Plan, Values};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn dir() -> PathBuf {
    fixtures("exporters")
}

fn fixtures(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub)
}

fn cases(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json");
    let v: Value = serde_json::from_str(&text).expect("manifest is JSON");
    v["cases"].as_array().expect("cases").clone()
}

/// The outputs the manifest has values for.
fn served(case: &Value) -> Vec<&Value> {
    case["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["file"].is_string())
        .collect()
}

fn check(dir: &Path, case: &Value) -> Result<String, String> {
    let name = case["name"].as_str().unwrap();
    let outs = served(case);
    let opts =
        sinter::io::LoadOptions::new().outputs(outs.iter().map(|o| o["name"].as_str().unwrap()));
    let path = dir.join(case["model"].as_str().unwrap());
    let model = sinter::io::load_with(&path, &opts).map_err(|e| format!("load: {e}"))?;
    let arrays: Vec<(Vec<usize>, Array)> = case["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| npy::read(&dir.join(i["file"].as_str().unwrap())))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let batch = arrays[0].0[0];
    let values: Vec<Values> = arrays.iter().map(|(_, a)| a.values()).collect();
    let mut runs: Vec<Vec<Vec<f32>>> = vec![];
    let mut plan0: Option<Arc<Plan>> = None;
    for fuse in [true, false] {
        let plan = Arc::new(
            model
                .compile(&CompileOptions::new().fuse(fuse).threads(1).max_batch(batch))
                .map_err(|e| format!("compile: {e}"))?,
        );
        runs.push(plan.run_all(&values).map_err(|e| format!("run: {e}"))?);
        plan0.get_or_insert(plan);
    }
    runs.push(common::split_run(&model, &values, batch)?);
    if runs.iter().any(|r| {
        r.iter()
            .flatten()
            .zip(runs[0].iter().flatten())
            .any(|(a, b)| a.to_bits() != b.to_bits())
    }) {
        return Err("fused, separate and 2-thread plans differ".into());
    }
    let plan = plan0.unwrap();
    let mut worst = 0.0f32;
    for (k, o) in outs.iter().enumerate() {
        let oname = o["name"].as_str().unwrap();
        let info = &plan.outputs()[k];
        if info.name != oname {
            return Err(format!("output {k} is {:?}, expected {oname:?}", info.name));
        }
        let want_shape: Vec<usize> = o["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let mut got_shape = vec![batch];
        got_shape.extend(&info.shape);
        if got_shape != want_shape {
            return Err(format!(
                "{oname}: shape {got_shape:?}, expected {want_shape:?}"
            ));
        }
        let (_, want) =
            npy::read(&dir.join(o["file"].as_str().unwrap())).map_err(|e| e.to_string())?;
        let got = &runs[0][k];
        match want {
            Array::F32(w) => {
                if info.dtype != DType::F32 {
                    return Err(format!("{oname}: dtype {:?}, expected float32", info.dtype));
                }
                let d = common::golden_diff(got, &w, got.len() / batch, 2e-5, 2e-5)
                    .map_err(|e| format!("{oname}: {e}"))?;
                worst = worst.max(d);
            }
            Array::I64(w) => {
                if info.dtype != DType::I64 {
                    return Err(format!("{oname}: dtype {:?}, expected int64", info.dtype));
                }
                let g: Vec<i64> = got.iter().map(|&v| v as i64).collect();
                if g != w {
                    return Err(format!("{oname}: labels {g:?}, expected {w:?}"));
                }
            }
            Array::I32(_) | Array::Bool(_) => {
                return Err(format!("{oname}: int32 or bool expected values"));
            }
        }
    }
    Ok(format!("{name:32} max|sinter - framework| {worst:.1e}"))
}

/// Cases of exporters/manifest.json.
const EXPORTER_CASES: usize = 28;
/// Cases of torchvision/manifest.json.
const TORCHVISION_CASES: usize = 3;

fn check_all(sub: &str, expected: usize) {
    let dir = fixtures(sub);
    let mut failures = vec![];
    let cases = cases(&dir);
    assert_eq!(cases.len(), expected, "cases in {sub}/manifest.json");
    for case in &cases {
        match check(&dir, case) {
            Ok(line) => println!("{line}"),
            Err(e) => failures.push(format!("{}: {e}", case["name"].as_str().unwrap())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn exporter_files_match_their_frameworks() {
    check_all("exporters", EXPORTER_CASES);
}

/// torchvision `squeezenet1_1` (Fire modules: Concat on channels, `ceil_mode` MaxPool) and
/// `mobilenet_v3_small` (depthwise, hard-swish, squeeze-and-excitation), as torch exports
/// them, match torch's forward.
#[test]
fn torchvision_models_match_torch() {
    check_all("torchvision", TORCHVISION_CASES);
}

/// An NCHW image enters through its first convolution's padding: the plan of torchvision's
/// `mobilenet_v3_small` pads the channels-first input in one step and has no transpose (the
/// values of that step against ONNX Runtime: `tests/onnx_layout.rs`, case `image_conv`).
#[test]
fn an_image_enters_through_its_padding() {
    let path = fixtures("torchvision").join("tv_mobilenet.ts.onnx");
    let model = sinter::io::load(path).unwrap();
    let text = model
        .compile(&CompileOptions::default())
        .unwrap()
        .to_string();
    assert!(text.contains("of the channels-first input"), "{text}");
    assert!(!text.contains("permute ["), "{text}");
}

/// The subgraphs exporters write for one activation or normalization are recognised (the
/// model's origin line lists each pattern that matched), and a channel-major flatten costs
/// no transpose: the PyTorch NCW model's plan has one transpose, folded into the first
/// convolution's padding, and none before its Linear.
#[test]
fn exporter_patterns_are_recognised() {
    for (case, want) in [
        (
            "torch_mlp.ts16",
            "patterns: gelu_erf x1, silu x1, layer_norm x1",
        ),
        ("torch_mlp.ts17", "patterns: gelu_erf x1, silu x1"),
        ("torch_mlp_tanh.ts17", "patterns: gelu_tanh x1"),
        ("torch_mlp.dynamo", "patterns: silu x1"),
        ("tf2onnx_mlp_ln", "patterns: layer_norm_tf2onnx x1"),
    ] {
        let model = sinter::io::load(dir().join(format!("{case}.onnx"))).unwrap();
        assert!(model.origin().ends_with(want), "{case}: {}", model.origin());
    }
    let model = sinter::io::load(dir().join("torch_conv1d_ncw.ts.onnx")).unwrap();
    let plan = model.compile(&CompileOptions::default()).unwrap();
    let text = plan.to_string();
    assert!(text.contains("pad 3+3 from channels-first"), "{text}");
    assert!(!text.contains("permute ["), "{text}");
}

/// skl2onnx's default classifier ends in a ZipMap (a sequence of maps): asking for it is an
/// error that names the op; the label alone serves.
#[test]
fn zipmap_output_is_refused_by_name() {
    let path = dir().join("skl_mlp_classifier_zipmap.onnx");
    let e = sinter::io::load(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("ZipMap"), "{e}");
}

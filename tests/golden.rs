//! Golden tests: every model in `tests/fixtures/manifest.json` (made by
//! `scripts/make_fixtures.py` with Keras and ONNX Runtime) loads in sinter and reproduces the
//! peer's output on the committed inputs.
//!
//! # Tolerances
//!
//! sinter, Keras (TensorFlow/oneDNN) and ONNX Runtime (MLAS) all compute in f32 but sum the
//! dot products in different orders and use different activation approximations, so outputs
//! agree to rounding, not bits. A dot product of `K` terms carries a rounding error of at most
//! `γ_K Σ|x_k w_k|` (Higham), in practice about `sqrt(K) u Σ|x_k w_k|` with `u = 2^-24`. For
//! these fixtures (`K <= 784`, inputs ~ N(0, 4), weights ~ N(0, 1/K)) that is ~1e-6 absolute on
//! pre-activations of size ~1-10. The activation then scales the difference by its slope (at
//! most ~1.1 for every activation here except `exponential`, `selu` ~1.76 and `elu`) and adds
//! its own error (sinter: <= 2 ulp; the peers: a few ulp). Hence per activation:
//!
//! | activations | atol | rtol | why |
//! |---|---|---|---|
//! | linear, relu family, hard_sigmoid, hard_silu | 1e-5 | 1e-5 | slope <= 1.5, exact activation |
//! | sigmoid, tanh, softsign, softmax | 1e-5 | 1e-5 | bounded, slope <= 1 |
//! | elu, selu, gelu, silu, mish, softplus, log_softmax | 2e-5 | 2e-5 | slope <= 1.76, few-ulp exp/log/erf |
//! | exponential | 1e-5 | 5e-5 | relative: `exp` turns an absolute input error into a relative one |
//!
//! A case uses the loosest row among its activations, and a test fails on `|sinter - peer| >
//! atol + rtol |peer|` anywhere. Separately, sinter's error against the manifest's f64
//! reference may not exceed 4x the peer's own error against it plus 4e-6 (sinter sums each dot
//! product in fixed blocks of 128, the peers in blocks of their own: their errors are of the
//! same size, but either may be the smaller on a given fixture).
//!
//! Rows of softmax outputs are compared relatively instead (`common::golden_diff`,
//! `common::f64_diff`): a probability of 1e-9 must be right to the same relative accuracy as
//! one of 0.5, which an absolute `atol` of 1e-5 would never check.

mod common;

use serde_json::Value;
use sinter::plan::CompileOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Cases of `tests/fixtures/manifest.json` (dense models), `tests/fixtures/conv/` (1-D CNNs,
/// from `scripts/make_conv_fixtures.py`) and `tests/fixtures/conv2d/` (2-D CNNs as `.keras`
/// and `.h5`, from `scripts/make_conv2d_fixtures.py`), file names made relative to
/// `tests/fixtures`.
fn manifest() -> Vec<Value> {
    let mut cases = vec![];
    for sub in ["", "conv/", "conv2d/", "recurrent/"] {
        let text =
            std::fs::read_to_string(dir().join(sub).join("manifest.json")).expect("manifest.json");
        let v: Value = serde_json::from_str(&text).expect("manifest is JSON");
        for mut case in v["cases"].as_array().expect("cases").clone() {
            for key in ["model", "input", "expected", "f64"] {
                if let Some(f) = case[key].as_str() {
                    case[key] = Value::String(format!("{sub}{f}"));
                }
            }
            cases.push(case);
        }
    }
    cases
}

/// `(atol, rtol)` for one activation, per the table in the module doc.
fn tolerance(activation: &str) -> (f32, f32) {
    match activation {
        "linear"
        | "relu"
        | "relu6"
        | "leaky_relu"
        | "hard_sigmoid"
        | "hard_silu"
        | "hard_swish"
        | "hard_sigmoid_onnx_default"
        | "sigmoid"
        | "tanh"
        | "softsign"
        | "softmax" => (1e-5, 1e-5),
        "elu" | "selu" | "gelu" | "gelu_tanh" | "silu" | "swish" | "mish" | "softplus"
        | "log_softmax" => (2e-5, 2e-5),
        "exponential" => (1e-5, 5e-5),
        other => panic!("no tolerance stated for activation {other:?}"),
    }
}

fn case_tolerance(case: &Value) -> (f32, f32) {
    case["activations"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| tolerance(s.as_str().unwrap()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .fold((1e-5, 1e-5), |(a, r), (a2, r2)| (a.max(a2), r.max(r2)))
}

fn npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    sinter::io::npy::read_f32(&dir().join(name)).expect(name)
}

fn npy_f64(name: &str) -> Vec<f32> {
    common::read_f64_as_f32(&dir().join(name))
}

struct Outcome {
    name: String,
    vs_peer: f32,
    vs_f64: f32,
    peer_vs_f64: f32,
}

fn check(case: &Value) -> Result<Outcome, String> {
    let name = case["name"].as_str().unwrap().to_string();
    let model_file = dir().join(case["model"].as_str().unwrap());
    let model = sinter::io::load(&model_file).map_err(|e| format!("{name}: load: {e}"))?;
    let (mut shape, mut x) = npy(case["input"].as_str().unwrap());
    let (_, mut want) = npy(case["expected"].as_str().unwrap());
    let mut exact = npy_f64(case["f64"].as_str().unwrap());
    // A time-major model (PyTorch's default): the files hold the batch on another axis;
    // sinter's values are sample-major.
    if let Some(b) = &model.input_batch_axes()[0] {
        let n = shape.remove(b.axis);
        shape.insert(0, n);
        x = b.to_samples(&x, n, None);
    }
    if let Some(b) = &model.output_batch_axes()[0] {
        want = b.to_samples(&want, shape[0], None);
        exact = b.to_samples(&exact, shape[0], None);
    }
    if shape[1..] != *model.input_shape() {
        return Err(format!(
            "{name}: input {:?} vs model {:?}",
            shape,
            model.input_shape()
        ));
    }
    let mut outs = vec![];
    for fuse in [true, false] {
        let plan = Arc::new(
            model
                .compile(&CompileOptions::new().fuse(fuse).max_batch(shape[0]))
                .map_err(|e| format!("{name}: compile: {e}"))?,
        );
        outs.push(plan.run(&x).map_err(|e| format!("{name}: run: {e}"))?);
    }
    let got = &outs[0];
    if got.len() != want.len() {
        return Err(format!(
            "{name}: {} outputs, expected {}",
            got.len(),
            want.len()
        ));
    }
    if outs[0]
        .iter()
        .zip(&outs[1])
        .any(|(a, b)| a.to_bits() != b.to_bits())
    {
        return Err(format!("{name}: fused and separate plans differ"));
    }
    let (atol, rtol) = case_tolerance(case);
    let width = got.len() / shape[0];
    let vs_peer =
        common::golden_diff(got, &want, width, atol, rtol).map_err(|e| format!("{name}: {e}"))?;
    let (vs_f64, peer_vs_f64) =
        common::f64_diff(got, &want, &exact, width).map_err(|e| format!("{name}: {e}"))?;
    Ok(Outcome {
        name,
        vs_peer,
        vs_f64,
        peer_vs_f64,
    })
}

/// Runs every case whose format starts with `format`, which must be `expected` cases.
fn run_all(format: &str, expected: usize) {
    let cases: Vec<Value> = manifest()
        .into_iter()
        .filter(|c| c["format"].as_str().unwrap().starts_with(format) && c.get("error").is_none())
        .collect();
    assert_eq!(cases.len(), expected, "{format} cases in the manifests");
    let mut failures = vec![];
    for case in &cases {
        match check(case) {
            Ok(o) => println!(
                "{:28} max|sinter-peer| {:.2e}  max|sinter-f64| {:.2e}  max|peer-f64| {:.2e}",
                o.name, o.vs_peer, o.vs_f64, o.peer_vs_f64
            ),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `keras`, `keras-json` and `keras-h5` cases of the dense and conv manifests.
const KERAS_CASES: usize = 69;
/// `onnx` cases of the dense and conv manifests.
const ONNX_CASES: usize = 24;

#[test]
fn keras_models_match_keras() {
    run_all("keras", KERAS_CASES);
}

#[test]
fn onnx_models_match_onnx_runtime() {
    run_all("onnx", ONNX_CASES);
}

/// Cases of the manifests marked with `"error"` (from `scripts/make_error_fixtures.py`).
const ERROR_CASES: usize = 4;

/// Cases the manifest marks with `"error"` must be refused with a message containing it (the
/// layer or node, and its class or operator) and naming the file.
#[test]
fn unsupported_models_are_refused_with_context() {
    let mut ran = 0;
    for case in manifest().iter().filter(|c| c.get("error").is_some()) {
        let file = dir().join(case["model"].as_str().unwrap());
        let err = sinter::io::load(&file).err().map(|e| e.to_string());
        let want = case["error"].as_str().unwrap();
        let file_name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains(want) && e.contains(file_name)),
            "{}: expected an error naming {file_name} and containing {want:?}, got {err:?}",
            case["name"]
        );
        ran += 1;
    }
    assert_eq!(ran, ERROR_CASES, "error cases run");
}

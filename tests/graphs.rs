//! Golden tests for graphs with several inputs and outputs, integer inputs and the
//! normalization / merge / embedding layers: every case of `tests/fixtures/graphs/manifest.json`
//! (made by `scripts/make_graph_fixtures.py` with Keras 3.15 and ONNX Runtime 1.32) loads,
//! runs fused and separate with identical bits, and reproduces the producer's outputs.
//!
//! # Tolerances
//!
//! As in `tests/golden.rs` (dot products of K <= 384 terms, slopes <= 1.1 except gelu), with
//! one addition: a batch normalization right after a Dense or Conv1D is folded into that
//! layer's weights (`passes::FoldAffine`), so sinter rounds `x · (W s) + (b s + t)` where Keras
//! rounds `(x · W + b)` and then normalizes it. That moves outputs by a few ulp of the
//! pre-activation, far inside `atol = rtol = 2e-5`. Against the manifest's float64 reference
//! sinter may be at most 4x as far as the producer plus 4e-6 (the same rule as the other
//! golden tests).

mod common;

use serde_json::Value;
use sinter::io::npy::{self, Array};
use sinter::plan::{CompileOptions, Values};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/graphs")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest is JSON")
}

fn f64_npy(name: &str) -> Vec<f32> {
    common::read_f64_as_f32(&dir().join(name))
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Cases the loader refuses on purpose, with the words the message must contain.
const REFUSED: &[(&str, &str)] = &[("layernorm_rms", "rms_scaling")];

fn check(case: &Value) -> Result<String, String> {
    let name = case["name"].as_str().unwrap();
    let model = sinter::io::load(dir().join(case["model"].as_str().unwrap()))
        .map_err(|e| format!("{name}: load: {e}"))?;
    let arrays: Vec<Array> = case["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| npy::read(&dir().join(i["file"].as_str().unwrap())).map(|(_, a)| a))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{name}: inputs: {e}"))?;
    let inputs: Vec<Values> = arrays.iter().map(Array::values).collect();
    let want_names: Vec<&str> = case["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    if model.input_names() != want_names {
        return Err(format!(
            "{name}: inputs {:?}, expected {want_names:?}",
            model.input_names()
        ));
    }
    let outputs = case["outputs"].as_array().unwrap();
    let out_names: Vec<&str> = outputs
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    if model.output_names() != out_names {
        return Err(format!(
            "{name}: outputs {:?}, expected {out_names:?}",
            model.output_names()
        ));
    }
    let mut runs = vec![];
    for fuse in [true, false] {
        let plan = Arc::new(
            model
                .compile(&CompileOptions::new().fuse(fuse).threads(1).max_batch(8))
                .map_err(|e| format!("{name}: compile: {e}"))?,
        );
        runs.push(
            plan.run_all(&inputs)
                .map_err(|e| format!("{name}: run: {e}"))?,
        );
    }
    let batch = runs[0][0].len() / model.output_shape().iter().product::<usize>();
    runs.push(common::split_run(&model, &inputs, batch).map_err(|e| format!("{name}: {e}"))?);
    if runs.iter().any(|r| {
        r.iter()
            .flatten()
            .zip(runs[0].iter().flatten())
            .any(|(a, b)| a.to_bits() != b.to_bits())
    }) {
        return Err(format!("{name}: fused, separate and 2-thread plans differ"));
    }
    let reference = sinter::reference::run_all(&model, &inputs)
        .map_err(|e| format!("{name}: reference: {e}"))?;
    let mut report = format!("{name:24}");
    for (k, o) in outputs.iter().enumerate() {
        let (_, want) = npy::read_f32(&dir().join(o["expected"].as_str().unwrap()))
            .map_err(|e| format!("{name}: {e}"))?;
        let got = &runs[0][k];
        let width = got.len() / batch;
        let vs_producer = common::golden_diff(got, &want, width, 2e-5, 2e-5)
            .map_err(|e| format!("{name}: output {k}: {e}"))?;
        let exact = f64_npy(o["f64"].as_str().unwrap());
        let (vs_f64, peer_vs_f64) = common::f64_diff(got, &want, &exact, width)
            .map_err(|e| format!("{name}: output {k}: {e}"))?;
        // sinter's own f64 oracle agrees with NumPy's.
        let ours: Vec<f32> = reference[k].iter().map(|&v| v as f32).collect();
        let oracle = max_abs(&ours, &exact);
        if oracle > 1e-6 {
            return Err(format!(
                "{name}: output {k}: sinter::reference is {oracle:e} from the NumPy f64 reference"
            ));
        }
        report += &format!(
            "  out{k}: |sinter-producer| {vs_producer:.1e} |sinter-f64| {vs_f64:.1e} |producer-f64| {peer_vs_f64:.1e}"
        );
    }
    Ok(report)
}

/// Runs every `format` case not in `REFUSED`, which must be `expected` cases.
fn run_format(format: &str, expected: usize) {
    let m = manifest();
    let mut failures = vec![];
    let mut ran = 0;
    for case in m["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        if case["format"] != format || REFUSED.iter().any(|(n, _)| *n == name) {
            continue;
        }
        ran += 1;
        match check(case) {
            Ok(r) => println!("{r}"),
            Err(e) => failures.push(e),
        }
    }
    assert_eq!(ran, expected, "{format} cases run");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `keras` cases of graphs/manifest.json, less the refused one.
const KERAS_CASES: usize = 16;
/// `onnx` cases of graphs/manifest.json.
const ONNX_CASES: usize = 7;

#[test]
fn keras_graphs_match_keras() {
    run_format("keras", KERAS_CASES);
}

#[test]
fn onnx_graphs_match_onnx_runtime() {
    run_format("onnx", ONNX_CASES);
}

#[test]
fn unsupported_options_are_refused_by_name() {
    let m = manifest();
    for (name, words) in REFUSED {
        let case = m["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == *name)
            .expect("case in the manifest");
        let err = sinter::io::load(dir().join(case["model"].as_str().unwrap()))
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains(words)),
            "{name}: expected an error naming {words:?}, got {err:?}"
        );
    }
}

/// `Embedding(mask_zero=True) -> GlobalAveragePooling1D -> Dense` (once refused: a loader
/// that ignores the mask gives another answer) averages only the steps whose id is not 0, as
/// Keras does: checked against that mean computed here from the file's weights.
#[test]
fn an_embedding_mask_reaches_the_average_pooling() {
    let model = sinter::io::load(dir().join("hostile_mask_zero.keras")).unwrap();
    let table = &model
        .layer("embedding")
        .unwrap()
        .weights
        .as_ref()
        .unwrap()
        .kernel;
    let head = model.layer("head").unwrap().weights.as_ref().unwrap();
    let bias = head.bias.as_ref().unwrap();
    // Two samples of 10 ids: leading zeros (masked) in the first, none in the second.
    let ids: Vec<i32> = (0..20)
        .map(|i| if i < 3 { 0 } else { i * 7 % 19 + 1 })
        .collect();
    let plan = Arc::new(model.compile(&CompileOptions::default()).unwrap());
    let got = plan.run_all(&[sinter::Values::I32(&ids)]).unwrap();
    for (b, sample) in ids.chunks(10).enumerate() {
        let kept: Vec<usize> = sample
            .iter()
            .filter(|&&t| t != 0)
            .map(|&t| t as usize)
            .collect();
        let mean: Vec<f64> = (0..4)
            .map(|c| {
                kept.iter()
                    .map(|&t| f64::from(table[t * 4 + c]))
                    .sum::<f64>()
                    / kept.len() as f64
            })
            .collect();
        for u in 0..2 {
            let want = f64::from(bias[u])
                + (0..4)
                    .map(|c| mean[c] * f64::from(head.kernel[c * 2 + u]))
                    .sum::<f64>();
            let g = f64::from(got[0][b * 2 + u]);
            assert!(
                (g - want).abs() < 1e-5,
                "sample {b} unit {u}: {g} vs {want}"
            );
        }
    }
}

/// Each hostile file is refused (or its run fails) with a message that says what is wrong.
#[test]
fn hostile_graph_files_are_refused_with_context() {
    let load_err = |f: &str| {
        sinter::io::load(dir().join(f))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let cases = [
        ("hostile_bn_negative_variance.keras", "moving_variance[5]"),
        ("hostile_ln_nan_gamma.keras", "gamma[3] is NaN"),
        ("hostile_bn_axis1.keras", "axis 1"),
    ];
    for (file, words) in cases {
        let e = load_err(file);
        assert!(e.contains(words), "{file}: {e:?} should contain {words:?}");
    }
    // Token ids out of range: the run is refused before any step reads the table.
    let model = sinter::io::load(dir().join("text_cnn.keras")).unwrap();
    let (_, ids) = npy::read(&dir().join("hostile_embedding_range.in0.npy")).unwrap();
    let plan = Arc::new(model.compile(&CompileOptions::default()).unwrap());
    let e = plan.run_all(&[ids.values()]).unwrap_err().to_string();
    assert!(
        e.contains("value 50 (sample 2, position 5)") && e.contains("0..50"),
        "{e}"
    );
}

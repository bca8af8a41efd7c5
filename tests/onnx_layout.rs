//! Every layout the ONNX loader tracks, where it reaches a graph output or is read in ONNX's
//! axis order, against ONNX Runtime (`tests/fixtures/layout/`, made by
//! `scripts/make_layout_fixtures.py`).
//!
//! The loader keeps 1-D feature maps channels-last and tracks a `Transpose(0, 2, 1)` as a way of
//! reading the buffer (`[N, C, W]`), and a global pooling's `[N, C, 1]` as `[N, C]`. Those are
//! internal: the output must have ONNX's shape and values in ONNX's order. Every case checks
//! the shape `summary()` and the plan report, and the values (fused and unfused) within 1e-5.
//! `image_conv` is an RGB image's first convolution, padded on one side of its columns (not
//! causal: 2-D), whose padding step reads the image channels-first.

use serde_json::Value;
use sinter::plan::CompileOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/layout")
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest.json");
    let v: Value = serde_json::from_str(&text).expect("manifest is JSON");
    v["cases"].as_array().expect("cases").clone()
}

fn npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    sinter::io::npy::read_f32(&dir().join(name)).expect(name)
}

/// Cases of layout/manifest.json.
const LAYOUT_CASES: usize = 26;

#[test]
fn every_tracked_layout_reaches_an_output_in_the_fixtures() {
    let layouts: Vec<String> = cases()
        .iter()
        .map(|c| c["layout"].as_str().expect("layout").to_string())
        .collect();
    assert_eq!(layouts.len(), LAYOUT_CASES, "cases in the manifest");
    for want in [
        "channels-first [N, C, W]",
        "global pooling [N, C, 1]",
        "native",
    ] {
        assert!(layouts.iter().any(|l| l == want), "no case for {want}");
    }
}

#[test]
fn outputs_match_onnx_runtime_in_shape_and_values() {
    let mut failures = vec![];
    let cases = cases();
    assert_eq!(cases.len(), LAYOUT_CASES, "cases in the manifest");
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let want_shape: Vec<usize> = case["output_shape"]
            .as_array()
            .expect("output_shape")
            .iter()
            .map(|d| d.as_u64().expect("dim") as usize)
            .collect();
        let model = match sinter::io::load(dir().join(case["model"].as_str().expect("model"))) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{name}: does not load: {e}"));
                continue;
            }
        };
        if model.output_shape() != &want_shape[1..] {
            failures.push(format!(
                "{name}: model output shape {:?}, ONNX Runtime {:?}",
                model.output_shape(),
                &want_shape[1..]
            ));
            continue;
        }
        let shown = format!(
            "(None, {})",
            want_shape[1..]
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !model.summary().contains(&shown) {
            failures.push(format!(
                "{name}: summary lacks {shown}:\n{}",
                model.summary()
            ));
        }
        let (_, x) = npy(case["input"].as_str().expect("input"));
        let (shape, want) = npy(case["expected"].as_str().expect("expected"));
        assert_eq!(shape, want_shape, "{name}: manifest and .npy agree");
        for fuse in [true, false] {
            let opts = CompileOptions::new().fuse(fuse).max_batch(4).threads(1);
            let plan = Arc::new(model.compile(&opts).expect("compiles"));
            assert_eq!(plan.output_shape(), &want_shape[1..], "{name}: plan shape");
            let got = plan.run(&x).expect("runs");
            assert_eq!(got.len(), want.len(), "{name}: output length");
            let bad = got
                .iter()
                .zip(&want)
                .position(|(g, w)| (g - w).abs() > 1e-5 + 1e-5 * w.abs());
            if let Some(i) = bad {
                failures.push(format!(
                    "{name} (fuse={fuse}): value {i} is {}, ONNX Runtime {}",
                    got[i], want[i]
                ));
            }
            // The f64 reference walks the same converted model: it must agree too.
            let reference = sinter::reference::run(&model, &x).expect("reference runs");
            let off = got
                .iter()
                .zip(&reference)
                .map(|(g, r)| (f64::from(*g) - r).abs())
                .fold(0.0, f64::max);
            if off > 1e-5 {
                failures.push(format!("{name}: {off} from the f64 reference"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_channels_first_output_is_a_real_transpose() {
    // The first report, spelled out: [2, 3, 4] in, [2, 4, 3] out, y[b][j][i] = x[b][i][j].
    let model = sinter::io::load(dir().join("transpose.onnx")).expect("loads");
    assert_eq!(model.output_shape(), &[4, 3]);
    let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
    let plan = Arc::new(model.compile(&CompileOptions::default()).expect("compiles"));
    let y = plan.run(&x).expect("runs");
    for b in 0..2 {
        for i in 0..3 {
            for j in 0..4 {
                assert_eq!(y[b * 12 + j * 3 + i], x[b * 12 + i * 4 + j]);
            }
        }
    }
}

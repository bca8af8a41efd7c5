//! ONNX conformance: the backend node tests of onnx 1.23 (`onnx.backend.test.case.node`) for
//! every op sinter claims, materialised by `scripts/make_onnx_node_fixtures.py` into
//! `tests/fixtures/onnx_node/`. Each case must either reproduce the expected outputs (shape,
//! dtype and values within the case's own `rtol`/`atol`, or 1e-5 where the test allows less)
//! or be refused with an error that names the op: a wrong answer, or a refusal that does not say
//! what is missing, fails. The cases in the manifest's `must_pass` list must pass.

use serde_json::Value;
use sinter::io::npy::{self, Array};
use sinter::model::DType;
use sinter::plan::{CompileOptions, Values};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx_node")
}

enum Outcome {
    Pass,
    Refused(String),
}

fn read(name: &str) -> Result<(Vec<usize>, Array), String> {
    npy::read(&dir().join(name)).map_err(|e| format!("{name}: {e}"))
}

/// A tensor in ONNX's order with its batch on `b.axis`, sample-major.
fn sample_major(b: &sinter::model::BatchAxis, a: Array, batch: usize) -> Array {
    match a {
        Array::F32(v) => Array::F32(b.to_samples(&v, batch, None)),
        Array::I32(v) => Array::I32(b.to_samples(&v, batch, None)),
        Array::I64(v) => Array::I64(b.to_samples(&v, batch, None)),
        Array::Bool(v) => Array::Bool(b.to_samples(&v, batch, None)),
    }
}

fn run_case(case: &Value) -> Result<Outcome, String> {
    let name = case["name"].as_str().unwrap();
    let refused = |stage: &str, e: String| Ok(Outcome::Refused(format!("{stage}: {e}")));
    let model = match sinter::io::load(dir().join(format!("{name}.onnx"))) {
        Ok(m) => m,
        Err(e) => return refused("load", e.to_string()),
    };
    let inputs: Vec<(Vec<usize>, Array)> = (0..case["inputs"].as_u64().unwrap())
        .map(|i| read(&format!("{name}.in{i}.npy")))
        .collect::<Result<_, _>>()?;
    if inputs.len() != model.inputs().len() {
        // Constant inputs the test feeds (initializer-less weights) are not graph inputs here.
        return refused(
            "inputs",
            format!(
                "the model takes {} inputs, the test feeds {}",
                model.inputs().len(),
                inputs.len()
            ),
        );
    }
    // The batch: ONNX's first axis, or where a time-major input holds it.
    let axis = |k: usize| {
        model.input_batch_axes()[k]
            .as_ref()
            .map_or(0, |b: &sinter::model::BatchAxis| b.axis)
    };
    let batch = inputs.first().and_then(|(s, _)| s.get(axis(0))).copied();
    let Some(batch) = batch.filter(|&b| b > 0) else {
        return refused("inputs", "a scalar or empty first input".into());
    };
    // sinter takes every tensor sample-major.
    let inputs: Vec<(Vec<usize>, Array)> = inputs
        .into_iter()
        .enumerate()
        .map(|(k, (shape, a))| match &model.input_batch_axes()[k] {
            Some(b) => (shape, sample_major(b, a, batch)),
            None => (shape, a),
        })
        .collect();
    let plan: Arc<sinter::plan::Plan> = match model.compile(&CompileOptions::new().max_batch(batch))
    {
        Ok(p) => Arc::new(p),
        Err(e) => return refused("compile", e.to_string()),
    };
    let values: Vec<Values> = inputs.iter().map(|(_, a)| a.values()).collect();
    let mut session = plan.session().map_err(|e| e.to_string())?;
    let got = match session.run_all(&values) {
        Ok(g) => g,
        Err(e) => return refused("run", e.to_string()),
    };
    let rtol = case["rtol"].as_f64().unwrap_or(1e-3).max(1e-5);
    let atol = case["atol"].as_f64().unwrap_or(1e-7).max(1e-5);
    let n_out = case["outputs"].as_u64().unwrap() as usize;
    if got.len() != n_out {
        return Err(format!("{} outputs, expected {n_out}", got.len()));
    }
    for k in 0..n_out {
        let (shape, want) = read(&format!("{name}.out{k}.npy"))?;
        let info = &plan.outputs()[k];
        let got_shape = info.file_shape(got.batch(), got.seq());
        let want = match &info.batch_axis {
            Some(b) => sample_major(b, want, got.batch()),
            None => want,
        };
        if got_shape != shape {
            return Err(format!(
                "output {k}: shape {got_shape:?}, expected {shape:?}"
            ));
        }
        let expect_int = !matches!(want, Array::F32(_));
        if expect_int != (got.dtype(k) != DType::F32) {
            return Err(format!(
                "output {k}: dtype {:?}, expected {want:?}",
                got.dtype(k)
            ));
        }
        match &want {
            Array::F32(w) => {
                for (i, (&g, &w)) in got.get(k).iter().zip(w).enumerate() {
                    let ok = (g - w).abs() as f64 <= atol + rtol * w.abs() as f64
                        || (g.is_nan() && w.is_nan())
                        || g == w;
                    if !ok {
                        return Err(format!("output {k} value {i}: {g} vs {w}"));
                    }
                }
            }
            Array::I32(w) => {
                let w: Vec<i64> = w.iter().map(|&v| i64::from(v)).collect();
                let g: Vec<i64> = got.ints(k).collect();
                if g != w {
                    return Err(format!("output {k}: {g:?} vs {w:?}"));
                }
            }
            Array::I64(w) => {
                let g: Vec<i64> = got.ints(k).collect();
                if &g != w {
                    return Err(format!("output {k}: {g:?} vs {w:?}"));
                }
            }
            Array::Bool(w) => {
                let w: Vec<i64> = w.iter().map(|&v| i64::from(v)).collect();
                let g: Vec<i64> = got.ints(k).collect();
                if g != w {
                    return Err(format!("output {k}: {g:?} vs {w:?}"));
                }
            }
        }
    }
    Ok(Outcome::Pass)
}

/// Cases of onnx_node/manifest.json.
const NODE_CASES: usize = 385;
/// Names in its `must_pass` list.
const MUST_PASS: usize = 111;

#[test]
fn onnx_node_tests_pass_or_are_refused_by_name() {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest.json");
    let manifest: Value = serde_json::from_str(&text).expect("manifest is JSON");
    let must: Vec<&str> = manifest["must_pass"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(must.len(), MUST_PASS, "must_pass names in the manifest");
    let (mut wrong, mut passed, mut refused) = (vec![], vec![], vec![]);
    let mut ran = 0;
    for case in manifest["cases"].as_array().unwrap() {
        ran += 1;
        let name = case["name"].as_str().unwrap();
        let ops: Vec<&str> = case["ops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        match run_case(case) {
            Ok(Outcome::Pass) => passed.push(name),
            Ok(Outcome::Refused(e)) => {
                // The refusal names an op of the graph, an attribute of it, or the input form.
                // (or, for the whole graph, its opset or its lack of inputs).
                let named = ops.iter().any(|op| e.contains(op))
                    || e.contains("inputs:")
                    || e.contains("input \"")
                    || e.contains("opset")
                    || e.contains("no non-constant input")
                    || e.contains("is a constant");
                if !named {
                    wrong.push(format!("{name}: refusal does not name the op: {e}"));
                }
                if must.contains(&name) {
                    wrong.push(format!("{name}: must pass, refused: {e}"));
                }
                refused.push(format!("{name}: {e}"));
            }
            Err(e) => wrong.push(format!("{name}: WRONG ANSWER: {e}")),
        }
    }
    println!("{} passed, {} refused", passed.len(), refused.len());
    assert_eq!(ran, NODE_CASES, "cases run");
    if std::env::var_os("ONNX_NODE_LIST").is_some() {
        println!("PASSED {}", serde_json::to_string(&passed).unwrap());
        for r in &refused {
            println!("REFUSED {r}");
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The official cases of the rounding and reciprocal ops whose input has no batch axis
/// (`test_round` and the `_example`s, refused above as graphs) run as one sample: the test's
/// own graph with a batch axis put in front of its input and output. Each output is one IEEE
/// operation of its input (`1 / x`, floor, ceil, round half to even), so the bits must equal
/// numpy's.
#[test]
fn rank_one_rounding_cases_run_as_one_sample() {
    use prost::Message;
    use sinter::io::onnx::proto::{self, Dimension};
    for name in [
        "test_reciprocal_example",
        "test_floor_example",
        "test_ceil_example",
        "test_round",
    ] {
        let bytes = std::fs::read(dir().join(format!("{name}.onnx"))).unwrap();
        let mut m = proto::decode(bytes.into()).unwrap();
        let g = m.graph.as_mut().unwrap();
        for v in g.input.iter_mut().chain(g.output.iter_mut()) {
            let t = v
                .r#type
                .as_mut()
                .and_then(|t| t.tensor_type.as_mut())
                .unwrap();
            let batch = Dimension {
                dim_value: None,
                dim_param: Some("N".into()),
            };
            t.shape.as_mut().unwrap().dim.insert(0, batch);
        }
        let model =
            sinter::io::onnx::from_bytes(&m.encode_to_vec(), Path::new(name), None).unwrap();
        let (shape, x) = npy::read_f32(&dir().join(format!("{name}.in0.npy"))).unwrap();
        let (_, want) = npy::read_f32(&dir().join(format!("{name}.out0.npy"))).unwrap();
        assert_eq!(model.input_shape(), shape, "{name}");
        let plan = Arc::new(model.compile(&CompileOptions::new()).unwrap());
        let got = plan.run(&x).unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{name}: {got:?} vs {want:?}");
    }
}

/// Cases of onnx_attrs/manifest.json.
const ATTR_CASES: usize = 25;

/// 1-D window attributes the node tests cover only in 2-D (`tests/fixtures/onnx_attrs/`,
/// `scripts/make_onnx_attr_fixtures.py`, against ONNX Runtime): asymmetric and explicit pads,
/// SAME_UPPER / SAME_LOWER with strides, dilated convolutions, `ceil_mode`, and
/// `count_include_pad=0`; and 2-D `Pad`, `Resize` / `Upsample` (nearest and linear, each
/// coordinate mode, scales or sizes) and a grouped `Conv`. What sinter does not do
/// (`count_include_pad=1` with padding, dilated pooling, reflect padding, cubic or
/// fractional resizing, ...) is refused naming the attribute or input.
#[test]
fn window_and_resample_attributes_match_onnx_runtime() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx_attrs");
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json");
    let manifest: Value = serde_json::from_str(&text).expect("manifest is JSON");
    let mut failures = vec![];
    let mut ran = 0;
    for case in manifest["cases"].as_array().unwrap() {
        ran += 1;
        let name = case["name"].as_str().unwrap();
        let must = case["must_pass"].as_bool().unwrap();
        let loaded = sinter::io::load(dir.join(format!("{name}.onnx")));
        let model = match (loaded, must) {
            (Ok(m), true) => m,
            (Err(e), false) => {
                let e = e.to_string();
                let attrs = case["attrs"].as_object().unwrap();
                if !attrs.keys().any(|k| e.contains(k.as_str())) {
                    failures.push(format!("{name}: refusal names no attribute: {e}"));
                }
                continue;
            }
            (Ok(_), false) => {
                failures.push(format!("{name}: loaded, but sinter cannot do it"));
                continue;
            }
            (Err(e), true) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let (shape, x) = npy::read_f32(&dir.join(format!("{name}.in0.npy"))).unwrap();
        let (want_shape, want) = npy::read_f32(&dir.join(format!("{name}.out0.npy"))).unwrap();
        let plan = Arc::new(
            model
                .compile(&CompileOptions::new().max_batch(shape[0]))
                .unwrap(),
        );
        let mut got_shape = vec![shape[0]];
        got_shape.extend(plan.output_shape());
        if got_shape != want_shape {
            failures.push(format!(
                "{name}: shape {got_shape:?}, expected {want_shape:?}"
            ));
            continue;
        }
        let got = plan.run(&x).unwrap();
        if let Some((i, (g, w))) = got
            .iter()
            .zip(&want)
            .enumerate()
            .find(|(_, (g, w))| (*g - *w).abs() > 1e-5 + 1e-5 * w.abs())
        {
            failures.push(format!("{name}: value {i}: {g} vs ONNX Runtime {w}"));
        }
    }
    assert_eq!(ran, ATTR_CASES, "cases run");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

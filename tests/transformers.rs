//! Transformer encoders as the real tools write them (`tests/fixtures/transformers/`, made by
//! `scripts/make_transformer_fixtures.py`): a Hugging Face `BertModel` and a
//! `DistilBertForSequenceClassification` through both PyTorch exporters, `nn.TransformerEncoder`
//! (post- and pre-norm under a boolean padding mask, causal) and `nn.MultiheadAttention`
//! called directly, through both, Keras `MultiHeadAttention` with
//! a causal and a padding mask, as `.keras` and `.h5`. Each case loads (the ONNX ones at sequence length 8), reproduces the framework's
//! own outputs within 2e-5 x max(1, |ref|), and gives identical bits fused and separate, on
//! every tier and on two threads. And each padded sample of the batch gives, at its real
//! positions, the bits of the same sequence run alone at its own length (ONNX cases, whose
//! sequence axis is symbolic).

mod common;

use serde_json::Value;
use sinter::Isa;
use sinter::io::LoadOptions;
use sinter::io::npy::{self, Array};
use sinter::model::Model;
use sinter::plan::{CompileOptions, Values};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/transformers")
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest.json");
    let v: Value = serde_json::from_str(&text).expect("manifest is JSON");
    v["cases"].as_array().expect("cases").clone()
}

fn load(case: &Value, seq: usize) -> Model {
    let path = dir().join(case["model"].as_str().unwrap());
    sinter::io::load_with(&path, &LoadOptions::new().seq(seq))
        .unwrap_or_else(|e| panic!("{}: {e}", case["name"]))
}

fn run(model: &Model, opts: CompileOptions, inputs: &[Values<'_>]) -> Vec<Vec<f32>> {
    let plan = Arc::new(model.compile(&opts).expect("compiles"));
    plan.run_all(inputs).expect("runs")
}

fn bits(v: &[Vec<f32>]) -> Vec<Vec<u32>> {
    v.iter()
        .map(|o| o.iter().map(|x| x.to_bits()).collect())
        .collect()
}

/// Sample `b` of an input of `seq` positions (times `per` values each), cut to `len`.
fn cut(a: &Array, b: usize, seq: usize, per: usize, len: usize) -> Array {
    let r = b * seq * per..(b * seq + len) * per;
    match a {
        Array::F32(v) => Array::F32(v[r].to_vec()),
        Array::I32(v) => Array::I32(v[r].to_vec()),
        Array::I64(v) => Array::I64(v[r].to_vec()),
        Array::Bool(v) => Array::Bool(v[r].to_vec()),
    }
}

#[test]
fn encoders_match_their_frameworks_and_keep_every_invariant() {
    let cases = cases();
    assert_eq!(
        cases.len(),
        34,
        "2 HF models x 2 exporters (BERT also at opset 23), 4 HF models called without \
         token_type_ids x 2 exporters, 3 nn.TransformerEncoders and an nn.MultiheadAttention \
         x 2 exporters, 6 Keras models x 2 formats, the opset-23 Attention on 3-D inputs"
    );
    let mut packed = vec![];
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let seq = case["seq"].as_u64().unwrap() as usize;
        let model = load(case, seq);
        let arrays: Vec<Array> = case["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                npy::read(&dir().join(i["file"].as_str().unwrap()))
                    .unwrap()
                    .1
            })
            .collect();
        let values: Vec<Values> = arrays.iter().map(Array::values).collect();
        let lens: Vec<usize> = case["lens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_u64().unwrap() as usize)
            .collect();
        let batch = lens.len();
        let opts = || CompileOptions::new().threads(1).max_batch(batch);
        let got = run(&model, opts(), &values);
        let want = bits(&got);
        // Self-attention's projections are one GEMM in the fused plan (the bits are the
        // separate plan's, checked below).
        let plan = model.compile(&opts()).unwrap();
        if format!("{plan}").contains("q k v packed") {
            packed.push(name.to_string());
        }
        assert_eq!(
            bits(&run(&model, opts().fuse(false), &values)),
            want,
            "{name}: fused != separate"
        );
        for isa in Isa::available() {
            let g = run(&model, opts().isa(Some(isa)), &values);
            assert_eq!(bits(&g), want, "{name}: {isa} differs");
        }
        // Compiled consuming the model (weights freed as packed): the same plan.
        let owned = model.clone().into_plan(&opts()).unwrap();
        assert_eq!(
            bits(&owned.run_all(&values).unwrap()),
            want,
            "{name}: into_plan"
        );
        let split = common::split_run(&model, &values, batch).unwrap();
        assert_eq!(bits(&split), want, "{name}: 2 threads differ");
        // The framework's outputs.
        for (k, o) in case["outputs"].as_array().unwrap().iter().enumerate() {
            let (_, reference) = npy::read(&dir().join(o["file"].as_str().unwrap())).unwrap();
            let Array::F32(reference) = reference else {
                panic!("{name}: float outputs")
            };
            assert_eq!(reference.len(), got[k].len(), "{name} output {k}");
            for (i, (&g, &r)) in got[k].iter().zip(&reference).enumerate() {
                let tol = 2e-5 * r.abs().max(1.0);
                assert!(
                    (g - r).abs() <= tol,
                    "{name} output {k} value {i}: {g} vs {r}"
                );
            }
        }
        // A Keras input of any length (`None`): the plan for 8 runs 5, as Keras does, with
        // the bits of the model loaded for 5.
        if let Some(short) = case.get("short") {
            let len = short["seq"].as_u64().unwrap() as usize;
            let read = |v: &Value| {
                npy::read(&dir().join(v["file"].as_str().unwrap()))
                    .unwrap()
                    .1
            };
            let x: Vec<Array> = short["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(read)
                .collect();
            let vals: Vec<Values> = x.iter().map(Array::values).collect();
            let plan = Arc::new(model.compile(&opts()).unwrap());
            assert_eq!(plan.seq_range(), Some(1..=seq), "{name}");
            let got = plan.run_seq(len, &vals).unwrap();
            let Array::F32(want) = read(&short["outputs"][0]) else {
                panic!("{name}: float outputs")
            };
            assert_eq!(got[0].len(), want.len(), "{name}: short output");
            for (i, (&g, &r)) in got[0].iter().zip(&want).enumerate() {
                assert!(
                    (g - r).abs() <= 2e-5 * r.abs().max(1.0),
                    "{name} short {i}: {g} vs {r}"
                );
            }
            let fixed = run(&load(case, len), opts(), &vals);
            assert_eq!(
                bits(&got),
                bits(&fixed),
                "{name}: the plan for {seq} at {len}"
            );
            // As Keras prints it: the sequence axis is None.
            let summary = model.summary();
            assert!(summary.contains("(None, None"), "{name}:\n{summary}");
        }
        // The TorchScript exporter writes nn.MultiheadAttention's key length as a constant:
        // the graph runs only at its export length, and sinter says so.
        let torch_attention = name.starts_with("te_") || name.starts_with("mha.");
        if torch_attention && name.ends_with(".ts") {
            let plan = model.compile(&opts()).unwrap();
            assert_eq!(plan.seq_range(), None, "{name}");
            assert!(
                model.origin().contains("export length"),
                "{name}: {}",
                model.origin()
            );
            continue;
        }
        // Alone at its own length == padded in the batch (a symbolic sequence axis only).
        let hf = ["bert", "distilbert", "electra", "albert", "roberta"];
        if !hf.iter().any(|p| name.starts_with(p)) && !torch_attention {
            continue;
        }
        let per_out: Vec<usize> = got.iter().map(|o| o.len() / batch).collect();
        // One plan for every length up to `seq`: the exporter's position constants are
        // proven to be prefixes of the longest.
        let variable = Arc::new(model.compile(&opts().threads(2)).unwrap());
        assert_eq!(variable.seq_range(), Some(1..=seq), "{name}");
        let mut session = variable.session().unwrap();
        for (b, &len) in lens.iter().enumerate().filter(|&(_, &l)| l < seq && l > 0) {
            let short = load(case, len);
            let alone: Vec<Array> = arrays
                .iter()
                .map(|a| cut(a, b, seq, a.values().len() / (batch * seq), len))
                .collect();
            let vals: Vec<Values> = alone.iter().map(Array::values).collect();
            let out = run(&short, CompileOptions::new().threads(1).max_batch(1), &vals);
            let var = session.run_seq(len, &vals).unwrap();
            for (k, o) in out.iter().enumerate() {
                let v: Vec<u32> = var.get(k).iter().map(|x| x.to_bits()).collect();
                assert_eq!(
                    bits(std::slice::from_ref(o))[0],
                    v,
                    "{name}: length {len} in the plan for {seq}"
                );
            }
            // Without a mask or causality, padding changes the other positions.
            if !variable.pads() {
                continue;
            }
            // Per-position outputs: the real positions; pooled ones (BERT's pooler, the
            // classifier's logits): all of it.
            let rows: Vec<usize> = per_out
                .iter()
                .zip(model.outputs())
                .map(|(&p, &o)| match model.nodes()[o].shape.first() {
                    Some(&s) if s == seq => len * p / seq,
                    _ => p,
                })
                .collect();
            for k in 0..rows.len() {
                let padded = &got[k][b * per_out[k]..][..rows[k]];
                let same = out[k][..rows[k]]
                    .iter()
                    .zip(padded)
                    .all(|(a, p)| a.to_bits() == p.to_bits());
                assert!(
                    same,
                    "{name}: sample {b} of length {len} alone != padded, output {k}"
                );
            }
        }
    }
    // Every self-attention fixture; the four without attention have nothing to fuse.
    let apart: Vec<&str> = cases
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .filter(|n| !packed.iter().any(|p| p == n))
        .collect();
    assert_eq!(
        apart,
        ["einsum.h5", "einsum.keras", "text_avg.h5", "text_avg.keras"],
        "cases whose projections stay apart"
    );
}

#[test]
fn a_symbolic_sequence_axis_needs_a_size() {
    let case = &cases()[0];
    let path = dir().join(case["model"].as_str().unwrap());
    let err = sinter::io::load(&path).unwrap_err().to_string();
    assert!(err.contains("--seq") || err.contains("symbolic"), "{err}");
}

#[test]
fn bad_encoder_inputs_are_errors_not_panics() {
    let case = cases()
        .into_iter()
        .find(|c| c["name"] == "bert.ts")
        .expect("bert.ts");
    let model = load(&case, 8);
    let plan = Arc::new(
        model
            .compile(&CompileOptions::new().threads(1).max_batch(2))
            .unwrap(),
    );
    let ids = vec![1i64; 16];
    let tt = vec![0i64; 16];
    // A mask of another length than the ids.
    let short = vec![1i64; 14];
    let err = plan
        .run_all(&[Values::I64(&ids), Values::I64(&short), Values::I64(&tt)])
        .unwrap_err()
        .to_string();
    assert!(!err.is_empty());
    // A sequence longer than the plan's.
    let mut session = plan.session().unwrap();
    let long = vec![1i64; 18];
    let err = session
        .run_seq(
            9,
            &[Values::I64(&long), Values::I64(&long), Values::I64(&long)],
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 to 8"), "{err}");
    // An id outside the vocabulary (50).
    let mut bad = ids.clone();
    bad[3] = 50;
    let mask = vec![1i64; 16];
    let err = plan
        .run_all(&[Values::I64(&bad), Values::I64(&mask), Values::I64(&tt)])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("50") && err.contains("word_embeddings"),
        "{err}"
    );
    // A mask that keeps no key: what the exporter's graph gives (Hugging Face's SDPA path
    // zeroes such a row), finite either way.
    let none = vec![0i64; 16];
    let out = plan
        .run_all(&[Values::I64(&ids), Values::I64(&none), Values::I64(&tt)])
        .unwrap();
    assert!(out.iter().flatten().all(|v| v.is_finite()));
}

/// A sequence whose padding mask marks every position: PyTorch's attention (and ONNX Runtime
/// on its export) gives NaN, the softmax of scores that are all minus infinity; so does
/// sinter, and the other samples of the batch keep their bits.
#[test]
fn a_sequence_that_is_all_padding_is_nan_as_in_pytorch() {
    let case = cases()
        .into_iter()
        .find(|c| c["name"] == "te_post.dynamo")
        .expect("te_post.dynamo");
    let model = load(&case, 8);
    let plan = Arc::new(
        model
            .compile(&CompileOptions::new().threads(1).max_batch(3))
            .unwrap(),
    );
    let read = |k: usize| {
        npy::read(&dir().join(case["inputs"][k]["file"].as_str().unwrap()))
            .unwrap()
            .1
    };
    let (Array::F32(x), Array::Bool(pad)) = (read(0), read(1)) else {
        panic!("float x, bool padding mask")
    };
    let before = plan
        .run_all(&[Values::F32(&x), Values::Bool(&pad)])
        .unwrap();
    let mut all = pad.clone();
    all[8..16].fill(true);
    let after = plan
        .run_all(&[Values::F32(&x), Values::Bool(&all)])
        .unwrap();
    let per = 8 * 16;
    assert!(after[0][per..2 * per].iter().all(|v| v.is_nan()));
    for b in [0, 2] {
        assert_eq!(
            bits(&[after[0][b * per..(b + 1) * per].to_vec()]),
            bits(&[before[0][b * per..(b + 1) * per].to_vec()]),
            "sample {b}"
        );
    }
    // The mask as int64 0 and 1 is the same mask; any other number is an error, not a guess.
    let ints: Vec<i64> = pad.iter().map(|&p| i64::from(p)).collect();
    let same = plan
        .run_all(&[Values::F32(&x), Values::I64(&ints)])
        .unwrap();
    assert_eq!(bits(&same), bits(&before));
    let mut two = ints.clone();
    two[3] = 2;
    let err = plan
        .run_all(&[Values::F32(&x), Values::I64(&two)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a bool"), "{err}");
}

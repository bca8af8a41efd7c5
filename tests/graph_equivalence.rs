//! The invariants on random graphs with several inputs and outputs, token ids, normalization
//! and merge layers: fused == separate, every tier, 1-4 threads, a row alone == that row in
//! the batch (all bit for bit, hostile float values included), and agreement with the f64
//! reference for finite inputs.
//!
//! Each graph: a float input `x [d]` and an int32 input `ids [t]`; a trunk of random blocks on
//! `x` (Dense with an activation, Dense -> BatchNormalization (folded), Dense(act) ->
//! BatchNormalization (a scale+shift epilogue), Dense -> LayerNormalization / RMSNormalization
//! (a row epilogue), a residual merge of two Dense branches followed by a standalone
//! normalization, Rescaling / Normalization); `Embedding(ids) -> Flatten`; outputs: a Dense
//! head on the trunk and a Dense(softmax) head on `concat(trunk, embedding)`.
//!
//! `PROPTEST_CASES=N` raises the number of cases.

use proptest::prelude::*;
use sinter::model::init::SplitMix64;
use sinter::model::{
    ActivationLayer, BatchNormalization, Concatenate, DType, Dense, Embedding, Flatten, Input,
    LayerNormalization, Merge, Model, Normalization, Rescaling, Tensor, apply,
};
use sinter::plan::{CompileOptions, Values};
use sinter::{Activation, Isa, reference};
use std::sync::Arc;

#[derive(Clone, Debug)]
enum Block {
    Dense { units: usize, act: usize },
    DenseBn { units: usize },
    DenseActBn { units: usize, act: usize },
    DenseNorm { units: usize, rms: bool },
    Residual { merge: usize, norm: bool },
    Rescale,
    Normalize,
}

#[derive(Clone, Debug)]
struct Net {
    d: usize,
    t: usize,
    vocab: usize,
    dim: usize,
    blocks: Vec<Block>,
    batch: usize,
    seed: u64,
}

const MERGES: [Merge; 6] = [
    Merge::Add,
    Merge::Subtract,
    Merge::Multiply,
    Merge::Average,
    Merge::Maximum,
    Merge::Minimum,
];

fn vecs(r: &mut SplitMix64, n: usize, scale: f32, offset: f32) -> Vec<f32> {
    (0..n).map(|_| offset + r.next_signed() * scale).collect()
}

fn dense(r: &mut SplitMix64, x: &Tensor, units: usize, act: Activation) -> Tensor {
    let k = x.shape()[0];
    let s = (3.0 / k as f32).sqrt();
    Dense::new(units)
        .activation(act)
        .weights(vecs(r, k * units, s, 0.0), Some(vecs(r, units, 0.3, 0.0)))
        .call(x)
        .unwrap()
}

fn bn(r: &mut SplitMix64, x: &Tensor) -> Tensor {
    let c = x.shape()[0];
    BatchNormalization::new()
        .weights(
            vecs(r, c, 0.5, 1.0),
            vecs(r, c, 0.2, 0.0),
            vecs(r, c, 0.5, 0.0),
            vecs(r, c, 0.5, 1.0),
        )
        .call(x)
        .unwrap()
}

fn layer_norm(r: &mut SplitMix64, x: &Tensor, rms: bool) -> Tensor {
    let c = x.shape()[0];
    let l = if rms {
        LayerNormalization::rms()
    } else {
        LayerNormalization::new()
    };
    l.weights(vecs(r, c, 0.5, 1.0), vecs(r, c, 0.2, 0.0))
        .call(x)
        .unwrap()
}

impl Net {
    fn model(&self) -> Model {
        let mut r = SplitMix64::new(self.seed);
        let x = Input::new([self.d]).unwrap();
        let ids = Input::typed([self.t], DType::I32, Some("ids")).unwrap();
        let acts = Activation::ALL;
        let mut h = x.clone();
        for b in &self.blocks {
            h = match *b {
                Block::Dense { units, act } => dense(&mut r, &h, units, acts[act]),
                Block::DenseBn { units } => {
                    let d = dense(&mut r, &h, units, Activation::Linear);
                    let d = bn(&mut r, &d);
                    ActivationLayer::new(Activation::RELU).call(&d).unwrap()
                }
                Block::DenseActBn { units, act } => {
                    let d = dense(&mut r, &h, units, acts[act]);
                    bn(&mut r, &d)
                }
                Block::DenseNorm { units, rms } => {
                    let d = dense(&mut r, &h, units, Activation::Linear);
                    layer_norm(&mut r, &d, rms)
                }
                Block::Residual { merge, norm } => {
                    let w = h.shape()[0];
                    let a = dense(&mut r, &h, w, Activation::Tanh);
                    let m = apply(
                        sinter::model::Layer::Merge(MERGES[merge]),
                        None,
                        &[&h, &a],
                        None,
                    )
                    .unwrap();
                    if norm {
                        layer_norm(&mut r, &m, false)
                    } else {
                        bn(&mut r, &m)
                    }
                }
                Block::Rescale => Rescaling::new(0.5, -0.25).call(&h).unwrap(),
                Block::Normalize => {
                    let c = h.shape()[0];
                    Normalization::new(vecs(&mut r, c, 0.5, 0.0), vecs(&mut r, c, 0.4, 1.0))
                        .call(&h)
                        .unwrap()
                }
            };
        }
        let table = vecs(&mut r, self.vocab * self.dim, 1.0, 0.0);
        let e = Embedding::new(self.vocab, self.dim)
            .weights(table)
            .call(&ids)
            .unwrap();
        let e = Flatten::new().call(&e).unwrap();
        let head = dense(&mut r, &h, 3, Activation::Linear);
        let cat = Concatenate::new(-1).call(&[&h, &e]).unwrap();
        let probs = dense(&mut r, &cat, 4, Activation::Softmax);
        Model::new([&x, &ids], [&head, &probs]).unwrap()
    }

    /// `(x, ids)`: floats (with `specials`, about one in seven ±0, a subnormal, ±1e30, ±inf or
    /// NaN) and ids within the vocabulary.
    fn inputs(&self, specials: bool) -> (Vec<f32>, Vec<i32>) {
        const S: [f32; 8] = [
            0.0,
            -0.0,
            1e-40,
            1e30,
            -1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        let mut r = SplitMix64::new(self.seed ^ 0xabcd);
        let x = (0..self.batch * self.d)
            .map(|i| {
                if specials && i % 7 == 3 {
                    S[(r.next_u64() % 8) as usize]
                } else {
                    r.next_signed() * 2.0
                }
            })
            .collect();
        let ids = (0..self.batch * self.t)
            .map(|_| (r.next_u64() % self.vocab as u64) as i32)
            .collect();
        (x, ids)
    }
}

fn block() -> impl Strategy<Value = Block> {
    let units = prop_oneof![1usize..12, 12usize..80, Just(130usize)];
    let act = 0..Activation::ALL.len();
    prop_oneof![
        (units.clone(), act.clone()).prop_map(|(units, act)| Block::Dense { units, act }),
        units.clone().prop_map(|units| Block::DenseBn { units }),
        (units.clone(), act).prop_map(|(units, act)| Block::DenseActBn { units, act }),
        (units, any::<bool>()).prop_map(|(units, rms)| Block::DenseNorm { units, rms }),
        (0..MERGES.len(), any::<bool>()).prop_map(|(merge, norm)| Block::Residual { merge, norm }),
        Just(Block::Rescale),
        Just(Block::Normalize),
    ]
}

fn net() -> impl Strategy<Value = Net> {
    (
        1usize..40,
        1usize..6,
        1usize..30,
        1usize..9,
        prop::collection::vec(block(), 1..5),
        1usize..20,
        any::<u64>(),
    )
        .prop_map(|(d, t, vocab, dim, blocks, batch, seed)| Net {
            d,
            t,
            vocab,
            dim,
            blocks,
            batch,
            seed,
        })
}

fn run(model: &Model, opts: CompileOptions, x: &[f32], ids: &[i32]) -> Vec<Vec<f32>> {
    let plan = Arc::new(model.compile(&opts).expect("compiles"));
    plan.run_all(&[Values::F32(x), Values::I32(ids)])
        .expect("runs")
}

fn bits(v: &[Vec<f32>]) -> Vec<u32> {
    v.iter().flatten().map(|x| x.to_bits()).collect()
}

fn opts(fuse: bool, batch: usize) -> CompileOptions {
    CompileOptions::new().fuse(fuse).max_batch(batch).threads(1)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn graphs_keep_every_invariant(net in net(), specials in any::<bool>()) {
        let model = net.model();
        let (x, ids) = net.inputs(specials);
        let want = bits(&run(&model, opts(true, net.batch), &x, &ids));
        let separate = bits(&run(&model, opts(false, net.batch), &x, &ids));
        prop_assert!(want == separate, "fused vs separate");
        for isa in Isa::available() {
            let got = bits(&run(&model, opts(true, net.batch).isa(Some(isa)), &x, &ids));
            prop_assert!(got == want, "isa {}", isa);
        }
        for threads in [2, 4] {
            let got = bits(&run(&model, opts(true, net.batch).threads(threads), &x, &ids));
            prop_assert!(got == want, "threads {}", threads);
        }
        let full = run(&model, opts(true, net.batch), &x, &ids);
        let plan = Arc::new(model.compile(&opts(true, net.batch)).unwrap());
        let mut s = plan.session().unwrap();
        for r in [0, net.batch / 2, net.batch - 1] {
            let xr = &x[r * net.d..(r + 1) * net.d];
            let ir = &ids[r * net.t..(r + 1) * net.t];
            let alone = s.run_all(&[Values::F32(xr), Values::I32(ir)]).unwrap();
            for (k, o) in plan.outputs().iter().enumerate() {
                let a: Vec<u32> = alone.get(k).iter().map(|v| v.to_bits()).collect();
                let b: Vec<u32> = full[k][r * o.len..(r + 1) * o.len].iter().map(|v| v.to_bits()).collect();
                prop_assert!(a == b, "row {} output {}", r, k);
            }
        }
    }

    #[test]
    fn graphs_match_the_f64_reference(net in net()) {
        let model = net.model();
        let (x, ids) = net.inputs(false);
        let got = run(&model, opts(true, net.batch), &x, &ids);
        let want = reference::run_all(&model, &[Values::F32(&x), Values::I32(&ids)]).unwrap();
        for (g, w) in got.iter().zip(&want) {
            for (i, (&a, &b)) in g.iter().zip(w).enumerate() {
                if !b.is_finite() {
                    continue;
                }
                // Normalizations divide by a row's spread (at least sqrt(eps)), multiplies
                // square magnitudes: a loose relative bound, far above f32 rounding.
                let tol = 2e-3 * (1.0 + b.abs());
                prop_assert!(((a as f64) - b).abs() <= tol, "value {}: {} vs f64 {}", i, a, b);
            }
        }
    }
}

/// Missing, extra and mistyped inputs, and token ids out of range, are errors naming the input.
#[test]
fn bad_inputs_are_errors_that_name_the_input() {
    let net = Net {
        d: 4,
        t: 3,
        vocab: 5,
        dim: 2,
        blocks: vec![Block::DenseNorm {
            units: 6,
            rms: false,
        }],
        batch: 2,
        seed: 1,
    };
    let model = net.model();
    let plan = Arc::new(model.compile(&opts(true, 4)).unwrap());
    let (x, ids) = net.inputs(false);
    let err = |v: &[Values]| plan.run_all(v).unwrap_err().to_string();
    assert!(err(&[Values::F32(&x)]).contains("1 inputs given, the model takes 2"));
    assert!(err(&[Values::F32(&x), Values::I32(&ids), Values::F32(&x)]).contains("3 inputs"));
    assert!(
        err(&[Values::I32(&ids), Values::I32(&ids)])
            .contains("int32 values given for a float32 input")
    );
    assert!(
        err(&[Values::F32(&x), Values::I32(&ids[..3])])
            .contains("1 samples, but the first input has 2")
    );
    let bad = [0, 1, 5, 0, 0, 0];
    let e = err(&[Values::F32(&x), Values::I32(&bad)]);
    assert!(
        e.contains("\"ids\"") && e.contains("value 5 (sample 0, position 2)"),
        "{e}"
    );
    let neg = [0i64, -1, 0, 0, 0, 0];
    assert!(err(&[Values::F32(&x), Values::I64(&neg)]).contains("value -1"));
    // Whole-number floats are ids (Keras casts them); fractions are not.
    let ok = plan.run_all(&[
        Values::F32(&x),
        Values::F32(&[0.0, 1.0, 4.0, 2.0, 3.0, 0.0]),
    ]);
    assert!(ok.is_ok());
    assert!(
        err(&[
            Values::F32(&x),
            Values::F32(&[0.5, 1.0, 4.0, 2.0, 3.0, 0.0])
        ])
        .contains("value 0.5")
    );
    assert!(
        err(&[
            Values::F32(&x),
            Values::F32(&[f32::NAN, 1.0, 4.0, 2.0, 3.0, 0.0])
        ])
        .contains("NaN")
    );
    // A one-input call on a two-input model says what to use instead.
    let mut s = plan.session().unwrap();
    assert!(s.run(&x).unwrap_err().to_string().contains("run_all"));
}

/// An integer input cannot be an output (nothing computes it): a compile error, not a panic.
#[test]
fn an_integer_input_as_output_is_refused() {
    let ids = Input::typed([3], DType::I32, Some("ids")).unwrap();
    let x = Input::new([2]).unwrap();
    let y = Dense::new(2).call(&x).unwrap();
    let model = Model::new([&x, &ids], [&y, &ids]).unwrap();
    let e = model
        .compile(&CompileOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"ids\" is an integer input"), "{e}");
    // The f64 reference checks lengths too.
    let e = reference::run_all(&model, &[Values::F32(&[1.0; 3]), Values::I32(&[0; 3])]);
    assert!(e.is_err());
}

/// Bad normalization weights are refused when the model is built, naming the layer.
#[test]
fn bad_normalization_weights_are_refused() {
    let x = Input::new([3]).unwrap();
    let e = |r: sinter::Result<Tensor>| r.unwrap_err().to_string();
    let bn = |g: Vec<f32>, v: Vec<f32>| {
        BatchNormalization::new()
            .name("bn")
            .weights(g, vec![0.0; 3], vec![0.0; 3], v)
            .call(&x)
    };
    assert!(e(bn(vec![1.0; 2], vec![1.0; 3])).contains("gamma has 2 values, expected 3"));
    assert!(e(bn(vec![1.0; 3], vec![1.0, -1.0, 1.0])).contains("moving_variance[1] is -1"));
    assert!(e(bn(vec![1.0, f32::NAN, 1.0], vec![1.0; 3])).contains("gamma[1] is NaN"));
    let ln = LayerNormalization::new()
        .name("ln")
        .weights(vec![1.0; 4], vec![0.0; 3])
        .call(&x);
    assert!(e(ln).contains("\"ln\": gamma has 4 values"));
    let ln = LayerNormalization::new().epsilon(-1.0).call(&x);
    assert!(e(ln).contains("epsilon -1"));
    let ids = Input::typed([2], DType::I64, None).unwrap();
    let d = Dense::new(2).call(&ids);
    assert!(e(d).contains("only an Embedding reads integer ids"));
    assert!(
        e(Embedding::new(4, 2).weights(vec![0.0; 7]).call(&ids))
            .contains("kernel has 7 values, expected 8")
    );
}

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

mod common;

use common::bound::{self, Bounded};
use proptest::prelude::*;
use sinter::model::init::SplitMix64;
use sinter::model::{
    ActivationLayer, BatchNormalization, Concatenate, DType, Dense, Embedding, Flatten, Input,
    LayerNormalization, Merge, Model, Normalization, Rescaling, Tensor, apply,
};
use sinter::model::{DenseConfig, EmbeddingConfig, NormalizationConfig, RescalingConfig};
use sinter::model::{Layer, RowNorm};
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

    /// `(x, ids)`: floats (with `specials`, hostile values placed per row and per position:
    /// `common::input_rows`) and ids within the vocabulary.
    fn inputs(&self, specials: bool) -> (Vec<f32>, Vec<i32>) {
        let x = common::input_rows(self.seed, self.batch, self.d, specials);
        let mut r = SplitMix64::new(self.seed ^ 0xabcd);
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
    #![proptest_config(ProptestConfig::with_cases(common::cases(48)))]

    #[test]
    fn graphs_keep_every_invariant(net in net(), specials in any::<bool>()) {
        let model = net.model();
        let (x, ids) = net.inputs(specials);
        let want = bits(&run(&model, opts(true, net.batch), &x, &ids));
        prop_assume!(want.iter().any(|&b| !f32::from_bits(b).is_nan()), "every output NaN");
        let separate = bits(&run(&model, opts(false, net.batch), &x, &ids));
        prop_assert!(want == separate, "fused vs separate");
        for isa in Isa::available() {
            let got = bits(&run(&model, opts(true, net.batch).isa(Some(isa)), &x, &ids));
            prop_assert!(got == want, "isa {}", isa);
        }
        // Every step split wherever its shape allows; a graph with nothing to split tells
        // nothing about threads (rejected: a plan that never splits rejects every case).
        for threads in [2, 4] {
            let plan = Arc::new(model.compile(&opts(true, net.batch).threads(threads).parallel_flops(0)).unwrap());
            let got = bits(&plan.run_all(&[Values::F32(&x), Values::I32(&ids)]).unwrap());
            prop_assume!(plan.split_steps() > 0, "nothing split");
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

    /// Finite inputs: every output within a rigorous rounding bound of an f64 evaluation of the
    /// graph (`bounded`), carried node by node from the roundings sinter performs.
    #[test]
    fn graphs_match_the_f64_reference(net in net()) {
        let model = net.model();
        let (x, ids) = net.inputs(false);
        let got = run(&model, opts(true, net.batch), &x, &ids);
        let want = bounded(&model, &x, &ids);
        let mut checked = 0;
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            checked += bound::check(&format!("output {k}"), g, w).map_err(TestCaseError::fail)?;
        }
        // A LayerNormalization of nearly collinear values (a Dense of one unit widened
        // again) has no finite bound; such a case checks nothing and is rejected. A check
        // that never applies fails by rejecting every case.
        prop_assume!(checked > 0, "every bound infinite");
    }
}

/// The graph's outputs in f64, each value with a bound on the f32 plan's distance from it.
/// Per node: Dense as `bound::dot` then the activation; BatchNormalization, Rescaling and
/// Normalization as `x * scale + shift` (sinter may fold the scale into the Dense before);
/// merges with their roundings; Layer/RMS normalization with the error of its mean, variance
/// and square root carried through; copies (Embedding, Flatten, Concatenate) exact.
fn bounded(model: &Model, x: &[f32], ids: &[i32]) -> Vec<Vec<Bounded>> {
    let nodes = model.nodes();
    let mut vals: Vec<Vec<Bounded>> = vec![vec![]; nodes.len()];
    let width = |i: usize| *nodes[i].shape.last().unwrap();
    for (i, node) in nodes.iter().enumerate() {
        let input = |k: usize| &vals[node.inputs[k]];
        let rows = |k: usize| input(k).chunks(width(node.inputs[k]));
        vals[i] = match &node.layer {
            Layer::Input => match model.inputs().iter().position(|&j| j == i) {
                Some(0) => x.iter().map(|&v| Bounded::exact(v)).collect(),
                _ => ids.iter().map(|&v| Bounded::exact(v as f32)).collect(),
            },
            Layer::Embedding(EmbeddingConfig { output_dim, .. }) => {
                let table = &node.weights.as_ref().unwrap().kernel;
                let ids = input(0).iter().map(|id| id.v as usize);
                ids.flat_map(|id| &table[id * output_dim..][..*output_dim])
                    .map(|&v| Bounded::exact(v))
                    .collect()
            }
            Layer::Flatten => input(0).clone(),
            Layer::Concatenate(_) => {
                let parts: Vec<Vec<&[Bounded]>> =
                    (0..node.inputs.len()).map(|k| rows(k).collect()).collect();
                (0..parts[0].len())
                    .flat_map(|r| parts.iter().flat_map(move |p| p[r].iter().copied()))
                    .collect()
            }
            Layer::Dense(DenseConfig { activation, .. }) => {
                let w = node.weights.as_ref().unwrap();
                let n = width(i);
                rows(0)
                    .flat_map(|row| {
                        let pre: Vec<Bounded> = (0..n)
                            .map(|j| {
                                let b = w.bias.as_ref().map_or(0.0, |b| f64::from(b[j]));
                                let terms = row.iter().enumerate();
                                bound::dot(
                                    terms.map(|(k, &x)| (x, f64::from(w.kernel[k * n + j]))),
                                    b,
                                )
                            })
                            .collect();
                        bound::activation_row(*activation, &pre)
                    })
                    .collect()
            }
            Layer::Activation(act) => rows(0)
                .flat_map(|r| bound::activation_row(*act, r))
                .collect(),
            Layer::BatchNormalization(bn) => {
                let (scale, shift) = bn.affine();
                per_channel(input(0), &scale, &shift)
            }
            Layer::Normalization(NormalizationConfig { mean, variance, .. }) => {
                let scale: Vec<f32> = variance
                    .iter()
                    .map(|&v| (1.0 / f64::from(v).sqrt().max(1e-7)) as f32)
                    .collect();
                let shift: Vec<f32> = mean.iter().zip(&scale).map(|(&m, &s)| -m * s).collect();
                // The rounding of the f32 scale and shift themselves: 2 more roundings.
                per_channel(input(0), &scale, &shift)
            }
            Layer::Rescaling(RescalingConfig { scale, offset }) => input(0)
                .iter()
                .map(|&x| bound::affine(x, f64::from(*scale), f64::from(*offset), 4))
                .collect(),
            Layer::LayerNormalization(norm) => rows(0).flat_map(|r| row_norm(norm, r)).collect(),
            Layer::Merge(m) => {
                let (a, b) = (input(0), input(1));
                a.iter().zip(b).map(|(&a, &b)| merge(*m, a, b)).collect()
            }
            other => unreachable!("the test graphs have no {other:?}"),
        };
    }
    model
        .outputs()
        .iter()
        .map(|&o| std::mem::take(&mut vals[o]))
        .collect()
}

/// `x * scale[c] + shift[c]` per channel.
fn per_channel(x: &[Bounded], scale: &[f32], shift: &[f32]) -> Vec<Bounded> {
    x.chunks(scale.len())
        .flat_map(|row| {
            row.iter()
                .zip(scale.iter().zip(shift))
                .map(|(&x, (&s, &t))| bound::affine(x, f64::from(s), f64::from(t), 4))
        })
        .collect()
}

/// Two-input merges. A sum or difference rounds once (relative to its operands); a product
/// carries each operand's error times the other; max and min are exact.
fn merge(m: Merge, a: Bounded, b: Bounded) -> Bounded {
    let (ma, mb) = (a.v.abs() + a.e, b.v.abs() + b.e);
    match m {
        Merge::Add => Bounded::rounded(a.v + b.v, a.e + b.e, ma + mb, 1),
        Merge::Subtract => Bounded::rounded(a.v - b.v, a.e + b.e, ma + mb, 1),
        Merge::Average => {
            Bounded::rounded((a.v + b.v) / 2.0, (a.e + b.e) / 2.0, (ma + mb) / 2.0, 2)
        }
        Merge::Multiply => Bounded::rounded(a.v * b.v, a.e * mb + b.e * ma, ma * mb, 1),
        Merge::Maximum => Bounded {
            v: a.v.max(b.v),
            e: a.e.max(b.e),
            mag: a.v.max(b.v).abs(),
        },
        Merge::Minimum => Bounded {
            v: a.v.min(b.v),
            e: a.e.max(b.e),
            mag: a.v.min(b.v).abs(),
        },
        other => panic!("no bound for a {other:?} merge yet"),
    }
}

/// Layer (or RMS) normalization of one row: `y = (x - mean) / sqrt(var + eps) * gamma + beta`.
/// The mean's error is the inputs' largest plus an n-term sum's rounding; each `d = x - mean`
/// adds that and one rounding; the variance, a sum of squares, carries `2|d| e_d` per term plus
/// its own rounding; `1 / sqrt(var + eps)` turns the variance's relative error into half of it
/// plus a few roundings; the result carries `e_d` and the scale's relative error.
fn row_norm(norm: &RowNorm, row: &[Bounded]) -> Vec<Bounded> {
    let n = row.len();
    let nf = n as f64;
    let e_in = row.iter().map(|x| x.e).fold(0.0, f64::max);
    let (mean, e_mean) = if norm.rms {
        (0.0, 0.0)
    } else {
        let mag = row.iter().map(|x| x.v.abs() + x.e).sum::<f64>() / nf;
        (
            row.iter().map(|x| x.v).sum::<f64>() / nf,
            e_in + bound::gamma(n + 2) * mag,
        )
    };
    let d: Vec<(f64, f64)> = row
        .iter()
        .map(|x| {
            let d = x.v - mean;
            (d, x.e + e_mean + bound::U * (d.abs() + x.e + e_mean))
        })
        .collect();
    let var = d.iter().map(|(d, _)| d * d).sum::<f64>() / nf;
    let var_mag = d
        .iter()
        .map(|(d, e)| (d.abs() + e) * (d.abs() + e))
        .sum::<f64>()
        / nf;
    let e_var = d
        .iter()
        .map(|(d, e)| 2.0 * d.abs() * e + e * e)
        .sum::<f64>()
        / nf
        + bound::gamma(n + 3) * var_mag;
    let eps = f64::from(norm.epsilon);
    let rel_var = e_var / (var + eps);
    let inv = 1.0 / (var + eps).sqrt();
    // 1/sqrt(v (1 + r)) = inv (1 + r)^(-1/2): within r of inv for r <= 1/2; plus 4 roundings.
    let rel_inv = if rel_var <= 0.5 {
        rel_var + bound::gamma(4)
    } else {
        f64::INFINITY
    };
    d.iter()
        .enumerate()
        .map(|(c, &(d, e_d))| {
            let g = norm.gamma.as_ref().map_or(1.0, |g| f64::from(g[c]));
            let b = norm.beta.as_ref().map_or(0.0, |b| f64::from(b[c]));
            let y = d * inv * g;
            let e = g.abs() * inv * (e_d + (d.abs() + e_d) * rel_inv);
            Bounded::rounded(
                y + b,
                e,
                (d.abs() + e_d) * inv * (1.0 + rel_inv) * g.abs() + b.abs(),
                3,
            )
        })
        .collect()
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

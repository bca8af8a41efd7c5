//! Conv1D, Concatenate, Add, pooling and Reshape: random conv graphs keep every invariant
//! bit for bit (fused == separate, ISA tiers, 1/2/3 threads, a row alone == in the batch),
//! agree with the f64 reference, and the activation after a concat leaves the plan.

mod common;

use common::bound::{Bounded, dot, pool};
use common::{run_once as run, same_bits};
use proptest::prelude::*;
use sinter::Activation;
use sinter::model::init::SplitMix64;
use sinter::model::*;
use sinter::plan::CompileOptions;
use sinter::{Isa, builtin};
use std::sync::Arc;

/// A random 1-D CNN: optional valid stem, 1-3 conv branches with one stride, combined by a
/// channel concat, a time concat or an Add, an optional activation, optional pooling, then a
/// Flatten or global pooling head and a Dense.
#[derive(Clone, Debug)]
struct Net {
    steps: usize,
    ch: usize,
    stem: Option<(usize, usize)>,
    branches: Vec<(usize, usize, bool, usize)>,
    stride: usize,
    filters: usize,
    combine: usize,
    act: Option<usize>,
    pool: Option<(bool, usize, usize, bool)>,
    head: usize,
    units: usize,
    head_act: usize,
    batch: usize,
    seed: u64,
}

fn weights(rng: &mut SplitMix64, k: usize, n: usize) -> (Vec<f32>, Option<Vec<f32>>) {
    let s = (3.0 / k as f32).sqrt();
    let w = (0..k * n).map(|_| rng.next_signed() * s).collect();
    let b = (0..n).map(|_| rng.next_signed() * 0.3).collect();
    (w, Some(b))
}

impl Net {
    fn model(&self) -> Model {
        let mut rng = SplitMix64::new(self.seed);
        let x = Input::new([self.steps, self.ch]).unwrap();
        let mut h = x.clone();
        if let Some((k, f)) = self.stem {
            let (w, b) = weights(&mut rng, k * self.ch, f);
            h = Conv1D::new(f, k).weights(w, b).call(&h).unwrap();
        }
        let cin = h.shape()[1];
        let outs: Vec<Tensor> = self
            .branches
            .iter()
            .map(|&(k, d, causal, act)| {
                let (w, b) = weights(&mut rng, k * cin, self.filters);
                Conv1D::new(self.filters, k)
                    .strides(self.stride)
                    .dilation_rate(d)
                    .padding(if causal {
                        Padding::Causal
                    } else {
                        Padding::Same
                    })
                    .activation(Activation::ALL[act])
                    .weights(w, b)
                    .call(&h)
                    .unwrap()
            })
            .collect();
        let refs: Vec<&Tensor> = outs.iter().collect();
        h = match (self.combine, refs.as_slice()) {
            (_, [one]) => (*one).clone(),
            (0, _) => Concatenate::new(-1).call(&refs).unwrap(),
            (1, _) => Concatenate::new(1).call(&refs).unwrap(),
            _ => Add::new().call(&refs).unwrap(),
        };
        if let Some(a) = self.act {
            h = ActivationLayer::new(Activation::ALL[a]).call(&h).unwrap();
        }
        if let Some((max, size, stride, same)) = self.pool {
            let size = size.min(h.shape()[0]);
            let p = if same { Padding::Same } else { Padding::Valid };
            h = if max {
                MaxPooling1D::new(size, stride, p).call(&h).unwrap()
            } else {
                AveragePooling1D::new(size, stride, p).call(&h).unwrap()
            };
        }
        h = match self.head {
            0 => Flatten::new().call(&h).unwrap(),
            1 => GlobalMaxPooling1D::new().call(&h).unwrap(),
            2 => GlobalAveragePooling1D::new().call(&h).unwrap(),
            _ => Reshape::new(vec![-1]).call(&h).unwrap(),
        };
        let (w, b) = weights(&mut rng, h.shape()[0], self.units);
        let y = Dense::new(self.units)
            .activation(Activation::ALL[self.head_act])
            .weights(w, b)
            .call(&h)
            .unwrap();
        Model::new(&x, &y).unwrap()
    }

    /// Finite values in (-3, 3); with `specials`, hostile values placed per sample and per
    /// position (`common::input_rows`).
    fn input(&self, specials: bool) -> Vec<f32> {
        common::input_rows(self.seed, self.batch, self.steps * self.ch, specials)
    }
}

fn elementwise() -> impl Strategy<Value = usize> {
    (0..Activation::ALL.len()).prop_filter("elementwise", |&a| !Activation::ALL[a].is_row_wise())
}

fn net() -> impl Strategy<Value = Net> {
    (
        (
            4usize..40,
            1usize..6,
            prop::option::of((1usize..4, 1usize..6)),
        ),
        prop::collection::vec((1usize..6, 1usize..3, any::<bool>(), elementwise()), 1..4),
        (
            1usize..3,
            1usize..9,
            0usize..3,
            prop::option::of(elementwise()),
        ),
        prop::option::of((any::<bool>(), 1usize..4, 1usize..3, any::<bool>())),
        (
            0usize..4,
            1usize..12,
            0..Activation::ALL.len(),
            1usize..6,
            any::<u64>(),
        ),
    )
        .prop_map(
            |((steps, ch, stem), branches, (stride, filters, combine, act), pool, rest)| Net {
                steps,
                ch,
                stem,
                branches,
                stride,
                filters,
                combine,
                act,
                pool,
                head: rest.0,
                units: rest.1,
                head_act: rest.2,
                batch: rest.3,
                seed: rest.4,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(1000)))]

    #[test]
    fn conv_graphs_keep_every_invariant(net in net(), specials in any::<bool>()) {
        let model = net.model();
        let x = net.input(specials);
        let opts = |fuse, threads, isa| CompileOptions::new().fuse(fuse).threads(threads).isa(isa).max_batch(net.batch);
        let base = run(&model, &x, opts(true, 1, None));
        prop_assume!(base.iter().any(|v| !v.is_nan()), "every output NaN: nothing to compare");
        prop_assert!(same_bits(&base, &run(&model, &x, opts(false, 1, None))), "fused != separate");
        // Every step splits (by samples, rows or column panels) wherever its shape allows. A
        // net with nothing to split (one sample, 1x1 convolutions folded into one small GEMM)
        // tells nothing about threads: such cases are rejected, and a plan that never splits
        // fails the test by rejecting them all.
        for t in [2, 3] {
            let plan = Arc::new(model.compile(&opts(true, t, None).parallel_flops(0)).unwrap());
            let got = plan.run(&x).unwrap();
            prop_assume!(plan.split_steps() > 0, "nothing split");
            prop_assert!(same_bits(&base, &got), "threads {}", t);
        }
        for isa in Isa::available() {
            prop_assert!(same_bits(&base, &run(&model, &x, opts(true, 1, Some(isa)))), "isa {}", isa);
        }
        let per_in = x.len() / net.batch;
        let per_out = base.len() / net.batch;
        let plan = Arc::new(model.compile(&opts(true, 1, None)).unwrap());
        let mut s = plan.session().unwrap();
        for r in 0..net.batch {
            let alone = s.run(&x[r * per_in..(r + 1) * per_in]).unwrap();
            prop_assert!(same_bits(alone, &base[r * per_out..(r + 1) * per_out]), "row {}", r);
        }
    }

    /// Finite inputs, linear activations: the plan is within a rounding bound of an f64
    /// evaluation written from Keras's definitions (`Net::f64`), independent of sinter's
    /// `Window`: a wrong window, padding, stride, output length or concat order is off by O(1).
    #[test]
    fn conv_graphs_match_the_f64_reference(mut net in net()) {
        net.branches.iter_mut().for_each(|b| b.3 = 0);
        net.act = None;
        net.head_act = 0;
        let model = net.model();
        let x = net.input(false);
        let got = run(&model, &x, CompileOptions::new().max_batch(net.batch));
        let per = net.steps * net.ch;
        let mut want = Vec::new();
        for sample in x.chunks_exact(per) {
            want.extend(net.f64(sample).map_err(TestCaseError::fail)?);
        }
        prop_assert_eq!(got.len(), want.len(), "output length");
        let checked = common::bound::check("conv net", &got, &want).map_err(TestCaseError::fail)?;
        prop_assert_eq!(checked, got.len(), "every output is checked");
    }
}

/// `[len, ch]` values of one sample.
struct Seq {
    len: usize,
    ch: usize,
    v: Vec<Bounded>,
}

impl Seq {
    fn at(&self, t: usize, c: usize) -> Bounded {
        self.v[t * self.ch + c]
    }
}

/// Keras's `same` padding: `ceil(len / stride)` outputs, the padding split with the smaller
/// half first (TensorFlow's rule). Returns (outputs, left padding).
fn same(len: usize, span: usize, stride: usize) -> (usize, usize) {
    let out = len.div_ceil(stride);
    let total = ((out - 1) * stride + span).saturating_sub(len);
    (out, total / 2)
}

impl Net {
    /// Conv1D as Keras defines it: output `o` reads input steps `o * stride - left + t * d`
    /// for taps `t`, zeros outside `[0, len)`; kernel `[k, cin, filters]`.
    fn conv(
        x: &Seq,
        k: usize,
        d: usize,
        stride: usize,
        pad: Padding,
        w: &[f32],
        b: &[f32],
    ) -> Result<Seq, String> {
        let span = (k - 1) * d + 1;
        let (out, left) = match pad {
            Padding::Valid if x.len >= span => ((x.len - span) / stride + 1, 0),
            Padding::Valid => return Err(format!("valid window {span} > {}", x.len)),
            Padding::Same => same(x.len, span, stride),
            Padding::Causal => (x.len.div_ceil(stride), span - 1),
            other => return Err(format!("the test nets use no {other:?}")),
        };
        let f = b.len();
        let mut v = Vec::with_capacity(out * f);
        for o in 0..out {
            for j in 0..f {
                let terms = (0..k).flat_map(|t| {
                    let s = (o * stride + t * d)
                        .checked_sub(left)
                        .filter(|&s| s < x.len);
                    (0..x.ch).filter_map(move |c| s.map(|s| (t, s, c)))
                });
                v.push(dot(
                    terms.map(|(t, s, c)| (x.at(s, c), f64::from(w[(t * x.ch + c) * f + j]))),
                    f64::from(b[j]),
                ));
            }
        }
        Ok(Seq { len: out, ch: f, v })
    }

    /// The model's output for one sample in f64, following Keras's definitions of every layer
    /// (the weights drawn in `model`'s order).
    fn f64(&self, sample: &[f32]) -> Result<Vec<Bounded>, String> {
        let mut rng = SplitMix64::new(self.seed);
        let mut h = Seq {
            len: self.steps,
            ch: self.ch,
            v: sample.iter().map(|&v| Bounded::exact(v)).collect(),
        };
        if let Some((k, f)) = self.stem {
            let (w, b) = weights(&mut rng, k * self.ch, f);
            h = Self::conv(&h, k, 1, 1, Padding::Valid, &w, &b.unwrap())?;
        }
        let mut outs = Vec::new();
        for &(k, d, causal, _) in &self.branches {
            let (w, b) = weights(&mut rng, k * h.ch, self.filters);
            let pad = if causal {
                Padding::Causal
            } else {
                Padding::Same
            };
            outs.push(Self::conv(&h, k, d, self.stride, pad, &w, &b.unwrap())?);
        }
        h = if outs.len() == 1 {
            outs.pop().unwrap()
        } else {
            match self.combine {
                // Channels: step t is every branch's step t in turn.
                0 => Seq {
                    len: outs[0].len,
                    ch: outs.iter().map(|o| o.ch).sum(),
                    v: (0..outs[0].len)
                        .flat_map(|t| {
                            outs.iter()
                                .flat_map(move |o| (0..o.ch).map(move |c| o.at(t, c)))
                        })
                        .collect(),
                },
                // Time: the branches one after another.
                1 => Seq {
                    len: outs.iter().map(|o| o.len).sum(),
                    ch: outs[0].ch,
                    v: outs.iter().flat_map(|o| o.v.iter().copied()).collect(),
                },
                // Add, left to right.
                _ => Seq {
                    len: outs[0].len,
                    ch: outs[0].ch,
                    v: (0..outs[0].v.len())
                        .map(|i| {
                            let v: f64 = outs.iter().map(|o| o.v[i].v).sum();
                            let mag: f64 = outs.iter().map(|o| o.v[i].v.abs() + o.v[i].e).sum();
                            let e: f64 = outs.iter().map(|o| o.v[i].e).sum();
                            Bounded::rounded(v, e, mag, outs.len())
                        })
                        .collect(),
                },
            }
        };
        if let Some((max, size, stride, same_pad)) = self.pool {
            let size = size.min(h.len);
            let (out, left) = if same_pad {
                same(h.len, size, stride)
            } else {
                ((h.len - size) / stride + 1, 0)
            };
            let mut v = Vec::with_capacity(out * h.ch);
            for o in 0..out {
                // The window's steps inside the input (Keras's pooling ignores padding).
                let steps: Vec<usize> = (0..size)
                    .filter_map(|t| (o * stride + t).checked_sub(left).filter(|&s| s < h.len))
                    .collect();
                for c in 0..h.ch {
                    v.push(pool(max, steps.iter().map(|&s| h.at(s, c))));
                }
            }
            h = Seq {
                len: out,
                ch: h.ch,
                v,
            };
        }
        let flat: Vec<Bounded> = match self.head {
            1 | 2 => (0..h.ch)
                .map(|c| pool(self.head == 1, (0..h.len).map(|t| h.at(t, c))))
                .collect(),
            _ => h.v,
        };
        let (w, b) = weights(&mut rng, flat.len(), self.units);
        let b = b.unwrap();
        Ok((0..self.units)
            .map(|j| {
                dot(
                    flat.iter()
                        .enumerate()
                        .map(|(i, &x)| (x, f64::from(w[i * self.units + j]))),
                    f64::from(b[j]),
                )
            })
            .collect())
    }
}

#[test]
fn builtin_conv1d_fuses_the_relu_after_the_concat() {
    let model = builtin::conv1d();
    let fused = model.compile(&CompileOptions::default()).unwrap();
    assert_eq!(fused.activation_steps(), 0, "{fused}");
    assert!(fused.to_string().contains("push_activation_through_concat"));
    let separate = model.compile(&CompileOptions::new().fuse(false)).unwrap();
    assert_eq!(separate.activation_steps(), 2);
}

#[test]
fn bad_conv_configs_are_shape_errors() {
    let x = Input::new([4, 3]).unwrap();
    assert!(
        Conv1D::new(2, 5).call(&x).is_err(),
        "valid window longer than the input"
    );
    assert!(Conv1D::new(2, 0).call(&x).is_err());
    assert!(Conv1D::new(2, 2).strides(0).call(&x).is_err());
    assert!(MaxPooling1D::new(2, 1, Padding::Causal).call(&x).is_err());
    let flat = Input::new([12]).unwrap();
    assert!(Conv1D::new(2, 1).call(&flat).is_err(), "rank-1 input");
    let y = Input::new([5, 3]).unwrap();
    assert!(Add::new().call(&[&x, &y]).is_err());
    assert!(Concatenate::new(-1).call(&[&x, &y]).is_err());
    assert!(Concatenate::new(1).call(&[&x, &y]).is_ok());
    assert!(Concatenate::new(0).call(&[&x, &x]).is_err(), "batch axis");
    assert!(Reshape::new(vec![5, -1]).call(&x).is_err());
    assert!(Reshape::new(vec![-1, -1]).call(&x).is_err());
}

/// A batch larger than the plan's chunk runs in chunks and gives the bits of each row alone.
#[test]
fn chunked_batches_equal_rows_alone() {
    let model = builtin::conv1d();
    let plan = Arc::new(model.compile(&CompileOptions::default()).unwrap());
    assert!(
        plan.chunk() < plan.max_batch(),
        "conv1d is chunked ({})",
        plan.chunk()
    );
    let batch = 2 * plan.chunk() + 3;
    let mut rng = SplitMix64::new(7);
    let x: Vec<f32> = (0..batch * 128 * 16).map(|_| rng.next_signed()).collect();
    let all = plan.run(&x).unwrap();
    let mut s = plan.session().unwrap();
    for r in 0..batch {
        let alone = s.run(&x[r * 2048..(r + 1) * 2048]).unwrap();
        assert!(same_bits(alone, &all[r * 8..(r + 1) * 8]), "row {r}");
    }
}

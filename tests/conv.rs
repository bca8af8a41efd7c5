//! Conv1D, Concatenate, Add, pooling and Reshape: random conv graphs keep every invariant
//! bit for bit (fused == separate, ISA tiers, 1/2/3 threads, a row alone == in the batch),
//! agree with the f64 reference, and the activation after a concat leaves the plan.

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

    fn input(&self, specials: bool) -> Vec<f32> {
        let mut rng = SplitMix64::new(self.seed ^ 0x1234);
        let special = [0.0, -0.0, 1e-40, 1e30, -1e30, f32::INFINITY, f32::NAN];
        (0..self.batch * self.steps * self.ch)
            .map(|i| {
                if specials && i % 13 == 7 {
                    special[(rng.next_u64() % 7) as usize]
                } else {
                    rng.next_signed() * 2.0
                }
            })
            .collect()
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

fn run(model: &Model, x: &[f32], opts: CompileOptions) -> Vec<f32> {
    let plan = Arc::new(model.compile(&opts).unwrap());
    plan.run(x).unwrap()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
    ))]

    #[test]
    fn conv_graphs_keep_every_invariant(net in net(), specials in any::<bool>()) {
        let model = net.model();
        let x = net.input(specials);
        let opts = |fuse, threads, isa| CompileOptions::new().fuse(fuse).threads(threads).isa(isa).max_batch(net.batch);
        let base = run(&model, &x, opts(true, 1, None));
        prop_assert!(same_bits(&base, &run(&model, &x, opts(false, 1, None))), "fused != separate");
        for t in [2, 3] {
            prop_assert!(same_bits(&base, &run(&model, &x, opts(true, t, None))), "threads {}", t);
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

    /// Finite inputs, linear activations: the plan is the f64 reference to rounding. A wrong
    /// window, padding, stride or concat order would be off by O(1).
    #[test]
    fn conv_graphs_match_the_f64_reference(mut net in net()) {
        net.branches.iter_mut().for_each(|b| b.3 = 0);
        net.act = None;
        net.head_act = 0;
        let model = net.model();
        let x = net.input(false);
        let got = run(&model, &x, CompileOptions::new().max_batch(net.batch));
        let want = sinter::reference::run(&model, &x).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let tol = 1e-4 * (1.0 + w.abs());
            prop_assert!((f64::from(*g) - w).abs() <= tol, "output {}: {} vs {}", i, g, w);
        }
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

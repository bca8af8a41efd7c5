//! Recurrent layers: random stacks (cell, units, directions, merge, reversed outputs, return
//! sequences, activations, biases) keep every invariant bit for bit (fused == separate, ISA
//! tiers, 2/3 threads, a sample alone == in a batch of up to 40, which crosses the
//! recurrence's blocks of 32 samples) and agree with the float64 reference. Hostile
//! configurations are errors, never panics.

mod common;

use common::{run_once as run, same_bits};
use proptest::prelude::*;
use sinter::Activation;
use sinter::Isa;
use sinter::model::init::SplitMix64;
use sinter::model::*;
use sinter::plan::{CompileOptions, Values};
use std::sync::Arc;

/// One recurrent layer of a random stack.
#[derive(Clone, Debug)]
struct RnnSpec {
    cell: usize,
    units: usize,
    /// 0: forward; 1: reversed, outputs at their steps; 2: reversed, in run order (Keras
    /// `go_backwards`); 3..: bidirectional with merge mode `dirs - 3`.
    dirs: usize,
    act: usize,
    rec: usize,
    bias: bool,
    rec_bias: bool,
}

#[derive(Clone, Debug)]
struct Net {
    steps: usize,
    features: usize,
    layers: Vec<RnnSpec>,
    /// Whether the last layer returns every step.
    sequences: bool,
    batch: usize,
    seed: u64,
}

fn vals(rng: &mut SplitMix64, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.next_signed() * scale).collect()
}

const CELLS: [Cell; 4] = [
    Cell::Simple,
    Cell::Lstm,
    Cell::Gru { reset_after: true },
    Cell::Gru { reset_after: false },
];
const MERGES: [MergeMode; 4] = [
    MergeMode::Concat,
    MergeMode::Sum,
    MergeMode::Average,
    MergeMode::Multiply,
];
/// Gate activations: bounded ones, as real models use, and one that is not.
const GATES: [Activation; 4] = [
    Activation::Sigmoid,
    Activation::HardSigmoid,
    Activation::Tanh,
    Activation::Softsign,
];

impl RnnSpec {
    fn layer(
        &self,
        rng: &mut SplitMix64,
        features: usize,
        sequences: bool,
    ) -> (Layer, DenseWeights) {
        let cell = CELLS[self.cell];
        let (h, gh) = (self.units, cell.gates() * self.units);
        let reversed = self.dirs != 0;
        let mut directions = vec![Direction {
            reverse: matches!(self.dirs, 1 | 2),
            recurrent_kernel: Vec::new(),
            recurrent_bias: None,
        }];
        if self.dirs >= 3 {
            directions.push(Direction {
                reverse: true,
                ..directions[0].clone()
            });
        }
        let scale = (3.0 / h as f32).sqrt();
        for d in &mut directions {
            d.recurrent_kernel = vals(rng, h * gh, scale);
            d.recurrent_bias = self.rec_bias.then(|| vals(rng, gh, 0.3));
        }
        let n = gh * directions.len();
        let kernel = vals(rng, features * n, (3.0 / features as f32).sqrt());
        let bias = self.bias.then(|| vals(rng, n, 0.3));
        let config = RecurrentConfig {
            cell,
            units: h,
            activation: Activation::ALL[self.act],
            recurrent_activation: GATES[self.rec],
            use_bias: self.bias,
            return_sequences: sequences,
            run_order: reversed && self.dirs == 2,
            merge: MERGES[self.dirs.saturating_sub(3) % 4],
            directions,
            mask: None,
        };
        (Layer::Recurrent(config), DenseWeights { kernel, bias })
    }
}

impl Net {
    fn model(&self) -> Model {
        let mut rng = SplitMix64::new(self.seed);
        let x = Input::new([self.steps, self.features]).unwrap();
        let mut h = x.clone();
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            let features = *h.shape().last().unwrap();
            let (layer, w) = l.layer(&mut rng, features, i < last || self.sequences);
            h = apply(layer, None, &[&h], Some(w)).unwrap();
        }
        Model::new(&x, &h).unwrap()
    }

    fn input(&self, specials: bool) -> Vec<f32> {
        common::input_rows(self.seed, self.batch, self.steps * self.features, specials)
    }
}

fn elementwise() -> impl Strategy<Value = usize> {
    (0..Activation::ALL.len()).prop_filter("elementwise", |&a| !Activation::ALL[a].is_row_wise())
}

fn rnn_spec() -> impl Strategy<Value = RnnSpec> {
    (
        0usize..4,
        1usize..9,
        0usize..7,
        elementwise(),
        0usize..4,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(cell, units, dirs, act, rec, bias, rec_bias)| RnnSpec {
            cell,
            units,
            dirs,
            act,
            rec,
            bias,
            rec_bias,
        })
}

fn net() -> impl Strategy<Value = Net> {
    (
        (1usize..10, 1usize..6),
        prop::collection::vec(rnn_spec(), 1..3),
        any::<bool>(),
        prop_oneof![1usize..5, 30usize..41],
        any::<u64>(),
    )
        .prop_map(|((steps, features), layers, sequences, batch, seed)| Net {
            steps,
            features,
            layers,
            sequences,
            batch,
            seed,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(200)))]

    #[test]
    fn recurrent_stacks_keep_every_invariant(net in net(), specials in any::<bool>()) {
        let model = net.model();
        let x = net.input(specials);
        let opts = |fuse, threads, isa| {
            CompileOptions::new().fuse(fuse).threads(threads).isa(isa).max_batch(net.batch)
        };
        let base = run(&model, &x, opts(true, 1, None));
        prop_assume!(base.iter().any(|v| !v.is_nan()), "every output NaN: nothing to compare");
        prop_assert!(same_bits(&base, &run(&model, &x, opts(false, 1, None))), "fused != separate");
        for t in [2, 3] {
            let got = run(&model, &x, opts(true, t, None).parallel_flops(0));
            prop_assert!(same_bits(&base, &got), "threads {}", t);
        }
        for isa in Isa::available() {
            prop_assert!(same_bits(&base, &run(&model, &x, opts(true, 1, Some(isa)))), "isa {}", isa);
        }
        let (per_in, per_out) = (x.len() / net.batch, base.len() / net.batch);
        let plan = Arc::new(model.compile(&opts(true, 1, None)).unwrap());
        let mut s = plan.session().unwrap();
        for r in 0..net.batch {
            let alone = s.run(&x[r * per_in..(r + 1) * per_in]).unwrap();
            prop_assert!(same_bits(alone, &base[r * per_out..(r + 1) * per_out]), "sample {}", r);
        }
    }

    /// Finite inputs and bounded activations: close to the float64 evaluation. A wrong gate
    /// order, direction, merge or bias is off by O(1).
    #[test]
    fn recurrent_stacks_match_the_f64_reference(mut net in net()) {
        for l in &mut net.layers {
            l.act = Activation::ALL.iter().position(|&a| a == Activation::Tanh).unwrap();
            l.rec = l.rec.min(2);
        }
        let model = net.model();
        let x = net.input(false);
        let got = run(&model, &x, CompileOptions::new().max_batch(net.batch));
        let want = sinter::reference::run_all(&model, &[Values::F32(&x)]).unwrap();
        for (i, (&g, &r)) in got.iter().zip(&want[0]).enumerate() {
            let g = f64::from(g);
            prop_assert!((g - r).abs() <= 1e-4 * (1.0 + r.abs()), "value {}: {} vs {}", i, g, r);
        }
    }
}

/// Recurrent layers whose configuration or weights do not fit are errors naming the layer.
#[test]
fn hostile_recurrent_configs_are_errors() {
    let x = Input::new([4, 3]).unwrap();
    let config = RecurrentConfig {
        cell: Cell::Lstm,
        units: 2,
        activation: Activation::Tanh,
        recurrent_activation: Activation::Sigmoid,
        use_bias: false,
        return_sequences: false,
        run_order: false,
        directions: vec![Direction {
            reverse: false,
            recurrent_kernel: vec![0.0; 16],
            recurrent_bias: None,
        }],
        merge: MergeMode::Concat,
        mask: None,
    };
    let weights = || {
        Some(DenseWeights {
            kernel: vec![0.0; 3 * 8],
            bias: None,
        })
    };
    let ok = apply(Layer::Recurrent(config.clone()), None, &[&x], weights());
    assert!(ok.is_ok(), "{ok:?}");
    let bad = |c: RecurrentConfig, w: Option<DenseWeights>| {
        apply(Layer::Recurrent(c), Some("rnn"), &[&x], w)
            .err()
            .map(|e| e.to_string())
    };
    let short = RecurrentConfig {
        directions: vec![Direction {
            reverse: false,
            recurrent_kernel: vec![0.0; 15],
            recurrent_bias: None,
        }],
        ..config.clone()
    };
    assert!(
        bad(short, weights()).is_some_and(|e| e.contains("rnn") && e.contains("recurrent kernel"))
    );
    let no_dirs = RecurrentConfig {
        directions: vec![],
        ..config.clone()
    };
    assert!(bad(no_dirs, weights()).is_some_and(|e| e.contains("directions")));
    let zero = RecurrentConfig {
        units: 0,
        directions: vec![],
        ..config.clone()
    };
    assert!(bad(zero, weights()).is_some_and(|e| e.contains("units")));
    let softmax = RecurrentConfig {
        recurrent_activation: Activation::Softmax,
        ..config.clone()
    };
    assert!(bad(softmax, weights()).is_some_and(|e| e.contains("softmax")));
    let wrong_kernel = Some(DenseWeights {
        kernel: vec![0.0; 5],
        bias: None,
    });
    assert!(bad(config.clone(), wrong_kernel).is_some());
    // A rank-3 input.
    let img = Input::new([2, 2, 3]).unwrap();
    assert!(apply(Layer::Recurrent(config), None, &[&img], weights()).is_err());
}

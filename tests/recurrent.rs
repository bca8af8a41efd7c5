//! Recurrent layers: random stacks (cell, units, directions, merge, reversed outputs, return
//! sequences, activations, biases) keep every invariant bit for bit (fused == separate, ISA
//! tiers, 2/3 threads, a sample alone == in a batch of up to 40, which crosses the
//! recurrence's blocks of 32 samples) and agree with the float64 reference, also when a
//! layer's final states (`Returns::States`) start another (`initial_state`). Hostile
//! configurations are errors, never panics.

mod common;

use common::{run_once as run, same_bits};
use proptest::prelude::*;
use sinter::Activation;
use sinter::model::init::SplitMix64;
use sinter::model::*;
use sinter::plan::{CompileOptions, Values};

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
    /// The last layer's final states (`Returns::States`) start another layer like it over
    /// the model's input (its `initial_state`), which is then the output.
    handoff: bool,
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
        returns: Returns,
        initial_state: bool,
    ) -> (Layer, DenseWeights) {
        let cell = CELLS[self.cell];
        let (h, gh) = (self.units, cell.gates() * self.units);
        let reversed = self.dirs != 0;
        let mut directions = vec![Direction {
            reverse: matches!(self.dirs, 1 | 2),
            recurrent_kernel: Vec::new(),
            recurrent_bias: None,
            peepholes: None,
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
            // An LSTM with recurrent biases has peepholes too (ONNX's `P`).
            let peepholes = self.rec_bias && cell == Cell::Lstm;
            d.peepholes = peepholes.then(|| vals(rng, 3 * h, 0.5));
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
            returns,
            run_order: reversed && self.dirs == 2,
            merge: MERGES[self.dirs.saturating_sub(3) % 4],
            directions,
            mask: None,
            initial_state,
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
        let returns = |sequences| match sequences {
            true => Returns::Sequences,
            false => Returns::Last,
        };
        for (i, l) in self.layers.iter().enumerate() {
            let features = *h.shape().last().unwrap();
            let what = match (i < last, self.handoff) {
                (false, true) => Returns::States,
                (inner, _) => returns(inner || self.sequences),
            };
            let (layer, w) = l.layer(&mut rng, features, what, false);
            h = apply(layer, None, &[&h], Some(w)).unwrap();
        }
        if self.handoff {
            let rows: Vec<Tensor> = (0..h.shape()[0])
                .map(|k| {
                    let take = TakeConfig {
                        axis: 0,
                        indices: vec![k],
                        squeeze: true,
                    };
                    apply(Layer::Primitive(Primitive::Take(take)), None, &[&h], None).unwrap()
                })
                .collect();
            let spec = &self.layers[last];
            let (layer, w) = spec.layer(&mut rng, self.features, returns(self.sequences), true);
            let inputs: Vec<&Tensor> = std::iter::once(&x).chain(&rows).collect();
            h = apply(layer, None, &inputs, Some(w)).unwrap();
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
        (any::<bool>(), any::<bool>()),
        prop_oneof![1usize..5, 30usize..41],
        any::<u64>(),
    )
        .prop_map(
            |((steps, features), layers, (sequences, handoff), batch, seed)| Net {
                steps,
                features,
                layers,
                sequences,
                handoff,
                batch,
                seed,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(200)))]

    #[test]
    fn recurrent_stacks_keep_every_invariant(net in net(), specials in any::<bool>()) {
        let model = net.model();
        let x = net.input(specials);
        let compared = common::every_invariant(&model, &x, net.batch).map_err(TestCaseError::fail)?;
        prop_assume!(compared, "every output NaN: nothing to compare");
    }

    /// Finite inputs and bounded activations: close to the float64 evaluation. A wrong gate
    /// order, direction, merge or bias is off by O(1).
    #[test]
    fn recurrent_stacks_match_the_f64_reference(mut net in net()) {
        for l in &mut net.layers {
            l.act = Activation::ALL.iter().position(|&a| a == Activation::Tanh).unwrap();
            // Gates in [0, 1] (sigmoid, hard_sigmoid), as real models have: a tanh gate lets
            // a GRU's `1 - z` reach 2, and f32 rounding then grows step by step (a case of 2
            // layers over 9 steps drifted 6e-3 from f64 with the same bits on every path).
            l.rec = l.rec.min(1);
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
        returns: Returns::Last,
        run_order: false,
        directions: vec![Direction {
            reverse: false,
            recurrent_kernel: vec![0.0; 16],
            recurrent_bias: None,
            peepholes: None,
        }],
        merge: MergeMode::Concat,
        mask: None,
        initial_state: false,
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
            peepholes: None,
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
    // Initial states: missing, or of the wrong size.
    let with_states = RecurrentConfig {
        initial_state: true,
        ..config.clone()
    };
    let layer = || Layer::Recurrent(with_states.clone());
    assert!(apply(layer(), None, &[&x], weights()).is_err());
    let (h, c) = (Input::new([2]).unwrap(), Input::new([3]).unwrap());
    let e = apply(layer(), None, &[&x, &h, &c], weights()).unwrap_err();
    assert!(e.to_string().contains("initial state"), "{e}");
    assert!(apply(layer(), None, &[&x, &h, &h], weights()).is_ok());
    // A rank-3 input.
    let img = Input::new([2, 2, 3]).unwrap();
    assert!(apply(Layer::Recurrent(config), None, &[&img], weights()).is_err());
}

/// A masked stack: token ids `[steps]` (0 = padding) select rows of an Embedding and mask
/// every recurrent layer, as Keras's `mask_zero` does; or features whose padded steps are all
/// [`MASK_VALUE`] go through a Keras `Masking`, whose mask every recurrent layer reads.
#[derive(Clone, Debug)]
struct Masked {
    net: Net,
    /// Per sample, its real length; the rest is padding (id 0), plus holes at these steps.
    lens: Vec<usize>,
    holes: Vec<usize>,
    zero_outputs: bool,
    /// Features under a Keras `Masking` instead of token ids into an Embedding.
    masking: bool,
}

const VOCAB: usize = 7;

impl Masked {
    /// The model over `steps` positions (the weights do not depend on it): token ids into an
    /// Embedding, or (`masking`) features into a Keras `Masking(MASK_VALUE)`, whose mask the
    /// recurrent layers read.
    fn model(&self, steps: usize) -> Model {
        let net = &self.net;
        let mut rng = SplitMix64::new(net.seed);
        let (input, mask, mut h);
        if self.masking {
            input = Input::new([steps, net.features]).unwrap();
            let masking = |mask| {
                let m = MaskingConfig {
                    value: MASK_VALUE,
                    mask,
                };
                apply(Layer::Masking(m), None, &[&input], None).unwrap()
            };
            (mask, h) = (masking(true), masking(false));
        } else {
            input = Input::new([steps]).unwrap();
            let table = vals(&mut rng, VOCAB * net.features, 1.0);
            h = Embedding::new(VOCAB, net.features)
                .weights(table)
                .call(&input)
                .unwrap();
            mask = input.clone();
        }
        let last = net.layers.len() - 1;
        for (i, l) in net.layers.iter().enumerate() {
            let features = *h.shape().last().unwrap();
            // A last layer of a hand-off net returns its final states.
            let returns = match (i < last || net.sequences, net.handoff && i == last) {
                (_, true) => Returns::States,
                (true, _) => Returns::Sequences,
                (false, _) => Returns::Last,
            };
            let (mut layer, w) = l.layer(&mut rng, features, returns, false);
            if let Layer::Recurrent(r) = &mut layer {
                r.mask = Some(StepMask {
                    zero_outputs: self.zero_outputs,
                    lengths: false,
                });
            }
            h = apply(layer, None, &[&h, &mask], Some(w)).unwrap();
        }
        Model::new(&input, &h).unwrap()
    }

    /// Values per step of the input: an id, or (`masking`) the features.
    fn per_step(&self) -> usize {
        if self.masking { self.net.features } else { 1 }
    }

    /// What a masked step holds: id 0, or features all `MASK_VALUE`.
    fn pad(&self) -> f32 {
        if self.masking { MASK_VALUE } else { 0.0 }
    }

    /// The input of every sample over `steps` positions: ids, or (`masking`) features.
    fn ids(&self, steps: usize) -> Vec<f32> {
        let mut rng = SplitMix64::new(self.net.seed ^ 0x1d5);
        let mut ids = Vec::new();
        for &len in &self.lens {
            for t in 0..steps {
                let kept = t < len && !self.holes.contains(&t);
                for f in 0..self.per_step() {
                    let id = 1 + (rng.next_u64() % (VOCAB as u64 - 1)) as usize;
                    // A kept step may hold the mask value in some of its features, not all.
                    let value = match self.masking {
                        true if f > 0 && id == 1 => MASK_VALUE,
                        true => rng.next_signed(),
                        false => id as f32,
                    };
                    ids.push(if kept { value } else { self.pad() });
                }
            }
        }
        ids
    }
}

/// The value a `Masking` layer masks by in [`Masked`] (not 0: its output zeroes them).
const MASK_VALUE: f32 = -1.0;

fn masked() -> impl Strategy<Value = Masked> {
    (
        net(),
        prop::collection::vec(0usize..10, 1..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(mut net, holes, zero_outputs, masking)| {
            let lens = (0..net.batch)
                .map(|b| (b * 7 + 3) % (net.steps + 1))
                .collect();
            net.features = net.features.max(1);
            Masked {
                net,
                lens,
                holes,
                zero_outputs,
                masking,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(150)))]

    /// Under a mask: every invariant, the f64 reference, and a sequence padded with zero ids
    /// ends in the bits of the unpadded one (a layer that returns only its last state, or
    /// its final states).
    #[test]
    fn masked_stacks_carry_the_state_over(m in masked()) {
        let net = &m.net;
        let model = m.model(net.steps);
        let ids = m.ids(net.steps);
        common::every_invariant(&model, &ids, net.batch).map_err(TestCaseError::fail)?;
        let opts = CompileOptions::new().max_batch(net.batch);
        let base = run(&model, &ids, opts.clone());
        let bounded = net.layers.iter().all(|l| Activation::ALL[l.act] == Activation::Tanh && l.rec <= 1);
        if bounded {
            let want = sinter::reference::run_all(&model, &[Values::F32(&ids)]).unwrap();
            for (i, (&g, &r)) in base.iter().zip(&want[0]).enumerate() {
                if g.is_finite() && r.is_finite() {
                    prop_assert!((f64::from(g) - r).abs() <= 1e-4 * (1.0 + r.abs()), "value {}: {} vs {}", i, g, r);
                }
            }
        }
        // Two more padded steps: the last states keep their bits (unless a layer returns its
        // steps in the order it ran them backwards, which padding moves, in Keras too).
        let moves = net.layers.iter().rev().skip(1).any(|l| l.dirs == 2);
        if (!net.sequences || net.handoff) && !moves {
            let longer = m.model(net.steps + 2);
            let pad = vec![m.pad(); 2 * m.per_step()];
            let padded: Vec<f32> = ids
                .chunks(net.steps * m.per_step())
                .flat_map(|s| s.iter().chain(&pad).copied())
                .collect();
            prop_assert!(same_bits(&base, &run(&longer, &padded, opts)), "padded");
        }
    }
}

/// ONNX `sequence_lens`: a bidirectional LSTM over time-major `X` (`[T, N, F]`) and lengths
/// `[N]` (graph inputs) gives ONNX Runtime's `Y` and `Y_h` (zeros past a sequence's length,
/// the reverse direction starting at its last real step), with the same bits fused or
/// separate, on 1 or 2 threads and alone or in the batch; a length over the steps or
/// negative is an error before the run.
#[test]
fn onnx_sequence_lens_match_onnx_runtime() {
    use sinter::io::npy::{self, Array};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recurrent");
    let model = sinter::io::load(dir.join("seq_lens.onnx")).unwrap();
    let (shape, x) = npy::read_f32(&dir.join("seq_lens.in0.npy")).unwrap();
    let Ok((_, Array::I32(lens))) = npy::read(&dir.join("seq_lens.in1.npy")) else {
        panic!("seq_lens.in1.npy holds int32 lengths");
    };
    let n = shape[1];
    let time_major = model.input_batch_axes()[0]
        .clone()
        .expect("X is time-major");
    let x = time_major.to_samples(&x, n, None);
    let run = |opts: CompileOptions, lens: &[i32]| {
        let plan = model.compile(&opts.max_batch(n)).unwrap();
        plan.run_all(&[Values::F32(&x), Values::I32(lens)])
    };
    let base = run(CompileOptions::new(), &lens).unwrap();
    for opts in [
        CompileOptions::new().fuse(false),
        CompileOptions::new().threads(2).parallel_flops(0),
    ] {
        let got = run(opts, &lens).unwrap();
        assert!(got.iter().zip(&base).all(|(a, b)| same_bits(a, b)));
    }
    for (k, got) in base.iter().enumerate() {
        let onnx = model.output_batch_axes()[k]
            .clone()
            .expect("time-major outputs");
        let (_, want) = npy::read_f32(&dir.join(format!("seq_lens.out{k}.npy"))).unwrap();
        let exact = common::read_f64_as_f32(&dir.join(format!("seq_lens.f64.out{k}.npy")));
        let (want, exact) = (
            onnx.to_samples(&want, n, None),
            onnx.to_samples(&exact, n, None),
        );
        for (i, ((&g, &w), &e)) in got.iter().zip(&want).zip(&exact).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 && (g - e).abs() <= 1e-5,
                "out{k}[{i}]: {g} vs {w}"
            );
        }
    }
    // Each sequence alone: the same bits.
    let (per_x, per_y) = (x.len() / n, base[0].len() / n);
    let plan = model.compile(&CompileOptions::new().max_batch(n)).unwrap();
    for s in 0..n {
        let alone = plan
            .run_all(&[
                Values::F32(&x[s * per_x..][..per_x]),
                Values::I32(&lens[s..s + 1]),
            ])
            .unwrap();
        assert!(
            same_bits(&alone[0], &base[0][s * per_y..][..per_y]),
            "sample {s}"
        );
    }
    for bad in [7, -1] {
        let mut wrong = lens.clone();
        wrong[2] = bad;
        let e = run(CompileOptions::new(), &wrong).unwrap_err().to_string();
        assert!(e.contains("sequence length") && e.contains("lens"), "{e}");
    }
}

/// A recurrence reads its weights every time step, so a plan runs it over whole batches:
/// chunked to keep the activations in L2 (here 100 KB of input projection a sample against
/// 64 KB of weights in all), each step's GEMMs would run on a few rows and read the weights
/// once per chunk and step.
#[test]
fn a_recurrence_runs_whole_batches() {
    let net = Net {
        steps: 200,
        features: 64,
        layers: vec![RnnSpec {
            cell: 1,
            units: 32,
            dirs: 0,
            act: 0,
            rec: 0,
            bias: true,
            rec_bias: false,
        }],
        sequences: true,
        handoff: false,
        batch: 32,
        seed: 5,
    };
    let plan = net
        .model()
        .compile(&CompileOptions::new().max_batch(32))
        .unwrap();
    assert_eq!(plan.chunk(), plan.max_batch(), "{plan}");
}

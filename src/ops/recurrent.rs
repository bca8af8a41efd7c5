//! Recurrent layers: Keras `SimpleRNN`, `LSTM`, `GRU` and `Bidirectional`; ONNX `RNN`, `LSTM`
//! and `GRU`. One layer kind, [`RecurrentConfig`], for every cell and direction count.
//!
//! Lowered as two steps:
//! - the **input projection** of every step of every direction, one Dense over `[steps,
//!   features]` (a GEMM of `batch * steps` rows, both directions' columns side by side);
//! - the **recurrence** ([`RecurrentStep`]): per step, one GEMM of the previous state by the
//!   packed recurrent weights per gate group, that step's projection added and the gates'
//!   activation applied in the GEMM's epilogue ([`EpOp::AddC`], [`EpOp::Act`]), then the cell
//!   update on the gates while they are in L1. A block of up to [`BLOCK`] samples shares each
//!   GEMM; the state never leaves the scratch. Under a mask ([`StepMask`]) a masked row keeps
//!   its state.
//!
//! A sample's bits do not depend on the batch it runs in (each GEMM row is one fixed K-sum, the
//! gate math is elementwise), on the threads (they split samples) or on the tier.

use super::conv1d::steps_channels;
use super::{LayerOp, Lowering, Reference};
use crate::error::{Error, Result};
use crate::kernels::{self, ARows, Activation, EpOp, Gemm, Isa, PackedB};
use crate::model::DType;
use crate::passes::Op;
use crate::plan::{Padding, StepInputs, StepIo, StepOp, StepRef};

/// What a recurrent layer computes at each step, from its gates' pre-activations (the input
/// projection plus the recurrent one, in Keras's gate order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// `h = activation(x W + h R + b)`: Keras `SimpleRNN`, ONNX `RNN`.
    Simple,
    /// Gates `i, f, c, o`: `c = f * c + i * activation(c~)`, `h = o * activation(c)`.
    Lstm,
    /// Gates `z, r, h`: `h = z * h + (1 - z) * activation(h~)`. With `reset_after` the reset
    /// gate scales `h R + b_R` (Keras's default, ONNX `linear_before_reset=1`, PyTorch), else
    /// it scales `h` before `R` (Keras `reset_after=False`, ONNX's default).
    Gru {
        /// Whether the reset gate applies after the recurrent product.
        reset_after: bool,
    },
}

impl Cell {
    /// Gates per unit.
    pub fn gates(self) -> usize {
        match self {
            Cell::Simple => 1,
            Cell::Lstm => 4,
            Cell::Gru { .. } => 3,
        }
    }

    /// Keras's class name.
    fn class(self) -> &'static str {
        match self {
            Cell::Simple => "SimpleRNN",
            Cell::Lstm => "LSTM",
            Cell::Gru { .. } => "GRU",
        }
    }
}

/// One direction of a recurrent layer: its recurrent weights (its input kernel and bias are
/// the node's, side by side with the other direction's).
#[derive(Clone, Debug, PartialEq)]
pub struct Direction {
    /// Runs from the last step to the first.
    pub reverse: bool,
    /// `units x gates * units`, row-major, gates in Keras's order.
    pub recurrent_kernel: Vec<f32>,
    /// `gates * units` values added to `h R` (GRU's recurrent bias, ONNX's `Rb`), if any.
    pub recurrent_bias: Option<Vec<f32>>,
    /// An LSTM's peepholes (ONNX's `P`), `3 * units` values in the order `i, f, o`: the
    /// input and forget gates add `P_i c` and `P_f c` of the previous cell, the output gate
    /// `P_o c` of the new one, before their activations.
    pub peepholes: Option<Vec<f32>>,
}

/// How the two directions of a bidirectional layer are joined (Keras `merge_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeMode {
    /// Forward's units, then backward's.
    Concat,
    /// `forward + backward`.
    Sum,
    /// `(forward + backward) / 2`.
    Average,
    /// `forward * backward`.
    Multiply,
}

/// What a recurrent layer outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returns {
    /// The last step's state `[width]` (directions merged).
    Last,
    /// Every step's state `[steps, width]` (Keras `return_sequences=True`).
    Sequences,
    /// The final states `[states, units]`, one row each in Keras's `return_state` order: per
    /// direction its `h`, then an LSTM's cell `c` (ONNX's `Y_h` and `Y_c`).
    States,
}

/// A recurrent layer over `[steps, features]`: the node's kernel is `features x (directions *
/// gates * units)` (each direction's gates side by side, in Keras's gate order) and its bias
/// that many values; the recurrent weights are here.
///
/// Inputs: the sequence; the mask's token ids (with [`StepMask`]); the initial states (with
/// `initial_state`), `[units]` each, in [`Returns::States`]'s order. Without them the initial
/// state is zero.
#[derive(Clone, Debug, PartialEq)]
pub struct RecurrentConfig {
    /// The cell.
    pub cell: Cell,
    /// State width.
    pub units: usize,
    /// The cell's activation (`tanh` by default).
    pub activation: Activation,
    /// The gates' activation (`sigmoid` by default; unused by [`Cell::Simple`]).
    pub recurrent_activation: Activation,
    /// Whether the node has a bias.
    pub use_bias: bool,
    /// What it outputs.
    pub returns: Returns,
    /// A reversed direction's outputs in the order it computes them (Keras `go_backwards`),
    /// instead of at the steps they belong to (ONNX, Keras `Bidirectional`).
    pub run_order: bool,
    /// One direction, or two (forward and reversed) joined by `merge`.
    pub directions: Vec<Direction>,
    /// How two directions are joined.
    pub merge: MergeMode,
    /// Steps masked by token ids (Keras's `mask_zero`), if any.
    pub mask: Option<StepMask>,
    /// Reads its initial states as inputs (Keras `initial_state=[..]`, ONNX `initial_h`,
    /// `initial_c`).
    pub initial_state: bool,
}

/// A recurrent layer under a mask: it reads the token ids `[steps]` as a second input, and a
/// step whose id is 0 carries the state over, as Keras does: a sequence padded with zeros
/// ends in the state it has alone, whichever way it runs. A sequence masked at every step
/// keeps its initial state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepMask {
    /// A masked step outputs zeros (Keras's `Bidirectional` with `return_sequences`, ONNX),
    /// instead of the state carried over.
    pub zero_outputs: bool,
    /// The second input is each sequence's length (`[1]`, ONNX's `sequence_lens`) instead of
    /// ids: the steps from it on are masked, so a reversed direction starts at the last real
    /// step, as ONNX runs it. A length is a whole number up to the steps (checked before a
    /// run, as token ids are).
    pub lengths: bool,
}

impl StepMask {
    /// The mask's shape for `steps` steps.
    fn shape(self, steps: usize) -> Vec<usize> {
        match self.lengths {
            true => vec![1],
            false => vec![steps],
        }
    }
}

/// One sample's mask over `steps` steps (0: masked) from its input: ids as they are, or 1
/// before its length.
fn step_flags<T: Copy + From<f32> + PartialOrd>(
    mask: StepMask,
    input: &[T],
    steps: usize,
    out: &mut [T],
) {
    match mask.lengths {
        false => out.copy_from_slice(&input[..steps]),
        true => {
            for (t, o) in out.iter_mut().enumerate() {
                let kept = T::from(t as f32) < input[0];
                *o = T::from(f32::from(u8::from(kept)));
            }
        }
    }
}

impl RecurrentConfig {
    /// Gate columns of one direction.
    fn gate_width(&self) -> usize {
        self.cell.gates().saturating_mul(self.units)
    }

    /// State vectors per sample: per direction `h`, and an LSTM's `c`.
    pub fn states(&self) -> usize {
        self.states_per_direction() * self.directions.len()
    }

    /// State vectors per sample and direction: `h`, and an LSTM's `c`.
    fn states_per_direction(&self) -> usize {
        match self.cell {
            Cell::Lstm => 2,
            _ => 1,
        }
    }

    /// The name of state `k` in [`Returns::States`]'s order: `h`, `c`, `forward_h`, ..
    pub fn state_name(&self, k: usize) -> String {
        let per = self.states_per_direction();
        let which = if per == 2 && k % 2 == 1 { "c" } else { "h" };
        match self.directions.len() {
            2 if k / per == 0 => format!("forward_{which}"),
            2 => format!("backward_{which}"),
            _ => which.to_string(),
        }
    }

    /// Inputs the layer reads: the sequence, the mask's ids, the initial states.
    fn input_count(&self) -> usize {
        1 + usize::from(self.mask.is_some()) + if self.initial_state { self.states() } else { 0 }
    }

    /// Output values per sample.
    fn out_len(&self, steps: usize) -> usize {
        match self.returns {
            Returns::Sequences => steps * self.width(),
            Returns::Last => self.width(),
            Returns::States => self.states() * self.units,
        }
    }

    /// The output shape (without the batch) at `steps` steps.
    fn out_shape(&self, steps: usize) -> Vec<usize> {
        match self.returns {
            Returns::Sequences => vec![steps, self.width()],
            Returns::Last => vec![self.width()],
            Returns::States => vec![self.states(), self.units],
        }
    }

    /// Width of the output at each step.
    pub fn width(&self) -> usize {
        match (self.directions.len(), self.merge) {
            (2, MergeMode::Concat) => 2 * self.units,
            _ => self.units,
        }
    }

    /// Checks the parameters and the recurrent weights.
    fn check(&self) -> Result<(), String> {
        let (h, gh) = (self.units, self.gate_width());
        if h == 0 {
            return Err(format!("{} units must be positive", self.cell.class()));
        }
        if !matches!(self.directions.len(), 1 | 2) {
            return Err(format!(
                "{} directions: a recurrent layer has one or two",
                self.directions.len()
            ));
        }
        for act in [self.activation, self.recurrent_activation] {
            if act.is_row_wise() {
                return Err(format!(
                    "{} as a recurrent activation: only elementwise ones are supported",
                    act.keras_name()
                ));
            }
        }
        let want = h
            .checked_mul(gh)
            .ok_or("the recurrent kernel's size overflows")?;
        for d in &self.directions {
            if d.recurrent_kernel.len() != want {
                return Err(format!(
                    "the recurrent kernel has {} values, expected {want} ([{h}, {gh}])",
                    d.recurrent_kernel.len()
                ));
            }
            if let Some(b) = d.recurrent_bias.as_ref().filter(|b| b.len() != gh) {
                return Err(format!(
                    "the recurrent bias has {} values, expected {gh}",
                    b.len()
                ));
            }
            match (&d.peepholes, self.cell) {
                (Some(p), Cell::Lstm) if p.len() != 3 * h => {
                    return Err(format!("{} peephole weights, expected {}", p.len(), 3 * h));
                }
                (Some(_), Cell::Simple | Cell::Gru { .. }) => {
                    return Err("peepholes are an LSTM's".into());
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl LayerOp for RecurrentConfig {
    fn class_name(&self) -> &'static str {
        match self.directions.len() {
            2 => "Bidirectional",
            _ => self.cell.class(),
        }
    }
    fn base_name(&self) -> &'static str {
        match (self.directions.len(), self.cell) {
            (2, _) => "bidirectional",
            (_, Cell::Simple) => "simple_rnn",
            (_, Cell::Lstm) => "lstm",
            (_, Cell::Gru { .. }) => "gru",
        }
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let class = self.cell.class();
        let Some(x) = inputs
            .first()
            .filter(|_| inputs.len() == self.input_count())
        else {
            return Err(format!(
                "{class} reads {} input(s) (the sequence{}{}), got {}",
                self.input_count(),
                if self.mask.is_some() {
                    ", the mask's ids"
                } else {
                    ""
                },
                if self.initial_state {
                    ", the initial states"
                } else {
                    ""
                },
                inputs.len()
            ));
        };
        let (steps, _) = steps_channels(x, class)?;
        let mut rest = inputs[1..].iter();
        if let Some(mask) = self.mask
            && let Some(ids) = rest.next()
            && **ids != mask.shape(steps)
        {
            return Err(format!(
                "the mask's input is {ids:?}, expected {:?}",
                mask.shape(steps)
            ));
        }
        if let Some(s) = rest.find(|s| **s != [self.units]) {
            return Err(format!(
                "an initial state of shape {s:?}, expected [{}]",
                self.units
            ));
        }
        self.check()?;
        if steps == 0 {
            return Err(format!("{class} needs at least one step"));
        }
        let shape = self.out_shape(steps);
        crate::model::checked_elems(&shape)?;
        Ok(shape)
    }
    fn reads(&self, dtypes: &[DType]) -> bool {
        // The token ids of a mask may be integers.
        dtypes.first() == Some(&DType::F32)
    }
    fn param_count(&self) -> usize {
        self.directions
            .iter()
            .map(|d| {
                let extra = [&d.recurrent_bias, &d.peepholes];
                d.recurrent_kernel.len()
                    + extra
                        .iter()
                        .map(|v| v.as_ref().map_or(0, Vec::len))
                        .sum::<usize>()
            })
            .sum()
    }
    fn weight_dims(&self, input: &[usize]) -> Option<(usize, usize, bool)> {
        let features = *input.last().unwrap_or(&0);
        Some((
            features,
            self.gate_width().saturating_mul(self.directions.len()),
            self.use_bias,
        ))
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let steps = cx.in_shape().first().copied().unwrap_or(0);
        self.check().map_err(|m| cx.fail(m))?;
        let projection = Op::Dense {
            weights: cx.graph_weights()?,
            acts: Vec::new(),
            conv: None,
        };
        let width = self.gate_width() * self.directions.len();
        // The projection reads the features; the recurrence it, the mask's ids and the
        // initial states.
        let rest = cx.inputs.split_off(1.min(cx.inputs.len()));
        cx.push("input projection", projection, vec![steps, width]);
        cx.inputs.extend(rest);
        Ok(Op::Step(StepRef::new(RecurrentStep {
            config: self.clone(),
            steps,
            packed: Vec::new(),
            isa: None,
        })))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let w = cx.weights()?;
        let (steps, _) = steps_channels(cx.in_shape(), self.cell.class()).map_err(Error::Model)?;
        let xw = self.gate_width() * self.directions.len();
        let xp = super::dense::dense(cx.inputs[0], w, xw, Activation::Linear);
        let per = self.out_len(steps);
        let mut y = vec![0.0; cx.batch * per];
        let samples = xp.chunks_exact(steps * xw).zip(y.chunks_exact_mut(per));
        let masked = usize::from(self.mask.is_some());
        let mut flags = vec![0.0; steps];
        for (b, (x, out)) in samples.enumerate() {
            let ids = match self.mask {
                Some(m) => {
                    let per = m.shape(steps)[0];
                    step_flags(m, &cx.inputs[1][b * per..][..per], steps, &mut flags);
                    Some(&flags[..])
                }
                None => None,
            };
            // Initial state `k` of this sample (zeros without them).
            let zeros = vec![0.0; self.units];
            let initial = |k: usize| match self.initial_state {
                true => &cx.inputs[1 + masked + k][b * self.units..][..self.units],
                false => &zeros[..],
            };
            for (d, dir) in self.directions.iter().enumerate() {
                let at = d * self.states_per_direction();
                let init = (initial(at), initial((at + 1).min(self.states() - 1)));
                reference_direction(self, d, dir, (x, ids, init), steps, out);
            }
        }
        Ok(y)
    }
}

/// Initial `h` and `c` of one sample's direction.
type Initial<'a> = (&'a [f64], &'a [f64]);

/// One sample's direction `d` in f64: `x` is its input projection (`[steps, directions *
/// gates * units]`), `ids` its mask's token ids, `out` its output.
fn reference_direction(
    c: &RecurrentConfig,
    d: usize,
    dir: &Direction,
    (x, ids, (h0, c0)): (&[f64], Option<&[f64]>, Initial<'_>),
    steps: usize,
    out: &mut [f64],
) {
    let (h, gh) = (c.units, c.gate_width());
    let xw = gh * c.directions.len();
    let r = |i: usize, j: usize| f64::from(dir.recurrent_kernel[i * gh + j]);
    let rb = |j: usize| dir.recurrent_bias.as_ref().map_or(0.0, |b| f64::from(b[j]));
    let act = |v: &mut [f64]| crate::reference::activation_row(c.activation, v);
    let rec = |v: &mut [f64]| crate::reference::activation_row(c.recurrent_activation, v);
    let (mut state, mut cell) = (h0.to_vec(), c0.to_vec());
    let sequences = c.returns == Returns::Sequences;
    for k in 0..steps {
        let pos = if dir.reverse { steps - 1 - k } else { k };
        let at = if c.run_order { k } else { pos };
        if ids.is_some_and(|ids| ids[pos] == 0.0) {
            // A masked step: the state carries over.
            if sequences {
                let zero = c.mask.is_some_and(|m| m.zero_outputs);
                let y = if zero { &vec![0.0; h][..] } else { &state[..] };
                merge(c, d, &mut out[at * c.width()..][..c.width()], y);
            }
            continue;
        }
        let xt = &x[pos * xw + d * gh..][..gh];
        // `h R + b_R` over the columns `cols`, scaling `h` by `scale` first.
        let recurrent = |state: &[f64], cols: std::ops::Range<usize>| -> Vec<f64> {
            cols.map(|j| (0..h).map(|i| state[i] * r(i, j)).sum::<f64>() + rb(j))
                .collect()
        };
        match c.cell {
            Cell::Simple => {
                let mut g = recurrent(&state, 0..h);
                g.iter_mut().zip(xt).for_each(|(g, x)| *g += x);
                act(&mut g);
                state = g;
            }
            Cell::Lstm => {
                let mut g = recurrent(&state, 0..gh);
                g.iter_mut().zip(xt).for_each(|(g, x)| *g += x);
                let p = |j: usize| dir.peepholes.as_ref().map_or(0.0, |p| f64::from(p[j]));
                for j in 0..h {
                    g[j] += p(j) * cell[j];
                    g[h + j] += p(h + j) * cell[j];
                }
                rec(&mut g[..2 * h]);
                act(&mut g[2 * h..3 * h]);
                for j in 0..h {
                    cell[j] = g[h + j] * cell[j] + g[j] * g[2 * h + j];
                    g[3 * h + j] += p(2 * h + j) * cell[j];
                }
                rec(&mut g[3 * h..]);
                let mut t = cell.clone();
                act(&mut t);
                state = (0..h).map(|j| g[3 * h + j] * t[j]).collect();
            }
            Cell::Gru { reset_after } => {
                let mut zr = recurrent(&state, 0..2 * h);
                zr.iter_mut().zip(xt).for_each(|(g, x)| *g += x);
                rec(&mut zr);
                let mut n = if reset_after {
                    let rn = recurrent(&state, 2 * h..gh);
                    (0..h).map(|j| xt[2 * h + j] + zr[h + j] * rn[j]).collect()
                } else {
                    let scaled: Vec<f64> = (0..h).map(|j| zr[h + j] * state[j]).collect();
                    let rn = recurrent(&scaled, 2 * h..gh);
                    (0..h).map(|j| xt[2 * h + j] + rn[j]).collect::<Vec<_>>()
                };
                act(&mut n);
                state = (0..h)
                    .map(|j| zr[j] * state[j] + (1.0 - zr[j]) * n[j])
                    .collect();
            }
        }
        if sequences {
            merge(c, d, &mut out[at * c.width()..][..c.width()], &state);
        }
    }
    match c.returns {
        Returns::Sequences => {}
        Returns::Last => merge(c, d, out, &state),
        Returns::States => {
            let per = c.states_per_direction();
            let rows = &mut out[d * per * h..][..per * h];
            rows[..h].copy_from_slice(&state);
            if per == 2 {
                rows[h..].copy_from_slice(&cell);
            }
        }
    }
}

/// Direction `d`'s state into its place in an output row (f32 or f64).
fn merge<T>(c: &RecurrentConfig, d: usize, dst: &mut [T], state: &[T])
where
    T: Copy + std::ops::Add<Output = T> + std::ops::Mul<Output = T> + From<f32>,
{
    let h = c.units;
    match (c.merge, d) {
        (MergeMode::Concat, _) => dst[d * h..][..h].copy_from_slice(&state[..h]),
        (_, 0) => dst[..h].copy_from_slice(&state[..h]),
        (MergeMode::Sum, _) => dst.iter_mut().zip(state).for_each(|(y, &s)| *y = *y + s),
        (MergeMode::Average, _) => dst
            .iter_mut()
            .zip(state)
            .for_each(|(y, &s)| *y = (*y + s) * T::from(0.5)),
        (MergeMode::Multiply, _) => dst.iter_mut().zip(state).for_each(|(y, &s)| *y = *y * s),
    }
}

/// Samples that share each step's GEMM.
const BLOCK: usize = 32;

/// The recurrence of a [`RecurrentConfig`] over its input projection (`[steps, directions *
/// gates * units]`), the recurrent kernels packed for the plan's tier.
#[derive(Debug)]
struct RecurrentStep {
    config: RecurrentConfig,
    /// Steps at the plan's longest sequence.
    steps: usize,
    /// Per direction, the packed recurrent kernel.
    packed: Vec<Packed>,
    /// The tier `packed` is for (`None` until the plan packs it).
    isa: Option<Isa>,
}

/// One direction's recurrent kernel, packed for its GEMMs.
#[derive(Debug)]
struct Packed {
    /// The columns of each [`Part`].
    parts: Vec<PackedB>,
    /// All the gate columns at once, for blocks of fewer than [`FEW_ROWS`] samples (where a
    /// GEMM call's fixed cost is larger than the activation pass it saves): LSTM and GRU
    /// with `reset_after`.
    whole: Option<PackedB>,
}

/// Below this many samples, an LSTM or a `reset_after` GRU step runs one GEMM over all its
/// gates and applies their activations as passes over each sample's row (the same bits as in
/// the epilogue); from it on, one GEMM per [`Part`], the activation in the epilogue. Measured
/// on an AMD EPYC Zen 5 (one thread): at 1 sample the one GEMM is 9 to 10% faster, at 32
/// samples the parts are 2% (LSTM) and 11% (bidirectional GRU) faster. On a Zen 3 (AVX2) the
/// one GEMM was 4 to 7% faster at 4 and 5 samples (lstm128, bigru64; two and three rows now
/// run several panels at once) and within 2.5% from 6 to 32.
const FEW_ROWS: usize = 6;

/// One block's scratch: the gates, the state, the LSTM's cell (or the GRU's scaled state);
/// under a mask, the block's token ids (`[n, steps]`), the masked rows' state while a step
/// runs, and a row of zeros (a masked step's output).
struct State<'s> {
    gates: &'s mut [f32],
    h: &'s mut [f32],
    c: &'s mut [f32],
    ids: &'s mut [f32],
    kept: &'s mut [f32],
    zeros: &'s [f32],
}

impl RecurrentStep {
    /// The GEMMs of one step ([`Part`]), in order.
    fn parts(&self) -> &'static [Part] {
        use EpAct::{Cell as C, Gate as G, No as N};
        const fn part(gates: (usize, usize), add_x: bool, act: EpAct) -> Part {
            Part { gates, add_x, act }
        }
        const SIMPLE: &[Part] = &[part((0, 1), true, C)];
        // i, f | c~ | o
        const LSTM: &[Part] = &[
            part((0, 2), true, G),
            part((2, 3), true, C),
            part((3, 4), true, G),
        ];
        // z, r | the candidate's `h R + b`, which the reset gate scales.
        const GRU_AFTER: &[Part] = &[part((0, 2), true, G), part((2, 3), false, N)];
        // z, r | the candidate from the state the reset gate scaled.
        const GRU_BEFORE: &[Part] = &[part((0, 2), true, G), part((2, 3), true, C)];
        match self.config.cell {
            Cell::Simple => SIMPLE,
            Cell::Lstm => LSTM,
            Cell::Gru { reset_after: true } => GRU_AFTER,
            Cell::Gru { reset_after: false } => GRU_BEFORE,
        }
    }

    /// The columns of the recurrent kernel GEMM `part` computes.
    fn cols(&self, part: usize) -> std::ops::Range<usize> {
        let (a, b) = self.parts()[part].gates;
        a * self.config.units..b * self.config.units
    }

    /// Samples `first..` of the chunk (one thread's): blocks of up to [`BLOCK`], each
    /// direction in turn.
    fn samples(
        &self,
        isa: Isa,
        (steps, first): (usize, usize),
        ins: &StepInputs<'_>,
        (x, out): (&[f32], &mut [f32]),
        scratch: &mut [f32],
    ) {
        let c = &self.config;
        let xw = c.gate_width() * c.directions.len();
        let per = c.out_len(steps);
        let (h, gh) = (c.units, c.gate_width());
        let blocks = x
            .chunks(BLOCK * steps * xw)
            .zip(out.chunks_mut(BLOCK * per));
        for (b, (x, out)) in blocks.enumerate() {
            let n = out.len() / per;
            let (gates, rest) = scratch.split_at_mut(BLOCK * gh);
            let (hs, rest) = rest.split_at_mut(BLOCK * h);
            let (cs, rest) = rest.split_at_mut(BLOCK * h);
            let masked = c.mask.is_some();
            let (ids, rest) = rest.split_at_mut(if masked { BLOCK * self.steps } else { 0 });
            let (kept, rest) = rest.split_at_mut(if masked { BLOCK * 2 * h } else { 0 });
            let zeros = &mut rest[..if masked { h } else { 0 }];
            zeros.fill(0.0);
            let ids = &mut ids[..if masked { n * steps } else { 0 }];
            match c.mask {
                Some(m) if m.lengths => {
                    // The block's lengths at the back of `ids`, each row's flags from the
                    // front: row `r` reads its length, then writes up to where row `r + 1`'s
                    // is, never past it.
                    let at = ids.len() - n;
                    ins.copy_f32(1, first + b * BLOCK, &mut ids[at..]);
                    for r in 0..n {
                        let len = [ids[at + r]];
                        step_flags(m, &len, steps, &mut ids[r * steps..][..steps]);
                    }
                }
                Some(_) => ins.copy_f32(1, (first + b * BLOCK) * steps, ids),
                None => {}
            }
            let mut st = State {
                gates: &mut gates[..n * gh],
                h: &mut hs[..n * h],
                c: &mut cs[..n * h],
                ids,
                kept,
                zeros,
            };
            for d in 0..c.directions.len() {
                // The initial states: zeros, or this block's rows of the inputs.
                st.h.fill(0.0);
                st.c.fill(0.0);
                if c.initial_state {
                    let per = c.states_per_direction();
                    let at = 1 + usize::from(masked) + d * per;
                    let from = (first + b * BLOCK) * h;
                    ins.copy_f32(at, from, st.h);
                    if per == 2 {
                        ins.copy_f32(at + 1, from, st.c);
                    }
                }
                self.direction(isa, d, (n, steps), x, out, &mut st);
            }
        }
    }

    /// Direction `d` over `n` samples of `steps` steps.
    fn direction(
        &self,
        isa: Isa,
        d: usize,
        (n, steps): (usize, usize),
        x: &[f32],
        out: &mut [f32],
        st: &mut State<'_>,
    ) {
        let c = &self.config;
        let (h, gh, w) = (c.units, c.gate_width(), c.width());
        let xw = gh * c.directions.len();
        let per = c.out_len(steps);
        let reverse = c.directions[d].reverse;
        let zero_outputs = c.mask.is_some_and(|m| m.zero_outputs);
        let sequences = c.returns == Returns::Sequences;
        for k in 0..steps {
            let pos = if reverse { steps - 1 - k } else { k };
            // Rows whose id at this step is 0 (none without a mask).
            let masked = |ids: &[f32], r: usize| ids.get(r * steps + pos) == Some(&0.0);
            let any = (0..n).any(|r| masked(st.ids, r));
            if any && (0..n).all(|r| masked(st.ids, r)) {
                // Every row carries its state over: no step to run.
            } else if any {
                // Run the step, then put the masked rows' state back (each row of a step is
                // computed on its own: the others' bits do not depend on it).
                for r in (0..n).filter(|&r| masked(st.ids, r)) {
                    let (kh, kc) = st.kept[r * 2 * h..][..2 * h].split_at_mut(h);
                    kh.copy_from_slice(&st.h[r * h..][..h]);
                    kc.copy_from_slice(&st.c[r * h..][..h]);
                }
                self.step(isa, d, n, (&x[pos * xw + d * gh..], steps * xw), st);
                for r in (0..n).filter(|&r| masked(st.ids, r)) {
                    let (kh, kc) = st.kept[r * 2 * h..][..2 * h].split_at(h);
                    st.h[r * h..][..h].copy_from_slice(kh);
                    st.c[r * h..][..h].copy_from_slice(kc);
                }
            } else {
                self.step(isa, d, n, (&x[pos * xw + d * gh..], steps * xw), st);
            }
            if sequences {
                let at = if c.run_order { k } else { pos };
                for (r, state) in st.h.chunks_exact(h).enumerate() {
                    let y = if zero_outputs && masked(st.ids, r) {
                        st.zeros
                    } else {
                        state
                    };
                    merge(c, d, &mut out[r * per + at * w..][..w], y);
                }
            }
        }
        match c.returns {
            Returns::Sequences => {}
            Returns::Last => {
                for (r, state) in st.h.chunks_exact(h).enumerate() {
                    merge(c, d, &mut out[r * per..][..w], state);
                }
            }
            Returns::States => {
                // Row `d * k` is the direction's `h`, the next its `c` (an LSTM's).
                let k = c.states_per_direction();
                for r in 0..n {
                    let rows = &mut out[r * per + d * k * h..][..k * h];
                    rows[..h].copy_from_slice(&st.h[r * h..][..h]);
                    if k == 2 {
                        rows[h..].copy_from_slice(&st.c[r * h..][..h]);
                    }
                }
            }
        }
    }

    /// One step of direction `d` for `n` samples: `x` holds row `r`'s input projection at `r *
    /// ld`.
    fn step(&self, isa: Isa, d: usize, n: usize, (x, ld): (&[f32], usize), st: &mut State<'_>) {
        let c = &self.config;
        let (h, gh) = (c.units, c.gate_width());
        // GEMM `p` of `a` (the state, or the state the reset gate scaled) into its gate
        // columns: `+ b_R`, `+ x` and its activation in the epilogue.
        let gemm = |p: usize, a: &[f32], gates: &mut [f32]| {
            let part = &self.parts()[p];
            let cols = self.cols(p);
            let rb = c.directions[d].recurrent_bias.as_deref();
            let bias = rb.map(|b| EpOp::bias(&b[cols.clone()]));
            let add = part.add_x.then(|| EpOp::add_c(&x[cols.start..], ld));
            let act = match part.act {
                EpAct::Gate => Some(EpOp::Act(c.recurrent_activation)),
                EpAct::Cell => Some(EpOp::Act(c.activation)),
                EpAct::No => None,
            };
            let ops = Ops::of([bias, add, act]);
            Gemm::new(
                isa,
                n,
                ARows::new(a, h),
                self.packed[d].parts[p].view(),
                ops.as_slice(),
            )
            .run(&mut gates[cols.start..], gh);
        };
        // One GEMM over every gate column: `+ b_R` (and `+ x`) in the epilogue.
        let whole_gemm = |w: &PackedB, add_x: bool, a: &[f32], gates: &mut [f32]| {
            let rb = c.directions[d].recurrent_bias.as_deref();
            let ops = Ops::of([rb.map(EpOp::bias), add_x.then(|| EpOp::add_c(x, ld)), None]);
            Gemm::new(isa, n, ARows::new(a, h), w.view(), ops.as_slice()).run(gates, gh);
        };
        match c.cell {
            Cell::Simple => {
                gemm(0, st.h, st.gates);
                st.h.copy_from_slice(&st.gates[..n * h]);
            }
            Cell::Lstm if c.directions[d].peepholes.is_some() => {
                self.peephole_step(isa, d, n, (x, ld), st);
            }
            Cell::Lstm => {
                match &self.packed[d].whole {
                    Some(whole) if n < FEW_ROWS => {
                        whole_gemm(whole, true, st.h, st.gates);
                        for g in st.gates.chunks_exact_mut(gh) {
                            kernels::activation(isa, c.recurrent_activation, &mut g[..2 * h]);
                            kernels::activation(isa, c.activation, &mut g[2 * h..3 * h]);
                            kernels::activation(isa, c.recurrent_activation, &mut g[3 * h..]);
                        }
                    }
                    _ => (0..3).for_each(|p| gemm(p, st.h, st.gates)),
                }
                // c = f * c + i * c~, then h = o * activation(c), the activation over the
                // block's cells at once (the old state is no longer read).
                for (g, cr) in st.gates.chunks_exact(gh).zip(st.c.chunks_exact_mut(h)) {
                    let (i, f, cand) = (&g[..h], &g[h..2 * h], &g[2 * h..3 * h]);
                    for j in 0..h {
                        cr[j] = f[j] * cr[j] + i[j] * cand[j];
                    }
                }
                lstm_output(isa, c, st);
            }
            Cell::Gru { reset_after: true } => {
                match &self.packed[d].whole {
                    Some(whole) if n < FEW_ROWS => {
                        whole_gemm(whole, false, st.h, st.gates);
                        for (r, g) in st.gates.chunks_exact_mut(gh).enumerate() {
                            let zr = &mut g[..2 * h];
                            zr.iter_mut().zip(&x[r * ld..]).for_each(|(g, x)| *g += x);
                            kernels::activation(isa, c.recurrent_activation, zr);
                        }
                    }
                    _ => (0..2).for_each(|p| gemm(p, st.h, st.gates)),
                }
                // The candidates, side by side in `c`, through the activation at once.
                let rows = st.gates.chunks_exact(gh).zip(st.c.chunks_exact_mut(h));
                for (r, (g, cand)) in rows.enumerate() {
                    let xn = &x[r * ld + 2 * h..][..h];
                    for j in 0..h {
                        cand[j] = xn[j] + g[h + j] * g[2 * h + j];
                    }
                }
                kernels::activation(isa, c.activation, st.c);
                let rows = st.gates.chunks_exact(gh).zip(st.c.chunks_exact(h));
                for ((g, cand), hr) in rows.zip(st.h.chunks_exact_mut(h)) {
                    gru_update(&g[..h], cand, hr);
                }
            }
            Cell::Gru { reset_after: false } => {
                gemm(0, st.h, st.gates);
                // The reset gate scales the state before the candidate's product: into `c`.
                let rows = st.gates.chunks_exact(gh).zip(st.h.chunks_exact(h));
                for ((g, hr), scaled) in rows.zip(st.c.chunks_exact_mut(h)) {
                    for j in 0..h {
                        scaled[j] = g[h + j] * hr[j];
                    }
                }
                gemm(1, st.c, st.gates);
                let rows = st.gates.chunks_exact(gh).zip(st.h.chunks_exact_mut(h));
                for (g, hr) in rows {
                    gru_update(&g[..h], &g[2 * h..], hr);
                }
            }
        }
    }
}

impl RecurrentStep {
    /// One step of an LSTM direction with peepholes: one GEMM over every gate (`+ x`, `+ b_R`
    /// in its epilogue), then per row the peepholes and activations in the gates' order.
    fn peephole_step(
        &self,
        isa: Isa,
        d: usize,
        n: usize,
        (x, ld): (&[f32], usize),
        st: &mut State<'_>,
    ) {
        let c = &self.config;
        let (h, gh) = (c.units, c.gate_width());
        let (Some(whole), Some(p)) = (&self.packed[d].whole, &c.directions[d].peepholes) else {
            return;
        };
        let rb = c.directions[d].recurrent_bias.as_deref();
        let ops = Ops::of([rb.map(EpOp::bias), Some(EpOp::add_c(x, ld)), None]);
        Gemm::new(isa, n, ARows::new(st.h, h), whole.view(), ops.as_slice()).run(st.gates, gh);
        let rows = st.gates.chunks_exact_mut(gh).zip(st.c.chunks_exact_mut(h));
        for (g, cr) in rows {
            for j in 0..h {
                g[j] += p[j] * cr[j];
                g[h + j] += p[h + j] * cr[j];
            }
            kernels::activation(isa, c.recurrent_activation, &mut g[..2 * h]);
            kernels::activation(isa, c.activation, &mut g[2 * h..3 * h]);
            for j in 0..h {
                cr[j] = g[h + j] * cr[j] + g[j] * g[2 * h + j];
                g[3 * h + j] += p[2 * h + j] * cr[j];
            }
            kernels::activation(isa, c.recurrent_activation, &mut g[3 * h..]);
        }
        lstm_output(isa, c, st);
    }
}

/// `h = o * activation(c)` of an LSTM step, the activation over the block's cells at once.
fn lstm_output(isa: Isa, c: &RecurrentConfig, st: &mut State<'_>) {
    let (h, gh) = (c.units, c.gate_width());
    st.h.copy_from_slice(st.c);
    kernels::activation(isa, c.activation, st.h);
    for (g, hr) in st.gates.chunks_exact(gh).zip(st.h.chunks_exact_mut(h)) {
        for (h, &o) in hr.iter_mut().zip(&g[3 * h..]) {
            *h *= o;
        }
    }
}

/// One GEMM of a step: the gate columns `gates.0 * units .. gates.1 * units`, whether the
/// step's input projection is added in its epilogue, and the activation applied there.
struct Part {
    gates: (usize, usize),
    add_x: bool,
    act: EpAct,
}

/// Which activation a [`Part`]'s epilogue applies.
#[derive(Clone, Copy)]
enum EpAct {
    /// The gates' (`recurrent_activation`).
    Gate,
    /// The cell's (`activation`).
    Cell,
    /// None: the gate math applies it.
    No,
}

/// `h = z * h + (1 - z) * candidate`, Keras's order.
fn gru_update(z: &[f32], cand: &[f32], h: &mut [f32]) {
    for ((h, &z), &n) in h.iter_mut().zip(z).zip(cand) {
        *h = z * *h + (1.0 - z) * n;
    }
}

/// Up to three epilogue ops, without allocating.
struct Ops<'a> {
    ops: [EpOp<'a>; 3],
    len: usize,
}

impl<'a> Ops<'a> {
    /// The ops given, in order.
    fn of(given: [Option<EpOp<'a>>; 3]) -> Ops<'a> {
        let linear = || EpOp::Act(Activation::Linear);
        let mut ops = Ops {
            ops: [linear(), linear(), linear()],
            len: 0,
        };
        for op in given.into_iter().flatten() {
            ops.ops[ops.len] = op;
            ops.len += 1;
        }
        ops
    }

    fn as_slice(&self) -> &[EpOp<'a>] {
        &self.ops[..self.len]
    }
}

impl StepOp for RecurrentStep {
    fn describe(&self) -> String {
        let c = &self.config;
        let dirs = match (c.directions.len(), c.directions[0].reverse) {
            (2, _) => format!(", bidirectional {:?}", c.merge).to_lowercase(),
            (_, true) => ", reversed".to_string(),
            _ => String::new(),
        };
        format!(
            "{} {} recurrence, gemm {}x{} per step{dirs}",
            c.cell.class(),
            c.units,
            c.units,
            c.gate_width()
        )
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let c = &self.config;
        let want = c.gate_width() * c.directions.len();
        let masked = usize::from(c.mask.is_some());
        match inputs {
            [[steps, w], rest @ ..]
                if *w == want
                    && inputs.len() == c.input_count()
                    && c.mask.is_none_or(|m| rest[0] == m.shape(*steps))
                    && rest[masked..].iter().all(|r| *r == [c.units]) =>
            {
                Ok(c.out_shape(*steps))
            }
            _ => Err(format!(
                "a recurrence reads [steps, {want}]{}{}",
                match c.mask {
                    Some(m) if m.lengths => ", the length [1]",
                    Some(_) => ", the ids [steps]",
                    None => "",
                },
                if c.initial_state {
                    format!(" and {} states [{}]", c.states(), c.units)
                } else {
                    String::new()
                }
            )),
        }
    }
    fn input_limit(&self, input: usize) -> Option<usize> {
        // Lengths: whole numbers up to the steps.
        let lengths = self.config.mask.is_some_and(|m| m.lengths);
        (lengths && input == 1).then_some(self.steps + 1)
    }
    fn weight_bytes(&self) -> usize {
        let parts = self
            .packed
            .iter()
            .flat_map(|p| p.parts.iter().chain(&p.whole));
        parts.map(PackedB::bytes).sum()
    }
    fn weight_passes(&self) -> usize {
        self.steps
    }
    fn flops(&self) -> usize {
        let c = &self.config;
        2 * self.steps * c.directions.len() * c.units * c.gate_width()
    }
    fn scratch(&self) -> usize {
        let c = &self.config;
        let mask = match c.mask {
            // The block's ids, its rows' kept state and a row of zeros.
            Some(_) => BLOCK * (self.steps + 2 * c.units) + c.units,
            None => 0,
        };
        BLOCK * (c.gate_width() + 2 * c.units) + mask
    }
    fn seq(&self, ins: &[bool]) -> Result<bool, String> {
        Ok(ins.first().copied().unwrap_or(false) && self.config.returns == Returns::Sequences)
    }
    fn padding(&self) -> Padding {
        let c = &self.config;
        // Keras's `go_backwards` returns its steps in the order it ran them: padding moves
        // them.
        let sequences = c.returns == Returns::Sequences;
        let moves = sequences && c.run_order && c.directions.iter().any(|d| d.reverse);
        if c.mask.is_some_and(|m| m.lengths) && !moves {
            // The steps past a sequence's length are masked: padding past them too.
            return Padding::Exact;
        }
        if c.mask.is_some() && !moves {
            // Padded steps (id 0) carry the state over: a sequence ends, in either direction,
            // in the state it has alone.
            return Padding::MaskedBy {
                input: 1,
                one: false,
            };
        }
        match sequences && c.directions.iter().all(|d| !d.reverse) {
            true => Padding::Exact,
            false => Padding::Changes,
        }
    }
    fn pack(&self, isa: Isa) -> Option<Result<StepRef, String>> {
        let c = &self.config;
        let (h, gh) = (c.units, c.gate_width());
        let pack = |kernel: &[f32], cols: std::ops::Range<usize>| {
            let part: Vec<f32> = kernel
                .chunks_exact(gh)
                .flat_map(|row| &row[cols.clone()])
                .copied()
                .collect();
            PackedB::pack(isa, &part, h, cols.len()).map_err(|e| e.to_string())
        };
        let whole = matches!(c.cell, Cell::Lstm | Cell::Gru { reset_after: true });
        let mut packed = Vec::with_capacity(c.directions.len());
        for d in &c.directions {
            let parts = (0..self.parts().len())
                .map(|p| pack(&d.recurrent_kernel, self.cols(p)))
                .collect::<Result<Vec<_>, _>>();
            let whole = whole.then(|| pack(&d.recurrent_kernel, 0..gh)).transpose();
            match (parts, whole) {
                (Ok(parts), Ok(whole)) => packed.push(Packed { parts, whole }),
                (Err(e), _) | (_, Err(e)) => return Some(Err(e)),
            }
        }
        // The packed kernels replace the raw ones: the plan does not hold them twice.
        let mut config = c.clone();
        for d in &mut config.directions {
            d.recurrent_kernel = Vec::new();
        }
        Some(Ok(StepRef::new(RecurrentStep {
            config,
            steps: self.steps,
            packed,
            isa: Some(isa),
        })))
    }
    fn run(&self, isa: Isa, io: StepIo<'_>) {
        let c = &self.config;
        if self.isa != Some(isa) || self.packed.len() != c.directions.len() {
            debug_assert!(false, "a recurrence runs only as its plan packed it");
            return;
        }
        let xw = c.gate_width() * c.directions.len();
        let steps = io.input_len(0) / xw.max(1);
        let batch = io.batch();
        let flops = 2 * batch * steps * xw * c.units;
        let pool = io.pool(flops);
        let (ins, out, scratch) = io.scratch();
        let one = self.scratch();
        let per = c.out_len(steps);
        if batch == 0 || per == 0 {
            return;
        }
        let threads = match pool {
            Some(_) => scratch.len() / one.max(1),
            None => 1,
        };
        // Samples split evenly over the threads, each with its own scratch.
        let parts = threads.min(batch).max(1);
        let each = batch.div_ceil(parts);
        let x = ins.get(0);
        let items = x
            .chunks(each * steps * xw)
            .zip(out.chunks_mut(each * per))
            .zip(scratch.chunks_mut(one))
            .enumerate();
        StepIo::for_each(pool, items, |(p, ((x, o), s))| {
            self.samples(isa, (steps, p * each), &ins, (x, o), s)
        });
    }
}

//! The mutable half of a plan: the arena.

use super::step::{StepInputs, StepIo};
use super::{Kind, Loc, Plan, stretch};
use crate::error::{Error, Result};
use crate::kernels::{self, ops};
use crate::model::DType;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One model input for [`Session::run_all`]: `batch x len` values, batch first.
#[derive(Clone, Copy, Debug)]
pub enum Values<'a> {
    /// 32-bit floats (for an integer input: every value must be a whole number).
    F32(&'a [f32]),
    /// 32-bit integers (token ids).
    I32(&'a [i32]),
    /// 64-bit integers (token ids).
    I64(&'a [i64]),
    /// Booleans (masks).
    Bool(&'a [bool]),
}

impl<'a> Values<'a> {
    /// Samples `first..first + count` of an input of `len` values per sample.
    pub(crate) fn samples(&self, first: usize, count: usize, len: usize) -> Values<'a> {
        let r = first * len..(first + count) * len;
        match *self {
            Values::F32(v) => Values::F32(&v[r]),
            Values::I32(v) => Values::I32(&v[r]),
            Values::I64(v) => Values::I64(&v[r]),
            Values::Bool(v) => Values::Bool(&v[r]),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::I32(v) => v.len(),
            Values::I64(v) => v.len(),
            Values::Bool(v) => v.len(),
        }
    }
    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Values::F32(_) => DType::F32,
            Values::I32(_) => DType::I32,
            Values::I64(_) => DType::I64,
            Values::Bool(_) => DType::Bool,
        }
    }
    /// Value `i` as an id below `limit`, if it is one.
    fn id(&self, i: usize, limit: usize) -> Option<usize> {
        let id = match *self {
            Values::F32(v) => {
                let x = v[i];
                // Keras casts a float id; only an exact whole number means one id.
                (x.fract() == 0.0 && x >= 0.0 && x < limit as f32).then_some(x as usize)?
            }
            Values::I32(v) => usize::try_from(v[i]).ok()?,
            Values::I64(v) => usize::try_from(v[i]).ok()?,
            Values::Bool(v) => usize::from(v[i]),
        };
        (id < limit).then_some(id)
    }
    /// The value behind a failed [`id`](Self::id), for the error message.
    fn show(&self, i: usize) -> String {
        match *self {
            Values::F32(v) => v[i].to_string(),
            Values::I32(v) => v[i].to_string(),
            Values::I64(v) => v[i].to_string(),
            Values::Bool(v) => v[i].to_string(),
        }
    }
}

impl<'a> From<&'a [f32]> for Values<'a> {
    fn from(v: &'a [f32]) -> Self {
        Values::F32(v)
    }
}
impl<'a> From<&'a [i32]> for Values<'a> {
    fn from(v: &'a [i32]) -> Self {
        Values::I32(v)
    }
}
impl<'a> From<&'a [i64]> for Values<'a> {
    fn from(v: &'a [i64]) -> Self {
        Values::I64(v)
    }
}
impl<'a> From<&'a [bool]> for Values<'a> {
    fn from(v: &'a [bool]) -> Self {
        Values::Bool(v)
    }
}
impl<'a> From<&'a Vec<f32>> for Values<'a> {
    fn from(v: &'a Vec<f32>) -> Self {
        Values::F32(v)
    }
}
impl<'a> From<&'a Vec<i32>> for Values<'a> {
    fn from(v: &'a Vec<i32>) -> Self {
        Values::I32(v)
    }
}
impl<'a> From<&'a Vec<i64>> for Values<'a> {
    fn from(v: &'a Vec<i64>) -> Self {
        Values::I64(v)
    }
}
impl<'a> From<&'a Vec<bool>> for Values<'a> {
    fn from(v: &'a Vec<bool>) -> Self {
        Values::Bool(v)
    }
}

/// The outputs of one run, borrowed from the session's arena until the next run.
#[derive(Debug)]
pub struct Outputs<'s> {
    plan: &'s Plan,
    arena: &'s [f32],
    batch: usize,
    seq: usize,
}

impl<'s> Outputs<'s> {
    /// Number of outputs.
    pub fn len(&self) -> usize {
        self.plan.outputs.len()
    }
    /// Whether there are none (never: a plan has at least one output).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Samples in the batch.
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// The run's sequence length (the longest, when the plan has no variable sequence).
    pub fn seq(&self) -> usize {
        self.seq
    }
    /// Output `k`: `batch x len` values, batch first (`len` at the run's sequence length).
    ///
    /// # Panics
    /// If `k` is not below [`len`](Self::len).
    pub fn get(&self, k: usize) -> &'s [f32] {
        let len = self.batch * self.plan.outputs[k].len_at(self.seq);
        let at = match &self.plan.results {
            Some(r) if self.batch > self.plan.chunk => r[k],
            _ => self.plan.output_locs[k],
        };
        &self.arena[at..at + len]
    }
    /// Output `k` as integers: for an int64 output (ArgMax's labels), whose values are exact
    /// whole numbers held as f32.
    ///
    /// # Panics
    /// If `k` is not below [`len`](Self::len).
    pub fn ints(&self, k: usize) -> impl Iterator<Item = i64> + 's {
        self.get(k).iter().map(|&v| v as i64)
    }
    /// The element type of output `k`.
    ///
    /// # Panics
    /// If `k` is not below [`len`](Self::len).
    pub fn dtype(&self, k: usize) -> DType {
        self.plan.outputs[k].dtype
    }
    /// The output named `name`.
    pub fn by_name(&self, name: &str) -> Option<&'s [f32]> {
        let k = self.plan.outputs.iter().position(|o| o.name == name)?;
        Some(self.get(k))
    }
    /// Every output, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'s [f32]> + '_ {
        (0..self.len()).map(|k| self.get(k))
    }
}

/// Run state for one [`Plan`]: owns the arena. One per thread; cheap to keep around.
///
/// A session holds the `Arc` of the plan it was made from and can only run that plan: using
/// it with another plan is not expressible. Any number of sessions may run one plan at once
/// (`tests/concurrency.rs`). Inputs are checked for count, type, length and (for token ids)
/// range; float values are not validated beyond that: NaN and infinities propagate through
/// the arithmetic (every activation maps a NaN to the canonical quiet NaN), never a panic.
#[derive(Debug)]
pub struct Session {
    plan: Arc<Plan>,
    arena: kernels::Buffer,
}

/// A zeroed arena for `plan`, or an error if the memory is not there.
pub(crate) fn new_arena(plan: &Plan) -> Result<kernels::Buffer> {
    kernels::Buffer::zeroed(plan.arena_len).ok_or_else(|| {
        Error::Options(format!(
            "cannot allocate a {} byte arena (lower max_batch)",
            plan.arena_bytes()
        ))
    })
}

impl Session {
    /// A session for `plan`, with its arena allocated up front.
    pub fn new(plan: Arc<Plan>) -> Result<Session> {
        let arena = new_arena(&plan)?;
        Ok(Session { plan, arena })
    }

    /// The plan this session runs.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// Runs a batch of a one-input, one-output model: `input` is `batch x input_len` values,
    /// batch first. Returns the outputs, `batch x output_len`, borrowed from the arena until
    /// the next run. Allocates nothing. Models with several inputs or outputs, or integer
    /// inputs, use [`run_all`](Self::run_all).
    pub fn run(&mut self, input: &[f32]) -> Result<&[f32]> {
        let (ins, outs) = (self.plan.inputs.len(), self.plan.outputs.len());
        if ins != 1 || outs != 1 {
            return Err(Error::Options(format!(
                "the model has {ins} inputs and {outs} outputs: use Session::run_all"
            )));
        }
        let out = self.run_all(&[Values::F32(input)])?;
        Ok(out.get(0))
    }

    /// Runs a batch: one [`Values`] per model input, in the model's order, each
    /// `batch x len` values. Returns every output. Allocates nothing. A plan with a variable
    /// sequence runs its longest here; see [`run_seq`](Self::run_seq) for the others.
    pub fn run_all(&mut self, inputs: &[Values<'_>]) -> Result<Outputs<'_>> {
        let seq = self.plan.longest_seq();
        self.run_seq(seq, inputs)
    }

    /// Runs `inputs` as [`run_all`](Self::run_all) does, `runs` times (at least once), and
    /// returns each step's median wall time per run, in [`Plan::steps`]'s order: where a
    /// run's time goes. The results are `run_all`'s; the timing costs two clock reads a step.
    pub fn profile(&mut self, inputs: &[Values<'_>], runs: usize) -> Result<Vec<Duration>> {
        let Session { plan, arena } = self;
        let seq = plan.longest_seq();
        let batch = check_inputs(plan, inputs, seq)?;
        let steps = plan.steps.len();
        let mut all = vec![Duration::ZERO; steps * runs.max(1)];
        for times in all.chunks_exact_mut(steps.max(1)) {
            run_checked(plan, arena, inputs, batch, seq, Some(times));
        }
        let mut column = Vec::with_capacity(runs.max(1));
        Ok((0..steps)
            .map(|i| {
                column.clear();
                column.extend(all.iter().skip(i).step_by(steps).copied());
                column.sort_unstable();
                column[column.len() / 2]
            })
            .collect())
    }

    /// [`run_all`](Self::run_all) at a sequence of `seq` positions, within the plan's
    /// [`seq_range`](Plan::seq_range): every input and output whose first axis is the
    /// sequence has `len_at(seq)` values per sample ([`TensorInfo::len_at`]).
    pub fn run_seq(&mut self, seq: usize, inputs: &[Values<'_>]) -> Result<Outputs<'_>> {
        let Session { plan, arena } = self;
        let batch = execute(plan, arena, inputs, seq)?;
        Ok(Outputs {
            plan,
            arena,
            batch,
            seq,
        })
    }
}

/// Checks `inputs` and runs them on `arena` (at most `max_batch` samples, `seq` positions);
/// returns the batch. The outputs are then where [`Outputs::get`] finds them.
pub(crate) fn execute(
    plan: &Plan,
    arena: &mut [f32],
    inputs: &[Values<'_>],
    seq: usize,
) -> Result<usize> {
    let batch = check_inputs(plan, inputs, seq)?;
    run_checked(plan, arena, inputs, batch, seq, None);
    Ok(batch)
}

/// Runs `batch` samples of inputs already checked ([`check_values`]; `batch <= max_batch`),
/// adding each step's wall time to `times` (one per step) if given.
pub(crate) fn run_checked(
    plan: &Plan,
    arena: &mut [f32],
    inputs: &[Values<'_>],
    batch: usize,
    seq: usize,
    mut times: Option<&mut [Duration]>,
) {
    match &plan.results {
        Some(results) if batch > plan.chunk => {
            let mut first = 0;
            while first < batch {
                let b = plan.chunk.min(batch - first);
                run_steps(plan, arena, inputs, (first, b), seq, times.as_deref_mut());
                for (k, o) in plan.outputs.iter().enumerate() {
                    let (src, len) = (plan.output_locs[k], o.len_at(seq));
                    arena.copy_within(src..src + b * len, results[k] + first * len);
                }
                first += b;
            }
        }
        _ => run_steps(plan, arena, inputs, (0, batch), seq, times),
    }
}

/// Outputs of a run of `batch` samples of `seq` positions on `arena` (see [`execute`]).
pub(crate) fn outputs<'s>(
    plan: &'s Plan,
    arena: &'s [f32],
    batch: usize,
    seq: usize,
) -> Outputs<'s> {
    Outputs {
        plan,
        arena,
        batch,
        seq,
    }
}

/// Checks count, types, lengths and ids of a run's inputs and that the batch fits the arena;
/// returns the batch.
fn check_inputs(plan: &Plan, inputs: &[Values<'_>], seq: usize) -> Result<usize> {
    let batch = check_values(plan, inputs, seq)?;
    if batch > plan.max_batch {
        return Err(Error::BatchTooLarge {
            batch,
            max: plan.max_batch,
        });
    }
    Ok(batch)
}

/// Checks count, types, lengths and ids of a run's inputs at `seq` positions; returns the
/// batch (any size).
pub(crate) fn check_values(plan: &Plan, inputs: &[Values<'_>], seq: usize) -> Result<usize> {
    plan.check_seq(seq)?;
    if inputs.len() != plan.inputs.len() {
        let names: Vec<&str> = plan.inputs.iter().map(|i| i.name.as_str()).collect();
        return Err(Error::Input {
            input: names.join(", "),
            msg: format!(
                "{} inputs given, the model takes {} ({})",
                inputs.len(),
                plan.inputs.len(),
                names.join(", ")
            ),
        });
    }
    let mut batch = None;
    for (k, (v, info)) in inputs.iter().zip(&plan.inputs).enumerate() {
        let bad = |msg: String| Error::Input {
            input: info.name.clone(),
            msg,
        };
        if info.dtype == DType::F32 && v.dtype() != DType::F32 {
            return Err(bad(format!(
                "{} values given for a float32 input",
                v.dtype()
            )));
        }
        // A boolean input given numbers: 0 and 1 only (a mask read any other way would be a
        // guess at what the number means).
        if info.dtype == DType::Bool
            && v.dtype() != DType::Bool
            && let Some(i) = (0..v.len()).find(|&i| v.id(i, 2).is_none())
        {
            return Err(bad(format!(
                "value {i} is {}, not a bool (0 or 1)",
                v.show(i)
            )));
        }
        if v.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let len = info.len_at(seq);
        if !v.len().is_multiple_of(len) {
            return Err(Error::InputLength {
                per_sample: len,
                got: v.len(),
            });
        }
        let b = v.len() / len;
        if *batch.get_or_insert(b) != b {
            return Err(bad(format!(
                "{b} samples, but the first input has {}",
                batch.unwrap_or(0)
            )));
        }
        if let Some(super::IdLimit { below: limit, step }) = plan.id_limits[k]
            && let Some(i) = (0..v.len()).find(|&i| v.id(i, limit).is_none())
        {
            // An Embedding's gather, or a recurrent layer reading its sequence lengths.
            let step = &plan.steps[step];
            let layer = step.name.as_str();
            let what = match step.kind {
                Kind::Op(_) => "a sequence length",
                _ => "a token id",
            };
            return Err(bad(format!(
                "value {} (sample {}, position {}) is not {what} of layer {layer:?} (whole numbers in 0..{limit})",
                v.show(i),
                i / len,
                i % len
            )));
        }
    }
    Ok(batch.unwrap_or(0))
}

/// Runs every step of `plan` on samples `first..first + batch` of the inputs (at most the
/// plan's chunk of them), at `seq` positions.
fn run_steps(
    plan: &Plan,
    arena: &mut [f32],
    inputs: &[Values<'_>],
    (first, batch): (usize, usize),
    seq: usize,
    mut times: Option<&mut [Duration]>,
) {
    // Every step over the chunk, but the stretch's: those one sample at a time, each through
    // all of them before the next.
    let mut i = 0;
    while i < plan.steps.len() {
        let (steps, chunk) = match &plan.stretch {
            Some(s) if s.steps.start == i && batch > 1 => (s.steps.clone(), 1),
            _ => (i..i + 1, batch.max(1)),
        };
        for at in (0..batch).step_by(chunk) {
            let b = chunk.min(batch - at);
            let input = Inputs {
                all: inputs,
                plan,
                first: first + at,
                batch: b,
                seq,
            };
            for j in steps.clone() {
                let start = times.is_some().then(Instant::now);
                run_step(plan, arena, input, (j, &plan.steps[j]), (b, seq), at);
                if let (Some(times), Some(start)) = (times.as_deref_mut(), start) {
                    times[j] += start.elapsed();
                }
            }
        }
        i = steps.end;
    }
}

/// Step `i` of `batch` samples, sample `at` of the chunk first (its arena blocks hold the
/// chunk's samples: this run's start `at` samples in).
fn run_step(
    plan: &Plan,
    arena: &mut [f32],
    input: Inputs<'_>,
    (i, step): (usize, &super::Step),
    (batch, seq): (usize, usize),
    at: usize,
) {
    {
        let (in_len, out_len) = (step.in_len.at(seq), step.out_len.at(seq));
        let at_sample = |loc, len| stretch::place(plan.stretch.as_ref(), loc, len, at);
        let (src, dst) = (at_sample(step.src, in_len), at_sample(step.dst, out_len));
        let (il, ol) = (batch * in_len, batch * out_len);
        match &step.kind {
            Kind::Dense {
                w,
                ops,
                rows,
                conv,
                ldc,
                col,
                ..
            } => {
                let (a, c) = views(arena, input, src, dst, il, ol);
                let g = super::gemm::StepGemm {
                    w: w.view(),
                    ops,
                    // A sequence's rows: as many as its positions.
                    rows: if step.out_len.is_seq() {
                        out_len / ldc
                    } else {
                        *rows
                    },
                    window: conv.as_ref(),
                    ldc: *ldc,
                    col: *col,
                    then: plan.weights_after(i),
                };
                plan.exec_gemm(&g, batch, (a, in_len), (c, out_len));
            }
            Kind::Pad {
                left,
                right,
                ch,
                transposed,
            } => {
                let (a, c) = views(arena, input, src, dst, il, ol);
                if *transposed {
                    samples(plan, batch, a, c, |x, y| {
                        ops::pad_transposed(*ch, left * ch, right * ch, x, y)
                    });
                } else {
                    samples(plan, batch, a, c, |x, y| {
                        ops::pad(left * ch, right * ch, x, y)
                    });
                }
            }
            Kind::Activation { act, width } => {
                let data = in_place_or_copy(arena, input, (src, dst), il, ol);
                if act.is_row_wise() {
                    kernels::rows(plan.isa, *act, data, *width);
                } else {
                    kernels::activation(plan.isa, *act, data);
                }
            }
            Kind::Copy => {
                let (a, c) = views(arena, input, src, dst, il, ol);
                c.copy_from_slice(a);
            }
            Kind::Concat { outer, inner } => {
                let total: usize = inner.iter().sum();
                let outer = if step.out_len.is_seq() {
                    out_len / total
                } else {
                    *outer
                };
                let mut offset = 0;
                let srcs =
                    std::iter::once((step.src, step.in_len)).chain(step.rest.iter().copied());
                for ((from, len), &width) in srcs.zip(inner) {
                    // Each sample is `outer` blocks: the chunk is `batch * outer` of them.
                    let from = at_sample(from, len.at(seq));
                    let (a, c) = views(arena, input, from, dst, batch * len.at(seq), ol);
                    ops::concat_part(batch * outer, width, total, offset, a, c);
                    offset += width;
                }
            }
            Kind::Affine { scale, shift } => {
                let data = in_place_or_copy(arena, input, (src, dst), il, ol);
                kernels::affine(plan.isa, data, scale, shift);
            }
            Kind::Norm { norm, width } => {
                let data = in_place_or_copy(arena, input, (src, dst), il, ol);
                kernels::norm_rows(plan.isa, norm, data, *width);
            }
            Kind::Gather { table, dim } => {
                let Loc::Input(k) = src else {
                    unreachable!("a gather reads a model input")
                };
                let Loc::Arena(d) = dst else {
                    unreachable!("steps write the arena")
                };
                let ids = input.all[k];
                let limit = table.len() / dim;
                let start = input.first * in_len;
                let ids = (start..start + il).map(|i| ids.id(i, limit).unwrap_or(0));
                ops::gather(table, *dim, ids, &mut arena[d..d + ol]);
            }
            Kind::Permute { shape, perm } => {
                let (a, c) = views(arena, input, src, dst, il, ol);
                samples(plan, batch, a, c, |x, y| ops::permute(shape, perm, x, y));
            }
            Kind::Op(op) => {
                let io = step_io(arena, input, step, (batch, seq), at);
                let (ins, out) = (io.ins, io.out);
                if op.0.in_place() && src != dst {
                    out.copy_from_slice(ins.get(0));
                }
                let io = StepIo {
                    ins,
                    out,
                    scratch: io.scratch,
                    pool: plan.pool.as_ref(),
                    min_flops: plan.parallel_flops,
                };
                op.0.run(plan.isa, io);
            }
        }
    }
}

/// `f` on each sample of `x` and its part of `y` (a data-movement step), on the plan's
/// threads when worth it ([`super::step::samples`]).
fn samples<F>(plan: &Plan, batch: usize, x: &[f32], y: &mut [f32], f: F)
where
    F: Fn(&[f32], &mut [f32]) + Sync,
{
    let pool = plan.pool.as_ref();
    super::step::samples(pool, plan.parallel_flops, batch, x, y, f);
}

/// The buffers of a step defined in `ops/`: its inputs, its output and its scratch, split
/// apart in the arena (they never overlap: output and scratch are the step's own blocks),
/// from sample `at` of their blocks on (see [`run_step`]).
fn step_io<'a>(
    arena: &'a mut [f32],
    model: Inputs<'a>,
    step: &'a super::Step,
    (batch, seq): (usize, usize),
    at: usize,
) -> StepIo<'a> {
    let stretch = model.plan.stretch.as_ref();
    let Loc::Arena(d) = stretch::place(stretch, step.dst, step.out_len.at(seq), at) else {
        unreachable!("steps write the arena")
    };
    let ol = batch * step.out_len.at(seq);
    let (so, sl) = step.scratch;
    // Cut the arena at the two owned blocks, in address order.
    let (first, second) = if sl == 0 || d < so {
        ((d, ol), (so, sl))
    } else {
        ((so, sl), (d, ol))
    };
    let (lo, rest) = arena.split_at_mut(first.0);
    let (a, rest) = rest.split_at_mut(first.1);
    let (mid, rest) = rest.split_at_mut(second.0.max(first.0 + first.1) - first.0 - first.1);
    let (b, hi) = rest.split_at_mut(second.1);
    let mid_start = first.0 + first.1;
    let hi_start = mid_start + mid.len() + b.len();
    let (out, scratch) = if sl == 0 || d < so { (a, b) } else { (b, a) };
    StepIo {
        ins: StepInputs {
            arena: [(0, lo), (mid_start, mid), (hi_start, hi)],
            model,
            first: (step.src, step.in_len),
            rest: &step.rest,
            batch,
            seq,
            at: (stretch, at),
        },
        out,
        scratch,
        pool: None,
        min_flops: usize::MAX,
    }
}

/// The inputs of one run, seen as the chunk of samples being run.
#[derive(Clone, Copy)]
pub(crate) struct Inputs<'a> {
    all: &'a [Values<'a>],
    plan: &'a Plan,
    first: usize,
    batch: usize,
    seq: usize,
}

impl<'a> Inputs<'a> {
    /// Values `from..from + dst.len()` of input `k`'s chunk into `dst`, integers converted
    /// (a mask given as int64, as Hugging Face's `attention_mask` is).
    pub(super) fn copy_f32(&self, k: usize, from: usize, dst: &mut [f32]) {
        let start = self.first * self.plan.inputs[k].len_at(self.seq) + from;
        let r = start..start + dst.len();
        match self.all[k] {
            Values::F32(v) => dst.copy_from_slice(&v[r]),
            Values::I32(v) => dst.iter_mut().zip(&v[r]).for_each(|(d, &x)| *d = x as f32),
            Values::I64(v) => dst.iter_mut().zip(&v[r]).for_each(|(d, &x)| *d = x as f32),
            Values::Bool(v) => dst
                .iter_mut()
                .zip(&v[r])
                .for_each(|(d, &x)| *d = f32::from(u8::from(x))),
        }
    }

    /// Float input `k`'s values of this chunk (integer inputs are read only by gathers, and
    /// through [`Inputs::copy_f32`]).
    pub(super) fn f32(&self, k: usize) -> &'a [f32] {
        let Values::F32(v) = self.all[k] else {
            unreachable!("integer inputs are read only by gathers")
        };
        let len = self.plan.inputs[k].len_at(self.seq);
        &v[self.first * len..(self.first + self.batch) * len]
    }
}

/// The step's values to work on in place: its own buffer, or its input copied there first.
fn in_place_or_copy<'a>(
    arena: &'a mut [f32],
    input: Inputs<'a>,
    (src, dst): (Loc, Loc),
    il: usize,
    ol: usize,
) -> &'a mut [f32] {
    if src == dst {
        let Loc::Arena(o) = dst else {
            unreachable!("in-place steps write the arena")
        };
        &mut arena[o..o + ol]
    } else {
        let (a, c) = views(arena, input, src, dst, il, ol);
        c.copy_from_slice(a);
        c
    }
}

/// Source and destination of a step: disjoint by construction of the arena offsets.
fn views<'a>(
    arena: &'a mut [f32],
    input: Inputs<'a>,
    src: Loc,
    dst: Loc,
    src_len: usize,
    dst_len: usize,
) -> (&'a [f32], &'a mut [f32]) {
    let Loc::Arena(d) = dst else {
        unreachable!("steps write the arena")
    };
    match src {
        Loc::Input(k) => (&input.f32(k)[..src_len], &mut arena[d..d + dst_len]),
        Loc::Arena(s) if s < d => {
            let (lo, hi) = arena.split_at_mut(d);
            (&lo[s..s + src_len], &mut hi[..dst_len])
        }
        Loc::Arena(s) => {
            let (lo, hi) = arena.split_at_mut(s);
            (&hi[..src_len], &mut lo[d..d + dst_len])
        }
    }
}

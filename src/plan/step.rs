//! Steps the optimizer does not look inside: a [`StepOp`] reads its inputs and writes its
//! output for a whole chunk of samples. Each is defined beside its layer (`ops/`), so adding
//! one touches neither `passes` nor `plan`.

use super::Loc;
use super::session::Inputs;
use crate::kernels::Isa;
use std::fmt;
use std::sync::Arc;

/// A batch-aware step of a plan.
pub(crate) trait StepOp: Send + Sync + fmt::Debug {
    /// What the step does, for plan printouts (`max pool 3 s2`).
    fn describe(&self) -> String;
    /// Output shape (without the batch axis) given the input shapes: the graph check.
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String>;
    /// Elementwise on its one input: the plan may give it its input's buffer. `run` then
    /// finds the input's values in [`StepIo::output`] and reads no input.
    fn in_place(&self) -> bool {
        false
    }
    /// Working values the step needs while it runs, per thread (not per sample): the plan
    /// gives it that much of the arena for each of its threads, [`StepIo::scratch`].
    fn scratch(&self) -> usize {
        0
    }
    /// With a variable sequence length ([`Plan::seq`](super::Plan::seq)): given which inputs
    /// have the sequence as their first axis, whether the output has, or why the step needs a
    /// fixed length. A step that says yes finds the run's lengths in [`StepIo::input_len`].
    fn seq(&self, ins: &[bool]) -> Result<bool, String> {
        if ins.iter().any(|&s| s) {
            Err(format!("{} needs a fixed sequence length", self.describe()))
        } else {
            Ok(false)
        }
    }
    /// The shortest sequence the step can run (a take of position 5 needs 6).
    fn min_seq(&self) -> usize {
        1
    }
    /// Whether a sequence padded at its end (zeros in every input that follows the
    /// sequence) gives its real positions the bits they have alone. Asked only of steps
    /// that take a variable sequence.
    fn padding(&self) -> Padding {
        Padding::Exact
    }
    /// This step reading its first three inputs (an attention's queries, keys and values) as
    /// column blocks of one input, side by side in that order, its other inputs following:
    /// what lets one GEMM compute all three (`passes::FuseQkv`). `None`: it cannot.
    fn with_packed_qkv(&self) -> Option<StepRef> {
        None
    }
    /// Bytes of the weights the step holds, packed once [`pack`](Self::pack) has run: for the
    /// plan's totals, and before packing for which steps a stretch takes.
    fn weight_bytes(&self) -> usize {
        0
    }
    /// How many times one run over a chunk of samples reads the weights: once, or once per
    /// time step for a recurrence, whose GEMMs then want every sample of the chunk at once
    /// (for [`Plan::chunk`](super::Plan::chunk)).
    fn weight_passes(&self) -> usize {
        1
    }
    /// Multiply-add flops (2 per multiply-add) per sample at the plan's longest sequence, for
    /// GFLOP/s figures: the GEMMs the step runs itself (0: none worth counting).
    fn flops(&self) -> usize {
        0
    }
    /// The step with the weights it holds packed for `isa` (a recurrence's recurrent
    /// kernels), asked once when the plan is compiled; `None`: it holds none, run it as it is.
    fn pack(&self, _isa: Isa) -> Option<Result<StepRef, String>> {
        None
    }
    /// Step input `input`, when a model input, holds whole numbers below this (a recurrent
    /// layer's sequence lengths), checked before each run as token ids are.
    fn input_limit(&self, _input: usize) -> Option<usize> {
        None
    }
    /// This step as a max pool of whole windows side by side from the input's origin (stride
    /// = size, no padding; a remainder dropped): their size `(rows, columns)`, which a
    /// convolution step may run on its outputs instead ([`ConvSteps`](crate::passes::ConvSteps)).
    fn max_pool(&self) -> Option<(usize, usize)> {
        None
    }
    /// This step with the elementwise activation `act` run on its outputs as it writes them,
    /// if it can run one ([`FuseActivations`](crate::passes::FuseActivations)); the bits are
    /// the separate activation's.
    fn with_activation(&self, _act: crate::kernels::Activation) -> Option<StepRef> {
        None
    }
    /// This step as a zero pad of a channels-first image (`[ch, h, w]` in, `[top + h +
    /// bottom, left + w + right, ch]` out): its image and padding, which a direct convolution
    /// reading it may do itself instead ([`ConvSteps`](crate::passes::ConvSteps)).
    fn planar_pad(&self) -> Option<crate::kernels::Planar> {
        None
    }
    /// This step reading its one input channels-first (`[ch, rest..]` for the `[rest.., ch]`
    /// it reads now), if it can: what lets it do the transpose before it, in the same pass
    /// ([`TransposeIntoPad`](crate::passes::TransposeIntoPad)).
    fn reading_channels_first(&self) -> Option<StepRef> {
        None
    }
    /// What the step runs on its outputs before they are stored, like a GEMM's epilogue (a
    /// Winograd convolution's bias and activations), for plan printouts.
    fn epilogue(&self) -> &[crate::kernels::EpOp<'static>] {
        &[]
    }
    /// Runs over the chunk's samples.
    fn run(&self, isa: Isa, io: StepIo<'_>);
}

/// How padding a sequence at its end reaches a step's real positions ([`StepOp::padding`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Padding {
    /// Not at all: each position on its own, or only earlier positions seen (causal),
    /// or fixed positions picked that every run has.
    Exact,
    /// Only through keys that step input `input` masks: exact when it is a model input whose
    /// padded positions hold 1 where `one` (a mask that marks padding), else 0 (one that
    /// keeps).
    MaskedBy { input: usize, one: bool },
    /// Padded positions change the others.
    Changes,
}

/// Values per sample of a step's input or output: fixed, or a number per sequence position
/// when the tensor's first axis is the run's sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Len {
    /// At the plan's longest sequence.
    pub max: usize,
    /// Values per position; 0 when the length does not follow the sequence.
    per_pos: usize,
}

impl Len {
    /// A length that does not follow the sequence.
    pub fn fixed(max: usize) -> Len {
        Len { max, per_pos: 0 }
    }
    /// `max` values at `max_seq` positions, or a fixed length when `seq` is false.
    pub fn new(max: usize, seq: bool, max_seq: usize) -> Len {
        match seq {
            true => Len {
                max,
                per_pos: max / max_seq.max(1),
            },
            false => Len::fixed(max),
        }
    }
    /// Values per sample at a run of `seq` positions.
    pub fn at(self, seq: usize) -> usize {
        if self.per_pos == 0 {
            self.max
        } else {
            self.per_pos * seq
        }
    }
    /// Whether the length follows the sequence.
    pub fn is_seq(self) -> bool {
        self.per_pos != 0
    }
}

/// A [`StepOp`] in the optimizer's graph: compared by identity.
#[derive(Clone, Debug)]
pub(crate) struct StepRef(pub Arc<dyn StepOp>);

impl StepRef {
    /// Wraps an op.
    pub fn new(op: impl StepOp + 'static) -> StepRef {
        StepRef(Arc::new(op))
    }
}

impl PartialEq for StepRef {
    fn eq(&self, other: &StepRef) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.0), Arc::as_ptr(&other.0))
    }
}

/// The buffers of one run of a step: its inputs (read-only) and its output, disjoint.
pub(crate) struct StepIo<'a> {
    pub(super) ins: StepInputs<'a>,
    pub(super) out: &'a mut [f32],
    pub(super) scratch: &'a mut [f32],
    pub(super) pool: Option<&'a super::threads::Pool>,
    /// Work below this many flops runs on one thread.
    pub(super) min_flops: usize,
}

/// Flops a value read or written by a data-movement step (a pad, a merge, a pool) weighs
/// against [`CompileOptions::parallel_flops`](super::CompileOptions::parallel_flops): a value
/// from beyond L1 costs about as long as 16 multiply-adds. resnet18's pads and residual adds
/// at batch 8 (1.6 M values, 0.6 to 0.9 ms) ran on one thread when a value weighed one.
pub(crate) const MOVE_FLOPS: usize = 16;

/// The flops `values` moved weigh ([`MOVE_FLOPS`] each).
pub(crate) fn moved(values: usize) -> usize {
    values.saturating_mul(MOVE_FLOPS)
}

/// `f` on each of `batch` samples of `x` and its part of `y`, spread over `pool`'s threads
/// when they move at least `min_flops` ([`moved`]) and there are two or more (one sample's
/// bits do not depend on the thread that computes it).
pub(crate) fn samples<F>(
    pool: Option<&super::threads::Pool>,
    min_flops: usize,
    batch: usize,
    x: &[f32],
    y: &mut [f32],
    f: F,
) where
    F: Fn(&[f32], &mut [f32]) + Sync,
{
    if batch == 0 {
        return;
    }
    let (il, ol) = ((x.len() / batch).max(1), (y.len() / batch).max(1));
    let pool = pool.filter(|_| batch >= 2 && moved(x.len() + y.len()) >= min_flops);
    let items = x.chunks_exact(il).zip(y.chunks_exact_mut(ol));
    StepIo::for_each(pool, items, |(x, y)| f(x, y));
}

impl<'a> StepIo<'a> {
    /// The inputs, the output and the scratch ([`StepOp::scratch`] values for each of
    /// the plan's threads) at once.
    pub fn scratch(self) -> (StepInputs<'a>, &'a mut [f32], &'a mut [f32]) {
        (self.ins, self.out, self.scratch)
    }
    /// Calls `f` on every item, on the plan's threads (the caller's among them); the same as
    /// a loop on one thread without a pool.
    pub fn for_each<I, F>(pool: Option<&super::threads::Pool>, items: I, f: F)
    where
        I: Iterator + Send,
        I::Item: Send,
        F: Fn(I::Item) + Sync,
    {
        match pool.filter(|p| p.threads() >= 2) {
            Some(p) => p.for_each(items, f),
            None => items.for_each(f),
        }
    }
    /// Calls `f` on each sample of input 0 and its part of the output, the samples spread
    /// over the plan's threads when the batch moves at least `min_flops` values in all (one
    /// sample's bits do not depend on the thread that computes it).
    pub fn per_sample<F>(self, f: F)
    where
        F: Fn(&[f32], &mut [f32]) + Sync,
    {
        let batch = self.ins.batch();
        samples(
            self.pool,
            self.min_flops,
            batch,
            self.ins.get(0),
            self.out,
            f,
        );
    }
    /// [`per_sample`](Self::per_sample) with scratch: `f` also gets its thread's `one`
    /// values of the scratch ([`StepOp::scratch`] must be `one`). Each thread takes one
    /// contiguous run of samples.
    pub fn per_sample_scratch<F>(self, one: usize, f: F)
    where
        F: Fn(&[f32], &mut [f32], &mut [f32]) + Sync,
    {
        if one == 0 {
            return self.per_sample(|x, y| f(x, y, &mut []));
        }
        let batch = self.ins.batch();
        let (x, y) = (self.ins.get(0), self.out);
        if batch == 0 || self.scratch.len() < one {
            debug_assert!(batch == 0, "a step's scratch is short");
            return;
        }
        let (il, ol) = ((x.len() / batch).max(1), (y.len() / batch).max(1));
        let pool = self
            .pool
            .filter(|_| batch >= 2 && moved(x.len() + y.len()) >= self.min_flops);
        let threads = match pool {
            Some(_) => (self.scratch.len() / one.max(1)).clamp(1, batch),
            None => 1,
        };
        let per = batch.div_ceil(threads);
        let runs = x.chunks(il * per).zip(y.chunks_mut(ol * per));
        let items = runs.zip(self.scratch.chunks_mut(one));
        StepIo::for_each(pool, items, |((x, y), s)| {
            for (x, y) in x.chunks_exact(il).zip(y.chunks_exact_mut(ol)) {
                f(x, y, &mut s[..one]);
            }
        });
    }
    /// Samples in this chunk.
    pub fn batch(&self) -> usize {
        self.ins.batch()
    }
    /// Values per sample of input `i` in this run (fewer than at the plan's longest
    /// sequence when the input follows a shorter one).
    pub fn input_len(&self, i: usize) -> usize {
        self.ins.len(i)
    }
    /// The plan's pool, if it has threads and `flops` of work is worth splitting
    /// ([`CompileOptions::parallel_flops`](super::CompileOptions::parallel_flops)).
    pub fn pool(&self, flops: usize) -> Option<&'a super::threads::Pool> {
        self.pool.filter(|_| flops >= self.min_flops)
    }
    /// The inputs and the output at once.
    pub fn parts(self) -> (StepInputs<'a>, &'a mut [f32]) {
        (self.ins, self.out)
    }
    /// The output: `batch` samples.
    pub fn output(self) -> &'a mut [f32] {
        self.out
    }
}

/// The inputs of a step run, each `batch` samples.
#[derive(Clone, Copy)]
pub(crate) struct StepInputs<'a> {
    /// The arena but for the step's output and scratch: up to three parts, each with the
    /// arena offset it starts at.
    pub(super) arena: [(usize, &'a [f32]); 3],
    pub(super) model: Inputs<'a>,
    pub(super) first: (Loc, Len),
    pub(super) rest: &'a [(Loc, Len)],
    pub(super) batch: usize,
    /// The run's sequence length.
    pub(super) seq: usize,
    /// The plan's stretch and where this run's samples start in the chunk (nonzero only in
    /// the stretch: see [`super::stretch::place`]).
    pub(super) at: (Option<&'a super::stretch::Stretch>, usize),
}

impl<'a> StepInputs<'a> {
    /// Samples in this chunk.
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// Number of inputs.
    pub fn count(&self) -> usize {
        1 + self.rest.len()
    }
    fn loc(&self, i: usize) -> (Loc, usize) {
        let (loc, len) = if i == 0 { self.first } else { self.rest[i - 1] };
        let len = len.at(self.seq);
        let (stretch, at) = self.at;
        (super::stretch::place(stretch, loc, len, at), len)
    }
    /// Values per sample of input `i` in this run.
    pub fn len(&self, i: usize) -> usize {
        self.loc(i).1
    }
    /// Values `from..from + dst.len()` of input `i` into `dst`, as floats: a model input of
    /// integers is converted (read it this way when [`StepOp`]'s layer reads integers).
    pub fn copy_f32(&self, i: usize, from: usize, dst: &mut [f32]) {
        match self.loc(i).0 {
            Loc::Input(k) => self.model.copy_f32(k, from, dst),
            Loc::Arena(_) => dst.copy_from_slice(&self.get(i)[from..from + dst.len()]),
        }
    }
    /// Input `i`'s values: `batch` samples.
    pub fn get(&self, i: usize) -> &'a [f32] {
        let (loc, len) = self.loc(i);
        let n = self.batch * len;
        match loc {
            Loc::Input(k) => &self.model.f32(k)[..n],
            Loc::Arena(o) => {
                let (start, part) = self
                    .arena
                    .iter()
                    .rev()
                    .find(|(start, _)| *start <= o)
                    .copied()
                    .unwrap_or((0, &[]));
                &part[o - start..][..n]
            }
        }
    }
}

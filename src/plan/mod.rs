//! Graph to static [`Plan`]: schedule, arena offsets, weights packed for the chosen kernel.
//!
//! A `Plan` is immutable and `Send + Sync`: share it behind an `Arc`. A [`Session`] owns the
//! arena; running a batch up to the plan's `max_batch` allocates nothing.
//!
//! ```
//! use std::sync::Arc;
//! use sinter::{builtin, plan::CompileOptions};
//! # fn main() -> sinter::Result<()> {
//! let model = builtin::seed();
//! let plan = Arc::new(model.compile(&CompileOptions::default())?);
//! let mut session = plan.session()?;
//! let x = vec![0.5f32; 2 * 784];
//! let y = session.run(&x)?;
//! assert_eq!(y.len(), 2 * 8);
//! # Ok(()) }
//! ```

mod arena;
mod batcher;
mod display;
mod gemm;
mod options;
mod schedule;
mod seq;
mod session;
mod step;
mod stretch;
mod threads;

pub use batcher::{BATCH_BUCKETS, Batcher, BatcherOptions, BatcherStats, Response};
use options::check_options;
pub use options::{CompileOptions, PARALLEL_FLOPS};
use schedule::{Buffers, Schedule, elems, schedule};
pub use session::{Outputs, Session, Values};
pub(crate) use step::{Len, Padding, StepInputs, StepIo, StepOp, StepRef, moved};
use threads::Pool;
pub use threads::{WorkerPool, default_threads};

use crate::error::{Error, Result};
use crate::kernels::{self, Activation, EpOp, Isa, PackedB};
use crate::model::{DType, Model, checked_elems};
use crate::passes::{self, Epi, Graph, Op};
use arena::Arena;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where a step reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Loc {
    /// The caller's input `k`.
    Input(usize),
    /// The session arena, at this offset (f32 units).
    Arena(usize),
}

#[derive(Debug)]
pub(crate) enum Kind {
    Dense {
        w: Box<PackedB>,
        /// The epilogue, owning its operands (bias, scale and shift, normalization).
        ops: Vec<EpOp<'static>>,
        /// GEMM rows per sample (1 unless the input has extra axes).
        rows: usize,
        /// An implicit-im2col convolution: one GEMM per sample, reading its windows from the
        /// (padded) input.
        conv: Option<gemm::Window>,
        /// Row stride of the destination: N, or the width of the concat this layer writes into.
        ldc: usize,
        /// First destination column (this layer's offset in that concat).
        col: usize,
        /// Panel width and blocking were measured ([`CompileOptions::tune`]).
        tuned: Option<kernels::tune::TuneReport>,
    },
    /// Zero steps around each sample's `[steps, ch]` (read as `[ch, steps]` and transposed
    /// when `transposed`).
    Pad {
        left: usize,
        right: usize,
        ch: usize,
        transposed: bool,
    },
    Activation {
        act: Activation,
        /// Last-axis width (rows for softmax).
        width: usize,
    },
    Copy,
    /// Per sample, `outer` blocks; block `o` is input 0's `o`-th `inner[0]` values, then
    /// input 1's `o`-th `inner[1]` values, ...
    Concat {
        outer: usize,
        inner: Vec<usize>,
    },
    /// `x * scale + shift` per channel of `scale.len()` (one rounding).
    Affine {
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
    /// Layer / RMS normalization of each `width` row.
    Norm {
        norm: kernels::RowNorm,
        width: usize,
    },
    /// Rows of `table` (`dim` wide) picked by the ids of the step's input.
    Gather {
        table: Vec<f32>,
        dim: usize,
    },
    /// Per sample, output axis `i` is input axis `perm[i]` of `[shape]`.
    Permute {
        shape: Vec<usize>,
        perm: Vec<usize>,
    },
    /// A step defined beside its layer (`ops/`).
    Op(StepRef),
}

/// What a model input's values must stay below, and the step that says so.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdLimit {
    pub(crate) below: usize,
    /// Index of the step in [`Plan::steps`].
    pub(crate) step: usize,
}

/// One scheduled step.
#[derive(Debug)]
pub struct Step {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) src: Loc,
    pub(crate) dst: Loc,
    /// Values per sample read and written.
    pub(crate) in_len: Len,
    pub(crate) out_len: Len,
    /// Further inputs (Concat, Add) and their values per sample.
    pub(crate) rest: Vec<(Loc, Len)>,
    /// Arena offset and length of the step's working values (length 0: none).
    pub(crate) scratch: (usize, usize),
}

impl Step {
    /// The layer name(s) the step computes.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A model input or output as a plan sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The input layer's or output's name.
    pub name: String,
    /// Shape without the batch axis.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// Values per sample (at the longest sequence, when `seq`).
    pub len: usize,
    /// The first axis of `shape` is the plan's variable sequence ([`Plan::seq_range`]): a
    /// run of `n` positions has `len / shape[0] * n` values per sample.
    pub seq: bool,
    /// The padded positions of a shorter sequence hold 1, not 0, when requests of different
    /// lengths join one run ([`Plan::pads`]): a mask where true marks padding (PyTorch's
    /// `key_padding_mask`).
    pub pad_one: bool,
    /// Where the model's file holds the batch, when not first (ONNX's time-major tensors).
    /// The values sinter takes and gives stay sample-major; convert whole tensors in the
    /// file's order with [`BatchAxis::to_samples`] and [`BatchAxis::from_samples`].
    pub batch_axis: Option<crate::model::BatchAxis>,
}

impl TensorInfo {
    /// The shape of a tensor of `batch` samples in a run of `seq` positions, as the model's
    /// file declares it: the batch first, or where [`batch_axis`](Self::batch_axis) says.
    pub fn file_shape(&self, batch: usize, seq: usize) -> Vec<usize> {
        let seq = self.seq.then_some(seq);
        match &self.batch_axis {
            Some(b) => b.file_shape(batch, seq),
            None => {
                let mut s = vec![batch];
                s.extend(&self.shape);
                if let (Some(n), Some(d)) = (seq, s.get_mut(1)) {
                    *d = n;
                }
                s
            }
        }
    }

    /// Values per sample in a run of `seq` positions.
    pub fn len_at(&self, seq: usize) -> usize {
        match self.seq {
            true => self.len / self.shape.first().copied().unwrap_or(1).max(1) * seq,
            false => self.len,
        }
    }
}

/// A compiled model: steps, buffer offsets, packed weights. Immutable; share it with `Arc`.
#[derive(Debug)]
pub struct Plan {
    pub(crate) steps: Vec<Step>,
    pub(crate) isa: Isa,
    pub(crate) fused: bool,
    pub(crate) max_batch: usize,
    pub(crate) threads: usize,
    pub(crate) pool: Option<Pool>,
    pub(crate) inputs: Vec<TensorInfo>,
    pub(crate) outputs: Vec<TensorInfo>,
    /// Per input: the bound its values are checked against before a run (an Embedding's
    /// vocabulary, a recurrent layer's steps plus one for its sequence lengths; the smallest),
    /// and the step that sets it.
    pub(crate) id_limits: Vec<Option<IdLimit>>,
    /// Where each output ends up (always the arena: an input-aliased output is copied).
    pub(crate) output_locs: Vec<usize>,
    /// Arena size in f32 units.
    pub(crate) arena_len: usize,
    /// The variable sequence (`None`: every run has the model's own shapes).
    pub(crate) seq: Option<std::ops::RangeInclusive<usize>>,
    /// Why an input's variable sequence is fixed in this plan (a layer needs it).
    pub(crate) seq_fixed: Option<String>,
    /// Sequences of different lengths may share a run, padded (see [`Plan::pads`]).
    pub(crate) pads: bool,
    /// Samples run through all steps at a time (see [`Plan::chunk`]).
    pub(crate) chunk: usize,
    /// Where chunked runs gather each output (`max_batch x len`, after every buffer).
    pub(crate) results: Option<Vec<usize>>,
    pub(crate) passes: Vec<&'static str>,
    /// Arenas of finished [`Plan::run`]s, kept for the next callers (at most
    /// [`POOLED_ARENAS`]).
    pub(crate) idle: std::sync::Mutex<Vec<crate::kernels::Buffer>>,
    /// See [`CompileOptions::parallel_flops`].
    pub(crate) parallel_flops: usize,
    /// Steps run split into two or more parts, over the plan's life.
    pub(crate) split_steps: AtomicUsize,
    /// Per step, the first GEMM step after it (see [`Plan::weights_after`]).
    pub(crate) next_gemm: Vec<Option<usize>>,
    /// The first steps, run a few samples at a time through all of them (see
    /// [`Plan::stretch`]).
    pub(crate) stretch: Option<stretch::Stretch>,
}

/// Arenas a plan keeps for [`Plan::run`] callers: enough for this many concurrent calls
/// without allocating; a call beyond them allocates its own arena and frees it after.
pub const POOLED_ARENAS: usize = 8;

impl Model {
    /// Compiles the model into a static plan.
    pub fn compile(&self, opts: &CompileOptions) -> Result<Plan> {
        Plan::new(self, Vec::new(), opts)
    }

    /// [`compile`](Self::compile) consuming the model: each layer's weights are freed as soon
    /// as they are packed, so the weights are never held twice (a model loaded from a file,
    /// compiled once). The same plan as `compile`.
    pub fn into_plan(mut self, opts: &CompileOptions) -> Result<Plan> {
        let weights = self.take_weights();
        Plan::new(&self, weights, opts)
    }
}

impl Plan {
    /// Lower (passes) -> assign buffers -> schedule (steps, arena offsets, packed weights).
    /// `owned`: the model's weights, taken out of it (else borrowed, and kept).
    fn new(
        model: &Model,
        owned: Vec<Option<crate::model::DenseWeights>>,
        opts: &CompileOptions,
    ) -> Result<Plan> {
        let isa = check_options(opts)?;
        let mut g = passes::optimize(Graph::lower(model, owned)?, opts.fuse)?;
        let passes = passes::pipeline(opts.fuse)
            .iter()
            .map(|p| p.name())
            .collect();
        if let Some(&o) = g.outputs.iter().find(|&&o| {
            matches!(g.nodes[o].op, Op::Input)
                && g.input_types[g.inputs.iter().position(|&i| i == o).unwrap_or(0)] != DType::F32
        }) {
            return Err(Error::Model(format!(
                "output {:?} is an integer input itself; sinter's outputs are computed values",
                g.nodes[o].name
            )));
        }
        let (seq, seq_fixed) = match seq::analyse(&g) {
            Ok(s) => (s, None),
            Err(why) => (None, Some(why)),
        };
        let buffers = Buffers::assign(&g);
        let threads = opts
            .pool
            .as_ref()
            .map_or(opts.threads, |p| p.threads().max(1));
        let bytes = opts
            .stretch_bytes
            .unwrap_or_else(|| stretch::default_bytes(threads));
        let stretch = stretch::nodes(&g, &buffers, seq.is_some(), bytes);
        let Schedule {
            steps,
            arena,
            outputs: output_locs,
            stretch,
        } = schedule(&mut g, buffers, opts, isa, seq.as_ref(), stretch)?;
        let info = |name: &str, node: usize, dtype: DType, batch_axis: &Option<_>| {
            let shape = g.nodes[node].shape.clone();
            Ok::<_, Error>(TensorInfo {
                batch_axis: Option::clone(batch_axis),
                name: name.to_string(),
                len: elems(&shape, name, opts.max_batch)?,
                shape,
                dtype,
                seq: seq.as_ref().is_some_and(|s| s.nodes[node]),
                pad_one: seq.as_ref().is_some_and(|s| {
                    g.inputs
                        .iter()
                        .position(|&i| i == node)
                        .is_some_and(|k| s.pad_one[k])
                }),
            })
        };
        let names = model.input_names();
        let inputs = g
            .inputs
            .iter()
            .zip(&g.input_types)
            .zip(&names)
            .zip(model.input_batch_axes())
            .map(|(((&i, &t), n), b)| info(n, i, t, b))
            .collect::<Result<Vec<_>>>()?;
        let outputs = g
            .outputs
            .iter()
            .zip(model.output_names())
            .zip(model.outputs())
            .zip(model.output_batch_axes())
            .map(|(((&o, n), &m), b)| info(n, o, model.nodes()[m].dtype, b))
            .collect::<Result<Vec<_>>>()?;
        let mut id_limits: Vec<Option<IdLimit>> = vec![None; inputs.len()];
        for (at, s) in steps.iter().enumerate() {
            let ins = std::iter::once(s.src).chain(s.rest.iter().map(|r| r.0));
            for (i, src) in ins.enumerate() {
                let Loc::Input(k) = src else { continue };
                let below = match &s.kind {
                    Kind::Gather { table, dim } if i == 0 => Some(table.len() / dim),
                    Kind::Op(op) => op.0.input_limit(i),
                    _ => None,
                };
                if let Some(below) = below.filter(|&b| id_limits[k].is_none_or(|l| b < l.below)) {
                    id_limits[k] = Some(IdLimit { below, step: at });
                }
            }
        }
        let chunk = chunk_size(&steps, arena.len(), opts.max_batch);
        let mut arena_len = arena.len();
        let results = if chunk < opts.max_batch {
            let mut offs = Vec::with_capacity(outputs.len());
            for o in &outputs {
                offs.push(arena_len);
                arena_len = o
                    .len
                    .checked_mul(opts.max_batch)
                    .and_then(|l| l.checked_add(arena_len))
                    .ok_or_else(|| Error::Options("arena size overflows".into()))?;
            }
            Some(offs)
        } else {
            None
        };
        arena_len
            .checked_mul(4)
            .ok_or_else(|| Error::Options("arena size overflows".into()))?;
        let mut next_gemm = vec![None; steps.len()];
        for i in (0..steps.len().saturating_sub(1)).rev() {
            next_gemm[i] = match steps[i + 1].kind {
                Kind::Dense { .. } => Some(i + 1),
                _ => next_gemm[i + 1],
            };
        }
        Ok(Plan {
            next_gemm,
            stretch,
            steps,
            isa,
            fused: opts.fuse,
            max_batch: opts.max_batch,
            threads,
            pool: threads::pool_for(opts.threads, opts.pool.as_ref())?,
            inputs,
            outputs,
            id_limits,
            output_locs,
            arena_len,
            pads: seq.as_ref().is_some_and(|s| s.pads),
            seq: seq.map(|s| s.min..=s.max),
            seq_fixed,
            chunk,
            results,
            passes,
            idle: std::sync::Mutex::new(Vec::new()),
            parallel_flops: opts.parallel_flops,
            split_steps: AtomicUsize::new(0),
        })
    }

    /// How many step runs were split into two or more parts so far (for tests that must
    /// see a plan's threads at work).
    #[doc(hidden)]
    pub fn split_steps(&self) -> usize {
        self.split_steps.load(Ordering::Relaxed)
    }

    /// The sequence lengths a run may have, when an input's first axis is a variable
    /// sequence ([`Model::set_seq_input`]) and every layer allows it; `None`: runs have the
    /// model's own shapes. Run a length with [`Session::run_seq`].
    pub fn seq_range(&self) -> Option<std::ops::RangeInclusive<usize>> {
        self.seq.clone()
    }
    /// Whether sequences of different lengths may share one run, each padded to the longest
    /// with zeros in every input that follows the sequence (token ids, masks, features):
    /// true when every layer that lets a position see later ones does so only through keys
    /// masked by a model input (an attention mask). A padded sequence's real positions then
    /// have the bits they have alone; [`Batcher`] joins such requests.
    pub fn pads(&self) -> bool {
        self.pads
    }
    /// Why a variable sequence of the model is fixed in this plan (the layer needing it).
    pub fn seq_fixed_by(&self) -> Option<&str> {
        self.seq_fixed.as_deref()
    }
    /// The scheduled steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
    /// Kernel tier the plan runs on.
    pub fn isa(&self) -> Isa {
        self.isa
    }
    /// Whether activations were fused into the Dense epilogues.
    pub fn is_fused(&self) -> bool {
        self.fused
    }
    /// Largest batch a session runs.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }
    /// Threads used for large layers.
    pub fn threads(&self) -> usize {
        self.threads
    }
    /// The model's inputs, in order.
    pub fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }
    /// The outputs the plan computes, in order.
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }
    /// Shape of the first input, without the batch axis.
    pub fn input_shape(&self) -> &[usize] {
        &self.inputs[0].shape
    }
    /// Shape of the first output, without the batch axis.
    pub fn output_shape(&self) -> &[usize] {
        &self.outputs[0].shape
    }
    /// Values per sample of the first input.
    pub fn input_len(&self) -> usize {
        self.inputs[0].len
    }
    /// Values per sample of the first output.
    pub fn output_len(&self) -> usize {
        self.outputs[0].len
    }
    /// The vocabulary of the Embeddings reading input `k` (ids must be below it).
    pub fn id_limit(&self, k: usize) -> Option<usize> {
        self.id_limits.get(k).copied().flatten().map(|l| l.below)
    }
    /// Samples a session runs through all steps at a time: `max_batch`, or fewer when the
    /// weights fit in L2 and a whole batch of activations would not.
    pub fn chunk(&self) -> usize {
        self.chunk
    }
    /// The first steps a run takes one sample at a time, each sample through all of them
    /// before the next (an image model's large first maps, on one thread). `None`: every
    /// step runs over the whole chunk.
    pub fn stretch(&self) -> Option<std::ops::Range<usize>> {
        self.stretch.as_ref().map(|s| s.steps.clone())
    }
    /// Arena bytes a session holds.
    pub fn arena_bytes(&self) -> usize {
        self.arena_len * 4
    }
    /// Bytes of packed weights.
    pub fn weight_bytes(&self) -> usize {
        self.steps
            .iter()
            .map(|s| match &s.kind {
                Kind::Dense { w, .. } => w.bytes(),
                Kind::Op(op) => op.0.weight_bytes(),
                _ => 0,
            })
            .sum()
    }
    /// Multiply-add flops per sample (2 per multiply-add), for GFLOP/s figures.
    pub fn flops_per_sample(&self) -> usize {
        self.steps
            .iter()
            .map(|s| match &s.kind {
                Kind::Dense { w, rows, .. } => 2 * rows * w.k() * w.n(),
                Kind::Op(op) => op.0.flops(),
                _ => 0,
            })
            .sum()
    }
    /// Number of separate activation passes (0 when everything fused).
    pub fn activation_steps(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s.kind, Kind::Activation { .. }))
            .count()
    }

    /// A new session (its own arena) for this plan.
    pub fn session(self: &std::sync::Arc<Self>) -> Result<Session> {
        Session::new(self.clone())
    }

    /// Runs a batch of a one-input, one-output model (`batch x input_len` values, batch
    /// first) and returns its outputs, `batch x output_len`. Callable from any number of
    /// threads at once: each call borrows an arena from the plan's pool (see
    /// [`POOLED_ARENAS`]). A batch above `max_batch` runs in chunks of `max_batch` samples,
    /// with the same bits as running each sample alone. Allocates the returned vector; see
    /// [`run_into`](Self::run_into) for a call that allocates nothing.
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        let (ins, outs) = (self.inputs.len(), self.outputs.len());
        if ins != 1 || outs != 1 {
            return Err(Error::Options(format!(
                "the model has {ins} inputs and {outs} outputs: use Plan::run_all"
            )));
        }
        Ok(self
            .run_all(&[Values::F32(input)])?
            .pop()
            .unwrap_or_default())
    }

    /// [`run`](Self::run) for any number of inputs, one [`Values`] each in the model's order;
    /// returns every output (`batch x len` each). Allocates the returned vectors.
    pub fn run_all(&self, inputs: &[Values<'_>]) -> Result<Vec<Vec<f32>>> {
        self.run_seq(self.longest_seq(), inputs)
    }

    /// [`run_all`](Self::run_all) at a sequence of `seq` positions (see
    /// [`Session::run_seq`]).
    pub fn run_seq(&self, seq: usize, inputs: &[Values<'_>]) -> Result<Vec<Vec<f32>>> {
        let batch = session::check_values(self, inputs, seq)?;
        let mut out: Vec<Vec<f32>> = self
            .outputs
            .iter()
            .map(|o| vec![0.0; batch * o.len_at(seq)])
            .collect();
        let mut views: Vec<&mut [f32]> = out.iter_mut().map(Vec::as_mut_slice).collect();
        self.run_seq_into(seq, inputs, &mut views)?;
        Ok(out)
    }

    /// Runs `inputs` and writes output `k` into `outputs[k]`, which must hold exactly
    /// `batch x len` values. Returns the batch. Allocates nothing once the plan's arena pool is
    /// warm (after the first call per concurrent caller) and the batch is at most
    /// `max_batch`; a larger batch runs in chunks (and allocates the list of their inputs).
    pub fn run_into(&self, inputs: &[Values<'_>], outputs: &mut [&mut [f32]]) -> Result<usize> {
        self.run_seq_into(self.longest_seq(), inputs, outputs)
    }

    /// [`run_into`](Self::run_into) at a sequence of `seq` positions (see
    /// [`Session::run_seq`]).
    pub fn run_seq_into(
        &self,
        seq: usize,
        inputs: &[Values<'_>],
        outputs: &mut [&mut [f32]],
    ) -> Result<usize> {
        let batch = session::check_values(self, inputs, seq)?;
        if outputs.len() != self.outputs.len() {
            return Err(Error::Options(format!(
                "{} output buffers given, the model has {} outputs",
                outputs.len(),
                self.outputs.len()
            )));
        }
        for (buf, o) in outputs.iter().zip(&self.outputs) {
            if buf.len() != batch * o.len_at(seq) {
                return Err(Error::Options(format!(
                    "output {:?}: a buffer of {} values, {batch} samples need {}",
                    o.name,
                    buf.len(),
                    batch * o.len_at(seq)
                )));
            }
        }
        let pooled = self.idle.lock().ok().and_then(|mut p| p.pop());
        let mut arena = match pooled {
            Some(a) => a,
            None => session::new_arena(self)?,
        };
        // Inputs were checked once, above; each chunk runs without checking them again.
        let mut first = 0;
        while first < batch {
            let n = self.max_batch.min(batch - first);
            let sliced: Vec<Values<'_>>;
            let chunk = if n == batch {
                inputs
            } else {
                // Only a batch above max_batch gets here (and allocates this list).
                sliced = inputs
                    .iter()
                    .zip(&self.inputs)
                    .map(|(v, info)| v.samples(first, n, info.len_at(seq)))
                    .collect();
                &sliced
            };
            session::run_checked(self, &mut arena, chunk, n, seq, None);
            let got = session::outputs(self, &arena, n, seq);
            for (k, (buf, o)) in outputs.iter_mut().zip(&self.outputs).enumerate() {
                let len = o.len_at(seq);
                buf[first * len..(first + n) * len].copy_from_slice(got.get(k));
            }
            first += n;
        }
        if let Ok(mut p) = self.idle.lock()
            && p.len() < POOLED_ARENAS
        {
            p.push(arena);
        }
        Ok(batch)
    }

    /// The longest sequence a run may have (1 without a variable sequence: the value is then
    /// not read).
    pub(crate) fn longest_seq(&self) -> usize {
        self.seq.as_ref().map_or(1, |r| *r.end())
    }

    /// Whether a run may have `seq` positions.
    pub(crate) fn check_seq(&self, seq: usize) -> Result<()> {
        match &self.seq {
            Some(r) if !r.contains(&seq) => Err(Error::Options(format!(
                "a sequence of {seq} positions: this plan runs {} to {}",
                r.start(),
                r.end()
            ))),
            None if seq != 1 => Err(Error::Options(format!(
                "a sequence of {seq} positions: the plan has no variable sequence{}",
                self.seq_fixed
                    .as_ref()
                    .map_or(String::new(), |why| format!(" ({why})"))
            ))),
            _ => Ok(()),
        }
    }
}

/// What step `i` computes, weights packed for `isa`. `into`: the elided concat it writes
/// into, with its first column there. Weights the graph owns (a consumed model's) move into
/// the step or are freed once packed.
fn step_kind(
    g: &mut Graph,
    i: usize,
    isa: Isa,
    into: Option<(usize, usize)>,
    tune_batch: Option<usize>,
) -> Result<Kind> {
    if let Op::Gather { table, dim } = &mut g.nodes[i].op {
        return Ok(Kind::Gather {
            table: std::mem::take(table).into_owned(),
            dim: *dim,
        });
    }
    let kind = kind_of(g, i, isa, into, tune_batch)?;
    if let Op::Dense {
        weights: w @ std::borrow::Cow::Owned(_),
        ..
    } = &mut g.nodes[i].op
    {
        *w = std::borrow::Cow::Owned(crate::model::DenseWeights {
            kernel: Vec::new(),
            bias: None,
        });
    }
    Ok(kind)
}

/// [`step_kind`] from the graph as it is.
fn kind_of(
    g: &Graph,
    i: usize,
    isa: Isa,
    into: Option<(usize, usize)>,
    tune_batch: Option<usize>,
) -> Result<Kind> {
    let node = &g.nodes[i];
    let x = &g.nodes[node.inputs[0]].shape;
    Ok(match &node.op {
        Op::Dense {
            weights,
            acts,
            conv,
        } => dense_kind(
            g,
            i,
            isa,
            (into, tune_batch),
            (weights, acts, conv.as_ref()),
        )?,
        Op::Pad {
            left,
            right,
            transposed,
        } => Kind::Pad {
            left: *left,
            right: *right,
            ch: node.shape[1],
            transposed: *transposed,
        },
        Op::Activation(act) => Kind::Activation {
            act: *act,
            width: *node.shape.last().expect("checked rank"),
        },
        Op::Concat { axis, .. } => Kind::Concat {
            outer: node.shape[..*axis].iter().product(),
            inner: node
                .inputs
                .iter()
                .map(|&j| g.nodes[j].shape[*axis..].iter().product())
                .collect(),
        },
        Op::Affine { scale, shift } => Kind::Affine {
            scale: scale.clone(),
            shift: shift.clone(),
        },
        Op::Norm(n) => Kind::Norm {
            norm: kernels::RowNorm {
                epsilon: n.epsilon,
                rms: n.rms,
                gamma: n.gamma.clone(),
                beta: n.beta.clone(),
            },
            width: *node.shape.last().expect("checked rank"),
        },
        Op::Step(s) => match s.0.pack(isa) {
            Some(packed) => Kind::Op(packed.map_err(|msg| Error::Shape {
                layer: node.name.clone(),
                msg,
            })?),
            None => Kind::Op(s.clone()),
        },
        Op::Gather { .. } => unreachable!("gathers take their table in step_kind"),
        Op::Permute(perm) => Kind::Permute {
            shape: x.clone(),
            perm: perm.clone(),
        },
        Op::Input | Op::Flatten | Op::Dropout | Op::Reshape => {
            unreachable!("inputs and views have no step")
        }
    })
}

/// A Dense or convolution step: its epilogue (each op owning its operand, checked against
/// the layer's width) and its weights packed (and timed, with `tune_batch`) for `isa`.
fn dense_kind(
    g: &Graph,
    i: usize,
    isa: Isa,
    (into, tune_batch): (Option<(usize, usize)>, Option<usize>),
    (weights, acts, conv): (
        &crate::model::DenseWeights,
        &[Epi<'_>],
        Option<&passes::ConvRows>,
    ),
) -> Result<Kind> {
    let node = &g.nodes[i];
    let x = &g.nodes[node.inputs[0]].shape;
    let units = *node.shape.last().expect("checked rank");
    let (k, window) = match conv {
        Some(c) => {
            let (k, w) = conv_window(c, x, &node.shape);
            (k, Some(w))
        }
        None => (*x.last().expect("checked rank"), None),
    };
    // The epilogue owns its operands; each is checked against the layer's width.
    let ops = passes::epilogue_ops(weights.bias.as_deref(), acts);
    let rows = checked_elems(&node.shape).unwrap_or(0) / units;
    let shape_err = |e: kernels::PackError| Error::Shape {
        layer: node.name.clone(),
        msg: e.to_string(),
    };
    let packed = PackedB::pack(isa, &weights.kernel, k, units).map_err(shape_err)?;
    for op in &ops {
        op.check(units).map_err(shape_err)?;
    }
    let (w, tuned) = match tune_batch {
        // A convolution runs one GEMM per sample; a Dense one over the whole batch
        // (timed at up to 256 rows).
        Some(batch) => {
            let m = if let Some(w) = &window {
                rows / w.bands.max(1)
            } else {
                (rows * batch).min(256)
            };
            let t =
                kernels::tune::tune(isa, &weights.kernel, &packed, m, &ops).map_err(shape_err)?;
            (t.packed, Some(t.report))
        }
        None => (packed, None),
    };
    let (ldc, col) = match into {
        Some((c, col)) => (*g.nodes[c].shape.last().expect("rank"), col),
        None => (units, 0),
    };
    Ok(Kind::Dense {
        w: Box::new(w),
        ops,
        rows,
        conv: window,
        ldc,
        col,
        tuned,
    })
}

/// A convolution's K and how its GEMMs read the padded input `x` (`[steps, ch]`, or `[rows,
/// cols, ch]` with a band), for an output of `out` (checked by the graph's check).
fn conv_window(c: &passes::ConvRows, x: &[usize], out: &[usize]) -> (usize, gemm::Window) {
    let ch = *x.last().expect("checked rank");
    let run = c.size * ch;
    // A 2-D window: one run of `kw * ch` values per kernel row, the rows `dilation` input rows
    // apart; one GEMM per output row, `stride` input rows apart.
    let (k, segments, bands, band_stride) = match c.band {
        None => (run, None, 1, 0),
        Some(band) => {
            let row = x[1] * ch;
            let segments = (0..band.size)
                .map(|i| kernels::Segment {
                    offset: i * band.dilation * row,
                    len: run,
                })
                .collect();
            (band.size * run, Some(segments), out[0], band.stride * row)
        }
    };
    let w = gemm::Window {
        lda: c.stride * ch,
        offset: c.offset * ch,
        segments,
        bands,
        band_stride,
    };
    (k, w)
}

/// Samples run through all steps at a time. When the weights a run reads fit in L2 but a
/// whole batch of activations does not (convolutions: 48 KiB of activations per sample
/// against 0.8 MiB of weights), chunks of samples keep each chunk's activations in L2.
/// Samples are independent, so the bits do not change; models that read more weights run
/// whole batches. A recurrence reads its weights once per time step: in chunks of 8, an
/// LSTM(128) over 50 steps at batch 32 read them 200 times a run instead of 50, each GEMM
/// on 8 rows (two 4-row tiles), and ran 1.2x slower.
fn chunk_size(steps: &[Step], arena_len: usize, max_batch: usize) -> usize {
    let weights = steps
        .iter()
        .map(|s| match &s.kind {
            Kind::Dense { w, .. } => w.bytes(),
            Kind::Op(op) => op.0.weight_bytes().saturating_mul(op.0.weight_passes()),
            _ => 0,
        })
        .fold(0, usize::saturating_add);
    let per_sample = (arena_len * 4).div_ceil(max_batch).max(1);
    let l2 = kernels::Caches::get().l2;
    if weights <= l2 {
        (l2 / per_sample).clamp(8, max_batch.max(8)).min(max_batch)
    } else {
        max_batch
    }
}

//! Graph-to-graph rewrites, one named pass per file, run in order by [`optimize`].
//!
//! The graph here is the model lowered to ops: Dense layers carry an epilogue (the activations
//! applied after the bias), Dropout and Flatten are still explicit. After every pass the graph is
//! checked; an error names the pass that broke it.

mod check;
mod conv_steps;
mod drop_dropout;
mod drop_linear;
mod elide_concat;
mod fold_affine;
mod fuse_activations;
mod fuse_qkv;
mod prune;
mod push_through_concat;
mod share_padding;
mod split_activations;
mod transpose_into_pad;

pub use conv_steps::ConvSteps;
pub use drop_dropout::DropDropout;
pub use drop_linear::DropLinear;
pub use elide_concat::ElideConcat;
pub use fold_affine::FoldAffine;
pub use fuse_activations::FuseActivations;
pub use fuse_qkv::FuseQkv;
pub use prune::Prune;
pub use push_through_concat::PushActivationThroughConcat;
pub use share_padding::SharePadding;
pub use split_activations::SplitActivations;
pub use transpose_into_pad::TransposeIntoPad;

use crate::error::{Error, Result};
use crate::kernels::{Activation, EpOp};
use crate::model::{DType, DenseWeights, Model, RowNorm};
use crate::ops::Lowering;
use crate::plan::StepRef;
use std::borrow::Cow;

/// An op of the lowered graph.
#[derive(Clone, Debug, PartialEq)]
pub enum Op<'m> {
    /// The model input.
    Input,
    /// `acts(x · kernel + bias)`: the epilogue runs in the kernel, in order.
    Dense {
        /// The layer's weights (owned once a pass rewrote them, e.g. folded a batch norm).
        weights: Cow<'m, DenseWeights>,
        /// What runs after the bias, in order: activations, at most one per-channel affine
        /// and at most one row normalization.
        acts: Vec<Epi<'m>>,
        /// A stride-`s` convolution read straight from `[steps, ch]`: GEMM row `o` is the
        /// `K = size * ch` values from step `o * s` on (an implicit im2col; the input is
        /// already padded). `None` for a plain Dense over the last axis.
        conv: Option<ConvRows>,
    },
    /// Zero steps before and after `[steps, ch]`: a convolution's padding.
    Pad {
        /// Steps added before.
        left: usize,
        /// Steps added after.
        right: usize,
        /// The input is `[ch, steps]` (channels-first), transposed while padding
        /// ([`TransposeIntoPad`]).
        transposed: bool,
    },
    /// A separate activation pass.
    Activation(Activation),
    /// Identity at inference, until [`DropDropout`] removes it.
    Dropout,
    /// A reshape to one axis: a view, no data moves.
    Flatten,
    /// Any other reshape: also a view.
    Reshape,
    /// Joins the inputs along a per-sample axis.
    Concat {
        /// Per-sample axis (0 = first non-batch axis).
        axis: usize,
        /// Set by [`ElideConcat`]: the producers write straight into this buffer; no copy.
        elided: bool,
    },
    /// `x * scale + shift` per channel of the last axis, one rounding (batch normalization,
    /// `Normalization`, `Rescaling`).
    Affine {
        /// Per-channel multiplier.
        scale: Vec<f32>,
        /// Per-channel offset.
        shift: Vec<f32>,
    },
    /// Layer (or RMS) normalization of each last-axis row.
    Norm(&'m RowNorm),
    /// Rows of `table` (`vocab x dim`) picked by the integer ids of a graph input.
    Gather {
        /// The table, row-major.
        table: Cow<'m, [f32]>,
        /// Row width.
        dim: usize,
    },
    /// Output axis `i` is input axis `perm[i]` (per sample, 0-based): a transpose that moves
    /// data. Permutes that move only axes of length 1 are lowered to [`Op::Reshape`] instead.
    Permute(Vec<usize>),
    /// A step no pass looks inside (pooling, merges, elementwise functions, im2col): defined
    /// beside its layer in `ops/`.
    Step(StepRef),
}

/// One step of a Dense's epilogue (see [`Op::Dense`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Epi<'m> {
    /// An activation.
    Act(Activation),
    /// `x * scale + shift` per column.
    Affine {
        /// Per-column multiplier.
        scale: Vec<f32>,
        /// Per-column offset.
        shift: Vec<f32>,
    },
    /// Layer normalization of each whole row.
    Norm(&'m RowNorm),
}

impl Epi<'_> {
    /// A short name for fused layer names and printouts.
    pub fn label(&self) -> String {
        match self {
            Epi::Act(a) => a.keras_name().to_string(),
            Epi::Affine { .. } => "scale_shift".into(),
            Epi::Norm(_) => "norm".into(),
        }
    }
}

/// A Dense's epilogue as the kernel runs it, owning its operands: the bias, then `acts`.
pub(crate) fn epilogue_ops(bias: Option<&[f32]>, acts: &[Epi<'_>]) -> Vec<EpOp<'static>> {
    let bias = bias.map(|b| EpOp::Bias(b.to_vec().into()));
    let acts = acts.iter().map(|e| match e {
        Epi::Act(a) => EpOp::Act(*a),
        Epi::Affine { scale, shift } => EpOp::ScaleShift {
            scale: scale.clone().into(),
            shift: shift.clone().into(),
        },
        Epi::Norm(n) => EpOp::Norm(Cow::Owned(crate::kernels::RowNorm {
            epsilon: n.epsilon,
            rms: n.rms,
            gamma: n.gamma.clone(),
            beta: n.beta.clone(),
        })),
    });
    bias.into_iter().chain(acts).collect()
}

impl<'m> From<Epi<'m>> for Op<'m> {
    fn from(e: Epi<'m>) -> Op<'m> {
        match e {
            Epi::Act(a) => Op::Activation(a),
            Epi::Affine { scale, shift } => Op::Affine { scale, shift },
            Epi::Norm(n) => Op::Norm(n),
        }
    }
}

impl<'m> Op<'m> {
    /// This op as an epilogue step, if it can run in a GEMM's epilogue.
    pub fn as_epilogue(&self) -> Option<Epi<'m>> {
        match self {
            Op::Activation(a) => Some(Epi::Act(*a)),
            Op::Affine { scale, shift } => Some(Epi::Affine {
                scale: scale.clone(),
                shift: shift.clone(),
            }),
            Op::Norm(n) => Some(Epi::Norm(n)),
            _ => None,
        }
    }
}

/// Geometry of an implicit-im2col convolution (see [`Op::Dense`]): windows along the steps
/// of a padded `[steps, ch]` input, or along the columns of a padded `[rows, cols, ch]` one
/// (then `band` gives the rows' axis).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvRows {
    /// Taps per window.
    pub size: usize,
    /// Steps between windows.
    pub stride: usize,
    /// Steps of the (shared, wider) padded input skipped before the first window.
    pub offset: usize,
    /// A 2-D convolution's rows: one GEMM per output row of each sample (a band of the
    /// output's columns), each window `band.size` runs of `size * ch` values.
    pub band: Option<Band>,
    /// How it runs.
    pub algo: ConvAlgo,
}

impl ConvRows {
    /// Whether `out > 0` windows fit in `len` (padded) steps.
    pub(crate) fn fits(&self, out: usize, len: usize) -> bool {
        out > 0
            && self.stride > 0
            && (out - 1)
                .checked_mul(self.stride)
                .and_then(|s| s.checked_add(self.offset))
                .and_then(|s| s.checked_add(self.size))
                .is_some_and(|end| end <= len)
    }

    /// Whether a 2-D convolution's windows (`band` set) fit in `rows x cols` (padded)
    /// positions for an output of shape `out` (`[out rows, out cols, units]`).
    pub(crate) fn fits_image(&self, out: &[usize], rows: usize, cols: usize) -> bool {
        match (self.band, out) {
            (Some(b), &[oh, ow, _]) => b.fits(oh, rows) && self.fits(ow, cols),
            _ => false,
        }
    }
}

impl Band {
    /// Whether `out > 0` output rows' windows fit in `len` (padded) rows.
    pub(crate) fn fits(&self, out: usize, len: usize) -> bool {
        let span = (self.size.max(1) - 1).checked_mul(self.dilation);
        out > 0
            && self.size > 0
            && self.stride > 0
            && (out - 1)
                .checked_mul(self.stride)
                .and_then(|s| s.checked_add(span?))
                .is_some_and(|last| last < len)
    }
}

/// The rows' axis of a 2-D implicit-im2col convolution (see [`ConvRows`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Band {
    /// Kernel rows.
    pub size: usize,
    /// Input rows between output rows.
    pub stride: usize,
    /// Input rows between kernel rows.
    pub dilation: usize,
}

/// How a convolution's GEMM runs: decided where its layer lowers, from its shape alone (never
/// the batch or the threads), and made a step by [`ConvSteps`] once the passes before it
/// folded batch norms into its weights and fused its activations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvAlgo {
    /// The GEMM over its windows (the implicit im2col).
    #[default]
    Gemm,
    /// Winograd F(2x2, 3x3) (`ops/winograd.rs`): a 3x3 stride-1 convolution.
    Winograd,
    /// A direct loop broadcasting each window value (`ops/direct_conv.rs`): few values per
    /// window; the GEMM's bits.
    Direct,
}

/// A node of the lowered graph.
#[derive(Clone, Debug, PartialEq)]
pub struct GNode<'m> {
    /// Layer name(s) this node came from (`dense+activation` after fusion).
    pub name: String,
    /// What it computes.
    pub op: Op<'m>,
    /// Producers, earlier in the node list.
    pub inputs: Vec<usize>,
    /// Output shape without the batch axis.
    pub shape: Vec<usize>,
}

/// The lowered graph, nodes in topological order.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph<'m> {
    /// Nodes in topological order.
    pub nodes: Vec<GNode<'m>>,
    /// The input nodes, in the model's order.
    pub inputs: Vec<usize>,
    /// The output nodes, in the model's order.
    pub outputs: Vec<usize>,
    /// Element type of each input.
    pub input_types: Vec<DType>,
    /// Whether each input's first axis is a variable sequence.
    pub input_seq: Vec<bool>,
}

impl Graph<'_> {
    /// Maps input and output indices through `map` (old node -> new node).
    pub fn remap_io(&mut self, map: &[usize]) {
        self.inputs.iter_mut().for_each(|i| *i = map[*i]);
        self.outputs.iter_mut().for_each(|o| *o = map[*o]);
    }
}

/// A named graph rewrite.
pub trait Pass {
    /// Name shown in errors and plan printouts.
    fn name(&self) -> &'static str;
    /// Rewrites the graph.
    fn run<'m>(&self, g: Graph<'m>) -> Graph<'m>;
}

impl<'m> Graph<'m> {
    /// Lowers a model: each layer's op (`ops/`) gives its node (a Conv1D also its padding).
    /// The weights are borrowed from the model, or taken from `owned` (per model node, as
    /// [`Model::take_weights`] gives them) where it has them: the graph then owns them, and
    /// a plan frees each once it is packed.
    pub(crate) fn lower(m: &'m Model, mut owned: Vec<Option<DenseWeights>>) -> Result<Graph<'m>> {
        let mut nodes: Vec<GNode<'m>> = Vec::with_capacity(m.nodes().len());
        let mut map = vec![0usize; m.nodes().len()];
        for (i, n) in m.nodes().iter().enumerate() {
            let mut cx = Lowering {
                model: m,
                node: n,
                nodes: &mut nodes,
                inputs: n.inputs.iter().map(|&j| map[j]).collect(),
                owned: owned.get_mut(i).and_then(Option::take),
            };
            let op = n.layer.op().lower(&mut cx)?;
            let inputs = cx.inputs;
            nodes.push(GNode {
                name: n.name.clone(),
                op,
                inputs,
                shape: n.shape.clone(),
            });
            map[i] = nodes.len() - 1;
        }
        let g = Graph {
            nodes,
            inputs: m.inputs().iter().map(|&i| map[i]).collect(),
            outputs: m.outputs().iter().map(|&o| map[o]).collect(),
            input_types: m.inputs().iter().map(|&i| m.nodes()[i].dtype).collect(),
            input_seq: m.seq_inputs().to_vec(),
        };
        g.check()
            .map_err(|msg| Error::Pass { pass: "lower", msg })?;
        Ok(g)
    }

    /// Number of nodes reading node `i` (each output it is counts as one reader).
    pub fn consumers(&self, i: usize) -> usize {
        self.nodes.iter().filter(|n| n.inputs.contains(&i)).count()
            + self.outputs.iter().filter(|&&o| o == i).count()
    }

    /// Whether node `i` is one of the outputs.
    pub fn is_output(&self, i: usize) -> bool {
        self.outputs.contains(&i)
    }

    /// Makes every reader of `from` (and the output) read `to` instead.
    pub fn rewire(&mut self, from: usize, to: usize) {
        for n in &mut self.nodes {
            for i in &mut n.inputs {
                if *i == from {
                    *i = to;
                }
            }
        }
        for o in &mut self.outputs {
            if *o == from {
                *o = to;
            }
        }
    }
}

/// The pass pipeline: with `fuse`, activations move into Dense epilogues and an attention's
/// projections into one Dense; without, every activation becomes a separate step.
pub fn pipeline(fuse: bool) -> Vec<Box<dyn Pass>> {
    let mut passes: Vec<Box<dyn Pass>> = vec![
        Box::new(DropDropout),
        Box::new(DropLinear),
        Box::new(FoldAffine),
    ];
    if fuse {
        passes.push(Box::new(FuseQkv));
        passes.push(Box::new(PushActivationThroughConcat));
        passes.push(Box::new(FuseActivations));
    } else {
        passes.push(Box::new(SplitActivations));
    }
    passes.push(Box::new(Prune));
    passes.push(Box::new(SharePadding));
    passes.push(Box::new(TransposeIntoPad));
    passes.push(Box::new(ConvSteps));
    passes.push(Box::new(ElideConcat));
    passes
}

/// Runs the pipeline, checking the graph after each pass.
pub fn optimize<'m>(mut g: Graph<'m>, fuse: bool) -> Result<Graph<'m>> {
    for pass in pipeline(fuse) {
        g = pass.run(g);
        g.check().map_err(|msg| Error::Pass {
            pass: pass.name(),
            msg,
        })?;
    }
    Ok(g)
}

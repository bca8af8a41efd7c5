//! One module per layer kind: its parameters, shape rule, weight layout, summary name,
//! lowering into the optimizer's graph and its float64 reference.
//!
//! [`model::Layer`](crate::model::Layer) holds one payload per kind and reaches the kind's
//! module through [`LayerOp`] (`Layer::op`); `passes` lowers a model by calling
//! [`LayerOp::lower`] and the f64 oracle (`reference`) by calling [`LayerOp::reference`].
//! A step the optimizer need not look inside (pooling, merges, elementwise functions) is a
//! [`StepOp`](crate::plan::StepOp) defined beside its layer, so it needs no arm in `passes`
//! or `plan` either. Adding a layer kind is a module here plus its line in `Layer`'s table.

pub(crate) mod activation;
pub(crate) mod argmax;
pub(crate) mod attention;
pub(crate) mod concat;
pub(crate) mod conv1d;
pub(crate) mod conv2d;
pub(crate) mod dense;
pub(crate) mod depthwise;
pub(crate) mod direct_conv;
pub(crate) mod embedding;
pub(crate) mod identity;
pub(crate) mod input;
pub(crate) mod masking;
pub(crate) mod merge;
pub(crate) mod norm;
pub(crate) mod permute;
pub(crate) mod pool;
pub(crate) mod recurrent;
pub(crate) mod repeat;
pub(crate) mod resample;
pub(crate) mod reshape;
pub(crate) mod scale;
pub(crate) mod take;
pub(crate) mod unary;
pub(crate) mod winograd;

use crate::error::{Error, Result};
use crate::model::{DType, DenseWeights, Model, Node};
use crate::passes::{GNode, Op};
use std::borrow::Cow;

/// What every layer kind provides. Defaults fit a weightless float layer.
pub(crate) trait LayerOp: std::fmt::Debug {
    /// The Keras class name, as `summary()` shows it.
    fn class_name(&self) -> &'static str;
    /// Base of auto-generated names (`dense`, `dense_1`, ... as Keras names them).
    fn base_name(&self) -> &'static str;
    /// Output shape (without the batch axis) for the given input shapes.
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String>;
    /// Element type of the output given the first input's.
    fn output_dtype(&self, _input: Option<DType>) -> DType {
        DType::F32
    }
    /// Whether it reads these input element types (only floats, unless it says otherwise).
    fn reads(&self, dtypes: &[DType]) -> bool {
        dtypes.iter().all(|&d| d == DType::F32)
    }
    /// Parameters held in the configuration (statistics), as Keras counts them.
    fn param_count(&self) -> usize {
        0
    }
    /// Of those, the ones Keras counts as non-trainable.
    fn non_trainable_count(&self) -> usize {
        0
    }
    /// `(K, units, use_bias)` of the `K x units` kernel the layer multiplies by, if it has one.
    fn weight_dims(&self, _input: &[usize]) -> Option<(usize, usize, bool)> {
        None
    }
    /// The node as ops of the optimizer's graph: the returned op computes the node's value;
    /// ops before it (a convolution's padding) go through [`Lowering::push`].
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>>;
    /// The layer in float64 over a batch, straight from its definition (the test oracle,
    /// `reference::run_all`).
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>>;
}

/// What [`LayerOp::lower`] sees: the model node and the graph built so far.
pub(crate) struct Lowering<'m, 'g> {
    /// The model.
    pub model: &'m Model,
    /// The node being lowered.
    pub node: &'m Node,
    /// The graph's nodes so far.
    pub nodes: &'g mut Vec<GNode<'m>>,
    /// The graph nodes the node's value reads (updated by [`Lowering::push`]).
    pub inputs: Vec<usize>,
    /// The node's weights when the graph takes them from a consumed model
    /// ([`Model::into_plan`](crate::model::Model::into_plan)), else `None`.
    pub owned: Option<DenseWeights>,
}

impl<'m> Lowering<'m, '_> {
    /// Shape of the node's first input.
    pub fn in_shape(&self) -> &'m [usize] {
        let m = self.model;
        self.node
            .inputs
            .first()
            .map_or(&[], |&j| m.nodes()[j].shape.as_slice())
    }

    /// The node's weights for the graph: moved out of a consumed model, else borrowed.
    pub fn graph_weights(&mut self) -> Result<Cow<'m, DenseWeights>> {
        match self.owned.take() {
            Some(w) => Ok(Cow::Owned(w)),
            None => self.weights().map(Cow::Borrowed),
        }
    }

    /// The node's weights (an error names the layer if it has none).
    pub fn weights(&self) -> Result<&'m DenseWeights> {
        let node = self.node;
        node.weights
            .as_ref()
            .ok_or_else(|| Error::Model(format!("layer {:?} has no weights", node.name)))
    }

    /// An error of the lowering, naming the layer.
    pub fn fail(&self, msg: impl Into<String>) -> Error {
        Error::Pass {
            pass: "lower",
            msg: format!("{:?}: {}", self.node.name, msg.into()),
        }
    }

    /// Adds `op` (named `<layer>.<suffix>`, of `shape`) before the node's own op, reading the
    /// current inputs; the node then reads it.
    pub fn push(&mut self, suffix: &str, op: Op<'m>, shape: Vec<usize>) {
        self.nodes.push(GNode {
            name: format!("{}.{suffix}", self.node.name),
            op,
            inputs: std::mem::take(&mut self.inputs),
            shape,
        });
        self.inputs = vec![self.nodes.len() - 1];
    }
}

/// What [`LayerOp::reference`] sees: the node, its inputs' values (each `batch` samples) and
/// shapes.
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub(crate) struct Reference<'a> {
    /// The node.
    pub node: &'a Node,
    /// Values of each input, `batch` samples each.
    pub inputs: Vec<&'a [f64]>,
    /// Shape of each input.
    pub shapes: Vec<&'a [usize]>,
    /// Samples.
    pub batch: usize,
}

#[cfg_attr(not(feature = "internals"), allow(dead_code))]
impl<'a> Reference<'a> {
    /// The first input's values, copied to work on.
    pub fn x(&self) -> Vec<f64> {
        self.inputs.first().map_or_else(Vec::new, |x| x.to_vec())
    }
    /// The first input's shape.
    pub fn in_shape(&self) -> &'a [usize] {
        self.shapes.first().copied().unwrap_or(&[])
    }
    /// Width of the node's output's last axis.
    pub fn width(&self) -> usize {
        self.node.shape.last().copied().unwrap_or(1)
    }
    /// The node's weights.
    pub fn weights(&self) -> Result<&'a DenseWeights> {
        let node = self.node;
        node.weights
            .as_ref()
            .ok_or_else(|| Error::Model(format!("layer {:?} has no weights", node.name)))
    }
}

/// The one-input shape rule: the input's shape, unchanged.
pub(crate) fn one(inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
    match inputs {
        [s] => Ok(s.to_vec()),
        _ => Err(format!("expects 1 input, got {}", inputs.len())),
    }
}

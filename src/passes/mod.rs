//! Graph-to-graph rewrites, one named pass per file, run in order by [`optimize`].
//!
//! The graph here is the model lowered to ops: Dense layers carry an epilogue (the activations
//! applied after the bias), Dropout and Flatten are still explicit. After every pass the graph is
//! checked; an error names the pass that broke it.

mod drop_dropout;
mod drop_linear;
mod fuse_activations;
mod prune;
mod split_activations;

pub use drop_dropout::DropDropout;
pub use drop_linear::DropLinear;
pub use fuse_activations::FuseActivations;
pub use prune::Prune;
pub use split_activations::SplitActivations;

use crate::error::{Error, Result};
use crate::kernels::Activation;
use crate::model::{DenseWeights, Layer, Model};

/// An op of the lowered graph.
#[derive(Clone, Debug, PartialEq)]
pub enum Op<'m> {
    /// The model input.
    Input,
    /// `acts(x · kernel + bias)`: the activations run in the kernel's epilogue, in order.
    Dense {
        /// The layer's weights.
        weights: &'m DenseWeights,
        /// Activations applied after the bias, in order.
        acts: Vec<Activation>,
    },
    /// A separate activation pass.
    Activation(Activation),
    /// Identity at inference, until [`DropDropout`] removes it.
    Dropout,
    /// A reshape to one axis: a view, no data moves.
    Flatten,
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
    /// Index of the input node.
    pub input: usize,
    /// Index of the output node.
    pub output: usize,
}

/// A named graph rewrite.
pub trait Pass {
    /// Name shown in errors and plan printouts.
    fn name(&self) -> &'static str;
    /// Rewrites the graph.
    fn run<'m>(&self, g: Graph<'m>) -> Graph<'m>;
}

impl<'m> Graph<'m> {
    /// Lowers a model: one node per layer, Dense activations into the Dense's epilogue.
    pub fn from_model(m: &'m Model) -> Result<Graph<'m>> {
        let nodes = m
            .nodes()
            .iter()
            .map(|n| {
                let op = match &n.layer {
                    Layer::Input => Op::Input,
                    Layer::Dense { activation, .. } => Op::Dense {
                        weights: n.weights.as_ref().ok_or_else(|| {
                            Error::Model(format!("layer {:?} has no weights", n.name))
                        })?,
                        acts: vec![*activation],
                    },
                    Layer::Activation(a) => Op::Activation(*a),
                    Layer::Dropout { .. } => Op::Dropout,
                    Layer::Flatten => Op::Flatten,
                };
                Ok(GNode {
                    name: n.name.clone(),
                    op,
                    inputs: n.inputs.clone(),
                    shape: n.shape.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let g = Graph {
            nodes,
            input: m.input(),
            output: m.output(),
        };
        g.check()
            .map_err(|msg| Error::Pass { pass: "lower", msg })?;
        Ok(g)
    }

    /// Number of nodes reading node `i` (the output counts as one reader).
    pub fn consumers(&self, i: usize) -> usize {
        self.nodes.iter().filter(|n| n.inputs.contains(&i)).count() + usize::from(self.output == i)
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
        if self.output == from {
            self.output = to;
        }
    }

    /// Checks order, arity and shapes.
    pub fn check(&self) -> std::result::Result<(), String> {
        let n = self.nodes.len();
        if self.input >= n || self.output >= n {
            return Err("input or output out of range".into());
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if node.inputs.iter().any(|&j| j >= i) {
                return Err(format!("{:?} is not in topological order", node.name));
            }
            let ins: Vec<&[usize]> = node
                .inputs
                .iter()
                .map(|&j| self.nodes[j].shape.as_slice())
                .collect();
            let expect = match &node.op {
                Op::Input => {
                    if !node.inputs.is_empty() || i != self.input {
                        return Err(format!("{:?}: stray input node", node.name));
                    }
                    continue;
                }
                Op::Dense { weights, .. } => {
                    let [x] = ins.as_slice() else {
                        return Err(format!("{:?}: Dense takes one input", node.name));
                    };
                    let k = *x.last().unwrap_or(&0);
                    let units = node.shape.last().copied().unwrap_or(0);
                    if weights.kernel.len() != k * units {
                        return Err(format!("{:?}: kernel is not {k} x {units}", node.name));
                    }
                    let mut s = x.to_vec();
                    if let Some(l) = s.last_mut() {
                        *l = units;
                    }
                    s
                }
                Op::Activation(_) | Op::Dropout => match ins.as_slice() {
                    [x] => x.to_vec(),
                    _ => return Err(format!("{:?}: takes one input", node.name)),
                },
                Op::Flatten => match ins.as_slice() {
                    [x] => vec![x.iter().product()],
                    _ => return Err(format!("{:?}: takes one input", node.name)),
                },
            };
            if expect != node.shape {
                return Err(format!(
                    "{:?}: shape {:?}, inputs imply {:?}",
                    node.name, node.shape, expect
                ));
            }
        }
        Ok(())
    }
}

/// The pass pipeline: with `fuse`, activations move into Dense epilogues; without, every
/// activation becomes a separate step.
pub fn pipeline(fuse: bool) -> Vec<Box<dyn Pass>> {
    let mut passes: Vec<Box<dyn Pass>> = vec![Box::new(DropDropout), Box::new(DropLinear)];
    if fuse {
        passes.push(Box::new(FuseActivations));
    } else {
        passes.push(Box::new(SplitActivations));
    }
    passes.push(Box::new(Prune));
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

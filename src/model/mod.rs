//! The user's graph: layers, symbolic tensors, shapes, `summary()`. Knows no kernels.
//!
//! Keras functional style: create an [`Input`], call layers on symbolic [`Tensor`]s, then make a
//! [`Model`] from the input to the output.
//!
//! ```
//! use sinter::{Activation, model::{ActivationLayer, Dense, Input, Model}};
//! # fn main() -> sinter::Result<()> {
//! let x = Input::new([784])?;
//! let h = Dense::new(32).activation(Activation::Tanh).call(&x)?;
//! let h = ActivationLayer::new(Activation::RELU).call(&h)?;
//! let y = Dense::new(8).activation(Activation::Softmax).call(&h)?;
//! let model = Model::new(&x, &y)?;
//! assert_eq!(model.count_params(), 25_384);
//! assert_eq!(model.nodes()[1].name, "dense");
//! # Ok(()) }
//! ```

pub mod init;
mod layers;
mod summary;

pub use layers::{ActivationLayer, Dense, Dropout, Flatten, Input};

use crate::error::{Error, Result};
use crate::kernels::Activation;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

/// A layer and its configuration (weights live on the [`Node`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// The model's input (Keras `InputLayer`).
    Input,
    /// `y = activation(x · kernel + bias)` over the last axis.
    Dense {
        /// Output width.
        units: usize,
        /// Activation applied after the bias.
        activation: Activation,
        /// Whether the layer has a bias vector.
        use_bias: bool,
    },
    /// An activation as a layer of its own.
    Activation(Activation),
    /// Identity at inference.
    Dropout {
        /// Fraction dropped during training, in `[0, 1)`.
        rate: f32,
    },
    /// Collapses all non-batch axes into one.
    Flatten,
}

impl Layer {
    /// The Keras class name, as `summary()` shows it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Layer::Input => "InputLayer",
            Layer::Dense { .. } => "Dense",
            Layer::Activation(_) => "Activation",
            Layer::Dropout { .. } => "Dropout",
            Layer::Flatten => "Flatten",
        }
    }

    /// Base of auto-generated names (`dense`, `dense_1`, ... as Keras names them).
    pub fn base_name(&self) -> &'static str {
        match self {
            Layer::Input => "input_layer",
            Layer::Dense { .. } => "dense",
            Layer::Activation(_) => "activation",
            Layer::Dropout { .. } => "dropout",
            Layer::Flatten => "flatten",
        }
    }

    /// Output shape (without the batch axis) for the given input shapes.
    pub fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let one = |inputs: &[&[usize]]| -> Result<Vec<usize>, String> {
            match inputs {
                [s] => Ok(s.to_vec()),
                _ => Err(format!("expects 1 input, got {}", inputs.len())),
            }
        };
        match *self {
            Layer::Input => Err("an InputLayer takes no inputs".into()),
            Layer::Dense { units, .. } => {
                let mut s = one(inputs)?;
                if s.is_empty() {
                    return Err("Dense needs an input of rank >= 1 (besides the batch)".into());
                }
                if units == 0 {
                    return Err("Dense units must be positive".into());
                }
                *s.last_mut().expect("rank checked") = units;
                Ok(s)
            }
            Layer::Activation(_) => one(inputs),
            Layer::Dropout { rate } => {
                if !(0.0..1.0).contains(&rate) {
                    return Err(format!("Dropout rate must be in [0, 1), got {rate}"));
                }
                one(inputs)
            }
            Layer::Flatten => {
                let s = one(inputs)?;
                Ok(vec![checked_elems(&s)?])
            }
        }
    }
}

/// Number of elements of a shape, or an error on overflow.
pub fn checked_elems(shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} has more elements than fit in memory"))
}

/// Weights of a Dense layer: `kernel` is `K x units`, row-major (Keras layout), `bias` `units`.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseWeights {
    /// `K x units`, row-major.
    pub kernel: Vec<f32>,
    /// `units` values, if the layer has a bias.
    pub bias: Option<Vec<f32>>,
}

/// A symbolic tensor: the output of a layer, with its shape (without the batch axis).
#[derive(Clone, Debug)]
pub struct Tensor(Rc<TensorNode>);

#[derive(Debug)]
struct TensorNode {
    id: u64,
    layer: Layer,
    name: Option<String>,
    inputs: Vec<Tensor>,
    shape: Vec<usize>,
    weights: Option<DenseWeights>,
}

impl Tensor {
    fn new(
        layer: Layer,
        name: Option<String>,
        inputs: Vec<Tensor>,
        weights: Option<DenseWeights>,
    ) -> Result<Tensor> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let label = name
            .clone()
            .unwrap_or_else(|| layer.type_name().to_string());
        let shape = layer.output_shape(&shapes).map_err(|msg| Error::Shape {
            layer: label.clone(),
            msg,
        })?;
        if let (
            Layer::Dense {
                units, use_bias, ..
            },
            Some(w),
        ) = (&layer, &weights)
        {
            check_dense_weights(&label, shapes[0], *units, *use_bias, w)?;
        }
        Ok(Tensor(Rc::new(TensorNode {
            id: next_id(),
            layer,
            name,
            inputs,
            shape,
            weights,
        })))
    }

    /// Shape without the batch axis.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }
}

/// Creation order of symbolic tensors: a topological order of any graph built from them.
fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn check_dense_weights(
    layer: &str,
    in_shape: &[usize],
    units: usize,
    use_bias: bool,
    w: &DenseWeights,
) -> Result<()> {
    let k = *in_shape.last().unwrap_or(&0);
    let expected = k.checked_mul(units).ok_or_else(|| Error::Shape {
        layer: layer.into(),
        msg: "kernel size overflows".into(),
    })?;
    if w.kernel.len() != expected {
        return Err(Error::Weights {
            layer: layer.into(),
            what: "kernel",
            expected,
            got: w.kernel.len(),
        });
    }
    match (&w.bias, use_bias) {
        (Some(b), true) if b.len() != units => Err(Error::Weights {
            layer: layer.into(),
            what: "bias",
            expected: units,
            got: b.len(),
        }),
        (Some(_), false) => Err(Error::Weights {
            layer: layer.into(),
            what: "bias",
            expected: 0,
            got: units,
        }),
        (None, true) => Err(Error::Weights {
            layer: layer.into(),
            what: "bias",
            expected: units,
            got: 0,
        }),
        _ => Ok(()),
    }
}

/// A layer instance in a built model.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Unique layer name.
    pub name: String,
    /// The layer and its configuration.
    pub layer: Layer,
    /// Indices of the nodes this one reads (earlier in `Model::nodes`).
    pub inputs: Vec<usize>,
    /// Output shape without the batch axis.
    pub shape: Vec<usize>,
    /// Weights, for Dense layers.
    pub weights: Option<DenseWeights>,
}

impl Node {
    /// Number of weights.
    pub fn count_params(&self) -> usize {
        self.weights
            .as_ref()
            .map_or(0, |w| w.kernel.len() + w.bias.as_ref().map_or(0, Vec::len))
    }
}

/// A model: nodes in topological order, one input, one output.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    name: String,
    nodes: Vec<Node>,
    input: usize,
    output: usize,
}

impl Model {
    /// The model from `input` to `output`, as Keras's `Model(inputs, outputs)`.
    /// Layers without weights get Glorot-uniform kernels (seeded by position) and zero biases.
    pub fn new(input: &Tensor, output: &Tensor) -> Result<Model> {
        let mut seen = HashSet::new();
        let mut stack = vec![output.clone()];
        let mut found = Vec::new();
        while let Some(t) = stack.pop() {
            if seen.insert(t.0.id) {
                stack.extend(t.0.inputs.iter().cloned());
                found.push(t);
            }
        }
        found.sort_by_key(|t| t.0.id);
        let inputs: Vec<&Tensor> = found.iter().filter(|t| t.0.layer == Layer::Input).collect();
        if inputs.len() != 1 || inputs[0].0.id != input.0.id {
            return Err(Error::Model(format!(
                "the output does not depend on exactly the given input ({} input layers reached)",
                inputs.len()
            )));
        }
        let index: HashMap<u64, usize> =
            found.iter().enumerate().map(|(i, t)| (t.0.id, i)).collect();
        let nodes = found
            .iter()
            .map(|t| Node {
                name: t.0.name.clone().unwrap_or_default(),
                layer: t.0.layer.clone(),
                inputs: t.0.inputs.iter().map(|i| index[&i.0.id]).collect(),
                shape: t.0.shape.clone(),
                weights: t.0.weights.clone(),
            })
            .collect();
        Model::from_nodes("functional", nodes, 0, found.len() - 1)
    }

    /// Builds a model from nodes in topological order (what file loaders produce). Empty names
    /// are filled as Keras would; shapes are re-inferred and checked; missing Dense weights are
    /// initialised.
    pub fn from_nodes(
        name: &str,
        mut nodes: Vec<Node>,
        input: usize,
        output: usize,
    ) -> Result<Model> {
        if input >= nodes.len() || output >= nodes.len() {
            return Err(Error::Model("input or output index out of range".into()));
        }
        assign_names(&mut nodes)?;
        for i in 0..nodes.len() {
            let node = &nodes[i];
            if node.inputs.iter().any(|&j| j >= i) {
                return Err(Error::Model(format!(
                    "layer {:?} reads a layer that comes after it (cycle or bad order)",
                    node.name
                )));
            }
            let shape = if node.layer == Layer::Input {
                if i != input {
                    return Err(Error::Model(format!(
                        "layer {:?} is a second input; sinter models have one input",
                        node.name
                    )));
                }
                if node.shape.is_empty() || node.shape.contains(&0) {
                    return Err(Error::Shape {
                        layer: node.name.clone(),
                        msg: format!(
                            "input shape {:?} must be non-empty and positive",
                            node.shape
                        ),
                    });
                }
                checked_elems(&node.shape).map_err(|msg| Error::Shape {
                    layer: node.name.clone(),
                    msg,
                })?;
                node.shape.clone()
            } else {
                let shapes: Vec<&[usize]> = node
                    .inputs
                    .iter()
                    .map(|&j| nodes[j].shape.as_slice())
                    .collect();
                node.layer
                    .output_shape(&shapes)
                    .map_err(|msg| Error::Shape {
                        layer: node.name.clone(),
                        msg,
                    })?
            };
            let in_shape = node.inputs.first().map(|&j| nodes[j].shape.clone());
            let node = &mut nodes[i];
            node.shape = shape;
            if let Layer::Dense {
                units, use_bias, ..
            } = node.layer
            {
                let in_shape = in_shape.unwrap_or_default();
                let k = *in_shape.last().unwrap_or(&0);
                match &node.weights {
                    Some(w) => check_dense_weights(&node.name, &in_shape, units, use_bias, w)?,
                    None => {
                        node.weights = Some(DenseWeights {
                            kernel: init::glorot_uniform(k, units, 0x5eed ^ i as u64),
                            bias: use_bias.then(|| vec![0.0; units]),
                        })
                    }
                }
            } else if node.weights.is_some() {
                return Err(Error::Model(format!(
                    "layer {:?} ({}) has no weights",
                    node.name,
                    node.layer.type_name()
                )));
            }
        }
        if nodes[input].layer != Layer::Input {
            return Err(Error::Model("the input node is not an InputLayer".into()));
        }
        Ok(Model {
            name: name.to_string(),
            nodes,
            input,
            output,
        })
    }

    /// The model's name (`"functional"` unless a loader says otherwise).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Nodes in topological order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    /// Index of the input node.
    pub fn input(&self) -> usize {
        self.input
    }
    /// Index of the output node.
    pub fn output(&self) -> usize {
        self.output
    }
    /// Input shape without the batch axis.
    pub fn input_shape(&self) -> &[usize] {
        &self.nodes[self.input].shape
    }
    /// Output shape without the batch axis.
    pub fn output_shape(&self) -> &[usize] {
        &self.nodes[self.output].shape
    }
    /// The node named `name`.
    pub fn layer(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
    /// Total number of weights.
    pub fn count_params(&self) -> usize {
        self.nodes.iter().map(Node::count_params).sum()
    }

    /// Replaces a Dense layer's weights (`kernel` is `K x units` row-major, as Keras stores it).
    pub fn set_weights(
        &mut self,
        name: &str,
        kernel: Vec<f32>,
        bias: Option<Vec<f32>>,
    ) -> Result<()> {
        let i = self
            .nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| Error::NoSuchLayer(name.into()))?;
        let in_shape = self.nodes[i]
            .inputs
            .first()
            .map(|&j| self.nodes[j].shape.clone())
            .unwrap_or_default();
        let node = &mut self.nodes[i];
        let Layer::Dense {
            units, use_bias, ..
        } = node.layer
        else {
            return Err(Error::Model(format!(
                "layer {name:?} ({}) has no weights",
                node.layer.type_name()
            )));
        };
        let w = DenseWeights { kernel, bias };
        check_dense_weights(name, &in_shape, units, use_bias, &w)?;
        node.weights = Some(w);
        Ok(())
    }

    /// Keras-style summary table.
    pub fn summary(&self) -> String {
        summary::render(self)
    }
}

/// Fills empty names per layer class (`dense`, `dense_1`, ...) and rejects duplicates.
fn assign_names(nodes: &mut [Node]) -> Result<()> {
    let mut taken: HashSet<String> = HashSet::new();
    for n in nodes.iter().filter(|n| !n.name.is_empty()) {
        if !taken.insert(n.name.clone()) {
            return Err(Error::Model(format!("two layers are named {:?}", n.name)));
        }
    }
    let mut counters: BTreeMap<&'static str, usize> = BTreeMap::new();
    for n in nodes.iter_mut().filter(|n| n.name.is_empty()) {
        let base = n.layer.base_name();
        let c = counters.entry(base).or_insert(0);
        loop {
            let candidate = if *c == 0 {
                base.to_string()
            } else {
                format!("{base}_{c}")
            };
            *c += 1;
            if taken.insert(candidate.clone()) {
                n.name = candidate;
                break;
            }
        }
    }
    Ok(())
}

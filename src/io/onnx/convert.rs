//! The [`Converter`]: the state of one ONNX graph's conversion (the tensors seen so far, the
//! nodes made, their layouts) and the services every op's reader uses: inputs as nodes or
//! constants, attributes, errors that name the node, and pushing the nodes it makes.

use super::LoadOptions;
use super::layout::Layout;
use super::ops;
use super::proto::{AttributeProto, NodeProto, dtype};
use crate::error::{Error, LoadError, LoadErrorKind, Result, Site};
use crate::kernels::Activation;
use crate::kernels::{SELU_ALPHA, SELU_SCALE};
use crate::model::{DenseWeights, Layer, Node, Unary};
use std::collections::HashMap;
use std::path::Path;

/// A constant tensor, converted to f32 (weights) or i64 (shapes).
#[derive(Clone, Debug)]
pub(super) struct Const {
    pub(super) dims: Vec<usize>,
    pub(super) f32: Vec<f32>,
    pub(super) i64: Vec<i64>,
}

#[derive(Clone, Debug)]
pub(super) enum Value {
    /// Output of our node `i`.
    Node(usize),
    Const(Const),
}

/// The batch size in a shape computed at load time (`Shape` of a computed tensor): known only
/// when the model runs.
pub(super) const BATCH: i64 = i64::MIN + 1;

pub(super) struct Converter<'a> {
    pub(super) path: &'a Path,
    pub(super) opts: &'a LoadOptions,
    /// External data read so far (counts against `max_weight_bytes`).
    pub(super) external_bytes: std::cell::Cell<u64>,
    /// Tensor names whose layout is not [`Layout::Native`].
    pub(super) layouts: HashMap<String, Layout>,
    /// Tensor name -> the node holding its values in ONNX's axis order (see
    /// [`Converter::materialise`]).
    pub(super) materialised: HashMap<String, usize>,
    /// The batch size of the graph inputs when the exporter fixed it (a traced PyTorch model):
    /// a `Reshape` whose first entry is this size keeps the batch axis.
    pub(super) static_batch: Option<i64>,
    /// Tensor name -> the node holding a plain `[N, C, W]` tensor transposed channels-last
    /// (see [`Converter::ncw_input`]), shared by every channels-first reader.
    pub(super) channels_last: HashMap<String, usize>,
    pub(super) dir: Option<&'a Path>,
    pub(super) opset: i64,
    pub(super) values: HashMap<String, Value>,
    pub(super) nodes: Vec<Node>,
    /// How many node inputs and graph outputs read each tensor.
    pub(super) uses: HashMap<String, usize>,
    /// How many ONNX nodes carry each name (only unique names are kept).
    pub(super) names: HashMap<String, usize>,
}

impl Converter<'_> {
    pub(super) fn fail(&self, msg: String) -> Error {
        LoadError::new(self.path, LoadErrorKind::Invalid(msg)).into()
    }

    pub(super) fn node_fail(&self, node: &NodeProto, msg: impl std::fmt::Display) -> Error {
        LoadError::new(self.path, LoadErrorKind::Invalid(msg.to_string()))
            .at(Site {
                name: node.name.clone(),
                op: node.op_type.clone(),
                opset: Some(self.opset),
            })
            .into()
    }

    pub(super) fn push(
        &mut self,
        output: &str,
        layer: Layer,
        inputs: Vec<usize>,
        shape: Vec<usize>,
        weights: Option<DenseWeights>,
    ) {
        // A view of an integer tensor (an ArgMax's labels reshaped) keeps its type.
        let view = matches!(
            layer,
            Layer::Reshape { .. } | Layer::Flatten | Layer::Permute { .. } | Layer::Identity
        );
        let dtype = match inputs.first() {
            Some(&i) if view => self.nodes[i].dtype,
            _ => layer.output_dtype(),
        };
        let mut n = Node::new(String::new(), layer, inputs, shape, weights);
        n.dtype = dtype;
        self.nodes.push(n);
        self.values
            .insert(output.to_string(), Value::Node(self.nodes.len() - 1));
    }

    /// Names the last pushed node after `node` when its name is unique.
    pub(super) fn name_last(&mut self, node: &NodeProto) {
        if self.names.get(node.name.as_str()) == Some(&1)
            && let Some(last) = self.nodes.last_mut()
        {
            last.name = node.name.clone();
        }
    }

    pub(super) fn node(&mut self, node: &NodeProto) -> Result<()> {
        if node.domain == "ai.onnx.ml" && node.op_type == "ArrayFeatureExtractor" {
            return ops::array_feature_extractor(self, node);
        }
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(self.node_fail(
                node,
                format!(
                    "operator {} of domain {:?} is not supported",
                    node.op_type, node.domain
                ),
            ));
        }
        if let Some(c) = self.fold(node)? {
            self.values
                .insert(self.output(node)?.to_string(), Value::Const(c));
            return Ok(());
        }
        let act = |a: Activation| Some(a);
        let activation = match node.op_type.as_str() {
            "Relu" => act(Activation::RELU),
            "LeakyRelu" => act(Activation::LeakyRelu {
                negative_slope: self.attr_f(node, "alpha")?.unwrap_or(0.01),
            }),
            "Elu" => act(Activation::Elu {
                alpha: self.attr_f(node, "alpha")?.unwrap_or(1.0),
            }),
            "Selu" => {
                let alpha = self.attr_f(node, "alpha")?.unwrap_or(SELU_ALPHA);
                let gamma = self.attr_f(node, "gamma")?.unwrap_or(SELU_SCALE);
                if alpha != SELU_ALPHA || gamma != SELU_SCALE {
                    return Err(self.node_fail(
                        node,
                        format!("Selu with alpha={alpha}, gamma={gamma}: only the standard constants ({SELU_ALPHA}, {SELU_SCALE}) are supported"),
                    ));
                }
                act(Activation::Selu)
            }
            "Sigmoid" => act(Activation::Sigmoid),
            "HardSigmoid" => {
                let alpha = self.attr_f(node, "alpha")?.unwrap_or(0.2);
                let beta = self.attr_f(node, "beta")?.unwrap_or(0.5);
                if !(alpha.is_finite() && beta.is_finite()) {
                    return Err(self.node_fail(node, format!("alpha={alpha}, beta={beta}")));
                }
                act(Activation::HardSigmoidAffine { alpha, beta })
            }
            "HardSwish" => act(Activation::HardSilu),
            "Swish" => match self.attr_f(node, "alpha")?.unwrap_or(1.0) {
                1.0 => act(Activation::Silu),
                a => return Err(self.node_fail(node, format!("alpha={a}: only 1 (SiLU)"))),
            },
            "Tanh" => act(Activation::Tanh),
            "Softplus" => act(Activation::Softplus),
            "Softsign" => act(Activation::Softsign),
            "Exp" => act(Activation::Exponential),
            "Mish" => act(Activation::Mish),
            "Gelu" => {
                let approximate = match self.attr_s(node, "approximate")?.as_deref() {
                    None | Some("none") => false,
                    Some("tanh") => true,
                    Some(other) => {
                        return Err(self.node_fail(node, format!("approximate={other:?}")));
                    }
                };
                act(Activation::Gelu { approximate })
            }
            "Softmax" | "LogSoftmax" => {
                let a = if node.op_type == "Softmax" {
                    Activation::Softmax
                } else {
                    Activation::LogSoftmax
                };
                let x = self.input_node(node, 0)?;
                let layout = self.layout(node, 0);
                let rank = layout.onnx_dims(&self.nodes[x].shape).len() as i64 + 1;
                let mut axis = self.attr_i(node, "axis")?.unwrap_or(-1);
                if axis < 0 {
                    axis += rank;
                }
                if axis <= 0 || axis >= rank {
                    return Err(self.node_fail(
                        node,
                        format!(
                            "axis {axis} of a rank-{rank} tensor: only a non-batch axis is \
                             supported"
                        ),
                    ));
                }
                if layout == Layout::Ncw && axis == 1 {
                    // The channels: sinter's last axis. No transpose.
                    return self.same_shape(node, Layer::Activation(a), x, Layout::Ncw);
                }
                if axis != rank - 1 {
                    return ops::softmax_inner_axis(self, node, a, axis as usize);
                }
                act(a)
            }
            _ => None,
        };
        if let Some(a) = activation {
            // Elementwise activations keep a tracked layout; a row-wise one reduces over ONNX's
            // last axis, so it reads the values in ONNX's order.
            let (x, layout) = if a.is_row_wise() {
                (self.native_input(node, 0)?, Layout::Native)
            } else {
                (self.input_node(node, 0)?, self.layout(node, 0))
            };
            return self.same_shape(node, Layer::Activation(a), x, layout);
        }
        match node.op_type.as_str() {
            "Transpose" => ops::transpose(self, node),
            "Conv" | "MaxPool" | "AveragePool" => match ops::unit_window(self, node)? {
                Some(one) => {
                    if node.op_type == "Conv" {
                        ops::conv(self, &one)?;
                    } else {
                        ops::pool(self, &one)?;
                    }
                    let at = self.layout(node, 0);
                    self.set_layout(node, at)
                }
                None if node.op_type == "Conv" => ops::conv(self, node),
                None => ops::pool(self, node),
            },
            "GlobalMaxPool" | "GlobalAveragePool" => ops::global_pool(self, node),
            "Concat" => ops::concat(self, node),
            "Gemm" => ops::gemm(self, node),
            "MatMul" => ops::matmul(self, node),
            "Add" => ops::add(self, node),
            "Sub" | "Mul" | "Div" => ops::binary(self, node),
            "Sqrt" => ops::unary(self, node, Unary::Sqrt),
            "Neg" => ops::unary(self, node, Unary::Neg),
            "Abs" => ops::unary(self, node, Unary::Abs),
            "Erf" => ops::unary(self, node, Unary::Erf),
            "Pow" => ops::pow(self, node),
            "Clip" => ops::clip(self, node),
            "Cast" => ops::cast(self, node),
            "ReduceMean" | "ReduceMax" => ops::reduce(self, node),
            "Squeeze" | "Unsqueeze" => ops::squeeze(self, node),
            "Sum" | "Mean" | "Max" | "Min" => ops::variadic(self, node),
            "BatchNormalization" => ops::batch_norm(self, node),
            "LayerNormalization" => ops::layer_norm(self, node),
            "Gather" => ops::gather(self, node),
            "ArgMax" => ops::argmax(self, node),
            "Identity" => {
                let x = self.input_node(node, 0)?;
                self.alias(node, x)
            }
            "Dropout" => ops::dropout(self, node),
            "Flatten" => {
                let axis = self.attr_i(node, "axis")?.unwrap_or(1);
                if axis != 1 {
                    return Err(self.node_fail(
                        node,
                        format!("axis {axis}: only axis 1 (keep the batch axis) is supported"),
                    ));
                }
                ops::flatten(self, node)
            }
            "Reshape" => ops::reshape(self, node),
            "Constant" => {
                let c = self.constant_node(node)?;
                self.values
                    .insert(self.output(node)?.to_string(), Value::Const(c));
                Ok(())
            }
            op => Err(self.node_fail(node, format!("operator {op} is not supported"))),
        }
    }

    pub(super) fn output<'n>(&self, node: &'n NodeProto) -> Result<&'n str> {
        match node.output.first() {
            Some(o) if !o.is_empty() => Ok(o),
            _ => Err(self.node_fail(node, "has no output")),
        }
    }

    pub(super) fn alias(&mut self, node: &NodeProto, x: usize) -> Result<()> {
        let out = self.output(node)?.to_string();
        self.values.insert(out, Value::Node(x));
        let layout = self.layout(node, 0);
        self.set_layout(node, layout)
    }

    pub(super) fn value(&self, node: &NodeProto, i: usize) -> Result<&Value> {
        let name = node
            .input
            .get(i)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| self.node_fail(node, format!("missing input {i}")))?;
        self.values.get(name).ok_or_else(|| {
            self.node_fail(
                node,
                format!("input {name:?} is not defined before this node (cycle or bad order)"),
            )
        })
    }

    /// Input `i`, which must be computed (not a constant).
    pub(super) fn input_node(&self, node: &NodeProto, i: usize) -> Result<usize> {
        match self.value(node, i)? {
            Value::Node(x) => Ok(*x),
            Value::Const(_) => Err(self.node_fail(
                node,
                format!("input {i} is a constant; sinter needs it computed from the graph input"),
            )),
        }
    }

    /// Input `i`, which must be a constant (an initializer or a `Constant` node).
    pub(super) fn input_const(&self, node: &NodeProto, i: usize) -> Result<&Const> {
        match self.value(node, i)? {
            Value::Const(c) => Ok(c),
            Value::Node(_) => Err(self.node_fail(
                node,
                format!("input {i} must be a constant (an initializer)"),
            )),
        }
    }

    pub(super) fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
        node.attribute.iter().find(|a| a.name == name)
    }

    pub(super) fn attr_f(&self, node: &NodeProto, name: &str) -> Result<Option<f32>> {
        Ok(Self::attr(node, name).map(|a| a.f))
    }

    pub(super) fn attr_i(&self, node: &NodeProto, name: &str) -> Result<Option<i64>> {
        Ok(Self::attr(node, name).map(|a| a.i))
    }

    pub(super) fn attr_s(&self, node: &NodeProto, name: &str) -> Result<Option<String>> {
        Self::attr(node, name)
            .map(|a| {
                String::from_utf8(a.s.clone())
                    .map_err(|_| self.node_fail(node, format!("attribute {name} is not UTF-8")))
            })
            .transpose()
    }

    /// `layer` of node `x` with `x`'s shape, read with `layout`, as `node`'s output.
    pub(super) fn same_shape(
        &mut self,
        node: &NodeProto,
        layer: Layer,
        x: usize,
        layout: Layout,
    ) -> Result<()> {
        let shape = self.nodes[x].shape.clone();
        self.push(self.output(node)?, layer, vec![x], shape, None);
        self.name_last(node);
        self.set_layout(node, layout)
    }

    /// The scalar float constant of input `i`, if the input is given.
    pub(super) fn scalar_input(&self, node: &NodeProto, i: usize) -> Result<Option<f32>> {
        if node.input.get(i).is_none_or(|n| n.is_empty()) {
            return Ok(None);
        }
        let c = self.input_const(node, i)?;
        match c.f32.as_slice() {
            [v] => Ok(Some(*v)),
            _ => Err(self.node_fail(node, format!("input {i} must be a scalar float constant"))),
        }
    }

    /// The output of `node` as `x` (held in ONNX's order) seen with `shape`: `x` itself when
    /// the shape is the same, else a Flatten (one axis) or Reshape, a view either way.
    pub(super) fn view(&mut self, node: &NodeProto, x: usize, shape: Vec<usize>) -> Result<()> {
        if shape == self.nodes[x].shape {
            self.values
                .insert(self.output(node)?.to_string(), Value::Node(x));
            return self.set_layout(node, Layout::Native);
        }
        let layer = if shape.len() == 1 {
            Layer::Flatten
        } else {
            Layer::Reshape {
                target_shape: shape.iter().map(|&d| d as isize).collect(),
            }
        };
        self.push(self.output(node)?, layer, vec![x], shape, None);
        self.name_last(node);
        self.set_layout(node, Layout::Native)
    }

    /// Per-channel constant input `i` (`[C]`, or `[C, 1]`-like).
    pub(super) fn channel_const(
        &self,
        node: &NodeProto,
        i: usize,
        ch: usize,
        what: &str,
    ) -> Result<Vec<f32>> {
        let c = self.input_const(node, i)?;
        if c.f32.len() != ch || c.dims.iter().filter(|&&d| d != 1).count() > 1 {
            return Err(self.node_fail(
                node,
                format!("{what} has shape {:?}, expected [{ch}]", c.dims),
            ));
        }
        Ok(c.f32.clone())
    }
}

pub(super) fn dtype_name(t: i32) -> String {
    match t {
        dtype::FLOAT => "float32".into(),
        dtype::INT32 => "int32".into(),
        dtype::INT64 => "int64".into(),
        dtype::FLOAT16 => "float16".into(),
        dtype::DOUBLE => "float64".into(),
        t => format!("#{t}"),
    }
}

pub(super) fn join(s: &[usize]) -> String {
    s.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

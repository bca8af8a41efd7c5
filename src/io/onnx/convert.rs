//! The [`Converter`]: the state of one ONNX graph's conversion (the tensors seen so far, the
//! nodes made, their layouts) and the services every op's reader uses: inputs as nodes or
//! constants, attributes, errors that name the node, and pushing the nodes it makes.

use super::LoadOptions;
use super::layout::Layout;
use super::proto::{AttributeProto, NodeProto, dtype};
use super::{fold, ops};
use crate::error::{Error, LoadError, LoadErrorKind, Result, Site};
use crate::model::ReshapeConfig;
use crate::model::{DenseWeights, Layer, Node};
use std::collections::HashMap;
use std::path::Path;

/// `kind` with `prefix` before its detail.
pub(super) fn prefixed(prefix: &str, kind: LoadErrorKind) -> LoadErrorKind {
    match kind {
        LoadErrorKind::Malformed(m) => LoadErrorKind::Malformed(format!("{prefix}{m}")),
        LoadErrorKind::Unsupported(m) => LoadErrorKind::Unsupported(format!("{prefix}{m}")),
        LoadErrorKind::Invalid(m) => LoadErrorKind::Invalid(format!("{prefix}{m}")),
        LoadErrorKind::Limit(m) => LoadErrorKind::Limit(format!("{prefix}{m}")),
        model => model,
    }
}

/// A constant tensor, converted to f32 (weights) or i64 (shapes).
#[derive(Clone, Debug)]
pub(super) struct Const {
    pub(super) dims: Vec<usize>,
    pub(super) f32: Vec<f32>,
    pub(super) i64: Vec<i64>,
}

/// What an ONNX tensor name stands for.
#[derive(Clone, Debug)]
pub(super) enum Value {
    /// Output of our node `i`.
    Node(usize),
    /// A value known at load time (an initializer, a `Constant`, a folded node).
    Const(Const),
}

/// The batch size in a shape computed at load time (`Shape` of a computed tensor): known only
/// when the model runs.
pub(super) const BATCH: i64 = i64::MIN + 1;

/// One graph's conversion: the tensors seen so far, the nodes made, their layouts.
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
    /// Graph inputs and outputs whose batch is not ONNX's first axis (time-major tensors).
    pub(super) batch_axes: HashMap<String, crate::model::BatchAxis>,
}

impl<'a> Converter<'a> {
    /// A converter for a model in `path` (external data next to it in `dir`) importing the
    /// default-domain `opset`.
    pub(super) fn new(
        path: &'a Path,
        opts: &'a LoadOptions,
        dir: Option<&'a Path>,
        opset: i64,
    ) -> Converter<'a> {
        Converter {
            path,
            opts,
            external_bytes: std::cell::Cell::new(0),
            dir,
            opset,
            values: HashMap::new(),
            nodes: Vec::new(),
            layouts: HashMap::new(),
            materialised: HashMap::new(),
            channels_last: HashMap::new(),
            static_batch: None,
            uses: HashMap::new(),
            names: HashMap::new(),
            batch_axes: HashMap::new(),
        }
    }
}

impl Converter<'_> {
    /// A fault of the file, not of one node.
    pub(super) fn file_error(&self, kind: LoadErrorKind) -> Error {
        LoadError::new(self.path, kind).into()
    }

    /// A fault of `node`, located at it (its name, op and the model's opset).
    pub(super) fn node_error(&self, node: &NodeProto, kind: LoadErrorKind) -> Error {
        LoadError::new(self.path, kind)
            .at(Site {
                name: node.name.clone(),
                op: node.op_type.clone(),
                opset: Some(self.opset),
            })
            .into()
    }

    /// `node` breaks ONNX's rules or disagrees with itself: a missing or ill-typed attribute
    /// or input, a dangling input, sizes that do not fit ([`LoadErrorKind::Invalid`]).
    pub(super) fn invalid(&self, node: &NodeProto, msg: impl std::fmt::Display) -> Error {
        self.node_error(node, LoadErrorKind::Invalid(msg.to_string()))
    }

    /// `node` is valid ONNX that sinter does not run: its op, an attribute value, an element
    /// type, a constant where sinter needs a computed input or the reverse
    /// ([`LoadErrorKind::Unsupported`]).
    pub(super) fn unsupported(&self, node: &NodeProto, msg: impl std::fmt::Display) -> Error {
        self.node_error(node, LoadErrorKind::Unsupported(msg.to_string()))
    }

    /// `node` is over a size limit ([`LoadErrorKind::Limit`]).
    pub(super) fn limit(&self, node: &NodeProto, msg: impl std::fmt::Display) -> Error {
        self.node_error(node, LoadErrorKind::Limit(msg.to_string()))
    }

    /// Appends a node computing `layer` of `inputs` with non-batch `shape`, as tensor
    /// `output`.
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
            Layer::Reshape(_) | Layer::Flatten | Layer::Permute(_) | Layer::Identity
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

    /// Converts one node: evaluated at load time if it can be ([`fold`]), else by its op's
    /// line in [`ops::OPS`] (or [`ops::ML_OPS`]).
    pub(super) fn node(&mut self, node: &NodeProto) -> Result<()> {
        let (table, domain) = match node.domain.as_str() {
            "" | "ai.onnx" => (ops::OPS, None),
            "ai.onnx.ml" => (ops::ML_OPS, Some("ai.onnx.ml")),
            super::attention::DOMAIN if node.op_type == "Attention" => {
                return super::attention::convert(self, node);
            }
            super::attention::DOMAIN if node.op_type == "PositionRows" => {
                return super::positions::convert(self, node);
            }
            // ONNX Runtime's transformers optimizer writes its fused kernels here (Attention,
            // SkipLayerNormalization, BiasGelu, FastGelu, EmbedLayerNormalization, ...).
            "com.microsoft" => {
                return Err(self.unsupported(
                    node,
                    format!(
                        "operator {} of domain \"com.microsoft\" (ONNX Runtime's fused kernel, \
                         written by its transformers optimizer) is not supported: load the \
                         model as the exporter wrote it, before optimization",
                        node.op_type
                    ),
                ));
            }
            d => {
                return Err(self.unsupported(
                    node,
                    format!("operator {} of domain {d:?} is not supported", node.op_type),
                ));
            }
        };
        let batch_not_first = node
            .input
            .iter()
            .any(|n| self.layouts.get(n).is_some_and(|l| l.batch_not_first()));
        let lengths = node
            .input
            .iter()
            .any(|n| self.layouts.get(n) == Some(&Layout::N));
        if lengths && !matches!(node.op_type.as_str(), "LSTM" | "GRU" | "RNN") {
            return Err(self.unsupported(
                node,
                "reads a graph input of shape [N] (a recurrent op's sequence_lens); sinter \
                 reads those only by LSTM, GRU and RNN",
            ));
        }
        if batch_not_first
            && !super::layout::BATCH_NOT_FIRST_READERS.contains(&node.op_type.as_str())
        {
            return Err(self.unsupported(
                node,
                format!(
                    "reads a tensor with ONNX's batch on axis 1 (a time-major one, from a \
                     recurrent op or a Transpose perm [1, 0, 2], or a recurrent op's last \
                     state); sinter reads those only by {}",
                    super::layout::BATCH_NOT_FIRST_READERS.join(", ")
                ),
            ));
        }
        if domain.is_none()
            && let Some(c) = fold::fold(self, node)?
        {
            self.values
                .insert(self.output(node)?.to_string(), Value::Const(c));
            return Ok(());
        }
        match ops::find(table, &node.op_type) {
            Some(convert) => convert(self, node),
            None => {
                let op = &node.op_type;
                let what = match domain {
                    None => format!("operator {op} is not supported"),
                    Some(d) => format!("operator {op} of domain {d:?} is not supported"),
                };
                let mut known = ops::names(table);
                if domain.is_none() {
                    let mut folded: Vec<&str> = fold::FOLDS
                        .iter()
                        .map(|(op, _, _)| *op)
                        .filter(|op| ops::find(table, op).is_none())
                        .collect();
                    folded.sort_unstable();
                    known.push_str(&format!("; evaluated at load time: {}", folded.join(", ")));
                }
                Err(self.unsupported(node, format!("{what} (sinter reads {known})")))
            }
        }
    }

    pub(super) fn output<'n>(&self, node: &'n NodeProto) -> Result<&'n str> {
        match node.output.first() {
            Some(o) if !o.is_empty() => Ok(o),
            _ => Err(self.invalid(node, "has no output")),
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
            .ok_or_else(|| self.invalid(node, format!("missing input {i}")))?;
        self.values.get(name).ok_or_else(|| {
            self.invalid(
                node,
                format!("input {name:?} is not defined before this node (cycle or bad order)"),
            )
        })
    }

    /// Input `i`, which must be computed (not a constant).
    pub(super) fn input_node(&self, node: &NodeProto, i: usize) -> Result<usize> {
        match self.value(node, i)? {
            Value::Node(x) => Ok(*x),
            Value::Const(_) => Err(self.unsupported(
                node,
                format!("input {i} is a constant; sinter needs it computed from the graph input"),
            )),
        }
    }

    /// Input `i`, which must be a constant (an initializer or a `Constant` node).
    pub(super) fn input_const(&self, node: &NodeProto, i: usize) -> Result<&Const> {
        match self.value(node, i)? {
            Value::Const(c) => Ok(c),
            Value::Node(_) => Err(self.unsupported(
                node,
                format!("input {i} must be a constant (an initializer)"),
            )),
        }
    }

    /// Input `i`'s dims and float values, which must be a constant: moved out when this node
    /// is the constant's only use (a weight matrix is not copied on its way into a layer),
    /// else copied.
    pub(super) fn take_const_f32(
        &mut self,
        node: &NodeProto,
        i: usize,
    ) -> Result<(Vec<usize>, Vec<f32>)> {
        let c = self.input_const(node, i)?;
        let dims = c.dims.clone();
        let name = &node.input[i];
        if self.uses.get(name) == Some(&1)
            && let Some(Value::Const(c)) = self.values.get_mut(name)
        {
            return Ok((dims, std::mem::take(&mut c.f32)));
        }
        Ok((dims, self.input_const(node, i)?.f32.clone()))
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
                    .map_err(|_| self.invalid(node, format!("attribute {name} is not UTF-8")))
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
            _ => {
                let m = format!("input {i} must be a scalar float constant");
                // One integer: a scalar of a type sinter does not compute in.
                Err(if c.i64.len() == 1 {
                    self.unsupported(node, m)
                } else {
                    self.invalid(node, m)
                })
            }
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
            Layer::Reshape(ReshapeConfig {
                target_shape: shape.iter().map(|&d| d as isize).collect(),
            })
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
            return Err(self.invalid(
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

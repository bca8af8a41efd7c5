//! ONNX models: the dense and 1-D CNN subset (Gemm, MatMul + Add, activations, Flatten,
//! Reshape, Dropout, Identity; Conv, MaxPool, AveragePool, global pooling, Concat, Add, and
//! batch-first Transposes) of opsets 13 to 28,
//! weights inline or in external data files.
//!
//! sinter keeps 1-D feature maps channels-last (`[steps, channels]`, as Keras). ONNX convolutions
//! are channels-first, so exporters of Keras models wrap them in `Transpose(0, 2, 1)`: the
//! loader turns those into a change of how later ops read the axes, not a copy. Such a layout
//! never leaks: where values are read in ONNX's order (a graph output, Flatten, Reshape, MatMul,
//! Gemm, Softmax, mixed-layout Concat/Add) it is written out first (`Converter::materialise`).
//! Any other batch-first `Transpose` is a `Permute`.
//!
//! `MatMul` followed by an `Add` of a constant becomes one Dense layer with a bias; `Gemm`
//! becomes a Dense layer with `alpha` folded into the kernel and `beta` into the bias (exact when
//! they are powers of two, as exporters write them). Anything else is an error that names the
//! node, the op and the opset.
//!
//! ```no_run
//! let model = sinter::io::onnx::load("model.onnx")?;
//! println!("{}", model.summary());
//! # Ok::<(), sinter::Error>(())
//! ```

mod patterns;
pub mod proto;

use super::LoadOptions;
use crate::error::{Error, LoadError, LoadErrorKind, Result, Site};
use crate::kernels::Activation;
use crate::kernels::{SELU_ALPHA, SELU_SCALE};
use crate::model::{
    AffineConfig, ArgMaxConfig, AveragePooling1DConfig, ConcatenateConfig, Conv1DConfig,
    DenseConfig, DropoutConfig, EmbeddingConfig, MaxPooling1DConfig, PermuteConfig, Primitive,
    ReshapeConfig,
};
use crate::model::{
    ChannelNorm, DType, DenseWeights, Layer, Merge, Model, Node, Padding, RowNorm, Unary,
    checked_elems,
};
use proto::{AttributeProto, NodeProto, TensorProto, dtype};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Opsets of the default domain this loader implements: 13 (where Softmax, Squeeze,
/// Unsqueeze, Clip and friends took their current form) to 28, the newest of onnx 1.23.2.
///
/// Between 13 and 28 the ops read here changed only by widening their type lists (bfloat16,
/// float8, int4, float4: opsets 19, 21, 22, 23, 24, 25, and `Cast` 28), except for attributes
/// that each op's reader checks: `Reshape` gained `allowzero` (14), `BatchNormalization`
/// `training_mode` (14), `AveragePool` `dilations` (19), `Cast` `saturate` and `round_mode`
/// (19, 28: float8/float4 targets only, which sinter refuses anyway). Ops added in this range
/// (`HardSwish` 14, `LayerNormalization` 17, `Mish` 18, `Gelu` 20) are read from the opset
/// that introduced them. A model of a newer opset is refused at its first node: sinter cannot
/// know what changed.
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=28;

/// Reads and converts an ONNX file; external data is resolved next to it.
pub fn load(path: impl AsRef<Path>) -> Result<Model> {
    load_with(path, &LoadOptions::default())
}

/// [`load`] with explicit limits.
pub fn load_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model> {
    let path = path.as_ref();
    let bytes = super::read_limited(path, opts.max_weight_bytes, "weights")?;
    let dir = path.parent().unwrap_or(Path::new("."));
    from_bytes_with(&bytes, path, Some(dir), opts)
}

/// Converts an ONNX model held in memory. `path` only names the model in errors; external data
/// is read relative to `dir` (and refused when `dir` is `None`).
pub fn from_bytes(bytes: &[u8], path: &Path, dir: Option<&Path>) -> Result<Model> {
    from_bytes_with(bytes, path, dir, &LoadOptions::default())
}

/// [`from_bytes`] with explicit limits.
pub fn from_bytes_with(
    bytes: &[u8],
    path: &Path,
    dir: Option<&Path>,
    opts: &LoadOptions,
) -> Result<Model> {
    let fail = |msg: String| Error::from(LoadError::new(path, LoadErrorKind::Invalid(msg)));
    if bytes.len() as u64 > opts.max_weight_bytes {
        return Err(fail(format!(
            "{} bytes is over the weights limit of {} bytes",
            bytes.len(),
            opts.max_weight_bytes
        )));
    }
    let proto_model =
        proto::decode(bytes).map_err(|e| fail(format!("not an ONNX model (protobuf: {e})")))?;
    let model = &proto_model;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| fail("no opset_import for the default ONNX domain".into()))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| fail("the model has no graph".into()))?;
    if opset > *OPSETS.end() {
        let first = graph.node.first();
        let (name, op) = first.map_or(("", ""), |n| (n.name.as_str(), n.op_type.as_str()));
        return Err(fail(format!(
            "node {name:?} ({op}): the model's opset {opset} is newer than sinter knows ({}); \
             export with opset {} or older",
            OPSETS.end(),
            OPSETS.end()
        )));
    }
    if opset < *OPSETS.start() {
        return Err(fail(format!(
            "opset {opset} is not supported (sinter reads opsets {} to {}); convert the model \
             with onnx.version_converter.convert_version(model, {})",
            OPSETS.start(),
            OPSETS.end(),
            OPSETS.start()
        )));
    }
    if graph.node.len() > opts.max_layers {
        return Err(fail(format!(
            "{} nodes, over the limit of {}",
            graph.node.len(),
            opts.max_layers
        )));
    }
    let mut cx = Converter {
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
    };
    for t in &graph.initializer {
        let c = cx.constant(t, &format!("initializer {:?}", t.name))?;
        cx.values.insert(t.name.clone(), Value::Const(c));
    }
    // Activation and normalization subgraphs become one op each (`patterns`).
    let (graph_nodes, patterns) = {
        let mut consts: HashMap<&str, Const> = HashMap::new();
        for n in graph.node.iter().filter(|n| n.op_type == "Constant") {
            if let (Some(o), Ok(c)) = (n.output.first(), cx.constant_node(n)) {
                consts.insert(o, c);
            }
        }
        let get = |name: &str| match cx.values.get(name) {
            Some(Value::Const(c)) => Some(c),
            _ => consts.get(name),
        };
        let scalar = |name: &str| get(name).and_then(|c| (c.f32.len() == 1).then(|| c.f32[0]));
        let ints = |name: &str| {
            get(name)
                .filter(|c| c.f32.is_empty())
                .map(|c| c.i64.clone())
        };
        let outs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
        patterns::rewrite(&graph.node, &outs, &scalar, &ints)
    };
    for node in &graph_nodes {
        for name in node.input.iter().filter(|n| !n.is_empty()) {
            *cx.uses.entry(name.clone()).or_insert(0) += 1;
        }
        if !node.name.is_empty() {
            *cx.names.entry(node.name.clone()).or_insert(0) += 1;
        }
    }
    for out in &graph.output {
        *cx.uses.entry(out.name.clone()).or_insert(0) += 1;
    }
    // A node is never named after a graph input (inputs keep their own names).
    for i in &graph.input {
        cx.names.insert(i.name.clone(), 2);
    }
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !cx.values.contains_key(&i.name))
        .collect();
    if inputs.is_empty() {
        return Err(fail("the graph has no non-constant input".into()));
    }
    cx.static_batch = inputs
        .iter()
        .map(|i| {
            let tt = i.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
            let dim = tt
                .and_then(|t| t.shape.as_ref())
                .and_then(|s| s.dim.first());
            dim.and_then(|d| d.dim_value).filter(|&v| v > 1)
        })
        .reduce(|a, b| if a == b { a } else { None })
        .flatten();
    for input in &inputs {
        let (shape, dtype) = input_shape(input)
            .and_then(|(s, t)| opts.check_elems(&s).map(|()| (s, t)))
            .map_err(|m| fail(format!("input {:?}: {m}", input.name)))?;
        cx.push(&input.name, Layer::Input, vec![], shape, None);
        if let Some(n) = cx.nodes.last_mut() {
            n.name = input.name.clone();
            n.dtype = dtype;
        }
    }
    if graph.output.is_empty() {
        return Err(fail("the graph has no outputs".into()));
    }
    let all: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let wanted = opts.pick_outputs(&all).map_err(fail)?;
    let outputs: Vec<&proto::ValueInfoProto> = wanted
        .iter()
        .filter_map(|w| graph.output.iter().find(|o| &o.name == w))
        .collect();
    // Only the nodes the requested outputs depend on are converted.
    let needed = needed_nodes(&graph_nodes, &wanted);
    for (node, _) in graph_nodes.iter().zip(&needed).filter(|(_, n)| **n) {
        cx.node(node)?;
    }
    let mut outs = Vec::with_capacity(outputs.len());
    for output in outputs.iter().copied() {
        let out = match cx.values.get(&output.name) {
            // The graph declares its outputs in ONNX's axis order: a tracked layout is written
            // out.
            Some(Value::Node(i)) => {
                let i = *i;
                cx.materialise(&output.name, i)
                    .map_err(|m| fail(format!("output {:?}: {m}", output.name)))?
            }
            Some(Value::Const(_)) => {
                return Err(fail(format!(
                    "output {:?} is a constant (computed at load time, e.g. a Shape): sinter \
                     serves outputs computed from the inputs",
                    output.name
                )));
            }
            None => {
                return Err(fail(format!(
                    "output {:?} is not produced by any node",
                    output.name
                )));
            }
        };
        outs.push(out);
    }
    let name = if graph.name.is_empty() {
        "onnx"
    } else {
        &graph.name
    };
    let ins: Vec<usize> = (0..inputs.len()).collect();
    let mut model =
        Model::from_nodes(name, cx.nodes, &ins, &outs).map_err(|e| fail(e.to_string()))?;
    model
        .set_output_names(wanted)
        .map_err(|e| fail(e.to_string()))?;
    let mut origin = match proto_model.producer_name.trim() {
        "" => format!("ONNX opset {opset}"),
        by => format!("ONNX opset {opset}, written by {by}"),
    };
    if !patterns.is_empty() {
        let seen: Vec<String> = patterns.iter().map(|(p, n)| format!("{p} x{n}")).collect();
        origin.push_str(&format!("; patterns: {}", seen.join(", ")));
    }
    model.set_origin(origin);
    Ok(model)
}

/// Which nodes the tensors `wanted` depend on (a walk back from them; nodes are in
/// topological order, as ONNX requires).
fn needed_nodes(nodes: &[NodeProto], wanted: &[String]) -> Vec<bool> {
    let mut live: std::collections::HashSet<&str> = wanted.iter().map(String::as_str).collect();
    let mut needed = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate().rev() {
        if n.output.iter().any(|o| live.contains(o.as_str())) {
            needed[i] = true;
            live.extend(n.input.iter().map(String::as_str));
        }
    }
    needed
}

/// The non-batch shape of a graph input (`[batch, d1, ..]` with known positive `d`s) and its
/// element type.
fn input_shape(input: &proto::ValueInfoProto) -> std::result::Result<(Vec<usize>, DType), String> {
    let tt = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or("not a tensor")?;
    let ty = match tt.elem_type {
        dtype::FLOAT => DType::F32,
        dtype::INT32 => DType::I32,
        dtype::INT64 => DType::I64,
        t => {
            return Err(format!(
                "element type {} is not float32, int32 or int64",
                dtype_name(t)
            ));
        }
    };
    let dims = &tt.shape.as_ref().ok_or("shape is unknown")?.dim;
    if dims.len() < 2 {
        return Err(format!(
            "rank {} input: sinter needs [batch, features..]",
            dims.len()
        ));
    }
    let shape = dims[1..]
        .iter()
        .enumerate()
        .map(|(i, d)| match d.dim_value {
            Some(v) if v > 0 => {
                usize::try_from(v).map_err(|_| format!("axis {} is too large", i + 1))
            }
            _ => Err(format!(
                "axis {} has no fixed size (only the batch axis may be symbolic)",
                i + 1
            )),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((shape, ty))
}

fn dtype_name(t: i32) -> String {
    match t {
        dtype::FLOAT => "float32".into(),
        dtype::INT32 => "int32".into(),
        dtype::INT64 => "int64".into(),
        dtype::FLOAT16 => "float16".into(),
        dtype::DOUBLE => "float64".into(),
        t => format!("#{t}"),
    }
}

/// A constant tensor, converted to f32 (weights) or i64 (shapes).
#[derive(Clone, Debug)]
struct Const {
    dims: Vec<usize>,
    f32: Vec<f32>,
    i64: Vec<i64>,
}

#[derive(Clone, Debug)]
enum Value {
    /// Output of our node `i`.
    Node(usize),
    Const(Const),
}

/// The batch size in a shape computed at load time (`Shape` of a computed tensor): known only
/// when the model runs.
const BATCH: i64 = i64::MIN + 1;

/// How an ONNX tensor's axes map onto sinter's channels-last buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// Same axes.
    Native,
    /// ONNX sees `[N, C, W]` where sinter holds `[W, C]` (after a `Transpose(0, 2, 1)`).
    Ncw,
    /// ONNX sees `[N, C, 1]` (a global pooling's output) where sinter holds `[C]`.
    Nc1,
    /// ONNX sees `[N, C * W]`, a channel-major flatten of `[N, C, W]` (PyTorch's `Flatten`
    /// after a `Conv1d`), where sinter holds the step-major flatten of its `[W, C]` buffer: no
    /// data moves; a Gemm/MatMul reading it takes its weight rows in sinter's order instead
    /// ([`Converter::flat_rows`]), decided at load time.
    FlatNcw {
        /// `W`.
        steps: usize,
        /// `C`.
        ch: usize,
    },
    /// ONNX sees `[N, C, W]` with a length-1 axis inserted at this ONNX axis (1, 2 or 3:
    /// `[N, 1, C, W]`, `[N, C, 1, W]`, `[N, C, W, 1]`) where sinter holds `[W, C]`: how
    /// TensorFlow writes a Conv1D or pooling as a 2-D op of height 1
    /// (`Unsqueeze -> Transpose(0, 3, 1, 2) -> Conv [1, k] -> Squeeze`). A 2-D window op
    /// whose other axis is this unit axis runs as the 1-D op.
    NcwUnit(usize),
}

impl Layout {
    /// ONNX's dims (batch excluded) of a tensor sinter holds with `shape`.
    fn onnx_dims(self, shape: &[usize]) -> Vec<usize> {
        match (self, shape) {
            (Layout::Ncw, &[w, c]) => vec![c, w],
            (Layout::Nc1, &[c]) => vec![c, 1],
            (Layout::NcwUnit(at), &[w, c]) => {
                let mut d = vec![c, w];
                d.insert((at - 1).min(2), 1);
                d
            }
            _ => shape.to_vec(),
        }
    }
}

struct Converter<'a> {
    path: &'a Path,
    opts: &'a LoadOptions,
    /// External data read so far (counts against `max_weight_bytes`).
    external_bytes: std::cell::Cell<u64>,
    /// Tensor names whose layout is not [`Layout::Native`].
    layouts: HashMap<String, Layout>,
    /// Tensor name -> the node holding its values in ONNX's axis order (see
    /// [`Converter::materialise`]).
    materialised: HashMap<String, usize>,
    /// The batch size of the graph inputs when the exporter fixed it (a traced PyTorch model):
    /// a `Reshape` whose first entry is this size keeps the batch axis.
    static_batch: Option<i64>,
    /// Tensor name -> the node holding a plain `[N, C, W]` tensor transposed channels-last
    /// (see [`Converter::ncw_input`]), shared by every channels-first reader.
    channels_last: HashMap<String, usize>,
    dir: Option<&'a Path>,
    opset: i64,
    values: HashMap<String, Value>,
    nodes: Vec<Node>,
    /// How many node inputs and graph outputs read each tensor.
    uses: HashMap<String, usize>,
    /// How many ONNX nodes carry each name (only unique names are kept).
    names: HashMap<String, usize>,
}

impl Converter<'_> {
    fn fail(&self, msg: String) -> Error {
        LoadError::new(self.path, LoadErrorKind::Invalid(msg)).into()
    }

    fn node_fail(&self, node: &NodeProto, msg: impl std::fmt::Display) -> Error {
        LoadError::new(self.path, LoadErrorKind::Invalid(msg.to_string()))
            .at(Site {
                name: node.name.clone(),
                op: node.op_type.clone(),
                opset: Some(self.opset),
            })
            .into()
    }

    fn push(
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
    fn name_last(&mut self, node: &NodeProto) {
        if self.names.get(node.name.as_str()) == Some(&1)
            && let Some(last) = self.nodes.last_mut()
        {
            last.name = node.name.clone();
        }
    }

    fn node(&mut self, node: &NodeProto) -> Result<()> {
        if node.domain == "ai.onnx.ml" && node.op_type == "ArrayFeatureExtractor" {
            return self.array_feature_extractor(node);
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
                    return self.softmax_inner_axis(node, a, axis as usize);
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
            "Transpose" => self.transpose(node),
            "Conv" | "MaxPool" | "AveragePool" => match self.unit_window(node)? {
                Some(one) => {
                    if node.op_type == "Conv" {
                        self.conv(&one)?;
                    } else {
                        self.pool(&one)?;
                    }
                    let at = self.layout(node, 0);
                    self.set_layout(node, at)
                }
                None if node.op_type == "Conv" => self.conv(node),
                None => self.pool(node),
            },
            "GlobalMaxPool" | "GlobalAveragePool" => self.global_pool(node),
            "Concat" => self.concat(node),
            "Gemm" => self.gemm(node),
            "MatMul" => self.matmul(node),
            "Add" => self.add(node),
            "Sub" | "Mul" | "Div" => self.binary(node),
            "Sqrt" => self.unary(node, Unary::Sqrt),
            "Neg" => self.unary(node, Unary::Neg),
            "Abs" => self.unary(node, Unary::Abs),
            "Erf" => self.unary(node, Unary::Erf),
            "Pow" => self.pow(node),
            "Clip" => self.clip(node),
            "Cast" => self.cast(node),
            "ReduceMean" | "ReduceMax" => self.reduce(node),
            "Squeeze" | "Unsqueeze" => self.squeeze(node),
            "Sum" | "Mean" | "Max" | "Min" => self.variadic(node),
            "BatchNormalization" => self.batch_norm(node),
            "LayerNormalization" => self.layer_norm(node),
            "Gather" => self.gather(node),
            "ArgMax" => self.argmax(node),
            "Identity" => {
                let x = self.input_node(node, 0)?;
                self.alias(node, x)
            }
            "Dropout" => self.dropout(node),
            "Flatten" => {
                let axis = self.attr_i(node, "axis")?.unwrap_or(1);
                if axis != 1 {
                    return Err(self.node_fail(
                        node,
                        format!("axis {axis}: only axis 1 (keep the batch axis) is supported"),
                    ));
                }
                self.flatten(node)
            }
            "Reshape" => self.reshape(node),
            "Constant" => {
                let c = self.constant_node(node)?;
                self.values
                    .insert(self.output(node)?.to_string(), Value::Const(c));
                Ok(())
            }
            op => Err(self.node_fail(node, format!("operator {op} is not supported"))),
        }
    }

    /// The value of a `Constant` node: a tensor, or one of the scalar and list forms.
    fn constant_node(&self, node: &NodeProto) -> Result<Const> {
        let [a] = node.attribute.as_slice() else {
            return Err(self.node_fail(node, "needs exactly one value attribute"));
        };
        let c = |dims: Vec<usize>, f32: Vec<f32>, i64: Vec<i64>| Const { dims, f32, i64 };
        Ok(match a.name.as_str() {
            "value" => {
                let t =
                    a.t.as_ref()
                        .ok_or_else(|| self.node_fail(node, "value holds no tensor"))?;
                self.constant(t, &format!("node {:?}", node.name))?
            }
            "value_float" => c(vec![], vec![a.f], vec![]),
            "value_floats" => c(vec![a.floats.len()], a.floats.clone(), vec![]),
            "value_int" => c(vec![], vec![], vec![a.i]),
            "value_ints" => c(vec![a.ints.len()], vec![], a.ints.clone()),
            other => {
                return Err(self.node_fail(node, format!("the {other} form is not supported")));
            }
        })
    }

    /// Evaluates at load time a node all of whose inputs are constants, or a `Shape`: the shape
    /// arithmetic exporters write (`Shape -> Gather -> Unsqueeze -> Concat -> Reshape`, casts of
    /// constants). The batch size is not known until a run, so `Shape` gives [`BATCH`] for
    /// it; a `Reshape` may keep it as its first entry, any arithmetic on it is refused.
    /// `Ok(None)`: not a foldable node.
    fn fold(&self, node: &NodeProto) -> Result<Option<Const>> {
        let op = node.op_type.as_str();
        if op == "Shape" {
            let dims: Vec<i64> = match self.value(node, 0)? {
                Value::Const(c) => c.dims.iter().map(|&d| d as i64).collect(),
                Value::Node(x) => {
                    let onnx = self.layout(node, 0).onnx_dims(&self.nodes[*x].shape);
                    std::iter::once(BATCH)
                        .chain(onnx.iter().map(|&d| d as i64))
                        .collect()
                }
            };
            let rank = dims.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
            let start = clamp(self.attr_i(node, "start")?.unwrap_or(0));
            let end = clamp(self.attr_i(node, "end")?.unwrap_or(rank));
            let v = dims.get(start..end.max(start)).unwrap_or(&[]).to_vec();
            return Ok(Some(Const {
                dims: vec![v.len()],
                f32: vec![],
                i64: v,
            }));
        }
        let foldable = matches!(
            op,
            "Gather"
                | "Unsqueeze"
                | "Squeeze"
                | "Concat"
                | "Cast"
                | "Identity"
                | "Mul"
                | "Add"
                | "Sub"
                | "Div"
                | "Slice"
                | "ConstantOfShape"
                | "Reshape"
        );
        let ins: Vec<&str> = node.input.iter().map(String::as_str).collect();
        if !foldable
            || ins.is_empty()
            || !ins
                .iter()
                .all(|n| n.is_empty() || matches!(self.values.get(*n), Some(Value::Const(_))))
        {
            return Ok(None);
        }
        let get = |i: usize| self.input_const(node, i);
        let fail = |m: &str| Err(self.node_fail(node, format!("on constants: {m}")));
        let ints_only = |c: &Const| c.f32.is_empty();
        let batch_free = |c: &Const| !c.i64.contains(&BATCH);
        let out = match op {
            "Identity" => get(0)?.clone(),
            "Cast" => {
                let c = get(0)?;
                let to = self.attr_i(node, "to")?.unwrap_or(0) as i32;
                match to {
                    dtype::FLOAT | dtype::DOUBLE | dtype::FLOAT16 if batch_free(c) => Const {
                        dims: c.dims.clone(),
                        f32: if ints_only(c) {
                            c.i64.iter().map(|&v| v as f32).collect()
                        } else {
                            c.f32.clone()
                        },
                        i64: vec![],
                    },
                    dtype::INT64 | dtype::INT32 => Const {
                        dims: c.dims.clone(),
                        f32: vec![],
                        i64: if ints_only(c) {
                            c.i64.clone()
                        } else {
                            // Truncation toward zero, as ONNX casts; out-of-range values are
                            // undefined in ONNX and refused here.
                            let mut v = Vec::with_capacity(c.f32.len());
                            for &f in &c.f32 {
                                if !(f.is_finite() && f.abs() < 9.2e18) {
                                    return fail(&format!("cast of {f} to an integer"));
                                }
                                v.push(f.trunc() as i64);
                            }
                            v
                        },
                    },
                    _ => return fail(&format!("cast to {}", dtype_name(to))),
                }
            }
            "Unsqueeze" | "Squeeze" | "Reshape" => {
                let c = get(0)?;
                let n = c.f32.len().max(c.i64.len());
                let dims: Vec<usize> = if op == "Reshape" {
                    let t = &get(1)?.i64;
                    if t.iter().any(|&d| d < -1 || d == BATCH)
                        || t.iter().filter(|&&d| d == -1).count() > 1
                    {
                        return fail(&format!("shape {t:?}"));
                    }
                    let mut d: Vec<usize> = Vec::with_capacity(t.len());
                    for (k, &v) in t.iter().enumerate() {
                        d.push(match v {
                            0 => *c
                                .dims
                                .get(k)
                                .ok_or_else(|| self.node_fail(node, "0 entry beyond the rank"))?,
                            -1 => 1,
                            v => v as usize,
                        });
                    }
                    if let Some(k) = t.iter().position(|&v| v == -1) {
                        let known: usize = d.iter().product();
                        if known == 0 || n % known != 0 {
                            return fail(&format!("shape {t:?} for {n} values"));
                        }
                        d[k] = n / known;
                    }
                    d
                } else {
                    let axes = match ins.get(1).filter(|n| !n.is_empty()) {
                        Some(_) => get(1)?.i64.clone(),
                        None => return Ok(None),
                    };
                    let rank = c.dims.len() as i64
                        + if op == "Squeeze" {
                            0
                        } else {
                            axes.len() as i64
                        };
                    let mut axes: Vec<i64> = axes
                        .iter()
                        .map(|&a| if a < 0 { a + rank } else { a })
                        .collect();
                    axes.sort_unstable();
                    if axes.iter().any(|&a| a < 0 || a >= rank)
                        || axes.windows(2).any(|w| w[0] == w[1])
                    {
                        return fail(&format!("axes {axes:?}"));
                    }
                    if op == "Squeeze" {
                        let mut d = Vec::new();
                        for (k, &v) in c.dims.iter().enumerate() {
                            if axes.contains(&(k as i64)) {
                                if v != 1 {
                                    return fail(&format!("squeeze of axis {k} of length {v}"));
                                }
                            } else {
                                d.push(v);
                            }
                        }
                        d
                    } else {
                        let mut src = c.dims.iter();
                        (0..rank)
                            .map(|a| {
                                if axes.contains(&a) {
                                    1
                                } else {
                                    src.next().copied().unwrap_or(1)
                                }
                            })
                            .collect()
                    }
                };
                if dims.iter().product::<usize>() != n {
                    return fail(&format!("shape {dims:?} for {n} values"));
                }
                Const {
                    dims,
                    f32: c.f32.clone(),
                    i64: c.i64.clone(),
                }
            }
            "Gather" => {
                let (data, idx) = (get(0)?, get(1)?);
                let axis = self.attr_i(node, "axis")?.unwrap_or(0);
                if data.dims.len() != 1 || !(axis == 0 || axis == -1) || !ints_only(idx) {
                    return Ok(None);
                }
                let n = data.dims[0] as i64;
                let mut f = Vec::new();
                let mut i = Vec::new();
                for &k in &idx.i64 {
                    let k = if k < 0 { k + n } else { k };
                    if !(0..n).contains(&k) {
                        return fail(&format!("index {k} of {n} values"));
                    }
                    if ints_only(data) {
                        i.push(data.i64[k as usize]);
                    } else {
                        f.push(data.f32[k as usize]);
                    }
                }
                Const {
                    dims: idx.dims.clone(),
                    f32: f,
                    i64: i,
                }
            }
            "Concat" => {
                let parts: Vec<&Const> = (0..ins.len()).map(get).collect::<Result<_>>()?;
                if parts.iter().any(|c| c.dims.len() != 1 || !ints_only(c)) {
                    return Ok(None);
                }
                let v: Vec<i64> = parts.iter().flat_map(|c| c.i64.iter().copied()).collect();
                Const {
                    dims: vec![v.len()],
                    f32: vec![],
                    i64: v,
                }
            }
            "Slice" => {
                let data = get(0)?;
                let scalar = |i: usize, default: i64| -> Result<i64> {
                    match ins.get(i).filter(|n| !n.is_empty()) {
                        None => Ok(default),
                        Some(_) => match get(i)?.i64.as_slice() {
                            [v] => Ok(*v),
                            _ => Err(self.node_fail(node, "only 1-D slices of constants fold")),
                        },
                    }
                };
                if data.dims.len() != 1 || !ints_only(data) {
                    return Ok(None);
                }
                let n = data.dims[0] as i64;
                let (start, end, step) = (scalar(1, 0)?, scalar(2, n)?, scalar(4, 1)?);
                if scalar(3, 0)? != 0 || step != 1 {
                    return fail("only axis 0 with step 1");
                }
                let clamp = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n) as usize;
                let v = data.i64[clamp(start)..clamp(end).max(clamp(start))].to_vec();
                Const {
                    dims: vec![v.len()],
                    f32: vec![],
                    i64: v,
                }
            }
            "ConstantOfShape" => {
                let shape = &get(0)?.i64;
                if shape.iter().any(|&d| d < 0 || d == BATCH) {
                    return fail("the shape holds the batch size or a negative entry");
                }
                let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
                self.opts
                    .check_elems(&dims)
                    .map_err(|m| self.node_fail(node, m))?;
                let n = checked_elems(&dims).map_err(|m| self.node_fail(node, m))?;
                let value = match Self::attr(node, "value").and_then(|a| a.t.as_ref()) {
                    Some(t) => self.constant(t, &format!("node {:?}", node.name))?,
                    None => Const {
                        dims: vec![1],
                        f32: vec![0.0],
                        i64: vec![],
                    },
                };
                Const {
                    dims,
                    f32: value.f32.first().map_or(vec![], |&v| vec![v; n]),
                    i64: value.i64.first().map_or(vec![], |&v| vec![v; n]),
                }
            }
            _ => {
                // Integer arithmetic on shapes (scalar or same-length operands).
                let (a, b) = (get(0)?, get(1)?);
                if !ints_only(a) || !ints_only(b) {
                    return Ok(None);
                }
                if !batch_free(a) || !batch_free(b) {
                    return fail("arithmetic on the batch size, which is not known until a run");
                }
                let (long, short) = if a.i64.len() >= b.i64.len() {
                    (a, b)
                } else {
                    (b, a)
                };
                if short.i64.len() != 1 && short.i64.len() != long.i64.len() {
                    return fail("operands of different lengths");
                }
                let pick = |v: &Const, k: usize| v.i64[if v.i64.len() == 1 { 0 } else { k }];
                let mut v = Vec::with_capacity(long.i64.len());
                for k in 0..long.i64.len() {
                    let (x, y) = (pick(a, k), pick(b, k));
                    let r = match op {
                        "Mul" => x.checked_mul(y),
                        "Add" => x.checked_add(y),
                        "Sub" => x.checked_sub(y),
                        _ => (y != 0).then(|| x.div_euclid(y)),
                    };
                    v.push(r.ok_or_else(|| {
                        self.node_fail(node, "integer overflow or division by zero")
                    })?);
                }
                Const {
                    dims: long.dims.clone(),
                    f32: vec![],
                    i64: v,
                }
            }
        };
        Ok(Some(out))
    }

    fn output<'n>(&self, node: &'n NodeProto) -> Result<&'n str> {
        match node.output.first() {
            Some(o) if !o.is_empty() => Ok(o),
            _ => Err(self.node_fail(node, "has no output")),
        }
    }

    fn alias(&mut self, node: &NodeProto, x: usize) -> Result<()> {
        let out = self.output(node)?.to_string();
        self.values.insert(out, Value::Node(x));
        let layout = self.layout(node, 0);
        self.set_layout(node, layout)
    }

    fn value(&self, node: &NodeProto, i: usize) -> Result<&Value> {
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
    fn input_node(&self, node: &NodeProto, i: usize) -> Result<usize> {
        match self.value(node, i)? {
            Value::Node(x) => Ok(*x),
            Value::Const(_) => Err(self.node_fail(
                node,
                format!("input {i} is a constant; sinter needs it computed from the graph input"),
            )),
        }
    }

    /// Input `i`, which must be a constant (an initializer or a `Constant` node).
    fn input_const(&self, node: &NodeProto, i: usize) -> Result<&Const> {
        match self.value(node, i)? {
            Value::Const(c) => Ok(c),
            Value::Node(_) => Err(self.node_fail(
                node,
                format!("input {i} must be a constant (an initializer)"),
            )),
        }
    }

    fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
        node.attribute.iter().find(|a| a.name == name)
    }
    fn attr_f(&self, node: &NodeProto, name: &str) -> Result<Option<f32>> {
        Ok(Self::attr(node, name).map(|a| a.f))
    }
    fn attr_i(&self, node: &NodeProto, name: &str) -> Result<Option<i64>> {
        Ok(Self::attr(node, name).map(|a| a.i))
    }
    fn attr_s(&self, node: &NodeProto, name: &str) -> Result<Option<String>> {
        Self::attr(node, name)
            .map(|a| {
                String::from_utf8(a.s.clone())
                    .map_err(|_| self.node_fail(node, format!("attribute {name} is not UTF-8")))
            })
            .transpose()
    }

    /// `Y = alpha * A' B' + beta * C` as a Dense layer (`A` must not be transposed: it is the
    /// batch-first activation).
    /// A flatten to `[N, features]` (ONNX `Flatten`, or a `Reshape` to one axis). A tracked
    /// channels-first `[N, C, W]` tensor is flattened as sinter holds it (step-major) and
    /// tracked as [`Layout::FlatNcw`]; everything else is flattened in ONNX's order.
    fn flatten(&mut self, node: &NodeProto) -> Result<()> {
        let (x, layout) = match (self.layout(node, 0), self.input_node(node, 0)?) {
            (Layout::Ncw, x) => match self.nodes[x].shape[..] {
                [steps, ch] => (x, Layout::FlatNcw { steps, ch }),
                _ => (self.native_input(node, 0)?, Layout::Native),
            },
            _ => (self.native_input(node, 0)?, Layout::Native),
        };
        let shape = vec![checked_elems(&self.nodes[x].shape).map_err(|m| self.node_fail(node, m))?];
        if shape == self.nodes[x].shape {
            self.values
                .insert(self.output(node)?.to_string(), Value::Node(x));
        } else {
            self.push(self.output(node)?, Layer::Flatten, vec![x], shape, None);
            self.name_last(node);
        }
        self.set_layout(node, layout)
    }

    /// Input 0 of a Gemm/MatMul and the order of its weight rows: for a [`Layout::FlatNcw`]
    /// input, `rows[s]` is the ONNX row (`c * W + w`) that sinter's feature `s = w * C + c`
    /// multiplies; `None` when the orders agree.
    fn flat_rows(&mut self, node: &NodeProto) -> Result<(usize, Option<Vec<usize>>)> {
        if let Layout::FlatNcw { steps, ch } = self.layout(node, 0) {
            let x = self.input_node(node, 0)?;
            let rows = (0..steps * ch).map(|s| (s % ch) * steps + s / ch).collect();
            return Ok((x, Some(rows)));
        }
        Ok((self.native_input(node, 0)?, None))
    }

    fn gemm(&mut self, node: &NodeProto) -> Result<()> {
        let (x, rows) = self.flat_rows(node)?;
        if self.attr_i(node, "transA")?.unwrap_or(0) != 0 {
            return Err(self.node_fail(
                node,
                "transA=1 would transpose the batch axis; only transA=0 is supported",
            ));
        }
        let trans_b = self.attr_i(node, "transB")?.unwrap_or(0) != 0;
        let alpha = self.attr_f(node, "alpha")?.unwrap_or(1.0);
        let beta = self.attr_f(node, "beta")?.unwrap_or(1.0);
        let b = self.input_const(node, 1)?;
        let (k, n, mut kernel) = match (b.dims.as_slice(), trans_b) {
            ([k, n], false) => (*k, *n, b.f32.clone()),
            ([n, k], true) => (*k, *n, transpose(&b.f32, *n, *k)),
            (d, _) => return Err(self.node_fail(node, format!("B has shape {d:?}, expected 2-D"))),
        };
        if alpha != 1.0 {
            kernel.iter_mut().for_each(|w| *w *= alpha);
        }
        let kernel = permute_rows(kernel, n, rows.as_deref());
        let bias = match node.input.get(2).filter(|s| !s.is_empty()) {
            None => None,
            Some(_) => {
                let c = self.input_const(node, 2)?;
                let mut bias = broadcast_bias(c, n).ok_or_else(|| {
                    self.node_fail(
                        node,
                        format!(
                            "C has shape {:?}; expected [{n}], [1, {n}] or a scalar",
                            c.dims
                        ),
                    )
                })?;
                if beta != 1.0 {
                    bias.iter_mut().for_each(|v| *v *= beta);
                }
                Some(bias)
            }
        };
        self.dense(node, x, k, n, kernel, bias)
    }

    /// `MatMul(x, W)`: a Dense layer without bias; a following `Add` may give it one.
    fn matmul(&mut self, node: &NodeProto) -> Result<()> {
        let (x, rows) = self.flat_rows(node)?;
        let b = self.input_const(node, 1)?;
        let [k, n] = b.dims[..] else {
            return Err(self.node_fail(
                node,
                format!("B has shape {:?}, expected 2-D [in, out]", b.dims),
            ));
        };
        let kernel = permute_rows(b.f32.clone(), n, rows.as_deref());
        self.dense(node, x, k, n, kernel, None)
    }

    fn dense(
        &mut self,
        node: &NodeProto,
        x: usize,
        k: usize,
        units: usize,
        kernel: Vec<f32>,
        bias: Option<Vec<f32>>,
    ) -> Result<()> {
        let mut shape = self.nodes[x].shape.clone();
        if shape.last() != Some(&k) {
            return Err(self.node_fail(
                node,
                format!(
                    "input has shape [batch, {}], weights expect {k} features",
                    join(&shape)
                ),
            ));
        }
        if units == 0 {
            return Err(self.node_fail(node, "weights have 0 output columns"));
        }
        if let Some(last) = shape.last_mut() {
            *last = units;
        }
        let layer = Layer::Dense(DenseConfig {
            units,
            activation: Activation::Linear,
            use_bias: bias.is_some(),
        });
        let weights = DenseWeights { kernel, bias };
        self.push(self.output(node)?, layer, vec![x], shape, Some(weights));
        self.name_last(node);
        Ok(())
    }

    /// `Add(MatMul(..), b)` (the MatMul's bias) or `Add(x, y)` of two computed tensors.
    fn add(&mut self, node: &NodeProto) -> Result<()> {
        if let (Value::Node(a), Value::Node(b)) = (self.value(node, 0)?, self.value(node, 1)?) {
            let (mut a, mut b) = (*a, *b);
            let mut layout = self.layout(node, 0);
            if layout != self.layout(node, 1) {
                // Mixed layouts: add in ONNX's order.
                (a, b) = (self.native_input(node, 0)?, self.native_input(node, 1)?);
                layout = Layout::Native;
            }
            if self.nodes[a].shape != self.nodes[b].shape {
                return Err(self.node_fail(
                    node,
                    "Add of tensors of different shapes (broadcasting is not supported)",
                ));
            }
            let shape = self.nodes[a].shape.clone();
            self.push(
                self.output(node)?,
                Layer::Merge(Merge::Add),
                vec![a, b],
                shape,
                None,
            );
            self.name_last(node);
            return self.set_layout(node, layout);
        }
        let (x, c) = match (self.value(node, 0)?, self.value(node, 1)?) {
            (Value::Node(x), Value::Const(c)) | (Value::Const(c), Value::Node(x)) => {
                (*x, c.clone())
            }
            _ => {
                return Err(
                    self.node_fail(node, "only Add(MatMul(x, W), constant bias) is supported")
                );
            }
        };
        let producer = node
            .input
            .iter()
            .find(|n| matches!(self.values.get(*n), Some(Value::Node(_))))
            .map(String::as_str)
            .unwrap_or_default();
        let single_use = self.uses.get(producer) == Some(&1);
        let target = &self.nodes[x];
        let Layer::Dense(DenseConfig {
            units,
            use_bias: false,
            ..
        }) = target.layer
        else {
            return self.const_affine(node);
        };
        if !single_use || broadcast_bias(&c, units).is_none() {
            // Not the MatMul's own bias: a per-channel shift after it.
            return self.const_affine(node);
        }
        let bias = broadcast_bias(&c, units).ok_or_else(|| {
            self.node_fail(
                node,
                format!(
                    "bias has shape {:?}; expected [{units}] or [1, {units}]",
                    c.dims
                ),
            )
        })?;
        let target = &mut self.nodes[x];
        target.layer = Layer::Dense(DenseConfig {
            units,
            activation: Activation::Linear,
            use_bias: true,
        });
        if let Some(w) = target.weights.as_mut() {
            w.bias = Some(bias);
        }
        self.alias(node, x)
    }

    /// Input `i` of `node` with its values in ONNX's axis order (see [`Self::materialise`]).
    fn native_input(&mut self, node: &NodeProto, i: usize) -> Result<usize> {
        let x = self.input_node(node, i)?;
        let name = node.input[i].clone();
        self.materialise(&name, x)
            .map_err(|m| self.node_fail(node, format!("input {i}: {m}")))
    }

    /// The node holding tensor `name` (computed by node `x`) in ONNX's axis order. A tracked
    /// layout is only a way of reading sinter's channels-last buffer; wherever values are read
    /// in order (Flatten, Reshape, MatMul, softmax, a graph output) it is written out: a
    /// `Permute` for `[N, C, W]` (a real transpose), a `Reshape` for `[N, C, 1]` (a view).
    /// Made once per tensor, however many nodes read it.
    fn materialise(&mut self, name: &str, x: usize) -> std::result::Result<usize, String> {
        let layout = self.layouts.get(name).copied().unwrap_or(Layout::Native);
        if layout == Layout::Native {
            return Ok(x);
        }
        if let Some(&m) = self.materialised.get(name) {
            return Ok(m);
        }
        if let (Layout::NcwUnit(_), &[w, c]) = (layout, self.nodes[x].shape.as_slice()) {
            // [W, C] -> [C, W] (a real transpose) -> ONNX's dims with the unit axis (a view).
            let dims = layout.onnx_dims(&[w, c]);
            self.nodes.push(Node::new(
                String::new(),
                Layer::Permute(PermuteConfig { dims: vec![2, 1] }),
                vec![x],
                vec![c, w],
                None,
            ));
            let t = self.nodes.len() - 1;
            self.nodes.push(Node::new(
                String::new(),
                Layer::Reshape(ReshapeConfig {
                    target_shape: dims.iter().map(|&d| d as isize).collect(),
                }),
                vec![t],
                dims,
                None,
            ));
            let m = self.nodes.len() - 1;
            self.materialised.insert(name.to_string(), m);
            return Ok(m);
        }
        if let Layout::FlatNcw { steps, ch } = layout {
            // [W * C] -> [W, C] -> [C, W] -> [C * W]: views around one real transpose.
            let mut at = x;
            for (layer, shape) in [
                (
                    Layer::Reshape(ReshapeConfig {
                        target_shape: vec![steps as isize, ch as isize],
                    }),
                    vec![steps, ch],
                ),
                (
                    Layer::Permute(PermuteConfig { dims: vec![2, 1] }),
                    vec![ch, steps],
                ),
                (Layer::Flatten, vec![ch * steps]),
            ] {
                self.nodes
                    .push(Node::new(String::new(), layer, vec![at], shape, None));
                at = self.nodes.len() - 1;
            }
            self.materialised.insert(name.to_string(), at);
            return Ok(at);
        }
        let (layer, shape) = match (layout, self.nodes[x].shape.as_slice()) {
            (Layout::Ncw, &[w, c]) => (
                Layer::Permute(PermuteConfig { dims: vec![2, 1] }),
                vec![c, w],
            ),
            (Layout::Nc1, &[c]) => (
                Layer::Reshape(ReshapeConfig {
                    target_shape: vec![c as isize, 1],
                }),
                vec![c, 1],
            ),
            (l, s) => return Err(format!("internal: layout {l:?} on a tensor of shape {s:?}")),
        };
        self.nodes
            .push(Node::new(String::new(), layer, vec![x], shape, None));
        let m = self.nodes.len() - 1;
        self.materialised.insert(name.to_string(), m);
        Ok(m)
    }

    /// The layout of input `i` of `node`.
    fn layout(&self, node: &NodeProto, i: usize) -> Layout {
        node.input
            .get(i)
            .and_then(|n| self.layouts.get(n))
            .copied()
            .unwrap_or(Layout::Native)
    }

    fn set_layout(&mut self, node: &NodeProto, layout: Layout) -> Result<()> {
        let out = self.output(node)?.to_string();
        if layout == Layout::Native {
            self.layouts.remove(&out);
        } else {
            self.layouts.insert(out, layout);
        }
        Ok(())
    }

    /// `Transpose(0, 2, 1)` between channels-last and channels-first: no data moves, only
    /// the way later ops read their axes.
    fn transpose(&mut self, node: &NodeProto) -> Result<()> {
        let x = self.input_node(node, 0)?;
        let perm = Self::attr(node, "perm")
            .map(|a| a.ints.clone())
            .unwrap_or_default();
        let layout = self.layout(node, 0);
        let rank = self.nodes[x].shape.len() + 1;
        let unit_first = self.nodes[x].shape.first() == Some(&1);
        let next = match (layout, perm.as_slice(), rank) {
            (Layout::Native, [0, 2, 1], 3) => Layout::Ncw,
            // [N, 1, W, C] -> [N, C, 1, W]: TensorFlow's Conv1D as a 2-D Conv.
            (Layout::Native, [0, 3, 1, 2], 4) if unit_first => {
                let (w, c) = (self.nodes[x].shape[1], self.nodes[x].shape[2]);
                self.push(
                    self.output(node)?,
                    Layer::Reshape(ReshapeConfig {
                        target_shape: vec![w as isize, c as isize],
                    }),
                    vec![x],
                    vec![w, c],
                    None,
                );
                return self.set_layout(node, Layout::NcwUnit(2));
            }
            (Layout::Ncw, [0, 2, 1], 3) => Layout::Native,
            (Layout::Nc1, [0, 2, 1], _) => {
                // [N, C, 1] -> [N, 1, C]: a [1, C] view of the same values.
                let c = self.nodes[x].shape[0];
                self.push(
                    self.output(node)?,
                    Layer::Reshape(ReshapeConfig {
                        target_shape: vec![1, c as isize],
                    }),
                    vec![x],
                    vec![1, c],
                    None,
                );
                return self.set_layout(node, Layout::Native);
            }
            _ => return self.permute(node, &perm, rank),
        };
        self.alias(node, x)?;
        self.set_layout(node, next)
    }

    /// Any other `Transpose` that keeps the batch axis first: a `Permute` of the values in
    /// ONNX's order.
    fn permute(&mut self, node: &NodeProto, perm: &[i64], rank: usize) -> Result<()> {
        let dims = match perm.split_first() {
            Some((0, rest)) if perm.len() == rank => rest
                .iter()
                .map(|&d| usize::try_from(d).ok())
                .collect::<Option<Vec<_>>>(),
            _ => None,
        }
        .ok_or_else(|| {
            self.node_fail(
                node,
                format!("perm {perm:?} on a rank-{rank} tensor: the batch axis must stay first"),
            )
        })?;
        let x = self.native_input(node, 0)?;
        let layer = Layer::Permute(PermuteConfig { dims });
        let shape = layer
            .output_shape(&[&self.nodes[x].shape])
            .map_err(|m| self.node_fail(node, m))?;
        self.push(self.output(node)?, layer, vec![x], shape, None);
        self.name_last(node);
        self.set_layout(node, Layout::Native)
    }

    /// 1-D window attributes of Conv/MaxPool/AveragePool as a Keras padding.
    fn window_padding(
        &self,
        node: &NodeProto,
        steps: usize,
        size: usize,
        stride: usize,
        dilation: usize,
        ceil: bool,
    ) -> Result<Padding> {
        let auto = self
            .attr_s(node, "auto_pad")?
            .unwrap_or_else(|| "NOTSET".into());
        let pads = Self::attr(node, "pads")
            .map(|a| a.ints.clone())
            .unwrap_or_default();
        let span = (size - 1) * dilation + 1;
        let same_total = (steps.div_ceil(stride).max(1) - 1) * stride + span;
        let same_total = same_total.saturating_sub(steps);
        let (l, mut r) = match (auto.as_str(), pads.as_slice()) {
            ("VALID", _) => (0, 0),
            ("NOTSET", []) => (0, 0),
            // SAME_UPPER puts the odd step after the input, as Keras's "same" does.
            ("SAME_UPPER", _) => (same_total / 2, same_total - same_total / 2),
            ("SAME_LOWER", _) => (same_total - same_total / 2, same_total / 2),
            ("NOTSET", [l, r]) if (0..=1 << 24).contains(l) && (0..=1 << 24).contains(r) => {
                (*l as usize, *r as usize)
            }
            _ => {
                return Err(self.node_fail(
                    node,
                    format!("auto_pad {auto} with pads {pads:?} is not supported"),
                ));
            }
        };
        if ceil && steps + l + r >= span {
            // ceil_mode: one more window where the floor drops a partial one, if it starts
            // inside the input or the left padding (ONNX's rule); it is padded on the right.
            let floor = (steps + l + r - span) / stride + 1;
            let ceiled = (steps + l + r - span).div_ceil(stride) + 1;
            if ceiled > floor && (ceiled - 1) * stride < steps + l {
                r = (ceiled - 1) * stride + span - steps - l;
            }
        }
        Ok(match (l, r) {
            (0, 0) => Padding::Valid,
            (l, 0) if l == span - 1 => Padding::Causal,
            (l, r) if l == same_total / 2 && r == same_total - same_total / 2 => Padding::Same,
            (left, right) => Padding::Explicit { left, right },
        })
    }

    /// A positive 1-D attribute (`kernel_shape`, `strides`, `dilations`) or its default.
    fn attr_1d(&self, node: &NodeProto, name: &str, default: usize) -> Result<usize> {
        match Self::attr(node, name).map(|a| a.ints.as_slice()) {
            None => Ok(default),
            Some([v]) if *v > 0 && *v <= 1 << 24 => Ok(*v as usize),
            Some(v) => Err(self.node_fail(
                node,
                format!("{name} {v:?}: expected one positive value (1-D)"),
            )),
        }
    }

    /// The channels-first input of a 1-D window op, as `(node, steps, channels)`.
    /// Input 0 of a channels-first op as sinter's channels-last buffer: a tracked `Ncw` tensor
    /// as it is, a plain `[N, C, W]` one (a graph input, PyTorch style) transposed once (shared
    /// by every reader).
    fn ncw_input(&mut self, node: &NodeProto) -> Result<(usize, usize, usize)> {
        let x = self.input_node(node, 0)?;
        match (self.layout(node, 0), self.nodes[x].shape.clone().as_slice()) {
            (Layout::Ncw, [steps, ch]) => Ok((x, *steps, *ch)),
            (Layout::Native, &[ch, steps]) => {
                let name = node.input[0].clone();
                if let Some(&t) = self.channels_last.get(&name) {
                    return Ok((t, steps, ch));
                }
                self.nodes.push(Node::new(
                    String::new(),
                    Layer::Permute(PermuteConfig { dims: vec![2, 1] }),
                    vec![x],
                    vec![steps, ch],
                    None,
                ));
                let t = self.nodes.len() - 1;
                self.channels_last.insert(name, t);
                Ok((t, steps, ch))
            }
            _ => Err(self.node_fail(node, "the input must be channels-first [N, C, W]")),
        }
    }

    /// `Sub` / `Mul` / `Div` of two computed tensors of one shape, or of a computed tensor and
    /// a constant (see [`Self::const_affine`]).
    fn binary(&mut self, node: &NodeProto) -> Result<()> {
        let consts = (0..2)
            .filter(|&i| matches!(self.value(node, i), Ok(Value::Const(_))))
            .count();
        if consts > 0 {
            return self.const_affine(node);
        }
        let m = match node.op_type.as_str() {
            "Sub" => Merge::Subtract,
            "Mul" => Merge::Multiply,
            _ => {
                return Err(self.node_fail(
                    node,
                    "Div of two computed tensors is not supported (only by a constant)",
                ));
            }
        };
        self.merge(node, m, 2)
    }

    /// `Add`, `Sub`, `Mul` or `Div` of a computed tensor and a constant that is a scalar or
    /// one value per channel of the tensor's last axis (as sinter holds it: a channels-first
    /// `[C, 1]` constant on a tracked `[N, C, W]` tensor is per channel too). Add, Sub and Mul
    /// become one [`Layer::Affine`] (`x * s + t`, exact: one of `s`, `t` is the identity);
    /// Div by a scalar is a true division ([`Unary::Div`]), by a vector only when every
    /// divisor is a power of two (its reciprocal is exact).
    fn const_affine(&mut self, node: &NodeProto) -> Result<()> {
        let (x_at, c) = match (self.value(node, 0)?, self.value(node, 1)?) {
            (Value::Node(_), Value::Const(c)) => (0, c.clone()),
            (Value::Const(c), Value::Node(_)) => (1, c.clone()),
            _ => return Err(self.node_fail(node, "needs one computed input and one constant")),
        };
        if c.f32.is_empty() {
            return Err(self.node_fail(node, "the constant is not a float tensor"));
        }
        let (mut x, mut layout) = (self.input_node(node, x_at)?, self.layout(node, x_at));
        if matches!(layout, Layout::FlatNcw { .. } | Layout::NcwUnit(_)) && c.f32.len() > 1 {
            // Per-feature constants are in ONNX's (channel-major) order.
            x = self.native_input(node, x_at)?;
            layout = Layout::Native;
        }
        let shape = self.nodes[x].shape.clone();
        let ch = shape.last().copied().unwrap_or(1);
        // ONNX's view of the tensor, batch axis included.
        let mut onnx_shape = vec![1];
        match layout {
            Layout::FlatNcw { .. } | Layout::NcwUnit(_) => onnx_shape.extend(&shape),
            l => onnx_shape.extend(l.onnx_dims(&shape)),
        }
        // The constant's one non-1 axis (right-aligned) must be the channel axis.
        let rank = onnx_shape.len();
        let channel_axis = match layout {
            Layout::Native | Layout::FlatNcw { .. } | Layout::NcwUnit(_) => rank - 1,
            Layout::Ncw | Layout::Nc1 => 1,
        };
        let fits = c.dims.len() <= rank
            && c.dims.iter().rev().enumerate().all(|(k, &d)| {
                let axis = rank - 1 - k;
                d == 1 || (d == onnx_shape[axis] && axis == channel_axis && axis > 0)
            });
        if !fits {
            return Err(self.node_fail(
                node,
                format!(
                    "a constant of shape {:?} broadcast against [N, {}]: only a scalar or one \
                     value per channel is supported",
                    c.dims,
                    join(&onnx_shape[1..])
                ),
            ));
        }
        let values: Vec<f32> = if c.f32.len() == 1 {
            vec![c.f32[0]; ch]
        } else {
            c.f32.clone()
        };
        if values.len() != ch || values.iter().any(|v| !v.is_finite()) {
            return Err(self.node_fail(node, "the constant must be finite, one value per channel"));
        }
        let ones = vec![1.0; ch];
        let zeros = vec![0.0; ch];
        let neg: Vec<f32> = values.iter().map(|v| -v).collect();
        let layer = match (node.op_type.as_str(), x_at) {
            ("Add", _) => Layer::Primitive(Primitive::Affine(AffineConfig {
                scale: ones,
                shift: values,
            })),
            ("Sub", 0) => Layer::Primitive(Primitive::Affine(AffineConfig {
                scale: ones,
                shift: neg,
            })),
            ("Sub", _) => Layer::Primitive(Primitive::Affine(AffineConfig {
                scale: vec![-1.0; ch],
                shift: values,
            })),
            ("Mul", _) => Layer::Primitive(Primitive::Affine(AffineConfig {
                scale: values,
                shift: zeros,
            })),
            ("Div", 0) if c.f32.len() == 1 => {
                Layer::Primitive(Primitive::Unary(Unary::Div(c.f32[0])))
            }
            ("Div", 0) => {
                let exact = values.iter().all(|&d| {
                    let r = 1.0 / d;
                    r.is_normal() && d.is_normal() && (d.to_bits() & 0x007f_ffff) == 0
                });
                if !exact {
                    return Err(self.node_fail(
                        node,
                        "Div by a per-channel constant is supported only for powers of two",
                    ));
                }
                Layer::Primitive(Primitive::Affine(AffineConfig {
                    scale: values.iter().map(|&d| 1.0 / d).collect(),
                    shift: zeros,
                }))
            }
            _ => {
                return Err(self.node_fail(node, "a constant divided by a tensor is not supported"));
            }
        };
        self.same_shape(node, layer, x, layout)
    }

    /// An elementwise function: keeps the input's layout.
    fn unary(&mut self, node: &NodeProto, u: Unary) -> Result<()> {
        let x = self.input_node(node, 0)?;
        let layout = self.layout(node, 0);
        self.same_shape(node, Layer::Primitive(Primitive::Unary(u)), x, layout)
    }

    /// `layer` of node `x` with `x`'s shape, read with `layout`, as `node`'s output.
    fn same_shape(
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
    fn scalar_input(&self, node: &NodeProto, i: usize) -> Result<Option<f32>> {
        if node.input.get(i).is_none_or(|n| n.is_empty()) {
            return Ok(None);
        }
        let c = self.input_const(node, i)?;
        match c.f32.as_slice() {
            [v] => Ok(Some(*v)),
            _ => Err(self.node_fail(node, format!("input {i} must be a scalar float constant"))),
        }
    }

    /// `Pow(x, p)` with a constant scalar exponent.
    fn pow(&mut self, node: &NodeProto) -> Result<()> {
        match self.scalar_input(node, 1) {
            Ok(Some(p)) if p.is_finite() => self.unary(node, Unary::Pow(p)),
            _ => Err(self.node_fail(node, "only a constant scalar exponent is supported")),
        }
    }

    /// `Clip(x, min, max)` (opset 13: bounds as optional constant inputs). `Clip(0, m)` is a
    /// ReLU with a ceiling, which fuses into a producing GEMM.
    fn clip(&mut self, node: &NodeProto) -> Result<()> {
        let min = self.scalar_input(node, 1)?.unwrap_or(f32::NEG_INFINITY);
        let max = self.scalar_input(node, 2)?.unwrap_or(f32::INFINITY);
        if min.is_nan() || max.is_nan() || min > max {
            return Err(self.node_fail(node, format!("bounds [{min}, {max}]")));
        }
        if min == 0.0 && max > 0.0 {
            let a = match max {
                6.0 => Activation::Relu6,
                m if m.is_infinite() => Activation::RELU,
                m => Activation::Relu {
                    negative_slope: 0.0,
                    max_value: Some(m),
                    threshold: 0.0,
                },
            };
            let x = self.input_node(node, 0)?;
            let layout = self.layout(node, 0);
            return self.same_shape(node, Layer::Activation(a), x, layout);
        }
        self.unary(node, Unary::Clip { min, max })
    }

    /// `Cast`: float to float is the identity; an integer tensor (ids) cast to another integer
    /// type keeps its values (ids are checked against the table when they are used). Anything
    /// else (float to integer, to bool or string) is refused.
    fn cast(&mut self, node: &NodeProto) -> Result<()> {
        let to = self.attr_i(node, "to")?.unwrap_or(0) as i32;
        let x = self.input_node(node, 0)?;
        let from = self.nodes[x].dtype;
        let ok = match from {
            DType::F32 => to == dtype::FLOAT,
            DType::I32 | DType::I64 => to == dtype::INT32 || to == dtype::INT64,
        };
        if !ok {
            return Err(self.node_fail(
                node,
                format!(
                    "a cast from {from:?} to {} is not supported",
                    dtype_name(to)
                ),
            ));
        }
        self.alias(node, x)
    }

    /// `ai.onnx.ml` `ArrayFeatureExtractor(classes, labels)` as skl2onnx writes a classifier's
    /// label: the class of each ArgMax index. Classes `0..n` are the indices themselves (no
    /// step); other class labels are refused by name.
    fn array_feature_extractor(&mut self, node: &NodeProto) -> Result<()> {
        let classes = self.input_const(node, 0)?;
        let x = self.input_node(node, 1)?;
        if self.nodes[x].dtype == DType::F32 {
            return Err(self.node_fail(node, "the indices must be integers (an ArgMax)"));
        }
        let identity = classes.f32.is_empty()
            && classes.dims.len() <= 1
            && classes.i64.iter().enumerate().all(|(k, &c)| c == k as i64);
        if !identity {
            return Err(self.node_fail(
                node,
                format!(
                    "class labels other than 0..n are not supported (the model's: {:?}); \
                     serve the ArgMax or the probabilities instead",
                    &classes.i64[..classes.i64.len().min(8)]
                ),
            ));
        }
        self.alias(node, x)
    }

    /// Softmax over a non-last, non-batch axis: the axis swapped with the last one (a real
    /// transpose), the row-wise softmax, and the transpose back.
    fn softmax_inner_axis(&mut self, node: &NodeProto, a: Activation, axis: usize) -> Result<()> {
        let x = self.native_input(node, 0)?;
        let shape = self.nodes[x].shape.clone();
        let rank = shape.len();
        // Keras Permute numbering (1-based, batch excluded): swap `axis` and the last.
        let mut dims: Vec<usize> = (1..=rank).collect();
        dims.swap(axis - 1, rank - 1);
        let mut swapped = shape.clone();
        swapped.swap(axis - 1, rank - 1);
        let mut at = x;
        for (layer, s) in [
            (
                Layer::Permute(PermuteConfig { dims: dims.clone() }),
                swapped.clone(),
            ),
            (Layer::Activation(a), swapped),
        ] {
            self.nodes
                .push(Node::new(String::new(), layer, vec![at], s, None));
            at = self.nodes.len() - 1;
        }
        self.push(
            self.output(node)?,
            Layer::Permute(PermuteConfig { dims }),
            vec![at],
            shape,
            None,
        );
        self.name_last(node);
        self.set_layout(node, Layout::Native)
    }

    /// `ReduceMean` / `ReduceMax` over the steps of a 1-D feature map: a global pooling. The
    /// reduced axes must be every non-batch axis but the channels (`[N, W.., C]` reduced over
    /// the `W` axes, PyTorch's `x.mean(dim=1)`), or the steps (and any unit axis) of a tracked
    /// channels-first tensor (`[N, C, W]` over axis 2, `[N, C, 1, W]` over axes 2 and 3).
    fn reduce(&mut self, node: &NodeProto) -> Result<()> {
        let max = node.op_type == "ReduceMax";
        let axes: Vec<i64> = match node.input.get(1).filter(|n| !n.is_empty()) {
            Some(_) => self.input_const(node, 1)?.i64.clone(),
            None => Self::attr(node, "axes")
                .map(|a| a.ints.clone())
                .unwrap_or_default(),
        };
        let keep = self.attr_i(node, "keepdims")?.unwrap_or(1) != 0;
        let x = self.input_node(node, 0)?;
        let layout = self.layout(node, 0);
        let shape = self.nodes[x].shape.clone();
        let dims = layout.onnx_dims(&shape);
        let rank = dims.len() as i64 + 1;
        let mut axes: Vec<usize> = axes
            .iter()
            .map(|&a| if a < 0 { a + rank } else { a })
            .filter(|a| (0..rank).contains(a))
            .map(|a| a as usize)
            .collect();
        axes.sort_unstable();
        axes.dedup();
        let unsupported = || {
            self.node_fail(
                node,
                format!(
                    "axes {axes:?} of [N, {}]: only the steps of a 1-D feature map (a global \
                     pooling) are supported",
                    join(&dims)
                ),
            )
        };
        if axes.is_empty() || axes.contains(&0) {
            return Err(unsupported());
        }
        // (node holding [steps, ch], channels, ONNX's keepdims shape)
        let (src, ch) = match (layout, shape.as_slice()) {
            (Layout::Ncw, &[w, c]) if axes == [2] => ((x, w), c),
            (Layout::NcwUnit(at), &[w, c]) => {
                let w_axis = if at == 3 { 2 } else { 3 };
                let ok = axes == [w_axis] || axes == [w_axis.min(at), w_axis.max(at)];
                if !ok {
                    return Err(unsupported());
                }
                ((x, w), c)
            }
            (Layout::Native, s) if s.len() >= 2 && axes == (1..s.len()).collect::<Vec<_>>() => {
                let c = s[s.len() - 1];
                let steps: usize = s[..s.len() - 1].iter().product();
                let x = if s.len() == 2 {
                    x
                } else {
                    let x = self.native_input(node, 0)?;
                    self.nodes.push(Node::new(
                        String::new(),
                        Layer::Reshape(ReshapeConfig {
                            target_shape: vec![steps as isize, c as isize],
                        }),
                        vec![x],
                        vec![steps, c],
                        None,
                    ));
                    self.nodes.len() - 1
                };
                ((x, steps), c)
            }
            _ => return Err(unsupported()),
        };
        let layer = if max {
            Layer::GlobalMaxPooling1D
        } else {
            Layer::GlobalAveragePooling1D
        };
        if !keep {
            self.push(self.output(node)?, layer, vec![src.0], vec![ch], None);
            self.name_last(node);
            return self.set_layout(node, Layout::Native);
        }
        let kept: Vec<usize> = (1..rank as usize)
            .map(|a| if axes.contains(&a) { 1 } else { dims[a - 1] })
            .collect();
        if layout == Layout::Ncw {
            self.push(self.output(node)?, layer, vec![src.0], vec![ch], None);
            self.name_last(node);
            return self.set_layout(node, Layout::Nc1);
        }
        self.nodes
            .push(Node::new(String::new(), layer, vec![src.0], vec![ch], None));
        let pooled = self.nodes.len() - 1;
        self.push(
            self.output(node)?,
            Layer::Reshape(ReshapeConfig {
                target_shape: kept.iter().map(|&d| d as isize).collect(),
            }),
            vec![pooled],
            kept,
            None,
        );
        self.name_last(node);
        self.set_layout(node, Layout::Native)
    }

    /// The layout after a `Squeeze`/`Unsqueeze` that only moves the unit axis of a tracked
    /// channels-first tensor (`[N, C, W]` <-> `[N, C, 1, W]` and friends), if that is all it
    /// does: no node, a new way of reading the same buffer.
    fn unit_relabel(&self, node: &NodeProto) -> Result<Option<Layout>> {
        let layout = self.layout(node, 0);
        let x = self.input_node(node, 0)?;
        let (Layout::Ncw | Layout::NcwUnit(_), &[w, c]) = (layout, self.nodes[x].shape.as_slice())
        else {
            return Ok(None);
        };
        if w == 1 || c == 1 {
            return Ok(None); // ambiguous unit axes: take the general path
        }
        let Some(axes) = node.input.get(1).filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        let axes = match self.values.get(axes) {
            Some(Value::Const(a)) => a.i64.clone(),
            _ => return Ok(None),
        };
        let [a] = axes[..] else { return Ok(None) };
        Ok(match (node.op_type.as_str(), layout) {
            ("Unsqueeze", Layout::Ncw) => {
                let a = if a < 0 { a + 4 } else { a };
                (1..=3).contains(&a).then_some(Layout::NcwUnit(a as usize))
            }
            ("Squeeze", Layout::NcwUnit(at)) => {
                let a = if a < 0 { a + 4 } else { a };
                (a == at as i64).then_some(Layout::Ncw)
            }
            _ => None,
        })
    }

    /// `Squeeze` / `Unsqueeze` of non-batch axes of length 1: a view of the values in ONNX's
    /// order. The axes are a constant input (opset 13 and later).
    fn squeeze(&mut self, node: &NodeProto) -> Result<()> {
        if let Some(layout) = self.unit_relabel(node)? {
            let x = self.input_node(node, 0)?;
            self.values
                .insert(self.output(node)?.to_string(), Value::Node(x));
            return self.set_layout(node, layout);
        }
        let x = self.native_input(node, 0)?;
        let from = self.nodes[x].shape.clone();
        let squeeze = node.op_type == "Squeeze";
        let axes: Vec<i64> = match node.input.get(1).filter(|n| !n.is_empty()) {
            Some(_) => self.input_const(node, 1)?.i64.clone(),
            None if squeeze => (1..=from.len() as i64)
                .filter(|&a| from[a as usize - 1] == 1)
                .collect(),
            None => return Err(self.node_fail(node, "Unsqueeze needs its axes input")),
        };
        let out_rank = if squeeze {
            from.len() + 1
        } else {
            from.len() + 1 + axes.len()
        } as i64;
        let mut norm: Vec<usize> = Vec::with_capacity(axes.len());
        for &a in &axes {
            let a = if a < 0 { a + out_rank } else { a };
            if a <= 0 || a >= out_rank {
                return Err(self.node_fail(
                    node,
                    format!("axes {axes:?}: only non-batch axes can be squeezed or unsqueezed"),
                ));
            }
            if norm.contains(&(a as usize)) {
                return Err(self.node_fail(node, format!("axes {axes:?} repeat an axis")));
            }
            norm.push(a as usize);
        }
        let shape: Vec<usize> = if squeeze {
            let mut s = Vec::new();
            for (k, &d) in from.iter().enumerate() {
                if norm.contains(&(k + 1)) {
                    if d != 1 {
                        return Err(
                            self.node_fail(node, format!("axis {} has length {d}, not 1", k + 1))
                        );
                    }
                } else {
                    s.push(d);
                }
            }
            s
        } else {
            let mut src = from.iter();
            (1..out_rank as usize)
                .map(|a| {
                    if norm.contains(&a) {
                        1
                    } else {
                        src.next().copied().unwrap_or(1)
                    }
                })
                .collect()
        };
        self.view(node, x, shape)
    }

    /// The output of `node` as `x` (held in ONNX's order) seen with `shape`: `x` itself when
    /// the shape is the same, else a Flatten (one axis) or Reshape, a view either way.
    fn view(&mut self, node: &NodeProto, x: usize, shape: Vec<usize>) -> Result<()> {
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

    /// `Sum`, `Mean`, `Max`, `Min` of one or more computed tensors of one shape.
    fn variadic(&mut self, node: &NodeProto) -> Result<()> {
        let m = match node.op_type.as_str() {
            "Sum" => Merge::Add,
            "Mean" => Merge::Average,
            "Max" => Merge::Maximum,
            _ => Merge::Minimum,
        };
        let n = node.input.len();
        if n == 0 {
            return Err(self.node_fail(node, "no inputs"));
        }
        if n == 1 {
            let x = self.input_node(node, 0)?;
            return self.alias(node, x);
        }
        self.merge(node, m, n)
    }

    /// An elementwise merge of `n` computed inputs of one shape (no broadcasting), in one
    /// layout (inputs of mixed layouts are read in ONNX's order).
    fn merge(&mut self, node: &NodeProto, m: Merge, n: usize) -> Result<()> {
        if node.input.len() != n || n == 0 {
            return Err(self.node_fail(
                node,
                format!("{} inputs, expected {}", node.input.len(), n.max(1)),
            ));
        }
        let mut xs = Vec::with_capacity(n);
        for i in 0..n {
            if let Value::Const(_) = self.value(node, i)? {
                return Err(self.node_fail(
                    node,
                    "an elementwise op with a constant operand is not supported",
                ));
            }
            xs.push(self.input_node(node, i)?);
        }
        let mut layout = self.layout(node, 0);
        if (1..n).any(|i| self.layout(node, i) != layout) {
            for (i, x) in xs.iter_mut().enumerate() {
                *x = self.native_input(node, i)?;
            }
            layout = Layout::Native;
        }
        let shape = self.nodes[xs[0]].shape.clone();
        if xs.iter().any(|&x| self.nodes[x].shape != shape) {
            return Err(self.node_fail(
                node,
                "inputs of different shapes (broadcasting is not supported)",
            ));
        }
        self.push(self.output(node)?, Layer::Merge(m), xs, shape, None);
        self.name_last(node);
        self.set_layout(node, layout)
    }

    /// Per-channel constant input `i` (`[C]`, or `[C, 1]`-like).
    fn channel_const(&self, node: &NodeProto, i: usize, ch: usize, what: &str) -> Result<Vec<f32>> {
        let c = self.input_const(node, i)?;
        if c.f32.len() != ch || c.dims.iter().filter(|&&d| d != 1).count() > 1 {
            return Err(self.node_fail(
                node,
                format!("{what} has shape {:?}, expected [{ch}]", c.dims),
            ));
        }
        Ok(c.f32.clone())
    }

    /// `BatchNormalization` at inference, over the channel axis: the last axis of sinter's
    /// buffer for `[N, C]` and for a channels-first `[N, C, W]` held channels-last.
    fn batch_norm(&mut self, node: &NodeProto) -> Result<()> {
        if self.attr_i(node, "training_mode")?.unwrap_or(0) != 0 {
            return Err(self.node_fail(node, "training_mode=1 is not supported (inference only)"));
        }
        if node.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Err(self.node_fail(node, "running mean/var outputs are training-only"));
        }
        let x0 = self.input_node(node, 0)?;
        let (x, ch, layout) = match (
            self.layout(node, 0),
            self.nodes[x0].shape.clone().as_slice(),
        ) {
            (_, &[c]) => (x0, c, self.layout(node, 0)),
            (Layout::Ncw, &[_, c]) => (x0, c, Layout::Ncw),
            (Layout::Native, &[_, _]) => {
                let (t, _, c) = self.ncw_input(node)?;
                (t, c, Layout::Ncw)
            }
            (_, s) => {
                return Err(self.node_fail(
                    node,
                    format!("input of shape {s:?}: expected [N, C] or [N, C, W]"),
                ));
            }
        };
        let n = ChannelNorm {
            axis: -1,
            epsilon: self.attr_f(node, "epsilon")?.unwrap_or(1e-5),
            gamma: Some(self.channel_const(node, 1, ch, "scale")?),
            beta: Some(self.channel_const(node, 2, ch, "B")?),
            mean: self.channel_const(node, 3, ch, "input_mean")?,
            variance: self.channel_const(node, 4, ch, "input_var")?,
        };
        let layer = Layer::BatchNormalization(n);
        let shape = self.nodes[x].shape.clone();
        layer
            .output_shape(&[&shape])
            .map_err(|m| self.node_fail(node, m))?;
        self.push(self.output(node)?, layer, vec![x], shape, None);
        self.name_last(node);
        self.set_layout(node, layout)
    }

    /// `LayerNormalization` over the last axis (opset 17), read in ONNX's order.
    fn layer_norm(&mut self, node: &NodeProto) -> Result<()> {
        let x = self.native_input(node, 0)?;
        let shape = self.nodes[x].shape.clone();
        let rank = shape.len() as i64 + 1;
        let axis = self.attr_i(node, "axis")?.unwrap_or(-1);
        if axis != -1 && axis != rank - 1 {
            return Err(self.node_fail(
                node,
                format!("axis {axis} of a rank-{rank} tensor: only the last axis is supported"),
            ));
        }
        if node
            .output
            .iter()
            .skip(1)
            .any(|o| !o.is_empty() && self.uses.contains_key(o.as_str()))
        {
            return Err(self.node_fail(node, "the Mean / InvStdDev outputs are not supported"));
        }
        let ch = *shape.last().unwrap_or(&0);
        // No scale: the `layer_norm_tf2onnx` pattern's normalization (its gamma follows).
        let gamma = match node.input.get(1).filter(|n| !n.is_empty()) {
            Some(_) => Some(self.channel_const(node, 1, ch, "Scale")?),
            None => None,
        };
        let beta = match node.input.get(2).filter(|n| !n.is_empty()) {
            Some(_) => Some(self.channel_const(node, 2, ch, "B")?),
            None => None,
        };
        let layer = Layer::LayerNormalization(RowNorm {
            axis: -1,
            epsilon: self.attr_f(node, "epsilon")?.unwrap_or(1e-5),
            gamma,
            beta,
            rms: false,
        });
        layer
            .output_shape(&[&shape])
            .map_err(|m| self.node_fail(node, m))?;
        self.push(self.output(node)?, layer, vec![x], shape, None);
        self.name_last(node);
        Ok(())
    }

    /// `ArgMax` over the last axis: int64 labels (a graph output).
    fn argmax(&mut self, node: &NodeProto) -> Result<()> {
        let x = self.native_input(node, 0)?;
        let shape = self.nodes[x].shape.clone();
        let rank = shape.len() as i64 + 1;
        let axis = self.attr_i(node, "axis")?.unwrap_or(0);
        if axis != -1 && axis != rank - 1 {
            return Err(self.node_fail(
                node,
                format!("axis {axis} of a rank-{rank} tensor: only the last axis is supported"),
            ));
        }
        if self.attr_i(node, "select_last_index")?.unwrap_or(0) != 0 {
            return Err(self.node_fail(node, "select_last_index=1 is not supported"));
        }
        let layer = Layer::ArgMax(ArgMaxConfig {
            keepdims: self.attr_i(node, "keepdims")?.unwrap_or(1) != 0,
        });
        let out = layer
            .output_shape(&[&shape])
            .map_err(|m| self.node_fail(node, m))?;
        self.push(self.output(node)?, layer, vec![x], out, None);
        if let Some(n) = self.nodes.last_mut() {
            n.dtype = DType::I64;
        }
        self.name_last(node);
        Ok(())
    }

    /// `Gather(table, ids, axis=0)` with a constant `[V, D]` table and integer graph-input ids:
    /// an Embedding.
    fn gather(&mut self, node: &NodeProto) -> Result<()> {
        if self.attr_i(node, "axis")?.unwrap_or(0) != 0 {
            return Err(self.node_fail(node, "only axis 0 (rows of a constant table) is supported"));
        }
        let table = self.input_const(node, 0)?.clone();
        let ids = self.input_node(node, 1)?;
        let [vocab, dim] = table.dims[..] else {
            return Err(self.node_fail(
                node,
                format!("data has shape {:?}, expected a [V, D] table", table.dims),
            ));
        };
        if self.nodes[ids].layer != Layer::Input || self.nodes[ids].dtype == DType::F32 {
            return Err(self.node_fail(node, "indices must be an integer graph input"));
        }
        let layer = Layer::Embedding(EmbeddingConfig {
            input_dim: vocab,
            output_dim: dim,
        });
        let shape = layer
            .output_shape(&[&self.nodes[ids].shape.clone()])
            .map_err(|m| self.node_fail(node, m))?;
        let weights = DenseWeights {
            kernel: table.f32,
            bias: None,
        };
        self.push(self.output(node)?, layer, vec![ids], shape, Some(weights));
        self.name_last(node);
        Ok(())
    }

    /// `Conv` (1-D, group 1) on a channels-first view: a Conv1D on the channels-last buffer.
    fn conv(&mut self, node: &NodeProto) -> Result<()> {
        let (x, steps, ch) = self.ncw_input(node)?;
        if self.attr_i(node, "group")?.unwrap_or(1) != 1 {
            return Err(self.node_fail(node, "grouped convolutions are not supported"));
        }
        let w = self.input_const(node, 1)?.clone();
        let [filters, cin, k] = w.dims[..] else {
            return Err(self.node_fail(
                node,
                format!("W has shape {:?}, expected [M, C, k]", w.dims),
            ));
        };
        if cin != ch || filters == 0 || k == 0 {
            return Err(self.node_fail(
                node,
                format!("W has shape {:?} for {ch} input channels", w.dims),
            ));
        }
        let size = self.attr_1d(node, "kernel_shape", k)?;
        let stride = self.attr_1d(node, "strides", 1)?;
        let dilation = self.attr_1d(node, "dilations", 1)?;
        if size != k {
            return Err(self.node_fail(node, format!("kernel_shape {size} but W has {k} taps")));
        }
        let padding = self.window_padding(node, steps, k, stride, dilation, false)?;
        if w.f32.len() != filters * ch * k {
            return Err(self.node_fail(node, "W must be a float tensor"));
        }
        // ONNX [M, C, k] -> Keras [k, C, M].
        let mut kernel = vec![0.0; w.f32.len()];
        for o in 0..filters {
            for c in 0..ch {
                for t in 0..k {
                    kernel[(t * ch + c) * filters + o] = w.f32[(o * ch + c) * k + t];
                }
            }
        }
        let bias = match node.input.get(2).filter(|s| !s.is_empty()) {
            None => None,
            Some(_) => {
                let b = self.input_const(node, 2)?;
                Some(broadcast_bias(b, filters).ok_or_else(|| {
                    self.node_fail(
                        node,
                        format!("B has shape {:?}, expected [{filters}]", b.dims),
                    )
                })?)
            }
        };
        let layer = Layer::Conv1D(Conv1DConfig {
            filters,
            kernel_size: k,
            strides: stride,
            padding,
            dilation_rate: dilation,
            activation: Activation::Linear,
            use_bias: bias.is_some(),
        });
        let shape = layer
            .output_shape(&[&[steps, ch]])
            .map_err(|m| self.node_fail(node, m))?;
        let weights = DenseWeights { kernel, bias };
        self.push(self.output(node)?, layer, vec![x], shape, Some(weights));
        self.name_last(node);
        self.set_layout(node, Layout::Ncw)
    }

    /// `MaxPool` / `AveragePool` (1-D) on a channels-first view.
    fn pool(&mut self, node: &NodeProto) -> Result<()> {
        let (x, steps, ch) = self.ncw_input(node)?;
        let size = self.attr_1d(node, "kernel_shape", 0)?;
        if size == 0 {
            return Err(self.node_fail(node, "kernel_shape is required"));
        }
        let stride = self.attr_1d(node, "strides", 1)?;
        if self.attr_1d(node, "dilations", 1)? != 1 {
            return Err(self.node_fail(node, "dilations are not supported for pooling"));
        }
        let ceil = self.attr_i(node, "ceil_mode")?.unwrap_or(0) != 0;
        let mut padding = self.window_padding(node, steps, size, stride, 1, ceil)?;
        if padding == Padding::Causal {
            // Left-only padding as explicit steps (skipped / not counted, as any padding).
            padding = Padding::Explicit {
                left: size - 1,
                right: 0,
            };
        }
        if let Padding::Explicit { left, right } = padding
            && (left >= size || right >= size)
        {
            return Err(self.node_fail(
                node,
                format!("pads [{left}, {right}]: a window of {size} would see only padding"),
            ));
        }
        let max = node.op_type == "MaxPool";
        if !max
            && padding != Padding::Valid
            && self.attr_i(node, "count_include_pad")?.unwrap_or(0) != 0
        {
            return Err(self.node_fail(
                node,
                "count_include_pad=1 is not supported (Keras excludes padding)",
            ));
        }
        let layer = if max {
            Layer::MaxPooling1D(MaxPooling1DConfig {
                pool_size: size,
                strides: stride,
                padding,
            })
        } else {
            Layer::AveragePooling1D(AveragePooling1DConfig {
                pool_size: size,
                strides: stride,
                padding,
            })
        };
        let shape = layer
            .output_shape(&[&[steps, ch]])
            .map_err(|m| self.node_fail(node, m))?;
        self.push(self.output(node)?, layer, vec![x], shape, None);
        self.name_last(node);
        self.set_layout(node, Layout::Ncw)
    }

    /// `GlobalMaxPool` / `GlobalAveragePool` on a channels-first view: `[N, C, 1]`.
    fn global_pool(&mut self, node: &NodeProto) -> Result<()> {
        let (x, _, ch) = self.ncw_input(node)?;
        let layer = if node.op_type == "GlobalMaxPool" {
            Layer::GlobalMaxPooling1D
        } else {
            Layer::GlobalAveragePooling1D
        };
        self.push(self.output(node)?, layer, vec![x], vec![ch], None);
        self.name_last(node);
        self.set_layout(node, Layout::Nc1)
    }

    /// `Concat` of computed tensors of one layout, on any non-batch axis.
    fn concat(&mut self, node: &NodeProto) -> Result<()> {
        let mut inputs = (0..node.input.len())
            .map(|i| self.input_node(node, i))
            .collect::<Result<Vec<_>>>()?;
        let mut layout = self.layout(node, 0);
        let flat = (0..inputs.len()).any(|i| {
            matches!(
                self.layout(node, i),
                Layout::FlatNcw { .. } | Layout::NcwUnit(_)
            )
        });
        if flat || (1..inputs.len()).any(|i| self.layout(node, i) != layout) {
            // Mixed layouts (or channel-major flattens): join in ONNX's order.
            inputs = (0..node.input.len())
                .map(|i| self.native_input(node, i))
                .collect::<Result<Vec<_>>>()?;
            layout = Layout::Native;
        }
        let first = inputs
            .first()
            .ok_or_else(|| self.node_fail(node, "no inputs"))?;
        let onnx_rank = match layout {
            Layout::Nc1 => 3,
            _ => self.nodes[*first].shape.len() as i64 + 1,
        };
        let mut axis = self
            .attr_i(node, "axis")?
            .ok_or_else(|| self.node_fail(node, "axis is required"))?;
        if axis < 0 {
            axis += onnx_rank;
        }
        // Keras axis numbering on sinter's buffer (batch = 0).
        let keras_axis = match (layout, axis) {
            (Layout::Native, a) if a >= 1 && a < onnx_rank => a as isize,
            (Layout::Ncw, 1) => 2,
            (Layout::Ncw, 2) => 1,
            (Layout::Nc1, 1) => 1,
            _ => return Err(self.node_fail(node, format!("axis {axis} is not a non-batch axis"))),
        };
        let layer = Layer::Concatenate(ConcatenateConfig { axis: keras_axis });
        let shapes: Vec<&[usize]> = inputs
            .iter()
            .map(|&i| self.nodes[i].shape.as_slice())
            .collect();
        let shape = layer
            .output_shape(&shapes)
            .map_err(|m| self.node_fail(node, m))?;
        self.push(self.output(node)?, layer, inputs, shape, None);
        self.name_last(node);
        self.set_layout(node, layout)
    }

    fn dropout(&mut self, node: &NodeProto) -> Result<()> {
        let x = self.input_node(node, 0)?;
        if node.output.get(1).is_some_and(|m| !m.is_empty()) {
            return Err(self.node_fail(node, "the mask output is not supported"));
        }
        if node.input.get(2).is_some_and(|t| !t.is_empty()) {
            let t = self.input_const(node, 2)?;
            if t.i64.iter().any(|&v| v != 0) || t.f32.iter().any(|&v| v != 0.0) {
                return Err(self.node_fail(node, "training_mode=true is not supported"));
            }
        }
        let rate = match node.input.get(1).filter(|s| !s.is_empty()) {
            Some(_) => {
                let r = self.input_const(node, 1)?;
                r.f32.first().copied().unwrap_or(0.5)
            }
            None => 0.5,
        };
        if !(0.0..1.0).contains(&rate) {
            return Err(self.node_fail(node, format!("ratio {rate} is not in [0, 1)")));
        }
        let shape = self.nodes[x].shape.clone();
        self.push(
            self.output(node)?,
            Layer::Dropout(DropoutConfig { rate }),
            vec![x],
            shape,
            None,
        );
        self.name_last(node);
        // Identity at inference: the layout passes through.
        let layout = self.layout(node, 0);
        self.set_layout(node, layout)
    }

    /// The layout after a `Reshape` of a tracked channels-first tensor that only adds, drops
    /// or moves its unit axis (tf2onnx's `[N, 1, C, W] -> [N, C, W, 1]` before a pooling).
    fn reshape_relabel(&self, node: &NodeProto, target: &[i64]) -> Result<Option<Layout>> {
        let layout = self.layout(node, 0);
        let x = self.input_node(node, 0)?;
        let (Layout::Ncw | Layout::NcwUnit(_), &[w, c]) = (layout, self.nodes[x].shape.as_slice())
        else {
            return Ok(None);
        };
        let Some((&first, rest)) = target.split_first() else {
            return Ok(None);
        };
        if w == 1 || c == 1 || !matches!(first, 0 | -1 | BATCH) || rest.iter().any(|&d| d <= 0) {
            return Ok(None);
        }
        let non_unit: Vec<i64> = rest.iter().copied().filter(|&d| d != 1).collect();
        if non_unit != [c as i64, w as i64] {
            return Ok(None);
        }
        Ok(match rest.iter().position(|&d| d == 1) {
            None if rest.len() == 2 => Some(Layout::Ncw),
            Some(u) if rest.len() == 3 => Some(Layout::NcwUnit(u + 1)),
            _ => None,
        })
    }

    /// For a 2-D `Conv`/`MaxPool`/`AveragePool` on a [`Layout::NcwUnit`] tensor whose window
    /// is 1 along the unit axis: the same node as a 1-D op on a channels-first alias of its
    /// input (kernel, strides, dilations and pads of the real axis; a conv's `[M, C, 1, k]`
    /// weights as `[M, C, k]`), for the 1-D readers. `None` for any other node.
    fn unit_window(&mut self, node: &NodeProto) -> Result<Option<NodeProto>> {
        let Layout::NcwUnit(at @ (2 | 3)) = self.layout(node, 0) else {
            return Ok(None);
        };
        // Spatial axes of [N, C, a, b]: the unit one and the real one (index into 2-D lists).
        let (unit, real) = if at == 2 { (0, 1) } else { (1, 0) };
        let mut one = node.clone();
        for a in &mut one.attribute {
            let v = a.ints.clone();
            match (a.name.as_str(), v.len()) {
                ("kernel_shape" | "strides" | "dilations", 2) if v[unit] == 1 => {
                    a.ints = vec![v[real]];
                }
                ("pads", 4) if v[unit] == 0 && v[unit + 2] == 0 => {
                    a.ints = vec![v[real], v[real + 2]];
                }
                ("kernel_shape" | "strides" | "dilations" | "pads", _) => {
                    return Err(self.node_fail(
                        node,
                        format!(
                            "{} {v:?} on a [N, C, {}] tensor: only a 1-D window is supported",
                            a.name,
                            if at == 2 { "1, W" } else { "W, 1" }
                        ),
                    ));
                }
                _ => {}
            }
        }
        let x = self.input_node(node, 0)?;
        let alias = format!("{}\u{0}ncw", node.input[0]);
        self.values.insert(alias.clone(), Value::Node(x));
        self.layouts.insert(alias.clone(), Layout::Ncw);
        one.input[0] = alias;
        if node.op_type == "Conv" {
            let w = self.input_const(node, 1)?;
            let k = match w.dims[..] {
                [m, c, a, b] if [a, b][unit] == 1 => [m, c, [a, b][real]],
                _ => {
                    return Err(self.node_fail(
                        node,
                        format!("W has shape {:?}, expected a window of height 1", w.dims),
                    ));
                }
            };
            let w = Const {
                dims: k.to_vec(),
                f32: w.f32.clone(),
                i64: vec![],
            };
            let name = format!("{}\u{0}1d", node.input[1]);
            self.values.insert(name.clone(), Value::Const(w));
            one.input[1] = name;
        }
        Ok(Some(one))
    }

    /// A batch-first Reshape: a view (Flatten for `[batch, n]`, else a Reshape layer).
    fn reshape(&mut self, node: &NodeProto) -> Result<()> {
        let mut target = self.input_const(node, 1)?.i64.clone();
        if target
            .first()
            .is_some_and(|&b| Some(b) == self.static_batch)
        {
            target[0] = BATCH; // the batch size the exporter traced with: keep the batch axis
        }
        if let Some(layout) = self.reshape_relabel(node, &target)? {
            let x = self.input_node(node, 0)?;
            self.values
                .insert(self.output(node)?.to_string(), Value::Node(x));
            return self.set_layout(node, layout);
        }
        let x = self.input_node(node, 0)?;
        let features = self.nodes[x].shape.iter().product::<usize>() as i64;
        if self.layout(node, 0) == Layout::Ncw
            && target.len() == 2
            && matches!(target[0], 0 | BATCH)
            && (target[1] == -1 || target[1] == features)
        {
            return self.flatten(node); // `x.view(x.size(0), -1)` after a Conv1d
        }
        let x = self.native_input(node, 0)?;
        if target.iter().skip(1).any(|&d| d == BATCH) {
            return Err(self.node_fail(node, "the batch size appears in a non-batch axis"));
        }
        let from = self.nodes[x].shape.clone();
        let elems = checked_elems(&from).map_err(|m| self.node_fail(node, m))?;
        let allowzero = self.attr_i(node, "allowzero")?.unwrap_or(0) != 0;
        let shape = batch_reshape(&target, &from, elems, allowzero)
            .map_err(|m| self.node_fail(node, format!("shape {target:?}: {m}")))?;
        // `x` is in ONNX's order (materialised), so the result is native whatever the
        // input's layout was.
        self.view(node, x, shape)
    }

    /// Converts an initializer or `Constant` value, reading external data if needed.
    fn constant(&self, t: &TensorProto, what: &str) -> Result<Const> {
        let dims = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|m| self.fail(format!("{what}: {m}")))?;
        self.opts
            .check_elems(&dims)
            .map_err(|m| self.fail(format!("{what}: {m}")))?;
        let n = checked_elems(&dims).map_err(|m| self.fail(format!("{what}: {m}")))?;
        let external;
        let raw: &[u8] = if t.data_location == 1 {
            external = self.external(t, what)?;
            &external
        } else {
            &t.raw_data
        };
        let bad = |have: usize, unit: &str| {
            self.fail(format!(
                "{what}: shape {dims:?} needs {n} values, the data holds {have} {unit}"
            ))
        };
        let mut c = Const {
            dims: dims.clone(),
            f32: vec![],
            i64: vec![],
        };
        let size = match t.data_type {
            dtype::FLOAT | dtype::INT32 => 4,
            dtype::INT64 | dtype::DOUBLE => 8,
            dtype::FLOAT16 => 2,
            other => {
                return Err(self.fail(format!(
                    "{what}: element type {} is not supported",
                    dtype_name(other)
                )));
            }
        };
        if !raw.is_empty() || t.data_location == 1 {
            if raw.len() != n.saturating_mul(size) {
                return Err(bad(raw.len(), "bytes"));
            }
            match t.data_type {
                dtype::FLOAT => c.f32 = le_chunks::<4>(raw).map(f32::from_le_bytes).collect(),
                dtype::DOUBLE => {
                    c.f32 = le_chunks::<8>(raw)
                        .map(|b| f64::from_le_bytes(b) as f32)
                        .collect()
                }
                dtype::FLOAT16 => {
                    c.f32 = le_chunks::<2>(raw)
                        .map(|b| super::f16_to_f32(u16::from_le_bytes(b)))
                        .collect()
                }
                dtype::INT32 => {
                    c.i64 = le_chunks::<4>(raw)
                        .map(|b| i32::from_le_bytes(b).into())
                        .collect()
                }
                _ => c.i64 = le_chunks::<8>(raw).map(i64::from_le_bytes).collect(),
            }
        } else {
            let have = match t.data_type {
                dtype::FLOAT => {
                    c.f32 = t.float_data.clone();
                    t.float_data.len()
                }
                dtype::DOUBLE => {
                    c.f32 = t.double_data.iter().map(|&v| v as f32).collect();
                    t.double_data.len()
                }
                dtype::FLOAT16 => {
                    c.f32 = t
                        .int32_data
                        .iter()
                        .map(|&v| super::f16_to_f32(v as u16))
                        .collect();
                    t.int32_data.len()
                }
                dtype::INT32 => {
                    c.i64 = t.int32_data.iter().map(|&v| v.into()).collect();
                    t.int32_data.len()
                }
                _ => {
                    c.i64 = t.int64_data.clone();
                    t.int64_data.len()
                }
            };
            if have != n {
                return Err(bad(have, "values"));
            }
        }
        Ok(c)
    }

    /// Reads an external-data tensor: a file named by a relative path without `..`, next to
    /// the model, checked against its declared offset and length before reading.
    fn external(&self, t: &TensorProto, what: &str) -> Result<Vec<u8>> {
        let fail = |m: String| self.fail(format!("{what}: external data {m}"));
        let key = |k: &str| {
            t.external_data
                .iter()
                .find(|e| e.key == k)
                .map(|e| e.value.as_str())
        };
        let location = key("location").ok_or_else(|| fail("has no location".into()))?;
        let rel = Path::new(location);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(fail(format!(
                "location {location:?} must be a plain relative path next to the model"
            )));
        }
        let dir = self
            .dir
            .ok_or_else(|| fail("is not available for a model read from memory".into()))?;
        let file: PathBuf = dir.join(rel);
        let num = |k: &str| -> Result<Option<u64>> {
            key(k)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| fail(format!("{k} {v:?} is not a number")))
                })
                .transpose()
        };
        let offset = num("offset")?.unwrap_or(0);
        let len = std::fs::metadata(&file)
            .map_err(|source| Error::Io {
                path: file.clone(),
                source,
            })?
            .len();
        let length = match num("length")? {
            Some(l) => l,
            None => len.saturating_sub(offset),
        };
        if offset.checked_add(length).is_none_or(|end| end > len) {
            return Err(fail(format!(
                "{}: bytes {offset}..{} lie beyond its end ({len} bytes)",
                file.display(),
                offset.saturating_add(length)
            )));
        }
        let total = self.external_bytes.get().saturating_add(length);
        if total > self.opts.max_weight_bytes {
            return Err(fail(format!(
                "brings the weights to {total} bytes, over the limit of {} bytes",
                self.opts.max_weight_bytes
            )));
        }
        self.external_bytes.set(total);
        use std::io::{Read, Seek, SeekFrom};
        let io = |source| Error::Io {
            path: file.clone(),
            source,
        };
        let mut f = std::fs::File::open(&file).map_err(io)?;
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut buf = Vec::new();
        f.take(length).read_to_end(&mut buf).map_err(io)?;
        if buf.len() as u64 != length {
            return Err(fail(format!("{}: short read", file.display())));
        }
        Ok(buf)
    }
}

fn le_chunks<const N: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    raw.chunks_exact(N)
        .map(|c| <[u8; N]>::try_from(c).unwrap_or([0; N]))
}

fn transpose(b: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; b.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = b[r * cols + c];
        }
    }
    t
}

/// A bias of `n` values from a constant of shape `[n]`, `[1, n]`, `[1]` or `[]`.
/// The rows of a row-major `[k, n]` matrix reordered: row `s` of the result is row `rows[s]`
/// (unchanged without `rows`, or when a row index is out of range: the caller's shape check
/// then reports the mismatch).
fn permute_rows(kernel: Vec<f32>, n: usize, rows: Option<&[usize]>) -> Vec<f32> {
    match rows {
        Some(rows) if n > 0 && rows.len() * n == kernel.len() => rows
            .iter()
            .flat_map(|&r| kernel[r * n..(r + 1) * n].iter().copied())
            .collect(),
        _ => kernel,
    }
}

fn broadcast_bias(c: &Const, n: usize) -> Option<Vec<f32>> {
    let lead_ones = c.dims.iter().rev().skip(1).all(|&d| d == 1);
    match c.dims.last() {
        Some(&d) if d == n && lead_ones => Some(c.f32.clone()),
        None | Some(1) if c.f32.len() == 1 && lead_ones => Some(vec![c.f32[0]; n]),
        _ => None,
    }
}

/// The non-batch shape of `Reshape(x, target)` for `x` of non-batch shape `from`: the first
/// entry must keep the batch axis (`0`, or `-1` with every other entry known).
fn batch_reshape(
    target: &[i64],
    from: &[usize],
    elems: usize,
    allowzero: bool,
) -> std::result::Result<Vec<usize>, String> {
    let Some((&first, rest)) = target.split_first() else {
        return Err("empty target shape".into());
    };
    // BATCH: the batch size itself (from `Shape`, or the size a traced model was exported with).
    if !(first == 0 && !allowzero || first == -1 || first == BATCH) {
        return Err("the first entry must be 0 or -1 (keep the batch axis)".into());
    }
    let mut shape = Vec::with_capacity(rest.len());
    let mut infer = None;
    for (i, &d) in rest.iter().enumerate() {
        match d {
            -1 if first == -1 => return Err("two -1 entries".into()),
            -1 if infer.is_some() => return Err("two -1 entries".into()),
            -1 => {
                infer = Some(i);
                shape.push(1);
            }
            0 if !allowzero => shape.push(*from.get(i).ok_or("0 entry beyond the input rank")?),
            d if d > 0 => shape.push(usize::try_from(d).map_err(|_| "entry too large")?),
            d => return Err(format!("invalid entry {d}")),
        }
    }
    let known = checked_elems(&shape)?;
    if let Some(i) = infer {
        if known == 0 || !elems.is_multiple_of(known) {
            return Err(format!("cannot infer -1 from {elems} values per sample"));
        }
        shape[i] = elems / known;
    } else if known != elems {
        return Err(format!(
            "needs {known} values per sample, the input has {elems}"
        ));
    }
    Ok(shape)
}

fn join(s: &[usize]) -> String {
    s.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

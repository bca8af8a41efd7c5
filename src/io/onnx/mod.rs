//! ONNX models: the dense and 1-D CNN subset (Gemm, MatMul + Add, activations, elementwise
//! functions and arithmetic, Flatten, Reshape, Dropout, Identity; Conv, MaxPool, AveragePool,
//! global pooling, Concat, normalizations, and batch-first Transposes) of opsets 13 to 28,
//! weights inline or in external data files. The op types read are the lines of the table in
//! `ops/mod.rs` (one converter per op, grouped by family in `ops/`); shape arithmetic on
//! constants is evaluated at load time (`fold.rs`).
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
//! they are powers of two, as exporters write them). Anything else is a [`crate::LoadError`]
//! that names the node, the op and the opset, and says whether sinter does not run it
//! (`Unsupported`) or the file breaks ONNX's rules (`Invalid`, `Malformed`).
//!
//! ```no_run
//! let model = sinter::io::onnx::load("model.onnx")?;
//! println!("{}", model.summary());
//! # Ok::<(), sinter::Error>(())
//! ```

mod attention;
mod convert;
mod fold;
mod layout;
mod ops;
mod patterns;
mod positions;
mod probe;
mod seq;
// The protobuf messages are public only to the test suite (feature `internals`), which builds
// hostile models in memory.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod proto;
#[cfg(not(feature = "internals"))]
mod proto;
mod stream;
mod tensor;

use super::LoadOptions;
use crate::error::{Error, LoadError, LoadErrorKind, Result};
use crate::model::{DType, Layer, Model};
use convert::{Const, Converter, Value, dtype_name, prefixed};
use layout::Layout;
use prost::bytes::Bytes;
use proto::{NodeProto, dtype};
use std::collections::HashMap;
use std::path::Path;

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
    let io = |source| Error::Io {
        path: path.into(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let dir = path.parent().unwrap_or(Path::new("."));
    let reader = std::io::BufReader::with_capacity(1 << 16, file);
    convert(reader, len, path, Some(dir), opts)
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
    convert(bytes, bytes.len() as u64, path, dir, opts)
}

/// Converts a model of `len` bytes read from `r`. Memory: the file is never held whole;
/// each initializer is read, converted and freed in turn (`stream.rs`), and only the rest of
/// the model, small, is decoded at once.
fn convert(
    r: impl std::io::Read,
    len: u64,
    path: &Path,
    dir: Option<&Path>,
    opts: &LoadOptions,
) -> Result<Model> {
    let fail = |kind: LoadErrorKind| Error::from(LoadError::new(path, kind));
    if len > opts.max_weight_bytes {
        return Err(fail(LoadErrorKind::Limit(format!(
            "{len} bytes is over the weights limit of {} bytes",
            opts.max_weight_bytes
        ))));
    }
    // The opset is known once the whole file is read; reading constants does not need it.
    let mut cx = Converter::new(path, opts, dir, 0);
    let rest = stream::split(r, len, |t| {
        let c = cx.constant(&t, &format!("initializer {:?}", t.name))?;
        cx.values.insert(t.name, Value::Const(c));
        Ok(())
    });
    let rest = match rest {
        Ok(rest) => rest,
        Err(stream::Stop::Wire(kind)) => return Err(fail(kind)),
        Err(stream::Stop::Each(e)) => return Err(e),
    };
    let proto_model = proto::decode(Bytes::from(rest)).map_err(|e| {
        fail(LoadErrorKind::Malformed(format!(
            "not an ONNX model (protobuf: {e})"
        )))
    })?;
    let (opset, graph) = opset_and_graph(&proto_model, opts).map_err(fail)?;
    cx.opset = opset;
    let (graph_nodes, patterns, fixed_length) = rewrite_patterns(&cx, graph);
    cx.count_uses(&graph_nodes, graph);
    let inputs = cx.graph_inputs(graph, &graph_nodes).map_err(fail)?;
    if graph.output.is_empty() {
        return Err(fail(LoadErrorKind::Invalid(
            "the graph has no outputs".into(),
        )));
    }
    let all: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let wanted = opts
        .pick_outputs(&all)
        .map_err(|m| fail(LoadErrorKind::Invalid(m)))?;
    // Only the nodes the requested outputs depend on are converted.
    let needed = needed_nodes(&graph_nodes, &wanted);
    for (node, _) in graph_nodes.iter().zip(&needed).filter(|(_, n)| **n) {
        cx.node(node)?;
    }
    let outs = cx.graph_outputs(&wanted).map_err(fail)?;
    let name = if graph.name.is_empty() {
        "onnx"
    } else {
        &graph.name
    };
    let ins: Vec<usize> = (0..inputs).collect();
    // A sequence axis that may vary per run, if every constant a layer keeps allows it.
    let variable = match fixed_length {
        Some(why) => Err(why),
        None => seq::variable_inputs(&cx, graph, &graph_nodes, &needed),
    };
    let model_err = |e: Error| fail(LoadErrorKind::Model(Box::new(e)));
    let batch_axes = std::mem::take(&mut cx.batch_axes);
    let mut model = Model::from_nodes(name, cx.nodes, &ins, &outs).map_err(model_err)?;
    // Time-major inputs and outputs: the file holds their batch on another axis.
    let in_names: Vec<String> = model.input_names().iter().map(|n| n.to_string()).collect();
    for (output, names) in [(false, &in_names), (true, &wanted)] {
        for (k, n) in names.iter().enumerate() {
            if let Some(b) = batch_axes.get(n) {
                model
                    .set_batch_axis(output, k, b.clone())
                    .map_err(model_err)?;
            }
        }
    }
    model.set_output_names(wanted).map_err(model_err)?;
    let fixed_by = match variable {
        Ok(ks) => {
            for k in ks {
                model.set_seq_input(k).map_err(model_err)?;
            }
            None
        }
        Err(why) => Some(why),
    };
    let mut origin = match proto_model.producer_name.trim() {
        "" => format!("ONNX opset {opset}"),
        by => format!("ONNX opset {opset}, written by {by}"),
    };
    if !patterns.is_empty() {
        let seen: Vec<String> = patterns.iter().map(|(p, n)| format!("{p} x{n}")).collect();
        origin.push_str(&format!("; patterns: {}", seen.join(", ")));
    }
    if let Some(why) = fixed_by {
        origin.push_str(&format!("; sequence length fixed: {why}"));
    }
    model.set_origin(origin);
    Ok(model)
}

/// The model's default-domain opset, checked against [`OPSETS`], and its graph, checked
/// against the node limit.
fn opset_and_graph<'m>(
    model: &'m proto::ModelProto,
    opts: &LoadOptions,
) -> std::result::Result<(i64, &'m proto::GraphProto), LoadErrorKind> {
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| {
            LoadErrorKind::Invalid("no opset_import for the default ONNX domain".into())
        })?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| LoadErrorKind::Invalid("the model has no graph".into()))?;
    if opset > *OPSETS.end() {
        let first = graph.node.first();
        let (name, op) = first.map_or(("", ""), |n| (n.name.as_str(), n.op_type.as_str()));
        return Err(LoadErrorKind::Unsupported(format!(
            "node {name:?} ({op}): the model's opset {opset} is newer than sinter knows ({}); \
             export with opset {} or older",
            OPSETS.end(),
            OPSETS.end()
        )));
    }
    if opset < *OPSETS.start() {
        return Err(LoadErrorKind::Unsupported(format!(
            "opset {opset} is not supported (sinter reads opsets {} to {}); convert the model \
             with onnx.version_converter.convert_version(model, {})",
            OPSETS.start(),
            OPSETS.end(),
            OPSETS.start()
        )));
    }
    if graph.node.len() > opts.max_layers {
        return Err(LoadErrorKind::Limit(format!(
            "{} nodes, over the limit of {}",
            graph.node.len(),
            opts.max_layers
        )));
    }
    Ok((opset, graph))
}

/// The graph's nodes with activation and normalization subgraphs rewritten as one op each
/// ([`patterns`]), the patterns found and, if the graph runs only at its export length, why.
fn rewrite_patterns(
    cx: &Converter<'_>,
    graph: &proto::GraphProto,
) -> (Vec<NodeProto>, Vec<(&'static str, usize)>, Option<String>) {
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
    let (nodes, mut counts) = patterns::rewrite(&graph.node, &outs, &scalar, &ints);
    let decode = |t: &proto::TensorProto| cx.constant(t, "a mask constant").ok();
    let dim = |name: &str| cx.opts.dim_size(name);
    let context = attention::Context {
        consts: &get,
        decode: &decode,
        graph,
        dim: &dim,
    };
    let (nodes, n, fixed) = attention::rewrite(nodes, &outs, &context);
    if n > 0 {
        counts.push(("attention", n));
    }
    // After attention: its masks are probed through the embeddings' ops.
    let (nodes, n) = positions::rewrite(nodes, graph, &context);
    if n > 0 {
        counts.push(("position ids", n));
    }
    (nodes, counts, fixed)
}

impl Converter<'_> {
    /// Counts the readers of every tensor and the nodes of every name.
    fn count_uses(&mut self, nodes: &[NodeProto], graph: &proto::GraphProto) {
        for node in nodes {
            for name in node.input.iter().filter(|n| !n.is_empty()) {
                *self.uses.entry(name.clone()).or_insert(0) += 1;
            }
            if !node.name.is_empty() {
                *self.names.entry(node.name.clone()).or_insert(0) += 1;
            }
        }
        for out in &graph.output {
            *self.uses.entry(out.name.clone()).or_insert(0) += 1;
        }
        // A node is never named after a graph input (inputs keep their own names).
        for i in &graph.input {
            self.names.insert(i.name.clone(), 2);
        }
    }

    /// Pushes an `Input` node per graph input that is not an initializer; their number. An
    /// input a recurrent op reads time-major (`X` `[T, N, F]`, `initial_h` `[D, N, H]`, with
    /// `layout=0`) has its batch on axis 1: sinter holds it sample-major and tracks its
    /// layout ([`Layout::Tnc`], [`Layout::Dnh`]).
    fn graph_inputs(
        &mut self,
        graph: &proto::GraphProto,
        nodes: &[NodeProto],
    ) -> std::result::Result<usize, LoadErrorKind> {
        let inputs: Vec<_> = graph
            .input
            .iter()
            .filter(|i| !self.values.contains_key(&i.name))
            .collect();
        if inputs.is_empty() {
            return Err(LoadErrorKind::Unsupported(
                "the graph has no non-constant input".into(),
            ));
        }
        let time_major = time_major_inputs(nodes);
        let batch_axis = |name: &str| match time_major.get(name) {
            None => Some(0),
            Some(Layout::N) => None,
            Some(_) => Some(1),
        };
        self.static_batch = inputs
            .iter()
            .map(|i| {
                let tt = i.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
                let dim = tt
                    .and_then(|t| t.shape.as_ref())
                    .and_then(|s| s.dim.get(batch_axis(&i.name).unwrap_or(0)));
                dim.and_then(|d| d.dim_value).filter(|&v| v > 1)
            })
            .reduce(|a, b| if a == b { a } else { None })
            .flatten();
        for input in &inputs {
            let (dims, dtype) = input_shape(input, batch_axis(&input.name), self.opts)
                .and_then(|(s, t)| {
                    let limit = self.opts.check_elems(&s).map_err(LoadErrorKind::Limit);
                    limit.map(|()| (s, t))
                })
                .map_err(|k| {
                    let tm = match time_major.contains_key(&input.name) {
                        true => " (read time-major by a recurrent op: its batch is axis 1)",
                        false => "",
                    };
                    prefixed(&format!("input {:?}{tm}: ", input.name), k)
                })?;
            let shape = match time_major.get(&input.name) {
                // `[N]`: one value per sample.
                Some(&Layout::N) => {
                    self.layouts.insert(input.name.clone(), Layout::N);
                    dims
                }
                Some(&layout) => {
                    self.layouts.insert(input.name.clone(), layout);
                    self.batch_axes.insert(
                        input.name.clone(),
                        crate::model::BatchAxis {
                            axis: 1,
                            dims: dims.clone(),
                        },
                    );
                    match layout {
                        // `[D, N, H]`: sinter's `[D * H]`.
                        Layout::Dnh(_) => vec![dims.iter().product()],
                        _ => dims,
                    }
                }
                None => dims,
            };
            self.push(&input.name, Layer::Input, vec![], shape, None);
            if let Some(n) = self.nodes.last_mut() {
                n.name = input.name.clone();
                n.dtype = dtype;
            }
        }
        Ok(inputs.len())
    }

    /// The nodes of the graph outputs `wanted`, in ONNX's axis order (the graph declares its
    /// outputs so: a tracked layout is written out).
    fn graph_outputs(
        &mut self,
        wanted: &[String],
    ) -> std::result::Result<Vec<usize>, LoadErrorKind> {
        let mut outs = Vec::with_capacity(wanted.len());
        for name in wanted {
            let layout = self.layouts.get(name).copied().unwrap_or(Layout::Native);
            let out = match self.values.get(name) {
                Some(&Value::Node(i)) if layout.batch_not_first() => {
                    // A time-major output: sample-major here, its batch axis recorded.
                    let shape = layout.onnx_shape(&self.nodes[i].shape);
                    let axis = shape.iter().position(|&d| d == convert::BATCH).unwrap_or(0);
                    let dims = shape.iter().filter(|&&d| d != convert::BATCH);
                    let dims = dims.map(|&d| d as usize).collect();
                    let b = crate::model::BatchAxis { axis, dims };
                    self.batch_axes.insert(name.clone(), b);
                    i
                }
                Some(Value::Node(i)) => {
                    let i = *i;
                    self.materialise(name, i)
                        .map_err(|m| LoadErrorKind::Invalid(format!("output {name:?}: {m}")))?
                }
                Some(Value::Const(_)) => {
                    return Err(LoadErrorKind::Unsupported(format!(
                        "output {name:?} is a constant (computed at load time, e.g. a Shape): \
                         sinter serves outputs computed from the inputs"
                    )));
                }
                None => {
                    return Err(LoadErrorKind::Invalid(format!(
                        "output {name:?} is not produced by any node"
                    )));
                }
            };
            outs.push(out);
        }
        Ok(outs)
    }
}

/// The tensors recurrent ops read with the batch not first: time-major (`layout=0`) `X`
/// (`[T, N, F]`) and initial states (`[D, N, H]`), and `sequence_lens` (`[N]`), with the
/// layout sinter tracks them in.
fn time_major_inputs(nodes: &[NodeProto]) -> HashMap<String, Layout> {
    let mut found = HashMap::new();
    for n in nodes
        .iter()
        .filter(|n| matches!(n.op_type.as_str(), "LSTM" | "GRU" | "RNN"))
    {
        let attr = |name: &str| n.attribute.iter().find(|a| a.name == name);
        if let Some(lens) = n.input.get(4).filter(|x| !x.is_empty()) {
            found.insert(lens.clone(), Layout::N);
        }
        if attr("layout").is_some_and(|a| a.i != 0) {
            continue;
        }
        let dirs = match attr("direction").map(|a| a.s.as_slice()) {
            Some(b"bidirectional") => 2,
            _ => 1,
        };
        for (i, layout) in [
            (0, Layout::Tnc),
            (4, Layout::N),
            (5, Layout::Dnh(dirs)),
            (6, Layout::Dnh(dirs)),
        ] {
            if let Some(name) = n.input.get(i).filter(|x| !x.is_empty()) {
                found.insert(name.clone(), layout);
            }
        }
    }
    found
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

/// The non-batch shape of a graph input (`[batch, d1, ..]` with known positive `d`s, the
/// batch on axis `batch`; `None`: `[batch]`, one value per sample) and its element type.
fn input_shape(
    input: &proto::ValueInfoProto,
    batch: Option<usize>,
    opts: &crate::io::LoadOptions,
) -> std::result::Result<(Vec<usize>, DType), LoadErrorKind> {
    let unsupported = |m: String| LoadErrorKind::Unsupported(m);
    let tt = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or_else(|| unsupported("not a tensor".into()))?;
    let ty = match tt.elem_type {
        dtype::FLOAT => DType::F32,
        dtype::INT32 => DType::I32,
        dtype::INT64 => DType::I64,
        dtype::BOOL => DType::Bool,
        t => {
            return Err(unsupported(format!(
                "element type {} is not float32, int32, int64 or bool",
                dtype_name(t)
            )));
        }
    };
    let dims = &tt
        .shape
        .as_ref()
        .ok_or_else(|| unsupported("shape is unknown".into()))?
        .dim;
    // `[N]` (`batch` None): one value per sample, held as `[1]`.
    let Some(batch) = batch else {
        return match dims.len() {
            1 => Ok((vec![1], ty)),
            r => Err(unsupported(format!("rank {r}: sequence_lens is [batch]"))),
        };
    };
    if dims.len() < 2 || batch >= dims.len() {
        return Err(unsupported(format!(
            "rank {} input: sinter needs [batch, features..]",
            dims.len()
        )));
    }
    let shape = dims
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != batch)
        .map(|(i, d)| match (d.dim_value, &d.dim_param) {
            (Some(v), _) if v > 0 => usize::try_from(v)
                .map_err(|_| LoadErrorKind::Limit(format!("axis {} is too large", i))),
            (_, Some(name)) if opts.dim_size(name).is_some() => match opts.dim_size(name) {
                Some(v) if v > 0 => Ok(v),
                _ => Err(LoadErrorKind::Invalid(format!(
                    "axis {} ({name:?}) is given size 0",
                    i
                ))),
            },
            (_, Some(name)) => Err(unsupported(format!(
                "axis {} is the symbolic {name:?}: give its size (LoadOptions::dim, --dim {name}=N or --seq N)",
                i
            ))),
            _ => Err(unsupported(format!(
                "axis {} has no fixed size (only the batch axis may be symbolic)",
                i
            ))),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((shape, ty))
}

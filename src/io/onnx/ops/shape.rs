//! Ops that move, view or name values: `Transpose`, `Flatten`, `Reshape`, `Squeeze`,
//! `Unsqueeze`, `Concat`, `Gather` (an embedding), `Identity`, `Dropout`, `Constant`, and
//! `ai.onnx.ml`'s `ArrayFeatureExtractor`.

use crate::error::{LoadErrorKind, Result};
use crate::io::onnx::convert::{BATCH, Converter, Value, prefixed};
use crate::io::onnx::layout::Layout;
use crate::io::onnx::proto::NodeProto;
use crate::model::{
    ConcatenateConfig, DropoutConfig, EmbeddingConfig, PermuteConfig, ReshapeConfig,
};
use crate::model::{DType, DenseWeights, Layer, Primitive, TakeConfig, checked_elems};

/// `Transpose(0, 2, 1)` (or `(0, 3, 1, 2)` and `(0, 2, 3, 1)` in 2-D) between channels-last
/// and channels-first: no data moves, only the way later ops read their axes.
pub(super) fn transpose(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let x = cx.input_node(node, 0)?;
    let perm = Converter::attr(node, "perm")
        .map(|a| a.ints.clone())
        .unwrap_or_default();
    let layout = cx.layout(node, 0);
    let rank = layout.onnx_shape(&cx.nodes[x].shape).len();
    let unit_first = cx.nodes[x].shape.first() == Some(&1);
    let next = match (layout, perm.as_slice(), rank) {
        // Batch-first <-> time-major around a recurrent op: only the reading changes.
        (Layout::Native, [1, 0, 2], 3) => Layout::Tnc,
        (Layout::Tnc, [1, 0, 2], 3) => Layout::Native,
        (Layout::Tdnh(d), [0, 2, 1, 3], 4) => Layout::Tndh(d),
        (Layout::Tndh(d), [0, 2, 1, 3], 4) => Layout::Tdnh(d),
        (l, _, _) if l.batch_not_first() => {
            return Err(cx.unsupported(
                node,
                format!("perm {perm:?} of a tensor with ONNX's batch on axis 1"),
            ));
        }
        (Layout::Native, [0, 2, 1], 3) => Layout::Ncw,
        // [N, 1, W, C] -> [N, C, 1, W]: TensorFlow's Conv1D as a 2-D Conv.
        (Layout::Native, [0, 3, 1, 2], 4) if unit_first => {
            let (w, c) = (cx.nodes[x].shape[1], cx.nodes[x].shape[2]);
            cx.push(
                cx.output(node)?,
                Layer::Reshape(ReshapeConfig {
                    target_shape: vec![w as isize, c as isize],
                }),
                vec![x],
                vec![w, c],
                None,
            );
            return cx.set_layout(node, Layout::NcwUnit(2));
        }
        (Layout::Ncw, [0, 2, 1], 3) => Layout::Native,
        // NCHW <-> NHWC (TensorFlow's convolutions, as tf2onnx writes them).
        (Layout::Native, [0, 3, 1, 2], 4) => Layout::Ncw,
        (Layout::Ncw, [0, 2, 3, 1], 4) => Layout::Native,
        (Layout::Nc1, [0, 2, 1], _) => {
            // [N, C, 1] -> [N, 1, C]: a [1, C] view of the same values.
            let c = cx.nodes[x].shape[0];
            cx.push(
                cx.output(node)?,
                Layer::Reshape(ReshapeConfig {
                    target_shape: vec![1, c as isize],
                }),
                vec![x],
                vec![1, c],
                None,
            );
            return cx.set_layout(node, Layout::Native);
        }
        _ => return permute(cx, node, &perm, rank),
    };
    cx.alias(node, x)?;
    cx.set_layout(node, next)
}

/// Any other `Transpose` that keeps the batch axis first: a `Permute` of the values in
/// ONNX's order.
fn permute(cx: &mut Converter<'_>, node: &NodeProto, perm: &[i64], rank: usize) -> Result<()> {
    let dims = match perm.split_first() {
        Some((0, rest)) if perm.len() == rank => rest
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<Vec<_>>>(),
        _ => None,
    }
    .ok_or_else(|| {
        let m = format!("perm {perm:?} on a rank-{rank} tensor: the batch axis must stay first");
        let mut sorted = perm.to_vec();
        sorted.sort_unstable();
        // A permutation that moves the batch axis is valid ONNX (no `perm` reverses the axes);
        // anything else is not one.
        if perm.is_empty() || sorted.iter().copied().eq(0..rank as i64) {
            cx.unsupported(node, m)
        } else {
            cx.invalid(node, m)
        }
    })?;
    let x = cx.native_input(node, 0)?;
    let layer = Layer::Permute(PermuteConfig { dims });
    let shape = layer
        .output_shape(&[&cx.nodes[x].shape])
        .map_err(|m| cx.invalid(node, m))?;
    cx.push(cx.output(node)?, layer, vec![x], shape, None);
    cx.name_last(node);
    cx.set_layout(node, Layout::Native)
}

/// `Flatten` at axis 1 (keep the batch axis).
pub(super) fn flatten(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let axis = cx.attr_i(node, "axis")?.unwrap_or(1);
    if axis != 1 {
        return Err(cx.unsupported(
            node,
            format!("axis {axis}: only axis 1 (keep the batch axis) is supported"),
        ));
    }
    to_features(cx, node)
}

/// A flatten to `[N, features]` (ONNX `Flatten`, or a `Reshape` to one axis). A tracked
/// channels-first `[N, C, W]` tensor is flattened as sinter holds it (step-major) and
/// tracked as [`Layout::FlatNcw`]; everything else is flattened in ONNX's order.
fn to_features(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let (x, layout) = match (cx.layout(node, 0), cx.input_node(node, 0)?) {
        (Layout::Ncw, x) => match cx.nodes[x].shape[..] {
            [ref spatial @ .., ch] if !spatial.is_empty() => (
                x,
                Layout::FlatNcw {
                    steps: spatial.iter().product(),
                    ch,
                },
            ),
            _ => (cx.native_input(node, 0)?, Layout::Native),
        },
        // `[N, C, 1, 1]` held as `[C]`: already flat, in either order.
        (Layout::Nc11 | Layout::Nc1, x) => (x, Layout::Native),
        _ => (cx.native_input(node, 0)?, Layout::Native),
    };
    let shape = vec![checked_elems(&cx.nodes[x].shape).map_err(|m| cx.limit(node, m))?];
    if shape == cx.nodes[x].shape {
        cx.values
            .insert(cx.output(node)?.to_string(), Value::Node(x));
    } else {
        cx.push(cx.output(node)?, Layer::Flatten, vec![x], shape, None);
        cx.name_last(node);
    }
    cx.set_layout(node, layout)
}

/// A batch-first Reshape: a view (Flatten for `[batch, n]`, else a Reshape layer).
pub(super) fn reshape(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let mut target = cx.input_const(node, 1)?.i64.clone();
    if target.first().is_some_and(|&b| Some(b) == cx.static_batch) {
        target[0] = BATCH; // the batch size the exporter traced with: keep the batch axis
    }
    if let Some(layout) = time_major_reshape(cx, node, &target)? {
        let x = cx.input_node(node, 0)?;
        cx.values
            .insert(cx.output(node)?.to_string(), Value::Node(x));
        return cx.set_layout(node, layout);
    }
    if let Some(layout) = cx.reshape_relabel(node, &target)? {
        let x = cx.input_node(node, 0)?;
        cx.values
            .insert(cx.output(node)?.to_string(), Value::Node(x));
        return cx.set_layout(node, layout);
    }
    let x = cx.input_node(node, 0)?;
    let features = cx.nodes[x].shape.iter().product::<usize>() as i64;
    if cx.layout(node, 0) == Layout::Ncw
        && target.len() == 2
        && matches!(target[0], 0 | BATCH)
        && (target[1] == -1 || target[1] == features)
    {
        return to_features(cx, node); // `x.view(x.size(0), -1)` after a Conv1d
    }
    let x = cx.native_input(node, 0)?;
    if target.iter().skip(1).any(|&d| d == BATCH) {
        return Err(cx.unsupported(node, "the batch size appears in a non-batch axis"));
    }
    let from = cx.nodes[x].shape.clone();
    let elems = checked_elems(&from).map_err(|m| cx.limit(node, m))?;
    let allowzero = cx.attr_i(node, "allowzero")?.unwrap_or(0) != 0;
    let shape = batch_reshape(&target, &from, elems, allowzero)
        .map_err(|k| cx.node_error(node, prefixed(&format!("shape {target:?}: "), k)))?;
    // `x` is in ONNX's order (materialised), so the result is native whatever the
    // input's layout was.
    cx.view(node, x, shape)
}

/// A recurrent op's `[T, N, D, H]` (or `[T, D, N, H]` with one direction) reshaped to `[T,
/// N, D * H]`: the same values, now read as time-major rows. `None`: another reshape.
fn time_major_reshape(
    cx: &Converter<'_>,
    node: &NodeProto,
    target: &[i64],
) -> Result<Option<Layout>> {
    let layout = cx.layout(node, 0);
    if !layout.batch_not_first() {
        return Ok(None);
    }
    let x = cx.input_node(node, 0)?;
    let (t, width) = match cx.nodes[x].shape[..] {
        [t, w] => (t as i64, w as i64),
        _ => (-2, -2),
    };
    match (layout, target) {
        // The steps given, or copied (0), or taken for the traced batch size; the batch
        // given, copied or inferred (-1 beside the width).
        (Layout::Tndh(_) | Layout::Tdnh(1) | Layout::Tnc, &[tt, n, w])
            if (tt == t || tt == 0 || tt == BATCH && cx.static_batch == Some(t))
                && (n == BATCH || n == 0 || n == -1 && w == width)
                && (w == width || w == -1) =>
        {
            Ok(Some(Layout::Tnc))
        }
        _ => Err(cx.unsupported(
            node,
            format!("shape {target:?} of a tensor with ONNX's batch on axis 1"),
        )),
    }
}

/// The non-batch shape of `Reshape(x, target)` for `x` of non-batch shape `from`: the first
/// entry must keep the batch axis (`0`, or `-1` with every other entry known).
fn batch_reshape(
    target: &[i64],
    from: &[usize],
    elems: usize,
    allowzero: bool,
) -> std::result::Result<Vec<usize>, LoadErrorKind> {
    let invalid = |m: &str| LoadErrorKind::Invalid(m.into());
    let Some((&first, rest)) = target.split_first() else {
        return Err(invalid("empty target shape"));
    };
    // BATCH: the batch size itself (from `Shape`, or the size a traced model was exported with).
    if !(first == 0 && !allowzero || first == -1 || first == BATCH) {
        return Err(LoadErrorKind::Unsupported(
            "the first entry must be 0 or -1 (keep the batch axis)".into(),
        ));
    }
    let mut shape = Vec::with_capacity(rest.len());
    let mut infer = None;
    for (i, &d) in rest.iter().enumerate() {
        match d {
            -1 if first == -1 => return Err(invalid("two -1 entries")),
            -1 if infer.is_some() => return Err(invalid("two -1 entries")),
            -1 => {
                infer = Some(i);
                shape.push(1);
            }
            0 if !allowzero => shape.push(
                *from
                    .get(i)
                    .ok_or_else(|| invalid("0 entry beyond the input rank"))?,
            ),
            d if d > 0 => shape.push(
                usize::try_from(d).map_err(|_| LoadErrorKind::Limit("entry too large".into()))?,
            ),
            // A 0 with `allowzero`: an empty tensor.
            0 => return Err(LoadErrorKind::Unsupported("invalid entry 0".into())),
            d => return Err(invalid(&format!("invalid entry {d}"))),
        }
    }
    let known = checked_elems(&shape).map_err(LoadErrorKind::Limit)?;
    if let Some(i) = infer {
        if known == 0 || !elems.is_multiple_of(known) {
            let m = format!("cannot infer -1 from {elems} values per sample");
            return Err(invalid(&m));
        }
        shape[i] = elems / known;
    } else if known != elems {
        let m = format!("needs {known} values per sample, the input has {elems}");
        return Err(invalid(&m));
    }
    Ok(shape)
}

/// `Squeeze` / `Unsqueeze` of non-batch axes of length 1: a view of the values in ONNX's
/// order. The axes are a constant input (opset 13 and later).
pub(super) fn squeeze(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    // A one-direction recurrent op's `Y` without its direction axis: `[T, N, H]`.
    let layout = cx.layout(node, 0);
    if layout.batch_not_first() {
        let axes = match node.input.get(1).filter(|n| !n.is_empty()) {
            Some(_) => cx.input_const(node, 1)?.i64.clone(),
            None => Converter::attr(node, "axes").map_or_else(Vec::new, |a| a.ints.clone()),
        };
        let x = cx.input_node(node, 0)?;
        let squeeze = node.op_type == "Squeeze";
        match (layout, &cx.nodes[x].shape[..], &axes[..]) {
            (Layout::Tdnh(1), _, [1] | [-3]) if squeeze => {
                cx.alias(node, x)?;
                return cx.set_layout(node, Layout::Tnc);
            }
            // One step of `[1, N, C]` without its step axis, or a one-direction last state
            // `[1, N, H]` without its direction axis: `[N, C]`, batch first again.
            (Layout::Tnc, &[1, c], [0] | [-3]) | (Layout::Dnh(1), &[c], [0] | [-3]) if squeeze => {
                return cx.view(node, x, vec![c]);
            }
            _ => {}
        }
        return Err(cx.unsupported(
            node,
            format!("axes {axes:?} of a tensor with ONNX's batch on axis 1"),
        ));
    }
    if let Some(layout) = cx.unit_relabel(node)? {
        let x = cx.input_node(node, 0)?;
        cx.values
            .insert(cx.output(node)?.to_string(), Value::Node(x));
        return cx.set_layout(node, layout);
    }
    let x = cx.native_input(node, 0)?;
    let from = cx.nodes[x].shape.clone();
    let squeeze = node.op_type == "Squeeze";
    let axes: Vec<i64> = match node.input.get(1).filter(|n| !n.is_empty()) {
        Some(_) => cx.input_const(node, 1)?.i64.clone(),
        None if squeeze => (1..=from.len() as i64)
            .filter(|&a| from[a as usize - 1] == 1)
            .collect(),
        None => return Err(cx.invalid(node, "Unsqueeze needs its axes input")),
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
            let m = format!("axes {axes:?}: only non-batch axes can be squeezed or unsqueezed");
            // The batch axis is valid ONNX; an axis out of range is not.
            return Err(if a == 0 {
                cx.unsupported(node, m)
            } else {
                cx.invalid(node, m)
            });
        }
        if norm.contains(&(a as usize)) {
            return Err(cx.invalid(node, format!("axes {axes:?} repeat an axis")));
        }
        norm.push(a as usize);
    }
    let shape: Vec<usize> = if squeeze {
        let mut s = Vec::new();
        for (k, &d) in from.iter().enumerate() {
            if norm.contains(&(k + 1)) {
                if d != 1 {
                    return Err(cx.invalid(node, format!("axis {} has length {d}, not 1", k + 1)));
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
    cx.view(node, x, shape)
}

/// `Slice` of a computed tensor (constants are sliced at load time) on ONNX's axis 0: the
/// steps `start..end` of a time-major `[T, N, C]` (tf2onnx's last step of a Keras LSTM,
/// `Y[-1:]`), or the rows of recurrent ops' last states `[D, N, H]` (PyTorch's `h_n[l:l+1]`
/// of one layer of a stack), a take along sinter's first axis.
pub(super) fn slice_steps(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let x = cx.input_node(node, 0)?;
    let ints = |cx: &Converter<'_>, i: usize| -> Result<Option<Vec<i64>>> {
        match node.input.get(i).filter(|n| !n.is_empty()) {
            Some(_) => Ok(Some(cx.input_const(node, i)?.i64.clone())),
            None => Ok(None),
        }
    };
    let (starts, ends) = (ints(cx, 1)?, ints(cx, 2)?);
    let (axes, steps) = (ints(cx, 3)?, ints(cx, 4)?);
    let (Some([start]), Some([end])) = (starts.as_deref(), ends.as_deref()) else {
        return Err(cx.unsupported(node, "a Slice of a computed tensor over more than one axis"));
    };
    let on_first = matches!(axes.as_deref(), None | Some([0] | [-3]));
    let shape = cx.nodes[x].shape.clone();
    // ONNX's rows along axis 0, and values of sinter's first axis per row.
    let (len, per) = match cx.layout(node, 0) {
        Layout::Tnc => (shape[0], 1),
        Layout::Dnh(d) if d > 0 => (d, shape[0] / d),
        _ => (0, 0),
    };
    if len == 0 || !on_first || steps.is_some_and(|s| s != [1]) {
        return Err(cx.unsupported(
            node,
            "a Slice of a computed tensor is supported only over axis 0 (step 1) of a \
             time-major tensor or of recurrent ops' last states",
        ));
    }
    let clamp = |v: i64| (if v < 0 { v + len as i64 } else { v }).clamp(0, len as i64) as usize;
    let rows = clamp(*start)..clamp(*end);
    if rows.is_empty() {
        return Err(cx.unsupported(node, "an empty Slice"));
    }
    let layout = match cx.layout(node, 0) {
        Layout::Dnh(_) => Layout::Dnh(rows.len()),
        l => l,
    };
    let layer = Layer::Primitive(Primitive::Take(TakeConfig {
        axis: 0,
        indices: rows.flat_map(|r| r * per..(r + 1) * per).collect(),
        squeeze: false,
    }));
    let out = layer
        .output_shape(&[&shape])
        .map_err(|m| cx.invalid(node, m))?;
    cx.push(cx.output(node)?, layer, vec![x], out, None);
    cx.name_last(node);
    cx.set_layout(node, layout)
}

/// `Concat` on axis 0 of recurrent ops' last states `[D, N, H]` (PyTorch's `h_n` of a
/// stacked `nn.LSTM`): sinter's `[D * H]` buffers joined.
fn last_states(cx: &mut Converter<'_>, node: &NodeProto, inputs: &[usize]) -> Result<()> {
    let axis = cx.attr_i(node, "axis")?.unwrap_or(0);
    let mut dirs = Vec::with_capacity(inputs.len());
    for i in 0..inputs.len() {
        match cx.layout(node, i) {
            Layout::Dnh(d) if matches!(axis, 0 | -3) => dirs.push(d),
            _ => {
                return Err(cx.unsupported(
                    node,
                    "a Concat of tensors with ONNX's batch on axis 1 is supported only for \
                     recurrent ops' last states, on axis 0",
                ));
            }
        }
    }
    let h = cx.nodes[inputs[0]].shape[0] / dirs[0].max(1);
    if inputs
        .iter()
        .zip(&dirs)
        .any(|(&x, &d)| cx.nodes[x].shape != [d * h])
    {
        return Err(cx.invalid(node, "the last states differ in width"));
    }
    let total: usize = dirs.iter().sum();
    let layer = Layer::Concatenate(ConcatenateConfig { axis: -1 });
    cx.push(
        cx.output(node)?,
        layer,
        inputs.to_vec(),
        vec![total * h],
        None,
    );
    cx.name_last(node);
    cx.set_layout(node, Layout::Dnh(total))
}

/// `Concat` of computed tensors of one layout, on any non-batch axis.
pub(super) fn concat(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let mut inputs = (0..node.input.len())
        .map(|i| cx.input_node(node, i))
        .collect::<Result<Vec<_>>>()?;
    if (0..inputs.len()).any(|i| cx.layout(node, i).batch_not_first()) {
        return last_states(cx, node, &inputs);
    }
    let mut layout = cx.layout(node, 0);
    let flat = (0..inputs.len()).any(|i| {
        matches!(
            cx.layout(node, i),
            Layout::FlatNcw { .. } | Layout::NcwUnit(_)
        )
    });
    if flat || (1..inputs.len()).any(|i| cx.layout(node, i) != layout) {
        // Mixed layouts (or channel-major flattens): join in ONNX's order.
        inputs = (0..node.input.len())
            .map(|i| cx.native_input(node, i))
            .collect::<Result<Vec<_>>>()?;
        layout = Layout::Native;
    }
    let first = inputs
        .first()
        .ok_or_else(|| cx.invalid(node, "no inputs"))?;
    let onnx_rank = match layout {
        Layout::Nc1 => 3,
        Layout::Nc11 => 4,
        _ => cx.nodes[*first].shape.len() as i64 + 1,
    };
    let mut axis = cx
        .attr_i(node, "axis")?
        .ok_or_else(|| cx.invalid(node, "axis is required"))?;
    if axis < 0 {
        axis += onnx_rank;
    }
    // Keras axis numbering on sinter's buffer (batch = 0).
    let keras_axis = match (layout, axis) {
        (Layout::Native, a) if a >= 1 && a < onnx_rank => a as isize,
        // Channels first: ONNX's axis 1 is sinter's last, the spatial axes move up one.
        (Layout::Ncw, 1) => onnx_rank as isize - 1,
        (Layout::Ncw, a) if a >= 2 && a < onnx_rank => a as isize - 1,
        (Layout::Nc1 | Layout::Nc11, 1) => 1,
        _ => {
            let m = format!("axis {axis} is not a non-batch axis");
            // An axis of the tensor (the batch axis, or one the layout does not allow) is
            // valid ONNX; one out of range is not.
            return Err(if (0..onnx_rank).contains(&axis) {
                cx.unsupported(node, m)
            } else {
                cx.invalid(node, m)
            });
        }
    };
    let layer = Layer::Concatenate(ConcatenateConfig { axis: keras_axis });
    let shapes: Vec<&[usize]> = inputs
        .iter()
        .map(|&i| cx.nodes[i].shape.as_slice())
        .collect();
    let shape = layer
        .output_shape(&shapes)
        .map_err(|m| cx.invalid(node, m))?;
    cx.push(cx.output(node)?, layer, inputs, shape, None);
    cx.name_last(node);
    cx.set_layout(node, layout)
}

/// `Gather(table, ids, axis=0)` with a constant `[V, D]` table and integer graph-input ids:
/// an Embedding.
pub(super) fn gather(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let axis = cx.attr_i(node, "axis")?.unwrap_or(0);
    if let (Value::Node(x), Value::Const(_)) = (cx.value(node, 0)?, cx.value(node, 1)?) {
        return take(cx, node, *x, axis);
    }
    if axis != 0 {
        return Err(cx.unsupported(node, "only axis 0 (rows of a constant table) is supported"));
    }
    let dims = cx.input_const(node, 0)?.dims.clone();
    let ids = cx.input_node(node, 1)?;
    let [vocab, dim] = dims[..] else {
        return Err(cx.unsupported(
            node,
            format!("data has shape {dims:?}, expected a [V, D] table"),
        ));
    };
    if cx.nodes[ids].layer != Layer::Input || cx.nodes[ids].dtype == DType::F32 {
        return Err(cx.unsupported(node, "indices must be an integer graph input"));
    }
    // The table moves into the layer when nothing else reads it.
    let (_, table) = cx.take_const_f32(node, 0)?;
    let layer = Layer::Embedding(EmbeddingConfig {
        input_dim: vocab,
        output_dim: dim,
    });
    let shape = layer
        .output_shape(&[&cx.nodes[ids].shape.clone()])
        .map_err(|m| cx.invalid(node, m))?;
    let weights = DenseWeights {
        kernel: table,
        bias: None,
    };
    cx.push(cx.output(node)?, layer, vec![ids], shape, Some(weights));
    cx.name_last(node);
    Ok(())
}

pub(super) fn dropout(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let x = cx.input_node(node, 0)?;
    if node.output.get(1).is_some_and(|m| !m.is_empty()) {
        return Err(cx.unsupported(node, "the mask output is not supported"));
    }
    if node.input.get(2).is_some_and(|t| !t.is_empty()) {
        let t = cx.input_const(node, 2)?;
        if t.i64.iter().any(|&v| v != 0) || t.f32.iter().any(|&v| v != 0.0) {
            return Err(cx.unsupported(node, "training_mode=true is not supported"));
        }
    }
    let rate = match node.input.get(1).filter(|s| !s.is_empty()) {
        Some(_) => {
            let r = cx.input_const(node, 1)?;
            r.f32.first().copied().unwrap_or(0.5)
        }
        None => 0.5,
    };
    if !(0.0..1.0).contains(&rate) {
        return Err(cx.invalid(node, format!("ratio {rate} is not in [0, 1)")));
    }
    let shape = cx.nodes[x].shape.clone();
    cx.push(
        cx.output(node)?,
        Layer::Dropout(DropoutConfig { rate }),
        vec![x],
        shape,
        None,
    );
    cx.name_last(node);
    // Identity at inference: the layout passes through.
    let layout = cx.layout(node, 0);
    cx.set_layout(node, layout)
}

/// `ai.onnx.ml` `ArrayFeatureExtractor(classes, labels)` as skl2onnx writes a classifier's
/// label: the class of each ArgMax index. Classes `0..n` are the indices themselves (no
/// step); other class labels are refused by name.
pub(super) fn array_feature_extractor(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let classes = cx.input_const(node, 0)?;
    let x = cx.input_node(node, 1)?;
    if cx.nodes[x].dtype == DType::F32 {
        return Err(cx.invalid(node, "the indices must be integers (an ArgMax)"));
    }
    let identity = classes.f32.is_empty()
        && classes.dims.len() <= 1
        && classes.i64.iter().enumerate().all(|(k, &c)| c == k as i64);
    if !identity {
        return Err(cx.unsupported(
            node,
            format!(
                "class labels other than 0..n are not supported (the model's: {:?}); \
                 serve the ArgMax or the probabilities instead",
                &classes.i64[..classes.i64.len().min(8)]
            ),
        ));
    }
    cx.alias(node, x)
}

/// `Identity` of a computed tensor: the same node, under another name.
pub(super) fn identity(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let x = cx.input_node(node, 0)?;
    cx.alias(node, x)
}

/// `Constant`: a value known at load time (no node).
pub(super) fn constant(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let c = cx.constant_node(node)?;
    cx.values
        .insert(cx.output(node)?.to_string(), Value::Const(c));
    Ok(())
}

/// `Gather` of a computed tensor by constant indices along a non-batch axis.
fn take(cx: &mut Converter<'_>, node: &NodeProto, x: usize, axis: i64) -> Result<()> {
    if cx.layout(node, 0) == Layout::Tnc && matches!(axis, 0 | -3) {
        // One step of a time-major `[T, N, C]` (`y[-1]`): a take along sinter's first axis.
        return take_at(cx, node, x, 0);
    }
    if let (Layout::Dnh(d), 0 | -3) = (cx.layout(node, 0), axis) {
        // One of the last states `[D, N, H]` (`h_n[-1]`): a take of `[D, H]`'s rows.
        let h = cx.nodes[x].shape[0] / d.max(1);
        let rows = Layer::Reshape(ReshapeConfig {
            target_shape: vec![d as isize, h as isize],
        });
        cx.nodes.push(crate::model::Node::new(
            String::new(),
            rows,
            vec![x],
            vec![d, h],
            None,
        ));
        let rows = cx.nodes.len() - 1;
        return take_at(cx, node, rows, 0);
    }
    if cx.layout(node, 0) != Layout::Native {
        return Err(cx.unsupported(node, "a gather of a channels-first tensor"));
    }
    let shape = cx.nodes[x].shape.clone();
    let rank = shape.len() as i64 + 1;
    let a = if axis < 0 { axis + rank } else { axis };
    if a < 1 || a >= rank {
        return Err(cx.unsupported(
            node,
            format!("axis {axis}: only a non-batch axis of a computed tensor"),
        ));
    }
    take_at(cx, node, x, (a - 1) as usize)
}

/// `Gather` by constant indices along sinter's axis `a` of `x`.
fn take_at(cx: &mut Converter<'_>, node: &NodeProto, x: usize, a: usize) -> Result<()> {
    let shape = cx.nodes[x].shape.clone();
    let idx = cx.input_const(node, 1)?.clone();
    if !idx.f32.is_empty() || idx.dims.len() > 1 {
        return Err(cx.unsupported(node, "indices must be a scalar or a 1-D integer constant"));
    }
    let len = shape[a] as i64;
    let indices = idx
        .i64
        .iter()
        .map(|&i| {
            let i = if i < 0 { i + len } else { i };
            usize::try_from(i).ok().filter(|&i| (i as i64) < len)
        })
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| cx.invalid(node, format!("an index is outside 0..{len}")))?;
    let layer = Layer::Primitive(Primitive::Take(TakeConfig {
        axis: a,
        indices,
        squeeze: idx.dims.is_empty(),
    }));
    let out = layer
        .output_shape(&[&shape])
        .map_err(|m| cx.invalid(node, m))?;
    cx.push(cx.output(node)?, layer, vec![x], out, None);
    cx.name_last(node);
    Ok(())
}

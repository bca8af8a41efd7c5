//! `BatchNormalization` and `LayerNormalization`.

use crate::error::Result;
use crate::io::onnx::convert::Converter;
use crate::io::onnx::layout::Layout;
use crate::io::onnx::proto::NodeProto;
use crate::model::{ChannelNorm, Layer, RowNorm};

/// `BatchNormalization` at inference, over the channel axis: the last axis of sinter's
/// buffer for `[N, C]` and for a channels-first `[N, C, W]` held channels-last.
pub(super) fn batch_norm(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    if cx.attr_i(node, "training_mode")?.unwrap_or(0) != 0 {
        return Err(cx.unsupported(node, "training_mode=1 is not supported (inference only)"));
    }
    if node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(cx.unsupported(node, "running mean/var outputs are training-only"));
    }
    let x0 = cx.input_node(node, 0)?;
    let (x, ch, layout) = match (cx.layout(node, 0), cx.nodes[x0].shape.clone().as_slice()) {
        (_, &[c]) => (x0, c, cx.layout(node, 0)),
        (Layout::Ncw, &[.., c]) => (x0, c, Layout::Ncw),
        (Layout::Native, &[_, _]) => {
            let (t, _, c) = cx.ncw_input(node)?;
            (t, c, Layout::Ncw)
        }
        (Layout::Native, &[_, _, _]) => {
            let (t, _, c) = cx.nchw_input(node)?;
            (t, c, Layout::Ncw)
        }
        (_, s) => {
            return Err(cx.unsupported(
                node,
                format!("input of shape {s:?}: expected [N, C], [N, C, W] or [N, C, H, W]"),
            ));
        }
    };
    let n = ChannelNorm {
        axis: -1,
        epsilon: cx.attr_f(node, "epsilon")?.unwrap_or(1e-5),
        gamma: Some(cx.channel_const(node, 1, ch, "scale")?),
        beta: Some(cx.channel_const(node, 2, ch, "B")?),
        mean: cx.channel_const(node, 3, ch, "input_mean")?,
        variance: cx.channel_const(node, 4, ch, "input_var")?,
    };
    let layer = Layer::BatchNormalization(n);
    let shape = cx.nodes[x].shape.clone();
    layer
        .output_shape(&[&shape])
        .map_err(|m| cx.invalid(node, m))?;
    cx.push(cx.output(node)?, layer, vec![x], shape, None);
    cx.name_last(node);
    cx.set_layout(node, layout)
}

/// `LayerNormalization` over the last axis (opset 17), read in ONNX's order.
pub(super) fn layer_norm(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let x = cx.native_input(node, 0)?;
    let shape = cx.nodes[x].shape.clone();
    let rank = shape.len() as i64 + 1;
    let axis = cx.attr_i(node, "axis")?.unwrap_or(-1);
    if axis != -1 && axis != rank - 1 {
        return Err(cx.unsupported(
            node,
            format!("axis {axis} of a rank-{rank} tensor: only the last axis is supported"),
        ));
    }
    if node
        .output
        .iter()
        .skip(1)
        .any(|o| !o.is_empty() && cx.uses.contains_key(o.as_str()))
    {
        return Err(cx.unsupported(node, "the Mean / InvStdDev outputs are not supported"));
    }
    let ch = *shape.last().unwrap_or(&0);
    // No scale: the `layer_norm_tf2onnx` pattern's normalization (its gamma follows).
    let gamma = match node.input.get(1).filter(|n| !n.is_empty()) {
        Some(_) => Some(cx.channel_const(node, 1, ch, "Scale")?),
        None => None,
    };
    let beta = match node.input.get(2).filter(|n| !n.is_empty()) {
        Some(_) => Some(cx.channel_const(node, 2, ch, "B")?),
        None => None,
    };
    let layer = Layer::LayerNormalization(RowNorm {
        axis: -1,
        epsilon: cx.attr_f(node, "epsilon")?.unwrap_or(1e-5),
        gamma,
        beta,
        rms: false,
    });
    layer
        .output_shape(&[&shape])
        .map_err(|m| cx.invalid(node, m))?;
    cx.push(cx.output(node)?, layer, vec![x], shape, None);
    cx.name_last(node);
    Ok(())
}

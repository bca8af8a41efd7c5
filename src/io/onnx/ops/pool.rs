//! `MaxPool`, `AveragePool` and the global poolings.

use super::conv::{attr_1d, attr_2d, window_padding, window_padding_axis};
use crate::error::Result;
use crate::io::onnx::convert::Converter;
use crate::io::onnx::layout::Layout;
use crate::io::onnx::proto::NodeProto;
use crate::model::{
    AveragePooling1DConfig, AveragePooling2DConfig, GlobalPooling2D, MaxPooling1DConfig,
    MaxPooling2DConfig,
};
use crate::model::{Layer, Padding};

/// `MaxPool` / `AveragePool` (1-D) on a channels-first view.
pub(super) fn pool(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    if node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(cx.unsupported(node, "the Indices output is not supported"));
    }
    if Converter::attr(node, "kernel_shape").is_some_and(|a| a.ints.len() == 2) {
        return pool2d(cx, node);
    }
    let (x, steps, ch) = cx.ncw_input(node)?;
    let size = attr_1d(cx, node, "kernel_shape", 0)?;
    if size == 0 {
        return Err(cx.invalid(node, "kernel_shape is required"));
    }
    let stride = attr_1d(cx, node, "strides", 1)?;
    if attr_1d(cx, node, "dilations", 1)? != 1 {
        return Err(cx.unsupported(node, "dilations are not supported for pooling"));
    }
    let ceil = cx.attr_i(node, "ceil_mode")?.unwrap_or(0) != 0;
    let mut padding = window_padding(cx, node, steps, size, stride, 1, ceil)?;
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
        return Err(cx.invalid(
            node,
            format!("pads [{left}, {right}]: a window of {size} would see only padding"),
        ));
    }
    let max = node.op_type == "MaxPool";
    if !max && padding != Padding::Valid && cx.attr_i(node, "count_include_pad")?.unwrap_or(0) != 0
    {
        return Err(cx.unsupported(
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
        .map_err(|m| cx.invalid(node, m))?;
    cx.push(cx.output(node)?, layer, vec![x], shape, None);
    cx.name_last(node);
    cx.set_layout(node, Layout::Ncw)
}

/// `MaxPool` / `AveragePool` (2-D) on a channels-first `[N, C, H, W]` view.
fn pool2d(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let (x, (h, w), ch) = cx.nchw_input(node)?;
    let size = attr_2d(cx, node, "kernel_shape", (0, 0))?;
    let strides = attr_2d(cx, node, "strides", (1, 1))?;
    if attr_2d(cx, node, "dilations", (1, 1))? != (1, 1) {
        return Err(cx.unsupported(node, "dilations are not supported for pooling"));
    }
    let ceil = cx.attr_i(node, "ceil_mode")?.unwrap_or(0) != 0;
    let pad = |axis, len, k, s| {
        let p = window_padding_axis(cx, node, (axis, 2), len, k, s, 1, ceil)?;
        match p {
            Padding::Causal => Ok(Padding::Explicit {
                left: k - 1,
                right: 0,
            }),
            Padding::Explicit { left, right } if left >= k || right >= k => Err(cx.invalid(
                node,
                format!("pads [{left}, {right}]: a window of {k} would see only padding"),
            )),
            p => Ok(p),
        }
    };
    let padding = (pad(0, h, size.0, strides.0)?, pad(1, w, size.1, strides.1)?);
    let max = node.op_type == "MaxPool";
    if !max
        && padding != (Padding::Valid, Padding::Valid)
        && cx.attr_i(node, "count_include_pad")?.unwrap_or(0) != 0
    {
        return Err(cx.unsupported(
            node,
            "count_include_pad=1 is not supported (Keras excludes padding)",
        ));
    }
    let layer = if max {
        Layer::MaxPooling2D(MaxPooling2DConfig {
            pool_size: size,
            strides,
            padding,
        })
    } else {
        Layer::AveragePooling2D(AveragePooling2DConfig {
            pool_size: size,
            strides,
            padding,
        })
    };
    let shape = layer
        .output_shape(&[&[h, w, ch]])
        .map_err(|m| cx.invalid(node, m))?;
    cx.push(cx.output(node)?, layer, vec![x], shape, None);
    cx.name_last(node);
    cx.set_layout(node, Layout::Ncw)
}

/// `GlobalMaxPool` / `GlobalAveragePool` on a channels-first view: `[N, C, 1]` (or
/// `[N, C, 1, 1]` from `[N, C, H, W]`).
pub(super) fn global_pool(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let x0 = cx.input_node(node, 0)?;
    if cx.nodes[x0].shape.len() == 3 {
        let (x, _, ch) = cx.nchw_input(node)?;
        let layer = if node.op_type == "GlobalMaxPool" {
            Layer::GlobalMaxPooling2D(GlobalPooling2D { keepdims: false })
        } else {
            Layer::GlobalAveragePooling2D(GlobalPooling2D { keepdims: false })
        };
        cx.push(cx.output(node)?, layer, vec![x], vec![ch], None);
        cx.name_last(node);
        return cx.set_layout(node, Layout::Nc11);
    }
    let (x, _, ch) = cx.ncw_input(node)?;
    let layer = if node.op_type == "GlobalMaxPool" {
        Layer::GlobalMaxPooling1D
    } else {
        Layer::GlobalAveragePooling1D
    };
    cx.push(cx.output(node)?, layer, vec![x], vec![ch], None);
    cx.name_last(node);
    cx.set_layout(node, Layout::Nc1)
}

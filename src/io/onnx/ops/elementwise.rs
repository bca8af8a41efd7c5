//! Elementwise ops: activations, softmax, unary functions, `Pow`, `Clip`, `Cast`.

use crate::error::Result;
use crate::io::onnx::convert::{Converter, dtype_name};
use crate::io::onnx::layout::Layout;
use crate::io::onnx::proto::{NodeProto, dtype};
use crate::kernels::Activation;
use crate::model::{DType, Layer, Node, Unary};

/// An elementwise function: keeps the input's layout.
pub(in crate::io::onnx) fn unary(cx: &mut Converter<'_>, node: &NodeProto, u: Unary) -> Result<()> {
    let x = cx.input_node(node, 0)?;
    let layout = cx.layout(node, 0);
    cx.same_shape(node, Layer::Unary(u), x, layout)
}

/// `Pow(x, p)` with a constant scalar exponent.
pub(in crate::io::onnx) fn pow(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    match cx.scalar_input(node, 1) {
        Ok(Some(p)) if p.is_finite() => unary(cx, node, Unary::Pow(p)),
        _ => Err(cx.node_fail(node, "only a constant scalar exponent is supported")),
    }
}

/// `Clip(x, min, max)` (opset 13: bounds as optional constant inputs). `Clip(0, m)` is a
/// ReLU with a ceiling, which fuses into a producing GEMM.
pub(in crate::io::onnx) fn clip(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let min = cx.scalar_input(node, 1)?.unwrap_or(f32::NEG_INFINITY);
    let max = cx.scalar_input(node, 2)?.unwrap_or(f32::INFINITY);
    if min.is_nan() || max.is_nan() || min > max {
        return Err(cx.node_fail(node, format!("bounds [{min}, {max}]")));
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
        let x = cx.input_node(node, 0)?;
        let layout = cx.layout(node, 0);
        return cx.same_shape(node, Layer::Activation(a), x, layout);
    }
    unary(cx, node, Unary::Clip { min, max })
}

/// `Cast`: float to float is the identity; an integer tensor (ids) cast to another integer
/// type keeps its values (ids are checked against the table when they are used). Anything
/// else (float to integer, to bool or string) is refused.
pub(in crate::io::onnx) fn cast(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let to = cx.attr_i(node, "to")?.unwrap_or(0) as i32;
    let x = cx.input_node(node, 0)?;
    let from = cx.nodes[x].dtype;
    let ok = match from {
        DType::F32 => to == dtype::FLOAT,
        DType::I32 | DType::I64 => to == dtype::INT32 || to == dtype::INT64,
    };
    if !ok {
        return Err(cx.node_fail(
            node,
            format!(
                "a cast from {from:?} to {} is not supported",
                dtype_name(to)
            ),
        ));
    }
    cx.alias(node, x)
}

/// Softmax over a non-last, non-batch axis: the axis swapped with the last one (a real
/// transpose), the row-wise softmax, and the transpose back.
pub(in crate::io::onnx) fn softmax_inner_axis(
    cx: &mut Converter<'_>,
    node: &NodeProto,
    a: Activation,
    axis: usize,
) -> Result<()> {
    let x = cx.native_input(node, 0)?;
    let shape = cx.nodes[x].shape.clone();
    let rank = shape.len();
    // Keras Permute numbering (1-based, batch excluded): swap `axis` and the last.
    let mut dims: Vec<usize> = (1..=rank).collect();
    dims.swap(axis - 1, rank - 1);
    let mut swapped = shape.clone();
    swapped.swap(axis - 1, rank - 1);
    let mut at = x;
    for (layer, s) in [
        (Layer::Permute { dims: dims.clone() }, swapped.clone()),
        (Layer::Activation(a), swapped),
    ] {
        cx.nodes
            .push(Node::new(String::new(), layer, vec![at], s, None));
        at = cx.nodes.len() - 1;
    }
    cx.push(
        cx.output(node)?,
        Layer::Permute { dims },
        vec![at],
        shape,
        None,
    );
    cx.name_last(node);
    cx.set_layout(node, Layout::Native)
}

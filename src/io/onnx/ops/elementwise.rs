//! Elementwise ops: activations (`Relu` to `Gelu`), `Softmax` and `LogSoftmax`, the
//! functions of [`Unary`], `Pow`, `Clip` and `Cast`.

use crate::error::Result;
use crate::io::onnx::convert::{Converter, dtype_name};
use crate::io::onnx::layout::Layout;
use crate::io::onnx::proto::{NodeProto, dtype};
use crate::kernels::Activation;
use crate::kernels::{SELU_ALPHA, SELU_SCALE};
use crate::model::{DType, Layer, Node, Unary};
use crate::model::{PermuteConfig, Primitive};

/// An activation of input 0. Elementwise ones keep a tracked layout; a row-wise one reduces
/// over ONNX's last axis, so it reads the values in ONNX's order.
pub(super) fn activation(cx: &mut Converter<'_>, node: &NodeProto, a: Activation) -> Result<()> {
    let (x, layout) = if a.is_row_wise() {
        (cx.native_input(node, 0)?, Layout::Native)
    } else {
        (cx.input_node(node, 0)?, cx.layout(node, 0))
    };
    cx.same_shape(node, Layer::Activation(a), x, layout)
}

/// `Selu` with the standard constants (Keras's `selu`).
pub(super) fn selu(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let alpha = cx.attr_f(node, "alpha")?.unwrap_or(SELU_ALPHA);
    let gamma = cx.attr_f(node, "gamma")?.unwrap_or(SELU_SCALE);
    if alpha != SELU_ALPHA || gamma != SELU_SCALE {
        return Err(cx.unsupported(
            node,
            format!(
                "Selu with alpha={alpha}, gamma={gamma}: only the standard constants \
                 ({SELU_ALPHA}, {SELU_SCALE}) are supported"
            ),
        ));
    }
    activation(cx, node, Activation::Selu)
}

/// `HardSigmoid`: `max(0, min(1, alpha x + beta))`.
pub(super) fn hard_sigmoid(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let alpha = cx.attr_f(node, "alpha")?.unwrap_or(0.2);
    let beta = cx.attr_f(node, "beta")?.unwrap_or(0.5);
    if !(alpha.is_finite() && beta.is_finite()) {
        return Err(cx.invalid(node, format!("alpha={alpha}, beta={beta}")));
    }
    activation(cx, node, Activation::HardSigmoidAffine { alpha, beta })
}

/// `Swish` with `alpha` 1: SiLU.
pub(super) fn swish(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    match cx.attr_f(node, "alpha")?.unwrap_or(1.0) {
        1.0 => activation(cx, node, Activation::Silu),
        a => Err(cx.unsupported(node, format!("alpha={a}: only 1 (SiLU)"))),
    }
}

/// `Gelu`, exact or with the tanh approximation.
pub(super) fn gelu(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let approximate = match cx.attr_s(node, "approximate")?.as_deref() {
        None | Some("none") => false,
        Some("tanh") => true,
        Some(other) => return Err(cx.invalid(node, format!("approximate={other:?}"))),
    };
    activation(cx, node, Activation::Gelu { approximate })
}

/// `Softmax` / `LogSoftmax` (`a`) over a non-batch axis: the channels of a tracked
/// channels-first tensor in place, the last axis row by row, another axis between transposes.
pub(super) fn softmax(cx: &mut Converter<'_>, node: &NodeProto, a: Activation) -> Result<()> {
    let x = cx.input_node(node, 0)?;
    let layout = cx.layout(node, 0);
    let rank = layout.onnx_dims(&cx.nodes[x].shape).len() as i64 + 1;
    let mut axis = cx.attr_i(node, "axis")?.unwrap_or(-1);
    if axis < 0 {
        axis += rank;
    }
    if axis <= 0 || axis >= rank {
        let m = format!("axis {axis} of a rank-{rank} tensor: only a non-batch axis is supported");
        // The batch axis is valid ONNX; an axis out of range is not.
        return Err(if axis == 0 {
            cx.unsupported(node, m)
        } else {
            cx.invalid(node, m)
        });
    }
    if layout == Layout::Ncw && axis == 1 {
        // The channels: sinter's last axis. No transpose.
        return cx.same_shape(node, Layer::Activation(a), x, Layout::Ncw);
    }
    if axis != rank - 1 {
        return softmax_inner_axis(cx, node, a, axis as usize);
    }
    activation(cx, node, a)
}

/// An elementwise function: keeps the input's layout.
pub(super) fn unary(cx: &mut Converter<'_>, node: &NodeProto, u: Unary) -> Result<()> {
    let x = cx.input_node(node, 0)?;
    let layout = cx.layout(node, 0);
    cx.same_shape(node, Layer::Primitive(Primitive::Unary(u)), x, layout)
}

/// `Pow(x, p)` with a constant scalar exponent.
pub(super) fn pow(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    match cx.scalar_input(node, 1) {
        Ok(Some(p)) if p.is_finite() => unary(cx, node, Unary::Pow(p)),
        _ => Err(cx.unsupported(node, "only a constant scalar exponent is supported")),
    }
}

/// `Clip(x, min, max)` (opset 13: bounds as optional constant inputs). `Clip(0, m)` is a
/// ReLU with a ceiling, which fuses into a producing GEMM.
pub(super) fn clip(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let min = cx.scalar_input(node, 1)?.unwrap_or(f32::NEG_INFINITY);
    let max = cx.scalar_input(node, 2)?.unwrap_or(f32::INFINITY);
    if min.is_nan() || max.is_nan() || min > max {
        return Err(cx.unsupported(node, format!("bounds [{min}, {max}]")));
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
pub(super) fn cast(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let to = cx.attr_i(node, "to")?.unwrap_or(0) as i32;
    let x = cx.input_node(node, 0)?;
    let from = cx.nodes[x].dtype;
    let ok = match from {
        DType::F32 => to == dtype::FLOAT,
        DType::I32 | DType::I64 => to == dtype::INT32 || to == dtype::INT64,
        DType::Bool => to == dtype::BOOL,
    };
    if !ok {
        return Err(cx.unsupported(
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
fn softmax_inner_axis(
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
        (
            Layer::Permute(PermuteConfig { dims: dims.clone() }),
            swapped.clone(),
        ),
        (Layer::Activation(a), swapped),
    ] {
        cx.nodes
            .push(Node::new(String::new(), layer, vec![at], s, None));
        at = cx.nodes.len() - 1;
    }
    cx.push(
        cx.output(node)?,
        Layer::Permute(PermuteConfig { dims }),
        vec![at],
        shape,
        None,
    );
    cx.name_last(node);
    cx.set_layout(node, Layout::Native)
}

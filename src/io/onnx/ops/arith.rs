//! Arithmetic: `Add`, `Sub`, `Mul`, `Div` of two computed tensors or of one and a constant
//! (broadcast per channel), and the variadic `Sum`, `Mean`, `Max`, `Min`.

use super::gemm::broadcast_bias;
use crate::error::Result;
use crate::io::onnx::convert::{Converter, Value, join};
use crate::io::onnx::layout::Layout;
use crate::io::onnx::proto::NodeProto;
use crate::kernels::Activation;
use crate::model::{AddConstConfig, AffineConfig, DenseConfig, Primitive};
use crate::model::{Layer, Merge, Unary};

/// `Add(MatMul(..), b)` (the MatMul's bias) or `Add(x, y)` of two computed tensors.
pub(super) fn add(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    if let (Value::Node(a), Value::Node(b)) = (cx.value(node, 0)?, cx.value(node, 1)?) {
        let (mut a, mut b) = (*a, *b);
        let mut layout = cx.layout(node, 0);
        if layout != cx.layout(node, 1) {
            // Mixed layouts: add in ONNX's order.
            (a, b) = (cx.native_input(node, 0)?, cx.native_input(node, 1)?);
            layout = Layout::Native;
        }
        if cx.nodes[a].shape != cx.nodes[b].shape {
            return Err(cx.unsupported(
                node,
                "Add of tensors of different shapes (broadcasting is not supported)",
            ));
        }
        let shape = cx.nodes[a].shape.clone();
        cx.push(
            cx.output(node)?,
            Layer::Merge(Merge::Add),
            vec![a, b],
            shape,
            None,
        );
        cx.name_last(node);
        return cx.set_layout(node, layout);
    }
    let (x, c) = match (cx.value(node, 0)?, cx.value(node, 1)?) {
        (Value::Node(x), Value::Const(c)) | (Value::Const(c), Value::Node(x)) => (*x, c.clone()),
        _ => {
            return Err(cx.unsupported(node, "only Add(MatMul(x, W), constant bias) is supported"));
        }
    };
    let producer = node
        .input
        .iter()
        .find(|n| matches!(cx.values.get(*n), Some(Value::Node(_))))
        .map(String::as_str)
        .unwrap_or_default();
    let single_use = cx.uses.get(producer) == Some(&1);
    let target = &cx.nodes[x];
    let Layer::Dense(DenseConfig {
        units,
        use_bias: false,
        ..
    }) = target.layer
    else {
        return const_affine(cx, node);
    };
    if !single_use || broadcast_bias(&c, units).is_none() {
        // Not the MatMul's own bias: a per-channel shift after it.
        return const_affine(cx, node);
    }
    let bias = broadcast_bias(&c, units).ok_or_else(|| {
        cx.invalid(
            node,
            format!(
                "bias has shape {:?}; expected [{units}] or [1, {units}]",
                c.dims
            ),
        )
    })?;
    let target = &mut cx.nodes[x];
    target.layer = Layer::Dense(DenseConfig {
        units,
        activation: Activation::Linear,
        use_bias: true,
    });
    if let Some(w) = target.weights.as_mut() {
        w.bias = Some(bias);
    }
    cx.alias(node, x)
}

/// `Sub` / `Mul` / `Div` of two computed tensors of one shape, or of a computed tensor and
/// a constant (see [`Self::const_affine`]).
pub(super) fn binary(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let consts = (0..2)
        .filter(|&i| matches!(cx.value(node, i), Ok(Value::Const(_))))
        .count();
    if consts > 0 {
        return const_affine(cx, node);
    }
    let m = match node.op_type.as_str() {
        "Sub" => Merge::Subtract,
        "Mul" => Merge::Multiply,
        _ => {
            return Err(cx.unsupported(
                node,
                "Div of two computed tensors is not supported (only by a constant)",
            ));
        }
    };
    merge(cx, node, m, 2)
}

/// `Add`, `Sub`, `Mul` or `Div` of a computed tensor and a constant that is a scalar or
/// one value per channel of the tensor's last axis (as sinter holds it: a channels-first
/// `[C, 1]` constant on a tracked `[N, C, W]` tensor is per channel too). Add, Sub and Mul
/// become one [`Layer::Affine`] (`x * s + t`, exact: one of `s`, `t` is the identity);
/// Div by a scalar is a true division ([`Unary::Div`]), by a vector only when every
/// divisor is a power of two (its reciprocal is exact).
fn const_affine(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let (x_at, c) = match (cx.value(node, 0)?, cx.value(node, 1)?) {
        (Value::Node(_), Value::Const(c)) => (0, c.clone()),
        (Value::Const(c), Value::Node(_)) => (1, c.clone()),
        _ => return Err(cx.unsupported(node, "needs one computed input and one constant")),
    };
    if c.f32.is_empty() {
        return Err(cx.unsupported(node, "the constant is not a float tensor"));
    }
    let (mut x, mut layout) = (cx.input_node(node, x_at)?, cx.layout(node, x_at));
    if matches!(layout, Layout::FlatNcw { .. } | Layout::NcwUnit(_)) && c.f32.len() > 1 {
        // Per-feature constants are in ONNX's (channel-major) order.
        x = cx.native_input(node, x_at)?;
        layout = Layout::Native;
    }
    let shape = cx.nodes[x].shape.clone();
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
        Layout::Ncw | Layout::Nc1 | Layout::Nc11 => 1,
        // Refused before any op but the time-major readers sees them: no channel axis here.
        Layout::Tnc | Layout::Tdnh(_) | Layout::Tndh(_) | Layout::Dnh(_) | Layout::N => 0,
    };
    let fits = c.dims.len() <= rank
        && c.dims.iter().rev().enumerate().all(|(k, &d)| {
            let axis = rank - 1 - k;
            d == 1 || (d == onnx_shape[axis] && axis == channel_axis && axis > 0)
        });
    // A constant of the sample's own shape (after a leading batch axis of 1).
    let whole = {
        let mut d: &[usize] = &c.dims;
        while d.len() > shape.len() && d.first() == Some(&1) {
            d = &d[1..];
        }
        d == shape.as_slice() && layout == Layout::Native && c.f32.len() > ch
    };
    if whole && matches!((node.op_type.as_str(), x_at), ("Add", _) | ("Sub", 0)) {
        let values = match node.op_type.as_str() {
            "Sub" => c.f32.iter().map(|v| -v).collect(),
            _ => c.f32.clone(),
        };
        let layer = Layer::Primitive(Primitive::AddConst(AddConstConfig { values }));
        cx.push(cx.output(node)?, layer, vec![x], shape, None);
        cx.name_last(node);
        return Ok(());
    }
    if !fits {
        return Err(cx.unsupported(
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
        return Err(cx.unsupported(node, "the constant must be finite, one value per channel"));
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
        ("Div", 0) if c.f32.len() == 1 => Layer::Primitive(Primitive::Unary(Unary::Div(c.f32[0]))),
        ("Div", 0) => {
            let exact = values.iter().all(|&d| {
                let r = 1.0 / d;
                r.is_normal() && d.is_normal() && (d.to_bits() & 0x007f_ffff) == 0
            });
            if !exact {
                return Err(cx.unsupported(
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
            return Err(cx.unsupported(node, "a constant divided by a tensor is not supported"));
        }
    };
    cx.same_shape(node, layer, x, layout)
}

/// `Sum`, `Mean`, `Max`, `Min` (`m`) of one or more computed tensors of one shape.
pub(super) fn variadic(cx: &mut Converter<'_>, node: &NodeProto, m: Merge) -> Result<()> {
    let n = node.input.len();
    if n == 0 {
        return Err(cx.invalid(node, "no inputs"));
    }
    if n == 1 {
        let x = cx.input_node(node, 0)?;
        return cx.alias(node, x);
    }
    merge(cx, node, m, n)
}

/// An elementwise merge of `n` computed inputs of one shape (no broadcasting), in one
/// layout (inputs of mixed layouts are read in ONNX's order).
fn merge(cx: &mut Converter<'_>, node: &NodeProto, m: Merge, n: usize) -> Result<()> {
    if node.input.len() != n || n == 0 {
        return Err(cx.invalid(
            node,
            format!("{} inputs, expected {}", node.input.len(), n.max(1)),
        ));
    }
    let mut xs = Vec::with_capacity(n);
    for i in 0..n {
        if let Value::Const(_) = cx.value(node, i)? {
            return Err(cx.unsupported(
                node,
                "an elementwise op with a constant operand is not supported",
            ));
        }
        xs.push(cx.input_node(node, i)?);
    }
    let mut layout = cx.layout(node, 0);
    if (1..n).any(|i| cx.layout(node, i) != layout) {
        for (i, x) in xs.iter_mut().enumerate() {
            *x = cx.native_input(node, i)?;
        }
        layout = Layout::Native;
    }
    // One shape, or some broadcast over sinter's leading axes (a squeeze-and-excitation
    // scale: ONNX's `[N, C, 1, 1]` against `[N, C, H, W]`, held as `[1, 1, C]` and `[H, W, C]`).
    let shapes: Vec<Vec<usize>> = xs.iter().map(|&x| cx.nodes[x].shape.clone()).collect();
    let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
    let shape = Layer::Merge(m).output_shape(&refs).map_err(|e| {
        cx.unsupported(
            node,
            format!("inputs of shapes {shapes:?} (as held): {e}; only broadcasting over leading axes is supported"),
        )
    })?;
    cx.push(cx.output(node)?, Layer::Merge(m), xs, shape, None);
    cx.name_last(node);
    cx.set_layout(node, layout)
}

//! `Conv` (1-D and 2-D) and the window attributes it shares with pooling.

use super::OpFn;
use super::gemm::broadcast_bias;
use crate::error::Result;
use crate::io::onnx::convert::{Const, Converter, Value};
use crate::io::onnx::layout::Layout;
use crate::io::onnx::proto::NodeProto;
use crate::kernels::Activation;
use crate::model::{Conv1DConfig, Conv2DConfig, Conv2DTransposeConfig};
use crate::model::{DenseWeights, Layer, Padding};

/// `Conv`, `MaxPool` or `AveragePool`, converted by `op`: a 2-D window of height 1 on a
/// [`Layout::NcwUnit`] tensor runs as the 1-D op (see [`unit_window`]).
pub(super) fn window(cx: &mut Converter<'_>, node: &NodeProto, op: OpFn) -> Result<()> {
    match unit_window(cx, node)? {
        Some(one) => {
            op(cx, &one)?;
            let at = cx.layout(node, 0);
            cx.set_layout(node, at)
        }
        None => op(cx, node),
    }
}

/// `Conv` (1-D, group 1) on a channels-first view: a Conv1D on the channels-last buffer.
pub(super) fn conv(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    if cx.input_const(node, 1)?.dims.len() == 4 {
        return conv2d(cx, node);
    }
    let (x, steps, ch) = cx.ncw_input(node)?;
    if cx.attr_i(node, "group")?.unwrap_or(1) != 1 {
        return Err(cx.unsupported(node, "grouped convolutions are not supported"));
    }
    let w = cx.input_const(node, 1)?.clone();
    let [filters, cin, k] = w.dims[..] else {
        return Err(cx.invalid(
            node,
            format!("W has shape {:?}, expected [M, C, k]", w.dims),
        ));
    };
    if cin != ch || filters == 0 || k == 0 {
        return Err(cx.invalid(
            node,
            format!("W has shape {:?} for {ch} input channels", w.dims),
        ));
    }
    let size = attr_1d(cx, node, "kernel_shape", k)?;
    let stride = attr_1d(cx, node, "strides", 1)?;
    let dilation = attr_1d(cx, node, "dilations", 1)?;
    if size != k {
        return Err(cx.invalid(node, format!("kernel_shape {size} but W has {k} taps")));
    }
    let padding = window_padding(cx, node, steps, k, stride, dilation, false)?;
    if w.f32.len() != filters * ch * k {
        return Err(cx.invalid(node, "W must be a float tensor"));
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
            let b = cx.input_const(node, 2)?;
            Some(broadcast_bias(b, filters).ok_or_else(|| {
                cx.invalid(
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
        .map_err(|m| cx.invalid(node, m))?;
    let weights = DenseWeights { kernel, bias };
    cx.push(cx.output(node)?, layer, vec![x], shape, Some(weights));
    cx.name_last(node);
    cx.set_layout(node, Layout::Ncw)
}

/// `Conv` (2-D, any group count) on a channels-first `[N, C, H, W]` view: a Conv2D on the
/// channels-last buffer, its weights `[M, C, kh, kw]` reordered to Keras's `[kh, kw, C, M]`.
fn conv2d(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let (x, (h, w), ch) = cx.nchw_input(node)?;
    let group = cx.attr_i(node, "group")?.unwrap_or(1);
    let wt = cx.input_const(node, 1)?.clone();
    let [filters, cin, kh, kw] = wt.dims[..] else {
        return Err(cx.invalid(
            node,
            format!("W has shape {:?}, expected [M, C, kh, kw]", wt.dims),
        ));
    };
    let groups = usize::try_from(group)
        .ok()
        .filter(|&g| g > 0 && ch % g == 0 && filters % g == 0)
        .ok_or_else(|| {
            cx.invalid(
                node,
                format!(
                    "group {group} must divide the {ch} input channels and the {filters} filters"
                ),
            )
        })?;
    if groups > 1 && groups == ch && cin == 1 {
        return depthwise(cx, node, (x, (h, w), ch), &wt);
    }
    let cg = ch / groups;
    if cin != cg || filters == 0 || kh == 0 || kw == 0 || wt.f32.len() != filters * cg * kh * kw {
        return Err(cx.invalid(
            node,
            format!(
                "W (float) has shape {:?} for {ch} input channels in {groups} groups",
                wt.dims
            ),
        ));
    }
    let (strides, dilation, padding) = window_2d(cx, node, (h, w), (kh, kw))?;
    // ONNX [M, C / groups, kh, kw] -> Keras [kh, kw, C / groups, M].
    let kernel = reorder(&wt.f32, [filters, cg, kh, kw], |[o, c, i, j]| {
        ((i * kw + j) * cg + c) * filters + o
    });
    let bias = conv_bias(cx, node, filters)?;
    let layer = Layer::Conv2D(Conv2DConfig {
        filters,
        kernel_size: (kh, kw),
        strides,
        padding,
        dilation_rate: dilation,
        activation: Activation::Linear,
        use_bias: bias.is_some(),
        groups,
    });
    push_image(
        cx,
        node,
        layer,
        (x, (h, w, ch)),
        DenseWeights { kernel, bias },
    )
}

/// `Conv` with one group per input channel: a DepthwiseConv2D, its weights `[C * m, 1, kh,
/// kw]` reordered to Keras's `[kh, kw, C, m]` (the same output channel order, `c * m + j`).
fn depthwise(
    cx: &mut Converter<'_>,
    node: &NodeProto,
    (x, (h, w), ch): (usize, (usize, usize), usize),
    wt: &crate::io::onnx::convert::Const,
) -> Result<()> {
    let [filters, _, kh, kw] = wt.dims[..] else {
        return Err(cx.invalid(node, "W must be [M, 1, kh, kw]"));
    };
    if filters == 0 || kh == 0 || kw == 0 || wt.f32.len() != filters * kh * kw {
        return Err(cx.invalid(node, format!("W (float) has shape {:?}", wt.dims)));
    }
    let (strides, dilation, padding) = window_2d(cx, node, (h, w), (kh, kw))?;
    // ONNX [C * m, 1, kh, kw] -> [kh * kw, C * m].
    let kernel = reorder(&wt.f32, [filters, 1, kh, kw], |[o, _, a, b]| {
        (a * kw + b) * filters + o
    });
    let bias = conv_bias(cx, node, filters)?;
    let layer = Layer::DepthwiseConv2D(crate::model::DepthwiseConv2DConfig {
        kernel_size: (kh, kw),
        strides,
        padding,
        dilation_rate: dilation,
        depth_multiplier: filters / ch,
        activation: Activation::Linear,
        use_bias: bias.is_some(),
    });
    push_image(
        cx,
        node,
        layer,
        (x, (h, w, ch)),
        DenseWeights { kernel, bias },
    )
}

/// A 2-D Conv's strides, dilations and paddings (rows, columns) for a `kh x kw` kernel
/// over `h x w` positions, `kernel_shape` checked against the weights.
#[allow(clippy::type_complexity)]
fn window_2d(
    cx: &Converter<'_>,
    node: &NodeProto,
    (h, w): (usize, usize),
    (kh, kw): (usize, usize),
) -> Result<((usize, usize), (usize, usize), (Padding, Padding))> {
    if attr_2d(cx, node, "kernel_shape", (kh, kw))? != (kh, kw) {
        return Err(cx.invalid(node, "kernel_shape disagrees with W"));
    }
    let strides = attr_2d(cx, node, "strides", (1, 1))?;
    let dilation = attr_2d(cx, node, "dilations", (1, 1))?;
    let pad = |axis, len, k, s, d| window_padding_axis(cx, node, (axis, 2), len, k, s, d, false);
    let padding = (
        pad(0, h, kh, strides.0, dilation.0)?,
        pad(1, w, kw, strides.1, dilation.1)?,
    );
    Ok((strides, dilation, padding))
}

/// Adds a 2-D `layer` (a convolution with its weights, or a resampling) reading node `x` (`[h, w, ch]`) as the node's output, a
/// channels-first tensor to ONNX.
pub(super) fn push_image(
    cx: &mut Converter<'_>,
    node: &NodeProto,
    layer: Layer,
    (x, input): (usize, (usize, usize, usize)),
    weights: impl Into<Option<DenseWeights>>,
) -> Result<()> {
    let shape = layer
        .output_shape(&[&[input.0, input.1, input.2]])
        .map_err(|m| cx.invalid(node, m))?;
    cx.push(cx.output(node)?, layer, vec![x], shape, weights.into());
    cx.name_last(node);
    cx.set_layout(node, Layout::Ncw)
}

/// `ConvTranspose` (2-D, group 1) on a channels-first `[N, C, H, W]` view: a
/// Conv2DTranspose, its weights `[C, M, kh, kw]` reordered to Keras's `[kh, kw, M, C]`.
pub(super) fn conv_transpose(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let (x, (h, w), ch) = cx.nchw_input(node)?;
    for (name, what) in [("group", "groups"), ("output_padding", "output_padding")] {
        let set =
            Converter::attr(node, name).is_some_and(|a| a.i > 1 || a.ints.iter().any(|&v| v != 0));
        if set {
            return Err(cx.unsupported(node, format!("{what} is not supported")));
        }
    }
    if Converter::attr(node, "output_shape").is_some() {
        return Err(cx.unsupported(node, "output_shape is not supported (give pads)"));
    }
    if !matches!(
        cx.attr_s(node, "auto_pad")?.as_deref(),
        None | Some("NOTSET" | "VALID")
    ) {
        return Err(cx.unsupported(node, "auto_pad SAME_* is not supported (give pads)"));
    }
    let wt = cx.input_const(node, 1)?.clone();
    let [cin, filters, kh, kw] = wt.dims[..] else {
        return Err(cx.invalid(
            node,
            format!("W has shape {:?}, expected [C, M, kh, kw]", wt.dims),
        ));
    };
    if cin != ch || filters == 0 || kh == 0 || kw == 0 || wt.f32.len() != filters * ch * kh * kw {
        return Err(cx.invalid(
            node,
            format!("W (float) has shape {:?} for {ch} input channels", wt.dims),
        ));
    }
    if attr_2d(cx, node, "kernel_shape", (kh, kw))? != (kh, kw) {
        return Err(cx.invalid(node, "kernel_shape disagrees with W"));
    }
    if attr_2d(cx, node, "dilations", (1, 1))? != (1, 1) {
        return Err(cx.unsupported(node, "dilations are not supported"));
    }
    let strides = attr_2d(cx, node, "strides", (1, 1))?;
    let pads = Converter::attr(node, "pads")
        .map(|a| a.ints.clone())
        .unwrap_or_default();
    let side = |v: i64| usize::try_from(v).ok().filter(|&v| v <= 1 << 24);
    let padding = match pads[..] {
        [] => (Padding::Valid, Padding::Valid),
        [t, l, b, r] => match (side(t), side(l), side(b), side(r)) {
            (Some(t), Some(l), Some(b), Some(r)) => (
                Padding::Explicit { left: t, right: b },
                Padding::Explicit { left: l, right: r },
            ),
            _ => return Err(cx.invalid(node, format!("pads {pads:?}"))),
        },
        _ => return Err(cx.invalid(node, format!("pads {pads:?}: expected 4 values"))),
    };
    // ONNX [C, M, kh, kw] -> Keras [kh, kw, M, C].
    let kernel = reorder(&wt.f32, [ch, filters, kh, kw], |[c, o, a, b]| {
        ((a * kw + b) * filters + o) * ch + c
    });
    let bias = conv_bias(cx, node, filters)?;
    let layer = Layer::Conv2DTranspose(Conv2DTransposeConfig {
        filters,
        kernel_size: (kh, kw),
        strides,
        padding,
        activation: Activation::Linear,
        use_bias: bias.is_some(),
    });
    push_image(
        cx,
        node,
        layer,
        (x, (h, w, ch)),
        DenseWeights { kernel, bias },
    )
}

/// The values of a row-major tensor of `dims` (exactly that many, checked by the caller)
/// moved to `to(index)`, a permutation of `0..len`.
fn reorder(w: &[f32], dims: [usize; 4], to: impl Fn([usize; 4]) -> usize) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    let [d0, d1, d2, d3] = dims;
    let mut src = w.iter();
    for a in 0..d0 {
        for b in 0..d1 {
            for c in 0..d2 {
                for d in 0..d3 {
                    if let (Some(&v), Some(dst)) = (src.next(), out.get_mut(to([a, b, c, d]))) {
                        *dst = v;
                    }
                }
            }
        }
    }
    out
}

/// A Conv's optional bias `B` of `filters` values.
fn conv_bias(cx: &Converter<'_>, node: &NodeProto, filters: usize) -> Result<Option<Vec<f32>>> {
    match node.input.get(2).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(_) => {
            let b = cx.input_const(node, 2)?;
            Ok(Some(broadcast_bias(b, filters).ok_or_else(|| {
                cx.invalid(
                    node,
                    format!("B has shape {:?}, expected [{filters}]", b.dims),
                )
            })?))
        }
    }
}

/// A positive 2-D attribute (`kernel_shape`, `strides`, `dilations`) or its default.
pub(super) fn attr_2d(
    cx: &Converter<'_>,
    node: &NodeProto,
    name: &str,
    default: (usize, usize),
) -> Result<(usize, usize)> {
    let ok = |v: i64| v > 0 && v <= 1 << 24;
    match Converter::attr(node, name).map(|a| a.ints.as_slice()) {
        None => Ok(default),
        Some(&[a, b]) if ok(a) && ok(b) => Ok((a as usize, b as usize)),
        Some(v) => Err(cx.invalid(node, format!("{name} {v:?}: expected two positive values"))),
    }
}

/// 1-D window attributes of Conv/MaxPool/AveragePool as a Keras padding.
pub(super) fn window_padding(
    cx: &Converter<'_>,
    node: &NodeProto,
    steps: usize,
    size: usize,
    stride: usize,
    dilation: usize,
    ceil: bool,
) -> Result<Padding> {
    window_padding_axis(cx, node, (0, 1), steps, size, stride, dilation, ceil)
}

/// The padding of spatial axis `axis` of `axes` (ONNX's `pads` hold every axis's start, then
/// every axis's end) as a Keras padding.
#[allow(clippy::too_many_arguments)]
pub(super) fn window_padding_axis(
    cx: &Converter<'_>,
    node: &NodeProto,
    (axis, axes): (usize, usize),
    steps: usize,
    size: usize,
    stride: usize,
    dilation: usize,
    ceil: bool,
) -> Result<Padding> {
    let auto = cx
        .attr_s(node, "auto_pad")?
        .unwrap_or_else(|| "NOTSET".into());
    let pads = Converter::attr(node, "pads")
        .map(|a| a.ints.clone())
        .unwrap_or_default();
    let pads = match pads.len() {
        0 => pads,
        n if n == 2 * axes => vec![pads[axis], pads[axis + axes]],
        _ => {
            return Err(cx.invalid(node, format!("pads {pads:?}: expected {} values", 2 * axes)));
        }
    };
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
            return Err(cx.invalid(
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
        // Keras has causal padding in 1-D only: a 2-D window padded on one side is explicit.
        (l, 0) if axes == 1 && l == span - 1 => Padding::Causal,
        (l, r) if l == same_total / 2 && r == same_total - same_total / 2 => Padding::Same,
        (left, right) => Padding::Explicit { left, right },
    })
}

/// A positive 1-D attribute (`kernel_shape`, `strides`, `dilations`) or its default.
pub(super) fn attr_1d(
    cx: &Converter<'_>,
    node: &NodeProto,
    name: &str,
    default: usize,
) -> Result<usize> {
    match Converter::attr(node, name).map(|a| a.ints.as_slice()) {
        None => Ok(default),
        Some([v]) if *v > 0 && *v <= 1 << 24 => Ok(*v as usize),
        Some(v) => Err(cx.invalid(
            node,
            format!("{name} {v:?}: expected one positive value (1-D)"),
        )),
    }
}

/// For a 2-D `Conv`/`MaxPool`/`AveragePool` on a [`Layout::NcwUnit`] tensor whose window
/// is 1 along the unit axis: the same node as a 1-D op on a channels-first alias of its
/// input (kernel, strides, dilations and pads of the real axis; a conv's `[M, C, 1, k]`
/// weights as `[M, C, k]`), for the 1-D readers. `None` for any other node.
fn unit_window(cx: &mut Converter<'_>, node: &NodeProto) -> Result<Option<NodeProto>> {
    let Layout::NcwUnit(at @ (2 | 3)) = cx.layout(node, 0) else {
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
                return Err(cx.unsupported(
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
    let x = cx.input_node(node, 0)?;
    let alias = format!("{}\u{0}ncw", node.input[0]);
    cx.values.insert(alias.clone(), Value::Node(x));
    cx.layouts.insert(alias.clone(), Layout::Ncw);
    one.input[0] = alias;
    if node.op_type == "Conv" {
        let w = cx.input_const(node, 1)?;
        let k = match w.dims[..] {
            [m, c, a, b] if [a, b][unit] == 1 => [m, c, [a, b][real]],
            _ => {
                return Err(cx.unsupported(
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
        cx.values.insert(name.clone(), Value::Const(w));
        one.input[1] = name;
    }
    Ok(Some(one))
}

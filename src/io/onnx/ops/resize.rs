//! `Pad` and `Resize` of an NCHW image: the Keras layers that move positions
//! (`ZeroPadding2D`, `UpSampling2D` nearest or bilinear) on the channels-last buffer.

use super::conv::push_image;
use crate::error::Result;
use crate::io::onnx::convert::{Const, Converter};
use crate::io::onnx::proto::NodeProto;
use crate::model::{Coordinates, Layer, Resample};

/// A constant's values as integers (int64 tensors as they are, floats when whole).
fn ints(c: &Const) -> Option<Vec<i64>> {
    if !c.i64.is_empty() || c.f32.is_empty() {
        return Some(c.i64.clone());
    }
    c.f32
        .iter()
        .map(|&v| (v.fract() == 0.0 && v.abs() < 1e9).then_some(v as i64))
        .collect()
}

/// Whether optional input `i` is given.
fn given(node: &NodeProto, i: usize) -> bool {
    node.input.get(i).is_some_and(|s| !s.is_empty())
}

/// `Pad` (mode `constant`, value 0) of the height and width of `[N, C, H, W]`: a
/// `ZeroPadding2D`.
pub(super) fn pad(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let (x, (h, w), ch) = cx.nchw_input(node)?;
    match cx.attr_s(node, "mode")?.as_deref() {
        None | Some("constant") => {}
        Some(m) => return Err(cx.unsupported(node, format!("mode {m:?}: only constant"))),
    }
    let value = if given(node, 2) {
        cx.scalar_input(node, 2)?
            .ok_or_else(|| cx.unsupported(node, "constant_value must be a constant scalar"))?
    } else {
        cx.attr_f(node, "value")?.unwrap_or(0.0)
    };
    if value != 0.0 {
        return Err(cx.unsupported(node, format!("constant_value {value}: only 0")));
    }
    if given(node, 3) {
        return Err(cx.unsupported(node, "the axes input is not supported"));
    }
    let pads = if given(node, 1) {
        ints(cx.input_const(node, 1)?).unwrap_or_default()
    } else {
        Converter::attr(node, "pads").map_or_else(Vec::new, |a| a.ints.clone())
    };
    let side = |v: i64| usize::try_from(v).ok().filter(|&v| v <= 1 << 24);
    let (rows, cols) = match pads[..] {
        [0, 0, t, l, 0, 0, b, r] => match (side(t), side(l), side(b), side(r)) {
            (Some(t), Some(l), Some(b), Some(r)) => ((t, b), (l, r)),
            _ => {
                return Err(cx.unsupported(
                    node,
                    format!("pads {pads:?}: negative pads (cropping) are not supported"),
                ));
            }
        },
        _ => {
            return Err(cx.unsupported(
                node,
                format!("pads {pads:?}: only the height and width of [N, C, H, W] are padded"),
            ));
        }
    };
    let layer = Layer::Resample(Resample::ZeroPadding2D { rows, cols });
    push_image(cx, node, layer, (x, (h, w, ch)), None)
}

/// `Resize` of the height and width of `[N, C, H, W]`
/// by whole factors: mode `nearest` where every output position reads `o / factor` (an
/// `UpSampling2D`), mode `linear` as bilinear upsampling.
pub(super) fn resize(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let (x, (h, w), ch) = cx.nchw_input(node)?;
    if Converter::attr(node, "axes").is_some() {
        return Err(cx.unsupported(node, "the axes attribute is not supported"));
    }
    if !matches!(
        cx.attr_s(node, "keep_aspect_ratio_policy")?.as_deref(),
        None | Some("stretch")
    ) {
        return Err(cx.unsupported(node, "keep_aspect_ratio_policy other than stretch"));
    }
    // X, roi, scales, sizes.
    let factors = if given(node, 3) {
        let sizes = ints(cx.input_const(node, 3)?).unwrap_or_default();
        // The batch entry is the file's batch size; the samples are never resized.
        match sizes[..] {
            [_, c, oh, ow] if usize::try_from(c).ok() == Some(ch) && oh > 0 && ow > 0 => {
                let whole = |o: i64, len: usize| {
                    usize::try_from(o)
                        .ok()
                        .filter(|&o| len > 0 && o % len == 0)
                        .map(|o| o / len)
                };
                (whole(oh, h), whole(ow, w))
            }
            _ => (None, None),
        }
    } else if given(node, 2) {
        let scales = cx.input_const(node, 2)?.f32.clone();
        let whole = |s: f32| (s >= 1.0 && s.fract() == 0.0 && s <= 4096.0).then_some(s as usize);
        match scales[..] {
            [1.0, 1.0, sh, sw] => (whole(sh), whole(sw)),
            _ => (None, None),
        }
    } else {
        (None, None)
    };
    let (Some(fh), Some(fw)) = factors else {
        return Err(cx.unsupported(
            node,
            "scales / sizes: only whole upsampling factors of the height and width are \
             supported",
        ));
    };
    let size = (fh, fw);
    let coords = cx
        .attr_s(node, "coordinate_transformation_mode")?
        .unwrap_or_else(|| "half_pixel".into());
    let layer = match cx.attr_s(node, "mode")?.as_deref().unwrap_or("nearest") {
        "nearest" => {
            let rounding = cx
                .attr_s(node, "nearest_mode")?
                .unwrap_or_else(|| "round_prefer_floor".into());
            if !nearest_is_repeat(&coords, &rounding, fh)
                || !nearest_is_repeat(&coords, &rounding, fw)
            {
                return Err(cx.unsupported(
                    node,
                    format!(
                        "nearest_mode {rounding} with coordinate_transformation_mode {coords} \
                         does not repeat each position {fh} x {fw} times"
                    ),
                ));
            }
            Resample::UpSampling2D { size }
        }
        "linear" | "bilinear" => {
            let coords = match coords.as_str() {
                "half_pixel" | "pytorch_half_pixel" => Coordinates::HalfPixel,
                "align_corners" => Coordinates::AlignCorners,
                "asymmetric" => Coordinates::Asymmetric,
                other => {
                    return Err(cx.unsupported(
                        node,
                        format!("linear with coordinate_transformation_mode {other}"),
                    ));
                }
            };
            Resample::Bilinear { size, coords }
        }
        other => return Err(cx.unsupported(node, format!("mode {other:?}"))),
    };
    push_image(cx, node, Layer::Resample(layer), (x, (h, w, ch)), None)
}

/// Whether ONNX's nearest rule (`coords`, `rounding`) reads input position `o / factor` for
/// every output position `o` of an axis upsampled by `factor`: it does for all lengths iff
/// it does for the first input position's outputs, so those are checked.
fn nearest_is_repeat(coords: &str, rounding: &str, factor: usize) -> bool {
    let s = factor as f64;
    (0..2 * factor).all(|o| {
        let o64 = o as f64;
        let x = match coords {
            "asymmetric" => o64 / s,
            "half_pixel" | "pytorch_half_pixel" => (o64 + 0.5) / s - 0.5,
            "tf_half_pixel_for_nn" => (o64 + 0.5) / s,
            _ => return false,
        };
        let i = match rounding {
            "floor" => x.floor(),
            "ceil" => x.ceil(),
            "round_prefer_floor" if x.fract().abs() == 0.5 => x.floor(),
            "round_prefer_ceil" if x.fract().abs() == 0.5 => x.ceil(),
            "round_prefer_floor" | "round_prefer_ceil" => x.round(),
            _ => return false,
        };
        i.max(0.0) == (o / factor) as f64
    })
}

//! Reductions: `ReduceMean`, `ReduceMax` (global poolings) and `ArgMax`.

use crate::error::Result;
use crate::io::onnx::convert::{Converter, join};
use crate::io::onnx::layout::Layout;
use crate::io::onnx::proto::NodeProto;
use crate::model::{ArgMaxConfig, ReshapeConfig};
use crate::model::{DType, Layer, Node};

/// `ReduceMean` / `ReduceMax` over the positions of a feature map: a global pooling. The
/// reduced axes must be every non-batch axis but the channels (`[N, W.., C]` reduced over
/// the `W` axes, PyTorch's `x.mean(dim=1)`), or the spatial axes (and any unit axis) of a
/// tracked channels-first tensor (`[N, C, W]` over axis 2, `[N, C, 1, W]` over axes 2 and 3,
/// `[N, C, H, W]` over axes 2 and 3).
pub(super) fn reduce(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let max = node.op_type == "ReduceMax";
    let axes: Vec<i64> = match node.input.get(1).filter(|n| !n.is_empty()) {
        Some(_) => cx.input_const(node, 1)?.i64.clone(),
        None => Converter::attr(node, "axes")
            .map(|a| a.ints.clone())
            .unwrap_or_default(),
    };
    let keep = cx.attr_i(node, "keepdims")?.unwrap_or(1) != 0;
    let x = cx.input_node(node, 0)?;
    let layout = cx.layout(node, 0);
    let shape = cx.nodes[x].shape.clone();
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
        cx.unsupported(
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
        // [N, C, H, W] over H and W (the dynamo exporter's AdaptiveAvgPool2d(1)): the
        // channels-last [H, W, C] buffer viewed as [H * W, C].
        (Layout::Ncw, &[h, w, c]) if axes == [2, 3] => {
            cx.nodes.push(Node::new(
                String::new(),
                Layer::Reshape(ReshapeConfig {
                    target_shape: vec![(h * w) as isize, c as isize],
                }),
                vec![x],
                vec![h * w, c],
                None,
            ));
            ((cx.nodes.len() - 1, h * w), c)
        }
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
                let x = cx.native_input(node, 0)?;
                cx.nodes.push(Node::new(
                    String::new(),
                    Layer::Reshape(ReshapeConfig {
                        target_shape: vec![steps as isize, c as isize],
                    }),
                    vec![x],
                    vec![steps, c],
                    None,
                ));
                cx.nodes.len() - 1
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
        cx.push(cx.output(node)?, layer, vec![src.0], vec![ch], None);
        cx.name_last(node);
        return cx.set_layout(node, Layout::Native);
    }
    let kept: Vec<usize> = (1..rank as usize)
        .map(|a| if axes.contains(&a) { 1 } else { dims[a - 1] })
        .collect();
    if layout == Layout::Ncw {
        cx.push(cx.output(node)?, layer, vec![src.0], vec![ch], None);
        cx.name_last(node);
        let ones = if shape.len() == 3 {
            Layout::Nc11
        } else {
            Layout::Nc1
        };
        return cx.set_layout(node, ones);
    }
    cx.nodes
        .push(Node::new(String::new(), layer, vec![src.0], vec![ch], None));
    let pooled = cx.nodes.len() - 1;
    cx.push(
        cx.output(node)?,
        Layer::Reshape(ReshapeConfig {
            target_shape: kept.iter().map(|&d| d as isize).collect(),
        }),
        vec![pooled],
        kept,
        None,
    );
    cx.name_last(node);
    cx.set_layout(node, Layout::Native)
}

/// `ArgMax` over the last axis: int64 labels (a graph output).
pub(super) fn argmax(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let x = cx.native_input(node, 0)?;
    let shape = cx.nodes[x].shape.clone();
    let rank = shape.len() as i64 + 1;
    let axis = cx.attr_i(node, "axis")?.unwrap_or(0);
    if axis != -1 && axis != rank - 1 {
        return Err(cx.unsupported(
            node,
            format!("axis {axis} of a rank-{rank} tensor: only the last axis is supported"),
        ));
    }
    if cx.attr_i(node, "select_last_index")?.unwrap_or(0) != 0 {
        return Err(cx.unsupported(node, "select_last_index=1 is not supported"));
    }
    let layer = Layer::ArgMax(ArgMaxConfig {
        keepdims: cx.attr_i(node, "keepdims")?.unwrap_or(1) != 0,
    });
    let out = layer
        .output_shape(&[&shape])
        .map_err(|m| cx.invalid(node, m))?;
    cx.push(cx.output(node)?, layer, vec![x], out, None);
    if let Some(n) = cx.nodes.last_mut() {
        n.dtype = DType::I64;
    }
    cx.name_last(node);
    Ok(())
}

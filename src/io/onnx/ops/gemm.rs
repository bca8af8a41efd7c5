//! `Gemm` and `MatMul` as Dense layers.

use crate::error::Result;
use crate::io::onnx::convert::{Const, Converter, join};
use crate::io::onnx::proto::NodeProto;
use crate::kernels::Activation;
use crate::model::DenseConfig;
use crate::model::{DenseWeights, Layer};

/// `Y = alpha * A' B' + beta * C` as a Dense layer (`A` must not be transposed: it is the
/// batch-first activation).
pub(super) fn gemm(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let (x, rows) = cx.flat_rows(node)?;
    if cx.attr_i(node, "transA")?.unwrap_or(0) != 0 {
        return Err(cx.unsupported(
            node,
            "transA=1 would transpose the batch axis; only transA=0 is supported",
        ));
    }
    let trans_b = cx.attr_i(node, "transB")?.unwrap_or(0) != 0;
    let alpha = cx.attr_f(node, "alpha")?.unwrap_or(1.0);
    let beta = cx.attr_f(node, "beta")?.unwrap_or(1.0);
    let (dims, b) = cx.take_const_f32(node, 1)?;
    let (k, n, mut kernel) = match (dims.as_slice(), trans_b) {
        ([k, n], false) => (*k, *n, b),
        ([n, k], true) => (*k, *n, transposed(&b, *n, *k)),
        (d, _) => return Err(cx.invalid(node, format!("B has shape {d:?}, expected 2-D"))),
    };
    if alpha != 1.0 {
        kernel.iter_mut().for_each(|w| *w *= alpha);
    }
    let kernel = permute_rows(kernel, n, rows.as_deref());
    let bias = match node.input.get(2).filter(|s| !s.is_empty()) {
        None => None,
        Some(_) => {
            let c = cx.input_const(node, 2)?;
            let mut bias = broadcast_bias(c, n).ok_or_else(|| {
                cx.invalid(
                    node,
                    format!(
                        "C has shape {:?}; expected [{n}], [1, {n}] or a scalar",
                        c.dims
                    ),
                )
            })?;
            if beta != 1.0 {
                bias.iter_mut().for_each(|v| *v *= beta);
            }
            Some(bias)
        }
    };
    dense(cx, node, x, k, n, kernel, bias)
}

/// `MatMul(x, W)`: a Dense layer without bias; a following `Add` may give it one.
pub(super) fn matmul(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let (x, rows) = cx.flat_rows(node)?;
    let dims = &cx.input_const(node, 1)?.dims;
    let [k, n] = dims[..] else {
        return Err(cx.unsupported(
            node,
            format!("B has shape {dims:?}, expected 2-D [in, out]"),
        ));
    };
    let (_, b) = cx.take_const_f32(node, 1)?;
    let kernel = permute_rows(b, n, rows.as_deref());
    dense(cx, node, x, k, n, kernel, None)
}

fn dense(
    cx: &mut Converter<'_>,
    node: &NodeProto,
    x: usize,
    k: usize,
    units: usize,
    kernel: Vec<f32>,
    bias: Option<Vec<f32>>,
) -> Result<()> {
    let mut shape = cx.nodes[x].shape.clone();
    if shape.last() != Some(&k) {
        return Err(cx.invalid(
            node,
            format!(
                "input has shape [batch, {}], weights expect {k} features",
                join(&shape)
            ),
        ));
    }
    if units == 0 {
        return Err(cx.unsupported(node, "weights have 0 output columns"));
    }
    if let Some(last) = shape.last_mut() {
        *last = units;
    }
    let layer = Layer::Dense(DenseConfig {
        units,
        activation: Activation::Linear,
        use_bias: bias.is_some(),
    });
    let weights = DenseWeights { kernel, bias };
    cx.push(cx.output(node)?, layer, vec![x], shape, Some(weights));
    cx.name_last(node);
    Ok(())
}

/// The `[cols, rows]` transpose of a row-major `[rows, cols]` matrix.
fn transposed(b: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; b.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = b[r * cols + c];
        }
    }
    t
}

/// The rows of a row-major `[k, n]` matrix reordered: row `s` of the result is row `rows[s]`
/// (unchanged without `rows`, or when a row index is out of range: the caller's shape check
/// then reports the mismatch).
fn permute_rows(kernel: Vec<f32>, n: usize, rows: Option<&[usize]>) -> Vec<f32> {
    match rows {
        Some(rows) if n > 0 && rows.len() * n == kernel.len() => rows
            .iter()
            .flat_map(|&r| kernel[r * n..(r + 1) * n].iter().copied())
            .collect(),
        _ => kernel,
    }
}

/// A bias of `n` values from a constant of shape `[n]`, `[1, n]`, `[1]` or `[]`.
pub(super) fn broadcast_bias(c: &Const, n: usize) -> Option<Vec<f32>> {
    let lead_ones = c.dims.iter().rev().skip(1).all(|&d| d == 1);
    match c.dims.last() {
        Some(&d) if d == n && lead_ones => Some(c.f32.clone()),
        None | Some(1) if c.f32.len() == 1 && lead_ones => Some(vec![c.f32[0]; n]),
        _ => None,
    }
}

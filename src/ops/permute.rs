//! Keras `Permute(dims)`: reorders the non-batch axes. A permute that moves only axes of
//! length 1 is a view.

use super::{LayerOp, Lowering, Reference, one};
use crate::error::{Error, Result};
use crate::model::permutation;
use crate::passes::Op;

/// A Permute layer's configuration: output axis `i` is input axis `dims[i]` (numbered from 1,
/// as Keras does; the batch axis stays first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PermuteConfig {
    /// A permutation of `1..=rank`.
    pub dims: Vec<usize>,
}

impl LayerOp for PermuteConfig {
    fn class_name(&self) -> &'static str {
        "Permute"
    }
    fn base_name(&self) -> &'static str {
        "permute"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        let perm = permutation(&self.dims, s.len())?;
        Ok(perm.iter().map(|&a| s[a]).collect())
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let in_shape = cx.in_shape();
        let perm = permutation(&self.dims, in_shape.len()).map_err(|m| cx.fail(m))?;
        // Axes longer than 1 keep their order: the values do not move.
        let moved: Vec<usize> = perm.iter().copied().filter(|&a| in_shape[a] > 1).collect();
        Ok(if moved.is_sorted() {
            Op::Reshape
        } else {
            Op::Permute(perm)
        })
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let in_shape = cx.in_shape();
        let out_shape = &cx.node.shape;
        let perm = permutation(&self.dims, in_shape.len()).map_err(Error::Model)?;
        // Source strides of each output axis, then every output index in order.
        let strides: Vec<usize> = perm
            .iter()
            .map(|&a| in_shape[a + 1..].iter().product())
            .collect();
        let x = cx.inputs[0];
        let mut y = Vec::with_capacity(x.len());
        for xs in x.chunks_exact(in_shape.iter().product()) {
            let mut idx = vec![0usize; perm.len()];
            for _ in 0..xs.len() {
                y.push(xs[idx.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>()]);
                for d in (0..idx.len()).rev() {
                    idx[d] += 1;
                    if idx[d] < out_shape[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
        }
        Ok(y)
    }
}

//! Keras `Dense`: `y = activation(x · kernel + bias)` over the last axis, one GEMM with the
//! activation in its epilogue.

use super::{LayerOp, Lowering, Reference, one};
use crate::error::Result;
use crate::kernels::Activation;
use crate::model::DenseWeights;
use crate::passes::{Epi, Op};
use crate::reference::activation_row;

/// A Dense layer's configuration (its kernel and bias are the node's weights).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DenseConfig {
    /// Output width.
    pub units: usize,
    /// Activation applied after the bias.
    pub activation: Activation,
    /// Whether the layer has a bias vector.
    pub use_bias: bool,
}

impl LayerOp for DenseConfig {
    fn class_name(&self) -> &'static str {
        "Dense"
    }
    fn base_name(&self) -> &'static str {
        "dense"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let mut s = one(inputs)?;
        let Some(last) = s.last_mut() else {
            return Err("Dense needs an input of rank >= 1 (besides the batch)".into());
        };
        if self.units == 0 {
            return Err("Dense units must be positive".into());
        }
        *last = self.units;
        Ok(s)
    }
    fn weight_dims(&self, input: &[usize]) -> Option<(usize, usize, bool)> {
        Some((*input.last().unwrap_or(&0), self.units, self.use_bias))
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        Ok(Op::Dense {
            weights: cx.graph_weights()?,
            acts: vec![Epi::Act(self.activation)],
            conv: None,
        })
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        Ok(dense(&cx.x(), cx.weights()?, cx.width(), self.activation))
    }
}

/// `act(x · kernel + bias)` over rows of `x`, sums in f64: the reference of every GEMM layer.
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
pub(crate) fn dense(x: &[f64], w: &DenseWeights, n: usize, act: Activation) -> Vec<f64> {
    let k = w.kernel.len() / n;
    let mut y = Vec::with_capacity(x.len() / k * n);
    for row in x.chunks_exact(k) {
        let mut out: Vec<f64> = (0..n)
            .map(|j| {
                let s: f64 = (0..k)
                    .map(|kk| row[kk] * f64::from(w.kernel[kk * n + j]))
                    .sum();
                s + w.bias.as_ref().map_or(0.0, |b| f64::from(b[j]))
            })
            .collect();
        activation_row(act, &mut out);
        y.extend(out);
    }
    y
}

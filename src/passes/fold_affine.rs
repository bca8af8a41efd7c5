//! A per-channel affine (an inference batch normalization, mostly) right after a Dense or
//! convolution with no activation between is folded into that layer's weights:
//! `(x · W + b) * s + t = x · (W * s) + (b * s + t)`, column by column. The plan then has no
//! step for it, and the layer runs at the speed it had without the normalization.
//!
//! Each folded weight is rounded once from its exact f64 value, so the result differs from
//! Keras's (which normalizes the layer's rounded output) only in the last bits. It runs in both
//! pipelines, so fused and separate plans still agree bit for bit.

use super::{Graph, Op, Pass};
use crate::model::DenseWeights;
use std::borrow::Cow;

/// See the module docs.
pub struct FoldAffine;

impl FoldAffine {
    /// An affine whose producer is a Dense without activations that nothing else reads.
    fn candidate(g: &Graph<'_>) -> Option<(usize, usize)> {
        (0..g.nodes.len()).find_map(|i| {
            let Op::Affine { .. } = g.nodes[i].op else {
                return None;
            };
            let src = g.nodes[i].inputs[0];
            let foldable = matches!(&g.nodes[src].op, Op::Dense { acts, .. } if acts.is_empty());
            (foldable && g.consumers(src) == 1).then_some((i, src))
        })
    }
}

/// `W * s` per column and `b * s + t`, each rounded once from f64.
fn fold(w: &DenseWeights, scale: &[f32], shift: &[f32]) -> DenseWeights {
    let n = scale.len();
    let kernel = w
        .kernel
        .chunks_exact(n)
        .flat_map(|row| {
            row.iter()
                .zip(scale)
                .map(|(&x, &s)| (f64::from(x) * f64::from(s)) as f32)
        })
        .collect();
    let bias = (0..n)
        .map(|j| {
            let b = w.bias.as_ref().map_or(0.0, |b| f64::from(b[j]));
            (b * f64::from(scale[j]) + f64::from(shift[j])) as f32
        })
        .collect();
    DenseWeights {
        kernel,
        bias: Some(bias),
    }
}

impl Pass for FoldAffine {
    fn name(&self) -> &'static str {
        "fold_affine"
    }
    fn run<'m>(&self, mut g: Graph<'m>) -> Graph<'m> {
        while let Some((i, src)) = Self::candidate(&g) {
            let Op::Affine { scale, shift } = &g.nodes[i].op else {
                unreachable!("candidate is an affine")
            };
            let folded = match &g.nodes[src].op {
                Op::Dense { weights, .. } => fold(weights, scale, shift),
                _ => unreachable!("candidate reads a Dense"),
            };
            let name = g.nodes[i].name.clone();
            let dense = &mut g.nodes[src];
            if let Op::Dense { weights, .. } = &mut dense.op {
                *weights = Cow::Owned(folded);
            }
            dense.name = format!("{}+{}", dense.name, name);
            g.rewire(i, src);
            g = super::Prune.run(g);
        }
        g
    }
}

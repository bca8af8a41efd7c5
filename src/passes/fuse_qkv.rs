//! The query, key and value projections of a self-attention become one Dense: when a step
//! can read its queries, keys and values as column blocks of one input
//! ([`StepOp::with_packed_qkv`](crate::plan::StepOp)) and all three are bias-alike Dense
//! layers of the same input that nothing else reads, their weights are joined side by side
//! (`[K, Nq + Nk + Nv]`) and one GEMM computes them: the input's rows are read once instead of
//! three times, and two steps go. Each output value is the same FMA chain as before (a GEMM's
//! columns are independent), so the bits do not move.

use super::{Graph, Op, Pass, Prune};
use crate::model::DenseWeights;
use std::borrow::Cow;

/// Joins an attention's Q, K and V projections into one Dense.
pub struct FuseQkv;

impl FuseQkv {
    /// The attention node, its three projections and the step that reads them packed.
    fn candidate(g: &Graph<'_>) -> Option<(usize, [usize; 3], crate::plan::StepRef)> {
        (0..g.nodes.len()).find_map(|i| {
            let Op::Step(step) = &g.nodes[i].op else {
                return None;
            };
            let &[q, k, v, ..] = &g.nodes[i].inputs[..] else {
                return None;
            };
            // A plain Dense over the last axis, `[K, N]` weights as its shapes say.
            let dense = |j: usize| match &g.nodes[j].op {
                Op::Dense {
                    weights,
                    acts,
                    conv: None,
                } if acts.is_empty() && g.consumers(j) == 1 && !g.is_output(j) => {
                    let x = *g.nodes[j].inputs.first()?;
                    let k = *g.nodes[x].shape.last()?;
                    let n = *g.nodes[j].shape.last()?;
                    let sized = weights.kernel.len() == k * n
                        && weights.bias.as_ref().is_none_or(|b| b.len() == n);
                    sized.then_some((x, weights.bias.is_some()))
                }
                _ => None,
            };
            let (x, bias) = dense(q)?;
            let distinct = q != k && k != v && q != v;
            let same = [k, v].into_iter().all(|j| dense(j) == Some((x, bias)));
            let packed = (distinct && same).then(|| step.0.with_packed_qkv())??;
            Some((i, [q, k, v], packed))
        })
    }
}

impl Pass for FuseQkv {
    fn name(&self) -> &'static str {
        "fuse_qkv"
    }
    fn run<'m>(&self, mut g: Graph<'m>) -> Graph<'m> {
        while let Some((i, parts, packed)) = Self::candidate(&g) {
            let weights: Vec<&DenseWeights> = parts
                .iter()
                .map(|&j| match &g.nodes[j].op {
                    Op::Dense { weights, .. } => &**weights,
                    _ => unreachable!("candidate checked the projections"),
                })
                .collect();
            let widths: Vec<usize> = parts
                .iter()
                .map(|&j| g.nodes[j].shape.last().copied().unwrap_or(0))
                .collect();
            let total: usize = widths.iter().sum();
            let k = weights[0].kernel.len() / widths[0].max(1);
            let mut kernel = Vec::with_capacity(k * total);
            for r in 0..k {
                for (w, &n) in weights.iter().zip(&widths) {
                    kernel.extend_from_slice(&w.kernel[r * n..(r + 1) * n]);
                }
            }
            let bias = weights[0].bias.is_some().then(|| {
                weights
                    .iter()
                    .flat_map(|w| w.bias.iter().flatten())
                    .copied()
                    .collect()
            });
            let name = parts
                .iter()
                .map(|&j| g.nodes[j].name.as_str())
                .collect::<Vec<_>>()
                .join("+");
            let [q, ..] = parts;
            let node = &mut g.nodes[q];
            node.op = Op::Dense {
                weights: Cow::Owned(DenseWeights { kernel, bias }),
                acts: vec![],
                conv: None,
            };
            node.name = name;
            if let Some(last) = node.shape.last_mut() {
                *last = total;
            }
            let attention = &mut g.nodes[i];
            attention.op = Op::Step(packed);
            attention.inputs.drain(1..3);
            g = Prune.run(g);
        }
        g
    }
}

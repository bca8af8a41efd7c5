//! Convolution branches over one input each pad it (`k / 2` steps for a same-padded kernel
//! `k`). This pass keeps one Pad with the widest padding on each side and lets every
//! convolution start reading at its own offset into it: one copy of the input instead of one
//! per branch.

use super::{Graph, Op, Pass, Prune};

/// The pass.
pub struct SharePadding;

impl SharePadding {
    /// Pad nodes reading `x`, each read only by a convolution.
    fn pads_of(g: &Graph<'_>, x: usize) -> Vec<(usize, usize)> {
        g.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.op, Op::Pad { .. }) && n.inputs == [x])
            .filter_map(|(p, _)| {
                let readers: Vec<usize> = (0..g.nodes.len())
                    .filter(|&c| g.nodes[c].inputs.contains(&p))
                    .collect();
                match readers.as_slice() {
                    [c] if !g.is_output(p)
                        && matches!(g.nodes[*c].op, Op::Dense { conv: Some(_), .. }) =>
                    {
                        Some((p, *c))
                    }
                    _ => None,
                }
            })
            .collect()
    }
}

impl Pass for SharePadding {
    fn name(&self) -> &'static str {
        "share_padding"
    }
    fn run<'m>(&self, mut g: Graph<'m>) -> Graph<'m> {
        for x in 0..g.nodes.len() {
            let pads = Self::pads_of(&g, x);
            if pads.len() < 2 {
                continue;
            }
            // (pad, its convolution, its left and right padding)
            let sides: Vec<(usize, usize, usize, usize)> = pads
                .iter()
                .map(|&(p, c)| match g.nodes[p].op {
                    Op::Pad { left, right, .. } => (p, c, left, right),
                    _ => unreachable!("pads_of returns pads"),
                })
                .collect();
            let left = sides.iter().map(|s| s.2).max().unwrap_or(0);
            let right = sides.iter().map(|s| s.3).max().unwrap_or(0);
            let keep = sides[0].0;
            for &(_, c, l, _) in &sides {
                if let Op::Dense {
                    conv: Some(conv), ..
                } = &mut g.nodes[c].op
                {
                    conv.offset += left - l;
                }
                for i in &mut g.nodes[c].inputs {
                    *i = keep;
                }
            }
            let steps = g.nodes[x].shape[0];
            let name = format!("{}.pad", g.nodes[x].name);
            let kept = &mut g.nodes[keep];
            kept.op = Op::Pad {
                left,
                right,
                transposed: false,
            };
            kept.shape[0] = steps + left + right;
            kept.name = name;
        }
        Prune.run(g)
    }
}

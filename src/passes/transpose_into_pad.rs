//! A channels-first input (PyTorch's `[N, C, W]`) enters sinter's channels-last kernels
//! through one transpose; when a convolution's padding follows it, the transpose is done by the
//! padding step itself, reading `[C, W]` and writing the padded `[W + l + r, C]`: one pass over
//! the input instead of two, and no intermediate buffer.

use super::{Graph, Op, Pass, Prune};

/// The pass.
pub struct TransposeIntoPad;

impl TransposeIntoPad {
    /// A Pad reading a 2-D transpose that nothing else reads.
    fn candidate(g: &Graph<'_>) -> Option<(usize, usize)> {
        (0..g.nodes.len()).find_map(|i| {
            let Op::Pad {
                transposed: false, ..
            } = g.nodes[i].op
            else {
                return None;
            };
            let src = g.nodes[i].inputs[0];
            let is_t = matches!(&g.nodes[src].op, Op::Permute(p) if p[..] == [1, 0]);
            (is_t && g.consumers(src) == 1).then_some((i, src))
        })
    }
}

impl Pass for TransposeIntoPad {
    fn name(&self) -> &'static str {
        "transpose_into_pad"
    }
    fn run<'m>(&self, mut g: Graph<'m>) -> Graph<'m> {
        while let Some((pad, t)) = Self::candidate(&g) {
            let from = g.nodes[t].inputs[0];
            if let Op::Pad { transposed, .. } = &mut g.nodes[pad].op {
                *transposed = true;
            }
            g.nodes[pad].inputs = vec![from];
        }
        Prune.run(g)
    }
}

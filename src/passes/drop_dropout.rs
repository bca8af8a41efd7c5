//! Dropout is the identity at inference: readers of a Dropout read its input.

use super::{Graph, Op, Pass};

/// Removes Dropout nodes.
pub struct DropDropout;

impl Pass for DropDropout {
    fn name(&self) -> &'static str {
        "drop_dropout"
    }
    fn run<'m>(&self, mut g: Graph<'m>) -> Graph<'m> {
        for i in 0..g.nodes.len() {
            if g.nodes[i].op == Op::Dropout {
                let src = g.nodes[i].inputs[0];
                g.rewire(i, src);
            }
        }
        g
    }
}

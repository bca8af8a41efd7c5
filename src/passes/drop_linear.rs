//! `linear` is the identity: it leaves Dense epilogues and Activation layers.

use super::{Epi, Graph, Op, Pass};

/// Removes `linear` activations.
pub struct DropLinear;

impl Pass for DropLinear {
    fn name(&self) -> &'static str {
        "drop_linear"
    }
    fn run<'m>(&self, mut g: Graph<'m>) -> Graph<'m> {
        for i in 0..g.nodes.len() {
            match &mut g.nodes[i].op {
                Op::Dense { acts, .. } => {
                    acts.retain(|a| !matches!(a, Epi::Act(a) if a.is_identity()));
                }
                Op::Activation(a) if a.is_identity() => {
                    let src = g.nodes[i].inputs[0];
                    g.rewire(i, src);
                }
                _ => {}
            }
        }
        g
    }
}

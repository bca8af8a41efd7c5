//! A last-axis concat of GEMM outputs needs no copy: each producer can write its columns of
//! the concat buffer directly (the GEMM stores rows with the concat's width as row stride).
//! This pass marks such concats; the planner gives them no step and points the producers into
//! the shared buffer. Applies when every input is a distinct Dense (or convolution) read by
//! nothing but the concat.

use super::{Graph, Op, Pass};

/// The pass.
pub struct ElideConcat;

/// Whether the concat at `i` can be elided in `g`.
pub(crate) fn elidable(g: &Graph<'_>, i: usize) -> bool {
    let node = &g.nodes[i];
    let Op::Concat { axis, .. } = node.op else {
        return false;
    };
    let mut distinct = node.inputs.clone();
    distinct.sort_unstable();
    distinct.dedup();
    axis + 1 == node.shape.len()
        && distinct.len() == node.inputs.len()
        && node
            .inputs
            .iter()
            .all(|&p| matches!(g.nodes[p].op, Op::Dense { .. }) && g.consumers(p) == 1)
}

impl Pass for ElideConcat {
    fn name(&self) -> &'static str {
        "elide_concat"
    }
    fn run<'m>(&self, mut g: Graph<'m>) -> Graph<'m> {
        for i in 0..g.nodes.len() {
            let can = elidable(&g, i);
            if let Op::Concat { elided, .. } = &mut g.nodes[i].op {
                *elided = can;
            }
        }
        g
    }
}

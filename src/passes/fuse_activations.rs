//! An Activation whose producer is a Dense read by nothing else joins that Dense's epilogue:
//! `Dense(32, tanh) -> Activation(relu)` runs as one kernel with epilogue `bias, tanh, relu`.

use super::{Graph, Op, Pass, Prune};

/// Folds activations into the producing Dense's epilogue.
pub struct FuseActivations;

impl FuseActivations {
    fn candidate(g: &Graph<'_>) -> Option<(usize, usize)> {
        (0..g.nodes.len()).find_map(|i| {
            let Op::Activation(_) = g.nodes[i].op else {
                return None;
            };
            let src = g.nodes[i].inputs[0];
            (matches!(g.nodes[src].op, Op::Dense { .. }) && g.consumers(src) == 1)
                .then_some((i, src))
        })
    }
}

impl Pass for FuseActivations {
    fn name(&self) -> &'static str {
        "fuse_activations"
    }
    fn run<'m>(&self, mut g: Graph<'m>) -> Graph<'m> {
        g = Prune.run(g);
        while let Some((i, src)) = Self::candidate(&g) {
            let Op::Activation(act) = g.nodes[i].op else {
                unreachable!("candidate is an activation")
            };
            let name = g.nodes[i].name.clone();
            let dense = &mut g.nodes[src];
            if let Op::Dense { acts, .. } = &mut dense.op {
                acts.push(act);
            }
            dense.name = format!("{}+{}", dense.name, name);
            g.rewire(i, src);
            g = Prune.run(g);
        }
        g
    }
}

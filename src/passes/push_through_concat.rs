//! `act(concat(a, b, ..)) == concat(act(a), act(b), ..)` for an elementwise activation: move it
//! into every producer, where `fuse_activations` then puts it in the GEMM epilogue. Applies when
//! each producer is a Dense (or convolution) read only by the concat, and the concat only by
//! the activation; otherwise the activation stays a separate pass.

use super::{Graph, Op, Pass, Prune};

/// The pass.
pub struct PushActivationThroughConcat;

impl PushActivationThroughConcat {
    fn candidate(g: &Graph<'_>) -> Option<(usize, usize)> {
        (0..g.nodes.len()).find_map(|i| {
            let Op::Activation(act) = g.nodes[i].op else {
                return None;
            };
            let c = g.nodes[i].inputs[0];
            let pushable = !act.is_row_wise()
                && matches!(g.nodes[c].op, Op::Concat { .. })
                && g.consumers(c) == 1
                && g.nodes[c]
                    .inputs
                    .iter()
                    .all(|&p| matches!(g.nodes[p].op, Op::Dense { .. }) && g.consumers(p) == 1);
            pushable.then_some((i, c))
        })
    }
}

impl Pass for PushActivationThroughConcat {
    fn name(&self) -> &'static str {
        "push_activation_through_concat"
    }
    fn run<'m>(&self, mut g: Graph<'m>) -> Graph<'m> {
        while let Some((i, c)) = Self::candidate(&g) {
            let Op::Activation(act) = g.nodes[i].op else {
                unreachable!("candidate is an activation")
            };
            let name = g.nodes[i].name.clone();
            for p in g.nodes[c].inputs.clone() {
                let producer = &mut g.nodes[p];
                if let Op::Dense { acts, .. } = &mut producer.op {
                    acts.push(super::Epi::Act(act));
                }
                producer.name = format!("{}+{name}", producer.name);
            }
            g.rewire(i, c);
            g = Prune.run(g);
        }
        g
    }
}

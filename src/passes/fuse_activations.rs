//! An Activation, a per-channel affine (an unfolded batch normalization) or a layer
//! normalization whose producer is a Dense read by nothing else joins that Dense's epilogue:
//! `Dense(32, tanh) -> Activation(relu)` runs as one kernel with epilogue `bias, tanh, relu`,
//! `Dense(64, relu) -> BatchNormalization` as `bias, relu, scale+shift` on the registers, and
//! `Dense(64) -> LayerNormalization` with the normalization as a row epilogue while the row is
//! still in L1. A Dense holds at most one affine and one normalization (their constants live
//! with its packed weights). An activation whose producer is a step that can run it
//! ([`StepOp::with_activation`](crate::plan::StepOp): a depthwise convolution) joins that
//! step.

use super::{Epi, Graph, Op, Pass, Prune};
use crate::plan::StepRef;

/// Folds activations and normalizations into the producing Dense's epilogue.
pub struct FuseActivations;

/// What a candidate's producer takes: an epilogue step (a Dense), or its new self (a step).
enum Fused<'m> {
    Epilogue(Epi<'m>),
    Step(StepRef),
}

impl FuseActivations {
    /// The first node that fuses into its producer: its index, the producer's, and what the
    /// producer takes.
    fn candidate<'m>(g: &Graph<'m>) -> Option<(usize, usize, Fused<'m>)> {
        (0..g.nodes.len()).find_map(|i| {
            let step = g.nodes[i].op.as_epilogue()?;
            let src = g.nodes[i].inputs[0];
            if g.consumers(src) != 1 {
                return None;
            }
            let acts = match (&g.nodes[src].op, &step) {
                (Op::Dense { acts, .. }, _) => acts,
                (Op::Step(s), Epi::Act(a)) => {
                    return s.0.with_activation(*a).map(|f| (i, src, Fused::Step(f)));
                }
                _ => return None,
            };
            let taken = |f: fn(&Epi<'_>) -> bool| f(&step) && acts.iter().any(f);
            let fits = !taken(|e| matches!(e, Epi::Affine { .. }))
                && !taken(|e| matches!(e, Epi::Norm(_)));
            fits.then_some((i, src, Fused::Epilogue(step)))
        })
    }
}

impl Pass for FuseActivations {
    fn name(&self) -> &'static str {
        "fuse_activations"
    }
    fn run<'m>(&self, mut g: Graph<'m>) -> Graph<'m> {
        g = Prune.run(g);
        while let Some((i, src, fused)) = Self::candidate(&g) {
            let name = g.nodes[i].name.clone();
            let producer = &mut g.nodes[src];
            match (&mut producer.op, fused) {
                (Op::Dense { acts, .. }, Fused::Epilogue(step)) => acts.push(step),
                (op, Fused::Step(step)) => *op = Op::Step(step),
                _ => {}
            }
            producer.name = format!("{}+{}", producer.name, name);
            g.rewire(i, src);
            g = Prune.run(g);
        }
        g
    }
}

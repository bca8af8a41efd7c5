//! 3x3 convolutions marked for Winograd F(2x2, 3x3) (`Band::winograd`, see `ops/winograd.rs`)
//! become Winograd steps: last, once the passes before it folded a batch norm into their
//! weights and fused their activations (the step runs them after its output transform).

use super::{Graph, Op, Pass};
use crate::kernels;
use crate::ops::winograd::WinogradStep;
use crate::plan::StepRef;

/// The pass.
pub struct Winograd;

impl Winograd {
    /// Node `i` as a Winograd step, if it is a marked 3x3 stride-1 convolution whose
    /// epilogue runs elementwise.
    fn step(g: &Graph<'_>, i: usize) -> Option<WinogradStep> {
        let node = &g.nodes[i];
        let Op::Dense {
            weights,
            acts,
            conv: Some(c),
        } = &node.op
        else {
            return None;
        };
        let band = c.band.filter(|b| b.winograd)?;
        if (c.size, c.stride, band.size, band.stride, band.dilation) != (3, 1, 3, 1, 1) {
            return None;
        }
        let (&[rows, cols, ch], &[out_rows, out_cols, filters]) = (
            g.nodes[*node.inputs.first()?].shape.as_slice(),
            node.shape.as_slice(),
        ) else {
            return None;
        };
        let geo = kernels::Winograd {
            rows,
            cols,
            offset: c.offset,
            ch,
            out_rows,
            out_cols,
            filters,
        };
        let ops = super::epilogue_ops(weights.bias.as_deref(), acts);
        WinogradStep::new(geo, &weights.kernel, ops)
    }
}

impl Pass for Winograd {
    fn name(&self) -> &'static str {
        "winograd"
    }
    fn run<'m>(&self, mut g: Graph<'m>) -> Graph<'m> {
        for i in 0..g.nodes.len() {
            if let Some(step) = Self::step(&g, i) {
                g.nodes[i].op = Op::Step(StepRef::new(step));
            }
        }
        g
    }
}

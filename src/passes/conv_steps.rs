//! Convolutions whose layer chose another algorithm than the GEMM (`ConvRows::algo`: a
//! Winograd F(2x2, 3x3) or a direct loop) become that step: last, once the passes before it
//! folded batch norms into their weights and fused their activations (the steps run them on
//! their outputs). One that cannot (an epilogue the step does not run) stays the GEMM.

use super::{ConvAlgo, Graph, Op, Pass};
use crate::kernels;
use crate::ops::direct_conv::DirectStep;
use crate::ops::winograd::WinogradStep;
use crate::plan::StepRef;

/// The pass.
pub struct ConvSteps;

impl ConvSteps {
    /// Node `i` as its convolution step, if it is a 2-D convolution marked for one that can
    /// run it.
    fn step(g: &Graph<'_>, i: usize) -> Option<StepRef> {
        let node = &g.nodes[i];
        let Op::Dense {
            weights,
            acts,
            conv: Some(c),
        } = &node.op
        else {
            return None;
        };
        let band = c.band?;
        let (&[rows, cols, ch], &[out_rows, out_cols, filters]) = (
            g.nodes[*node.inputs.first()?].shape.as_slice(),
            node.shape.as_slice(),
        ) else {
            return None;
        };
        let ops = super::epilogue_ops(weights.bias.as_deref(), acts);
        match c.algo {
            ConvAlgo::Gemm => None,
            ConvAlgo::Winograd => {
                if (c.size, c.stride, band.size, band.stride, band.dilation) != (3, 1, 3, 1, 1) {
                    return None;
                }
                let geo = kernels::Winograd {
                    rows,
                    cols,
                    offset: c.offset,
                    ch,
                    out_rows,
                    out_cols,
                    filters,
                };
                WinogradStep::new(geo, &weights.kernel, ops).map(StepRef::new)
            }
            ConvAlgo::Direct => {
                let geo = kernels::DirectConv {
                    rows,
                    cols,
                    ch,
                    kernel: (band.size, c.size),
                    strides: (band.stride, c.stride),
                    dilation: band.dilation,
                    offset: c.offset,
                    out_rows,
                    out_cols,
                    filters,
                };
                DirectStep::new(geo, &weights.kernel, ops).map(StepRef::new)
            }
        }
    }
}

impl Pass for ConvSteps {
    fn name(&self) -> &'static str {
        "conv_steps"
    }
    fn run<'m>(&self, mut g: Graph<'m>) -> Graph<'m> {
        for i in 0..g.nodes.len() {
            if let Some(step) = Self::step(&g, i) {
                g.nodes[i].op = Op::Step(step);
            }
        }
        g
    }
}

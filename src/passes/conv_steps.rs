//! Convolutions whose layer chose another algorithm than the GEMM (`ConvRows::algo`: a
//! Winograd F(2x2, 3x3) or a direct loop) become that step: last, once the passes before it
//! folded batch norms into their weights and fused their activations (the steps run them on
//! their outputs). One that cannot (an epilogue the step does not run) stays the GEMM.
//!
//! A max pool of whole windows that alone reads such a convolution (the MNIST convnet's
//! `Conv2D -> MaxPooling2D`) runs in the step, on the outputs while they are in cache: the
//! convolution rows a pool drops are not computed, and the full-size output is never stored.
//! The pool's bits: a max is exact.
//!
//! A direct convolution that alone reads a channels-first image's zero pad (a torch model's
//! stem) pads the image itself, a band of rows at a time ([`kernels::Planar`]): the pad's
//! interleaving pass and its buffer go.

use super::{ConvAlgo, Graph, Op, Pass};
use crate::kernels;
use crate::ops::direct_conv::DirectStep;
use crate::ops::winograd::WinogradStep;
use crate::plan::StepRef;

/// The pass.
pub struct ConvSteps;

impl ConvSteps {
    /// Node `i` as its convolution step, if it is a 2-D convolution marked for one that can
    /// run it, with the max pool `pool` (windows `(down, across)`; `(1, 1)`: none); and the
    /// step's input node, when it reads one the convolution's input read (a planar pad's).
    fn step(g: &Graph<'_>, i: usize, pool: (usize, usize)) -> Option<(StepRef, Option<usize>)> {
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
        let (ph, pw) = pool;
        let (&[rows, cols, ch], &[conv_rows, conv_cols, filters]) = (
            g.nodes[*node.inputs.first()?].shape.as_slice(),
            node.shape.as_slice(),
        ) else {
            return None;
        };
        // The convolution rows and columns a pool reads.
        let (out_rows, out_cols) = (conv_rows / ph * ph, conv_cols / pw * pw);
        let ops = super::epilogue_ops(weights.bias.as_deref(), acts);
        match c.algo {
            ConvAlgo::Gemm => None,
            ConvAlgo::Winograd => {
                let pooled = match pool {
                    (1, 1) => false,
                    (2, 2) => true,
                    _ => return None,
                };
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
                    pool: pooled,
                };
                WinogradStep::new(geo, &weights.kernel, ops).map(|s| (StepRef::new(s), None))
            }
            ConvAlgo::Direct => {
                let input = *node.inputs.first()?;
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
                    pool,
                    planar: None,
                };
                // The channels-first image under a pad only this convolution reads.
                let planar = match &g.nodes[input].op {
                    Op::Step(pad) if g.consumers(input) == 1 && !g.is_output(input) => pad
                        .0
                        .planar_pad()
                        .and_then(|p| Some((p, *g.nodes[input].inputs.first()?))),
                    _ => None,
                };
                if let Some((p, image)) = planar {
                    let geo = kernels::DirectConv {
                        planar: Some(p),
                        ..geo
                    };
                    if let Some(step) = DirectStep::new(geo, &weights.kernel, ops.clone()) {
                        return Some((StepRef::new(step), Some(image)));
                    }
                }
                DirectStep::new(geo, &weights.kernel, ops).map(|s| (StepRef::new(s), None))
            }
        }
    }

    /// Node `i`'s step with the max pool that is its only reader, that reader, and the
    /// step's input.
    fn with_pool(g: &Graph<'_>, i: usize) -> Option<(usize, StepRef, usize)> {
        if g.consumers(i) != 1 || g.is_output(i) {
            return None;
        }
        let reader = (i + 1..g.nodes.len()).find(|&j| g.nodes[j].inputs.contains(&i))?;
        let Op::Step(pool) = &g.nodes[reader].op else {
            return None;
        };
        let (step, input) = Self::step(g, i, pool.0.max_pool()?)?;
        let input = input.or(g.nodes[i].inputs.first().copied())?;
        let shape: Vec<&[usize]> = vec![&g.nodes[input].shape];
        // The pooled step makes exactly the pool's output.
        (step.0.output_shape(&shape).ok()? == g.nodes[reader].shape)
            .then_some((reader, step, input))
    }
}

impl Pass for ConvSteps {
    fn name(&self) -> &'static str {
        "conv_steps"
    }
    fn run<'m>(&self, mut g: Graph<'m>) -> Graph<'m> {
        let mut dropped = false;
        for i in 0..g.nodes.len() {
            if let Some((reader, step, input)) = Self::with_pool(&g, i) {
                // The pool's node computes both; the convolution's is left to prune.
                let name = format!("{}+{}", g.nodes[i].name, g.nodes[reader].name);
                let node = &mut g.nodes[reader];
                (node.name, node.op, node.inputs) = (name, Op::Step(step), vec![input]);
                dropped = true;
            } else if let Some((step, input)) = Self::step(&g, i, (1, 1)) {
                g.nodes[i].op = Op::Step(step);
                if let Some(input) = input {
                    // The pad is left to prune.
                    g.nodes[i].inputs = vec![input];
                    dropped = true;
                }
            }
        }
        if dropped { super::Prune.run(g) } else { g }
    }
}

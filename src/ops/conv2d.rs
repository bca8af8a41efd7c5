//! Keras `Conv2D` over `[height, width, channels]` (channels_last): a 1x1 convolution of
//! stride 1 is a Dense over the positions; any other unrolls its windows once per sample
//! (im2col, zeros for padding) and runs one GEMM over all of them, the bias and activation in
//! its epilogue.

use super::conv1d::{Im2col, im2col64};
use super::dense::dense;
use super::pool::image;
use super::{LayerOp, Lowering, Reference, one};
use crate::error::Result;
use crate::kernels::Activation;
use crate::model::{Padding, Window, Window2};
use crate::passes::{Epi, Op};
use crate::plan::StepRef;

/// A Conv2D layer's configuration. The kernel is stored as Keras does,
/// `[kernel_h, kernel_w, in_channels, filters]`, i.e. a `(kh * kw * in_channels) x filters`
/// matrix whose rows follow the window's taps row by row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2DConfig {
    /// Output channels.
    pub filters: usize,
    /// Window `(height, width)`.
    pub kernel_size: (usize, usize),
    /// Steps between windows `(down, across)`.
    pub strides: (usize, usize),
    /// Along the rows and the columns: `Valid`, `Same` (Keras's rule: `total / 2` before,
    /// the rest after) or `Explicit` (ONNX's pads).
    pub padding: (Padding, Padding),
    /// Spacing between taps `(down, across)`.
    pub dilation_rate: (usize, usize),
    /// Activation applied after the bias.
    pub activation: Activation,
    /// Whether the layer has a bias vector.
    pub use_bias: bool,
}

impl Conv2DConfig {
    /// The windows over an input of `[height, width, channels]`.
    pub fn window(&self, input: &[usize]) -> Result<Window2, String> {
        let (h, w, _) = image(input, "Conv2D")?;
        if [self.padding.0, self.padding.1].contains(&Padding::Causal) {
            return Err("Conv2D padding cannot be causal".into());
        }
        let ((kh, kw), (sh, sw), (dh, dw)) = (self.kernel_size, self.strides, self.dilation_rate);
        Ok(Window2 {
            rows: Window::new(h, kh, sh, dh, self.padding.0)?,
            cols: Window::new(w, kw, sw, dw, self.padding.1)?,
        })
    }

    /// Whether every window is one input position: a Dense over the positions.
    fn pointwise(&self) -> bool {
        self.kernel_size == (1, 1) && self.strides == (1, 1)
    }
}

impl LayerOp for Conv2DConfig {
    fn class_name(&self) -> &'static str {
        "Conv2D"
    }
    fn base_name(&self) -> &'static str {
        "conv2d"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        if self.filters == 0 {
            return Err("Conv2D filters must be positive".into());
        }
        let w = self.window(&s)?;
        Ok(vec![w.rows.out, w.cols.out, self.filters])
    }
    fn weight_dims(&self, input: &[usize]) -> Option<(usize, usize, bool)> {
        let last = *input.last().unwrap_or(&0);
        let (kh, kw) = self.kernel_size;
        Some((
            kh.saturating_mul(kw).saturating_mul(last),
            self.filters,
            self.use_bias,
        ))
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let in_shape = cx.in_shape().to_vec();
        let w = self.window(&in_shape).map_err(|m| cx.fail(m))?;
        if !self.pointwise() {
            let cols = Im2col::new(w, &in_shape);
            let shape = cols.out_shape.clone();
            cx.push("im2col", Op::Step(StepRef::new(cols)), shape);
        }
        Ok(Op::Dense {
            weights: cx.graph_weights()?,
            acts: vec![Epi::Act(self.activation)],
            conv: None,
        })
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let win = self.window(cx.in_shape()).map_err(crate::Error::Model)?;
        let cols = im2col64(cx.inputs[0], win, cx.in_shape()[2]);
        Ok(dense(&cols, cx.weights()?, cx.width(), self.activation))
    }
}

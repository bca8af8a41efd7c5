//! Keras `DepthwiseConv2D` (and ONNX `Conv` with one group per input channel): each input
//! channel convolved with its own `depth_multiplier` filters; and `SeparableConv2D`, that
//! step followed by a 1x1 convolution (a GEMM with the bias and activation in its epilogue). Not a GEMM (each output reads
//! `kh * kw` values: too little arithmetic to pack for), but a direct loop over the window's
//! taps, vectorized over the channels, which are contiguous in the channels-last buffer.
//!
//! Each output is `bias + sum_t x_t * w_t` with the taps in row-major kernel order, every
//! product and sum rounded once (no FMA), so every tier gives the same bits. Padding taps are
//! skipped, not multiplied by zero.

use super::pool::image;
use super::{LayerOp, Lowering, Reference, one};
use crate::error::{Error, Result};
use crate::kernels::{Activation, Buffer, Isa};
use crate::model::{Padding, Window, Window2};
use crate::passes::Op;
use crate::plan::{StepIo, StepOp, StepRef};

/// A DepthwiseConv2D layer's configuration. The kernel is stored as Keras does,
/// `[kernel_h, kernel_w, channels, depth_multiplier]`: a `(kh * kw) x (channels *
/// multiplier)` matrix, output channel `c * multiplier + m` reading input channel `c`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DepthwiseConv2DConfig {
    /// Window `(height, width)`.
    pub kernel_size: (usize, usize),
    /// Steps between windows `(down, across)`.
    pub strides: (usize, usize),
    /// Along the rows and the columns: `Valid`, `Same` or `Explicit`.
    pub padding: (Padding, Padding),
    /// Spacing between taps `(down, across)`.
    pub dilation_rate: (usize, usize),
    /// Output channels per input channel.
    pub depth_multiplier: usize,
    /// Activation applied after the bias.
    pub activation: Activation,
    /// Whether the layer has a bias vector.
    pub use_bias: bool,
}

impl DepthwiseConv2DConfig {
    /// The windows over an input of `[height, width, channels]`.
    pub fn window(&self, input: &[usize]) -> Result<Window2, String> {
        let (h, w, _) = image(input, "DepthwiseConv2D")?;
        if [self.padding.0, self.padding.1].contains(&Padding::Causal) {
            return Err("DepthwiseConv2D padding cannot be causal".into());
        }
        if self.depth_multiplier == 0 {
            return Err("depth_multiplier must be positive".into());
        }
        let ((kh, kw), (sh, sw), (dh, dw)) = (self.kernel_size, self.strides, self.dilation_rate);
        Ok(Window2 {
            rows: Window::new(h, kh, sh, dh, self.padding.0)?,
            cols: Window::new(w, kw, sw, dw, self.padding.1)?,
        })
    }
}

impl LayerOp for DepthwiseConv2DConfig {
    fn class_name(&self) -> &'static str {
        "DepthwiseConv2D"
    }
    fn base_name(&self) -> &'static str {
        "depthwise_conv2d"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        let w = self.window(&s)?;
        let ch = s[2]
            .checked_mul(self.depth_multiplier)
            .ok_or("the output channels overflow")?;
        Ok(vec![w.rows.out, w.cols.out, ch])
    }
    fn weight_dims(&self, input: &[usize]) -> Option<(usize, usize, bool)> {
        let ch = *input.last().unwrap_or(&0);
        let (kh, kw) = self.kernel_size;
        Some((
            kh.saturating_mul(kw),
            ch.saturating_mul(self.depth_multiplier),
            self.use_bias,
        ))
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let in_shape = cx.in_shape().to_vec();
        let window = self.window(&in_shape).map_err(|m| cx.fail(m))?;
        let weights = cx.graph_weights()?.into_owned();
        Ok(Op::Step(StepRef::new(DepthwiseStep {
            window,
            ch: in_shape[2],
            mult: self.depth_multiplier,
            kernel: aligned(&weights.kernel).map_err(|m| cx.fail(m))?,
            bias: weights.bias,
            act: self.activation,
        })))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let mut y = depthwise64(self, cx.inputs[0], cx.in_shape(), cx.weights()?, cx.batch)?;
        let n = cx.width();
        for row in y.chunks_exact_mut(n.max(1)) {
            crate::reference::activation_row(self.activation, row);
        }
        Ok(y)
    }
}

/// Keras `SeparableConv2D`: a depthwise convolution (no bias, no activation) whose kernel
/// `[kh, kw, C, multiplier]` the configuration holds, then a pointwise (1x1) convolution:
/// the layer's weights, `[C * multiplier, filters]` and the bias.
#[derive(Clone, Debug, PartialEq)]
pub struct SeparableConv2DConfig {
    /// The depthwise part (its `use_bias` false, its activation linear).
    pub depthwise: DepthwiseConv2DConfig,
    /// Its kernel, `[kh, kw, C, multiplier]` row-major (filled when the weights load).
    pub depthwise_kernel: Vec<f32>,
    /// Output channels.
    pub filters: usize,
    /// Activation after the pointwise bias.
    pub activation: Activation,
    /// Whether the pointwise convolution has a bias.
    pub use_bias: bool,
}

impl SeparableConv2DConfig {
    /// Checks the depthwise kernel against an input of `channels`.
    fn check(&self, channels: usize) -> Result<(), String> {
        let (kh, kw) = self.depthwise.kernel_size;
        let want = [kh, kw, channels, self.depthwise.depth_multiplier]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or("the depthwise kernel's size overflows")?;
        if self.depthwise_kernel.len() != want {
            return Err(format!(
                "the depthwise kernel has {} values, expected {want} ([{kh}, {kw}, {channels}, {}])",
                self.depthwise_kernel.len(),
                self.depthwise.depth_multiplier
            ));
        }
        if self.filters == 0 {
            return Err("SeparableConv2D filters must be positive".into());
        }
        Ok(())
    }
}

impl LayerOp for SeparableConv2DConfig {
    fn class_name(&self) -> &'static str {
        "SeparableConv2D"
    }
    fn base_name(&self) -> &'static str {
        "separable_conv2d"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        let w = self.depthwise.window(&s)?;
        self.check(s[2])?;
        Ok(vec![w.rows.out, w.cols.out, self.filters])
    }
    fn param_count(&self) -> usize {
        self.depthwise_kernel.len()
    }
    fn weight_dims(&self, input: &[usize]) -> Option<(usize, usize, bool)> {
        let ch = *input.last().unwrap_or(&0);
        Some((
            ch.saturating_mul(self.depthwise.depth_multiplier),
            self.filters,
            self.use_bias,
        ))
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let in_shape = cx.in_shape().to_vec();
        let window = self.depthwise.window(&in_shape).map_err(|m| cx.fail(m))?;
        self.check(in_shape[2]).map_err(|m| cx.fail(m))?;
        let mult = self.depthwise.depth_multiplier;
        let step = DepthwiseStep {
            window,
            ch: in_shape[2],
            mult,
            kernel: aligned(&self.depthwise_kernel).map_err(|m| cx.fail(m))?,
            bias: None,
            act: Activation::Linear,
        };
        let shape = vec![window.rows.out, window.cols.out, in_shape[2] * mult];
        cx.push("depthwise", Op::Step(StepRef::new(step)), shape);
        Ok(Op::Dense {
            weights: cx.graph_weights()?,
            acts: vec![crate::passes::Epi::Act(self.activation)],
            conv: None,
        })
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let d = self.depthwise;
        let w = crate::model::DenseWeights {
            kernel: self.depthwise_kernel.clone(),
            bias: None,
        };
        let mid = depthwise64(&d, cx.inputs[0], cx.in_shape(), &w, cx.batch)?;
        Ok(super::dense::dense(
            &mid,
            cx.weights()?,
            cx.width(),
            self.activation,
        ))
    }
}

/// The f64 reference of a depthwise convolution over a batch (before its activation).
fn depthwise64(
    d: &DepthwiseConv2DConfig,
    x: &[f64],
    in_shape: &[usize],
    w: &crate::model::DenseWeights,
    batch: usize,
) -> Result<Vec<f64>> {
    let win = d.window(in_shape).map_err(Error::Model)?;
    let ch = in_shape[2];
    let (mult, n) = (d.depth_multiplier, ch * d.depth_multiplier);
    let mut y = Vec::with_capacity(batch * win.out() * n);
    for x in x.chunks_exact((win.len() * ch).max(1)) {
        for o in 0..win.out() {
            let mut acc: Vec<f64> = (0..n)
                .map(|j| w.bias.as_ref().map_or(0.0, |b| f64::from(b[j])))
                .collect();
            for t in 0..win.taps() {
                if let Some(s) = win.source(o, t) {
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a += x[s * ch + j / mult] * f64::from(w.kernel[t * n + j]);
                    }
                }
            }
            y.extend(acc);
        }
    }
    Ok(y)
}

/// The weights in a buffer of their own, on a cache line (each tap's vector of channels is
/// one load, not two).
fn aligned(kernel: &[f32]) -> std::result::Result<Buffer, String> {
    Buffer::from_slice(kernel).ok_or_else(|| format!("no memory for {} weights", kernel.len()))
}

/// The step: windows, weights `[taps, ch * mult]`, bias, activation.
#[derive(Clone, Debug)]
struct DepthwiseStep {
    window: Window2,
    ch: usize,
    mult: usize,
    kernel: Buffer,
    bias: Option<Vec<f32>>,
    act: Activation,
}

impl DepthwiseStep {
    /// The kernel over this step's weights.
    fn kernel(&self) -> crate::kernels::depthwise::Depthwise<'_> {
        crate::kernels::depthwise::Depthwise {
            rows: self.window.rows.axis(),
            cols: self.window.cols.axis(),
            ch: self.ch,
            mult: self.mult,
            kernel: &self.kernel,
            bias: self.bias.as_deref(),
            act: match self.act {
                a if a.is_row_wise() => Activation::Linear,
                a => a,
            },
        }
    }
}

impl StepOp for DepthwiseStep {
    fn with_activation(&self, act: Activation) -> Option<StepRef> {
        (self.act == Activation::Linear && !act.is_row_wise()).then(|| {
            StepRef::new(DepthwiseStep {
                act,
                ..self.clone()
            })
        })
    }
    fn describe(&self) -> String {
        let (r, c) = (&self.window.rows, &self.window.cols);
        let act = match self.act {
            Activation::Linear => String::new(),
            a => format!(", then {}", a.keras_name()),
        };
        format!(
            "depthwise {}x{} s{}x{} d{}x{} x{} (direct, over channels){act}",
            r.size, c.size, r.stride, c.stride, r.dilation, c.dilation, self.mult
        )
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (r, c) = (&self.window.rows, &self.window.cols);
        match inputs {
            [[h, w, ch]] if (*h, *w, *ch) == (r.len, c.len, self.ch) => {
                Ok(vec![r.out, c.out, self.ch * self.mult])
            }
            _ => Err(format!(
                "depthwise needs [{}, {}, {}]",
                r.len, c.len, self.ch
            )),
        }
    }
    fn scratch(&self) -> usize {
        self.kernel().scratch_len()
    }
    fn run(&self, isa: Isa, io: StepIo<'_>) {
        let d = self.kernel();
        let width = (self.ch * self.mult).max(1);
        io.per_sample_scratch(d.scratch_len(), |x, y, s| {
            // An elementwise activation runs in the kernel.
            crate::kernels::plain(isa, &d, x, y, s);
            if self.act.is_row_wise() {
                // Keras's softmax of a feature map: over each position's channels (the
                // whole sample as one row was a wrong answer).
                crate::kernels::rows(isa, self.act, y, width);
            }
        });
    }
}

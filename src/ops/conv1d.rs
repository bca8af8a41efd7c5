//! Keras `Conv1D` over `[steps, channels]` (channels_last): padding once, then one GEMM per
//! sample that reads its windows in place (an implicit im2col), or an explicit im2col for
//! dilated kernels.

use super::dense::dense;
use super::{LayerOp, Lowering, Reference, one};
use crate::error::Result;
use crate::kernels::{Activation, Isa, ops};
use crate::model::{Padding, Window};
use crate::passes::{ConvRows, Epi, Op};
use crate::plan::{StepIo, StepOp, StepRef};

/// A Conv1D layer's configuration. The kernel is stored as Keras does,
/// `[kernel_size, in_channels, filters]`, i.e. a `(kernel_size * in_channels) x filters`
/// matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv1DConfig {
    /// Output channels.
    pub filters: usize,
    /// Taps per window.
    pub kernel_size: usize,
    /// Step between windows.
    pub strides: usize,
    /// Border handling.
    pub padding: Padding,
    /// Spacing between taps.
    pub dilation_rate: usize,
    /// Activation applied after the bias.
    pub activation: Activation,
    /// Whether the layer has a bias vector.
    pub use_bias: bool,
}

/// `(steps, channels)` of a `[steps, channels]` input.
pub(crate) fn steps_channels(s: &[usize], what: &str) -> Result<(usize, usize), String> {
    match *s {
        [steps, ch] => Ok((steps, ch)),
        _ => Err(format!(
            "{what} needs an input of shape [steps, channels], got {s:?}"
        )),
    }
}

impl Conv1DConfig {
    /// The windows over an input of `[steps, channels]`.
    pub fn window(&self, input: &[usize]) -> Result<Window, String> {
        let (steps, _) = steps_channels(input, "Conv1D")?;
        Window::new(
            steps,
            self.kernel_size,
            self.strides,
            self.dilation_rate,
            self.padding,
        )
    }
}

impl LayerOp for Conv1DConfig {
    fn class_name(&self) -> &'static str {
        "Conv1D"
    }
    fn base_name(&self) -> &'static str {
        "conv1d"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        if self.filters == 0 {
            return Err("Conv1D filters must be positive".into());
        }
        Ok(vec![self.window(&s)?.out, self.filters])
    }
    fn weight_dims(&self, input: &[usize]) -> Option<(usize, usize, bool)> {
        let last = *input.last().unwrap_or(&0);
        Some((
            self.kernel_size.saturating_mul(last),
            self.filters,
            self.use_bias,
        ))
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let in_shape = cx.in_shape();
        let w = self.window(in_shape).map_err(|m| cx.fail(m))?;
        let ch = in_shape.get(1).copied().unwrap_or(0);
        let mut conv = None;
        if w.dilation == 1 {
            // Windows are contiguous: pad once, then read them in place.
            // Steps the windows cover, in padded coordinates.
            let span = (w.out - 1) * w.stride + w.size;
            let padded = (w.pad_left + w.len).max(span);
            let right = padded - (w.pad_left + w.len);
            if w.pad_left > 0 || right > 0 {
                let pad = Op::Pad {
                    left: w.pad_left,
                    right,
                    transposed: false,
                };
                cx.push("pad", pad, vec![padded, ch]);
            }
            if !(w.size == 1 && w.stride == 1) {
                conv = Some(ConvRows {
                    size: w.size,
                    // One window: the stride is never applied (and may be huge).
                    stride: if w.out == 1 { 1 } else { w.stride },
                    offset: 0,
                });
            }
        } else {
            let step = Op::Step(StepRef::new(Im2col { w, ch }));
            cx.push("im2col", step, vec![w.out, w.size * ch]);
        }
        Ok(Op::Dense {
            weights: cx.graph_weights()?,
            acts: vec![Epi::Act(self.activation)],
            conv,
        })
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        // im2col in f64, then the same Dense.
        let in_shape = cx.in_shape();
        let win = self.window(in_shape).map_err(crate::Error::Model)?;
        let ch = in_shape[1];
        let mut cols = Vec::with_capacity(cx.batch * win.out * win.size * ch);
        for xs in cx.inputs[0].chunks_exact(win.len * ch) {
            for o in 0..win.out {
                for t in 0..win.size {
                    match win.source(o, t) {
                        Some(s) => cols.extend_from_slice(&xs[s * ch..][..ch]),
                        None => cols.extend(std::iter::repeat_n(0.0, ch)),
                    }
                }
            }
        }
        Ok(dense(&cols, cx.weights()?, cx.width(), self.activation))
    }
}

/// Windows of `[len, ch]` unrolled into `[out, size * ch]` rows (zeros for padding), so that
/// a dilated convolution is a Dense over them.
#[derive(Debug)]
struct Im2col {
    w: Window,
    ch: usize,
}

impl StepOp for Im2col {
    fn describe(&self) -> String {
        let w = &self.w;
        format!(
            "im2col k{} s{} d{} pad {}",
            w.size, w.stride, w.dilation, w.pad_left
        )
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        match inputs {
            [[len, ch]] if *len == self.w.len && *ch == self.ch => {
                Ok(vec![self.w.out, self.w.size * ch])
            }
            _ => Err(format!("im2col needs [{}, {}]", self.w.len, self.ch)),
        }
    }
    fn run(&self, _: Isa, io: StepIo<'_>) {
        let w = self.w;
        let (ins, out) = io.parts();
        ops::per_sample(ins.batch(), ins.get(0), out, |x, y| {
            ops::im2col(w.size, self.ch, |o, t| w.source(o, t), x, y)
        });
    }
}

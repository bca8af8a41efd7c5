//! Keras `Conv1D` over `[steps, channels]` (channels_last): padding once, then one GEMM per
//! sample that reads its windows in place (an implicit im2col), or an explicit im2col for
//! dilated kernels.

use super::dense::dense;
use super::{LayerOp, Lowering, Reference, one};
use crate::error::Result;
use crate::kernels::{Activation, Isa, ops};
use crate::model::{Padding, Window, Window2};
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
            let right = w.reach_right();
            let padded = w.pad_left + w.len + right;
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
                    band: None,
                    algo: Default::default(),
                });
            }
        } else {
            let cols = Im2col::new(Window2::one_d(w), in_shape);
            let shape = cols.out_shape.clone();
            cx.push("im2col", Op::Step(StepRef::new(cols)), shape);
        }
        Ok(Op::Dense {
            weights: cx.graph_weights()?,
            acts: vec![Epi::Act(self.activation)],
            conv,
        })
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let win = self.window(cx.in_shape()).map_err(crate::Error::Model)?;
        let cols = im2col64(cx.inputs[0], Window2::one_d(win), cx.in_shape()[1]);
        Ok(dense(&cols, cx.weights()?, cx.width(), self.activation))
    }
}

/// im2col in f64 (the references' convolutions): each sample's windows as rows of `taps *
/// ch` values, zeros for padding.
pub(crate) fn im2col64(x: &[f64], win: Window2, ch: usize) -> Vec<f64> {
    let mut cols =
        Vec::with_capacity(x.len() / (win.len() * ch).max(1) * win.out() * win.taps() * ch);
    for xs in x.chunks_exact((win.len() * ch).max(1)) {
        for o in 0..win.out() {
            for t in 0..win.taps() {
                match win.source(o, t) {
                    Some(s) => cols.extend_from_slice(&xs[s * ch..][..ch]),
                    None => cols.extend(std::iter::repeat_n(0.0, ch)),
                }
            }
        }
    }
    cols
}

/// Windows of `[positions..., ch]` unrolled into rows of `taps * ch` values (zeros for
/// padding), so that a convolution is a Dense over them: 1-D `[out, size * ch]`, 2-D
/// `[out_h, out_w, kh * kw * ch]`.
#[derive(Debug)]
pub(crate) struct Im2col {
    w: Window2,
    ch: usize,
    /// The channels each tap takes (all, or one group's).
    take: std::ops::Range<usize>,
    in_shape: Vec<usize>,
    /// The unrolled rows' shape.
    pub out_shape: Vec<usize>,
}

impl Im2col {
    /// The windows `w` over an input of `in_shape` (channels last).
    pub fn new(w: Window2, in_shape: &[usize]) -> Im2col {
        let ch = in_shape.last().copied().unwrap_or(0);
        Im2col::group(w, in_shape, 0..ch)
    }

    /// The windows `w` over an input of `in_shape`, each tap taking the channels `take`.
    pub fn group(w: Window2, in_shape: &[usize], take: std::ops::Range<usize>) -> Im2col {
        let ch = in_shape.last().copied().unwrap_or(0);
        let row = w.taps().saturating_mul(take.len());
        let out_shape = match in_shape.len() {
            3 => vec![w.rows.out, w.cols.out, row],
            _ => vec![w.rows.out, row],
        };
        Im2col {
            w,
            ch,
            take,
            in_shape: in_shape.to_vec(),
            out_shape,
        }
    }
}

impl StepOp for Im2col {
    fn describe(&self) -> String {
        let (r, c) = (&self.w.rows, &self.w.cols);
        if self.in_shape.len() == 3 {
            let group = if self.take.len() == self.ch {
                String::new()
            } else {
                format!(" channels {:?}", self.take)
            };
            return format!(
                "im2col k{}x{} s{}x{} d{}x{} pad {}x{}{group}",
                r.size, c.size, r.stride, c.stride, r.dilation, c.dilation, r.pad_left, c.pad_left
            );
        }
        format!(
            "im2col k{} s{} d{} pad {}",
            r.size, r.stride, r.dilation, r.pad_left
        )
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        match inputs {
            [x] if *x == self.in_shape => Ok(self.out_shape.clone()),
            _ => Err(format!("im2col needs {:?}", self.in_shape)),
        }
    }
    fn run(&self, _: Isa, io: StepIo<'_>) {
        let (rows, cols) = (self.w.rows.axis(), self.w.cols.axis());
        io.per_sample(|x, y| ops::im2col(rows, cols, self.ch, self.take.clone(), x, y));
    }
}

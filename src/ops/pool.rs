//! Pooling over steps: Keras `MaxPooling1D`, `AveragePooling1D` (windows) and
//! `GlobalMaxPooling1D`, `GlobalAveragePooling1D` (all steps), as one batch-aware step.

use super::conv1d::steps_channels;
use super::{LayerOp, Lowering, Reference, one};
use crate::error::{Error, Result};
use crate::kernels::{Isa, ops};
use crate::model::{Padding, Window};
use crate::passes::Op;
use crate::plan::{StepIo, StepOp, StepRef};

/// A windowed pooling layer's configuration: `MAX` for `MaxPooling1D`, else
/// `AveragePooling1D` (a mean over the real steps only, as Keras does with `same` padding).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pooling1D<const MAX: bool> {
    /// Window length.
    pub pool_size: usize,
    /// Step between windows.
    pub strides: usize,
    /// `Valid` or `Same`.
    pub padding: Padding,
}

/// `MaxPooling1D`'s configuration.
pub type MaxPooling1DConfig = Pooling1D<true>;
/// `AveragePooling1D`'s configuration.
pub type AveragePooling1DConfig = Pooling1D<false>;

impl<const MAX: bool> Pooling1D<MAX> {
    /// The windows over an input of `[steps, channels]`.
    pub fn window(&self, input: &[usize]) -> Result<Window, String> {
        let (steps, _) = steps_channels(input, self.class_name())?;
        if self.padding == Padding::Causal {
            return Err("pooling padding must be valid or same".into());
        }
        Window::new(steps, self.pool_size, self.strides, 1, self.padding)
    }
}

impl<const MAX: bool> LayerOp for Pooling1D<MAX> {
    fn class_name(&self) -> &'static str {
        if MAX {
            "MaxPooling1D"
        } else {
            "AveragePooling1D"
        }
    }
    fn base_name(&self) -> &'static str {
        if MAX {
            "max_pooling1d"
        } else {
            "average_pooling1d"
        }
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        let (_, ch) = steps_channels(&s, self.class_name())?;
        Ok(vec![self.window(&s)?.out, ch])
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let in_shape = cx.in_shape();
        let window = self.window(in_shape).map_err(|m| cx.fail(m))?;
        Ok(Op::Step(StepRef::new(Pool {
            max: MAX,
            window,
            ch: in_shape[1],
            global: false,
        })))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let win = self.window(cx.in_shape()).map_err(Error::Model)?;
        Ok(pool(
            cx.inputs[0],
            cx.in_shape(),
            |o| (0..win.size).filter_map(move |t| win.source(o, t)),
            win.out,
            MAX,
        ))
    }
}

/// `GlobalMaxPooling1D` (`MAX`) or `GlobalAveragePooling1D`: `[steps, channels] -> [channels]`.
#[derive(Debug)]
pub(crate) struct GlobalPooling1D<const MAX: bool>;

impl<const MAX: bool> LayerOp for GlobalPooling1D<MAX> {
    fn class_name(&self) -> &'static str {
        if MAX {
            "GlobalMaxPooling1D"
        } else {
            "GlobalAveragePooling1D"
        }
    }
    fn base_name(&self) -> &'static str {
        if MAX {
            "global_max_pooling1d"
        } else {
            "global_average_pooling1d"
        }
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        let (_, ch) = steps_channels(&s, self.class_name())?;
        Ok(vec![ch])
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let in_shape = cx.in_shape();
        let len = in_shape.first().copied().unwrap_or(0);
        let window = Window::new(len, len, 1, 1, Padding::Valid).map_err(|m| cx.fail(m))?;
        Ok(Op::Step(StepRef::new(Pool {
            max: MAX,
            window,
            ch: in_shape.get(1).copied().unwrap_or(0),
            global: true,
        })))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let steps = cx.in_shape()[0];
        Ok(pool(cx.inputs[0], cx.in_shape(), |_| 0..steps, 1, MAX))
    }
}

/// Max or mean per window of `[len, ch]`; `global` drops the length-1 step axis.
#[derive(Debug)]
struct Pool {
    max: bool,
    window: Window,
    ch: usize,
    global: bool,
}

impl StepOp for Pool {
    fn describe(&self) -> String {
        let w = &self.window;
        let kind = if self.max { "max" } else { "avg" };
        format!("{kind} pool {} s{}", w.size, w.stride)
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        match inputs {
            [[len, ch]] if *len == self.window.len && *ch == self.ch && self.global => {
                Ok(vec![*ch])
            }
            [[len, ch]] if *len == self.window.len && *ch == self.ch => {
                Ok(vec![self.window.out, *ch])
            }
            _ => Err(format!("pooling needs [{}, {}]", self.window.len, self.ch)),
        }
    }
    fn run(&self, _: Isa, io: StepIo<'_>) {
        let w = self.window;
        let (ins, out) = io.parts();
        ops::per_sample(ins.batch(), ins.get(0), out, |x, y| {
            ops::pool(self.max, self.ch, |o| w.sources(o), x, y)
        });
    }
}

/// Max or mean over the taps `taps(o)` for each of `out` output steps, per channel, in f64.
fn pool<I: Iterator<Item = usize>>(
    x: &[f64],
    in_shape: &[usize],
    taps: impl Fn(usize) -> I,
    out: usize,
    max: bool,
) -> Vec<f64> {
    let (steps, ch) = (in_shape[0], in_shape[1]);
    let mut y = Vec::with_capacity(x.len() / steps * out);
    for xs in x.chunks_exact(steps * ch) {
        for o in 0..out {
            for c in 0..ch {
                let vals: Vec<f64> = taps(o).map(|s| xs[s * ch + c]).collect();
                y.push(if max {
                    vals.iter().copied().fold(f64::NEG_INFINITY, |m, v| {
                        if v > m || v.is_nan() { v } else { m }
                    })
                } else {
                    vals.iter().sum::<f64>() / vals.len() as f64
                });
            }
        }
    }
    y
}

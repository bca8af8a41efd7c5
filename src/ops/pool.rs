//! Pooling: Keras `MaxPooling1D`, `AveragePooling1D`, `MaxPooling2D`, `AveragePooling2D`
//! (windows) and `GlobalMaxPooling1D/2D`, `GlobalAveragePooling1D/2D` (every position), as
//! one batch-aware step over a [`Window2`] (a 1-D window is a 2-D one with one column).

use super::conv1d::steps_channels;
use super::{LayerOp, Lowering, Reference, one};
use crate::error::{Error, Result};
use crate::kernels::{Isa, ops};
use crate::model::{DType, Padding, Window, Window2};
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
        let window = Window2::one_d(self.window(in_shape).map_err(|m| cx.fail(m))?);
        Ok(Op::Step(StepRef::new(Pool::windows(MAX, window, in_shape))))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let win = Window2::one_d(self.window(cx.in_shape()).map_err(Error::Model)?);
        Ok(pool_windows(cx, win, MAX))
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
        // A second input: token ids whose zeros mask the steps (Keras's `mask_zero`).
        let (x, ids) = match inputs {
            [x] => (x.to_vec(), None),
            [x, ids] if !MAX => (x.to_vec(), Some(*ids)),
            _ => {
                return Err(format!(
                    "{} takes one input (and, averaging, the ids whose zeros mask it)",
                    self.class_name()
                ));
            }
        };
        let (steps, ch) = steps_channels(&x, self.class_name())?;
        if let Some(ids) = ids
            && ids != [steps]
        {
            return Err(format!("a mask of shape {ids:?} for {steps} steps"));
        }
        Ok(vec![ch])
    }
    fn reads(&self, dtypes: &[DType]) -> bool {
        dtypes.first() == Some(&DType::F32)
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let mut pool =
            Pool::global(MAX, cx.in_shape(), cx.node.shape.clone()).map_err(|m| cx.fail(m))?;
        pool.masked = cx.node.inputs.len() == 2;
        Ok(Op::Step(StepRef::new(pool)))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let (steps, ch) = (cx.in_shape()[0], cx.in_shape()[1]);
        let Some(ids) = cx.inputs.get(1) else {
            return Ok(pool(cx.inputs[0], cx.in_shape(), |_| 0..steps, 1, MAX));
        };
        // The mean of the kept steps (0 / 0 when none is).
        let mut y = Vec::with_capacity(cx.batch * ch);
        for (xs, ids) in cx.inputs[0]
            .chunks_exact(steps * ch)
            .zip(ids.chunks_exact(steps))
        {
            let kept: Vec<usize> = (0..steps).filter(|&s| ids[s] != 0.0).collect();
            for c in 0..ch {
                let sum: f64 = kept.iter().map(|&s| xs[s * ch + c]).sum();
                y.push(sum / kept.len() as f64);
            }
        }
        Ok(y)
    }
}

/// `MaxPooling2D` (`MAX`) or `AveragePooling2D` over `[height, width, channels]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pooling2D<const MAX: bool> {
    /// Window `(height, width)`.
    pub pool_size: (usize, usize),
    /// Steps between windows `(down, across)`.
    pub strides: (usize, usize),
    /// Along the rows and the columns: `Valid`, `Same` or `Explicit` (ONNX's pads).
    pub padding: (Padding, Padding),
}

/// `MaxPooling2D`'s configuration.
pub type MaxPooling2DConfig = Pooling2D<true>;
/// `AveragePooling2D`'s configuration.
pub type AveragePooling2DConfig = Pooling2D<false>;

/// `(height, width, channels)` of a `[height, width, channels]` input.
pub(crate) fn image(s: &[usize], what: &str) -> Result<(usize, usize, usize), String> {
    match *s {
        [h, w, ch] => Ok((h, w, ch)),
        _ => Err(format!(
            "{what} needs an input of shape [height, width, channels], got {s:?}"
        )),
    }
}

impl<const MAX: bool> Pooling2D<MAX> {
    /// The windows over an input of `[height, width, channels]`.
    pub fn window(&self, input: &[usize]) -> Result<Window2, String> {
        let (h, w, _) = image(input, self.class_name())?;
        if [self.padding.0, self.padding.1].contains(&Padding::Causal) {
            return Err("pooling padding cannot be causal".into());
        }
        let (ph, pw) = self.pool_size;
        let (sh, sw) = self.strides;
        Ok(Window2 {
            rows: Window::new(h, ph, sh, 1, self.padding.0)?,
            cols: Window::new(w, pw, sw, 1, self.padding.1)?,
        })
    }
}

impl<const MAX: bool> LayerOp for Pooling2D<MAX> {
    fn class_name(&self) -> &'static str {
        if MAX {
            "MaxPooling2D"
        } else {
            "AveragePooling2D"
        }
    }
    fn base_name(&self) -> &'static str {
        if MAX {
            "max_pooling2d"
        } else {
            "average_pooling2d"
        }
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        let w = self.window(&s)?;
        Ok(vec![w.rows.out, w.cols.out, s[2]])
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let in_shape = cx.in_shape();
        let window = self.window(in_shape).map_err(|m| cx.fail(m))?;
        Ok(Op::Step(StepRef::new(Pool::windows(MAX, window, in_shape))))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let win = self.window(cx.in_shape()).map_err(Error::Model)?;
        Ok(pool_windows(cx, win, MAX))
    }
}

/// `GlobalMaxPooling2D` (`MAX`) or `GlobalAveragePooling2D`: `[height, width, channels]` to
/// `[channels]`, or `[1, 1, channels]` with `keepdims`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GlobalPooling2D<const MAX: bool> {
    /// Keep the two spatial axes, of size 1.
    pub keepdims: bool,
}

impl<const MAX: bool> LayerOp for GlobalPooling2D<MAX> {
    fn class_name(&self) -> &'static str {
        if MAX {
            "GlobalMaxPooling2D"
        } else {
            "GlobalAveragePooling2D"
        }
    }
    fn base_name(&self) -> &'static str {
        if MAX {
            "global_max_pooling2d"
        } else {
            "global_average_pooling2d"
        }
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (_, _, ch) = image(&one(inputs)?, self.class_name())?;
        Ok(if self.keepdims {
            vec![1, 1, ch]
        } else {
            vec![ch]
        })
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let pool =
            Pool::global(MAX, cx.in_shape(), cx.node.shape.clone()).map_err(|m| cx.fail(m))?;
        Ok(Op::Step(StepRef::new(pool)))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let s = cx.in_shape();
        let (len, ch) = (s[0] * s[1], s[2]);
        Ok(pool(cx.inputs[0], &[len, ch], |_| 0..len, 1, MAX))
    }
}

/// Max or mean per window of `[positions..., ch]` (1-D `[len, ch]`, 2-D `[h, w, ch]`).
#[derive(Debug)]
struct Pool {
    max: bool,
    window: Window2,
    ch: usize,
    /// The step's input shape and output shape (`[ch]` or `[1, 1, ch]` when global).
    in_shape: Vec<usize>,
    out_shape: Vec<usize>,
    /// Over every position (a sequence's, whatever its length).
    global: bool,
    /// A second input, token ids: only the steps whose id is not 0 are averaged.
    masked: bool,
}

impl Pool {
    /// Windows over an input of `in_shape` (channels last), positions row-major.
    fn windows(max: bool, window: Window2, in_shape: &[usize]) -> Pool {
        let ch = in_shape.last().copied().unwrap_or(0);
        let out_shape = match in_shape.len() {
            3 => vec![window.rows.out, window.cols.out, ch],
            _ => vec![window.rows.out, ch],
        };
        Pool {
            max,
            window,
            ch,
            in_shape: in_shape.to_vec(),
            out_shape,
            global: false,
            masked: false,
        }
    }

    /// Over every position of `in_shape`, with output shape `out_shape`.
    fn global(max: bool, in_shape: &[usize], out_shape: Vec<usize>) -> Result<Pool, String> {
        let ch = in_shape.last().copied().unwrap_or(0);
        let len = in_shape.iter().rev().skip(1).product::<usize>();
        let window = Window::new(len, len.max(1), 1, 1, Padding::Valid)?;
        Ok(Pool {
            in_shape: in_shape.to_vec(),
            out_shape,
            global: true,
            ..Pool::windows(max, Window2::one_d(window), &[len, ch])
        })
    }
}

impl StepOp for Pool {
    fn describe(&self) -> String {
        let (r, c) = (&self.window.rows, &self.window.cols);
        let kind = if self.max { "max" } else { "avg" };
        match (self.global, self.masked) {
            (true, true) => format!("{kind} of the steps whose id is not 0"),
            (true, false) => format!("{kind} of every step"),
            _ if self.in_shape.len() == 3 => format!(
                "{kind} pool {}x{} s{}x{}",
                r.size, c.size, r.stride, c.stride
            ),
            _ => format!("{kind} pool {} s{}", r.size, r.stride),
        }
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        match inputs {
            [[len, ch], [ids]] if self.masked && *len == self.window.len() && ids == len => {
                Ok(vec![*ch])
            }
            [x] if *x == self.in_shape => Ok(self.out_shape.clone()),
            _ => Err(format!("pooling needs {:?}", self.in_shape)),
        }
    }
    fn seq(&self, ins: &[bool]) -> Result<bool, String> {
        match ins {
            // Over every step of a sequence of any length (its ids mask, if any, with it).
            [x, rest @ ..] if self.global && rest.iter().all(|m| m == x) => Ok(false),
            _ if !ins.iter().any(|&s| s) => Ok(false),
            _ => Err(format!("{} needs a fixed sequence length", self.describe())),
        }
    }
    fn max_pool(&self) -> Option<(usize, usize)> {
        let (r, c) = (self.window.rows, self.window.cols);
        // Every window inside the input ('same' padding or ceil mode may add a partial one).
        let whole = |w: Window| {
            w.stride == w.size
                && w.pad_left == 0
                && w.dilation == 1
                && w.out.checked_mul(w.size).is_some_and(|n| n <= w.len)
        };
        (self.max && !self.global && !self.masked && self.in_shape.len() == 3)
            .then_some((r.size, c.size))
            .filter(|_| whole(r) && whole(c))
    }
    fn scratch(&self) -> usize {
        // One sample's mask, as floats.
        if self.masked { self.window.len() } else { 0 }
    }
    fn padding(&self) -> crate::plan::Padding {
        match self.masked {
            // Padded steps have id 0: skipped.
            true => crate::plan::Padding::MaskedBy {
                input: 1,
                one: false,
            },
            false => crate::plan::Padding::Changes,
        }
    }
    fn run(&self, isa: Isa, io: StepIo<'_>) {
        let w = self.window;
        if !self.masked && !self.global {
            // Pools have no dilation: each window is a rectangle of the input.
            let p = ops::PoolRects {
                max: self.max,
                rows: w.rows.axis(),
                cols: w.cols.axis(),
                ch: self.ch,
            };
            io.per_sample(|x, y| crate::kernels::plain(isa, &p, x, y, &mut []));
            return;
        }
        let steps = io.input_len(0) / self.ch.max(1);
        if !self.masked {
            if steps == 0 {
                return io.per_sample(|x, y| ops::pool(self.max, self.ch, |_| 0..0, x, y));
            }
            // One window over every step (as many as this run's sequence has): the tier's
            // lanes over the channels, the taps in order (the bits of `ops::pool`).
            let p = ops::PoolRects {
                max: self.max,
                rows: ops::Axis::whole(1, 1),
                cols: ops::Axis::whole(steps, steps),
                ch: self.ch,
            };
            return io.per_sample(|x, y| crate::kernels::plain(isa, &p, x, y, &mut []));
        }
        let (ins, out, scratch) = io.scratch();
        let ch = self.ch;
        for (b, y) in out.chunks_exact_mut(ch).enumerate() {
            let ids = &mut scratch[..steps];
            ins.copy_f32(1, b * steps, ids);
            let x = &ins.get(0)[b * steps * ch..(b + 1) * steps * ch];
            ops::pool(false, ch, |_| (0..steps).filter(|&s| ids[s] != 0.0), x, y);
        }
    }
}

/// The f64 reference of windowed pooling: max or mean over each window's real taps.
fn pool_windows(cx: &Reference<'_>, win: Window2, max: bool) -> Vec<f64> {
    let ch = cx.in_shape().last().copied().unwrap_or(0);
    let taps = move |o| (0..win.taps()).filter_map(move |t| win.source(o, t));
    pool(cx.inputs[0], &[win.len(), ch], taps, win.out(), max)
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

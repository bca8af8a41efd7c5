//! Keras `ZeroPadding2D`, `Cropping2D` and `UpSampling2D` (nearest and bilinear): layers that
//! move positions of `[height, width, channels]`, one step that maps each output position to
//! an input position (or to zeros), or for bilinear upsampling to a weighted sum of four.

use super::pool::image;
use super::{LayerOp, Lowering, Reference, one};
use crate::error::{Error, Result};
use crate::kernels::Isa;
use crate::passes::Op;
use crate::plan::{StepIo, StepOp, StepRef};

/// How output positions map to input positions, per axis `(rows, cols)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    /// `ZeroPadding2D(((top, bottom), (left, right)))`: zeros around the input.
    ZeroPadding2D {
        /// `(top, bottom)`.
        rows: (usize, usize),
        /// `(left, right)`.
        cols: (usize, usize),
    },
    /// `Cropping2D(((top, bottom), (left, right)))`: positions dropped at the borders.
    Cropping2D {
        /// `(top, bottom)`.
        rows: (usize, usize),
        /// `(left, right)`.
        cols: (usize, usize),
    },
    /// `UpSampling2D(size, interpolation="nearest")`: each position repeated.
    UpSampling2D {
        /// `(rows, cols)` repeats.
        size: (usize, usize),
    },
    /// `UpSampling2D(size, interpolation="bilinear")` (ONNX `Resize` mode `linear`): each
    /// output position a weighted sum of the two nearest input rows and columns.
    Bilinear {
        /// `(rows, cols)` factors.
        size: (usize, usize),
        /// Where an output position falls in the input.
        coords: Coordinates,
    },
    /// Positions spread `stride` apart with zeros between them and `before`/`after` zeros
    /// around: the input of a transposed convolution's equivalent convolution.
    Dilate {
        /// `(rows, cols)` spacing.
        stride: (usize, usize),
        /// Zeros before, `(rows, cols)`.
        before: (usize, usize),
        /// Zeros after, `(rows, cols)`.
        after: (usize, usize),
    },
}

/// Where output position `o` of `out` falls in an input of `len` positions (ONNX Resize's
/// `coordinate_transformation_mode`), for `o` upsampled by an integer factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coordinates {
    /// `(o + 0.5) / factor - 0.5`, at least 0: TensorFlow's and Keras's, ONNX's default,
    /// and PyTorch's `align_corners=False`.
    HalfPixel,
    /// `o * (len - 1) / (out - 1)`: PyTorch's `align_corners=True`.
    AlignCorners,
    /// `o / factor`.
    Asymmetric,
}

impl Coordinates {
    /// Per output position along an axis: the two input positions it reads and the weight
    /// of the second.
    fn taps(self, len: usize, factor: usize) -> Vec<(usize, usize, f32)> {
        let out = len * factor;
        (0..out)
            .map(|o| {
                let x = match self {
                    Coordinates::HalfPixel => ((o as f64 + 0.5) / factor as f64 - 0.5).max(0.0),
                    Coordinates::AlignCorners if out > 1 => {
                        o as f64 * (len - 1) as f64 / (out - 1) as f64
                    }
                    Coordinates::AlignCorners => 0.0,
                    Coordinates::Asymmetric => o as f64 / factor as f64,
                };
                let lo = (x.floor() as usize).min(len - 1);
                let hi = (lo + 1).min(len - 1);
                (lo, hi, (x - lo as f64).clamp(0.0, 1.0) as f32)
            })
            .collect()
    }
}

impl Resample {
    /// Output `(height, width)` of an input `(height, width)`.
    fn out(&self, (h, w): (usize, usize)) -> Result<(usize, usize), String> {
        let too_big = || "the output size overflows".to_string();
        match *self {
            Resample::ZeroPadding2D { rows, cols } => Ok((
                h.checked_add(rows.0)
                    .and_then(|v| v.checked_add(rows.1))
                    .ok_or_else(too_big)?,
                w.checked_add(cols.0)
                    .and_then(|v| v.checked_add(cols.1))
                    .ok_or_else(too_big)?,
            )),
            Resample::Cropping2D { rows, cols } => {
                match (
                    h.checked_sub(rows.0.saturating_add(rows.1)),
                    w.checked_sub(cols.0.saturating_add(cols.1)),
                ) {
                    (Some(oh), Some(ow)) if oh > 0 && ow > 0 => Ok((oh, ow)),
                    _ => Err(format!(
                        "cropping {rows:?} x {cols:?} leaves nothing of {h} x {w}"
                    )),
                }
            }
            Resample::Dilate {
                stride,
                before,
                after,
            } => {
                let axis = |len: usize, s: usize, b: usize, a: usize| {
                    len.checked_sub(1)
                        .and_then(|l| l.checked_mul(s))
                        .and_then(|l| l.checked_add(1 + b))
                        .and_then(|l| l.checked_add(a))
                };
                match (
                    axis(h, stride.0, before.0, after.0),
                    axis(w, stride.1, before.1, after.1),
                ) {
                    (Some(oh), Some(ow)) if stride.0 > 0 && stride.1 > 0 => Ok((oh, ow)),
                    _ => Err("a dilated input of no size, zero stride or overflowing size".into()),
                }
            }
            Resample::UpSampling2D { size } | Resample::Bilinear { size, .. } => {
                if size.0 == 0 || size.1 == 0 {
                    return Err("UpSampling2D size must be positive".into());
                }
                Ok((
                    h.checked_mul(size.0).ok_or_else(too_big)?,
                    w.checked_mul(size.1).ok_or_else(too_big)?,
                ))
            }
        }
    }

    /// The input `(row, col)` of output `(r, c)`, `None` for zeros.
    fn source(&self, (h, w): (usize, usize), r: usize, c: usize) -> Option<(usize, usize)> {
        match *self {
            Resample::ZeroPadding2D { rows, cols } => {
                let r = r.checked_sub(rows.0).filter(|&r| r < h)?;
                let c = c.checked_sub(cols.0).filter(|&c| c < w)?;
                Some((r, c))
            }
            Resample::Cropping2D { rows, cols } => Some((r + rows.0, c + cols.0)),
            Resample::UpSampling2D { size } => Some((r / size.0, c / size.1)),
            // Not one position: see `Interpolation`.
            Resample::Bilinear { .. } => None,
            Resample::Dilate { stride, before, .. } => {
                let spread = |o: usize, b: usize, s: usize, len: usize| {
                    o.checked_sub(b)
                        .filter(|d| d % s == 0 && d / s < len)
                        .map(|d| d / s)
                };
                Some((
                    spread(r, before.0, stride.0, h)?,
                    spread(c, before.1, stride.1, w)?,
                ))
            }
        }
    }
}

impl LayerOp for Resample {
    fn class_name(&self) -> &'static str {
        match self {
            Resample::ZeroPadding2D { .. } => "ZeroPadding2D",
            Resample::Cropping2D { .. } => "Cropping2D",
            Resample::UpSampling2D { .. } | Resample::Bilinear { .. } => "UpSampling2D",
            Resample::Dilate { .. } => "Dilate",
        }
    }
    fn base_name(&self) -> &'static str {
        match self {
            Resample::ZeroPadding2D { .. } => "zero_padding2d",
            Resample::Cropping2D { .. } => "cropping2d",
            Resample::UpSampling2D { .. } | Resample::Bilinear { .. } => "up_sampling2d",
            Resample::Dilate { .. } => "dilate",
        }
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (h, w, ch) = image(&one(inputs)?, self.class_name())?;
        let (oh, ow) = self.out((h, w))?;
        Ok(vec![oh, ow, ch])
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let input = image(cx.in_shape(), self.class_name()).map_err(|m| cx.fail(m))?;
        let (op, _) = self.step(input).map_err(|m| cx.fail(m))?;
        Ok(op)
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let (h, w, ch) = image(cx.in_shape(), self.class_name()).map_err(Error::Model)?;
        let (oh, ow) = self.out((h, w)).map_err(Error::Model)?;
        let mut y = Vec::with_capacity(cx.batch * oh * ow * ch);
        if let Resample::Bilinear { size, coords } = *self {
            let (rows, cols) = (coords.taps(h, size.0), coords.taps(w, size.1));
            for x in cx.inputs[0].chunks_exact((h * w * ch).max(1)) {
                for &(r0, r1, wr) in &rows {
                    for &(c0, c1, wc) in &cols {
                        let at = |r: usize, c: usize, k: usize| x[(r * w + c) * ch + k];
                        let (wr, wc) = (f64::from(wr), f64::from(wc));
                        y.extend((0..ch).map(|k| {
                            let top = at(r0, c0, k) * (1.0 - wc) + at(r0, c1, k) * wc;
                            let bottom = at(r1, c0, k) * (1.0 - wc) + at(r1, c1, k) * wc;
                            top * (1.0 - wr) + bottom * wr
                        }));
                    }
                }
            }
            return Ok(y);
        }
        for x in cx.inputs[0].chunks_exact((h * w * ch).max(1)) {
            for r in 0..oh {
                for c in 0..ow {
                    match self.source((h, w), r, c) {
                        Some((sr, sc)) => y.extend_from_slice(&x[(sr * w + sc) * ch..][..ch]),
                        None => y.extend(std::iter::repeat_n(0.0, ch)),
                    }
                }
            }
        }
        Ok(y)
    }
}

impl Resample {
    /// The step that runs `self` on an input of `[h, w, ch]`, and its output shape.
    pub(crate) fn step<'m>(
        self,
        (h, w, ch): (usize, usize, usize),
    ) -> Result<(Op<'m>, Vec<usize>), String> {
        let (oh, ow) = self.out((h, w))?;
        if let Resample::Bilinear { size, coords } = self {
            let step = Interpolation {
                input: (h, w, ch),
                rows: coords.taps(h, size.0),
                cols: coords.taps(w, size.1),
            };
            return Ok((Op::Step(StepRef::new(step)), vec![oh, ow, ch]));
        }
        let step = ResampleStep {
            map: self,
            input: (h, w, ch),
            out: (oh, ow),
            channels_first: false,
        };
        Ok((Op::Step(StepRef::new(step)), vec![oh, ow, ch]))
    }
}

/// The step: each output position copied from its input position, or zeros.
#[derive(Clone, Debug)]
struct ResampleStep {
    map: Resample,
    input: (usize, usize, usize),
    out: (usize, usize),
    /// Reads `[ch, h, w]` (a zero pad only: `StepOp::reading_channels_first`).
    channels_first: bool,
}

impl StepOp for ResampleStep {
    fn reading_channels_first(&self) -> Option<StepRef> {
        let pads = matches!(self.map, Resample::ZeroPadding2D { .. });
        (pads && !self.channels_first).then(|| {
            StepRef::new(ResampleStep {
                channels_first: true,
                ..self.clone()
            })
        })
    }
    fn planar_pad(&self) -> Option<crate::kernels::Planar> {
        let (h, w, _) = self.input;
        match self.map {
            Resample::ZeroPadding2D { rows, cols } if self.channels_first => {
                Some(crate::kernels::Planar {
                    h,
                    w,
                    top: rows.0,
                    left: cols.0,
                })
            }
            _ => None,
        }
    }
    fn describe(&self) -> String {
        match self.map {
            Resample::ZeroPadding2D { rows, cols } if self.channels_first => {
                format!("zero pad {rows:?} x {cols:?} of the channels-first input")
            }
            Resample::ZeroPadding2D { rows, cols } => format!("zero pad {rows:?} x {cols:?}"),
            Resample::Cropping2D { rows, cols } => format!("crop {rows:?} x {cols:?}"),
            Resample::UpSampling2D { size } => format!("repeat {} x {}", size.0, size.1),
            Resample::Bilinear { size, .. } => format!("bilinear {} x {}", size.0, size.1),
            Resample::Dilate {
                stride,
                before,
                after,
            } => format!("spread {stride:?} with zeros, pad {before:?} / {after:?}"),
        }
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (h, w, ch) = self.input;
        let shape = match self.channels_first {
            true => [ch, h, w],
            false => [h, w, ch],
        };
        match inputs {
            [x] if *x == shape => Ok(vec![self.out.0, self.out.1, ch]),
            _ => Err(format!("{} needs {shape:?}", self.describe())),
        }
    }
    fn run(&self, _: Isa, io: StepIo<'_>) {
        let (h, w, ch) = self.input;
        let (oh, ow) = self.out;
        // Samples spread over the plan's threads (`StepIo::per_sample`).
        if let Resample::ZeroPadding2D { rows, cols } = self.map
            && self.channels_first
        {
            return io.per_sample(|x, y| {
                crate::kernels::ops::pad2d_channels_first(ch, (h, w), rows, cols, x, y)
            });
        }
        if let Resample::ZeroPadding2D { rows, cols } = self.map {
            // Whole rows: the input's rows between zero rows, each between zero columns.
            let (ir, or) = (w * ch, ow * ch);
            return io.per_sample(|x, y| {
                let (top, rest) = y.split_at_mut(rows.0 * or);
                let (body, bottom) = rest.split_at_mut(h * or);
                top.fill(0.0);
                for (x, y) in x
                    .chunks_exact(ir.max(1))
                    .zip(body.chunks_exact_mut(or.max(1)))
                {
                    crate::kernels::ops::pad(cols.0 * ch, cols.1 * ch, x, y);
                }
                bottom.fill(0.0);
            });
        }
        io.per_sample(|x, y| {
            for (r, row) in y.chunks_exact_mut((ow * ch).max(1)).take(oh).enumerate() {
                for (c, px) in row.chunks_exact_mut(ch.max(1)).enumerate() {
                    match self.map.source((h, w), r, c) {
                        Some((sr, sc)) => px.copy_from_slice(&x[(sr * w + sc) * ch..][..ch]),
                        None => px.fill(0.0),
                    }
                }
            }
        });
    }
}

/// Bilinear upsampling: each output position `(1 - wr) * ((1 - wc) * a + wc * b) + wr * ((1 -
/// wc) * c + wc * d)` of the four input positions around it, in that order (the same bits on
/// every tier: no FMA).
#[derive(Debug)]
struct Interpolation {
    input: (usize, usize, usize),
    /// Per output row: the two input rows and the second's weight.
    rows: Vec<(usize, usize, f32)>,
    /// Per output column: the two input columns and the second's weight.
    cols: Vec<(usize, usize, f32)>,
}

impl StepOp for Interpolation {
    fn describe(&self) -> String {
        let (h, w, _) = self.input;
        format!(
            "bilinear {h}x{w} -> {}x{}",
            self.rows.len(),
            self.cols.len()
        )
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (h, w, ch) = self.input;
        match inputs {
            [x] if *x == [h, w, ch] => Ok(vec![self.rows.len(), self.cols.len(), ch]),
            _ => Err(format!("{} needs [{h}, {w}, {ch}]", self.describe())),
        }
    }
    fn run(&self, _: Isa, io: StepIo<'_>) {
        let (_, w, ch) = self.input;
        let line = (w * ch).max(1);
        io.per_sample(|x, y| {
            let rows = y.chunks_exact_mut((self.cols.len() * ch).max(1));
            for (row, &(r0, r1, wr)) in rows.zip(&self.rows) {
                let (top, bottom) = (&x[r0 * line..][..line], &x[r1 * line..][..line]);
                for (px, &(c0, c1, wc)) in row.chunks_exact_mut(ch.max(1)).zip(&self.cols) {
                    let (a, b) = (&top[c0 * ch..][..ch], &top[c1 * ch..][..ch]);
                    let (c, d) = (&bottom[c0 * ch..][..ch], &bottom[c1 * ch..][..ch]);
                    for (k, v) in px.iter_mut().enumerate() {
                        let upper = a[k] * (1.0 - wc) + b[k] * wc;
                        let lower = c[k] * (1.0 - wc) + d[k] * wc;
                        *v = upper * (1.0 - wr) + lower * wr;
                    }
                }
            }
        });
    }
}

//! Keras `Conv2D` over `[height, width, channels]` (channels_last): a 1x1 convolution of
//! stride 1 is a Dense over the positions; any other is a GEMM over its windows, read in place
//! from the padded input (an implicit im2col) or unrolled once per sample (im2col, for short
//! output rows), the bias and activation in its epilogue. Where the shape says so, that GEMM
//! is marked to run as Winograd F(2x2, 3x3) (`ops/winograd.rs`) or a direct loop
//! (`ops/direct_conv.rs`) instead.

use super::conv1d::{Im2col, im2col64};
use super::dense::dense;
use super::pool::image;
use super::resample::Resample;
use super::{LayerOp, Lowering, Reference, one};
use crate::error::Result;
use crate::kernels::Activation;
use crate::model::{DenseWeights, Padding, Window, Window2};
use crate::passes::{Band, ConvAlgo, ConvRows, Epi, Op};
use crate::plan::StepRef;
use std::borrow::Cow;

/// Output columns from which a convolution reads its windows in place (one GEMM per output
/// row) rather than unrolled: narrower rows make short GEMMs, each streaming all the weights.
/// Measured on Zen 5 (timing resnet18's 3x3 shapes alone): 14 columns run at 248 GFLOP/s in
/// place against 240 unrolled, but 7 columns over 9 MB of weights at 196 against 236.
const IMPLICIT_MIN_COLS: usize = 12;

/// Rows of at least [`IMPLICIT_MIN_NARROW`] columns also read in place when the weights take
/// at most this many bytes (they stay in L2 from one row's GEMM to the next): the MNIST
/// convnet's second conv (11 columns, 74 KB) made the model 5% faster at batch 1 and 3% at 64.
const IMPLICIT_NARROW_WEIGHTS: usize = 512 << 10;

/// See [`IMPLICIT_NARROW_WEIGHTS`].
const IMPLICIT_MIN_NARROW: usize = 8;

/// Values per kernel row (`kw * C`) from which a convolution reads its windows in place:
/// shorter runs make the GEMM stage every block of A in many tiny copies. On Zen 5 the MNIST
/// convnet's first conv (3x3 over one channel, runs of 3) ran 10% slower in place;
/// mobilenet_v3_small's first (3x3 over 3 channels, runs of 9) made the model 3% faster at
/// batch 1 and 8% at batch 8.
const IMPLICIT_MIN_RUN: usize = 8;

/// Window rows shorter than this (with `K <= KB`) run as a direct loop
/// ([`Conv2DConfig::direct`]) rather than a GEMM over the windows: mobilenet_v3_small's
/// 3x3 stem over RGB (rows of 9, 16 filters, hard-swish) as a direct loop made the model
/// 0.92x the time at batch 1 and 0.91x at batch 8 of it as an implicit im2col (Intel Xeon,
/// five and three alternating rounds).
const DIRECT_MAX_RUN: usize = 16;

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
    /// Channel groups: group `g` maps input channels `g * C / groups..` to filters `g * F /
    /// groups..` (1: an ordinary convolution). The kernel is then `[kh, kw, C / groups, F]`.
    pub groups: usize,
}

impl Conv2DConfig {
    /// The windows over an input of `[height, width, channels]`.
    pub fn window(&self, input: &[usize]) -> Result<Window2, String> {
        let (h, w, ch) = image(input, "Conv2D")?;
        let g = self.groups;
        if g == 0 || !ch.is_multiple_of(g) || !self.filters.is_multiple_of(g) {
            return Err(format!(
                "Conv2D groups {g} must divide the input channels ({ch}) and the filters ({})",
                self.filters
            ));
        }
        if [self.padding.0, self.padding.1].contains(&Padding::Causal) {
            return Err("Conv2D padding cannot be causal".into());
        }
        let ((kh, kw), (sh, sw), (dh, dw)) = (self.kernel_size, self.strides, self.dilation_rate);
        Ok(Window2 {
            rows: Window::new(h, kh, sh, dh, self.padding.0)?,
            cols: Window::new(w, kw, sw, dw, self.padding.1)?,
        })
    }

    /// Whether every window is one input position of every channel: a Dense over the
    /// positions.
    fn pointwise(&self) -> bool {
        self.kernel_size == (1, 1) && self.strides == (1, 1) && self.groups == 1
    }

    /// The implicit im2col: the input padded once (a `ZeroPadding2D` step, where the windows
    /// reach past it), then one GEMM per output row reading its windows in place, each
    /// `kh` runs of `kw * C` values. The K order is the unrolled rows' (tap row, tap column,
    /// channel), so the bits are those of the explicit im2col.
    fn implicit(&self, cx: &mut Lowering<'_, '_>, w: Window2, algo: ConvAlgo) -> Result<ConvRows> {
        let (r, c) = (&w.rows, &w.cols);
        let (rows, cols) = ((r.pad_left, r.reach_right()), (c.pad_left, c.reach_right()));
        let ch = cx.in_shape()[2];
        if (rows, cols) != ((0, 0), (0, 0)) {
            let pad = Resample::ZeroPadding2D { rows, cols };
            let (step, shape) = pad.step((r.len, c.len, ch)).map_err(|m| cx.fail(m))?;
            cx.push("pad", step, shape);
        }
        // One window (along an axis): its stride is never applied (and may be huge).
        let stride = |a: &Window| if a.out == 1 { 1 } else { a.stride };
        Ok(ConvRows {
            size: c.size,
            stride: stride(c),
            offset: 0,
            band: Some(Band {
                size: r.size,
                stride: stride(r),
                dilation: r.dilation,
            }),
            algo,
        })
    }

    /// A grouped convolution, one GEMM per group: each group's windows unrolled from its
    /// channels (im2col), times its columns of the kernel, the bias and activation in the
    /// epilogue, into its columns of the output (a last-axis concat, which
    /// [`ElideConcat`](crate::passes::ElideConcat) turns into strided stores).
    fn lower_groups<'m>(&'m self, cx: &mut Lowering<'m, '_>, w: Window2) -> Result<Op<'m>> {
        let in_shape = cx.in_shape().to_vec();
        let (g, f) = (self.groups, self.filters);
        let (cg, fg) = (in_shape[2] / g, f / g);
        let all = cx.graph_weights()?;
        let src = std::mem::take(&mut cx.inputs);
        let mut parts = Vec::with_capacity(g);
        for i in 0..g {
            let cols = Im2col::group(w, &in_shape, i * cg..(i + 1) * cg);
            let shape = cols.out_shape.clone();
            cx.inputs = src.clone();
            cx.push(&format!("im2col{i}"), Op::Step(StepRef::new(cols)), shape);
            let weights = DenseWeights {
                kernel: all
                    .kernel
                    .chunks_exact(f)
                    .flat_map(|row| &row[i * fg..(i + 1) * fg])
                    .copied()
                    .collect(),
                bias: all.bias.as_ref().map(|b| b[i * fg..(i + 1) * fg].to_vec()),
            };
            let op = Op::Dense {
                weights: Cow::Owned(weights),
                acts: vec![Epi::Act(self.activation)],
                conv: None,
            };
            cx.push(&format!("group{i}"), op, vec![w.rows.out, w.cols.out, fg]);
            parts.append(&mut cx.inputs);
        }
        cx.inputs = parts;
        Ok(Op::Concat {
            axis: 2,
            elided: false,
        })
    }

    /// A grouped convolution in float64, straight from its definition.
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    fn reference_groups(&self, x: &[f64], win: Window2, ch: usize, k: &DenseWeights) -> Vec<f64> {
        let (g, f) = (self.groups, self.filters);
        let (cg, fg) = (ch / g, f / g);
        let sample = (win.len() * ch).max(1);
        let mut y = Vec::with_capacity(x.len() / sample * win.out() * f);
        for xs in x.chunks_exact(sample) {
            for o in 0..win.out() {
                let mut row = vec![0.0; f];
                for (j, out) in row.iter_mut().enumerate() {
                    let first = j / fg * cg;
                    let mut acc = k.bias.as_ref().map_or(0.0, |b| f64::from(b[j]));
                    for t in 0..win.taps() {
                        let Some(s) = win.source(o, t) else { continue };
                        for c in 0..cg {
                            acc +=
                                xs[s * ch + first + c] * f64::from(k.kernel[(t * cg + c) * f + j]);
                        }
                    }
                    *out = acc;
                }
                crate::reference::activation_row(self.activation, &mut row);
                y.extend(row);
            }
        }
        y
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
            kh.saturating_mul(kw)
                .saturating_mul(last / self.groups.max(1)),
            self.filters,
            self.use_bias,
        ))
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let in_shape = cx.in_shape().to_vec();
        let w = self.window(&in_shape).map_err(|m| cx.fail(m))?;
        if self.groups > 1 {
            return self.lower_groups(cx, w);
        }
        let mut conv = None;
        let run = self.kernel_size.1.saturating_mul(in_shape[2]);
        let bytes = [self.kernel_size.0, self.filters, 4]
            .into_iter()
            .fold(run, usize::saturating_mul);
        let wide = w.cols.out >= IMPLICIT_MIN_COLS
            || (w.cols.out >= IMPLICIT_MIN_NARROW && bytes <= IMPLICIT_NARROW_WEIGHTS);
        let ch = in_shape[2];
        let algo = if self.winograd(ch) {
            ConvAlgo::Winograd
        } else if self.direct(ch, run < DIRECT_MAX_RUN) {
            ConvAlgo::Direct
        } else {
            ConvAlgo::Gemm
        };
        let implicit = self.dilation_rate.1 == 1 && wide && run >= IMPLICIT_MIN_RUN;
        if (implicit || algo != ConvAlgo::Gemm) && !self.pointwise() {
            conv = Some(self.implicit(cx, w, algo)?);
        } else if !self.pointwise() {
            let cols = Im2col::new(w, &in_shape);
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
        if self.groups > 1 {
            return Ok(self.reference_groups(cx.inputs[0], win, cx.in_shape()[2], cx.weights()?));
        }
        let cols = im2col64(cx.inputs[0], win, cx.in_shape()[2]);
        Ok(dense(&cols, cx.weights()?, cx.width(), self.activation))
    }
}

/// A Conv2DTranspose layer's configuration (Keras: the gradient of a Conv2D, a decoder's
/// upsampling). The kernel is stored as Keras does, `[kernel_h, kernel_w, filters,
/// in_channels]`. It runs as the equivalent convolution: the input spread `strides` apart
/// with zeros between and around (`Resample::Dilate`), then a stride-1 Conv2D with the
/// kernel flipped and its two channel axes swapped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2DTransposeConfig {
    /// Output channels.
    pub filters: usize,
    /// Window `(height, width)`.
    pub kernel_size: (usize, usize),
    /// Output steps per input step `(down, across)`.
    pub strides: (usize, usize),
    /// Along the rows and the columns: `Valid` (output `(len - 1) * stride + kernel`),
    /// `Same` (output `len * stride`) or `Explicit` (ONNX's pads, taken off the valid output).
    pub padding: (Padding, Padding),
    /// Activation applied after the bias.
    pub activation: Activation,
    /// Whether the layer has a bias vector.
    pub use_bias: bool,
}

impl Conv2DTransposeConfig {
    /// Along one axis of `len` steps, kernel `k`, stride `s`: `(output length, padding the
    /// forward convolution would take before it)`.
    fn axis(&self, len: usize, k: usize, s: usize, pad: Padding) -> Result<(usize, usize), String> {
        if len == 0 || k == 0 || s == 0 {
            return Err("Conv2DTranspose needs a non-empty input, kernel and stride".into());
        }
        let full = (len - 1)
            .checked_mul(s)
            .and_then(|v| v.checked_add(k))
            .ok_or("the output size overflows")?;
        match pad {
            Padding::Valid => Ok((full, 0)),
            Padding::Same => {
                let out = len.checked_mul(s).ok_or("the output size overflows")?;
                Ok((out, k.saturating_sub(s) / 2))
            }
            Padding::Explicit { left, right } if left < k && right < k && left + right < full => {
                Ok((full - left - right, left))
            }
            p => Err(format!(
                "Conv2DTranspose padding {p:?}: each side must be below the kernel ({k}) and \
                 leave an output"
            )),
        }
    }

    /// The zero-spread input's `Resample::Dilate` and the output `(height, width)`.
    fn plan(&self, input: &[usize]) -> Result<(super::resample::Resample, (usize, usize)), String> {
        let (h, w, _) = image(input, "Conv2DTranspose")?;
        let ((kh, kw), (sh, sw)) = (self.kernel_size, self.strides);
        let (oh, ph) = self.axis(h, kh, sh, self.padding.0)?;
        let (ow, pw) = self.axis(w, kw, sw, self.padding.1)?;
        // The stride-1 valid convolution over `before + (len - 1) * s + 1 + after` steps must
        // give `out`: before = k - 1 - p, after = out - 1 - (len - 1) * s + p (>= 0 here).
        let side = |len: usize, k: usize, s: usize, out: usize, p: usize| {
            (k - 1 - p, out + p - 1 - (len - 1) * s)
        };
        let (rb, ra) = side(h, kh, sh, oh, ph);
        let (cb, ca) = side(w, kw, sw, ow, pw);
        let dilate = super::resample::Resample::Dilate {
            stride: (sh, sw),
            before: (rb, cb),
            after: (ra, ca),
        };
        Ok((dilate, (oh, ow)))
    }
}

impl LayerOp for Conv2DTransposeConfig {
    fn class_name(&self) -> &'static str {
        "Conv2DTranspose"
    }
    fn base_name(&self) -> &'static str {
        "conv2d_transpose"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        if self.filters == 0 {
            return Err("Conv2DTranspose filters must be positive".into());
        }
        let (_, (oh, ow)) = self.plan(&s)?;
        Ok(vec![oh, ow, self.filters])
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
        let (dilate, _) = self.plan(&in_shape).map_err(|m| cx.fail(m))?;
        let ch = in_shape[2];
        let (step, spread) = dilate
            .step((in_shape[0], in_shape[1], ch))
            .map_err(|m| cx.fail(m))?;
        cx.push("spread", step, spread.clone());
        let conv = Conv2DConfig {
            filters: self.filters,
            kernel_size: self.kernel_size,
            strides: (1, 1),
            padding: (Padding::Valid, Padding::Valid),
            dilation_rate: (1, 1),
            activation: self.activation,
            use_bias: self.use_bias,
            groups: 1,
        };
        let w = conv.window(&spread).map_err(|m| cx.fail(m))?;
        let cols = Im2col::new(w, &spread);
        let shape = cols.out_shape.clone();
        cx.push("im2col", Op::Step(StepRef::new(cols)), shape);
        let weights = cx.graph_weights()?.into_owned();
        Ok(Op::Dense {
            weights: std::borrow::Cow::Owned(crate::model::DenseWeights {
                kernel: self.flipped(&weights.kernel, ch),
                bias: weights.bias,
            }),
            acts: vec![Epi::Act(self.activation)],
            conv: None,
        })
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        // Straight from the definition: input (i, j) adds kernel tap (a, b) times it to
        // output (i * sh + a - ph, j * sw + b - pw).
        let s = cx.in_shape();
        let (h, w, ch) = (s[0], s[1], s[2]);
        let ((kh, kw), (sh, sw), f) = (self.kernel_size, self.strides, self.filters);
        let (oh, ph) = self
            .axis(h, kh, sh, self.padding.0)
            .map_err(crate::Error::Model)?;
        let (ow, pw) = self
            .axis(w, kw, sw, self.padding.1)
            .map_err(crate::Error::Model)?;
        let wts = cx.weights()?;
        let mut y = Vec::with_capacity(cx.batch * oh * ow * f);
        for x in cx.inputs[0].chunks_exact((h * w * ch).max(1)) {
            let mut out = vec![0.0f64; oh * ow * f];
            for (i, j, a, b) in itertools4(h, w, kh, kw) {
                let (Some(r), Some(c)) = (
                    (i * sh + a).checked_sub(ph).filter(|&r| r < oh),
                    (j * sw + b).checked_sub(pw).filter(|&c| c < ow),
                ) else {
                    continue;
                };
                for o in 0..f {
                    let mut acc = 0.0;
                    for k in 0..ch {
                        let wv = f64::from(wts.kernel[((a * kw + b) * f + o) * ch + k]);
                        acc += x[(i * w + j) * ch + k] * wv;
                    }
                    out[(r * ow + c) * f + o] += acc;
                }
            }
            for px in out.chunks_exact_mut(f.max(1)) {
                if let Some(bias) = &wts.bias {
                    px.iter_mut()
                        .zip(bias)
                        .for_each(|(v, &b)| *v += f64::from(b));
                }
                crate::reference::activation_row(self.activation, px);
            }
            y.extend(out);
        }
        Ok(y)
    }
}

/// Every `(i, j, a, b)` of the four ranges, `b` fastest.
fn itertools4(
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    (0..h).flat_map(move |i| {
        (0..w).flat_map(move |j| (0..kh).flat_map(move |a| (0..kw).map(move |b| (i, j, a, b))))
    })
}

impl Conv2DTransposeConfig {
    /// Keras's `[kh, kw, filters, in]` kernel as the equivalent convolution's GEMM weights:
    /// taps flipped, `[(kh - 1 - a) * kw + (kw - 1 - b)) * in + c][o]`.
    fn flipped(&self, kernel: &[f32], ch: usize) -> Vec<f32> {
        let ((kh, kw), f) = (self.kernel_size, self.filters);
        let mut out = vec![0.0; kernel.len()];
        for a in 0..kh {
            for b in 0..kw {
                let t = (kh - 1 - a) * kw + (kw - 1 - b);
                for o in 0..f {
                    for c in 0..ch {
                        if let (Some(dst), Some(&v)) = (
                            out.get_mut((t * ch + c) * f + o),
                            kernel.get(((a * kw + b) * f + o) * ch + c),
                        ) {
                            *dst = v;
                        }
                    }
                }
            }
        }
        out
    }
}

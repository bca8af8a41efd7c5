//! A naive f64 reference: the oracle the tests compare plans against.
//!
//! Straight loops, Keras's formulas in f64, no blocking, no SIMD. Slow on purpose.

use crate::error::{Error, Result};
use crate::kernels::{Activation, SELU_ALPHA, SELU_SCALE};
use crate::model::{Layer, Merge, Model};
use crate::plan::Values;

fn relu6(x: f64) -> f64 {
    x.clamp(0.0, 6.0)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// One elementwise activation in f64 (row-wise ones are handled by [`activation_row`]).
pub fn activation(act: Activation, x: f64) -> f64 {
    match act {
        Activation::Linear | Activation::Softmax | Activation::LogSoftmax => x,
        Activation::Relu {
            negative_slope,
            max_value,
            threshold,
        } => {
            let t = f64::from(threshold);
            let mut pos = if x > t { x } else { 0.0 };
            if let Some(m) = max_value {
                pos = pos.clamp(0.0, f64::from(m));
            }
            if negative_slope == 0.0 {
                pos
            } else {
                pos - f64::from(negative_slope) * (t - x).max(0.0)
            }
        }
        Activation::Relu6 => relu6(x),
        Activation::LeakyRelu { negative_slope } => {
            if x > 0.0 {
                x
            } else {
                f64::from(negative_slope) * x
            }
        }
        Activation::Elu { alpha } => {
            if x > 0.0 {
                x
            } else {
                f64::from(alpha) * x.exp_m1()
            }
        }
        Activation::Selu => {
            let e = if x > 0.0 {
                x
            } else {
                f64::from(SELU_ALPHA) * x.exp_m1()
            };
            f64::from(SELU_SCALE) * e
        }
        // `1 + erf(z)` as `erfc(-z)` and `1 + tanh(z)` as `2 sigmoid(2z)`: the sums cancel in
        // the negative tail, even in f64.
        Activation::Gelu { approximate: false } => {
            0.5 * x * libm::erfc(-x / std::f64::consts::SQRT_2)
        }
        Activation::Gelu { approximate: true } => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            x * sigmoid(2.0 * c * (x + 0.044715 * x * x * x))
        }
        Activation::Sigmoid => sigmoid(x),
        Activation::HardSigmoid => relu6(x + 3.0) / 6.0,
        Activation::HardSigmoidAffine { alpha, beta } => {
            (f64::from(alpha) * x + f64::from(beta)).clamp(0.0, 1.0)
        }
        Activation::Silu => x * sigmoid(x),
        Activation::HardSilu => x * relu6(x + 3.0) / 6.0,
        Activation::Tanh => x.tanh(),
        Activation::Softplus => softplus(x),
        Activation::Softsign => x / (x.abs() + 1.0),
        Activation::Exponential => x.exp(),
        Activation::Mish => x * softplus(x).tanh(),
    }
}

/// Applies an activation to one last-axis row in f64 (softmax and log-softmax need the row).
pub fn activation_row(act: Activation, row: &mut [f64]) {
    match act {
        Activation::Softmax | Activation::LogSoftmax => {
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|&x| (x - m).exp()).sum();
            for x in row.iter_mut() {
                *x = if act == Activation::Softmax {
                    (*x - m).exp() / s
                } else {
                    *x - m - s.ln()
                };
            }
        }
        _ => row.iter_mut().for_each(|x| *x = activation(act, *x)),
    }
}

/// Runs a one-input `model` on a batch in f64; returns its first output.
pub fn run(model: &Model, input: &[f32]) -> Result<Vec<f64>> {
    let mut out = run_all(model, &[Values::F32(input)])?;
    Ok(out.swap_remove(0))
}

/// Runs `model` on a batch in f64: one [`Values`] per input; returns every output.
pub fn run_all(model: &Model, inputs: &[Values<'_>]) -> Result<Vec<Vec<f64>>> {
    let nodes = model.nodes();
    if inputs.len() != model.inputs().len() {
        return Err(Error::Model(format!(
            "{} inputs for a model of {}",
            inputs.len(),
            model.inputs().len()
        )));
    }
    let first = &nodes[model.input()].shape;
    let batch = inputs[0].len() / first.iter().product::<usize>().max(1);
    for (k, (v, &i)) in inputs.iter().zip(model.inputs()).enumerate() {
        let per: usize = nodes[i].shape.iter().product();
        if batch == 0 || v.len() != batch * per {
            return Err(Error::Model(format!(
                "input {k} has {} values, expected {batch} samples of {per}",
                v.len()
            )));
        }
    }
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); nodes.len()];
    let len = |shape: &[usize]| shape.iter().product::<usize>();
    for (i, node) in nodes.iter().enumerate() {
        let x = node.inputs.first().map(|&j| values[j].clone());
        let in_shape: &[usize] = node.inputs.first().map_or(&[], |&j| &nodes[j].shape);
        values[i] = match (&node.layer, x) {
            (Layer::Input, _) => {
                let k = model
                    .inputs()
                    .iter()
                    .position(|&j| j == i)
                    .expect("an input");
                match inputs[k] {
                    Values::F32(v) => v.iter().map(|&v| f64::from(v)).collect(),
                    Values::I32(v) => v.iter().map(|&v| f64::from(v)).collect(),
                    Values::I64(v) => v.iter().map(|&v| v as f64).collect(),
                }
            }
            (
                Layer::Embedding {
                    input_dim,
                    output_dim,
                },
                Some(ids),
            ) => {
                let table = &node.weights.as_ref().expect("embedding has a table").kernel;
                let mut y = Vec::with_capacity(ids.len() * output_dim);
                for &id in &ids {
                    if id.fract() != 0.0 || id < 0.0 || id >= *input_dim as f64 {
                        return Err(Error::Model(format!(
                            "layer {:?}: id {id} is not in 0..{input_dim}",
                            node.name
                        )));
                    }
                    let row = &table[id as usize * output_dim..][..*output_dim];
                    y.extend(row.iter().map(|&v| f64::from(v)));
                }
                y
            }
            (Layer::BatchNormalization(n), Some(mut x)) => {
                let ch = n.mean.len();
                for row in x.chunks_exact_mut(ch) {
                    for (c, v) in row.iter_mut().enumerate() {
                        let inv = 1.0 / (f64::from(n.variance[c]) + f64::from(n.epsilon)).sqrt();
                        let g = n.gamma.as_ref().map_or(1.0, |g| f64::from(g[c]));
                        let b = n.beta.as_ref().map_or(0.0, |b| f64::from(b[c]));
                        *v = (*v - f64::from(n.mean[c])) * inv * g + b;
                    }
                }
                x
            }
            (Layer::LayerNormalization(n), Some(mut x)) => {
                let ch = *node.shape.last().expect("rank");
                for row in x.chunks_exact_mut(ch) {
                    let m = if n.rms {
                        0.0
                    } else {
                        row.iter().sum::<f64>() / ch as f64
                    };
                    let var = row.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / ch as f64;
                    let inv = 1.0 / (var + f64::from(n.epsilon)).sqrt();
                    for (c, v) in row.iter_mut().enumerate() {
                        let g = n.gamma.as_ref().map_or(1.0, |g| f64::from(g[c]));
                        let b = n.beta.as_ref().map_or(0.0, |b| f64::from(b[c]));
                        *v = (*v - m) * inv * g + b;
                    }
                }
                x
            }
            (Layer::Normalization { mean, variance, .. }, Some(mut x)) => {
                for row in x.chunks_exact_mut(mean.len()) {
                    for (c, v) in row.iter_mut().enumerate() {
                        let sd = f64::from(variance[c]).sqrt().max(1e-7);
                        *v = (*v - f64::from(mean[c])) / sd;
                    }
                }
                x
            }
            (Layer::Affine { scale, shift }, Some(mut x)) => {
                for row in x.chunks_exact_mut(scale.len()) {
                    for ((v, &s), &t) in row.iter_mut().zip(scale).zip(shift) {
                        *v = *v * f64::from(s) + f64::from(t);
                    }
                }
                x
            }
            (Layer::Unary(u), Some(mut x)) => {
                x.iter_mut().for_each(|v| *v = u.apply_f64(*v));
                x
            }
            (Layer::Rescaling { scale, offset }, Some(mut x)) => {
                x.iter_mut()
                    .for_each(|v| *v = *v * f64::from(*scale) + f64::from(*offset));
                x
            }
            (Layer::ArgMax { .. }, Some(x)) => {
                let w = *in_shape.last().expect("rank");
                x.chunks_exact(w)
                    .map(|row| {
                        let mut best = 0;
                        for (j, &v) in row.iter().enumerate() {
                            if !row[best].is_nan() && (v > row[best] || v.is_nan()) {
                                best = j;
                            }
                        }
                        best as f64
                    })
                    .collect()
            }
            (Layer::Merge(m), Some(mut x)) => {
                for &j in &node.inputs[1..] {
                    for (a, &b) in x.iter_mut().zip(&values[j]) {
                        *a = match m {
                            Merge::Add | Merge::Average => *a + b,
                            Merge::Subtract => *a - b,
                            Merge::Multiply => *a * b,
                            _ if a.is_nan() || b.is_nan() => f64::NAN,
                            Merge::Maximum => a.max(b),
                            Merge::Minimum => a.min(b),
                        };
                    }
                }
                if *m == Merge::Average {
                    let n = node.inputs.len() as f64;
                    x.iter_mut().for_each(|v| *v /= n);
                }
                x
            }
            (
                Layer::Dense {
                    activation: act, ..
                },
                Some(x),
            ) => {
                let w = node.weights.as_ref().expect("dense has weights");
                dense(&x, w, *node.shape.last().expect("rank"), *act)
            }
            (
                Layer::Conv1D {
                    activation: act, ..
                },
                Some(x),
            ) => {
                // im2col in f64, then the same Dense.
                let win = node
                    .layer
                    .window(in_shape)
                    .ok()
                    .flatten()
                    .expect("conv has a window");
                let ch = in_shape[1];
                let mut cols = Vec::with_capacity(batch * win.out * win.size * ch);
                for xs in x.chunks_exact(len(in_shape)) {
                    for o in 0..win.out {
                        for t in 0..win.size {
                            match win.source(o, t) {
                                Some(s) => cols.extend_from_slice(&xs[s * ch..][..ch]),
                                None => cols.extend(std::iter::repeat_n(0.0, ch)),
                            }
                        }
                    }
                }
                let w = node.weights.as_ref().expect("conv has weights");
                dense(&cols, w, *node.shape.last().expect("rank"), *act)
            }
            (Layer::Activation(act), Some(mut x)) => {
                let n = *node.shape.last().expect("rank");
                x.chunks_exact_mut(n).for_each(|r| activation_row(*act, r));
                x
            }
            (
                Layer::Dropout { .. } | Layer::Identity | Layer::Flatten | Layer::Reshape { .. },
                Some(x),
            ) => x,
            (Layer::Permute { dims }, Some(x)) => {
                let perm = crate::model::permutation(dims, in_shape.len()).expect("checked dims");
                // Source strides of each output axis, then every output index in order.
                let strides: Vec<usize> = perm
                    .iter()
                    .map(|&a| in_shape[a + 1..].iter().product())
                    .collect();
                let mut y = Vec::with_capacity(x.len());
                for xs in x.chunks_exact(len(in_shape)) {
                    let mut idx = vec![0usize; perm.len()];
                    for _ in 0..xs.len() {
                        y.push(xs[idx.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>()]);
                        for d in (0..idx.len()).rev() {
                            idx[d] += 1;
                            if idx[d] < node.shape[d] {
                                break;
                            }
                            idx[d] = 0;
                        }
                    }
                }
                y
            }
            (Layer::MaxPooling1D { .. } | Layer::AveragePooling1D { .. }, Some(x)) => {
                let win = node.layer.window(in_shape).ok().flatten().expect("window");
                let max = matches!(node.layer, Layer::MaxPooling1D { .. });
                pool(
                    &x,
                    in_shape,
                    |o| (0..win.size).filter_map(move |t| win.source(o, t)),
                    win.out,
                    max,
                )
            }
            (Layer::GlobalMaxPooling1D | Layer::GlobalAveragePooling1D, Some(x)) => {
                let steps = in_shape[0];
                let max = node.layer == Layer::GlobalMaxPooling1D;
                pool(&x, in_shape, |_| 0..steps, 1, max)
            }
            (Layer::Concatenate { axis }, Some(_)) => {
                let a = crate::model::concat_axis(*axis, node.shape.len()).expect("checked axis");
                let outer: usize = node.shape[..a].iter().product();
                let widths: Vec<usize> = node
                    .inputs
                    .iter()
                    .map(|&j| nodes[j].shape[a..].iter().product())
                    .collect();
                let mut y = Vec::with_capacity(batch * len(&node.shape));
                for b in 0..batch {
                    for o in 0..outer {
                        for (&j, &w) in node.inputs.iter().zip(&widths) {
                            let start = b * outer * w + o * w;
                            y.extend_from_slice(&values[j][start..start + w]);
                        }
                    }
                }
                y
            }
            (_, None) => unreachable!("non-input layers have an input"),
        };
    }
    Ok(model
        .outputs()
        .iter()
        .map(|&o| {
            debug_assert_eq!(values[o].len(), batch * len(&nodes[o].shape));
            values[o].clone()
        })
        .collect())
}

/// `act(x · kernel + bias)` over rows of `x` (f64 sums).
fn dense(x: &[f64], w: &crate::model::DenseWeights, n: usize, act: Activation) -> Vec<f64> {
    let k = w.kernel.len() / n;
    let mut y = Vec::with_capacity(x.len() / k * n);
    for row in x.chunks_exact(k) {
        let mut out: Vec<f64> = (0..n)
            .map(|j| {
                let s: f64 = (0..k)
                    .map(|kk| row[kk] * f64::from(w.kernel[kk * n + j]))
                    .sum();
                s + w.bias.as_ref().map_or(0.0, |b| f64::from(b[j]))
            })
            .collect();
        activation_row(act, &mut out);
        y.extend(out);
    }
    y
}

/// Max or mean over the taps `taps(o)` for each of `out` output steps, per channel.
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

/// How far sinter's f32 activation may be from [`activation`] at input `x` with exact result `y`:
/// 3 ulp of `y` plus 3 ulp of `x f'(x)`, plus 4 ulp of the smallest subnormal per `|x|`.
///
/// The first term is the rounding of the last operations. The second is the function's own
/// condition: the kernels round intermediate arguments (`-x`, `2z`, `x / sqrt 2`, `alpha x`), and
/// the function turns a relative error of its argument into `|x f'(x)|` times that in its result
/// (`exp(-15)` in `silu(-15)`, the knee of `alpha x + beta`). The third covers results built from
/// subnormal intermediates (`silu(-100)`), which carry an absolute rounding that a later product
/// by `x` scales. `x f'(x)` is a central difference in f64 (exact enough for a tolerance).
pub fn activation_tolerance(act: Activation, x: f64, y: f64) -> f64 {
    let ulp = f64::from(f32::EPSILON);
    let d = 1.0 / f64::from(1u32 << 20);
    let x_slope =
        (activation(act, x * (1.0 + d)) - activation(act, x * (1.0 - d))).abs() / (2.0 * d);
    let x_slope = if x_slope.is_finite() { x_slope } else { 0.0 };
    3.0 * ulp * (y.abs() + x_slope) + 4.0 * f64::from(f32::from_bits(1)) * (1.0 + x.abs())
}

/// How far sinter's f32 softmax or log-softmax of the row `x` may be from the exact `y`
/// ([`activation_row`] of `x`), per element, in ulps of the true values.
///
/// Softmax: `y_i = e^(x_i - m) / s`. The rounding of `x_i - m` turns into a relative error of
/// `|x_i - m|` ulp through `exp`; `exp`, the division and the n-term sum `s` add a few ulp and
/// `n` ulp, all relative to `y_i` (however small: a tiny output is as exact as a large one).
/// Log-softmax: `y_i = (x_i - m) - ln s`: an ulp of each term, and `s`'s relative error of `n` ulp
/// becomes an absolute one through `ln`.
pub fn row_tolerance(act: Activation, x: &[f64], y: &[f64]) -> Vec<f64> {
    let ulp = f64::from(f32::EPSILON);
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let n = x.len() as f64;
    let log_s = x.iter().map(|&v| (v - m).exp()).sum::<f64>().ln();
    let tiny = 4.0 * f64::from(f32::from_bits(1));
    x.iter()
        .zip(y)
        .map(|(&xi, &yi)| {
            let shift = (xi - m).abs();
            if act == Activation::Softmax {
                2.0 * ulp * yi.abs() * (4.0 + shift + n) + tiny
            } else {
                2.0 * ulp * (4.0 + shift + log_s.abs() + n) + tiny
            }
        })
        .collect()
}

//! A naive f64 reference: the oracle the tests compare plans against.
//!
//! Straight loops, Keras's formulas in f64, no blocking, no SIMD. Slow on purpose.

use crate::error::{Error, Result};
use crate::kernels::{Activation, SELU_ALPHA, SELU_SCALE};
use crate::model::Model;
use crate::ops::Reference;
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
    for (i, node) in nodes.iter().enumerate() {
        values[i] = match model.inputs().iter().position(|&j| j == i) {
            Some(k) => match inputs[k] {
                Values::F32(v) => v.iter().map(|&v| f64::from(v)).collect(),
                Values::I32(v) => v.iter().map(|&v| f64::from(v)).collect(),
                Values::I64(v) => v.iter().map(|&v| v as f64).collect(),
                Values::Bool(v) => v.iter().map(|&v| f64::from(u8::from(v))).collect(),
            },
            None => node.layer.op().reference(&Reference {
                node,
                inputs: node.inputs.iter().map(|&j| values[j].as_slice()).collect(),
                shapes: node
                    .inputs
                    .iter()
                    .map(|&j| nodes[j].shape.as_slice())
                    .collect(),
                batch,
            })?,
        };
    }
    let len = |shape: &[usize]| shape.iter().product::<usize>();
    Ok(model
        .outputs()
        .iter()
        .map(|&o| {
            debug_assert_eq!(values[o].len(), batch * len(&nodes[o].shape));
            values[o].clone()
        })
        .collect())
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

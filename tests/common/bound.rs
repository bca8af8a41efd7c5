//! Rigorous error bounds for comparing an f32 plan with an f64 evaluation: each value carries a
//! bound on how far the plan's f32 result may be from it, built from the rounding of each
//! operation sinter performs (Higham's `gamma_n = n u / (1 - n u)`, `u = 2^-24`) and the
//! activations' own accuracy in ulps of the true value (`reference::activation_tolerance`).

use sinter::{Activation, reference};

/// An f64 value, a bound `e` on the f32 plan's distance from it, and the magnitude `mag` of the
/// terms it was computed from (a scale folded into the weights later rounds relative to that).
#[derive(Clone, Copy, Debug)]
pub struct Bounded {
    pub v: f64,
    pub e: f64,
    pub mag: f64,
}

/// The unit roundoff of f32.
pub const U: f64 = f32::EPSILON as f64 / 2.0;

pub fn gamma(n: usize) -> f64 {
    n as f64 * U / (1.0 - n as f64 * U)
}

impl Bounded {
    /// A value the plan holds exactly (an input, a table entry).
    pub fn exact(v: f32) -> Bounded {
        let v = f64::from(v);
        Bounded {
            v,
            e: 0.0,
            mag: v.abs(),
        }
    }

    /// `v` computed from operands within `e` of exact, rounded `ops` times relative to `mag`.
    pub fn rounded(v: f64, e: f64, mag: f64, ops: usize) -> Bounded {
        Bounded {
            v,
            e: e + gamma(ops) * mag,
            mag,
        }
        .in_range()
    }

    /// No claim (an infinite bound) where the plan may have left the f32 range.
    fn in_range(self) -> Bounded {
        let max = f64::from(f32::MAX) / 2.0;
        if self.v.abs() + self.e <= max && self.mag + self.e <= max {
            self
        } else {
            Bounded {
                e: f64::INFINITY,
                ..self
            }
        }
    }
}

/// `sum_i x_i w_i + b` with sinter's summation: an FMA chain over each block of at most 128
/// products, the block sums added in turn, then the bias; no product goes through more than
/// `min(k, 128) + ceil(k / 128)` roundings.
pub fn dot(terms: impl Iterator<Item = (Bounded, f64)>, b: f64) -> Bounded {
    let (mut v, mut mag, mut prop, mut k) = (0.0, 0.0, 0.0, 0usize);
    for (x, w) in terms {
        v += x.v * w;
        mag += (x.v.abs() + x.e) * w.abs();
        prop += x.e * w.abs();
        k += 1;
    }
    Bounded::rounded(v + b, prop, mag + b.abs(), k.min(128) + k.div_ceil(128))
}

/// `x * scale + shift` where sinter may have folded `scale` into the weights that made `x`
/// (one more rounding of every term of `x`) and rounds at most `ops` times after.
pub fn affine(x: Bounded, scale: f64, shift: f64, ops: usize) -> Bounded {
    let v = x.v * scale + shift;
    Bounded::rounded(
        v,
        x.e * scale.abs(),
        (x.mag.max(x.v.abs()) + x.e) * scale.abs() + shift.abs(),
        ops,
    )
}

/// Largest |f'| of an elementwise activation on `[x - e, x + e]` (a Lipschitz bound).
pub fn slope(act: Activation, x: f64, e: f64) -> f64 {
    match act {
        Activation::Linear
        | Activation::Relu6
        | Activation::Tanh
        | Activation::Softplus
        | Activation::Softsign => 1.0,
        Activation::Relu { negative_slope, .. } | Activation::LeakyRelu { negative_slope } => {
            f64::from(negative_slope).abs().max(1.0)
        }
        Activation::Elu { alpha } => f64::from(alpha).abs().max(1.0),
        Activation::Selu => f64::from(sinter::kernels::SELU_SCALE * sinter::kernels::SELU_ALPHA),
        Activation::Gelu { .. } | Activation::Silu | Activation::Mish => 1.2,
        Activation::Sigmoid => 0.25,
        Activation::HardSigmoid => 1.0 / 6.0,
        Activation::HardSigmoidAffine { alpha, .. } => f64::from(alpha).abs(),
        Activation::HardSilu => 1.5,
        Activation::Exponential => (x + e).exp(),
        _ => unreachable!("{act} is row-wise or unknown"),
    }
}

/// An elementwise activation of a bounded pre-activation: its slope times the input's error,
/// plus its own error (in ulps of the true value); a thresholded ReLU adds its jump when the
/// input is within its error of the threshold.
pub fn activation(act: Activation, x: Bounded) -> Bounded {
    let y = reference::activation(act, x.v);
    let mut e = slope(act, x.v, x.e) * x.e + reference::activation_tolerance(act, x.v, y);
    if let Activation::Relu {
        threshold,
        max_value,
        ..
    } = act
        && threshold != 0.0
        && (x.v - f64::from(threshold)).abs() <= x.e
    {
        e += f64::from(threshold).abs() + max_value.map_or(0.0, |m| f64::from(m).abs());
    }
    Bounded {
        v: y,
        e,
        mag: y.abs(),
    }
    .in_range()
}

/// Any activation over one last-axis row. Softmax: a shift of at most E in its inputs scales
/// its outputs by at most `e^(2E)`; log-softmax moves by at most `2E`; plus the row's own
/// rounding (`reference::row_tolerance`, relative to each output however small).
pub fn activation_row(act: Activation, row: &[Bounded]) -> Vec<Bounded> {
    if !act.is_row_wise() {
        return row.iter().map(|&x| activation(act, x)).collect();
    }
    let pre: Vec<f64> = row.iter().map(|x| x.v).collect();
    let mut y = pre.clone();
    reference::activation_row(act, &mut y);
    let e = row.iter().map(|x| x.e).fold(0.0, f64::max);
    let own = reference::row_tolerance(act, &pre, &y);
    y.iter()
        .zip(own)
        .map(|(&y, own)| {
            Bounded {
                v: y,
                e: own
                    + if act == Activation::Softmax {
                        y * ((2.0 * e).exp() - 1.0)
                    } else {
                        2.0 * e
                    },
                mag: y.abs(),
            }
            .in_range()
        })
        .collect()
}

/// Compares the plan's `got` with `want`; returns how many values were checked (not those
/// with no claim: an infinite bound).
pub fn check(what: &str, got: &[f32], want: &[Bounded]) -> Result<usize, String> {
    if got.len() != want.len() {
        return Err(format!("{what}: {} values, want {}", got.len(), want.len()));
    }
    let mut checked = 0;
    for (i, (&g, w)) in got.iter().zip(want).enumerate() {
        if !(w.e.is_finite() && w.v.is_finite()) {
            continue;
        }
        let err = (f64::from(g) - w.v).abs();
        if err.is_nan() || err > w.e {
            return Err(format!(
                "{what}, value {i}: got {g}, f64 {}, err {err:e} > bound {:e}",
                w.v, w.e
            ));
        }
        checked += 1;
    }
    Ok(checked)
}

/// Max (exact) or mean (a sum and a division) of a pooling window.
pub fn pool(max: bool, xs: impl Iterator<Item = Bounded>) -> Bounded {
    let xs: Vec<Bounded> = xs.collect();
    let n = xs.len();
    if max {
        let v = xs.iter().map(|x| x.v).fold(f64::NEG_INFINITY, f64::max);
        let e = xs.iter().map(|x| x.e).fold(0.0, f64::max);
        // The max of values each within e of exact is within e of the exact max.
        return Bounded { v, e, mag: v.abs() };
    }
    let v = xs.iter().map(|x| x.v).sum::<f64>() / n as f64;
    let mag = xs.iter().map(|x| x.v.abs() + x.e).sum::<f64>() / n as f64;
    let e = xs.iter().map(|x| x.e).sum::<f64>() / n as f64;
    Bounded::rounded(v, e, mag, n + 2)
}

//! Normalizations: Keras `BatchNormalization` (inference: a per-channel affine, folded into
//! the producing GEMM where it can be), `LayerNormalization` / `RMSNormalization` (per row,
//! in the GEMM's epilogue or a row pass) and the preprocessing `Normalization`.

use super::{LayerOp, Lowering, Reference, one};
use crate::error::Result;
use crate::model::last_axis;
use crate::passes::Op;

/// Batch normalization's inference parameters, one value per channel of the last axis.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelNorm {
    /// The normalized axis as Keras numbers it (batch = 0, `-1` = last); only the last axis
    /// is supported.
    pub axis: isize,
    /// Added to the variance.
    pub epsilon: f32,
    /// Scale (`None`: Keras `scale=False`, i.e. 1).
    pub gamma: Option<Vec<f32>>,
    /// Offset (`None`: Keras `center=False`, i.e. 0).
    pub beta: Option<Vec<f32>>,
    /// Moving mean.
    pub mean: Vec<f32>,
    /// Moving variance (non-negative).
    pub variance: Vec<f32>,
}

impl ChannelNorm {
    /// The per-channel `(scale, shift)` with `y = x * scale + shift`, computed in f64 and
    /// rounded once: `scale = gamma / sqrt(var + eps)`, `shift = beta - mean * scale`.
    pub fn affine(&self) -> (Vec<f32>, Vec<f32>) {
        let n = self.mean.len();
        (0..n)
            .map(|c| {
                let g = self.gamma.as_ref().map_or(1.0, |g| f64::from(g[c]));
                let b = self.beta.as_ref().map_or(0.0, |b| f64::from(b[c]));
                let s = g / (f64::from(self.variance[c]) + f64::from(self.epsilon)).sqrt();
                (s as f32, (b - f64::from(self.mean[c]) * s) as f32)
            })
            .unzip()
    }

    pub(crate) fn check(&self, shape: &[usize]) -> Result<(), String> {
        let ch = last_axis(shape, self.axis)?;
        let vecs = [
            ("gamma", self.gamma.as_deref()),
            ("beta", self.beta.as_deref()),
            ("moving_mean", Some(&self.mean[..])),
            ("moving_variance", Some(&self.variance[..])),
        ];
        check_channel_vecs(&vecs, ch)?;
        check_epsilon(self.epsilon)?;
        if let Some(i) = self.variance.iter().position(|&v| v < 0.0) {
            return Err(format!(
                "moving_variance[{i}] is {} (a variance cannot be negative)",
                self.variance[i]
            ));
        }
        Ok(())
    }

    pub(crate) fn count(&self) -> usize {
        self.mean.len() * 2
            + self.gamma.as_ref().map_or(0, Vec::len)
            + self.beta.as_ref().map_or(0, Vec::len)
    }
}

/// Layer normalization's parameters, one value per channel of the last axis.
#[derive(Clone, Debug, PartialEq)]
pub struct RowNorm {
    /// The normalized axis as Keras numbers it (batch = 0, `-1` = last); only the last axis
    /// is supported.
    pub axis: isize,
    /// Added to the variance (or mean square).
    pub epsilon: f32,
    /// Scale (`None`: 1).
    pub gamma: Option<Vec<f32>>,
    /// Offset (`None`: 0; always `None` with `rms`).
    pub beta: Option<Vec<f32>>,
    /// Root-mean-square normalization: no mean is subtracted.
    pub rms: bool,
}

impl RowNorm {
    pub(crate) fn check(&self, shape: &[usize]) -> Result<(), String> {
        let ch = last_axis(shape, self.axis)?;
        check_channel_vecs(
            &[
                ("gamma", self.gamma.as_deref()),
                ("beta", self.beta.as_deref()),
            ],
            ch,
        )?;
        if self.rms && self.beta.is_some() {
            return Err("an RMS normalization has no beta".into());
        }
        check_epsilon(self.epsilon)
    }

    pub(crate) fn count(&self) -> usize {
        self.gamma.as_ref().map_or(0, Vec::len) + self.beta.as_ref().map_or(0, Vec::len)
    }
}

pub(crate) fn check_epsilon(eps: f32) -> Result<(), String> {
    if eps.is_finite() && eps >= 0.0 {
        Ok(())
    } else {
        Err(format!("epsilon {eps} must be finite and non-negative"))
    }
}

/// Each present vector has `ch` finite values.
pub(crate) fn check_channel_vecs(vecs: &[(&str, Option<&[f32]>)], ch: usize) -> Result<(), String> {
    for &(what, v) in vecs {
        let Some(v) = v else { continue };
        if v.len() != ch {
            return Err(format!(
                "{what} has {} values, expected {ch} (one per channel of the last axis)",
                v.len()
            ));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(format!("{what}[{i}] is {} (weights must be finite)", v[i]));
        }
    }
    Ok(())
}

impl LayerOp for ChannelNorm {
    fn class_name(&self) -> &'static str {
        "BatchNormalization"
    }
    fn base_name(&self) -> &'static str {
        "batch_normalization"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        self.check(&s)?;
        Ok(s)
    }
    fn param_count(&self) -> usize {
        self.count()
    }
    fn non_trainable_count(&self) -> usize {
        self.mean.len() + self.variance.len()
    }
    fn lower<'m>(&'m self, _: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let (scale, shift) = self.affine();
        Ok(Op::Affine { scale, shift })
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let mut x = cx.x();
        let ch = self.mean.len();
        for row in x.chunks_exact_mut(ch) {
            for (c, v) in row.iter_mut().enumerate() {
                let inv = 1.0 / (f64::from(self.variance[c]) + f64::from(self.epsilon)).sqrt();
                let g = self.gamma.as_ref().map_or(1.0, |g| f64::from(g[c]));
                let b = self.beta.as_ref().map_or(0.0, |b| f64::from(b[c]));
                *v = (*v - f64::from(self.mean[c])) * inv * g + b;
            }
        }
        Ok(x)
    }
}

impl LayerOp for RowNorm {
    fn class_name(&self) -> &'static str {
        if self.rms {
            "RMSNormalization"
        } else {
            "LayerNormalization"
        }
    }
    fn base_name(&self) -> &'static str {
        if self.rms {
            "rms_normalization"
        } else {
            "layer_normalization"
        }
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        self.check(&s)?;
        Ok(s)
    }
    fn param_count(&self) -> usize {
        self.count()
    }
    fn lower<'m>(&'m self, _: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        Ok(Op::Norm(self))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let mut x = cx.x();
        let ch = cx.width();
        for row in x.chunks_exact_mut(ch) {
            let m = if self.rms {
                0.0
            } else {
                row.iter().sum::<f64>() / ch as f64
            };
            let var = row.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / ch as f64;
            let inv = 1.0 / (var + f64::from(self.epsilon)).sqrt();
            for (c, v) in row.iter_mut().enumerate() {
                let g = self.gamma.as_ref().map_or(1.0, |g| f64::from(g[c]));
                let b = self.beta.as_ref().map_or(0.0, |b| f64::from(b[c]));
                *v = (*v - m) * inv * g + b;
            }
        }
        Ok(x)
    }
}

/// Keras's preprocessing `Normalization` with adapted statistics over the last axis:
/// `(x - mean) / max(sqrt(variance), 1e-7)`.
#[derive(Clone, Debug, PartialEq)]
pub struct NormalizationConfig {
    /// The axis of the statistics (Keras numbering, `-1` = last); only the last axis.
    pub axis: isize,
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel variance.
    pub variance: Vec<f32>,
}

impl LayerOp for NormalizationConfig {
    fn class_name(&self) -> &'static str {
        "Normalization"
    }
    fn base_name(&self) -> &'static str {
        "normalization"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        let ch = last_axis(&s, self.axis)?;
        check_channel_vecs(
            &[
                ("mean", Some(&self.mean[..])),
                ("variance", Some(&self.variance[..])),
            ],
            ch,
        )?;
        if let Some(i) = self.variance.iter().position(|&v| v < 0.0) {
            return Err(format!(
                "variance[{i}] is {} (cannot be negative)",
                self.variance[i]
            ));
        }
        Ok(s)
    }
    fn param_count(&self) -> usize {
        // Keras also counts the adapted sample count.
        self.mean.len() + self.variance.len() + 1
    }
    fn non_trainable_count(&self) -> usize {
        self.param_count()
    }
    fn lower<'m>(&'m self, _: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        // Keras: (x - mean) / max(sqrt(variance), 1e-7), folded into one affine.
        let (scale, shift) = self
            .mean
            .iter()
            .zip(&self.variance)
            .map(|(&mu, &var)| {
                let s = 1.0 / f64::from(var).sqrt().max(1e-7);
                (s as f32, (-f64::from(mu) * s) as f32)
            })
            .unzip();
        Ok(Op::Affine { scale, shift })
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let mut x = cx.x();
        for row in x.chunks_exact_mut(self.mean.len()) {
            for (c, v) in row.iter_mut().enumerate() {
                let sd = f64::from(self.variance[c]).sqrt().max(1e-7);
                *v = (*v - f64::from(self.mean[c])) / sd;
            }
        }
        Ok(x)
    }
}

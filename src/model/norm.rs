//! Normalization payloads: per-channel statistics and per-row normalization.

use super::last_axis;

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

pub(super) fn check_epsilon(eps: f32) -> Result<(), String> {
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

//! Layers that pass their input through at inference: `Dropout`, the noise and
//! regularization layers that act only in training, and `Identity`.

use super::{LayerOp, Lowering, Reference, one};
use crate::error::Result;
use crate::passes::Op;

/// Keras `Dropout(rate)`: identity at inference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutConfig {
    /// Fraction dropped during training, in `[0, 1)`.
    pub rate: f32,
}

impl LayerOp for DropoutConfig {
    fn class_name(&self) -> &'static str {
        "Dropout"
    }
    fn base_name(&self) -> &'static str {
        "dropout"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        if !(0.0..1.0).contains(&self.rate) {
            return Err(format!("Dropout rate must be in [0, 1), got {}", self.rate));
        }
        one(inputs)
    }
    fn lower<'m>(&'m self, _: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        Ok(Op::Dropout)
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        Ok(cx.x())
    }
}

/// Keras `Identity` (and ONNX `Identity`).
#[derive(Debug)]
pub(crate) struct IdentityOp;

impl LayerOp for IdentityOp {
    fn class_name(&self) -> &'static str {
        "Identity"
    }
    fn base_name(&self) -> &'static str {
        "identity"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        one(inputs)
    }
    fn lower<'m>(&'m self, _: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        Ok(Op::Dropout)
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        Ok(cx.x())
    }
}

/// A Keras layer that acts only in training (noise, dropout variants, regularization): the
/// identity at inference, kept as its own class so `summary` shows it as Keras does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrainingOnly {
    /// `GaussianNoise(stddev)`.
    GaussianNoise,
    /// `GaussianDropout(rate)`.
    GaussianDropout,
    /// `AlphaDropout(rate)`.
    AlphaDropout,
    /// `SpatialDropout1D(rate)`.
    SpatialDropout1D,
    /// `SpatialDropout2D(rate)`.
    SpatialDropout2D,
    /// `ActivityRegularization(l1, l2)`.
    ActivityRegularization,
}

impl TrainingOnly {
    /// Every kind with its Keras class and the base of its auto-generated names.
    const NAMES: [(TrainingOnly, &'static str, &'static str); 6] = [
        (
            TrainingOnly::GaussianNoise,
            "GaussianNoise",
            "gaussian_noise",
        ),
        (
            TrainingOnly::GaussianDropout,
            "GaussianDropout",
            "gaussian_dropout",
        ),
        (TrainingOnly::AlphaDropout, "AlphaDropout", "alpha_dropout"),
        (
            TrainingOnly::SpatialDropout1D,
            "SpatialDropout1D",
            "spatial_dropout1d",
        ),
        (
            TrainingOnly::SpatialDropout2D,
            "SpatialDropout2D",
            "spatial_dropout2d",
        ),
        (
            TrainingOnly::ActivityRegularization,
            "ActivityRegularization",
            "activity_regularization",
        ),
    ];

    /// The kind of Keras class `class`, if it is one.
    pub fn from_class(class: &str) -> Option<TrainingOnly> {
        Self::NAMES.iter().find(|n| n.1 == class).map(|n| n.0)
    }

    fn names(self) -> (&'static str, &'static str) {
        Self::NAMES
            .iter()
            .find(|n| n.0 == self)
            .map_or(("Identity", "identity"), |n| (n.1, n.2))
    }
}

impl LayerOp for TrainingOnly {
    fn class_name(&self) -> &'static str {
        self.names().0
    }
    fn base_name(&self) -> &'static str {
        self.names().1
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        one(inputs)
    }
    fn lower<'m>(&'m self, _: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        Ok(Op::Dropout)
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        Ok(cx.x())
    }
}

//! Layers that pass their input through at inference: `Dropout` (and the noise layers Keras
//! maps onto it) and `Identity`.

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

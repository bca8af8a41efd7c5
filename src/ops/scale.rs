//! `x * scale + offset`: Keras `Rescaling` (one scale for all) and the ONNX primitive
//! `Affine` (a per-channel `Add`, `Sub` or `Mul` by a constant). Both fuse into a producing
//! GEMM's epilogue, or fold into its weights, like a batch normalization.

use super::{LayerOp, Lowering, Reference, one};
use crate::error::Result;
use crate::passes::Op;

/// Keras `Rescaling(scale, offset)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RescalingConfig {
    /// Multiplier.
    pub scale: f32,
    /// Added after the multiplication.
    pub offset: f32,
}

impl LayerOp for RescalingConfig {
    fn class_name(&self) -> &'static str {
        "Rescaling"
    }
    fn base_name(&self) -> &'static str {
        "rescaling"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        one(inputs)
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let ch = cx.node.shape.last().copied().unwrap_or(0);
        Ok(Op::Affine {
            scale: vec![self.scale; ch],
            shift: vec![self.offset; ch],
        })
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let mut x = cx.x();
        x.iter_mut()
            .for_each(|v| *v = *v * f64::from(self.scale) + f64::from(self.offset));
        Ok(x)
    }
}

/// `x * scale[c] + shift[c]` per channel `c` of the last axis, one rounding.
#[derive(Clone, Debug, PartialEq)]
pub struct AffineConfig {
    /// Per-channel multiplier (one per channel of the last axis).
    pub scale: Vec<f32>,
    /// Per-channel offset, added after the multiplication.
    pub shift: Vec<f32>,
}

impl LayerOp for AffineConfig {
    fn class_name(&self) -> &'static str {
        "Affine"
    }
    fn base_name(&self) -> &'static str {
        "affine"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (scale, shift) = (&self.scale, &self.shift);
        let s = one(inputs)?;
        if s.last() != Some(&scale.len()) || shift.len() != scale.len() {
            return Err(format!(
                "Affine of {} scales and {} shifts on shape {s:?}: one of each per \
                 channel of the last axis",
                scale.len(),
                shift.len()
            ));
        }
        if scale.iter().chain(shift.iter()).any(|v| !v.is_finite()) {
            return Err("Affine constants must be finite".into());
        }
        Ok(s)
    }
    fn lower<'m>(&'m self, _: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        Ok(Op::Affine {
            scale: self.scale.clone(),
            shift: self.shift.clone(),
        })
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let mut x = cx.x();
        for row in x.chunks_exact_mut(self.scale.len()) {
            for ((v, &s), &t) in row.iter_mut().zip(&self.scale).zip(&self.shift) {
                *v = *v * f64::from(s) + f64::from(t);
            }
        }
        Ok(x)
    }
}

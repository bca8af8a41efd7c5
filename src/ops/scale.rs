//! `x * scale + offset`: Keras `Rescaling` (one scale for all) and the ONNX primitive
//! `Affine` (a per-channel `Add`, `Sub` or `Mul` by a constant). Both fuse into a producing
//! GEMM's epilogue, or fold into its weights, like a batch normalization.

use super::{LayerOp, Lowering, Reference, one};
use crate::error::Result;
use crate::kernels::{Isa, ops};
use crate::passes::Op;
use crate::plan::{StepIo, StepOp, StepRef};

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

/// `x + values` with `values` a constant of the input's own shape (per sample): position
/// embeddings an exporter folded into a constant, added to the token embeddings. When the
/// input's first axis is a variable sequence, a shorter one adds the first rows.
#[derive(Clone, Debug, PartialEq)]
pub struct AddConstConfig {
    /// One value per element of a sample.
    pub values: Vec<f32>,
}

impl LayerOp for AddConstConfig {
    fn class_name(&self) -> &'static str {
        "AddConstant"
    }
    fn base_name(&self) -> &'static str {
        "add_constant"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        if s.iter().product::<usize>() != self.values.len() {
            return Err(format!(
                "a constant of {} values added to a sample of shape {s:?}",
                self.values.len()
            ));
        }
        Ok(s)
    }
    fn lower<'m>(&'m self, _: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        Ok(Op::Step(StepRef::new(AddConstStep(self.values.clone()))))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let mut x = cx.x();
        let n = self.values.len().max(1);
        for (i, v) in x.iter_mut().enumerate() {
            *v += f64::from(self.values[i % n]);
        }
        Ok(x)
    }
}

/// Adds the constant to each sample, in place.
#[derive(Debug)]
struct AddConstStep(Vec<f32>);

impl StepOp for AddConstStep {
    fn describe(&self) -> String {
        format!("add a constant of {} values", self.0.len())
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        one(inputs)
    }
    fn in_place(&self) -> bool {
        true
    }
    fn seq(&self, ins: &[bool]) -> Result<bool, String> {
        // A sequence shorter than the plan's longest adds the constant's first rows (the
        // loaders prove that this is what the model means: position embeddings).
        Ok(ins[0])
    }
    fn run(&self, _: Isa, io: StepIo<'_>) {
        let len = io.input_len(0).min(self.0.len());
        let values = &self.0[..len];
        for sample in io.output().chunks_exact_mut(len.max(1)) {
            ops::merge(ops::Combine::Add, values, sample);
        }
    }
}

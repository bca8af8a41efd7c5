//! Keras `Masking(mask_value)`: a step whose features all equal `mask_value` is masked. The
//! layer outputs its input with the masked steps zeroed (`Masking`); the recurrent layers
//! after it read the mask itself (`StepMaskOf`): per step 1 (kept) or 0 (masked), the form of
//! the token ids an `Embedding(mask_zero=True)` masks by ([`StepMask`](super::recurrent)).

use super::{LayerOp, Lowering, Reference, one};
use crate::error::Result;
use crate::kernels::Isa;
use crate::passes::Op;
use crate::plan::{Padding, StepIo, StepOp, StepRef};

/// A Masking layer, or the mask it makes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaskingConfig {
    /// The value of every feature of a masked step.
    pub value: f32,
    /// Output the mask (`[steps]`, 1 kept, 0 masked) instead of the values.
    pub mask: bool,
}

impl MaskingConfig {
    /// Whether the step `x` (its features) is masked.
    fn masked<T: Copy + PartialEq + From<f32>>(&self, x: &[T]) -> bool {
        x.iter().all(|&v| v == T::from(self.value))
    }

    /// One sample: `x` `[steps, features]`, `features` wide.
    fn sample<T: Copy + PartialEq + From<f32>>(&self, x: &[T], features: usize, y: &mut [T]) {
        let (zero, one) = (T::from(0.0), T::from(1.0));
        let steps = x.chunks_exact(features.max(1));
        match self.mask {
            true => y.iter_mut().zip(steps).for_each(|(y, s)| {
                *y = if self.masked(s) { zero } else { one };
            }),
            false => {
                let out = y.chunks_exact_mut(features.max(1));
                for (y, s) in out.zip(steps) {
                    match self.masked(s) {
                        true => y.fill(zero),
                        false => y.copy_from_slice(s),
                    }
                }
            }
        }
    }
}

impl LayerOp for MaskingConfig {
    fn class_name(&self) -> &'static str {
        match self.mask {
            true => "StepMask",
            false => "Masking",
        }
    }
    fn base_name(&self) -> &'static str {
        match self.mask {
            true => "step_mask",
            false => "masking",
        }
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        match (&s[..], self.mask) {
            ([steps, _], true) => Ok(vec![*steps]),
            ([_, _], false) => Ok(s),
            _ => Err(format!(
                "{} reads [steps, features], got {s:?}",
                self.class_name()
            )),
        }
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let features = cx.in_shape().last().copied().unwrap_or(1);
        Ok(Op::Step(StepRef::new(MaskingStep {
            config: *self,
            features,
        })))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let features = cx.in_shape().last().copied().unwrap_or(1).max(1);
        let x = cx.inputs[0];
        let per = x.len() / cx.batch.max(1);
        let out = if self.mask { per / features } else { per };
        let mut y = vec![0.0; out * cx.batch];
        for (x, y) in x
            .chunks_exact(per.max(1))
            .zip(y.chunks_exact_mut(out.max(1)))
        {
            self.sample(x, features, y);
        }
        Ok(y)
    }
}

/// The step of a [`MaskingConfig`] over `features`-wide steps.
#[derive(Debug)]
struct MaskingStep {
    config: MaskingConfig,
    features: usize,
}

impl StepOp for MaskingStep {
    fn describe(&self) -> String {
        let what = if self.config.mask { "mask of" } else { "zero" };
        format!("{what} steps all {}", self.config.value)
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        self.config.output_shape(inputs)
    }
    fn seq(&self, ins: &[bool]) -> Result<bool, String> {
        Ok(ins.first().copied().unwrap_or(false))
    }
    fn padding(&self) -> Padding {
        // Each step on its own.
        Padding::Exact
    }
    fn run(&self, _: Isa, io: StepIo<'_>) {
        let (config, features) = (self.config, self.features);
        io.per_sample(|x, y| config.sample(x, features, y));
    }
}

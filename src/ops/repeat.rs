//! Keras `RepeatVector(n)`: `[features] -> [n, features]`, the input repeated at every step
//! (what an encoder-decoder forecaster feeds its decoder).

use super::{LayerOp, Lowering, Reference, one};
use crate::error::Result;
use crate::kernels::Isa;
use crate::model::checked_elems;
use crate::passes::Op;
use crate::plan::{StepIo, StepOp, StepRef};

/// A RepeatVector layer's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepeatVectorConfig {
    /// Copies.
    pub n: usize,
}

impl LayerOp for RepeatVectorConfig {
    fn class_name(&self) -> &'static str {
        "RepeatVector"
    }
    fn base_name(&self) -> &'static str {
        "repeat_vector"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        let [features] = s[..] else {
            return Err(format!("RepeatVector reads [features], got {s:?}"));
        };
        if self.n == 0 {
            return Err("RepeatVector n must be positive".into());
        }
        let shape = vec![self.n, features];
        checked_elems(&shape)?;
        Ok(shape)
    }
    fn lower<'m>(&'m self, _: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        Ok(Op::Step(StepRef::new(*self)))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let f = cx.in_shape().first().copied().unwrap_or(0).max(1);
        Ok(cx.inputs[0]
            .chunks_exact(f)
            .flat_map(|x| std::iter::repeat_n(x, self.n).flatten().copied())
            .collect())
    }
}

impl StepOp for RepeatVectorConfig {
    fn describe(&self) -> String {
        format!("repeat x{}", self.n)
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        LayerOp::output_shape(self, inputs)
    }
    fn run(&self, _: Isa, io: StepIo<'_>) {
        io.per_sample(|x, y| {
            for copy in y.chunks_exact_mut(x.len().max(1)) {
                copy.copy_from_slice(x);
            }
        });
    }
}

//! The ONNX elementwise functions of one input (`Sqrt`, `Neg`, `Abs`, `Erf`, `Clip`, `Pow` /
//! `Div` by a constant, ...): one scalar function per value, the same bits on every tier.

use super::{LayerOp, Lowering, Reference, one};
use crate::error::Result;
use crate::kernels::Isa;
use crate::model::Unary;
use crate::passes::Op;
use crate::plan::{StepIo, StepOp, StepRef};

impl LayerOp for Unary {
    fn class_name(&self) -> &'static str {
        self.name()
    }
    fn base_name(&self) -> &'static str {
        "unary"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        one(inputs)
    }
    fn lower<'m>(&'m self, _: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        Ok(Op::Step(StepRef::new(UnaryStep(*self))))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let mut x = cx.x();
        x.iter_mut().for_each(|v| *v = self.apply_f64(*v));
        Ok(x)
    }
}

/// The function applied to every value, in place.
#[derive(Debug)]
struct UnaryStep(Unary);

impl StepOp for UnaryStep {
    fn describe(&self) -> String {
        format!("{} pass", self.0)
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        one(inputs)
    }
    fn in_place(&self) -> bool {
        true
    }
    fn run(&self, _: Isa, io: StepIo<'_>) {
        let u = self.0;
        io.output().iter_mut().for_each(|v| *v = u.apply(*v));
    }
}

//! The ONNX elementwise functions of one input (`Sqrt`, `Neg`, `Abs`, `Erf`, `Clip`, `Pow` /
//! `Div` by a constant, `Reciprocal`, `Floor`, `Ceil`, `Round`): one scalar function per value, the same bits on every tier.

use super::{LayerOp, Lowering, Reference, one};
use crate::error::Result;
use crate::kernels::Isa;
use crate::passes::Op;
use crate::plan::{StepIo, StepOp, StepRef};

/// The elementwise function of a [`Primitive::Unary`](crate::model::Primitive::Unary). Each is one scalar function in every tier
/// and batch (`libm` where the standard library has none), so its bits never depend on the
/// machine.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Unary {
    /// `sqrt(x)` (NaN below zero).
    Sqrt,
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// The error function.
    Erf,
    /// `x` to a constant power (`x * x` for 2, `powf` otherwise).
    Pow(f32),
    /// `x / d` for a constant `d` (a true division, not a multiplication by `1 / d`).
    Div(f32),
    /// `min(max(x, min), max)`; NaN stays NaN.
    Clip {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
    /// `1 / x` (a true division).
    Reciprocal,
    /// `⌊x⌋`.
    Floor,
    /// `⌈x⌉`.
    Ceil,
    /// `x` rounded to the nearest integer, halves to even (as ONNX and numpy).
    Round,
}

impl Unary {
    /// The function at `x`.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Unary::Sqrt => x.sqrt(),
            Unary::Neg => -x,
            Unary::Abs => x.abs(),
            Unary::Erf => libm::erff(x),
            Unary::Pow(2.0) => x * x,
            Unary::Pow(1.0) => x,
            Unary::Pow(p) => libm::powf(x, p),
            Unary::Div(d) => x / d,
            Unary::Clip { min, max } => {
                if x.is_nan() {
                    x
                } else {
                    x.max(min).min(max)
                }
            }
            Unary::Reciprocal => 1.0 / x,
            Unary::Floor => x.floor(),
            Unary::Ceil => x.ceil(),
            Unary::Round => x.round_ties_even(),
        }
    }

    /// The same function in f64 (the reference's).
    pub fn apply_f64(self, x: f64) -> f64 {
        match self {
            Unary::Sqrt => x.sqrt(),
            Unary::Neg => -x,
            Unary::Abs => x.abs(),
            Unary::Erf => libm::erf(x),
            Unary::Pow(p) => x.powf(f64::from(p)),
            Unary::Div(d) => x / f64::from(d),
            Unary::Clip { min, max } => {
                if x.is_nan() {
                    x
                } else {
                    x.max(f64::from(min)).min(f64::from(max))
                }
            }
            Unary::Reciprocal => 1.0 / x,
            Unary::Floor => x.floor(),
            Unary::Ceil => x.ceil(),
            Unary::Round => x.round_ties_even(),
        }
    }

    /// The ONNX operator's name.
    pub fn name(self) -> &'static str {
        match self {
            Unary::Sqrt => "Sqrt",
            Unary::Neg => "Neg",
            Unary::Abs => "Abs",
            Unary::Erf => "Erf",
            Unary::Pow(_) => "Pow",
            Unary::Div(_) => "Div",
            Unary::Clip { .. } => "Clip",
            Unary::Reciprocal => "Reciprocal",
            Unary::Floor => "Floor",
            Unary::Ceil => "Ceil",
            Unary::Round => "Round",
        }
    }
}

impl std::fmt::Display for Unary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unary::Pow(p) => write!(f, "pow({p})"),
            Unary::Div(d) => write!(f, "div({d})"),
            Unary::Clip { min, max } => write!(f, "clip({min}, {max})"),
            u => f.write_str(&u.name().to_lowercase()),
        }
    }
}

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
    fn seq(&self, ins: &[bool]) -> Result<bool, String> {
        Ok(ins[0])
    }
    fn run(&self, _: Isa, io: StepIo<'_>) {
        let u = self.0;
        io.output().iter_mut().for_each(|v| *v = u.apply(*v));
    }
}

//! Keras's elementwise merges (`Add`, `Subtract`, `Multiply`, `Average`, `Maximum`,
//! `Minimum`) of two or more inputs of one shape, left to right.

use super::{LayerOp, Lowering, Reference};
use crate::error::Result;
use crate::kernels::{Isa, ops};
use crate::passes::Op;
use crate::plan::{StepIo, StepOp, StepRef};

/// How a [`Layer::Merge`](crate::model::Layer::Merge) combines its inputs, left to right.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Merge {
    /// `a + b + ...`
    Add,
    /// `a - b` (exactly two inputs).
    Subtract,
    /// `a * b * ...`
    Multiply,
    /// `(a + b + ...) / n`
    Average,
    /// Largest per element (NaN if any input is NaN).
    Maximum,
    /// Smallest per element (NaN if any input is NaN).
    Minimum,
}

impl Merge {
    /// The Keras class name.
    pub fn type_name(self) -> &'static str {
        match self {
            Merge::Add => "Add",
            Merge::Subtract => "Subtract",
            Merge::Multiply => "Multiply",
            Merge::Average => "Average",
            Merge::Maximum => "Maximum",
            Merge::Minimum => "Minimum",
        }
    }
}

impl LayerOp for Merge {
    fn class_name(&self) -> &'static str {
        self.type_name()
    }
    fn base_name(&self) -> &'static str {
        match self {
            Merge::Add => "add",
            Merge::Subtract => "subtract",
            Merge::Multiply => "multiply",
            Merge::Average => "average",
            Merge::Maximum => "maximum",
            Merge::Minimum => "minimum",
        }
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let m = *self;
        let [first, rest @ ..] = inputs else {
            return Err(format!("{} needs at least 2 inputs", m.type_name()));
        };
        if rest.is_empty() || (m == Merge::Subtract && rest.len() != 1) {
            return Err(format!(
                "{} needs {} inputs, got {}",
                m.type_name(),
                if m == Merge::Subtract {
                    "exactly 2"
                } else {
                    "at least 2"
                },
                inputs.len()
            ));
        }
        if let Some(other) = rest.iter().find(|s| *s != first) {
            return Err(format!(
                "{} inputs differ in shape: {first:?} vs {other:?}",
                m.type_name()
            ));
        }
        Ok(first.to_vec())
    }
    fn lower<'m>(&'m self, _: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        Ok(Op::Step(StepRef::new(MergeStep(*self))))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let mut x = cx.x();
        for other in &cx.inputs[1..] {
            for (a, &b) in x.iter_mut().zip(other.iter()) {
                *a = match self {
                    Merge::Add | Merge::Average => *a + b,
                    Merge::Subtract => *a - b,
                    Merge::Multiply => *a * b,
                    _ if a.is_nan() || b.is_nan() => f64::NAN,
                    Merge::Maximum => a.max(b),
                    Merge::Minimum => a.min(b),
                };
            }
        }
        if *self == Merge::Average {
            let n = cx.inputs.len() as f64;
            x.iter_mut().for_each(|v| *v /= n);
        }
        Ok(x)
    }
}

/// The inputs merged elementwise, left to right (an average divides once, at the end).
#[derive(Debug)]
struct MergeStep(Merge);

impl StepOp for MergeStep {
    fn describe(&self) -> String {
        self.0.type_name().to_string()
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        match inputs {
            [x, rest @ ..] if !rest.is_empty() && rest.iter().all(|r| r == x) => Ok(x.to_vec()),
            _ => Err("merge needs 2+ inputs of one shape".into()),
        }
    }
    fn seq(&self, ins: &[bool]) -> Result<bool, String> {
        // Inputs of one shape: all follow the sequence, or none.
        match ins.iter().all(|&s| s) == ins.iter().any(|&s| s) {
            true => Ok(ins[0]),
            false => Err(format!(
                "{} of a variable sequence and a fixed one",
                self.describe()
            )),
        }
    }
    fn run(&self, _: Isa, io: StepIo<'_>) {
        let (ins, out) = io.parts();
        let op = match self.0 {
            Merge::Add | Merge::Average => ops::Combine::Add,
            Merge::Subtract => ops::Combine::Sub,
            Merge::Multiply => ops::Combine::Mul,
            Merge::Maximum => ops::Combine::Max,
            Merge::Minimum => ops::Combine::Min,
        };
        match ins.count() {
            0 => {}
            1 => out.copy_from_slice(ins.get(0)),
            _ => ops::combine(op, ins.get(0), ins.get(1), out),
        }
        for i in 2..ins.count() {
            ops::merge(op, ins.get(i), out);
        }
        if self.0 == Merge::Average {
            ops::div(ins.count() as f32, out);
        }
    }
}

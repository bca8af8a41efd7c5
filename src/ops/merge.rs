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
        let [_, rest @ ..] = inputs else {
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
        broadcast(inputs).map_err(|e| format!("{}: {e}", m.type_name()))
    }
    fn lower<'m>(&'m self, _: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        Ok(Op::Step(StepRef::new(MergeStep(*self))))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        // Each input tiled to the output's size (a broadcast one repeats per sample).
        let len = cx.node.shape.iter().product::<usize>().max(1);
        let tiled = |x: &[f64]| -> Vec<f64> {
            let per = x.len() / cx.batch.max(1);
            x.chunks_exact(per.max(1))
                .flat_map(|s| s.iter().copied().cycle().take(len))
                .collect()
        };
        let mut x = tiled(cx.inputs[0]);
        for other in &cx.inputs[1..] {
            for (a, &b) in x.iter_mut().zip(tiled(other).iter()) {
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
/// The shape of a merge of `inputs`: all of one shape, or some broadcast over leading axes
/// (`[1, 1, C]` with `[H, W, C]`: a squeeze-and-excitation block's scale), as Keras allows.
fn broadcast(inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
    let rank = inputs.first().map_or(0, |s| s.len());
    if let Some(s) = inputs.iter().find(|s| s.len() != rank) {
        return Err(format!(
            "inputs of different ranks: {:?} vs {s:?}",
            inputs[0]
        ));
    }
    let out: Vec<usize> = (0..rank)
        .map(|a| inputs.iter().map(|s| s[a]).max().unwrap_or(1))
        .collect();
    for s in inputs {
        // Equal to the output from its first axis that is not 1 on: it repeats as a block.
        let lead = s.iter().take_while(|&&d| d == 1).count();
        if s.iter().zip(&out).any(|(&d, &o)| d != o && d != 1) {
            return Err(format!("inputs differ in shape: {s:?} vs {out:?}"));
        }
        if s[lead..] != out[lead..] {
            return Err(format!(
                "{s:?} broadcasts against {out:?} inside the trailing axes: only leading axes \
                 of size 1 are supported"
            ));
        }
    }
    Ok(out)
}

#[derive(Debug)]
struct MergeStep(Merge);

impl StepOp for MergeStep {
    fn describe(&self) -> String {
        self.0.type_name().to_string()
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        match inputs {
            [_, _, ..] => broadcast(inputs),
            _ => Err("merge needs 2+ inputs".into()),
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
    fn run(&self, isa: Isa, io: StepIo<'_>) {
        // Two inputs and the output, each of input 0's size (a broadcast one is smaller).
        let values = io.input_len(0).saturating_mul(io.batch());
        let pool = io.pool(crate::plan::moved(values.saturating_mul(3)));
        let (ins, out) = io.parts();
        let op = match self.0 {
            Merge::Add | Merge::Average => ops::Combine::Add,
            Merge::Subtract => ops::Combine::Sub,
            Merge::Multiply => ops::Combine::Mul,
            Merge::Maximum => ops::Combine::Max,
            Merge::Minimum => ops::Combine::Min,
        };
        let n = ins.count();
        // Per sample: an input broadcast over leading axes (`[1, 1, C]` against `[H, W, C]`)
        // repeats as a block over the sample.
        let batch = ins.batch().max(1);
        let len = out.len() / batch;
        // Samples spread over the plan's threads (each sample's bits are its own).
        let samples = out.chunks_exact_mut(len.max(1)).enumerate();
        StepIo::for_each(pool.filter(|_| batch >= 2), samples, |(s, y)| {
            let part = |i: usize| {
                let per = ins.get(i).len() / batch;
                &ins.get(i)[s * per..][..per]
            };
            match n {
                0 => {}
                1 => y.copy_from_slice(part(0)),
                _ => ops::combine_cyclic(isa, op, part(0), part(1), y),
            }
            for i in 2..n {
                let x = part(i);
                for block in y.chunks_mut(x.len().max(1)) {
                    ops::merge(op, &x[..block.len()], block);
                }
            }
            if self.0 == Merge::Average {
                ops::div(n as f32, y);
            }
        });
    }
}

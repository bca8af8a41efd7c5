//! Positions picked along one axis: ONNX `Gather` of an activation by constant indices (BERT's
//! pooler reads the first token).

use super::{LayerOp, Lowering, Reference, one};
use crate::error::Result;
use crate::kernels::Isa;
use crate::passes::Op;
use crate::plan::{StepIo, StepOp, StepRef};

/// Picks `indices` along `axis` (of the sample's axes, the batch excluded); with `squeeze`
/// (a scalar index) the axis is dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakeConfig {
    /// The axis, numbered from 0 after the batch.
    pub axis: usize,
    /// Positions along it, in output order.
    pub indices: Vec<usize>,
    /// Drop the axis (one index).
    pub squeeze: bool,
}

impl TakeConfig {
    /// `(outer, len, inner)` of the input around the axis.
    fn split(&self, s: &[usize]) -> Result<(usize, usize, usize), String> {
        let len = *s
            .get(self.axis)
            .ok_or_else(|| format!("axis {} of a sample of shape {s:?}", self.axis))?;
        if let Some(&i) = self.indices.iter().find(|&&i| i >= len) {
            return Err(format!("index {i} along an axis of {len}"));
        }
        if self.squeeze && self.indices.len() != 1 || self.indices.is_empty() {
            return Err("a squeezed take picks exactly one index, others at least one".into());
        }
        let outer = s[..self.axis].iter().product();
        let inner = s[self.axis + 1..].iter().product();
        Ok((outer, len, inner))
    }
}

impl LayerOp for TakeConfig {
    fn class_name(&self) -> &'static str {
        "Take"
    }
    fn base_name(&self) -> &'static str {
        "take"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let mut s = one(inputs)?;
        self.split(&s)?;
        if self.squeeze {
            s.remove(self.axis);
        } else {
            s[self.axis] = self.indices.len();
        }
        Ok(s)
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let (outer, len, inner) = self.split(cx.in_shape()).map_err(|e| cx.fail(e))?;
        Ok(Op::Step(StepRef::new(TakeStep {
            axis: self.axis,
            outer,
            len,
            inner,
            indices: self.indices.clone(),
            shape: cx.node.shape.clone(),
        })))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let (outer, len, inner) = self.split(cx.in_shape()).map_err(crate::Error::Model)?;
        let x = cx.inputs[0];
        let mut y = Vec::new();
        for sample in x.chunks_exact(outer * len * inner) {
            for o in 0..outer {
                for &i in &self.indices {
                    y.extend_from_slice(&sample[(o * len + i) * inner..][..inner]);
                }
            }
        }
        Ok(y)
    }
}

/// Copies the picked rows of each sample.
#[derive(Debug)]
struct TakeStep {
    /// The axis picked along (0: a variable sequence's, when the input has one).
    axis: usize,
    outer: usize,
    len: usize,
    inner: usize,
    indices: Vec<usize>,
    /// The output's shape.
    shape: Vec<usize>,
}

impl StepOp for TakeStep {
    fn describe(&self) -> String {
        format!(
            "take {} of {} rows of {}",
            self.indices.len(),
            self.len,
            self.inner
        )
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        let n: usize = s.iter().product();
        if n != self.outer * self.len * self.inner {
            return Err(format!("take of {n} values per sample"));
        }
        Ok(self.shape.clone())
    }
    fn seq(&self, ins: &[bool]) -> Result<bool, String> {
        // Picked along the sequence: fixed positions out; along another axis: every
        // position alike.
        Ok(ins[0] && self.axis > 0)
    }
    fn min_seq(&self) -> usize {
        match self.axis {
            0 => self.indices.iter().max().map_or(1, |&i| i + 1),
            _ => 1,
        }
    }
    fn run(&self, _: Isa, io: StepIo<'_>) {
        let (ins, out) = io.parts();
        let x = ins.get(0);
        // A variable sequence is the picked axis or the outer one: its length from the run's.
        let per_in = ins.len(0);
        let (outer, len) = match self.axis {
            0 => (1, per_in / (self.outer * self.inner).max(1)),
            _ => (per_in / (self.len * self.inner).max(1), self.len),
        };
        if x.is_empty() || self.inner == 0 {
            return;
        }
        let per_out = outer * self.indices.len() * self.inner;
        for (xs, ys) in x.chunks_exact(per_in).zip(out.chunks_exact_mut(per_out)) {
            let mut rows = ys.chunks_exact_mut(self.inner);
            for o in 0..outer {
                for &i in &self.indices {
                    if let Some(row) = rows.next() {
                        row.copy_from_slice(&xs[(o * len + i) * self.inner..][..self.inner]);
                    }
                }
            }
        }
    }
}

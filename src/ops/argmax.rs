//! ONNX `ArgMax` over the last axis: int64 class labels (the first position on ties; a NaN
//! counts as largest, as NumPy's `argmax`). Its values are model outputs only.

use super::{LayerOp, Lowering, Reference, one};
use crate::error::Result;
use crate::kernels::{Isa, ops};
use crate::model::{DType, last_axis};
use crate::passes::Op;
use crate::plan::{StepIo, StepOp, StepRef};

/// An ArgMax layer's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgMaxConfig {
    /// Keep the last axis with length 1 (ONNX `keepdims=1`), else drop it.
    pub keepdims: bool,
}

impl LayerOp for ArgMaxConfig {
    fn class_name(&self) -> &'static str {
        "ArgMax"
    }
    fn base_name(&self) -> &'static str {
        "argmax"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let mut s = one(inputs)?;
        let c = last_axis(&s, -1)?;
        if c >= 1 << 24 {
            return Err(format!("ArgMax over {c} values: at most 2^24 (16,777,216)"));
        }
        s.pop();
        if self.keepdims {
            s.push(1);
        }
        Ok(s)
    }
    fn output_dtype(&self, _: Option<DType>) -> DType {
        DType::I64
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let width = cx.in_shape().last().copied().unwrap_or(0);
        Ok(Op::Step(StepRef::new(ArgMax {
            width,
            keepdims: self.keepdims,
            over_first: cx.in_shape().len() == 1,
        })))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let w = cx.in_shape().last().copied().unwrap_or(1);
        Ok(cx.inputs[0]
            .chunks_exact(w)
            .map(|row| {
                let mut best = 0;
                for (j, &v) in row.iter().enumerate() {
                    if !row[best].is_nan() && (v > row[best] || v.is_nan()) {
                        best = j;
                    }
                }
                best as f64
            })
            .collect())
    }
}

/// The index of each `width`-value row's largest value, as an exact f32.
#[derive(Debug)]
struct ArgMax {
    width: usize,
    keepdims: bool,
    /// The rows are the sample's first (and only) axis.
    over_first: bool,
}

impl StepOp for ArgMax {
    fn describe(&self) -> String {
        format!("argmax of {}", self.width)
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        match inputs {
            [x] if x.last() == Some(&self.width) => {
                let mut s = x[..x.len() - 1].to_vec();
                if self.keepdims {
                    s.push(1);
                }
                Ok(s)
            }
            _ => Err(format!("argmax of {} values, given {inputs:?}", self.width)),
        }
    }
    fn seq(&self, ins: &[bool]) -> Result<bool, String> {
        // Rows of the last axis: a sequence of rows keeps its axis unless it is that axis.
        match ins[0] && self.over_first {
            true => Err("argmax over the sequence axis".into()),
            false => Ok(ins[0]),
        }
    }
    fn run(&self, _: Isa, io: StepIo<'_>) {
        let (ins, out) = io.parts();
        ops::argmax(self.width, ins.get(0), out);
    }
}

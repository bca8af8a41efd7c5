//! Views: `Flatten` and `Reshape` change the shape, never the values.

use super::{LayerOp, Lowering, Reference, one};
use crate::error::Result;
use crate::model::{DType, checked_elems, reshape};
use crate::passes::Op;

/// A view keeps an integer input's type (an ArgMax's labels reshaped, as skl2onnx writes).
fn view_dtype(input: Option<DType>) -> DType {
    match input {
        Some(DType::I64) => DType::I64,
        _ => DType::F32,
    }
}

fn reads_view(dtypes: &[DType]) -> bool {
    dtypes.iter().all(|&d| d == DType::F32) || dtypes == [DType::I64]
}

/// Keras `Flatten`: all non-batch axes collapsed into one.
#[derive(Debug)]
pub(crate) struct FlattenOp;

impl LayerOp for FlattenOp {
    fn class_name(&self) -> &'static str {
        "Flatten"
    }
    fn base_name(&self) -> &'static str {
        "flatten"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        Ok(vec![checked_elems(&s)?])
    }
    fn output_dtype(&self, input: Option<DType>) -> DType {
        view_dtype(input)
    }
    fn reads(&self, dtypes: &[DType]) -> bool {
        reads_view(dtypes)
    }
    fn lower<'m>(&'m self, _: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        Ok(Op::Flatten)
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        Ok(cx.x())
    }
}

/// Keras `Reshape(target_shape)`: a new shape with the same number of values.
#[derive(Clone, Debug, PartialEq)]
pub struct ReshapeConfig {
    /// Target shape without the batch axis; one entry may be `-1`.
    pub target_shape: Vec<isize>,
}

impl LayerOp for ReshapeConfig {
    fn class_name(&self) -> &'static str {
        "Reshape"
    }
    fn base_name(&self) -> &'static str {
        "reshape"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let s = one(inputs)?;
        reshape(&s, &self.target_shape)
    }
    fn output_dtype(&self, input: Option<DType>) -> DType {
        view_dtype(input)
    }
    fn reads(&self, dtypes: &[DType]) -> bool {
        reads_view(dtypes)
    }
    fn lower<'m>(&'m self, _: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        Ok(Op::Reshape)
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        Ok(cx.x())
    }
}

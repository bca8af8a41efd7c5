//! The model's input (Keras `InputLayer`): no op of its own; its values are the caller's.

use super::{LayerOp, Lowering, Reference};
use crate::error::{Error, Result};
use crate::passes::Op;

/// The input layer's op.
#[derive(Debug)]
pub(crate) struct InputOp;

impl LayerOp for InputOp {
    fn class_name(&self) -> &'static str {
        "InputLayer"
    }
    fn base_name(&self) -> &'static str {
        "input_layer"
    }
    fn output_shape(&self, _: &[&[usize]]) -> Result<Vec<usize>, String> {
        Err("an InputLayer takes no inputs".into())
    }
    fn lower<'m>(&'m self, _: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        Ok(Op::Input)
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        Err(Error::Model(format!(
            "input {:?}: its values are the caller's",
            cx.node.name
        )))
    }
}

//! Keras `Activation(name)`: an activation as a layer of its own (fused into the producing
//! GEMM's epilogue by `passes` when it can be).

use super::{LayerOp, Lowering, Reference, one};
use crate::error::Result;
use crate::kernels::Activation;
use crate::passes::Op;
use crate::reference::activation_row;

impl LayerOp for Activation {
    fn class_name(&self) -> &'static str {
        "Activation"
    }
    fn base_name(&self) -> &'static str {
        "activation"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        one(inputs)
    }
    fn lower<'m>(&'m self, _: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        Ok(Op::Activation(*self))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let mut x = cx.x();
        x.chunks_exact_mut(cx.width())
            .for_each(|r| activation_row(*self, r));
        Ok(x)
    }
}

//! The converters of ONNX ops, by family.

mod arith;
mod conv;
mod elementwise;
mod gemm;
mod norm;
mod pool;
mod reduce;
mod shape;

pub(super) use arith::*;
pub(super) use conv::*;
pub(super) use elementwise::*;
pub(super) use gemm::*;
pub(super) use norm::*;
pub(super) use pool::*;
pub(super) use reduce::*;
pub(super) use shape::*;

#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod builtin;
pub mod error;
pub mod io;
pub mod kernels;
pub mod model;
// The graph rewrites and the f64 oracle are public for the test suite and the benchmarks,
// not API: they change whenever the plan does.
#[doc(hidden)]
pub mod passes;
pub mod plan;
#[doc(hidden)]
pub mod reference;

pub use error::{Error, LoadError, LoadErrorKind, Result, Site};
pub use io::{LoadOptions, load, load_with};
pub use kernels::{Activation, Isa};
pub use model::{DType, Input, Layer, Model};
pub use plan::{
    Batcher, BatcherOptions, CompileOptions, Outputs, Plan, Session, Values, WorkerPool,
};

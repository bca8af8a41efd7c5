#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod builtin;
pub mod error;
pub mod io;
pub mod kernels;
pub mod model;
mod ops;
mod passes;
pub mod plan;
// The f64 oracle is public only to the test suite (feature `internals`, which the crate's
// own dev-dependency turns on), not API: it changes whenever the plan does.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod reference;
#[cfg(not(feature = "internals"))]
#[allow(dead_code)]
mod reference;

pub use error::{Error, LoadError, LoadErrorKind, Result, Site};
pub use io::{LoadOptions, load, load_with};
pub use kernels::{Activation, Isa};
pub use model::{DType, Input, Layer, Model};
pub use plan::{
    Batcher, BatcherOptions, CompileOptions, Outputs, Plan, Session, Values, WorkerPool,
};

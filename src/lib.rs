#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod builtin;
pub mod error;
pub mod io;
pub mod kernels;
pub mod model;
pub mod passes;
pub mod plan;
pub mod reference;

pub use error::{Error, Result};
pub use kernels::{Activation, Isa};

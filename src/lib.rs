//! sinter: a SIMD CPU inference runtime for dense Keras-style networks.
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod kernels;

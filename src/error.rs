//! The one error type. Every variant says what and where.

use crate::kernels::Isa;
use std::path::PathBuf;

/// Everything that can go wrong building, compiling, loading or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A layer cannot take the shape it was given.
    #[error("layer {layer:?}: {msg}")]
    Shape {
        /// Layer name (or its type, if not yet named).
        layer: String,
        /// What was expected.
        msg: String,
    },
    /// The graph itself is malformed (names, connectivity, parameters).
    #[error("invalid model: {0}")]
    Model(String),
    /// Weights of the wrong size or for an unknown layer.
    #[error("layer {layer:?}: {what} has {got} values, expected {expected}")]
    Weights {
        /// Layer name.
        layer: String,
        /// `"kernel"` or `"bias"`.
        what: &'static str,
        /// Expected number of values.
        expected: usize,
        /// Number given.
        got: usize,
    },
    /// No layer with that name.
    #[error("no layer named {0:?}")]
    NoSuchLayer(String),
    /// An input slice whose length is not a whole number of samples.
    #[error("input has {got} values, not a whole number of samples of {per_sample} values")]
    InputLength {
        /// Values per sample.
        per_sample: usize,
        /// Values given.
        got: usize,
    },
    /// More samples than the plan was compiled for.
    #[error(
        "batch of {batch} exceeds the plan's max batch {max} (compile with a larger max_batch)"
    )]
    BatchTooLarge {
        /// Samples given.
        batch: usize,
        /// The plan's maximum.
        max: usize,
    },
    /// A model input given with the wrong type, batch, or values (token ids out of range).
    #[error("input {input:?}: {msg}")]
    Input {
        /// The input's name (or the names of all inputs, for a wrong count).
        input: String,
        /// What was wrong.
        msg: String,
    },
    /// An empty batch.
    #[error("empty input: a batch needs at least one sample")]
    EmptyBatch,
    /// The requested ISA tier cannot run on this CPU.
    #[error("ISA tier {0} is not available on this CPU")]
    IsaUnavailable(Isa),
    /// A batcher's queue is full (or it is shutting down): retry later.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// A compile option out of range.
    #[error("invalid option: {0}")]
    Options(String),
    /// A graph pass left the graph inconsistent (a bug in the pass).
    #[error("pass {pass} broke the graph: {msg}")]
    Pass {
        /// The pass's name.
        pass: &'static str,
        /// What check failed.
        msg: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file's contents are not what was expected.
    #[error("{path}: {msg}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        msg: String,
    },
}

/// `Result` with sinter's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

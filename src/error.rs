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
    /// A model file that could not be loaded: the file, the node or layer in it, and the
    /// kind of fault, as fields ([`LoadError`]).
    #[error(transparent)]
    Load(Box<LoadError>),
    /// A data file's contents (an `.npy` array, a request body) are not what was expected.
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

impl Error {
    /// The [`LoadError`] inside, if this is one.
    pub fn as_load(&self) -> Option<&LoadError> {
        match self {
            Error::Load(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a model file did not load. The message is built once, from the fields, at the edge.
#[derive(Debug)]
pub struct LoadError {
    /// The file (a `.keras` archive, an `.h5`, a `.json` config, an `.onnx` model, external data).
    pub file: PathBuf,
    /// The node or layer at fault, when the fault is in one.
    pub site: Option<Site>,
    /// What kind of fault, with its detail.
    pub kind: LoadErrorKind,
}

/// A node of an ONNX graph or a layer of a Keras config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// The node's or layer's name (may be empty: ONNX names are optional).
    pub name: String,
    /// The ONNX `op_type` or the Keras `class_name`.
    pub op: String,
    /// The ONNX default-domain opset the model imports (`None` for Keras).
    pub opset: Option<i64>,
}

/// The kind of a [`LoadError`]; each carries the detail as the message's tail.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// The container cannot be decoded: not a zip, HDF5, protobuf or JSON, or truncated.
    Malformed(String),
    /// Valid for its format, but something sinter does not run: an op, a layer class, an
    /// attribute value, an element type, an opset.
    Unsupported(String),
    /// Breaks the format's own rules or disagrees with itself: a missing or ill-typed
    /// attribute, a dangling input, weights of the wrong size, shapes that do not fit.
    Invalid(String),
    /// Over a limit of [`crate::LoadOptions`] or a fixed bound (sizes, nesting, external data).
    Limit(String),
    /// The model the file describes was refused while being built (a typed shape, weight or
    /// graph error from [`crate::model`]).
    Model(Box<Error>),
}

impl LoadError {
    /// A fault in `file`, not tied to one node or layer.
    pub fn new(file: impl Into<PathBuf>, kind: LoadErrorKind) -> LoadError {
        LoadError {
            file: file.into(),
            site: None,
            kind,
        }
    }

    /// The same fault, located at a node or layer.
    pub fn at(mut self, site: Site) -> LoadError {
        self.site = Some(site);
        self
    }

    /// The detail, without the file and site.
    pub fn detail(&self) -> String {
        match &self.kind {
            LoadErrorKind::Malformed(m)
            | LoadErrorKind::Unsupported(m)
            | LoadErrorKind::Invalid(m)
            | LoadErrorKind::Limit(m) => m.clone(),
            LoadErrorKind::Model(e) => e.to_string(),
        }
    }
}

impl From<LoadError> for Error {
    fn from(e: LoadError) -> Error {
        Error::Load(Box::new(e))
    }
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        match &self.site {
            Some(Site {
                name,
                op,
                opset: Some(v),
            }) => write!(f, "node {name:?} ({op}, opset {v}): ")?,
            Some(Site {
                name,
                op,
                opset: None,
            }) => write!(f, "layer {name:?} ({op}): ")?,
            None => {}
        }
        f.write_str(&self.detail())
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            LoadErrorKind::Model(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

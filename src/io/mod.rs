//! Files in and out: `.npy` tensors, Keras `.keras` / `.weights.h5` models, ONNX models.
//!
//! [`load`] picks the loader from the file name; [`load_with`] takes [`LoadOptions`] (limits
//! on weight bytes, tensor sizes, layers and JSON nesting, all checked before allocating):
//!
//! ```no_run
//! let model = sinter::io::load("model.keras")?; // or model.onnx, model.json + model.weights.h5
//! let plan = model.compile(&Default::default())?;
//! # Ok::<(), sinter::Error>(())
//! ```

// sinter's own HDF5 reader, public only to the fuzz targets (feature `internals`).
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod hdf5;
#[cfg(not(feature = "internals"))]
mod hdf5;
pub mod keras;
pub mod npy;
pub mod onnx;

use crate::error::{Error, LoadError, LoadErrorKind, Result};
use crate::model::Model;
use std::path::Path;

/// Limits a loader enforces before it allocates: a file that exceeds one is an
/// [`Error::Format`] naming the limit, never an out-of-memory abort or a stack overflow.
/// Build it with the methods (`LoadOptions::new().outputs(["label"])`): the struct is
/// `#[non_exhaustive]`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Bytes of weights: the (decompressed) `.weights.h5`, or an ONNX file plus its external
    /// data. Default 4 GiB.
    pub max_weight_bytes: u64,
    /// Elements of any one tensor: a weight, or the model's input per sample. Default 2^28.
    pub max_tensor_elems: usize,
    /// Layers of a Keras config or nodes of an ONNX graph. Default 10,000.
    pub max_layers: usize,
    /// Nesting depth of a Keras JSON config. Default 64 (Keras writes about 10).
    pub max_json_depth: usize,
    /// Only these outputs, by name and in this order (`None`: all, in the file's order).
    /// Layers or nodes that only other outputs need are neither converted nor loaded, so an
    /// unsupported op on an unrequested branch does not stop the load.
    pub outputs: Option<Vec<String>>,
    /// Sizes of symbolic input axes other than the batch, by name (an ONNX `dim_param` such
    /// as `sequence`): the model is loaded for these sizes.
    pub dims: Vec<(String, usize)>,
    /// The size of every other symbolic input axis but the batch (a sequence length).
    pub seq: Option<usize>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            max_weight_bytes: 4 << 30,
            max_tensor_elems: 1 << 28,
            max_layers: 10_000,
            max_json_depth: 64,
            outputs: None,
            dims: Vec::new(),
            seq: None,
        }
    }
}

impl LoadOptions {
    /// The defaults (4 GiB of weights, 2^28 elements per tensor, 10,000 layers, JSON depth
    /// 64, every output).
    pub fn new() -> Self {
        Self::default()
    }
    /// See [`LoadOptions::max_weight_bytes`](#structfield.max_weight_bytes).
    pub fn max_weight_bytes(mut self, bytes: u64) -> Self {
        self.max_weight_bytes = bytes;
        self
    }
    /// See [`LoadOptions::max_tensor_elems`](#structfield.max_tensor_elems).
    pub fn max_tensor_elems(mut self, elems: usize) -> Self {
        self.max_tensor_elems = elems;
        self
    }
    /// See [`LoadOptions::max_layers`](#structfield.max_layers).
    pub fn max_layers(mut self, layers: usize) -> Self {
        self.max_layers = layers;
        self
    }
    /// See [`LoadOptions::max_json_depth`](#structfield.max_json_depth).
    pub fn max_json_depth(mut self, depth: usize) -> Self {
        self.max_json_depth = depth;
        self
    }
    /// Loads with the symbolic input axis `name` of size `size` (see the field). A size of 0
    /// is refused when the model is loaded.
    pub fn dim(mut self, name: &str, size: usize) -> Self {
        self.dims.retain(|(n, _)| n != name);
        self.dims.push((name.to_string(), size));
        self
    }
    /// Loads every symbolic input axis but the batch, and those not named by
    /// [`LoadOptions::dim`], with size `len` (see the field).
    pub fn seq(mut self, len: usize) -> Self {
        self.seq = Some(len);
        self
    }
    /// The size a symbolic input axis `name` is loaded with, if one is given.
    pub fn dim_size(&self, name: &str) -> Option<usize> {
        self.dims
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, v)| v)
            .or(self.seq)
    }
    /// Only these outputs, by name and in this order (see the field).
    pub fn outputs<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.outputs = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// `outputs`, checked against the file's output names: the requested ones in order.
    pub(crate) fn pick_outputs(&self, all: &[String]) -> std::result::Result<Vec<String>, String> {
        let Some(want) = &self.outputs else {
            return Ok(all.to_vec());
        };
        if want.is_empty() {
            return Err("no outputs requested".into());
        }
        want.iter()
            .map(|w| {
                if all.contains(w) {
                    Ok(w.clone())
                } else {
                    Err(format!(
                        "no output named {w:?} (outputs: {})",
                        all.join(", ")
                    ))
                }
            })
            .collect()
    }

    /// Errors unless a tensor of `shape` is within `max_tensor_elems`.
    pub(crate) fn check_elems(&self, shape: &[usize]) -> std::result::Result<(), String> {
        let n = crate::model::checked_elems(shape)?;
        if n > self.max_tensor_elems {
            return Err(format!(
                "a tensor of shape {shape:?} has {n} elements, over the limit of {}",
                self.max_tensor_elems
            ));
        }
        Ok(())
    }
}

/// Reads a whole file after checking its size against `limit` (before allocating).
pub(crate) fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.into(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > limit {
        return Err(LoadError::new(
            path,
            LoadErrorKind::Limit(format!(
                "{len} bytes is over the {what} limit of {limit} bytes"
            )),
        )
        .into());
    }
    std::fs::read(path).map_err(io)
}

/// Loads a model file with the default [`LoadOptions`]: `.keras` (Keras 3 archive), `.h5` /
/// `.hdf5` (a whole-model HDF5 file of Keras 2 or Keras 3's legacy writer), `.json` (a
/// `model.to_json()` config, with its weights in `NAME.weights.h5` or `model.weights.h5`
/// beside it), `.weights.h5` (with the config in `NAME.json` beside it) or `.onnx`.
pub fn load(path: impl AsRef<Path>) -> Result<Model> {
    load_with(path, &LoadOptions::default())
}

/// [`load`] with explicit limits.
pub fn load_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model> {
    let path = path.as_ref();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if name.ends_with(".keras") {
        keras::load_with(path, opts)
    } else if name.ends_with(".onnx") {
        onnx::load_with(path, opts)
    } else if name.ends_with(".json") || name.ends_with(".weights.h5") {
        keras::load_split_with(path, opts)
    } else if name.ends_with(".h5") || name.ends_with(".hdf5") {
        keras::load_h5_with(path, opts)
    } else if path.is_dir() && path.join("saved_model.pb").exists() {
        Err(LoadError::new(
            path,
            LoadErrorKind::Unsupported(
                "a TensorFlow SavedModel directory: export the model to .keras or ONNX (tf2onnx)"
                    .into(),
            ),
        )
        .into())
    } else {
        Err(LoadError::new(
            path,
            LoadErrorKind::Unsupported(
                "unknown model format: expected a .keras, .onnx, .h5, .json or .weights.h5 file"
                    .into(),
            ),
        )
        .into())
    }
}

/// IEEE half to single precision (exact).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        // Subnormal: value = mant * 2^-24, exact in f32.
        (0, m) => {
            let v = m as f32 * f32::powi(2.0, -24);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

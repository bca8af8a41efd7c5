//! Files in and out: `.npy` tensors, Keras `.keras` / `.weights.h5` models, ONNX models.
//!
//! [`load`] picks the loader from the file name:
//!
//! ```no_run
//! let model = sinter::io::load("model.keras")?; // or model.onnx, model.json + model.weights.h5
//! let plan = model.compile(&Default::default())?;
//! # Ok::<(), sinter::Error>(())
//! ```

pub mod hdf5;
pub mod keras;
pub mod npy;
pub mod onnx;

use crate::error::{Error, Result};
use crate::model::Model;
use std::path::Path;

/// Loads a model file: `.keras` (Keras 3 archive), `.json` (a `model.to_json()` config, with
/// its weights in `NAME.weights.h5` or `model.weights.h5` beside it), `.weights.h5` (with the
/// config in `NAME.json` beside it) or `.onnx`.
pub fn load(path: impl AsRef<Path>) -> Result<Model> {
    let path = path.as_ref();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if name.ends_with(".keras") {
        keras::load(path)
    } else if name.ends_with(".onnx") {
        onnx::load(path)
    } else if name.ends_with(".json") || name.ends_with(".weights.h5") {
        keras::load_split(path)
    } else {
        Err(Error::Format {
            path: path.into(),
            msg: "unknown model format: expected a .keras, .onnx, .json or .weights.h5 file".into(),
        })
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

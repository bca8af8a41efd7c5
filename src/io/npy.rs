//! float32 `.npy` tensors (C order), as NumPy writes them.
//!
//! ```no_run
//! # fn main() -> sinter::Result<()> {
//! let (shape, data) = sinter::io::npy::read_f32("x.npy".as_ref())?;
//! sinter::io::npy::write_f32("y.npy".as_ref(), &shape, &data)?;
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};
use npyz::WriterBuilder;
use std::io::Cursor;
use std::path::Path;

fn format_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Reads a float32 C-order array: `(shape, values)`. The declared shape is checked against the
/// file size before anything is allocated for it.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_bytes(&bytes, path)
}

/// Parses `.npy` bytes (see [`read_f32`]); `path` only labels errors.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let mut cursor = Cursor::new(bytes);
    let header = npyz::NpyHeader::from_reader(&mut cursor)
        .map_err(|e| format_err(path, format!("not a .npy file: {e}")))?;
    let header_len = cursor.position() as usize;
    let file = npyz::NpyFile::with_header(header, &bytes[header_len..]);
    let descr = file.dtype().descr();
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    if descr != "<f4" && !(cfg!(target_endian = "little") && descr == "=f4") {
        return Err(format_err(
            path,
            format!("dtype {descr:?}, expected float32 ('<f4')"),
        ));
    }
    if file.order() != npyz::Order::C {
        return Err(format_err(path, "Fortran-order array, expected C order"));
    }
    let shape: Vec<usize> = file
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format_err(path, "dimension too large")))
        .collect::<Result<_>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format_err(path, format!("shape {shape:?} overflows")))?;
    let available = bytes.len().saturating_sub(header_len) / 4;
    if count != available {
        return Err(format_err(
            path,
            format!("shape {shape:?} declares {count} values, the file holds {available}"),
        ));
    }
    let data = file
        .into_vec::<f32>()
        .map_err(|e| format_err(path, format!("bad data: {e}")))?;
    Ok((shape, data))
}

/// Writes a float32 C-order array.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io_err)?;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(io_err)?;
    w.extend(data.iter().copied()).map_err(io_err)?;
    w.finish().map_err(io_err)
}

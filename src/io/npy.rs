//! `.npy` tensors (C order) as NumPy writes them: float32 in and out, and int32 / int64 in (token
//! ids; a float64 file is refused with its dtype named).
//!
//! ```no_run
//! # fn main() -> sinter::Result<()> {
//! let (shape, data) = sinter::io::npy::read_f32("x.npy".as_ref())?;
//! sinter::io::npy::write_f32("y.npy".as_ref(), &shape, &data)?;
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};
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

/// A `.npy` array of one of the element types sinter reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    /// float32.
    F32(Vec<f32>),
    /// int32.
    I32(Vec<i32>),
    /// int64.
    I64(Vec<i64>),
    /// bool (NumPy's `|b1`).
    Bool(Vec<bool>),
}

impl Array {
    /// The values as a plan input.
    pub fn values(&self) -> crate::plan::Values<'_> {
        match self {
            Array::F32(v) => crate::plan::Values::F32(v),
            Array::I32(v) => crate::plan::Values::I32(v),
            Array::I64(v) => crate::plan::Values::I64(v),
            Array::Bool(v) => crate::plan::Values::Bool(v),
        }
    }

    /// Arrays joined along the batch, each `(array, have, want)` of samples of `have` values
    /// padded to `want` with zeros, or ones where `one` (sequences padded to the longest, as
    /// a batcher joins requests; [`TensorInfo::pad_one`](crate::TensorInfo::pad_one) says
    /// which). `None` when the
    /// arrays differ in type, a length is not whole samples, `want < have`, or the result
    /// does not fit in memory (checked before allocating).
    pub fn join_padded(parts: &[(&Array, usize, usize)], one: bool) -> Option<Array> {
        fn join<T: Copy>(parts: &[(&[T], usize, usize)], pad: T) -> Option<Vec<T>> {
            let mut total = 0usize;
            for &(v, have, want) in parts {
                if want < have
                    || (have == 0 && !v.is_empty())
                    || !v.len().is_multiple_of(have.max(1))
                {
                    return None;
                }
                total = total.checked_add((v.len() / have.max(1)).checked_mul(want)?)?;
            }
            // The size is checked before anything is allocated.
            let mut out = Vec::new();
            out.try_reserve_exact(total).ok()?;
            for &(v, have, want) in parts {
                for sample in v.chunks(have.max(1)) {
                    out.extend_from_slice(sample);
                    out.resize(out.len() + want - have, pad);
                }
            }
            Some(out)
        }
        fn typed<'a, T>(
            parts: &[(&'a Array, usize, usize)],
            values: fn(&'a Array) -> Option<&'a [T]>,
        ) -> Option<Vec<(&'a [T], usize, usize)>> {
            parts
                .iter()
                .map(|&(a, h, w)| Some((values(a)?, h, w)))
                .collect()
        }
        Some(match parts.first()?.0 {
            Array::F32(_) => Array::F32(join(
                &typed(parts, |a| match a {
                    Array::F32(v) => Some(v),
                    _ => None,
                })?,
                f32::from(u8::from(one)),
            )?),
            Array::I32(_) => Array::I32(join(
                &typed(parts, |a| match a {
                    Array::I32(v) => Some(v),
                    _ => None,
                })?,
                i32::from(one),
            )?),
            Array::I64(_) => Array::I64(join(
                &typed(parts, |a| match a {
                    Array::I64(v) => Some(v),
                    _ => None,
                })?,
                i64::from(one),
            )?),
            Array::Bool(_) => Array::Bool(join(
                &typed(parts, |a| match a {
                    Array::Bool(v) => Some(v),
                    _ => None,
                })?,
                one,
            )?),
        })
    }
}

/// Reads a float32, int32 or int64 C-order array: `(shape, values)`.
pub fn read(path: &Path) -> Result<(Vec<usize>, Array)> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_bytes_any(&bytes, path)
}

/// Parses `.npy` bytes (see [`read_f32`]); `path` only labels errors.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    match from_bytes_any(bytes, path)? {
        (shape, Array::F32(v)) => Ok((shape, v)),
        (_, other) => Err(format_err(
            path,
            format!(
                "dtype {}, expected float32 ('<f4')",
                match other {
                    Array::I32(_) => "int32 ('<i4')",
                    Array::Bool(_) => "bool ('|b1')",
                    _ => "int64 ('<i8')",
                }
            ),
        )),
    }
}

/// Parses `.npy` bytes of any type [`read`] takes; `path` only labels errors.
///
/// The preamble and header are parsed here rather than by the `npyz` crate: fuzzing found its reader
/// allocating whatever header length a file declares (4 GiB from a 90-byte file) and
/// multiplying the declared dimensions unchecked. Nothing here allocates more than the file.
pub fn from_bytes_any(bytes: &[u8], path: &Path) -> Result<(Vec<usize>, Array)> {
    let err = |msg: String| format_err(path, msg);
    let (version, rest) = match bytes {
        [0x93, b'N', b'U', b'M', b'P', b'Y', major, _minor, rest @ ..] => (*major, rest),
        _ => return Err(err("not a .npy file (no \\x93NUMPY magic)".into())),
    };
    let (len, rest) = match (version, rest) {
        (1, [l0, l1, rest @ ..]) => (usize::from(u16::from_le_bytes([*l0, *l1])), rest),
        (2 | 3, [l0, l1, l2, l3, rest @ ..]) => {
            let len = u32::from_le_bytes([*l0, *l1, *l2, *l3]);
            (usize::try_from(len).unwrap_or(usize::MAX), rest)
        }
        (1..=3, _) => return Err(err("truncated preamble".into())),
        (v, _) => return Err(err(format!("format version {v}, expected 1, 2 or 3"))),
    };
    if len > rest.len() {
        return Err(err(format!(
            "header declares {len} bytes, the file holds {} after the preamble",
            rest.len()
        )));
    }
    let (text, data) = rest.split_at(len);
    let text = std::str::from_utf8(text).map_err(|_| err("header is not text".into()))?;
    let header = Header::parse(text).map_err(|e| err(format!("header {text:?}: {e}")))?;
    let native = cfg!(target_endian = "little");
    let kind = match header.descr.as_str() {
        "<f4" => 'f',
        "=f4" if native => 'f',
        "<i4" => 'i',
        "=i4" if native => 'i',
        "<i8" => 'l',
        "=i8" if native => 'l',
        "|b1" | "<b1" | "=b1" => 'b',
        other => {
            return Err(err(format!(
                "dtype {other:?}, expected float32 ('<f4'), int32 ('<i4'), int64 ('<i8') or \
                 bool ('|b1')"
            )));
        }
    };
    let size = match kind {
        'l' => 8,
        'b' => 1,
        _ => 4,
    };
    if header.fortran_order {
        return Err(err("Fortran-order array, expected C order".into()));
    }
    let shape = header.shape;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|c| c.checked_mul(size).is_some())
        .ok_or_else(|| err(format!("shape {shape:?} overflows")))?;
    if count * size != data.len() {
        return Err(err(format!(
            "shape {shape:?} declares {count} values ({} bytes), the file holds {} bytes of data",
            count * size,
            data.len()
        )));
    }
    let four = |b: &[u8]| [b[0], b[1], b[2], b[3]];
    let values = match kind {
        'f' => Array::F32(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes(four(b)))
                .collect(),
        ),
        'i' => Array::I32(
            data.chunks_exact(4)
                .map(|b| i32::from_le_bytes(four(b)))
                .collect(),
        ),
        // NumPy reads any non-zero byte as true.
        'b' => Array::Bool(data.iter().map(|&b| b != 0).collect()),
        _ => Array::I64(
            data.chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
        ),
    };
    Ok((shape, values))
}

/// The header dictionary NumPy writes: `{'descr': '<f4', 'fortran_order': False,
/// 'shape': (3, 4), }`, padded with spaces and a newline.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl Header {
    fn parse(text: &str) -> std::result::Result<Header, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        p.expect(b'{')?;
        while !p.eat(b'}') {
            let key = p.string()?;
            p.expect(b':')?;
            match key.as_str() {
                "descr" => descr = Some(p.string()?),
                "fortran_order" => fortran_order = Some(p.boolean()?),
                "shape" => shape = Some(p.tuple()?),
                other => return Err(format!("unknown key {other:?}")),
            }
            if !p.eat(b',') {
                p.expect(b'}')?;
                break;
            }
        }
        if !p.s[p.i..].iter().all(u8::is_ascii_whitespace) {
            return Err("text after the dictionary".into());
        }
        Ok(Header {
            descr: descr.ok_or("no 'descr'")?,
            fortran_order: fortran_order.ok_or("no 'fortran_order'")?,
            shape: shape.ok_or("no 'shape'")?,
        })
    }
}

/// A cursor over the header's Python literal; every method skips leading whitespace.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&mut self) -> Option<u8> {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a string at byte {}", self.i)),
        };
        let start = self.i + 1;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == quote)
            .ok_or("unterminated string")?;
        self.i = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }
    fn boolean(&mut self) -> std::result::Result<bool, String> {
        self.peek();
        for (word, value) in [(&b"True"[..], true), (b"False", false)] {
            if self.s[self.i..].starts_with(word) {
                self.i += word.len();
                return Ok(value);
            }
        }
        Err(format!("expected True or False at byte {}", self.i))
    }
    fn tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        while !self.eat(b')') {
            self.peek();
            let digits = self.s[self.i..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            let text = std::str::from_utf8(&self.s[self.i..self.i + digits]).unwrap_or("");
            let dim = text
                .parse::<usize>()
                .map_err(|_| format!("expected a dimension at byte {}", self.i))?;
            self.i += digits;
            dims.push(dim);
            if !self.eat(b',') {
                self.expect(b')')?;
                break;
            }
        }
        Ok(dims)
    }
}

/// Writes an int64 C-order array (labels).
pub fn write_i64(path: &Path, shape: &[usize], data: impl IntoIterator<Item = i64>) -> Result<()> {
    write(path, shape, "<i8", data.into_iter().map(i64::to_le_bytes))
}

/// Writes a bool C-order array (masks).
pub fn write_bool(path: &Path, shape: &[usize], data: &[bool]) -> Result<()> {
    write(path, shape, "|b1", data.iter().map(|&v| [u8::from(v)]))
}

/// Writes a float32 C-order array.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    write(path, shape, "<f4", data.iter().map(|v| v.to_le_bytes()))
}

/// Writes a `.npy` version 1.0 file: the header (the dict NumPy writes, padded with spaces so
/// the data starts at a multiple of 64 bytes), then the values little-endian.
fn write<const N: usize>(
    path: &Path,
    shape: &[usize],
    descr: &str,
    data: impl IntoIterator<Item = [u8; N]>,
) -> Result<()> {
    use std::io::Write;
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let tuple = match dims.as_slice() {
        [one] => format!("({one},)"),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    // 10 bytes of magic, version and length, then the header ending in a newline.
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    header.extend(std::iter::repeat_n(' ', pad));
    header.push('\n');
    let len = u16::try_from(header.len()).map_err(|_| {
        format_err(
            path,
            format!("a shape of {} dimensions is too long", shape.len()),
        )
    })?;
    let file = std::fs::File::create(path).map_err(io_err)?;
    let mut w = std::io::BufWriter::new(file);
    w.write_all(b"\x93NUMPY\x01\x00").map_err(io_err)?;
    w.write_all(&len.to_le_bytes()).map_err(io_err)?;
    w.write_all(header.as_bytes()).map_err(io_err)?;
    for v in data {
        w.write_all(&v).map_err(io_err)?;
    }
    w.flush().map_err(io_err)
}

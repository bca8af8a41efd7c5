//! `TensorProto` decoding: initializers and `Constant` values, inline or in external data.

use super::convert::{Const, Converter, dtype_name};
use super::proto::{NodeProto, TensorProto, dtype};
use crate::error::{Error, LoadErrorKind, Result};
use crate::model::checked_elems;
use std::path::{Component, Path, PathBuf};

impl Converter<'_> {
    /// The value of a `Constant` node: a tensor, or one of the scalar and list forms.
    pub(super) fn constant_node(&self, node: &NodeProto) -> Result<Const> {
        let [a] = node.attribute.as_slice() else {
            return Err(self.invalid(node, "needs exactly one value attribute"));
        };
        let c = |dims: Vec<usize>, f32: Vec<f32>, i64: Vec<i64>| Const { dims, f32, i64 };
        Ok(match a.name.as_str() {
            "value" => {
                let t =
                    a.t.as_ref()
                        .ok_or_else(|| self.invalid(node, "value holds no tensor"))?;
                self.constant(t, &format!("node {:?}", node.name))?
            }
            "value_float" => c(vec![], vec![a.f], vec![]),
            "value_floats" => c(vec![a.floats.len()], a.floats.clone(), vec![]),
            "value_int" => c(vec![], vec![], vec![a.i]),
            "value_ints" => c(vec![a.ints.len()], vec![], a.ints.clone()),
            other => {
                return Err(self.unsupported(node, format!("the {other} form is not supported")));
            }
        })
    }

    /// Converts an initializer or `Constant` value, reading external data if needed.
    pub(super) fn constant(&self, t: &TensorProto, what: &str) -> Result<Const> {
        let invalid = |m: String| self.file_error(LoadErrorKind::Invalid(m));
        let limit = |m: String| self.file_error(LoadErrorKind::Limit(m));
        let dims = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|m| invalid(format!("{what}: {m}")))?;
        self.opts
            .check_elems(&dims)
            .map_err(|m| limit(format!("{what}: {m}")))?;
        let n = checked_elems(&dims).map_err(|m| limit(format!("{what}: {m}")))?;
        let external;
        let raw: &[u8] = if t.data_location == 1 {
            external = self.external(t, what)?;
            &external
        } else {
            &t.raw_data
        };
        let bad = |have: usize, unit: &str| {
            invalid(format!(
                "{what}: shape {dims:?} needs {n} values, the data holds {have} {unit}"
            ))
        };
        let mut c = Const {
            dims: dims.clone(),
            f32: vec![],
            i64: vec![],
        };
        let size = match t.data_type {
            dtype::FLOAT | dtype::INT32 => 4,
            dtype::INT64 | dtype::DOUBLE => 8,
            dtype::FLOAT16 => 2,
            dtype::BOOL => 1,
            other => {
                return Err(self.file_error(LoadErrorKind::Unsupported(format!(
                    "{what}: element type {} is not supported",
                    dtype_name(other)
                ))));
            }
        };
        if !raw.is_empty() || t.data_location == 1 {
            if raw.len() != n.saturating_mul(size) {
                return Err(bad(raw.len(), "bytes"));
            }
            match t.data_type {
                dtype::FLOAT => c.f32 = le_chunks::<4>(raw).map(f32::from_le_bytes).collect(),
                dtype::DOUBLE => {
                    c.f32 = le_chunks::<8>(raw)
                        .map(|b| f64::from_le_bytes(b) as f32)
                        .collect()
                }
                dtype::FLOAT16 => {
                    c.f32 = le_chunks::<2>(raw)
                        .map(|b| crate::io::f16_to_f32(u16::from_le_bytes(b)))
                        .collect()
                }
                dtype::BOOL => c.i64 = raw.iter().map(|&b| i64::from(b != 0)).collect(),
                dtype::INT32 => {
                    c.i64 = le_chunks::<4>(raw)
                        .map(|b| i32::from_le_bytes(b).into())
                        .collect()
                }
                _ => c.i64 = le_chunks::<8>(raw).map(i64::from_le_bytes).collect(),
            }
        } else {
            let have = match t.data_type {
                dtype::FLOAT => {
                    c.f32 = t.float_data.clone();
                    t.float_data.len()
                }
                dtype::DOUBLE => {
                    c.f32 = t.double_data.iter().map(|&v| v as f32).collect();
                    t.double_data.len()
                }
                dtype::FLOAT16 => {
                    c.f32 = t
                        .int32_data
                        .iter()
                        .map(|&v| crate::io::f16_to_f32(v as u16))
                        .collect();
                    t.int32_data.len()
                }
                dtype::INT32 => {
                    c.i64 = t.int32_data.iter().map(|&v| v.into()).collect();
                    t.int32_data.len()
                }
                dtype::BOOL => {
                    c.i64 = t.int32_data.iter().map(|&v| i64::from(v != 0)).collect();
                    t.int32_data.len()
                }
                _ => {
                    c.i64 = t.int64_data.clone();
                    t.int64_data.len()
                }
            };
            if have != n {
                return Err(bad(have, "values"));
            }
        }
        Ok(c)
    }

    /// Reads an external-data tensor: a file named by a relative path without `..`, next to
    /// the model, checked against its declared offset and length before reading.
    pub(super) fn external(&self, t: &TensorProto, what: &str) -> Result<Vec<u8>> {
        let invalid = |m: String| self.file_error(LoadErrorKind::Invalid(m));
        let fail = |m: String| invalid(format!("{what}: external data {m}"));
        let key = |k: &str| {
            t.external_data
                .iter()
                .find(|e| e.key == k)
                .map(|e| e.value.as_str())
        };
        let location = key("location").ok_or_else(|| fail("has no location".into()))?;
        let rel = Path::new(location);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(fail(format!(
                "location {location:?} must be a plain relative path next to the model"
            )));
        }
        let dir = self.dir.ok_or_else(|| {
            self.file_error(LoadErrorKind::Unsupported(format!(
                "{what}: external data is not available for a model read from memory"
            )))
        })?;
        let file: PathBuf = dir.join(rel);
        let num = |k: &str| -> Result<Option<u64>> {
            key(k)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| fail(format!("{k} {v:?} is not a number")))
                })
                .transpose()
        };
        let offset = num("offset")?.unwrap_or(0);
        let len = std::fs::metadata(&file)
            .map_err(|source| Error::Io {
                path: file.clone(),
                source,
            })?
            .len();
        let length = match num("length")? {
            Some(l) => l,
            None => len.saturating_sub(offset),
        };
        if offset.checked_add(length).is_none_or(|end| end > len) {
            return Err(fail(format!(
                "{}: bytes {offset}..{} lie beyond its end ({len} bytes)",
                file.display(),
                offset.saturating_add(length)
            )));
        }
        let total = self.external_bytes.get().saturating_add(length);
        if total > self.opts.max_weight_bytes {
            return Err(self.file_error(LoadErrorKind::Limit(format!(
                "{what}: external data brings the weights to {total} bytes, over the limit of {} \
                 bytes",
                self.opts.max_weight_bytes
            ))));
        }
        self.external_bytes.set(total);
        use std::io::{Read, Seek, SeekFrom};
        let io = |source| Error::Io {
            path: file.clone(),
            source,
        };
        let mut f = std::fs::File::open(&file).map_err(io)?;
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut buf = Vec::new();
        f.take(length).read_to_end(&mut buf).map_err(io)?;
        if buf.len() as u64 != length {
            return Err(fail(format!("{}: short read", file.display())));
        }
        Ok(buf)
    }
}

fn le_chunks<const N: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    raw.chunks_exact(N)
        .map(|c| <[u8; N]>::try_from(c).unwrap_or([0; N]))
}

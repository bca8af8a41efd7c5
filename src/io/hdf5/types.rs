//! Dataspaces (the shape) and datatypes (the element type) of datasets and attributes, and
//! the conversion of numbers to f32.

use super::cursor::Cur;
use super::{File, MAX_RANK, Res};

pub(super) enum Space {
    Null,
    Dims(Vec<u64>),
}

#[derive(Clone, Copy, Debug)]
enum NumKind {
    Float,
    Int { signed: bool },
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Num {
    kind: NumKind,
    pub(super) size: usize,
    big_endian: bool,
}

pub(super) enum Dtype {
    Num(Num),
    FixedStr { size: usize, pad: u8 },
    VlenStr,
    Other(String),
}

/// Number of elements, or an error if the product overflows. Any zero dimension makes it 0.
pub(super) fn element_count(dims: &[u64]) -> Res<u64> {
    if dims.contains(&0) {
        return Ok(0);
    }
    dims.iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("dataspace {dims:?} has too many elements"))
}

impl Num {
    pub(super) fn convert(&self, b: &[u8]) -> f32 {
        let v = if self.big_endian {
            b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
        } else {
            b.iter()
                .rev()
                .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
        };
        match (self.kind, self.size) {
            (NumKind::Float, 2) => crate::io::f16_to_f32(v as u16),
            (NumKind::Float, 4) => f32::from_bits(v as u32),
            (NumKind::Float, _) => f64::from_bits(v) as f32,
            (NumKind::Int { signed: false }, _) => v as f32,
            (NumKind::Int { signed: true }, size) => {
                let shift = 64 - 8 * (size as u32).clamp(1, 8);
                (((v << shift) as i64) >> shift) as f32
            }
        }
    }
}

impl<'a> File<'a> {
    pub(super) fn dataspace(&self, data: &'a [u8], at: u64) -> Res<Space> {
        let mut c = Cur::new(data, "dataspace message", at);
        let version = c.u8()?;
        let rank = usize::from(c.u8()?);
        c.skip(1)?; // flags (max dims, permutation)
        match version {
            1 => c.skip(5)?,
            2 => {
                if c.u8()? == 2 {
                    return Ok(Space::Null);
                }
            }
            v => return Err(c.err(format_args!("dataspace version {v} is not supported"))),
        }
        if rank > MAX_RANK {
            return Err(c.err(format_args!("rank {rank} exceeds {MAX_RANK}")));
        }
        let dims = (0..rank)
            .map(|_| self.length(&mut c))
            .collect::<Res<Vec<_>>>()?;
        Ok(Space::Dims(dims))
    }
}

pub(super) fn datatype(data: &[u8], at: u64) -> Res<Dtype> {
    let mut c = Cur::new(data, "datatype message", at);
    let class = c.u8()? & 0x0f;
    let bits = [c.u8()?, c.u8()?, c.u8()?];
    let size = c.u32()? as usize;
    Ok(match class {
        0 => {
            let offset = c.u16()?;
            let precision = c.u16()?;
            if !matches!(size, 1 | 2 | 4 | 8) || offset != 0 || usize::from(precision) != 8 * size {
                Dtype::Other(format!(
                    "integer of {size} bytes ({precision} bits at offset {offset})"
                ))
            } else {
                Dtype::Num(Num {
                    kind: NumKind::Int {
                        signed: bits[0] & 0x08 != 0,
                    },
                    size,
                    big_endian: bits[0] & 0x01 != 0,
                })
            }
        }
        1 => {
            let order = (bits[0] & 0x01) | ((bits[0] >> 5) & 0x02);
            let fields = (
                c.u16()?,
                c.u16()?,
                c.u8()?,
                c.u8()?,
                c.u8()?,
                c.u8()?,
                c.u32()?,
            );
            // (offset, precision, exponent location/size, mantissa location/size, bias), sign
            let ieee = match size {
                2 => Some(((0, 16, 10, 5, 0, 10, 15), 15)),
                4 => Some(((0, 32, 23, 8, 0, 23, 127), 31)),
                8 => Some(((0, 64, 52, 11, 0, 52, 1023), 63)),
                _ => None,
            };
            let normalization = (bits[0] >> 4) & 0x03;
            if order > 1 {
                Dtype::Other("float with VAX byte order".into())
            } else if ieee == Some((fields, bits[1])) && normalization == 2 {
                Dtype::Num(Num {
                    kind: NumKind::Float,
                    size,
                    big_endian: order == 1,
                })
            } else {
                Dtype::Other(format!("non-IEEE float of {size} bytes"))
            }
        }
        3 => Dtype::FixedStr {
            size,
            pad: bits[0] & 0x0f,
        },
        9 if bits[0] & 0x0f == 1 => Dtype::VlenStr,
        9 => Dtype::Other("variable-length sequence".into()),
        k => Dtype::Other(
            match k {
                2 => "time",
                4 => "bitfield",
                5 => "opaque",
                6 => "compound",
                7 => "reference",
                8 => "enum",
                10 => "array",
                _ => "of unknown class",
            }
            .into(),
        ),
    })
}

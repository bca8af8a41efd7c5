//! Datasets: their storage (compact or contiguous; chunked, virtual and external storage are
//! refused by name) read as f32 in C order.

use super::cursor::Cur;
use super::header::{FLAG_SHARED, MSG_DATASPACE, MSG_DATATYPE, MSG_EXTERNAL, MSG_LAYOUT, Msg};
use super::types::{Dtype, Space, datatype, element_count};
use super::{Dataset, File, Res, UNDEF, show};

enum Layout<'a> {
    Compact(&'a [u8]),
    Contiguous { addr: u64, size: Option<u64> },
    Chunked,
    Virtual,
}

impl<'a> File<'a> {
    /// The dataset at `path`, converted to f32; Ok(None) if no object exists at that path; Err if it exists but is not a readable numeric dataset.
    pub fn dataset(&self, path: &str) -> Result<Option<Dataset>, String> {
        let ctx = |e: String| format!("dataset {}: {e}", show(path));
        let Some(addr) = self.resolve(path).map_err(ctx)? else {
            return Ok(None);
        };
        self.read_dataset(addr).map(Some).map_err(ctx)
    }

    fn read_dataset(&self, addr: u64) -> Res<Dataset> {
        let msgs = self.header(addr)?;
        let find = |kind: u16| -> Res<Option<&Msg<'a>>> {
            match msgs.iter().find(|m| m.kind == kind) {
                Some(m) if m.flags & FLAG_SHARED != 0 => {
                    Err(format!("shared message of type {kind:#x} is not supported"))
                }
                m => Ok(m),
            }
        };
        let Some(layout) = find(MSG_LAYOUT)? else {
            return Err(if self.links(&msgs)?.is_some() {
                "is a group, not a dataset".into()
            } else {
                "not a dataset (no data layout message)".into()
            });
        };
        if find(MSG_EXTERNAL)?.is_some() {
            return Err("external data files are not supported".into());
        }
        let space = find(MSG_DATASPACE)?.ok_or("no dataspace message")?;
        let dtype = find(MSG_DATATYPE)?.ok_or("no datatype message")?;
        let dims = match self.dataspace(space.data, space.at)? {
            Space::Null => return Err("null dataspace (no data)".into()),
            Space::Dims(dims) => dims,
        };
        let num = match datatype(dtype.data, dtype.at)? {
            Dtype::Num(num) => num,
            Dtype::FixedStr { .. } | Dtype::VlenStr => {
                return Err("datatype is a string, not numeric".into());
            }
            Dtype::Other(what) => return Err(format!("datatype {what} is not supported")),
        };
        let count = element_count(&dims)?;
        let nbytes = count
            .checked_mul(num.size as u64)
            .ok_or_else(|| format!("dataspace {dims:?} has too many bytes"))?;
        let raw: &[u8] = match self.layout(layout.data, layout.at)? {
            Layout::Compact(data) => usize::try_from(nbytes)
                .ok()
                .and_then(|n| data.get(..n))
                .ok_or_else(|| {
                    format!(
                        "compact data holds {} bytes, dataspace {dims:?} needs {nbytes}",
                        data.len()
                    )
                })?,
            Layout::Contiguous { addr, size } => {
                if size.is_some_and(|s| s < nbytes) {
                    return Err(format!(
                        "contiguous storage of {} bytes, dataspace {dims:?} needs {nbytes}",
                        size.unwrap_or(0)
                    ));
                }
                if nbytes == 0 {
                    &[]
                } else if addr == UNDEF {
                    return Err("storage was never written (undefined address)".into());
                } else {
                    self.range(addr, nbytes, "contiguous data")?
                }
            }
            Layout::Chunked => return Err("chunked storage is not supported".into()),
            Layout::Virtual => return Err("virtual storage is not supported".into()),
        };
        let shape = dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| format!("dataspace {dims:?} does not fit in memory"))?;
        // `raw` is in the file, so this allocation is at most 4x the file size.
        let data = raw.chunks_exact(num.size).map(|b| num.convert(b)).collect();
        Ok(Dataset { shape, data })
    }

    fn layout(&self, data: &'a [u8], at: u64) -> Res<Layout<'a>> {
        let mut c = Cur::new(data, "data layout message", at);
        let version = c.u8()?;
        match version {
            1 | 2 => {
                let rank = usize::from(c.u8()?);
                let class = c.u8()?;
                c.skip(5)?;
                match class {
                    0 => {
                        c.skip(4 * rank)?;
                        let size = c.u32()?;
                        Ok(Layout::Compact(c.take_u64(u64::from(size))?))
                    }
                    1 => Ok(Layout::Contiguous {
                        addr: self.addr(&mut c)?,
                        size: None,
                    }),
                    2 => Ok(Layout::Chunked),
                    k => Err(c.err(format_args!("layout class {k}"))),
                }
            }
            3 | 4 => match c.u8()? {
                0 => {
                    let size = c.u16()?;
                    Ok(Layout::Compact(c.take(usize::from(size))?))
                }
                1 => Ok(Layout::Contiguous {
                    addr: self.addr(&mut c)?,
                    size: Some(self.length(&mut c)?),
                }),
                2 => Ok(Layout::Chunked),
                3 => Ok(Layout::Virtual),
                k => Err(c.err(format_args!("layout class {k}"))),
            },
            v => Err(c.err(format_args!("data layout version {v} is not supported"))),
        }
    }
}

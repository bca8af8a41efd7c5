//! Attributes: string attributes (fixed length, or variable length in the global heap
//! `GCOL`), stored in the object header or densely in a fractal heap (`dense.rs`).

use super::cursor::Cur;
use super::header::{FLAG_SHARED, MSG_ATTRIBUTE, MSG_ATTRIBUTE_INFO, Msg};
use super::types::{Dtype, Space, datatype, element_count};
use super::{File, Res, UNDEF, dense, show};

struct Attr<'a> {
    name: &'a [u8],
    dtype: &'a [u8],
    space: &'a [u8],
    data: &'a [u8],
    at: u64,
}

fn padded8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

impl<'a> File<'a> {
    /// A string attribute on the object at `path` (e.g. the `name` attribute of a Keras `vars`
    /// group), Ok(None) if the object has no attribute of that name. Fixed-length and
    /// variable-length (global heap) strings are read; Err if the object does not exist or the
    /// attribute is not a single string.
    pub fn attr_string(&self, path: &str, name: &str) -> Result<Option<String>, String> {
        match self.attr_strings(path, name)? {
            None => Ok(None),
            Some(mut v) if v.len() == 1 => Ok(v.pop()),
            Some(v) => Err(format!(
                "attribute {name} of {}: {} elements, expected a single string",
                show(path),
                v.len()
            )),
        }
    }

    /// A string attribute holding any number of strings (a scalar, or a 1-D array as h5py
    /// writes Keras 2's `layer_names` and `weight_names`), fixed- or variable-length; Ok(None)
    /// if there is no attribute of that name.
    pub fn attr_strings(&self, path: &str, name: &str) -> Result<Option<Vec<String>>, String> {
        let ctx = |e: String| format!("attribute {name} of {}: {e}", show(path));
        let addr = self
            .resolve(path)
            .map_err(ctx)?
            .ok_or_else(|| ctx("no such object".into()))?;
        let msgs = self.header(addr).map_err(ctx)?;
        for m in msgs.iter().filter(|m| m.kind == MSG_ATTRIBUTE) {
            let attr = attribute(m).map_err(ctx)?;
            if attr.name == name.as_bytes() {
                return self.attr_value(&attr).map(Some).map_err(ctx);
            }
        }
        match self.dense_attribute(&msgs, name).map_err(ctx)? {
            Some(attr) => self.attr_value(&attr).map(Some).map_err(ctx),
            None => Ok(None),
        }
    }

    /// The attribute `name` from the object's dense attribute storage, if it has one.
    fn dense_attribute(&self, msgs: &[Msg<'a>], name: &str) -> Res<Option<Attr<'a>>> {
        let Some(m) = msgs.iter().find(|m| m.kind == MSG_ATTRIBUTE_INFO) else {
            return Ok(None);
        };
        let mut c = Cur::new(m.data, "attribute info message", m.at);
        c.skip(1)?;
        let flags = c.u8()?;
        if flags & 1 != 0 {
            c.skip(2)?; // maximum creation index
        }
        let heap = self.addr(&mut c)?;
        if heap == UNDEF {
            return Ok(None);
        }
        let names = self.addr(&mut c)?;
        let heap = self.fractal_heap(heap)?;
        let mut found = None;
        self.btree2_records(names, dense::ATTRIBUTE_NAMES, &mut |rec| {
            // Heap ID, message flags, creation order, name hash.
            let (id, flags) = match (rec.get(..heap.id_len), rec.get(heap.id_len)) {
                (Some(id), Some(&flags)) => (id, flags),
                _ => return Err(format!("attribute name record {rec:02x?} too short")),
            };
            if found.is_some() {
                return Ok(());
            }
            if flags & FLAG_SHARED != 0 {
                return Err("shared attribute messages are not supported".into());
            }
            let data = self.heap_object(&heap, id)?;
            let attr = attribute(&Msg {
                kind: MSG_ATTRIBUTE,
                flags,
                data,
                at: m.at,
            })?;
            if attr.name == name.as_bytes() {
                found = Some(attr);
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// Every string of a string attribute. The element count is checked against the bytes
    /// the attribute holds before anything is allocated for it.
    fn attr_value(&self, attr: &Attr<'a>) -> Res<Vec<String>> {
        let count = match self.dataspace(attr.space, attr.at)? {
            Space::Null => 0,
            Space::Dims(dims) => element_count(&dims)?,
        };
        let count = usize::try_from(count).map_err(|_| format!("{count} elements"))?;
        match datatype(attr.dtype, attr.at)? {
            Dtype::FixedStr { size, pad } => {
                let need = count
                    .checked_mul(size)
                    .filter(|&n| n <= attr.data.len())
                    .ok_or_else(|| format!("{count} strings of {size} bytes: value truncated"))?;
                let strings = if size == 0 {
                    vec![String::new(); count]
                } else {
                    attr.data[..need]
                        .chunks_exact(size)
                        .map(|raw| {
                            let raw = match pad {
                                // Null-terminated or null-padded: up to the first NUL.
                                0 | 1 => raw.split(|&b| b == 0).next().unwrap_or(&[]),
                                _ => {
                                    let end =
                                        raw.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
                                    raw.get(..end).unwrap_or(&[])
                                }
                            };
                            String::from_utf8_lossy(raw).into_owned()
                        })
                        .collect()
                };
                Ok(strings)
            }
            Dtype::VlenStr => {
                let each = 8 + usize::from(self.offset_size);
                count
                    .checked_mul(each)
                    .filter(|&n| n <= attr.data.len())
                    .ok_or_else(|| format!("{count} string references: value truncated"))?;
                let mut c = Cur::new(attr.data, "attribute value", attr.at);
                let mut out = Vec::with_capacity(count);
                for _ in 0..count {
                    let len = u64::from(c.u32()?);
                    let collection = self.addr(&mut c)?;
                    let index = c.u32()?;
                    let object = self.global_object(collection, index)?;
                    let raw = usize::try_from(len)
                        .ok()
                        .and_then(|n| object.get(..n))
                        .ok_or_else(|| {
                            format!("string of {len} bytes in a heap object of {}", object.len())
                        })?;
                    out.push(String::from_utf8_lossy(raw).into_owned());
                }
                Ok(out)
            }
            // h5py writes an empty list (a layer without weights) as an empty float array.
            Dtype::Num(_) if count == 0 => Ok(Vec::new()),
            Dtype::Num(_) => Err("numeric, not a string".into()),
            Dtype::Other(what) => Err(format!("datatype {what}, not a string")),
        }
    }

    /// Object `index` of the global heap collection at `addr`.
    fn global_object(&self, addr: u64, index: u32) -> Res<&'a [u8]> {
        let mut c = self.at(addr, "global heap")?;
        c.signature(b"GCOL")?;
        let version = c.u8()?;
        if version != 1 {
            return Err(c.err(format_args!("global heap version {version}")));
        }
        c.skip(3)?;
        let size = self.length(&mut c)?;
        let header = c.pos as u64;
        let body = size
            .checked_sub(header)
            .ok_or_else(|| c.err(format_args!("collection size {size} too small")))?;
        let mut c = Cur::new(c.take_u64(body)?, "global heap", addr);
        let object_header = 8 + usize::from(self.length_size);
        while c.left() >= object_header {
            let i = c.u16()?;
            c.skip(2 + 4)?; // reference count, reserved
            let len = self.length(&mut c)?;
            if i == 0 {
                break; // free space: the rest of the collection
            }
            let data = c.take_u64(len)?;
            if u32::from(i) == index {
                return Ok(data);
            }
            let pad = padded8(data.len()) - data.len();
            c.skip(pad.min(c.left()))?;
        }
        Err(c.err(format_args!("no object {index}")))
    }
}

fn attribute<'a>(m: &Msg<'a>) -> Res<Attr<'a>> {
    let mut c = Cur::new(m.data, "attribute message", m.at);
    let version = c.u8()?;
    let flags = c.u8()?;
    if version >= 2 && flags & 3 != 0 {
        return Err(c.err("shared datatype or dataspace is not supported"));
    }
    let name_size = usize::from(c.u16()?);
    let dtype_size = usize::from(c.u16()?);
    let space_size = usize::from(c.u16()?);
    let pad: fn(usize) -> usize = match version {
        1 => padded8,
        2 => |n| n,
        3 => {
            c.skip(1)?; // name character set
            |n| n
        }
        v => return Err(c.err(format_args!("attribute message version {v}"))),
    };
    let name = c.take(pad(name_size))?.get(..name_size).unwrap_or(&[]);
    let name = name.split(|&b| b == 0).next().unwrap_or(&[]);
    let dtype = c.take(pad(dtype_size))?.get(..dtype_size).unwrap_or(&[]);
    let space = c.take(pad(space_size))?.get(..space_size).unwrap_or(&[]);
    Ok(Attr {
        name,
        dtype,
        space,
        data: c.rest(),
        at: m.at,
    })
}

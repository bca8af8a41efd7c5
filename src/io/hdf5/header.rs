//! Object headers: the messages (dataspace, datatype, layout, links, attributes, ...) of one
//! object, version 1 or 2 (`OHDR`), continuation blocks followed.

use super::cursor::Cur;
use super::{File, MAX_CONTINUATIONS, MAX_MESSAGES, Res};
use std::collections::HashSet;

// Header message types used here (HDF5 file format spec, section IV.A.2).
pub(super) const MSG_DATASPACE: u16 = 0x0001;
pub(super) const MSG_LINK_INFO: u16 = 0x0002;
pub(super) const MSG_DATATYPE: u16 = 0x0003;
pub(super) const MSG_LINK: u16 = 0x0006;
pub(super) const MSG_EXTERNAL: u16 = 0x0007;
pub(super) const MSG_LAYOUT: u16 = 0x0008;
pub(super) const MSG_ATTRIBUTE: u16 = 0x000C;
pub(super) const MSG_CONTINUATION: u16 = 0x0010;
pub(super) const MSG_SYMBOL_TABLE: u16 = 0x0011;
pub(super) const MSG_ATTRIBUTE_INFO: u16 = 0x0015;
/// Types 0x00..=0x18 are all defined by the spec; the ones not listed above carry nothing a
/// reader of values needs (fill value, times, filters, comments, ...).
pub(super) const MSG_LAST_KNOWN: u16 = 0x0018;
/// Message flag: "shared" - the body is a reference to a message stored elsewhere.
pub(super) const FLAG_SHARED: u8 = 0x02;
/// Message flag: fail to open the object if the message type is unknown.
pub(super) const FLAG_MUST_UNDERSTAND: u8 = 0x80;

/// One header message: its type, flags and body.
#[derive(Clone, Copy)]
pub(super) struct Msg<'a> {
    pub(super) kind: u16,
    pub(super) flags: u8,
    pub(super) data: &'a [u8],
    /// Address of the body, for error messages (and tests that patch files).
    pub(super) at: u64,
}

impl<'a> File<'a> {
    /// All messages of the object header at `addr`, continuation blocks followed.
    pub(super) fn header(&self, addr: u64) -> Res<Vec<Msg<'a>>> {
        let mut c = self.at(addr, "object header")?;
        let mut msgs = Vec::new();
        let mut blocks: Vec<(u64, u64)> = Vec::new();
        let v2 = c.buf.starts_with(b"OHDR");
        let mut flags = 0;
        if v2 {
            c.skip(4)?;
            let version = c.u8()?;
            if version != 2 {
                return Err(c.err(format_args!("OHDR version {version} is not supported")));
            }
            flags = c.u8()?;
            if flags & 0x20 != 0 {
                c.skip(16)?; // access, modification, change and birth times
            }
            if flags & 0x10 != 0 {
                c.skip(4)?; // attribute storage phase change values
            }
            let size = c.uint(1 << (flags & 3))?;
            let at = addr.saturating_add(c.pos as u64);
            let size = usize::try_from(size).map_err(|_| c.err("chunk size too large"))?;
            let mut chunk = c.sub(size, "object header", at)?;
            self.messages(&mut chunk, Some(flags), &mut msgs, &mut blocks)?;
        } else {
            let version = c.u8()?;
            if version != 1 {
                return Err(c.err(format_args!(
                    "object header version {version} is not supported"
                )));
            }
            // Reserved, message count, reference count; messages start 8-byte aligned at 16.
            c.skip(1 + 2 + 4)?;
            let size = c.u32()? as usize;
            c.skip(4)?;
            let mut chunk = c.sub(size, "object header", addr.saturating_add(16))?;
            self.messages(&mut chunk, None, &mut msgs, &mut blocks)?;
        }
        let mut seen = HashSet::new();
        let mut i = 0;
        while let Some(&(at, len)) = blocks.get(i) {
            i += 1;
            if i > MAX_CONTINUATIONS {
                return Err(format!(
                    "object header at {addr:#x}: more than {MAX_CONTINUATIONS} continuation blocks"
                ));
            }
            if !seen.insert(at) || at == addr {
                return Err(format!(
                    "object header at {addr:#x}: continuation block at {at:#x} visited twice"
                ));
            }
            let bytes = self.range(at, len, "object header continuation")?;
            let mut block = Cur::new(bytes, "object header continuation", at);
            if v2 {
                block.signature(b"OCHK")?;
                let body = len.saturating_sub(8) as usize;
                let mut body = block.sub(body, "object header continuation", at)?;
                self.messages(&mut body, Some(flags), &mut msgs, &mut blocks)?;
            } else {
                self.messages(&mut block, None, &mut msgs, &mut blocks)?;
            }
        }
        for m in &msgs {
            if m.kind > MSG_LAST_KNOWN && m.flags & FLAG_MUST_UNDERSTAND != 0 {
                return Err(format!(
                    "object header at {addr:#x}: message type {:#x} must be understood but is not supported",
                    m.kind
                ));
            }
        }
        Ok(msgs)
    }

    /// Messages of one header chunk; `v2_flags` is the OHDR flags byte, None for version 1.
    fn messages(
        &self,
        c: &mut Cur<'a>,
        v2_flags: Option<u8>,
        msgs: &mut Vec<Msg<'a>>,
        blocks: &mut Vec<(u64, u64)>,
    ) -> Res<()> {
        let prefix = match v2_flags {
            None => 8,
            Some(f) if f & 0x04 != 0 => 6,
            Some(_) => 4,
        };
        // A gap shorter than a message prefix may end a chunk.
        while c.left() >= prefix {
            let (kind, size, flags) = match v2_flags {
                None => {
                    let kind = c.u16()?;
                    let size = c.u16()?;
                    let flags = c.u8()?;
                    c.skip(3)?;
                    (kind, size, flags)
                }
                Some(hflags) => {
                    let kind = u16::from(c.u8()?);
                    let size = c.u16()?;
                    let flags = c.u8()?;
                    if hflags & 0x04 != 0 {
                        c.skip(2)?; // creation order
                    }
                    (kind, size, flags)
                }
            };
            let at = c.at.saturating_add(c.pos as u64);
            let data = c.take(usize::from(size))?;
            if msgs.len() >= MAX_MESSAGES {
                return Err(c.err(format_args!("more than {MAX_MESSAGES} messages")));
            }
            msgs.push(Msg {
                kind,
                flags,
                data,
                at,
            });
            if kind == MSG_CONTINUATION {
                let mut m = Cur::new(data, "continuation message", at);
                let addr = self.addr(&mut m)?;
                let len = self.length(&mut m)?;
                blocks.push((addr, len));
            }
        }
        Ok(())
    }
}

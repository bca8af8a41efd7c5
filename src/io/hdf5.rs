//! A minimal, read-only HDF5 reader for the files h5py writes (Keras weights).
//!
//! Keras 3 stores `model.weights.h5` through h5py with the library defaults (libver "earliest"),
//! so this reads that subset of the format and nothing more:
//!
//! - superblock versions 0 and 1 (and 2/3, as written with `libver="latest"`), offsets and
//!   lengths of 2, 4 or 8 bytes, an optional user block;
//! - object headers version 1 and 2 (`OHDR`) with continuation blocks;
//! - groups as a symbol table (v1 B-tree of `TREE` nodes -> `SNOD` nodes -> names in the local
//!   `HEAP`), or as compact link messages (`libver="latest"`);
//! - datasets with contiguous or compact storage whose elements are IEEE floats (f16, f32, f64)
//!   or integers of 1/2/4/8 bytes, either byte order; values come back as f32;
//! - dense link and attribute storage (`libver="latest"` groups with more than eight links,
//!   objects with more than eight attributes): a fractal heap indexed by a v2 B-tree, see
//!   `dense.rs`;
//! - scalar string attributes, fixed length or variable length (global heap `GCOL`).
//!
//! Refused with an error: chunked (hence compressed) and virtual storage, external data files,
//! huge objects or filters in a fractal heap, shared (committed) datatypes,
//! compound/array/enum/reference types, soft and external links, and unknown messages flagged
//! "must understand". A contiguous dataset whose storage was never written (undefined address)
//! is an error unless it has no elements: its fill value is not synthesized.
//!
//! The input is untrusted: every read is bounds-checked, every declared size is checked against
//! the bytes actually present before anything is allocated for it, and every walk (B-tree depth,
//! continuation blocks, revisited addresses, member counts) is bounded, so any byte string gives
//! `Ok` or `Err`, never a panic, a hang or a huge allocation.
//!
//! ```no_run
//! # fn main() -> Result<(), String> {
//! let bytes = std::fs::read("model.weights.h5").map_err(|e| e.to_string())?;
//! let file = sinter::io::hdf5::File::parse(&bytes)?;
//! for layer in file.members("layers")? {
//!     let vars = format!("layers/{layer}/vars");
//!     let name = file.attr_string(&vars, "name")?;
//!     let kernel = file.dataset(&format!("{vars}/0"))?;
//!     println!("{layer} {name:?} {:?}", kernel.map(|k| k.shape));
//! }
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::fmt;

mod dense;

type Res<T> = Result<T, String>;

/// The undefined address (all bits set), normalized to this width whatever the offset size.
const UNDEF: u64 = u64::MAX;
const SIGNATURE: [u8; 8] = [0x89, b'H', b'D', b'F', b'\r', b'\n', 0x1a, b'\n'];
const MAX_RANK: usize = 32;
const MAX_BTREE_DEPTH: usize = 32;
const MAX_CONTINUATIONS: usize = 1024;
const MAX_MESSAGES: usize = 1 << 16;
const MAX_NODES: usize = 1 << 16;
const MAX_MEMBERS: usize = 1 << 20;
/// Total bytes of member names one group listing may hold (names can be shared heap strings,
/// so the file size alone does not bound them).
const MAX_NAME_BYTES: usize = 1 << 26;

// Header message types used here (HDF5 file format spec, section IV.A.2).
const MSG_DATASPACE: u16 = 0x0001;
const MSG_LINK_INFO: u16 = 0x0002;
const MSG_DATATYPE: u16 = 0x0003;
const MSG_LINK: u16 = 0x0006;
const MSG_EXTERNAL: u16 = 0x0007;
const MSG_LAYOUT: u16 = 0x0008;
const MSG_ATTRIBUTE: u16 = 0x000C;
const MSG_CONTINUATION: u16 = 0x0010;
const MSG_SYMBOL_TABLE: u16 = 0x0011;
const MSG_ATTRIBUTE_INFO: u16 = 0x0015;
/// Types 0x00..=0x18 are all defined by the spec; the ones not listed above carry nothing a
/// reader of values needs (fill value, times, filters, comments, ...).
const MSG_LAST_KNOWN: u16 = 0x0018;
/// Message flag: "shared" - the body is a reference to a message stored elsewhere.
const FLAG_SHARED: u8 = 0x02;
/// Message flag: fail to open the object if the message type is unknown.
const FLAG_MUST_UNDERSTAND: u8 = 0x80;

/// A parsed HDF5 file borrowed from bytes.
#[derive(Clone, Copy)]
pub struct File<'a> {
    bytes: &'a [u8],
    /// File offset of address 0: where the signature is (after any user block).
    base: usize,
    version: u8,
    offset_size: u8,
    length_size: u8,
    root: u64,
}

/// A dataset read as f32 (row-major, C order).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Dimensions, outermost first; empty for a scalar.
    pub shape: Vec<usize>,
    /// The elements in C order, converted to f32 (f64 and large integers rounded).
    pub data: Vec<f32>,
}

impl fmt::Debug for File<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("len", &self.bytes.len())
            .field("superblock_version", &self.version)
            .field("root", &self.root)
            .finish()
    }
}

/// A bounds-checked little-endian reader over one structure; errors name the structure and its
/// address.
#[derive(Clone)]
struct Cur<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
    at: u64,
}

impl<'a> Cur<'a> {
    fn new(buf: &'a [u8], what: &'static str, at: u64) -> Self {
        Cur {
            buf,
            pos: 0,
            what,
            at,
        }
    }

    fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn err(&self, msg: impl fmt::Display) -> String {
        format!("{} at {:#x}: {msg}", self.what, self.at)
    }

    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let left = self.left();
        if n > left {
            return Err(self.err(format_args!("truncated (need {n} bytes, {left} left)")));
        }
        let s = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or_else(|| self.err("truncated"))?;
        self.pos += n;
        Ok(s)
    }

    fn take_u64(&mut self, n: u64) -> Res<&'a [u8]> {
        match usize::try_from(n) {
            Ok(n) => self.take(n),
            Err(_) => Err(self.err(format_args!("size {n} does not fit in memory"))),
        }
    }

    fn skip(&mut self, n: usize) -> Res<()> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Res<u8> {
        Ok(self.uint(1)? as u8)
    }

    fn u16(&mut self) -> Res<u16> {
        Ok(self.uint(2)? as u16)
    }

    fn u32(&mut self) -> Res<u32> {
        Ok(self.uint(4)? as u32)
    }

    /// An unsigned little-endian integer of 1..=8 bytes.
    fn uint(&mut self, size: u8) -> Res<u64> {
        if !(1..=8).contains(&size) {
            return Err(self.err(format_args!("integer of {size} bytes")));
        }
        let b = self.take(usize::from(size))?;
        Ok(b.iter().rev().fold(0, |acc, &x| (acc << 8) | u64::from(x)))
    }

    fn signature(&mut self, sig: &[u8; 4]) -> Res<()> {
        let got = self.take(4)?;
        if got != sig {
            return Err(self.err(format_args!(
                "bad signature {:?}, expected {:?}",
                String::from_utf8_lossy(got),
                String::from_utf8_lossy(sig)
            )));
        }
        Ok(())
    }

    /// The next `n` bytes as their own cursor.
    fn sub(&mut self, n: usize, what: &'static str, at: u64) -> Res<Cur<'a>> {
        Ok(Cur::new(self.take(n)?, what, at))
    }

    fn rest(&mut self) -> &'a [u8] {
        let s = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        s
    }
}

/// One header message: its type, flags and body.
#[derive(Clone, Copy)]
struct Msg<'a> {
    kind: u16,
    flags: u8,
    data: &'a [u8],
    /// Address of the body, for error messages (and tests that patch files).
    at: u64,
}

/// Where a link points.
enum Target {
    Object(u64),
    Soft,
    External,
}

enum Space {
    Null,
    Dims(Vec<u64>),
}

#[derive(Clone, Copy, Debug)]
enum NumKind {
    Float,
    Int { signed: bool },
}

#[derive(Clone, Copy, Debug)]
struct Num {
    kind: NumKind,
    size: usize,
    big_endian: bool,
}

enum Dtype {
    Num(Num),
    FixedStr { size: usize, pad: u8 },
    VlenStr,
    Other(String),
}

enum Layout<'a> {
    Compact(&'a [u8]),
    Contiguous { addr: u64, size: Option<u64> },
    Chunked,
    Virtual,
}

struct Attr<'a> {
    name: &'a [u8],
    dtype: &'a [u8],
    space: &'a [u8],
    data: &'a [u8],
    at: u64,
}

struct LocalHeap<'a> {
    data: &'a [u8],
    at: u64,
}

/// Bounds shared by one walk of a group's B-tree.
struct Walk {
    seen: HashSet<u64>,
    out: Vec<(String, Target)>,
    name_bytes: usize,
    /// B-tree child pointers followed so far; overlapping nodes could otherwise make the walk
    /// quadratic in the file size.
    children: usize,
}

impl Walk {
    fn push(&mut self, name: String, target: Target) -> Res<()> {
        // HDF5 forbids these, and a path could never name such a member.
        if name.is_empty() || name.contains('/') {
            return Err(format!("invalid link name {name:?}"));
        }
        self.name_bytes = self.name_bytes.saturating_add(name.len());
        if self.out.len() >= MAX_MEMBERS || self.name_bytes > MAX_NAME_BYTES {
            return Err(format!(
                "group has more than {MAX_MEMBERS} members or {MAX_NAME_BYTES} bytes of names"
            ));
        }
        self.out.push((name, target));
        Ok(())
    }
}

fn show(path: &str) -> &str {
    if path.trim_matches('/').is_empty() {
        "/"
    } else {
        path
    }
}

fn padded8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Number of elements, or an error if the product overflows. Any zero dimension makes it 0.
fn element_count(dims: &[u64]) -> Res<u64> {
    if dims.contains(&0) {
        return Ok(0);
    }
    dims.iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("dataspace {dims:?} has too many elements"))
}

/// IEEE 754 binary16 -> binary32, exact (subnormals, infinities and NaN payloads included).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    match exp {
        0 => {
            // Subnormal or zero: man * 2^-24, exact in f32.
            let v = man as f32 * (1.0 / 16_777_216.0);
            if sign != 0 { -v } else { v }
        }
        31 => f32::from_bits(sign | 0x7f80_0000 | (man << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (man << 13)),
    }
}

impl Num {
    fn convert(&self, b: &[u8]) -> f32 {
        let v = if self.big_endian {
            b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
        } else {
            b.iter()
                .rev()
                .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
        };
        match (self.kind, self.size) {
            (NumKind::Float, 2) => f16_to_f32(v as u16),
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
    /// Checks the signature and superblock.
    pub fn parse(bytes: &'a [u8]) -> Result<File<'a>, String> {
        // The superblock sits at 0, or after a user block at 512, 1024, 2048, ...
        let mut base = 0usize;
        while bytes.get(base..base.saturating_add(8)) != Some(&SIGNATURE[..]) {
            base = if base == 0 {
                512
            } else {
                base.saturating_mul(2)
            };
            if base >= bytes.len() {
                return Err("not an HDF5 file (no signature)".into());
            }
        }
        let mut c = Cur::new(bytes.get(base..).unwrap_or(&[]), "superblock", 0);
        c.skip(8)?;
        let version = c.u8()?;
        let mut file = File {
            bytes,
            base,
            version,
            offset_size: 8,
            length_size: 8,
            root: UNDEF,
        };
        match version {
            0 | 1 => {
                // Free-space, root group symbol table and shared header versions, reserved.
                c.skip(4)?;
                let (o, l) = (c.u8()?, c.u8()?);
                file.set_sizes(&c, o, l)?;
                c.skip(1)?;
                // Group leaf/internal node K, consistency flags.
                c.skip(8)?;
                if version == 1 {
                    // Indexed storage internal node K, reserved.
                    c.skip(4)?;
                }
                // Base, free-space info, end-of-file and driver info addresses.
                for _ in 0..4 {
                    file.addr(&mut c)?;
                }
                // Root group symbol table entry: link name offset, object header address, ...
                file.addr(&mut c)?;
                file.root = file.addr(&mut c)?;
                c.skip(8 + 16)?;
            }
            2 | 3 => {
                let (o, l) = (c.u8()?, c.u8()?);
                file.set_sizes(&c, o, l)?;
                // Flags; base, superblock extension and end-of-file addresses.
                c.skip(1)?;
                for _ in 0..3 {
                    file.addr(&mut c)?;
                }
                file.root = file.addr(&mut c)?;
                c.skip(4)?;
            }
            v => return Err(format!("superblock version {v} is not supported")),
        }
        if file.root == UNDEF {
            return Err("superblock: undefined root group address".into());
        }
        Ok(file)
    }

    fn set_sizes(&mut self, c: &Cur<'_>, offsets: u8, lengths: u8) -> Res<()> {
        for size in [offsets, lengths] {
            if !matches!(size, 2 | 4 | 8) {
                return Err(c.err(format_args!(
                    "offset/length size {size} is not supported (2, 4 or 8)"
                )));
            }
        }
        self.offset_size = offsets;
        self.length_size = lengths;
        Ok(())
    }

    /// An address field; all ones (undefined) becomes [`UNDEF`].
    fn addr(&self, c: &mut Cur<'_>) -> Res<u64> {
        let v = c.uint(self.offset_size)?;
        let ones = u64::MAX >> (64 - 8 * u32::from(self.offset_size));
        Ok(if v == ones { UNDEF } else { v })
    }

    fn length(&self, c: &mut Cur<'_>) -> Res<u64> {
        c.uint(self.length_size)
    }

    /// A cursor from `addr` to the end of the file.
    fn at(&self, addr: u64, what: &'static str) -> Res<Cur<'a>> {
        let start = self.offset_of(addr, what)?;
        match self.bytes.get(start..) {
            Some(s) if !s.is_empty() => Ok(Cur::new(s, what, addr)),
            _ => Err(format!(
                "{what} at {addr:#x}: beyond the end of the file ({} bytes)",
                self.bytes.len()
            )),
        }
    }

    /// Exactly `len` bytes at `addr`, or an error if they are not all in the file.
    fn range(&self, addr: u64, len: u64, what: &'static str) -> Res<&'a [u8]> {
        let start = self.offset_of(addr, what)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| start.checked_add(len));
        end.and_then(|end| self.bytes.get(start..end))
            .ok_or_else(|| {
                format!(
                    "{what} at {addr:#x}: {len} bytes do not fit in the file ({} bytes)",
                    self.bytes.len()
                )
            })
    }

    fn offset_of(&self, addr: u64, what: &'static str) -> Res<usize> {
        if addr == UNDEF {
            return Err(format!("{what}: undefined address"));
        }
        usize::try_from(addr)
            .ok()
            .and_then(|a| a.checked_add(self.base))
            .ok_or_else(|| format!("{what} at {addr:#x}: address out of range"))
    }

    /// All messages of the object header at `addr`, continuation blocks followed.
    fn header(&self, addr: u64) -> Res<Vec<Msg<'a>>> {
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

    /// The links of the group whose header messages are `msgs`, or None if it is not a group.
    fn links(&self, msgs: &[Msg<'a>]) -> Res<Option<Vec<(String, Target)>>> {
        if let Some(m) = msgs.iter().find(|m| m.kind == MSG_SYMBOL_TABLE) {
            let mut c = Cur::new(m.data, "symbol table message", m.at);
            let btree = self.addr(&mut c)?;
            let heap = self.local_heap(self.addr(&mut c)?)?;
            let mut walk = Walk {
                seen: HashSet::new(),
                out: Vec::new(),
                name_bytes: 0,
                children: 0,
            };
            self.group_btree(btree, &heap, &mut walk, 0, None)?;
            return Ok(Some(walk.out));
        }
        let mut walk = Walk {
            seen: HashSet::new(),
            out: Vec::new(),
            name_bytes: 0,
            children: 0,
        };
        let info = msgs.iter().find(|m| m.kind == MSG_LINK_INFO);
        if let Some(m) = info {
            let mut c = Cur::new(m.data, "link info message", m.at);
            c.skip(1)?;
            let flags = c.u8()?;
            if flags & 1 != 0 {
                c.skip(8)?; // maximum creation index
            }
            let heap = self.addr(&mut c)?;
            if heap != UNDEF {
                // Dense storage: link messages in a fractal heap, indexed by name.
                let names = self.addr(&mut c)?;
                let heap = self.fractal_heap(heap)?;
                self.btree2_records(names, dense::LINK_NAMES, &mut |rec| {
                    // Name hash, then the heap ID.
                    let id = rec.get(4..).filter(|id| id.len() >= heap.id_len);
                    let id = id.ok_or_else(|| format!("link name record {rec:02x?} too short"))?;
                    let data = self.heap_object(&heap, id)?;
                    let m = Msg {
                        kind: MSG_LINK,
                        flags: 0,
                        data,
                        at: m.at,
                    };
                    let (name, target) = self.link(&m)?;
                    walk.push(name, target)
                })?;
            }
        }
        for m in msgs.iter().filter(|m| m.kind == MSG_LINK) {
            let (name, target) = self.link(m)?;
            walk.push(name, target)?;
        }
        if info.is_none() && walk.out.is_empty() {
            return Ok(None);
        }
        Ok(Some(walk.out))
    }

    fn link(&self, m: &Msg<'a>) -> Res<(String, Target)> {
        let mut c = Cur::new(m.data, "link message", m.at);
        let version = c.u8()?;
        if version != 1 {
            return Err(c.err(format_args!("link message version {version}")));
        }
        let flags = c.u8()?;
        let kind = if flags & 0x08 != 0 { c.u8()? } else { 0 };
        if flags & 0x04 != 0 {
            c.skip(8)?; // creation order
        }
        if flags & 0x10 != 0 {
            c.skip(1)?; // name character set
        }
        let name_len = c.uint(1 << (flags & 3))?;
        let name = String::from_utf8_lossy(c.take_u64(name_len)?).into_owned();
        let target = match kind {
            0 => Target::Object(self.addr(&mut c)?),
            1 => Target::Soft,
            _ => Target::External,
        };
        Ok((name, target))
    }

    fn local_heap(&self, addr: u64) -> Res<LocalHeap<'a>> {
        let mut c = self.at(addr, "local heap")?;
        c.signature(b"HEAP")?;
        let version = c.u8()?;
        if version != 0 {
            return Err(c.err(format_args!("local heap version {version}")));
        }
        c.skip(3)?;
        let size = self.length(&mut c)?;
        self.length(&mut c)?; // free list head
        let at = self.addr(&mut c)?;
        let data = self.range(at, size, "local heap data")?;
        Ok(LocalHeap { data, at })
    }

    /// Walks a version-1 B-tree of group nodes; children sit exactly one level lower, so the
    /// walk ends, and `walk.seen` stops a node being read twice (a DAG would blow up otherwise).
    fn group_btree(
        &self,
        addr: u64,
        heap: &LocalHeap<'a>,
        walk: &mut Walk,
        depth: usize,
        level: Option<u8>,
    ) -> Res<()> {
        let mut c = self.at(addr, "B-tree node")?;
        if depth > MAX_BTREE_DEPTH {
            return Err(c.err(format_args!("deeper than {MAX_BTREE_DEPTH} levels")));
        }
        if !walk.seen.insert(addr) || walk.seen.len() > MAX_NODES {
            return Err(c.err("node visited twice or too many nodes (cycle?)"));
        }
        c.signature(b"TREE")?;
        let kind = c.u8()?;
        if kind != 0 {
            return Err(c.err(format_args!("node type {kind}, expected 0 (group)")));
        }
        let node_level = c.u8()?;
        if level.is_some_and(|l| l != node_level) {
            return Err(c.err(format_args!(
                "node level {node_level}, expected {}",
                level.unwrap_or(0)
            )));
        }
        let entries = c.u16()?;
        self.addr(&mut c)?; // left sibling
        self.addr(&mut c)?; // right sibling
        walk.children = walk.children.saturating_add(usize::from(entries));
        if walk.children > MAX_MEMBERS {
            return Err(c.err(format_args!(
                "more than {MAX_MEMBERS} B-tree entries in one group"
            )));
        }
        let mut children = Vec::new();
        for _ in 0..entries {
            self.length(&mut c)?; // key: heap offset of the largest name in the child
            children.push(self.addr(&mut c)?);
        }
        for child in children {
            if node_level == 0 {
                self.symbol_node(child, heap, walk)?;
            } else {
                self.group_btree(child, heap, walk, depth + 1, Some(node_level - 1))?;
            }
        }
        Ok(())
    }

    fn symbol_node(&self, addr: u64, heap: &LocalHeap<'a>, walk: &mut Walk) -> Res<()> {
        let mut c = self.at(addr, "symbol table node")?;
        if !walk.seen.insert(addr) || walk.seen.len() > MAX_NODES {
            return Err(c.err("node visited twice or too many nodes (cycle?)"));
        }
        c.signature(b"SNOD")?;
        let version = c.u8()?;
        if version != 1 {
            return Err(c.err(format_args!("symbol table node version {version}")));
        }
        c.skip(1)?;
        let count = c.u16()?;
        for _ in 0..count {
            let name_offset = c.uint(self.offset_size)?;
            let object = self.addr(&mut c)?;
            let cache = c.u32()?;
            c.skip(4 + 16)?;
            let name = heap.name(name_offset)?;
            let target = if cache == 2 {
                Target::Soft
            } else {
                Target::Object(object)
            };
            walk.push(name, target).map_err(|e| c.err(e))?;
        }
        Ok(())
    }

    /// Follows `path` from the root; None if some component does not exist.
    fn resolve(&self, path: &str) -> Res<Option<u64>> {
        let mut addr = self.root;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let msgs = self.header(addr)?;
            let Some(links) = self.links(&msgs)? else {
                return Ok(None);
            };
            match links.into_iter().find(|(name, _)| name == part) {
                None => return Ok(None),
                Some((_, Target::Object(a))) => addr = a,
                Some((_, Target::Soft)) => {
                    return Err(format!("{part} is a soft link (not supported)"));
                }
                Some((_, Target::External)) => {
                    return Err(format!("{part} is an external link (not supported)"));
                }
            }
        }
        Ok(Some(addr))
    }

    /// Names of the members of the group at `path` ("/" or "" is the root; "layers/dense/vars"), sorted.
    /// Err if path missing or not a group.
    pub fn members(&self, path: &str) -> Result<Vec<String>, String> {
        let ctx = |e: String| format!("group {}: {e}", show(path));
        let addr = self
            .resolve(path)
            .map_err(ctx)?
            .ok_or_else(|| ctx("no such object".into()))?;
        let msgs = self.header(addr).map_err(ctx)?;
        let links = self
            .links(&msgs)
            .map_err(ctx)?
            .ok_or_else(|| ctx("not a group".into()))?;
        let mut names: Vec<String> = links.into_iter().map(|(name, _)| name).collect();
        names.sort();
        Ok(names)
    }

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

    fn dataspace(&self, data: &'a [u8], at: u64) -> Res<Space> {
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

impl LocalHeap<'_> {
    /// The NUL-terminated name at `offset` in the heap's data segment.
    fn name(&self, offset: u64) -> Res<String> {
        let bad = || {
            format!(
                "local heap data at {:#x}: no name at offset {offset}",
                self.at
            )
        };
        let rest = usize::try_from(offset)
            .ok()
            .and_then(|o| self.data.get(o..))
            .ok_or_else(bad)?;
        let end = rest.iter().position(|&b| b == 0).ok_or_else(bad)?;
        Ok(String::from_utf8_lossy(rest.get(..end).unwrap_or(&[])).into_owned())
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

fn datatype(data: &[u8], at: u64) -> Res<Dtype> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/hdf5/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn values(f: &File<'_>, path: &str) -> (Vec<usize>, Vec<f32>) {
        let d = f
            .dataset(path)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("{path}: missing"));
        assert_eq!(
            d.data.len(),
            d.shape.iter().product::<usize>(),
            "{path}: data length vs shape"
        );
        (d.shape, d.data)
    }

    fn ramp(n: usize, scale: f64, offset: f64) -> Vec<f32> {
        (0..n).map(|i| (i as f64 * scale + offset) as f32).collect()
    }

    fn err(r: Result<impl fmt::Debug, String>) -> String {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e,
        }
    }

    /// The address of the first message of `kind` in the header of the object at `path`.
    fn message_at(f: &File<'_>, path: &str, kind: u16) -> usize {
        assert_eq!(f.base, 0);
        let addr = f.resolve(path).unwrap().unwrap();
        let msgs = f.header(addr).unwrap();
        let m = msgs.iter().find(|m| m.kind == kind).unwrap();
        m.at as usize
    }

    fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
        bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn groups_and_members() {
        let bytes = fixture("basic.h5");
        let f = File::parse(&bytes).unwrap();
        assert_eq!(f.version, 0);
        assert_eq!(f.members("/").unwrap(), ["a", "data", "layers"]);
        assert_eq!(f.members("").unwrap(), f.members("/").unwrap());
        assert_eq!(f.members("a/b").unwrap(), ["c"]);
        assert_eq!(f.members("/a/b/c/").unwrap(), ["leaf"]);
        assert_eq!(
            f.members("data").unwrap(),
            [
                "compact",
                "empty",
                "empty2",
                "f16",
                "f32be",
                "f64",
                "f64be",
                "i32",
                "i64be",
                "r1",
                "r2",
                "r3",
                "scalar",
                "text",
                "u8",
                "unwritten"
            ]
        );
        assert_eq!(
            f.members("layers/dense/vars").unwrap(),
            Vec::<String>::new()
        );
        assert!(err(f.members("nope")).contains("no such object"));
        assert_eq!(err(f.members("data/r1")), "group data/r1: not a group");
        assert_eq!(values(&f, "a/b/c/leaf"), (vec![2], vec![1.5, -2.5]));
    }

    #[test]
    fn float_datasets() {
        let bytes = fixture("basic.h5");
        let f = File::parse(&bytes).unwrap();
        assert_eq!(values(&f, "data/scalar"), (vec![], vec![3.25]));
        assert_eq!(values(&f, "/data/r1"), (vec![7], ramp(7, 0.25, -1.0)));
        assert_eq!(values(&f, "data/r2"), (vec![3, 4], ramp(12, 0.25, -1.0)));
        assert_eq!(values(&f, "data/r3"), (vec![2, 3, 4], ramp(24, 0.5, -1.0)));
        assert_eq!(values(&f, "data/f64"), (vec![5], ramp(5, 0.1, -1.0)));
        assert_eq!(values(&f, "data/f32be"), (vec![2, 2], ramp(4, 0.25, -1.0)));
        assert_eq!(values(&f, "data/f64be"), (vec![3], ramp(3, 0.25, -1.0)));
        assert_eq!(values(&f, "data/compact"), (vec![2, 3], ramp(6, 1.0, 10.0)));
        let (shape, half) = values(&f, "data/f16");
        assert_eq!(shape, [8]);
        let want = [
            0.5,
            -1.0,
            65504.0,
            2f32.powi(-14),
            2f32.powi(-24),
            0.0,
            -0.0,
            0.333_251_95,
        ];
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&half), bits(&want));
    }

    #[test]
    fn f16_special_values() {
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x3c01), 1.0 + 2f32.powi(-10));
    }

    #[test]
    fn integer_and_empty_datasets() {
        let bytes = fixture("basic.h5");
        let f = File::parse(&bytes).unwrap();
        assert_eq!(
            values(&f, "data/i32"),
            (vec![4], vec![-3.0, 0.0, 7.0, 1_048_576.0])
        );
        assert_eq!(values(&f, "data/u8"), (vec![3], vec![0.0, 1.0, 255.0]));
        assert_eq!(values(&f, "data/i64be"), (vec![2], vec![-5.0, 9.0]));
        assert_eq!(values(&f, "data/empty"), (vec![0], vec![]));
        assert_eq!(values(&f, "data/empty2"), (vec![3, 0], vec![]));
    }

    #[test]
    fn dataset_errors() {
        let bytes = fixture("basic.h5");
        let f = File::parse(&bytes).unwrap();
        assert_eq!(f.dataset("nope"), Ok(None));
        assert_eq!(f.dataset("data/nope"), Ok(None));
        assert_eq!(f.dataset("data/nope/deeper"), Ok(None));
        assert_eq!(f.dataset("data/r1/below_a_dataset"), Ok(None));
        assert_eq!(
            err(f.dataset("data")),
            "dataset data: is a group, not a dataset"
        );
        assert_eq!(err(f.dataset("/")), "dataset /: is a group, not a dataset");
        assert_eq!(
            err(f.dataset("data/text")),
            "dataset data/text: datatype is a string, not numeric"
        );
        assert_eq!(
            err(f.dataset("data/unwritten")),
            "dataset data/unwritten: storage was never written (undefined address)"
        );
        let bytes = fixture("chunked.h5");
        let f = File::parse(&bytes).unwrap();
        assert_eq!(
            err(f.dataset("chunked")),
            "dataset chunked: chunked storage is not supported"
        );
    }

    #[test]
    fn string_attributes() {
        let bytes = fixture("basic.h5");
        let f = File::parse(&bytes).unwrap();
        let attr = |path: &str, name: &str| f.attr_string(path, name);
        assert_eq!(attr("/", "title"), Ok(Some("fixture root".into())));
        assert_eq!(attr("", "vlen_title"), Ok(Some("variable root".into())));
        assert_eq!(attr("/", "missing"), Ok(None));
        assert_eq!(
            err(attr("/", "answer")),
            "attribute answer of /: numeric, not a string"
        );
        assert_eq!(attr("a/b/c", "name"), Ok(Some("deep group".into())));
        assert_eq!(attr("a/b/c/leaf", "name"), Ok(None));
        assert_eq!(attr("layers/dense/vars", "name"), Ok(Some("dense".into())));
        assert_eq!(
            attr("layers/dense/vars", "fixed_name"),
            Ok(Some("dense_fixed".into()))
        );
        assert!(err(attr("nope", "name")).contains("no such object"));
    }

    #[test]
    fn many_members_multilevel_btree_superblock_v1() {
        let bytes = fixture("many.h5");
        let f = File::parse(&bytes).unwrap();
        assert_eq!(f.version, 1);
        let want: Vec<String> = (0..100).map(|i| format!("m{i:03}")).collect();
        assert_eq!(f.members("many").unwrap(), want);
        // Members are hard links to the datasets m000, m025, m050, m075.
        for i in [0, 1, 24, 25, 37, 50, 99] {
            let path = format!("many/m{i:03}");
            assert_eq!(values(&f, &path), (vec![1], vec![(i / 25 * 25) as f32]));
        }
        // The group B-tree has internal nodes.
        let btree = {
            let at = message_at(&f, "many", MSG_SYMBOL_TABLE);
            u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize
        };
        assert_eq!(&bytes[btree..btree + 4], b"TREE");
        assert!(bytes[btree + 5] >= 2, "root level {}", bytes[btree + 5]);
    }

    #[test]
    fn superblock_v3_object_header_v2() {
        let bytes = fixture("latest.h5");
        let f = File::parse(&bytes).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.members("/").unwrap(), ["g"]);
        assert_eq!(f.members("g").unwrap(), ["x"]);
        assert_eq!(values(&f, "g/x"), (vec![2, 3], ramp(6, 0.25, -1.0)));
        assert_eq!(f.attr_string("/", "title"), Ok(Some("latest root".into())));
        assert_eq!(f.dataset("g/y"), Ok(None));
    }

    /// The addresses a link or attribute info message of the object at `path` holds: the
    /// fractal heap and the name index B-tree.
    fn dense_addrs(f: &File<'_>, path: &str, kind: u16) -> (u64, u64) {
        let addr = f.resolve(path).unwrap().unwrap();
        let msgs = f.header(addr).unwrap();
        let m = msgs.iter().find(|m| m.kind == kind).unwrap();
        let mut c = Cur::new(m.data, "info", m.at);
        c.skip(1).unwrap();
        let flags = c.u8().unwrap();
        let extra = match (kind, flags & 1) {
            (_, 0) => 0,
            (MSG_LINK_INFO, _) => 8,
            _ => 2,
        };
        c.skip(extra).unwrap();
        (f.addr(&mut c).unwrap(), f.addr(&mut c).unwrap())
    }

    #[test]
    fn dense_links_and_attributes() {
        let bytes = fixture("dense.h5");
        let f = File::parse(&bytes).unwrap();
        let want: Vec<String> = (0..200).map(|i| format!("m{i:03}")).collect();
        assert_eq!(f.members("wide").unwrap(), want);
        assert_eq!(f.members("/").unwrap(), ["attrs", "wide"]);
        // Members are hard links to the datasets m000, m050, m100, m150.
        for i in [0, 1, 49, 50, 123, 199] {
            let path = format!("wide/m{i:03}");
            assert_eq!(values(&f, &path), (vec![1], vec![(i / 50 * 50) as f32]));
        }
        // The storage really is dense, with an indirect root block and a two-level index.
        let (heap, btree) = dense_addrs(&f, "wide", MSG_LINK_INFO);
        let (heap, btree) = (heap as usize, btree as usize);
        assert_eq!(&bytes[heap..heap + 4], b"FRHP");
        assert_eq!(&bytes[btree..btree + 4], b"BTHD");
        assert!(bytes[btree + 12] >= 1, "B-tree depth {}", bytes[btree + 12]);
        let h = f.fractal_heap(heap as u64).unwrap();
        assert!(h.root_rows > 0, "root is a direct block");

        for i in 0..20 {
            let got = f.attr_string("attrs", &format!("s{i:02}"));
            assert_eq!(got, Ok(Some(format!("value {i}"))));
        }
        assert_eq!(
            f.attr_string("attrs", "fixed"),
            Ok(Some("fixed-len".into()))
        );
        assert_eq!(
            f.attr_strings("attrs", "list"),
            Ok(Some(vec!["a".into(), "bc".into()]))
        );
        assert_eq!(
            f.attr_strings("attrs", "vlist"),
            Ok(Some(vec!["x".into(), "yz".into()]))
        );
        assert!(err(f.attr_string("attrs", "number")).contains("numeric, not a string"));
        assert_eq!(f.attr_string("attrs", "missing"), Ok(None));
        let (heap, btree) = dense_addrs(&f, "attrs", MSG_ATTRIBUTE_INFO);
        assert_eq!(&bytes[heap as usize..heap as usize + 4], b"FRHP");
        assert_eq!(&bytes[btree as usize..btree as usize + 4], b"BTHD");
    }

    #[test]
    fn fractal_heap_ids_are_checked() {
        let bytes = fixture("dense.h5");
        let f = File::parse(&bytes).unwrap();
        let h = f
            .fractal_heap(dense_addrs(&f, "wide", MSG_LINK_INFO).0)
            .unwrap();
        // Tiny objects live in the ID itself.
        assert_eq!(
            f.heap_object(&h, &[0x22, b'a', b'b', b'c', 0, 0, 0]),
            Ok(&b"abc"[..])
        );
        let e = err(f.heap_object(&h, &[0x2f, 1, 2, 3, 4, 5, 6]));
        assert!(e.contains("tiny object of 16 bytes overruns the ID"), "{e}");
        assert!(err(f.heap_object(&h, &[0x10, 0, 0, 0, 0, 0, 0])).contains("huge objects"));
        assert!(err(f.heap_object(&h, &[0x40, 0, 0, 0, 0, 0, 0])).contains("ID version 1"));
        assert!(err(f.heap_object(&h, &[])).contains("empty"));
        // Managed: offsets past the managed space, and zero lengths, are refused.
        let e = err(f.heap_object(&h, &[0, 0xff, 0xff, 0xff, 0x7f, 8, 0]));
        assert!(e.contains("outside the"), "{e}");
        assert!(err(f.heap_object(&h, &[0, 20, 0, 0, 0, 0, 0])).contains("outside the"));
        // An offset inside a block's header is not an object.
        let e = err(f.heap_object(&h, &[0, 1, 0, 0, 0, 4, 0]));
        assert!(e.contains("does not fit its"), "{e}");
    }

    #[test]
    fn keras_weights_match_h5py() {
        let bytes = fixture("keras_tiny.weights.h5");
        let json = String::from_utf8(fixture("keras_tiny.json")).unwrap();
        let expected: serde_json::Value = serde_json::from_str(&json).unwrap();
        let expected = expected.as_object().unwrap();
        let f = File::parse(&bytes).unwrap();
        assert_eq!(f.members("/").unwrap(), ["layers", "vars"]);
        assert_eq!(f.members("layers").unwrap(), ["dense", "dense_1"]);
        assert_eq!(f.members("layers/dense").unwrap(), ["vars"]);
        assert_eq!(f.members("layers/dense/vars").unwrap(), ["0", "1"]);
        assert_eq!(f.members("vars").unwrap(), Vec::<String>::new());
        assert_eq!(f.attr_string("vars", "name"), Ok(Some("sequential".into())));
        assert_eq!(
            f.attr_string("layers/dense_1/vars", "name"),
            Ok(Some("dense_1".into()))
        );
        assert_eq!(expected.len(), 4);
        for (path, want) in expected {
            let shape: Vec<usize> = want["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let data: Vec<f32> = want["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(values(&f, path), (shape, data), "{path}");
        }
    }

    #[test]
    fn rejects_what_it_does_not_read() {
        assert!(err(File::parse(b"")).contains("not an HDF5 file"));
        assert!(err(File::parse(b"\x89HDF\r\n\x1a\n")).contains("superblock"));
        let mut bytes = fixture("basic.h5");
        bytes[8] = 4;
        assert_eq!(
            err(File::parse(&bytes)),
            "superblock version 4 is not supported"
        );
        // A 1 KiB user block in front: addresses are relative to the signature.
        let mut shifted = vec![0u8; 1024];
        shifted.extend_from_slice(&fixture("keras_tiny.weights.h5"));
        let f = File::parse(&shifted).unwrap();
        assert_eq!(f.members("layers").unwrap(), ["dense", "dense_1"]);
        assert_eq!(values(&f, "layers/dense/vars/1").0, [3]);
    }

    /// Reads everything reachable, ignoring errors; only panics and hangs fail. `budget` caps
    /// the calls: a corrupt hard link back to an ancestor makes the tree infinite.
    fn walk(f: &File<'_>, path: &str, depth: usize, budget: &mut usize) {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let _ = f.dataset(path);
        let _ = f.attr_string(path, "name");
        if depth < 6
            && let Ok(members) = f.members(path)
        {
            for m in members.iter().take(64) {
                walk(f, &format!("{path}/{m}"), depth + 1, budget);
            }
        }
    }

    fn parse_and_walk(bytes: &[u8]) {
        if let Ok(f) = File::parse(bytes) {
            walk(&f, "", 0, &mut 400);
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for name in ["keras_tiny.weights.h5", "latest.h5"] {
            let bytes = fixture(name);
            for len in 0..bytes.len() {
                parse_and_walk(&bytes[..len]);
            }
        }
        // The superblock itself cut short.
        let bytes = fixture("keras_tiny.weights.h5");
        assert_eq!(
            err(File::parse(&bytes[..60])),
            "superblock at 0x0: truncated (need 8 bytes, 4 left)"
        );
    }

    #[test]
    fn every_single_byte_corruption_is_survived() {
        for name in ["keras_tiny.weights.h5", "latest.h5"] {
            let bytes = fixture(name);
            let mut bad = bytes.clone();
            for i in 0..bytes.len() {
                for v in [bytes[i] ^ 0xff, 0xff] {
                    bad[i] = v;
                    parse_and_walk(&bad);
                }
                bad[i] = bytes[i];
            }
        }
    }

    /// Dense storage: every truncation and single-byte corruption of the heap and B-tree
    /// area, read through the wide group and the attributes (a full walk would re-list 200
    /// links per member).
    #[test]
    fn dense_storage_corruption_is_survived() {
        let bytes = fixture("dense.h5");
        let read = |b: &[u8]| {
            if let Ok(f) = File::parse(b) {
                let _ = f.members("wide");
                let _ = f.dataset("wide/m123");
                for name in ["s00", "s19", "list", "missing"] {
                    let _ = f.attr_strings("attrs", name);
                }
            }
        };
        for len in 0..bytes.len() {
            read(&bytes[..len]);
        }
        let mut bad = bytes.clone();
        for i in 0..bytes.len() {
            for v in [bytes[i] ^ 0xff, 0xff, 0] {
                bad[i] = v;
                read(&bad);
            }
            bad[i] = bytes[i];
        }
    }

    #[test]
    fn huge_declared_dataspace_is_refused_without_allocating() {
        // 2^40 f32 elements would be a 4 TiB allocation: it would abort, not return Err.
        let mut bytes = fixture("keras_tiny.weights.h5");
        let f = File::parse(&bytes).unwrap();
        let space = message_at(&f, "layers/dense/vars/0", MSG_DATASPACE);
        put_u64(&mut bytes, space + 8, 1 << 40);
        let f = File::parse(&bytes).unwrap();
        let e = err(f.dataset("layers/dense/vars/0"));
        assert!(e.contains("contiguous storage of 60 bytes"), "{e}");
        // Storage size patched to match: still refused, the bytes are not in the file.
        let layout = message_at(&f, "layers/dense/vars/0", MSG_LAYOUT);
        put_u64(&mut bytes, layout + 10, (1 << 40) * 12);
        let f = File::parse(&bytes).unwrap();
        let e = err(f.dataset("layers/dense/vars/0"));
        assert!(e.contains("do not fit in the file"), "{e}");
        // Every dimension 2^40: the element count overflows u64.
        put_u64(&mut bytes, space + 16, 1 << 40);
        let f = File::parse(&bytes).unwrap();
        let e = err(f.dataset("layers/dense/vars/0"));
        assert!(e.contains("too many elements"), "{e}");
        // Compact storage: the size check is against the message body.
        let mut bytes = fixture("basic.h5");
        let f = File::parse(&bytes).unwrap();
        let space = message_at(&f, "data/compact", MSG_DATASPACE);
        put_u64(&mut bytes, space + 8, 1 << 40);
        let f = File::parse(&bytes).unwrap();
        let e = err(f.dataset("data/compact"));
        assert!(e.contains("compact data holds 24 bytes"), "{e}");
        // Rank above the limit.
        let mut bytes = fixture("basic.h5");
        bytes[space + 1] = 200;
        let f = File::parse(&bytes).unwrap();
        assert!(err(f.dataset("data/compact")).contains("rank 200 exceeds 32"));
    }

    #[test]
    fn self_referencing_btree_is_an_error() {
        let bytes = fixture("many.h5");
        let f = File::parse(&bytes).unwrap();
        let at = message_at(&f, "many", MSG_SYMBOL_TABLE);
        let root = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        // First child pointer: signature, type, level, entries, 2 siblings, key 0.
        let child0 = root as usize + 8 + 16 + 8;
        let child1 = child0 + 16;
        let mut looped = bytes.clone();
        put_u64(&mut looped, child0, root);
        let f = File::parse(&looped).unwrap();
        assert!(err(f.members("many")).contains("B-tree node"));
        // The same child twice (a DAG): refused too, so work stays linear in the file size.
        let mut shared = bytes.clone();
        shared.copy_within(child0..child0 + 8, child1);
        let f = File::parse(&shared).unwrap();
        assert!(err(f.members("many")).contains("visited twice"));
        // A node that claims to be its own level-0 child must not be read as a symbol node
        // forever either.
        let mut flat = looped.clone();
        flat[root as usize + 5] = 0;
        let f = File::parse(&flat).unwrap();
        assert!(f.members("many").is_err());
    }

    #[test]
    fn continuation_cycles_are_errors() {
        let bytes = fixture("keras_tiny.weights.h5");
        let f = File::parse(&bytes).unwrap();
        let header = f.resolve("vars").unwrap().unwrap() as usize;
        let cont = message_at(&f, "vars", MSG_CONTINUATION);
        // Continuation back to the header itself.
        let mut bad = bytes.clone();
        put_u64(&mut bad, cont, header as u64);
        let f = File::parse(&bad).unwrap();
        assert!(err(f.members("vars")).contains("visited twice"));
        // Continuation to a block that is just this very continuation message.
        let mut bad = bytes.clone();
        put_u64(&mut bad, cont, cont as u64 - 8);
        put_u64(&mut bad, cont + 8, 24);
        let f = File::parse(&bad).unwrap();
        let e = err(f.attr_string("vars", "name"));
        assert_eq!(
            e,
            format!(
                "attribute name of vars: object header at {header:#x}: continuation block at {:#x} visited twice",
                cont - 8
            )
        );
    }

    /// Random multi-byte corruptions of every fixture; run with `--ignored` for a longer soak.
    #[test]
    #[ignore]
    fn soak_random_corruptions() {
        let rounds: usize = std::env::var("HDF5_SOAK_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for name in [
            "basic.h5",
            "many.h5",
            "latest.h5",
            "chunked.h5",
            "dense.h5",
            "keras_tiny.weights.h5",
        ] {
            let bytes = fixture(name);
            for _ in 0..rounds {
                let mut bad = bytes.clone();
                for _ in 0..1 + next() % 8 {
                    let i = (next() % bad.len() as u64) as usize;
                    bad[i] = match next() % 4 {
                        0 => 0,
                        1 => 0xff,
                        _ => next() as u8,
                    };
                }
                parse_and_walk(&bad);
                let cut = (next() % bad.len() as u64) as usize;
                parse_and_walk(&bad[..cut]);
            }
        }
    }
}

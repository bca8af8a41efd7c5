//! Dense link and attribute storage: a fractal heap holding the link or attribute messages,
//! indexed by name in a version-2 B-tree (HDF5 file format spec, sections III.A.2 and III.G).
//!
//! The HDF5 library switches a group to dense storage when it has more than eight links (an
//! object to dense attributes past eight attributes) and the file was written with
//! `libver="latest"` (object header version 2). Keras never asks for that, but a user who
//! opens the file with h5py's `libver="latest"` and passes it to `model.save` gets it.
//!
//! Only what reading needs is here: the B-tree's records are enumerated (every node is
//! visited once; no search by hash), each record's heap ID is resolved to its managed or tiny
//! object, and the bytes are parsed by the caller as the message they hold. Huge objects
//! (larger than the heap's managed maximum), filtered heaps and shared attribute messages
//! are refused by name. Checksums are not verified; every size and offset is checked
//! against the structure it points into and against the file before it is used.

use std::collections::HashSet;

use super::{Cur, File, MAX_BTREE_DEPTH, MAX_MEMBERS, MAX_NODES, Res, UNDEF};

/// B-tree record types used here.
pub(super) const LINK_NAMES: u8 = 5;
pub(super) const ATTRIBUTE_NAMES: u8 = 8;

/// A fractal heap's doubling table and what locating an object needs.
pub(super) struct Heap {
    at: u64,
    /// Bytes of a heap ID (a record stores that many).
    pub(super) id_len: usize,
    /// Bytes of a managed object's offset (also of a block's own offset field) and length
    /// inside a heap ID.
    off_bytes: u8,
    len_bytes: u8,
    width: u64,
    start_block: u64,
    /// log2(start_block * width): the size of an indirect block's first row, in bits.
    first_row_bits: u32,
    /// Rows whose blocks are direct; later rows hold indirect blocks.
    direct_rows: u32,
    root: u64,
    pub(super) root_rows: u32,
    checksummed: bool,
    /// Bytes of managed space: every managed object lies below this offset.
    managed: u64,
}

/// Bytes needed to encode `n` (at least one), as the HDF5 library sizes its counters.
fn enc_size(n: u64) -> u8 {
    (n.checked_ilog2().unwrap_or(0) / 8 + 1) as u8
}

fn pow2_bits(v: u64, what: &str, c: &Cur<'_>) -> Res<u32> {
    if v == 0 || !v.is_power_of_two() {
        return Err(c.err(format_args!("{what} {v} is not a power of two")));
    }
    Ok(v.ilog2())
}

impl<'a> File<'a> {
    /// The fractal heap header at `addr`.
    pub(super) fn fractal_heap(&self, addr: u64) -> Res<Heap> {
        let mut c = self.at(addr, "fractal heap header")?;
        c.signature(b"FRHP")?;
        let version = c.u8()?;
        if version != 0 {
            return Err(c.err(format_args!("fractal heap version {version}")));
        }
        let id_len = usize::from(c.u16()?);
        let filters = c.u16()?;
        let flags = c.u8()?;
        let max_managed = u64::from(c.u32()?);
        self.length(&mut c)?; // next huge object ID
        self.addr(&mut c)?; // huge object B-tree
        self.length(&mut c)?; // free space in managed blocks
        self.addr(&mut c)?; // free space manager
        let managed = self.length(&mut c)?;
        for _ in 0..7 {
            // Allocated managed space, allocation iterator, managed object count, huge
            // object size and count, tiny object size and count.
            self.length(&mut c)?;
        }
        let width = u64::from(c.u16()?);
        let start_block = self.length(&mut c)?;
        let max_direct = self.length(&mut c)?;
        let max_heap_bits = u32::from(c.u16()?);
        c.u16()?; // starting rows of the root indirect block
        let root = self.addr(&mut c)?;
        let root_rows = u32::from(c.u16()?);
        if filters != 0 {
            return Err(c.err("filtered (compressed) fractal heap is not supported"));
        }
        let width_bits = pow2_bits(width, "table width", &c)?;
        let start_bits = pow2_bits(start_block, "starting block size", &c)?;
        let direct_bits = pow2_bits(max_direct, "maximum direct block size", &c)?;
        let first_row_bits = start_bits + width_bits;
        if direct_bits < start_bits || max_heap_bits > 64 || first_row_bits >= max_heap_bits {
            return Err(c.err(format_args!(
                "inconsistent doubling table (start {start_block}, width {width}, max direct \
                 {max_direct}, {max_heap_bits} offset bits)"
            )));
        }
        // Rows of an indirect block: enough to span the heap's offset space.
        let max_rows = max_heap_bits - first_row_bits + 1;
        if root_rows > max_rows {
            return Err(c.err(format_args!(
                "root indirect block has {root_rows} rows, at most {max_rows} fit"
            )));
        }
        let off_bytes = max_heap_bits.div_ceil(8) as u8;
        let len_bytes = (direct_bits.div_ceil(8) as u8).min(enc_size(max_managed));
        if len_bytes == 0 || 1 + usize::from(off_bytes) + usize::from(len_bytes) > id_len {
            return Err(c.err(format_args!(
                "heap ID of {id_len} bytes cannot hold a {off_bytes}-byte offset and a \
                 {len_bytes}-byte length"
            )));
        }
        Ok(Heap {
            at: addr,
            id_len,
            off_bytes,
            len_bytes,
            width,
            start_block,
            first_row_bits,
            direct_rows: direct_bits - start_bits + 2,
            root,
            root_rows,
            checksummed: flags & 0x02 != 0,
            managed,
        })
    }

    /// The object a heap ID names: its bytes inside a direct block (managed) or inside the ID
    /// itself (tiny).
    pub(super) fn heap_object<'i>(&self, heap: &Heap, id: &'i [u8]) -> Res<&'i [u8]>
    where
        'a: 'i,
    {
        let bad = |msg: String| format!("fractal heap at {:#x}: heap ID {id:02x?}: {msg}", heap.at);
        let first = *id.first().ok_or_else(|| bad("empty".into()))?;
        if first >> 6 != 0 {
            return Err(bad(format!("ID version {}", first >> 6)));
        }
        match (first >> 4) & 3 {
            0 => {}
            1 => return Err(bad("huge objects are not supported".into())),
            2 => {
                // Tiny: the object is the ID's own bytes; an extended length takes a second
                // byte when IDs are longer than 18 bytes.
                let (len, data) = if heap.id_len <= 18 {
                    (usize::from(first & 0x0f) + 1, id.get(1..))
                } else {
                    let low = usize::from(*id.get(1).ok_or_else(|| bad("truncated".into()))?);
                    ((usize::from(first & 0x0f) << 8 | low) + 1, id.get(2..))
                };
                return data
                    .and_then(|d| d.get(..len))
                    .ok_or_else(|| bad(format!("tiny object of {len} bytes overruns the ID")));
            }
            t => return Err(bad(format!("object type {t}"))),
        }
        let mut c = Cur::new(id, "heap ID", heap.at);
        c.skip(1)?;
        let offset = c.uint(heap.off_bytes).map_err(&bad)?;
        let len = c.uint(heap.len_bytes).map_err(&bad)?;
        if len == 0 || offset >= heap.managed || len > heap.managed - offset {
            return Err(bad(format!(
                "object of {len} bytes at offset {offset} outside the {} managed bytes",
                heap.managed
            )));
        }
        // Descend from the root: each step picks the entry whose block spans `offset`.
        let (mut block, mut base, mut rows) = (heap.root, 0u64, heap.root_rows);
        let mut size = heap.start_block;
        let mut depth = 0;
        while rows > 0 {
            depth += 1;
            if depth > MAX_BTREE_DEPTH {
                return Err(bad("indirect blocks nested too deep".into()));
            }
            let rel = offset - base;
            let row = if rel < heap.start_block * heap.width {
                0
            } else {
                rel.ilog2() - heap.first_row_bits + 1
            };
            if row >= rows {
                return Err(bad(format!(
                    "offset {offset} beyond the {rows} rows of the indirect block at {block:#x}"
                )));
            }
            let (row_size, row_off) = match row {
                0 => (heap.start_block, 0),
                r => (
                    heap.start_block << (r - 1),
                    (heap.start_block * heap.width) << (r - 1),
                ),
            };
            let col = (rel - row_off) / row_size;
            let entry = u64::from(row) * heap.width + col;
            let mut ib = self.at(block, "fractal heap indirect block")?;
            ib.signature(b"FHIB")?;
            ib.skip(1 + usize::from(self.offset_size))?; // version, heap header address
            let own = ib.uint(heap.off_bytes)?;
            if own != base {
                return Err(ib.err(format_args!("block offset {own}, expected {base}")));
            }
            let skip = usize::try_from(entry)
                .ok()
                .and_then(|e| e.checked_mul(usize::from(self.offset_size)))
                .ok_or_else(|| ib.err("entry out of range"))?;
            ib.skip(skip)?;
            let child = self.addr(&mut ib)?;
            if child == UNDEF {
                return Err(bad(format!("offset {offset} lies in an unallocated block")));
            }
            block = child;
            base += row_off + col * row_size;
            size = row_size;
            rows = if row < heap.direct_rows {
                0
            } else {
                // A child indirect block spanning `row_size` bytes has this many rows.
                (row_size.ilog2() + 1)
                    .checked_sub(heap.first_row_bits)
                    .filter(|&r| r > 0)
                    .ok_or_else(|| bad(format!("row {row} cannot hold an indirect block")))?
            };
        }
        let bytes = self.range(block, size, "fractal heap direct block")?;
        let mut db = Cur::new(bytes, "fractal heap direct block", block);
        db.signature(b"FHDB")?;
        db.skip(1 + usize::from(self.offset_size))?; // version, heap header address
        let own = db.uint(heap.off_bytes)?;
        if own != base {
            return Err(db.err(format_args!("block offset {own}, expected {base}")));
        }
        let header = db.pos as u64 + if heap.checksummed { 4 } else { 0 };
        let start = offset - base;
        if start < header || start + len > size {
            return Err(bad(format!(
                "object of {len} bytes at {start} does not fit its {size}-byte direct block"
            )));
        }
        Ok(&bytes[start as usize..(start + len) as usize])
    }

    /// Calls `each` with every record of the version-2 B-tree at `addr`, which must be of
    /// `kind`; each node is read once, and the walk is bounded in depth and node count.
    pub(super) fn btree2_records(
        &self,
        addr: u64,
        kind: u8,
        each: &mut dyn FnMut(&'a [u8]) -> Res<()>,
    ) -> Res<()> {
        let mut c = self.at(addr, "v2 B-tree header")?;
        c.signature(b"BTHD")?;
        let version = c.u8()?;
        let found = c.u8()?;
        if version != 0 || found != kind {
            return Err(c.err(format_args!(
                "version {version} type {found}, expected version 0 type {kind}"
            )));
        }
        let node_size = u64::from(c.u32()?);
        let rec_size = u64::from(c.u16()?);
        let depth = usize::from(c.u16()?);
        c.skip(2)?; // split and merge percentages
        let root = self.addr(&mut c)?;
        let root_records = u64::from(c.u16()?);
        let total = self.length(&mut c)?;
        if depth > MAX_BTREE_DEPTH || rec_size == 0 || node_size < 10 + rec_size {
            return Err(c.err(format_args!(
                "implausible tree (depth {depth}, node size {node_size}, record size {rec_size})"
            )));
        }
        if total > MAX_MEMBERS as u64 {
            return Err(c.err(format_args!("{total} records, more than {MAX_MEMBERS}")));
        }
        if root == UNDEF {
            return Ok(()); // empty tree
        }
        // Field widths of an internal node's child pointers, per level (spec III.A.2): the
        // record count takes the bytes a leaf's maximum needs; the total below a child, the
        // bytes the child level's cumulative maximum needs (absent for leaf children).
        let leaf_max = (node_size - 10) / rec_size;
        let count_bytes = enc_size(leaf_max);
        let mut levels = vec![(leaf_max, leaf_max, 0u8)]; // (max records, cumulative, bytes)
        for d in 1..=depth {
            let below = levels[d - 1];
            let pointer = u64::from(self.offset_size) + u64::from(count_bytes) + u64::from(below.2);
            let max = node_size.saturating_sub(10 + pointer) / (rec_size + pointer);
            let cumulative = (max + 1).saturating_mul(below.1).saturating_add(max);
            levels.push((max, cumulative, enc_size(cumulative)));
        }
        let mut walk = Btree2 {
            file: self,
            kind,
            node_size,
            rec_size: rec_size as usize,
            count_bytes,
            levels,
            seen: HashSet::new(),
            records: 0,
        };
        walk.node(root, root_records, depth, each)
    }
}

struct Btree2<'f, 'a> {
    file: &'f File<'a>,
    kind: u8,
    node_size: u64,
    rec_size: usize,
    count_bytes: u8,
    /// Per level (0 = leaves): maximum records in a node, cumulative maximum below, and the
    /// bytes that cumulative count takes.
    levels: Vec<(u64, u64, u8)>,
    seen: HashSet<u64>,
    records: usize,
}

impl<'a> Btree2<'_, 'a> {
    fn node(
        &mut self,
        addr: u64,
        records: u64,
        depth: usize,
        each: &mut dyn FnMut(&'a [u8]) -> Res<()>,
    ) -> Res<()> {
        let (sig, what) = if depth == 0 {
            (b"BTLF", "v2 B-tree leaf node")
        } else {
            (b"BTIN", "v2 B-tree internal node")
        };
        let bytes = self.file.range(addr, self.node_size, what)?;
        let mut c = Cur::new(bytes, what, addr);
        if !self.seen.insert(addr) || self.seen.len() > MAX_NODES {
            return Err(c.err("node visited twice or too many nodes (cycle?)"));
        }
        let max = self.levels[depth].0;
        if records > max {
            return Err(c.err(format_args!("{records} records, at most {max} fit")));
        }
        self.records = self.records.saturating_add(records as usize);
        if self.records > MAX_MEMBERS {
            return Err(c.err(format_args!("more than {MAX_MEMBERS} records")));
        }
        c.signature(sig)?;
        let version = c.u8()?;
        let kind = c.u8()?;
        if version != 0 || kind != self.kind {
            return Err(c.err(format_args!(
                "version {version} type {kind}, expected version 0 type {}",
                self.kind
            )));
        }
        for _ in 0..records {
            each(c.take(self.rec_size)?)?;
        }
        if depth == 0 {
            return Ok(());
        }
        let total_bytes = self.levels[depth - 1].2;
        let mut children = Vec::new();
        for _ in 0..=records {
            let child = self.file.addr(&mut c)?;
            let child_records = c.uint(self.count_bytes)?;
            if depth > 1 {
                c.uint(total_bytes)?; // records in the child's subtree
            }
            children.push((child, child_records));
        }
        for (child, child_records) in children {
            self.node(child, child_records, depth - 1, each)?;
        }
        Ok(())
    }
}

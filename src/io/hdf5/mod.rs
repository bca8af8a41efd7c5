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
//! One file per part of the format: `superblock.rs` (where the root is, address and length
//! widths, reads at an address), `cursor.rs` (the bounds-checked reader), `header.rs` (object
//! header messages), `group.rs` (B-trees, local heaps, links, paths), `dense.rs` (fractal
//! heaps and v2 B-trees), `types.rs` (dataspaces and datatypes), `attribute.rs` (string
//! attributes, the global heap) and `dataset.rs` (storage layouts, values).
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

mod attribute;
mod cursor;
mod dataset;
mod dense;
mod group;
mod header;
mod superblock;
#[cfg(test)]
mod tests;
mod types;

use cursor::Cur;
use std::fmt;

type Res<T> = Result<T, String>;

/// The undefined address (all bits set), normalized to this width whatever the offset size.
const UNDEF: u64 = u64::MAX;
const MAX_RANK: usize = 32;
const MAX_BTREE_DEPTH: usize = 32;
const MAX_CONTINUATIONS: usize = 1024;
const MAX_MESSAGES: usize = 1 << 16;
const MAX_NODES: usize = 1 << 16;
const MAX_MEMBERS: usize = 1 << 20;
/// Total bytes of member names one group listing may hold (names can be shared heap strings,
/// so the file size alone does not bound them).
const MAX_NAME_BYTES: usize = 1 << 26;

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

/// A path for messages: the root as `/`.
fn show(path: &str) -> &str {
    if path.trim_matches('/').is_empty() {
        "/"
    } else {
        path
    }
}

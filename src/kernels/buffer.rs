//! Zeroed `f32` buffers for the large, long-lived arrays a plan streams through: packed weights
//! and a session's arena. From 2 MiB up a buffer is mapped on its own, 2 MiB-aligned, and on
//! Linux marked for transparent huge pages (`madvise(MADV_HUGEPAGE)`; most distributions enable
//! them only where asked): a stream of weights then crosses 512x fewer page boundaries (the
//! hardware prefetchers stop at each 4 KiB page) and needs 512x fewer TLB entries. Smaller
//! buffers, or where the mapping fails, are plain vectors, started on a 64-byte cache line
//! (the allocator aligns to 16 bytes only, and a vector load that crosses a line costs two:
//! a depthwise convolution reading such an arena took 1.5x its time). The values are the same
//! either way.

use std::ops::{Deref, DerefMut};

/// A huge page, and the size from which a buffer is mapped on its own.
const HUGE: usize = 2 << 20;
/// Values in a cache line.
const LINE: usize = 16;

/// `len` zeroed values (see the module docs).
pub struct Buffer(Store);

enum Store {
    /// `len` values from value `start` of `vec` (a cache line boundary there).
    Heap {
        vec: Vec<f32>,
        start: usize,
        len: usize,
    },
    /// `len` values from byte `start` of `map` (2 MiB-aligned there).
    Mapped {
        map: memmap2::MmapMut,
        start: usize,
        len: usize,
    },
}

impl Buffer {
    /// `len` zeros, or `None` if the memory is not there.
    pub fn zeroed(len: usize) -> Option<Buffer> {
        let bytes = len.checked_mul(4)?;
        if bytes >= HUGE
            && let Some(b) = Self::mapped(len, bytes)
        {
            return Some(b);
        }
        Self::heap(len)
    }

    /// A vector with a cache line boundary in its first `LINE` values.
    fn heap(len: usize) -> Option<Buffer> {
        let mut vec = Vec::new();
        vec.try_reserve_exact(len.checked_add(LINE - 1)?).ok()?;
        vec.resize(len + LINE - 1, 0.0);
        let start = vec.as_ptr().align_offset(LINE * 4).min(LINE - 1);
        Some(Buffer(Store::Heap { vec, start, len }))
    }

    /// `values`, copied into a buffer of their own size.
    pub fn from_slice(values: &[f32]) -> Option<Buffer> {
        let mut b = Buffer::zeroed(values.len())?;
        b.copy_from_slice(values);
        Some(b)
    }

    /// An anonymous mapping (zeroed by the OS) with a 2 MiB boundary in its first 2 MiB.
    fn mapped(len: usize, bytes: usize) -> Option<Buffer> {
        let map = memmap2::MmapMut::map_anon(bytes.checked_add(HUGE)?).ok()?;
        let start = map.as_ptr().align_offset(HUGE);
        if start >= HUGE {
            return None;
        }
        // Only a hint: without huge pages the buffer works the same.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        Some(Buffer(Store::Mapped { map, start, len }))
    }
}

impl Deref for Buffer {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match &self.0 {
            Store::Heap { vec, start, len } => &vec[*start..*start + len],
            // A 2 MiB-aligned start and whole values: the cast cannot fail.
            Store::Mapped { map, start, len } => {
                bytemuck::cast_slice(&map[*start..*start + len * 4])
            }
        }
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        match &mut self.0 {
            Store::Heap { vec, start, len } => &mut vec[*start..*start + *len],
            Store::Mapped { map, start, len } => {
                bytemuck::cast_slice_mut(&mut map[*start..*start + *len * 4])
            }
        }
    }
}

impl Clone for Buffer {
    /// A copy in a buffer of its own (a plain vector if the memory is short of a mapping).
    fn clone(&self) -> Buffer {
        let len = self.len();
        let copy = |vec: Vec<f32>| Buffer(Store::Heap { vec, start: 0, len });
        Buffer::from_slice(self).unwrap_or_else(|| copy(self.to_vec()))
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.0 {
            Store::Heap { .. } => "heap",
            Store::Mapped { .. } => "mapped",
        };
        write!(f, "Buffer({} values, {kind})", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::Buffer;

    /// Both kinds hold zeros, take writes and copy; each starts on a cache line, a large one
    /// on a 2 MiB boundary.
    #[test]
    fn small_and_large_buffers_hold_their_values() {
        for len in [0, 5, (2 << 20) / 4, (5 << 20) / 4 + 3] {
            let mut b = Buffer::zeroed(len).unwrap();
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&v| v == 0.0));
            b.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
            let c = b.clone();
            assert!(c.iter().enumerate().all(|(i, &v)| v == i as f32));
            if len >= (2 << 20) / 4 {
                assert_eq!(b.as_ptr() as usize % (2 << 20), 0, "{b:?}");
            }
            assert_eq!(b.as_ptr() as usize % 64, 0, "{b:?}");
        }
        assert!(Buffer::zeroed(usize::MAX).is_none());
    }
}

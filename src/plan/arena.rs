//! Arena offsets by liveness: first-fit over freed blocks, blocks coalesced when freed.

/// Hands out offsets (in f32 units, multiples of 16) into one arena.
#[derive(Debug, Default)]
pub(crate) struct Arena {
    free: Vec<(usize, usize)>,
    end: usize,
}

/// Block offsets are multiples of this many f32 (64 bytes) from the arena's start, which a
/// [`crate::kernels::Buffer`] puts on a cache line: every block starts on one (the kernels'
/// loads and stores are unaligned, but one that crosses a line costs two on AVX-512).
const ALIGN: usize = 16;

impl Arena {
    /// Reserves `len` values; returns the offset.
    pub(crate) fn alloc(&mut self, len: usize) -> usize {
        let len = len.div_ceil(ALIGN) * ALIGN;
        if let Some(i) = self.free.iter().position(|&(_, l)| l >= len) {
            let (off, l) = self.free[i];
            if l == len {
                self.free.remove(i);
            } else {
                self.free[i] = (off + len, l - len);
            }
            return off;
        }
        // Grow: a free block touching the end is extended rather than wasted.
        if let Some(&(off, l)) = self.free.last()
            && off + l == self.end
        {
            self.free.pop();
            self.end = off + len;
            return off;
        }
        let off = self.end;
        self.end += len;
        off
    }

    /// Returns a block.
    pub(crate) fn release(&mut self, off: usize, len: usize) {
        let len = len.div_ceil(ALIGN) * ALIGN;
        let i = self.free.partition_point(|&(o, _)| o < off);
        self.free.insert(i, (off, len));
        if i + 1 < self.free.len() && self.free[i].0 + self.free[i].1 == self.free[i + 1].0 {
            self.free[i].1 += self.free[i + 1].1;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == self.free[i].0 {
            self.free[i - 1].1 += self.free[i].1;
            self.free.remove(i);
        }
    }

    /// Total size needed, in f32 units.
    pub(crate) fn len(&self) -> usize {
        self.end
    }
}

#[cfg(test)]
mod tests {
    use super::Arena;

    #[test]
    fn reuses_and_coalesces() {
        let mut a = Arena::default();
        let x = a.alloc(10);
        let y = a.alloc(20);
        assert_eq!((x, y), (0, 16));
        a.release(x, 10);
        let z = a.alloc(16);
        assert_eq!(z, 0);
        a.release(z, 16);
        a.release(y, 20);
        assert_eq!(a.alloc(48), 0);
        assert_eq!(a.len(), 48);
    }
}

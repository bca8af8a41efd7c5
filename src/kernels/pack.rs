//! The B operand in the microkernel's panel layout: weights packed once at compile time
//! ([`PackedB`]), or an activation packed at run time into the caller's scratch
//! ([`pack_b`], attention's `Kᵀ` and `V`). Both are read through a [`PackedBRef`].

use super::Isa;
use super::gemm::Blocking;

/// A `K x N` matrix packed into NR-wide column panels (`k`-major inside a panel, last panel
/// zero-padded): a Dense layer's kernel, packed at compile time. Only the weights: the bias
/// and every other epilogue constant travel with their [`EpOp`](super::EpOp).
#[derive(Clone, Debug)]
pub struct PackedB {
    k: usize,
    n: usize,
    nr: usize,
    data: super::Buffer,
    /// Matrices packed one after another, alike ([`pack_parts`](Self::pack_parts)).
    parts: usize,
    /// Blocking chosen for these weights (tuned), else the machine's default per call.
    blocking: Option<Blocking>,
}

/// A packed B borrowed for one GEMM: a [`PackedB`]'s ([`PackedB::view`]) or one packed at run
/// time into scratch ([`pack_b`]). The driver reads B only through this.
#[derive(Clone, Copy, Debug)]
pub struct PackedBRef<'a> {
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) nr: usize,
    /// Exactly `panels * k * nr` values (`GemmCall::check` asserts it).
    pub(crate) data: &'a [f32],
    pub(crate) blocking: Option<Blocking>,
}

impl PackedBRef<'_> {
    /// Rows (K).
    pub fn k(&self) -> usize {
        self.k
    }
    /// Columns (N).
    pub fn n(&self) -> usize {
        self.n
    }
    /// Panel width.
    pub fn nr(&self) -> usize {
        self.nr
    }
}

/// Why an operand could not be packed or used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// An operand does not have the values its shape says.
    #[error("{what} has {got} values, expected {want}")]
    Length {
        /// `"kernel"`, `"B"`, `"scratch"`, or an epilogue operand: `"bias"`, `"scale"`,
        /// `"shift"`, `"gamma"`, `"beta"`.
        what: &'static str,
        /// Values given.
        got: usize,
        /// Values the shape implies.
        want: usize,
    },
    /// The packed size does not fit in memory (`K x N` padded to whole panels).
    #[error("a {k} x {n} kernel does not fit in memory when packed")]
    TooLarge {
        /// Rows.
        k: usize,
        /// Columns.
        n: usize,
    },
}

/// A `K x N` B operand in memory, for [`pack_b`].
#[derive(Clone, Copy, Debug)]
pub enum BSource<'a> {
    /// Row-major: `B[k][j] = data[k * ld + j]` (attention's `V`, a layer's kernel).
    RowMajor {
        /// The values.
        data: &'a [f32],
        /// Row stride (at least N to keep rows apart; any value is read safely).
        ld: usize,
    },
    /// Given transposed, `N x K` row-major: `B[k][j] = data[j * ld + k]` (attention's `Kᵀ`
    /// from the keys `K`, one row per position).
    Transposed {
        /// The values.
        data: &'a [f32],
        /// Row stride of the stored `N x K` matrix.
        ld: usize,
    },
}

impl BSource<'_> {
    /// Values the source must hold for `k x n`; `None` on overflow.
    fn extent(&self, k: usize, n: usize) -> Option<usize> {
        let (rows, ld, w) = match *self {
            BSource::RowMajor { ld, .. } => (k, ld, n),
            BSource::Transposed { ld, .. } => (n, ld, k),
        };
        if rows == 0 || w == 0 {
            return Some(0);
        }
        (rows - 1).checked_mul(ld)?.checked_add(w)
    }

    fn data(&self) -> &[f32] {
        match *self {
            BSource::RowMajor { data, .. } | BSource::Transposed { data, .. } => data,
        }
    }
}

/// Panels, one panel's values and the whole packing for `k x n` in panels `nr` wide.
fn packed_len(k: usize, n: usize, nr: usize) -> Result<(usize, usize), PackError> {
    let too_large = PackError::TooLarge { k, n };
    let panel_len = k.checked_mul(nr).ok_or(too_large.clone())?;
    let len = n
        .div_ceil(nr)
        .checked_mul(panel_len)
        .filter(|l| l.checked_mul(4).is_some())
        .ok_or(too_large)?;
    Ok((panel_len, len))
}

/// Writes `src` (`k x n`, extent checked) into `dst` (exactly the packing's length) in
/// panels `nr` wide; padding columns are zero.
fn pack_into(src: BSource<'_>, k: usize, n: usize, nr: usize, panel_len: usize, dst: &mut [f32]) {
    if panel_len == 0 {
        return;
    }
    for (p, panel) in dst.chunks_exact_mut(panel_len).enumerate() {
        let j0 = p * nr;
        let w = nr.min(n - j0);
        for (kk, out) in panel.chunks_exact_mut(nr).enumerate() {
            match src {
                BSource::RowMajor { data, ld } => {
                    out[..w].copy_from_slice(&data[kk * ld + j0..kk * ld + j0 + w]);
                }
                BSource::Transposed { data, ld } => {
                    for (jj, o) in out[..w].iter_mut().enumerate() {
                        *o = data[(j0 + jj) * ld + kk];
                    }
                }
            }
            out[w..].fill(0.0);
        }
    }
    debug_assert!(k * nr == panel_len);
}

/// Checks that `src` holds `k x n` values.
fn check_source(src: &BSource<'_>, k: usize, n: usize) -> Result<(), PackError> {
    let want = src.extent(k, n).ok_or(PackError::TooLarge { k, n })?;
    let got = src.data().len();
    if got < want {
        return Err(PackError::Length {
            what: "B",
            got,
            want,
        });
    }
    Ok(())
}

/// Scratch values [`pack_b`] needs for a `k x n` B on `isa` (panels of
/// [`Isa::nr_for`]`(n)`). An error if the packing would not fit in memory.
pub fn pack_b_len(isa: Isa, k: usize, n: usize) -> Result<usize, PackError> {
    packed_len(k, n, isa.nr_for(n)).map(|(_, len)| len)
}

/// Packs a `k x n` B given at run time (an activation) into `scratch` for `isa`, without
/// allocating: the same layout as [`PackedB::pack`], so a GEMM on it gives the same bits as on
/// weights packed at compile time. `scratch` needs [`pack_b_len`] values (more are left
/// untouched). An error if `src` or `scratch` is too short.
///
/// ```
/// use sinter::kernels::{self, ARows, BSource, Gemm, Isa};
/// let isa = Isa::Generic;
/// // Scores = Q · Kᵀ: Q is 2 x 3, the keys K are 4 x 3 (one row per position).
/// let q = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
/// let keys = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
/// let mut scratch = vec![0.0; kernels::pack_b_len(isa, 3, 4)?];
/// let kt = kernels::pack_b(isa, BSource::Transposed { data: &keys, ld: 3 }, 3, 4, &mut scratch)?;
/// let mut scores = [0.0f32; 8];
/// Gemm::new(isa, 2, ARows::new(&q, 3), kt, &[]).run(&mut scores, 4);
/// assert_eq!(scores, [1.0, 4.0, 7.0, 10.0, 2.0, 5.0, 8.0, 11.0]);
/// # Ok::<(), kernels::PackError>(())
/// ```
pub fn pack_b<'s>(
    isa: Isa,
    src: BSource<'_>,
    k: usize,
    n: usize,
    scratch: &'s mut [f32],
) -> Result<PackedBRef<'s>, PackError> {
    let nr = isa.nr_for(n);
    let (panel_len, len) = packed_len(k, n, nr)?;
    check_source(&src, k, n)?;
    let got = scratch.len();
    let dst = scratch.get_mut(..len).ok_or(PackError::Length {
        what: "scratch",
        got,
        want: len,
    })?;
    pack_into(src, k, n, nr, panel_len, dst);
    let data: &'s [f32] = dst;
    Ok(PackedBRef {
        k,
        n,
        nr,
        data,
        blocking: None,
    })
}

impl PackedB {
    /// Packs a row-major `K x N` kernel (`kernel[k * n + j]`) for `isa`'s microkernel, in the
    /// panel width that tier uses for `n` columns ([`Isa::nr_for`]).
    /// An error if `kernel` is not `K x N` values or the packing would not fit in memory
    /// (every size is computed with overflow checks).
    pub fn pack(isa: Isa, kernel: &[f32], k: usize, n: usize) -> Result<Self, PackError> {
        Self::pack_nr(isa, kernel, k, n, isa.nr_for(n))
    }

    /// [`pack`](Self::pack) in panels `nr` wide: one of `isa`'s tile widths
    /// ([`Isa::tiles`]), else the default width for `n`.
    pub fn pack_nr(
        isa: Isa,
        kernel: &[f32],
        k: usize,
        n: usize,
        nr: usize,
    ) -> Result<Self, PackError> {
        let nr = if isa.tiles().iter().any(|t| t.nr == nr) {
            nr
        } else {
            isa.nr_for(n)
        };
        let too_large = PackError::TooLarge { k, n };
        let want = k.checked_mul(n).ok_or(too_large.clone())?;
        if kernel.len() != want {
            return Err(PackError::Length {
                what: "kernel",
                got: kernel.len(),
                want,
            });
        }
        let (panel_len, len) = packed_len(k, n, nr)?;
        let mut data = super::Buffer::zeroed(len).ok_or(too_large)?;
        let src = BSource::RowMajor {
            data: kernel,
            ld: n,
        };
        pack_into(src, k, n, nr, panel_len, &mut data);
        Ok(PackedB {
            k,
            n,
            nr,
            data,
            parts: 1,
            blocking: None,
        })
    }

    /// `parts` row-major `K x N` kernels, one after another in `kernels`, packed as
    /// [`pack`](Self::pack) packs each, into one buffer (a Winograd convolution's 16: one
    /// mapping, on huge pages when large). [`part`](Self::part) views one.
    pub fn pack_parts(
        isa: Isa,
        kernels: &[f32],
        parts: usize,
        k: usize,
        n: usize,
    ) -> Result<Self, PackError> {
        let nr = isa.nr_for(n);
        let too_large = PackError::TooLarge { k, n };
        let each = k.checked_mul(n).ok_or(too_large.clone())?;
        let want = each.checked_mul(parts).ok_or(too_large.clone())?;
        if kernels.len() != want || parts == 0 {
            return Err(PackError::Length {
                what: "kernels",
                got: kernels.len(),
                want,
            });
        }
        let (panel_len, len) = packed_len(k, n, nr)?;
        let total = len.checked_mul(parts).ok_or(too_large.clone())?;
        let mut data = super::Buffer::zeroed(total).ok_or(too_large)?;
        for (kernel, dst) in kernels
            .chunks_exact(each.max(1))
            .zip(data.chunks_exact_mut(len.max(1)))
        {
            let src = BSource::RowMajor {
                data: kernel,
                ld: n,
            };
            pack_into(src, k, n, nr, panel_len, dst);
        }
        Ok(PackedB {
            k,
            n,
            nr,
            data,
            parts,
            blocking: None,
        })
    }

    /// Rows of the unpacked kernel (the layer's input width).
    pub fn k(&self) -> usize {
        self.k
    }
    /// Columns (the layer's units).
    pub fn n(&self) -> usize {
        self.n
    }
    /// Panel width this was packed for.
    pub fn nr(&self) -> usize {
        self.nr
    }
    /// The blocking calls on these weights use for more than a few rows (`None`: the
    /// machine's default, [`Blocking::heuristic`]).
    pub fn blocking(&self) -> Option<Blocking> {
        self.blocking
    }
    /// Sets that blocking (made [`valid`](Blocking::valid)). The bits never depend on it.
    pub fn set_blocking(&mut self, b: Option<Blocking>) {
        self.blocking = b.map(Blocking::valid);
    }
    /// Bytes held by the packed weights.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }
    /// The packing, borrowed for a GEMM: its first part, the only one of a
    /// [`pack`](Self::pack).
    pub fn view(&self) -> PackedBRef<'_> {
        self.part(0).unwrap_or(PackedBRef {
            k: self.k,
            n: self.n,
            nr: self.nr,
            data: &[],
            blocking: self.blocking,
        })
    }
    /// Matrices packed here (1 but from [`pack_parts`](Self::pack_parts)).
    pub fn parts(&self) -> usize {
        self.parts
    }
    /// Part `i`, borrowed for a GEMM (`None` past the last).
    pub fn part(&self, i: usize) -> Option<PackedBRef<'_>> {
        let each = self.data.len() / self.parts.max(1);
        (i < self.parts).then(|| PackedBRef {
            k: self.k,
            n: self.n,
            nr: self.nr,
            data: &self.data[i * each..(i + 1) * each],
            blocking: self.blocking,
        })
    }
    /// Drops values from the packing (to test that the driver's check catches it).
    #[cfg(test)]
    pub(crate) fn truncate(&mut self, len: usize) {
        self.data = super::Buffer::from_slice(&self.data[..len]).expect("a shorter copy");
    }
}

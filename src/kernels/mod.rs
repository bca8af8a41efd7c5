//! Compute kernels: the blocked GEMM driver, microkernel tiers, epilogues and activations.
//!
//! Knows nothing about models or plans. The tier is chosen once (detection, or `SINTER_ISA`)
//! and stored by the caller; every tier computes the same bits.
//!
//! ```
//! use sinter::kernels::{self, Activation, EpOp, Isa, PackedB};
//! let isa = Isa::Generic;
//! // y = relu(x · w + b) for one row, K = 2, N = 3.
//! let w = PackedB::pack(isa, &[1.0, 2.0, 3.0, -4.0, -5.0, -6.0], 2, 3)?;
//! let b = [0.5, 0.5, 0.5];
//! let ops = [EpOp::bias(&b), EpOp::Act(Activation::RELU)];
//! let mut y = [0.0f32; 3];
//! kernels::dense(isa, 1, &[1.0, 1.0], &w, &mut y, &ops);
//! assert_eq!(y, [0.0, 0.0, 0.0]);
//! kernels::dense(isa, 1, &[1.0, 0.0], &w, &mut y, &ops);
//! assert_eq!(y, [1.5, 2.5, 3.5]);
//! # Ok::<(), sinter::kernels::PackError>(())
//! ```
//!
//! The general call is a [`Gemm`]: A as [`ARows`] (strided, or K-segmented for a 2-D
//! convolution's windows), B as a [`PackedBRef`] (weights packed at compile time, or an
//! activation packed at run time by [`pack_b`]), and an epilogue whose ops carry their operands
//! ([`EpOp`], including [`EpOp::AddC`], a matrix added elementwise).
//!
//! # Unsafe code
//!
//! All of sinter's `unsafe` is in this module, but for the worker pool's type-erased task
//! pointer (`plan/threads/workers.rs`); every block has a `// SAFETY:` line
//! (`clippy::undocumented_unsafe_blocks` is denied crate-wide). Here it is of four kinds:
//!
//! - **CPU features.** `#[target_feature]` entry points (`x86/mod.rs`) are called only through
//!   `Avx2Token` / `Avx512Token`, which exist only after `is_x86_feature_detected!` said yes.
//! - **Lane loads and stores** (`Simd::load` / `store`, unaligned): callers pass whole chunks
//!   (`chunks_exact`), a stack buffer for the tail, or tile pointers below.
//! - **The GEMM driver** (`gemm.rs`, `epilogue.rs`): pointer arithmetic over A, packed B, the
//!   epilogue operands and C. `GemmCall::check` runs before every driver call and asserts, with
//!   overflow-checked arithmetic, that A holds `(m - 1) * lda + E` values (`E`: K, or the
//!   furthest end of a row's K segments, which must add up to K), C `(m - 1) * ldc + N`, the
//!   packing every panel, the epilogue operands N values per column operand and every row an
//!   `AddC` reads, and that row-wise epilogues own whole rows. Partial tiles go through a
//!   tile-sized buffer and run their epilogue there on the real columns only; packed B is
//!   padded to whole panels.
//! - **`ColumnParts: Send`**: a part writes only its own column panels of a C borrowed
//!   mutably for its whole life; parts are split and run by value, so no panel is covered
//!   twice. Packing sizes are computed with overflow checks, and `check` compares the
//!   packed data's length with the panels it indexes.
//!
//! The checks are tested where an overrun would show: `kernels::tests` runs every tier against
//! the scalar oracle on M, N, K of 1, every MR/NR remainder, K across KC, and operands that
//! end exactly at their allocation at odd (unaligned) offsets with wide, equal and
//! overlapping row strides; `scripts/asan-kernels.sh` runs those tests under
//! AddressSanitizer, and the `gemm` fuzz target does the same on random shapes.

mod activation;
mod cache;
mod dispatch;
mod epilogue;
mod fused;
mod gemm;
mod math;
mod operands;
pub(crate) mod ops;
mod pack;
mod portable;
mod simd;
pub(crate) mod tune;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use activation::{Activation, SELU_ALPHA, SELU_SCALE, UnknownActivation};
pub use cache::Caches;
pub use dispatch::TileShape;
pub use epilogue::EpOp;
pub use gemm::{Blocking, KB, KC};
pub use math::RowNorm;
pub use operands::{ARows, MatRef, Segment};
pub use pack::{BSource, PackError, PackedB, PackedBRef, pack_b, pack_b_len};

use dispatch::with_tier;
use gemm::GemmCall;
use std::fmt;
use std::str::FromStr;

/// An instruction-set tier. Every tier produces bit-identical results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX-512F, 6 x 64 tiles (8 x 16 and 8 x 32 for narrow layers) (x86-64).
    Avx512,
    /// AVX2 + FMA, 6 x 16 tiles (6 x 8 for narrow layers) (x86-64).
    Avx2,
    /// Portable `wide` lanes with `f32::mul_add`, 6 x 16 tiles (6 x 8) (any CPU).
    Generic,
}

impl Isa {
    /// Every tier, best first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Generic];

    /// Whether this CPU can run the tier.
    pub fn is_available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::Avx512Token::new().is_some(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::Avx2Token::new().is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx512 | Isa::Avx2 => false,
            Isa::Generic => true,
        }
    }

    /// The tiers this CPU can run, best first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The best available tier.
    pub fn detect() -> Isa {
        Isa::ALL
            .into_iter()
            .find(|i| i.is_available())
            .unwrap_or(Isa::Generic)
    }

    /// The tier forced by `SINTER_ISA` (`avx512`, `avx2`, `generic`), if set.
    pub fn from_env() -> Result<Option<Isa>, UnknownIsa> {
        match std::env::var("SINTER_ISA") {
            Ok(s) if !s.is_empty() => s.parse().map(Some),
            _ => Ok(None),
        }
    }

    /// The tier's tile shapes, narrowest panel first (stated once, with its kernels).
    pub fn tiles(self) -> &'static [TileShape] {
        dispatch::tiles_of(self)
    }

    /// Rows of the tile for panels `nr` wide (the widest tile's rows for an unknown width).
    pub fn mr_for(self, nr: usize) -> usize {
        let t = self.tiles();
        t.iter().find(|s| s.nr == nr).unwrap_or(&t[t.len() - 1]).mr
    }

    /// Widest tile: `MR x nr()` is the tile large layers run on.
    pub fn nr(self) -> usize {
        let t = self.tiles();
        t[t.len() - 1].nr
    }

    /// The panel width for a layer of `n` columns: the narrowest that covers `n`, else the
    /// widest (small layers waste less padding, large ones get the biggest tile).
    pub fn nr_for(self, n: usize) -> usize {
        self.tiles()
            .iter()
            .map(|s| s.nr)
            .find(|&nr| nr >= n)
            .unwrap_or_else(|| self.nr())
    }

    /// Lowercase name, as `SINTER_ISA` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Generic => "generic",
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An ISA name that is not `avx512`, `avx2` or `generic`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ISA tier {0:?} (expected avx512, avx2 or generic)")]
pub struct UnknownIsa(pub String);

impl FromStr for Isa {
    type Err = UnknownIsa;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "avx512" | "avx512f" => Ok(Isa::Avx512),
            "avx2" => Ok(Isa::Avx2),
            "generic" | "portable" => Ok(Isa::Generic),
            other => Err(UnknownIsa(other.to_string())),
        }
    }
}

/// `C = ops(A · B)`: `A` is `m x K` row-major (row stride K), `C` is `m x N` (row stride N),
/// `B` packed for `isa`. Runs on the calling thread.
///
/// # Panics
/// If slice lengths disagree with the shapes, an epilogue operand is too short, `w` was
/// packed for another tier, or `isa` is not available on this CPU. Plans check all of this
/// when they are compiled.
pub fn dense(isa: Isa, m: usize, a: &[f32], w: &PackedB, c: &mut [f32], ops: &[EpOp<'_>]) {
    dense_strided(isa, m, Strided::new(a, w.k(), c, w.n()), w, ops);
}

/// `A` and `C` with row strides: row `r` of `A` starts at `a[r * lda]`, row `r` of `C` at
/// `c[r * ldc]`. `lda` may be smaller than K: rows then overlap, which is how a stride-1
/// convolution reads its windows straight from the (padded) input, an implicit im2col. `ldc`
/// larger than N writes into a wider buffer, e.g. this layer's slice of a concatenation.
pub struct Strided<'a, 'c> {
    a: &'a [f32],
    lda: usize,
    c: &'c mut [f32],
    ldc: usize,
}

impl<'a, 'c> Strided<'a, 'c> {
    /// Operands with their row strides.
    pub fn new(a: &'a [f32], lda: usize, c: &'c mut [f32], ldc: usize) -> Self {
        Strided { a, lda, c, ldc }
    }
}

/// [`dense`] with row strides (see [`Strided`]): `A` rows may overlap (`lda < K`), `C` rows
/// may be spaced wider than N. Same bits as [`dense`] on the same values.
///
/// # Panics
/// As [`dense`]; also if `lda == 0` with `m > 1`, or `ldc < N`.
pub fn dense_strided(isa: Isa, m: usize, s: Strided<'_, '_>, w: &PackedB, ops: &[EpOp<'_>]) {
    Gemm::new(isa, m, ARows::new(s.a, s.lda), w.view(), ops).run(s.c, s.ldc);
}

/// One GEMM, `C = ops(A · B)`, described but for C: `m` rows of A ([`ARows`]: strided or
/// K-segmented), B packed ([`PackedBRef`]: at compile time or into scratch at run time), the
/// epilogue ops with their operands. `Copy`: run it whole ([`run`](Self::run)), by row ranges
/// ([`rows`](Self::rows)) or by column panels ([`columns`](Self::columns)) on several threads;
/// every split gives the same bits, since each output's K-sum is one fixed chain whatever
/// covers it.
///
/// ```
/// use sinter::kernels::{ARows, EpOp, Gemm, Isa, PackedB, Segment};
/// let isa = Isa::Generic;
/// // Two rows whose K = 4 values come from two runs of 2, 3 apart: rows [0, 1, 3, 4] and
/// // [2, 3, 5, 6] of the input (row stride 2), plus a residual added elementwise.
/// let x: Vec<f32> = (0..7).map(|v| v as f32).collect();
/// let segs = [Segment { offset: 0, len: 2 }, Segment { offset: 3, len: 2 }];
/// let w = PackedB::pack(isa, &[1.0, 1.0, 1.0, 1.0], 4, 1)?;
/// let residual = [100.0, 200.0];
/// let ops = [EpOp::add_c(&residual, 1)];
/// let mut y = [0.0f32; 2];
/// Gemm::new(isa, 2, ARows::segmented(&x, 2, &segs), w.view(), &ops).run(&mut y, 1);
/// assert_eq!(y, [108.0, 216.0]);
/// # Ok::<(), sinter::kernels::PackError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Gemm<'a> {
    isa: Isa,
    m: usize,
    a: ARows<'a>,
    b: PackedBRef<'a>,
    ops: &'a [EpOp<'a>],
    row0: usize,
}

impl<'a> Gemm<'a> {
    /// `C = ops(A · B)` over `m` rows on `isa`. Nothing is checked until it runs.
    pub fn new(isa: Isa, m: usize, a: ARows<'a>, b: PackedBRef<'a>, ops: &'a [EpOp<'a>]) -> Self {
        Gemm {
            isa,
            m,
            a,
            b,
            ops,
            row0: 0,
        }
    }

    /// Rows (M).
    pub fn m(&self) -> usize {
        self.m
    }
    /// B, packed.
    pub fn b(&self) -> PackedBRef<'a> {
        self.b
    }
    /// The epilogue.
    pub fn ops(&self) -> &'a [EpOp<'a>] {
        self.ops
    }
    /// Multiply-add flops (2 per multiply-add).
    pub fn flops(&self) -> usize {
        2 * self.m * self.b.k * self.b.n
    }

    /// The GEMM of rows `r` of this one: the rows of A from `r.start` on, and the same rows of
    /// the epilogue's matrix operands. Its C is the caller's rows `r` of this one's C.
    ///
    /// # Panics
    /// If `r` is not a range of `0..m`.
    pub fn rows(self, r: std::ops::Range<usize>) -> Self {
        assert!(
            r.start <= r.end && r.end <= self.m,
            "rows {r:?} of {}",
            self.m
        );
        Gemm {
            m: r.end - r.start,
            a: self.a.skip_rows(r.start),
            row0: self.row0.checked_add(r.start).expect("row overflow"),
            ..self
        }
    }

    /// The same GEMM reading its epilogue's matrix operands ([`EpOp::AddC`]) from row `row`
    /// on: row `r` adds operand row `row + r` (a convolution's sample `s` of `rows` rows
    /// reads from `s * rows`).
    pub fn operand_rows_from(self, row: usize) -> Self {
        Gemm { row0: row, ..self }
    }

    /// Runs on the calling thread, writing row `r` of C at `c[r * ldc..]`.
    ///
    /// # Panics
    /// If an operand is too short for the shapes (A, C, a per-column operand, a matrix
    /// operand's rows), K segments do not add up to K, `ldc < N`, `lda == 0` with `m > 1`,
    /// B was packed for another tier, or the tier is not available on this CPU.
    pub fn run(&self, c: &mut [f32], ldc: usize) {
        run(self.isa, &mut self.call(c, ldc));
    }

    /// All of B's column panels as one [`ColumnParts`], to be split over threads.
    ///
    /// # Panics
    /// As [`run`](Self::run); also if the epilogue has a row-wise op.
    pub fn columns(self, c: &'a mut [f32], ldc: usize) -> ColumnParts<'a> {
        assert!(
            epilogue::split_ops(self.ops).1.is_empty(),
            "row-wise epilogues cannot be split by columns"
        );
        let call = self.call(c, ldc);
        call.check();
        ColumnParts {
            isa: self.isa,
            call,
        }
    }

    /// The driver's call over every column panel; `check` validates it before any unsafe
    /// code runs.
    fn call(&self, c: &mut [f32], ldc: usize) -> GemmCall<'a> {
        GemmCall {
            m: self.m,
            a: self.a,
            b: self.b,
            c: c.as_mut_ptr(),
            c_len: c.len(),
            ldc,
            ops: self.ops,
            row0: self.row0,
            panels: 0..self.b.n.div_ceil(self.b.nr),
        }
    }
}

fn run(isa: Isa, g: &mut GemmCall<'_>) {
    g.check();
    with_tier!(isa, |t| t.gemm(g))
}

/// A Dense call over a range of its column panels, to be split and run on several threads.
/// Splitting over N never changes the bits (each output is still one FMA chain).
///
/// Sound by construction: [`split_at`](Self::split_at) and [`run`](Self::run) consume the
/// value, so every panel belongs to exactly one `ColumnParts` and is computed at most once;
/// two threads can never write (or, with K > KC, read back) the same columns. It is `Send`
/// (a part may move to another thread) but not `Sync` or `Clone`. Not for row-wise epilogues
/// (softmax), which need whole rows.
///
/// ```
/// use sinter::kernels::{ColumnParts, EpOp, Isa, PackedB, Strided};
/// let isa = Isa::Generic;
/// let (k, n) = (3, 40);
/// let w = PackedB::pack(isa, &vec![0.5; k * n], k, n).unwrap();
/// let (a, mut c) = (vec![1.0f32; 2 * k], vec![0.0f32; 2 * n]);
/// let parts = ColumnParts::new(isa, 2, Strided::new(&a, k, &mut c, n), &w, &[]);
/// let (left, right) = parts.split_at(1);
/// std::thread::scope(|s| {
///     s.spawn(move || left.run());
///     right.run();
/// });
/// assert!(c.iter().all(|&y| y == 1.5));
/// ```
///
/// Sharing one part between threads does not compile (it is not `Sync`, and `run` takes it by
/// value), so the same columns can never be written twice at once:
///
/// ```compile_fail,E0277
/// use sinter::kernels::{ColumnParts, Isa, PackedB, Strided};
/// let isa = Isa::Generic;
/// let w = PackedB::pack(isa, &[1.0; 16], 1, 16).unwrap();
/// let (a, mut c) = ([1.0f32], [0.0f32; 16]);
/// let part = ColumnParts::new(isa, 1, Strided::new(&a, 1, &mut c, 16), &w, &[]);
/// let part = &part;
/// std::thread::scope(|s| {
///     s.spawn(move || part.panels());
/// });
/// ```
#[doc(hidden)]
pub struct ColumnParts<'a> {
    isa: Isa,
    call: GemmCall<'a>,
}

// SAFETY: a `ColumnParts` writes only the columns of its own panels, which no other value
// covers (values are made only by `Gemm::columns`, which borrows `c` mutably for `'a`, and by
// `split_at`, which consumes its input and hands out disjoint halves); A, B and the ops are
// shared read-only (`EpOp` is `Sync`). It is deliberately not `Sync`: running needs ownership.
unsafe impl Send for ColumnParts<'_> {}

impl<'a> ColumnParts<'a> {
    /// `C = ops(A · B)` over all of B's column panels.
    ///
    /// # Panics
    /// As [`dense`]; also if `ops` has a row-wise activation.
    pub fn new(
        isa: Isa,
        m: usize,
        s: Strided<'a, 'a>,
        w: &'a PackedB,
        ops: &'a [EpOp<'a>],
    ) -> Self {
        Gemm::new(isa, m, ARows::new(s.a, s.lda), w.view(), ops).columns(s.c, s.ldc)
    }

    /// Column panels this part covers.
    pub fn panels(&self) -> usize {
        self.call.panels.len()
    }

    /// Splits into the first `at` panels (at most all of them) and the rest.
    pub fn split_at(self, at: usize) -> (Self, Self) {
        let mid = self.call.panels.start + at.min(self.panels());
        let (isa, call) = (self.isa, self.call);
        let left = GemmCall {
            panels: call.panels.start..mid,
            ..call.clone()
        };
        let right = GemmCall {
            panels: mid..call.panels.end,
            ..call
        };
        (
            ColumnParts { isa, call: left },
            ColumnParts { isa, call: right },
        )
    }

    /// Splits into `ways` parts of nearly equal panel counts (fewer if there are fewer panels),
    /// handed out in column order.
    pub fn split_even(self, ways: usize) -> impl Iterator<Item = ColumnParts<'a>> + Send {
        let ways = ways.clamp(1, self.panels().max(1));
        let mut rest = Some(self);
        (0..ways).rev().map_while(move |left| {
            let part = rest.take()?;
            if left == 0 {
                return Some(part);
            }
            let at = part.panels() / (left + 1);
            let (first, more) = part.split_at(at);
            rest = Some(more);
            Some(first)
        })
    }

    /// Computes this part's columns.
    pub fn run(mut self) {
        if !self.call.panels.is_empty() {
            run(self.isa, &mut self.call);
        }
    }
}

/// Applies an elementwise activation in place (the separate pass of an unfused plan).
/// A row-wise activation (softmax) treats all of `data` as one row; see [`rows`].
pub fn activation(isa: Isa, act: Activation, data: &mut [f32]) {
    if act.is_row_wise() {
        let n = data.len().max(1);
        return rows(isa, act, data, n);
    }
    with_tier!(isa, |t| t.activation(act, data))
}

/// Applies an activation to each `n`-wide row of `data`: softmax and log-softmax per row,
/// elementwise ones to every value. The same bits as the fused row epilogue.
///
/// # Panics
/// If `n` is 0 or `data` is not whole rows.
pub fn rows(isa: Isa, act: Activation, data: &mut [f32], n: usize) {
    let ops = &[EpOp::Act(act)];
    assert!(
        n > 0 && data.len().is_multiple_of(n),
        "data is whole rows of n"
    );
    with_tier!(isa, |t| t.rows(ops, data, n))
}

#[cfg(test)]
mod tests;

/// `x * scale[c] + shift[c]` with one rounding, over rows of `scale.len()` channels of
/// `data` (batch normalization, `Normalization`, `Rescaling`). Every tier gives the same bits.
///
/// # Panics
/// If `shift` and `scale` differ in length or `data` is not whole rows.
pub fn affine(isa: Isa, data: &mut [f32], scale: &[f32], shift: &[f32]) {
    assert!(
        scale.len() == shift.len() && (scale.is_empty() || data.len().is_multiple_of(scale.len())),
        "affine: {} values in rows of {} ({} shifts)",
        data.len(),
        scale.len(),
        shift.len()
    );
    with_tier!(isa, |t| t.affine(data, scale, shift))
}

/// Layer (or RMS) normalization of each `n`-wide row of `data`, in the canonical order (the
/// same bits on every tier, for every row position and batch).
///
/// # Panics
/// If `data` is not whole rows, or `gamma` / `beta` are not `n` long.
pub fn norm_rows(isa: Isa, norm: &RowNorm, data: &mut [f32], n: usize) {
    assert!(
        n > 0
            && data.len().is_multiple_of(n)
            && norm.gamma.as_ref().is_none_or(|g| g.len() == n)
            && norm.beta.as_ref().is_none_or(|b| b.len() == n),
        "norm_rows: rows of {n}"
    );
    with_tier!(isa, |t| t.norm_rows(norm, data, n))
}

/// Runs `iters` rounds of 12 independent vector FMA chains on `isa`; returns the flops done
/// (and a value to keep the loop alive). The peak the GEMM is measured against.
pub fn fma_peak_probe(isa: Isa, iters: usize) -> (usize, f32) {
    let lanes = match isa {
        Isa::Avx512 => 16,
        Isa::Avx2 | Isa::Generic => 8,
    };
    (
        iters * 12 * lanes * 2,
        with_tier!(isa, |t| t.fma_loop(iters)),
    )
}

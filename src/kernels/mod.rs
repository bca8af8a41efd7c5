//! Compute kernels: the blocked GEMM driver, microkernel tiers, epilogues and activations.
//!
//! Knows nothing about models or plans. The tier is chosen once (detection, or `SINTER_ISA`)
//! and stored by the caller; every tier computes the same bits.
//!
//! ```
//! use sinter::kernels::{self, Activation, EpOp, Isa, PackedB};
//! let isa = Isa::Generic;
//! // y = relu(x · w + b) for one row, K = 2, N = 3.
//! let w = PackedB::pack(isa, &[1.0, 2.0, 3.0, -4.0, -5.0, -6.0], Some(&[0.5, 0.5, 0.5]), 2, 3)?;
//! let mut y = [0.0f32; 3];
//! kernels::dense(isa, 1, &[1.0, 1.0], &w, &mut y, &[EpOp::Bias, EpOp::Act(Activation::RELU)]);
//! assert_eq!(y, [0.0, 0.0, 0.0]);
//! kernels::dense(isa, 1, &[1.0, 0.0], &w, &mut y, &[EpOp::Bias, EpOp::Act(Activation::RELU)]);
//! assert_eq!(y, [1.5, 2.5, 3.5]);
//! # Ok::<(), sinter::kernels::PackError>(())
//! ```
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
//! - **The GEMM driver** (`gemm.rs`): pointer arithmetic over A, packed B, bias and C.
//!   `GemmCall::check` runs before every driver call and asserts, with overflow-checked
//!   arithmetic, that A holds `(m - 1) * lda + K` values, C `(m - 1) * ldc + N`, the panel
//!   range is inside the packing, and row-wise epilogues own whole rows. Partial tiles go
//!   through a tile-sized buffer; packed B and bias are padded to whole panels.
//! - **`ColumnParts: Send`**: a part writes only its own column panels of a C borrowed
//!   mutably for its whole life; parts are split and run by value, so no panel is covered
//!   twice. `PackedB` sizes are computed with overflow checks, and `check` compares the
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
mod fused;
mod gemm;
mod math;
pub(crate) mod ops;
mod portable;
mod simd;
pub(crate) mod tune;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use activation::{Activation, SELU_ALPHA, SELU_SCALE, UnknownActivation};
pub use cache::Caches;
pub use dispatch::TileShape;
pub use gemm::{Blocking, EpOp, KB, KC, PackError, PackedB};
pub use math::RowNorm;

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
/// If slice lengths disagree with the shapes, `w` was packed for another tier, or `isa` is
/// not available on this CPU. Plans check all of this when they are compiled.
pub fn dense(isa: Isa, m: usize, a: &[f32], w: &PackedB, c: &mut [f32], ops: &[EpOp]) {
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

impl<'a> GemmCall<'a> {
    /// A call over all column panels; `check` validates it before any unsafe code runs.
    fn new(m: usize, s: Strided<'a, '_>, w: &'a PackedB, ops: &'a [EpOp]) -> Self {
        GemmCall {
            m,
            a: s.a,
            lda: s.lda,
            b: w,
            c: s.c.as_mut_ptr(),
            c_len: s.c.len(),
            ldc: s.ldc,
            ops,
            panels: 0..w.n().div_ceil(w.nr()),
        }
    }
}

/// [`dense`] with row strides (see [`Strided`]): `A` rows may overlap (`lda < K`), `C` rows
/// may be spaced wider than N. Same bits as [`dense`] on the same values.
///
/// # Panics
/// As [`dense`]; also if `lda == 0` with `m > 1`, or `ldc < N`.
pub fn dense_strided(isa: Isa, m: usize, s: Strided<'_, '_>, w: &PackedB, ops: &[EpOp]) {
    run(isa, &mut GemmCall::new(m, s, w, ops));
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
/// let w = PackedB::pack(isa, &vec![0.5; k * n], None, k, n).unwrap();
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
/// let w = PackedB::pack(isa, &[1.0; 16], None, 1, 16).unwrap();
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
// covers (values are made only by `new`, which borrows `c` mutably for `'a`, and by
// `split_at`, which consumes its input and hands out disjoint halves); A, B and the ops are
// shared read-only. It is deliberately not `Sync`: running needs ownership.
unsafe impl Send for ColumnParts<'_> {}

impl<'a> ColumnParts<'a> {
    /// `C = ops(A · B)` over all of B's column panels.
    ///
    /// # Panics
    /// As [`dense`]; also if `ops` has a row-wise activation.
    pub fn new(isa: Isa, m: usize, s: Strided<'a, 'a>, w: &'a PackedB, ops: &'a [EpOp]) -> Self {
        assert!(
            gemm::split_ops(ops).1.is_empty(),
            "row-wise epilogues cannot be split by columns"
        );
        let call = GemmCall::new(m, s, w, ops);
        call.check();
        ColumnParts { isa, call }
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
            ..call
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

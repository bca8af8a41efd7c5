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
//! The general call is a `Gemm`: A as `ARows` (strided, or K-segmented for a 2-D
//! convolution's windows), B as a `PackedBRef` (weights packed at compile time, or an
//! activation packed at run time by `pack_b`), and an epilogue whose ops carry their operands
//! (`EpOp`, including `EpOp::AddC`, a matrix added elementwise). Those types, and the passes
//! that assume shapes a plan has checked, are public only with the `internals` feature (the
//! example above is a test of the crate's own); a user's API is [`crate::Plan`], which checks
//! every shape when it compiles. Public without it: [`Isa`], [`Activation`], [`activation`]
//! (an in-place pass that cannot fail) and [`fma_peak_probe`].
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
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
mod attention;
mod buffer;
mod cache;
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
mod call;
pub(crate) mod depthwise;
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
mod direct;
mod dispatch;
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
mod epilogue;
mod fused;
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
mod gemm;
mod math;
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
mod operands;
pub(crate) mod ops;
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
mod pack;
mod passes;
mod portable;
mod simd;
pub(crate) mod tune;
#[cfg_attr(not(feature = "internals"), allow(dead_code))]
mod winograd;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use activation::{Activation, SELU_ALPHA, SELU_SCALE, UnknownActivation};
pub use attention::NoKeys;
pub use buffer::Buffer;
pub use cache::Caches;
pub use dispatch::TileShape;
pub use passes::activation;

// The GEMM's operands and the passes below the plan are public only to the test suite,
// benches and fuzz targets (feature `internals`): they panic on shapes a compiled plan has
// already checked, and their types grow with every op family.
#[cfg(feature = "internals")]
pub use internal::*;
// Without it, what only the next op families and the tests use is not dead code either.
#[cfg(not(feature = "internals"))]
pub(crate) use internal::*;

#[cfg_attr(not(feature = "internals"), allow(unused_imports))]
mod internal {
    pub use super::attention::{Attend, KeyMask, kept};
    pub use super::call::{ColumnParts, Gemm, Strided, dense, dense_strided};
    pub use super::direct::{DirectConv, FILTER_BLOCK, Planar};
    pub use super::epilogue::EpOp;
    pub use super::gemm::{Blocking, KB, KC};
    pub use super::math::RowNorm;
    pub use super::operands::{ARows, MatRef, Segment};
    pub use super::pack::{BSource, PackError, PackedB, PackedBRef, pack_b, pack_b_len};
    pub use super::passes::direct_conv;
    pub use super::passes::{affine, attention, norm_rows, rows};
    pub use super::winograd::{POSITIONS, Winograd, WinogradWeights, transform_kernel};
}

use dispatch::with_tier;
pub(crate) use passes::plain;
use std::fmt;
use std::str::FromStr;

/// An instruction-set tier. Every tier produces bit-identical results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX-512F, 6 x 64 tiles (8 x 16 and 6 x 32 for narrow layers) (x86-64).
    Avx512,
    /// AVX2 + FMA, 6 x 16 tiles (6 x 8 for narrow layers) (x86-64).
    Avx2,
    /// Portable `wide` lanes with `f32::mul_add`, 4 x 16 tiles (4 x 8) (any CPU).
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

    /// The panel width for a layer of `n` columns: the one that computes them fastest, by the
    /// columns each computes over its tile's speed. Every panel is whole but a last one of a
    /// vector or less, which computes one vector per row (see the GEMM driver); a partial
    /// last panel costs a sixth of a panel more (its masked loads and stores; measured:
    /// without the charge mobilenet_v3_small ran 2-4% slower). Each tile's speed is its
    /// tier's [`TileShape::rate`]; on AVX-512, measured on Zen 5 (`gemm` bench shapes 3136 x
    /// 64 x 64 and 3136 x 576 x 64), one vector per tile row runs at 0.72 of the widest
    /// tile's rate (too few accumulators to hide the FMA latency), two at 0.95. A 40-column
    /// layer then takes a 32-wide panel and a one-vector one rather than three 16-wide ones,
    /// 1568 x 240 x 40 308 to 262 us (Xeon 6/207). The bits never depend on the width.
    pub fn nr_for(self, n: usize) -> usize {
        let tiles = self.tiles();
        let lanes = tiles[0].nr; // the narrowest tile is one vector wide
        let speed = |nr: usize| {
            let rate = tiles.iter().find(|t| t.nr == nr).map_or(100, |t| t.rate);
            f64::from(rate.max(1)) / 100.0
        };
        let cost = |nr: usize| {
            let (whole, rest) = (n / nr, n % nr);
            let last = match rest {
                0 => 0.0,
                r if r <= lanes => lanes as f64 / speed(lanes) + lanes as f64 / 6.0,
                _ => nr as f64 / speed(nr) + nr as f64 / 6.0,
            };
            (whole * nr) as f64 / speed(nr) + last
        };
        tiles
            .iter()
            .map(|t| t.nr)
            // A tie (a layer of one vector or less) takes the narrowest: the least packed.
            .min_by(|&a, &b| cost(a).total_cmp(&cost(b)).then(a.cmp(&b)))
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

#[cfg(test)]
mod tests;

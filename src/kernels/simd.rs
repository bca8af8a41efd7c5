//! The lane vector every kernel is written against.
//!
//! Each ISA tier implements [`Simd`] once; blocking, epilogues and activation math are written
//! once over it. Every operation here has exactly one IEEE-754 result (add, sub, mul, div, sqrt,
//! a single-rounding FMA, comparisons, selects, exact bit manipulation), so any code written over
//! `Simd` computes the same bits on every tier.

use super::activation::Activation;
use super::epilogue::EpOp;

/// A vector of `LANES` f32 values.
///
/// Arithmetic is safe to call: a value can only be made by the `unsafe` [`splat`](Self::splat)
/// and [`load`](Self::load), whose callers promise the instruction set is available, so a
/// value is the proof (the capability) that every later operation on it may run. Generic code
/// that makes values from nothing is itself `unsafe` with that precondition.
pub(crate) trait Simd: Copy {
    /// Number of f32 lanes.
    const LANES: usize;
    /// Lane mask produced by comparisons.
    type Mask: Copy;

    /// All lanes `x`: the only way, with [`load`](Self::load), to make a value from nothing.
    ///
    /// # Safety
    /// This tier's instruction set is available. (Every other operation is safe: a value of
    /// an ISA-specific type exists only where its instruction set is available.)
    unsafe fn splat(x: f32) -> Self;
    /// All lanes `x`, of the tier of `self`: safe, since `self` proves the instruction set.
    #[cfg_attr(sinter_inline, inline(always))]
    fn dup(self, x: f32) -> Self {
        // SAFETY: a value of this tier exists, so its instruction set is available.
        unsafe { Self::splat(x) }
    }
    /// # Safety
    /// `p` must be valid for reading `LANES` f32 values (no alignment requirement).
    unsafe fn load(p: *const f32) -> Self;
    /// # Safety
    /// `p` must be valid for writing `LANES` f32 values (no alignment requirement).
    unsafe fn store(self, p: *mut f32);

    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    /// `self * b + c` with a single rounding.
    fn fma(self, b: Self, c: Self) -> Self;

    fn lt(self, o: Self) -> Self::Mask;
    fn eq(self, o: Self) -> Self::Mask;
    /// True in lanes holding a NaN.
    fn is_nan(self) -> Self::Mask;
    fn or_mask(a: Self::Mask, b: Self::Mask) -> Self::Mask;
    /// `m ? t : f` per lane.
    fn select(m: Self::Mask, t: Self, f: Self) -> Self;

    /// Applies `act` to `data`, out of line: compiled once per tier (inside its
    /// `#[target_feature]` entry), an inlining barrier so that the activation math is not copied
    /// into every tile shape.
    ///
    /// # Safety
    /// This tier's instruction set is available.
    unsafe fn act_slice(act: Activation, data: &mut [f32]);
    /// [`act_slice`](Self::act_slice) over `rows` rows of `cols` values, `ld` apart, from `c`:
    /// one out-of-line call per tile instead of one per row.
    ///
    /// # Safety
    /// This tier's instruction set is available; `c` is readable and writable at
    /// `r * ld + j` for `r < rows`, `j < cols`, and nothing else references those values.
    unsafe fn act_rows(act: Activation, c: *mut f32, ld: usize, rows: usize, cols: usize);
    /// Layer normalization of one row (`math::row_norm` on 8 lanes), out of line: the same
    /// code the separate pass runs.
    ///
    /// # Safety
    /// This tier's instruction set is available.
    unsafe fn norm_row(norm: &super::math::RowNorm, row: &mut [f32]);
    /// The row stage of an epilogue over one whole row, row `r` of the call's matrix operands
    /// (`epilogue::row_ops`), out of line.
    ///
    /// # Safety
    /// This tier's instruction set is available.
    unsafe fn row_stage(ops: &[EpOp<'_>], r: usize, row: &mut [f32]);

    /// Clears the sign bit.
    fn abs(self) -> Self;
    /// Magnitude of `self` with the sign bit of `sign`.
    fn copysign(self, sign: Self) -> Self;
    /// `2^k` for lanes holding integral values in `[-126, 127]`; exact.
    fn pow2i(k: Self) -> Self;
    /// For positive normal `x`: `(m, e)` with `x = m * 2^e`, `m` in `[1, 2)`, `e` integral.
    fn split_exponent(self) -> (Self, Self);

    #[cfg_attr(sinter_inline, inline(always))]
    fn gt(self, o: Self) -> Self::Mask {
        o.lt(self)
    }
    /// `max(self, o)` for non-NaN lanes (NaN handling is done once, by the caller).
    #[cfg_attr(sinter_inline, inline(always))]
    fn max_nn(self, o: Self) -> Self {
        Self::select(self.lt(o), o, self)
    }
    /// `min(self, o)` for non-NaN lanes.
    #[cfg_attr(sinter_inline, inline(always))]
    fn min_nn(self, o: Self) -> Self {
        Self::select(o.lt(self), o, self)
    }
    /// `-self`: `-0 - x` is exact and flips the sign of zeros too.
    #[cfg_attr(sinter_inline, inline(always))]
    fn neg(self) -> Self {
        self.dup(-0.0).sub(self)
    }
}

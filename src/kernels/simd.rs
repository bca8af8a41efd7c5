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
    /// Whether long elementwise chains (the transcendental activations, softmax's `exp`) run
    /// four vectors side by side ([`Quad`]): the SIMD tiers, where the core overlaps them.
    /// The portable tier, a fallback, keeps its compile time instead.
    const SIDE_BY_SIDE: bool = true;
    /// Whether the GEMM's whole tiles of two or more vectors over one block of K run the
    /// lean tile (`gemm::one_block_tile`): the SIMD tiers; the portable tier keeps its
    /// compile time (lean tiles on every shape of every tier added about 5% to the crate's
    /// release build).
    const ONE_BLOCK_TILES: bool = true;
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
    /// The first `n` lanes from `p`, zeros in the rest (a layer's last columns).
    ///
    /// # Safety
    /// This tier's instruction set is available; `n <= LANES <= 64`; `p` is valid for reading
    /// `n` values.
    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn load_part(p: *const f32, n: usize) -> Self {
        let mut buf = [0.0f32; 64];
        // SAFETY: the caller's contract; `buf` holds LANES values.
        unsafe {
            std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
            Self::load(buf.as_ptr())
        }
    }
    /// Writes the first `n` lanes to `p`, nothing past them.
    ///
    /// # Safety
    /// `n <= LANES <= 64`; `p` is valid for writing `n` values.
    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn store_part(self, p: *mut f32, n: usize) {
        let mut buf = [0.0f32; 64];
        // SAFETY: the caller's contract; `buf` holds LANES values.
        unsafe {
            self.store(buf.as_mut_ptr());
            std::ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
        }
    }

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
    /// True in lanes where `self` or `o` holds a NaN (x86: one unordered compare).
    #[cfg_attr(sinter_inline, inline(always))]
    fn either_nan(self, o: Self) -> Self::Mask {
        Self::or_mask(self.is_nan(), o.is_nan())
    }
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
    /// `self > o ? self : o` per lane: `o` where either is NaN or both are zeros (x86's
    /// `max`, one instruction there).
    #[cfg_attr(sinter_inline, inline(always))]
    fn max_or(self, o: Self) -> Self {
        Self::select(o.lt(self), self, o)
    }
    /// `self < o ? self : o` per lane (x86's `min`).
    #[cfg_attr(sinter_inline, inline(always))]
    fn min_or(self, o: Self) -> Self {
        Self::select(self.lt(o), self, o)
    }
    /// `-self`: `-0 - x` is exact and flips the sign of zeros too.
    #[cfg_attr(sinter_inline, inline(always))]
    fn neg(self) -> Self {
        self.dup(-0.0).sub(self)
    }
}

/// Four vectors of `V` as one: every operation is four independent instructions, side by
/// side. Long dependency chains (an `exp` or `erf`, ~40 operations deep) then overlap four at
/// a time within the core's scheduler, which one vector's chain alone leaves mostly idle.
/// Each lane computes exactly what `V` computes, so the bits are the same. (No array `map`
/// or `from_fn` here: those are not inlined into a tier's `#[target_feature]` function, and
/// the intrinsics they call would run out of line.)
#[derive(Clone, Copy)]
pub(crate) struct Quad<V>([V; 4]);

impl<V: Simd> Quad<V> {
    /// The four vectors at `p[0..4]`, side by side.
    ///
    /// # Safety
    /// `V`'s instruction set is available; each `p[i]` is readable for `V::LANES` values.
    #[cfg_attr(sinter_inline, inline(always))]
    pub(crate) unsafe fn gather(p: [*const f32; 4]) -> Self {
        // SAFETY: the caller's contract.
        unsafe { Quad([V::load(p[0]), V::load(p[1]), V::load(p[2]), V::load(p[3])]) }
    }
    /// Stores the four vectors at `p[0..4]`.
    ///
    /// # Safety
    /// Each `p[i]` is writable for `V::LANES` values.
    #[cfg_attr(sinter_inline, inline(always))]
    pub(crate) unsafe fn scatter(self, p: [*mut f32; 4]) {
        let [a, b, c, d] = self.0;
        // SAFETY: the caller's contract.
        unsafe { (a.store(p[0]), b.store(p[1]), c.store(p[2]), d.store(p[3])) };
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn map(self, f: impl Fn(V) -> V) -> Self {
        let [a, b, c, d] = self.0;
        Quad([f(a), f(b), f(c), f(d)])
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn zip(self, o: Self, f: impl Fn(V, V) -> V) -> Self {
        let ([a, b, c, d], [e, g, h, i]) = (self.0, o.0);
        Quad([f(a, e), f(b, g), f(c, h), f(d, i)])
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn mask(self, o: Self, f: impl Fn(V, V) -> V::Mask) -> [V::Mask; 4] {
        let ([a, b, c, d], [e, g, h, i]) = (self.0, o.0);
        [f(a, e), f(b, g), f(c, h), f(d, i)]
    }
}

impl<V: Simd> Simd for Quad<V> {
    const LANES: usize = 4 * V::LANES;
    type Mask = [V::Mask; 4];

    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn splat(x: f32) -> Self {
        // SAFETY: the caller's contract.
        let v = unsafe { V::splat(x) };
        Quad([v; 4])
    }
    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller's contract: LANES = 4 * V::LANES values are readable.
        unsafe {
            Quad([
                V::load(p),
                V::load(p.add(V::LANES)),
                V::load(p.add(2 * V::LANES)),
                V::load(p.add(3 * V::LANES)),
            ])
        }
    }
    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn store(self, p: *mut f32) {
        let [a, b, c, d] = self.0;
        // SAFETY: the caller's contract: LANES = 4 * V::LANES values are writable.
        unsafe {
            a.store(p);
            b.store(p.add(V::LANES));
            c.store(p.add(2 * V::LANES));
            d.store(p.add(3 * V::LANES));
        }
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn add(self, o: Self) -> Self {
        self.zip(o, V::add)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn sub(self, o: Self) -> Self {
        self.zip(o, V::sub)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn mul(self, o: Self) -> Self {
        self.zip(o, V::mul)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn div(self, o: Self) -> Self {
        self.zip(o, V::div)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn fma(self, b: Self, c: Self) -> Self {
        let ([a0, a1, a2, a3], [b0, b1, b2, b3], [c0, c1, c2, c3]) = (self.0, b.0, c.0);
        Quad([
            a0.fma(b0, c0),
            a1.fma(b1, c1),
            a2.fma(b2, c2),
            a3.fma(b3, c3),
        ])
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn lt(self, o: Self) -> Self::Mask {
        self.mask(o, V::lt)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn eq(self, o: Self) -> Self::Mask {
        self.mask(o, V::eq)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn is_nan(self) -> Self::Mask {
        let [a, b, c, d] = self.0;
        [a.is_nan(), b.is_nan(), c.is_nan(), d.is_nan()]
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn or_mask(a: Self::Mask, b: Self::Mask) -> Self::Mask {
        let ([a0, a1, a2, a3], [b0, b1, b2, b3]) = (a, b);
        [
            V::or_mask(a0, b0),
            V::or_mask(a1, b1),
            V::or_mask(a2, b2),
            V::or_mask(a3, b3),
        ]
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn select(m: Self::Mask, t: Self, f: Self) -> Self {
        let ([m0, m1, m2, m3], [t0, t1, t2, t3], [f0, f1, f2, f3]) = (m, t.0, f.0);
        Quad([
            V::select(m0, t0, f0),
            V::select(m1, t1, f1),
            V::select(m2, t2, f2),
            V::select(m3, t3, f3),
        ])
    }
    // The slice and row entry points are `V`'s own (they process memory, not one value).
    unsafe fn act_slice(act: Activation, data: &mut [f32]) {
        // SAFETY: the caller's contract.
        unsafe { V::act_slice(act, data) }
    }
    unsafe fn act_rows(act: Activation, c: *mut f32, ld: usize, rows: usize, cols: usize) {
        // SAFETY: the caller's contract.
        unsafe { V::act_rows(act, c, ld, rows, cols) }
    }
    unsafe fn norm_row(norm: &super::math::RowNorm, row: &mut [f32]) {
        // SAFETY: the caller's contract.
        unsafe { V::norm_row(norm, row) }
    }
    unsafe fn row_stage(ops: &[EpOp<'_>], r: usize, row: &mut [f32]) {
        // SAFETY: the caller's contract.
        unsafe { V::row_stage(ops, r, row) }
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn abs(self) -> Self {
        self.map(V::abs)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn copysign(self, sign: Self) -> Self {
        self.zip(sign, V::copysign)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn pow2i(k: Self) -> Self {
        k.map(V::pow2i)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn split_exponent(self) -> (Self, Self) {
        let [a, b, c, d] = self.0;
        let (a, b, c, d) = (
            a.split_exponent(),
            b.split_exponent(),
            c.split_exponent(),
            d.split_exponent(),
        );
        (Quad([a.0, b.0, c.0, d.0]), Quad([a.1, b.1, c.1, d.1]))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn max_nn(self, o: Self) -> Self {
        self.zip(o, V::max_nn)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn min_nn(self, o: Self) -> Self {
        self.zip(o, V::min_nn)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn neg(self) -> Self {
        self.map(V::neg)
    }
}

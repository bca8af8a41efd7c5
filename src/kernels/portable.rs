//! The portable tier: `wide::f32x8` lanes (SSE2 on a default x86-64 build, NEON on aarch64) and
//! `fused::fused` for the single-rounding FMA (an exact f64 emulation where the target has no
//! FMA instruction).

use super::activation::Activation;
use super::epilogue::EpOp;
use super::simd::Simd;
use wide::f32x8;

/// Portable 8-lane vector.
#[derive(Clone, Copy)]
pub(crate) struct Portable(f32x8);

impl Portable {
    #[cfg_attr(sinter_inline, inline(always))]
    fn lanes(self) -> [f32; 8] {
        self.0.to_array()
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn map(self, f: impl Fn(f32) -> f32) -> Self {
        Portable(f32x8::from(self.lanes().map(f)))
    }
}

impl Simd for Portable {
    const LANES: usize = 8;
    const SIDE_BY_SIDE: bool = false;
    const ONE_BLOCK_TILES: bool = false;
    type Mask = f32x8;

    #[inline(never)]
    unsafe fn act_slice(act: Activation, data: &mut [f32]) {
        // SAFETY: one row of `data.len()` values is `data` (the row entry holds the tier's
        // only copy of the activation math).
        unsafe { Self::act_rows(act, data.as_mut_ptr(), data.len(), 1, data.len()) }
    }
    #[inline(never)]
    unsafe fn act_rows(act: Activation, c: *mut f32, ld: usize, rows: usize, cols: usize) {
        // SAFETY: the caller's contract; portable lanes need no CPU feature.
        unsafe { super::math::apply_rows::<Portable>(act, c, ld, rows, cols) }
    }
    #[inline(never)]
    unsafe fn norm_row(norm: &super::math::RowNorm, row: &mut [f32]) {
        // SAFETY: portable lanes need no CPU feature; Portable has 8 lanes.
        unsafe { super::math::row_norm::<Portable>(row, norm) }
    }
    #[inline(never)]
    unsafe fn row_stage(ops: &[EpOp<'_>], r: usize, row: &mut [f32]) {
        // SAFETY: portable lanes need no CPU feature.
        unsafe { super::epilogue::row_ops::<Portable, Portable>(ops, r, row) }
    }

    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn splat(x: f32) -> Self {
        Portable(f32x8::splat(x))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 8 readable f32 at `p`.
        Portable(f32x8::from(unsafe {
            p.cast::<[f32; 8]>().read_unaligned()
        }))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees 8 writable f32 at `p`.
        unsafe { p.cast::<[f32; 8]>().write_unaligned(self.lanes()) }
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn add(self, o: Self) -> Self {
        Portable(self.0 + o.0)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn sub(self, o: Self) -> Self {
        Portable(self.0 - o.0)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn mul(self, o: Self) -> Self {
        Portable(self.0 * o.0)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn div(self, o: Self) -> Self {
        Portable(self.0 / o.0)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn fma(self, b: Self, c: Self) -> Self {
        let (a, b, c) = (self.lanes(), b.lanes(), c.lanes());
        Portable(f32x8::from(std::array::from_fn::<f32, 8, _>(|i| {
            super::fused::fused(a[i], b[i], c[i])
        })))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn lt(self, o: Self) -> f32x8 {
        self.0.simd_lt(o.0)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn eq(self, o: Self) -> f32x8 {
        self.0.simd_eq(o.0)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn is_nan(self) -> f32x8 {
        self.0.is_nan()
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn or_mask(a: f32x8, b: f32x8) -> f32x8 {
        a | b
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn select(m: f32x8, t: Self, f: Self) -> Self {
        Portable(m.bitselect(t.0, f.0))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn abs(self) -> Self {
        self.map(f32::abs)
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn copysign(self, sign: Self) -> Self {
        let (a, s) = (self.lanes(), sign.lanes());
        Portable(f32x8::from(std::array::from_fn::<f32, 8, _>(|i| {
            a[i].copysign(s[i])
        })))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn pow2i(k: Self) -> Self {
        k.map(|k| f32::from_bits((((k as i32) + 127) as u32) << 23))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn split_exponent(self) -> (Self, Self) {
        let b = self.lanes().map(f32::to_bits);
        let m = b.map(|b| f32::from_bits((b & 0x007f_ffff) | 0x3f80_0000));
        let e = b.map(|b| ((b >> 23) & 0xff) as f32 - 127.0);
        (Portable(f32x8::from(m)), Portable(f32x8::from(e)))
    }
}

/// The portable tier's token: always available.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PortableTier;

/// Driver entry for the portable tier (the same shape as the `#[target_feature]` entries).
///
/// # Safety
/// `g.check()` holds and `g.b.nr() == NV * 8`.
unsafe fn gemm_portable<const NV: usize, const MR: usize>(g: &mut super::gemm::GemmCall<'_>) {
    // SAFETY: portable lanes need no CPU feature; the rest is the caller's contract.
    unsafe { super::gemm::driver::<Portable, Portable, MR, NV>(g) }
}

impl super::dispatch::Tier for PortableTier {
    // 4 rows (not 6): the fallback tier's speed matters less than the crate's build time
    // (each row count up to MR is compiled per panel width).
    super::dispatch::tiles!(8, gemm_portable, [(1, 4, 72), (2, 4, 95)]);
    fn activation(self, act: Activation, data: &mut [f32]) {
        // SAFETY: portable lanes need no CPU feature.
        unsafe { Portable::act_slice(act, data) }
    }
    fn rows(self, ops: &[EpOp<'_>], data: &mut [f32], n: usize) {
        for (r, row) in data.chunks_exact_mut(n).enumerate() {
            // SAFETY: portable lanes need no CPU feature.
            unsafe { super::epilogue::row_ops::<Portable, Portable>(ops, r, row) };
        }
    }
    fn plain<L: super::ops::PlainLoop>(self, l: &L, x: &[f32], y: &mut [f32], s: &mut [f32]) {
        // SAFETY: portable lanes need no CPU feature.
        unsafe { l.run::<Portable>(x, y, s) };
    }
    fn direct_conv(
        self,
        d: &super::direct::DirectConv,
        kernel: &[f32],
        ops: &[EpOp<'_>],
        x: &[f32],
        y: &mut [f32],
        scratch: &mut [f32],
    ) {
        // SAFETY: portable lanes need no CPU feature; 4 and 2 vectors of 8 are 32 and 16.
        unsafe { d.run::<Portable, 4, 2, 2, 4>(kernel, ops, x, y, scratch) }
    }
    fn winograd_in(
        self,
        w: &super::winograd::Winograd,
        x: &[f32],
        rows: std::ops::Range<usize>,
        v: &mut [f32],
        edge: &mut [f32],
    ) {
        // SAFETY: portable lanes need no CPU feature.
        unsafe { w.input::<Portable>(x, rows, v, edge) }
    }
    fn winograd_out(
        self,
        w: &super::winograd::Winograd,
        m: &[f32],
        rows: std::ops::Range<usize>,
        y: &mut [f32],
        ops: &[EpOp<'_>],
    ) {
        // SAFETY: portable lanes need no CPU feature.
        unsafe { w.output::<Portable, _>(self, m, rows, y, ops) }
    }
    fn affine(self, data: &mut [f32], scale: &[f32], shift: &[f32]) {
        // SAFETY: portable lanes need no CPU feature.
        unsafe { super::math::affine_slice::<Portable>(data, scale, shift) }
    }
    fn norm_rows(self, norm: &super::math::RowNorm, data: &mut [f32], n: usize) {
        for row in data.chunks_exact_mut(n) {
            // SAFETY: portable lanes need no CPU feature.
            unsafe { Portable::norm_row(norm, row) };
        }
    }
    fn fma_loop(self, iters: usize) -> f32 {
        // SAFETY: portable lanes need no CPU feature.
        unsafe { super::gemm::fma_loop::<Portable>(iters) }
    }
    fn attend(self, a: &super::attention::Attend<'_>, out: &mut [f32], scratch: &mut [f32]) {
        // SAFETY: portable lanes need no CPU feature; the caller checked `a.fits`.
        unsafe { super::attention::attend::<Portable, Portable, 4>(a, out, scratch) }
    }
}

//! AVX-512F lanes (`__m512`).
//!
//! Invariant of this module: an [`Avx512`] value is only made by the `unsafe` `Simd::splat` and
//! `Simd::load`, whose callers guarantee the CPU has the instruction set (they run inside
//! `#[target_feature(enable = "avx512f,avx2,fma")]` functions entered through the capability token). A value is therefore
//! the proof that each intrinsic call below is sound.

use crate::kernels::activation::Activation;
use crate::kernels::epilogue::EpOp;
use crate::kernels::simd::Simd;
use std::arch::x86_64::*;

/// 16 f32 lanes in a zmm register.
#[derive(Clone, Copy)]
pub(crate) struct Avx512(__m512);

macro_rules! avx512 {
    ($e:expr) => {
        // SAFETY: AVX-512F are available wherever an `Avx512` value exists (module invariant).
        unsafe { $e }
    };
}

impl Simd for Avx512 {
    const LANES: usize = 16;
    type Mask = __mmask16;

    unsafe fn act_slice(act: Activation, data: &mut [f32]) {
        // SAFETY: the caller guarantees the ISA (as the trait requires).
        unsafe { super::act_avx512(act, data) }
    }
    unsafe fn act_rows(act: Activation, c: *mut f32, ld: usize, rows: usize, cols: usize) {
        // SAFETY: the caller's contract (ISA and extents).
        unsafe { super::act_rows_avx512(act, c, ld, rows, cols) }
    }
    unsafe fn norm_row(norm: &super::super::math::RowNorm, row: &mut [f32]) {
        // SAFETY: as above.
        unsafe { super::norm_row_avx512(norm, row) }
    }
    unsafe fn row_stage(ops: &[EpOp<'_>], r: usize, row: &mut [f32]) {
        // SAFETY: as above.
        unsafe { super::row_avx512(ops, r, row) }
    }

    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn splat(x: f32) -> Self {
        // SAFETY: the caller guarantees AVX-512F (the trait's contract).
        Avx512(unsafe { _mm512_set1_ps(x) })
    }
    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 16 readable f32 at `p`; AVX-512 per module invariant.
        Avx512(unsafe { _mm512_loadu_ps(p) })
    }
    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees 16 writable f32 at `p`; AVX-512 per module invariant.
        unsafe { _mm512_storeu_ps(p, self.0) }
    }
    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn load_part(p: *const f32, n: usize) -> Self {
        let m = ((1u32 << n.min(16)) - 1) as __mmask16;
        // SAFETY: masked-off lanes are not read (no fault); the caller guarantees `n`
        // readable f32 at `p`; AVX-512 per module invariant.
        Avx512(unsafe { _mm512_maskz_loadu_ps(m, p) })
    }
    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn store_part(self, p: *mut f32, n: usize) {
        let m = ((1u32 << n.min(16)) - 1) as __mmask16;
        // SAFETY: masked-off lanes are not written; the caller guarantees `n` writable f32
        // at `p`; AVX-512 per module invariant.
        unsafe { _mm512_mask_storeu_ps(p, m, self.0) }
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn add(self, o: Self) -> Self {
        Avx512(avx512!(_mm512_add_ps(self.0, o.0)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn sub(self, o: Self) -> Self {
        Avx512(avx512!(_mm512_sub_ps(self.0, o.0)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn mul(self, o: Self) -> Self {
        Avx512(avx512!(_mm512_mul_ps(self.0, o.0)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn div(self, o: Self) -> Self {
        Avx512(avx512!(_mm512_div_ps(self.0, o.0)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn fma(self, b: Self, c: Self) -> Self {
        Avx512(avx512!(_mm512_fmadd_ps(self.0, b.0, c.0)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn lt(self, o: Self) -> __mmask16 {
        avx512!(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(self.0, o.0))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn eq(self, o: Self) -> __mmask16 {
        avx512!(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(self.0, o.0))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn is_nan(self) -> __mmask16 {
        avx512!(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(self.0, self.0))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn either_nan(self, o: Self) -> __mmask16 {
        avx512!(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(self.0, o.0))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn or_mask(a: __mmask16, b: __mmask16) -> __mmask16 {
        a | b
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn max_or(self, o: Self) -> Self {
        Avx512(avx512!(_mm512_max_ps(self.0, o.0)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn min_or(self, o: Self) -> Self {
        Avx512(avx512!(_mm512_min_ps(self.0, o.0)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn select(m: __mmask16, t: Self, f: Self) -> Self {
        Avx512(avx512!(_mm512_mask_blend_ps(m, f.0, t.0)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn abs(self) -> Self {
        Avx512(avx512!(_mm512_abs_ps(self.0)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn copysign(self, sign: Self) -> Self {
        let s = avx512!(_mm512_set1_epi32(i32::MIN));
        let (a, b) = avx512!((_mm512_castps_si512(self.0), _mm512_castps_si512(sign.0)));
        Avx512(avx512!(_mm512_castsi512_ps(_mm512_or_si512(
            _mm512_andnot_si512(s, a),
            _mm512_and_si512(s, b)
        ))))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn pow2i(k: Self) -> Self {
        let i = avx512!(_mm512_add_epi32(
            _mm512_cvttps_epi32(k.0),
            _mm512_set1_epi32(127)
        ));
        Avx512(avx512!(_mm512_castsi512_ps(_mm512_slli_epi32::<23>(i))))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn split_exponent(self) -> (Self, Self) {
        let b = avx512!(_mm512_castps_si512(self.0));
        let m = avx512!(_mm512_or_si512(
            _mm512_and_si512(b, _mm512_set1_epi32(0x007f_ffff)),
            _mm512_set1_epi32(0x3f80_0000)
        ));
        let e = avx512!(_mm512_sub_epi32(
            _mm512_and_si512(_mm512_srli_epi32::<23>(b), _mm512_set1_epi32(0xff)),
            _mm512_set1_epi32(127)
        ));
        (
            Avx512(avx512!(_mm512_castsi512_ps(m))),
            Avx512(avx512!(_mm512_cvtepi32_ps(e))),
        )
    }
}

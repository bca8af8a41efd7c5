//! AVX2 + FMA lanes (`__m256`).
//!
//! Invariant of this module: an [`Avx2`] value is only made by the `unsafe` `Simd::splat` and
//! `Simd::load`, whose callers guarantee the CPU has the instruction set (they run inside
//! `#[target_feature(enable = "avx2,fma")]` functions entered through the capability token). A value is therefore
//! the proof that each intrinsic call below is sound.

use crate::kernels::activation::Activation;
use crate::kernels::epilogue::EpOp;
use crate::kernels::simd::Simd;
use std::arch::x86_64::*;

/// 8 f32 lanes in a ymm register.
#[derive(Clone, Copy)]
pub(crate) struct Avx2(__m256);

macro_rules! avx2 {
    ($e:expr) => {
        // SAFETY: AVX2 and FMA are available wherever an `Avx2` value exists (module invariant).
        unsafe { $e }
    };
}

impl Simd for Avx2 {
    const LANES: usize = 8;
    type Mask = __m256;

    unsafe fn act_slice(act: Activation, data: &mut [f32]) {
        // SAFETY: the caller guarantees the ISA (as the trait requires).
        unsafe { super::act_avx2(act, data) }
    }
    unsafe fn act_rows(act: Activation, c: *mut f32, ld: usize, rows: usize, cols: usize) {
        // SAFETY: the caller's contract (ISA and extents).
        unsafe { super::act_rows_avx2(act, c, ld, rows, cols) }
    }
    unsafe fn norm_row(norm: &super::super::math::RowNorm, row: &mut [f32]) {
        // SAFETY: as above.
        unsafe { super::norm_row_avx2(norm, row) }
    }
    unsafe fn row_stage(ops: &[EpOp<'_>], r: usize, row: &mut [f32]) {
        // SAFETY: as above.
        unsafe { super::row_avx2(ops, r, row) }
    }

    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn splat(x: f32) -> Self {
        // SAFETY: the caller guarantees AVX2 (the trait's contract).
        Avx2(unsafe { _mm256_set1_ps(x) })
    }
    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 8 readable f32 at `p`; AVX per module invariant.
        Avx2(unsafe { _mm256_loadu_ps(p) })
    }
    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees 8 writable f32 at `p`; AVX per module invariant.
        unsafe { _mm256_storeu_ps(p, self.0) }
    }
    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn load_part(p: *const f32, n: usize) -> Self {
        // SAFETY: masked-off lanes are not read (no fault); the caller guarantees `n`
        // readable f32 at `p`; AVX per module invariant.
        Avx2(unsafe { _mm256_maskload_ps(p, first_lanes(n)) })
    }
    #[cfg_attr(sinter_inline, inline(always))]
    unsafe fn store_part(self, p: *mut f32, n: usize) {
        // SAFETY: masked-off lanes are not written; the caller guarantees `n` writable f32
        // at `p`; AVX per module invariant.
        unsafe { _mm256_maskstore_ps(p, first_lanes(n), self.0) }
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn add(self, o: Self) -> Self {
        Avx2(avx2!(_mm256_add_ps(self.0, o.0)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn sub(self, o: Self) -> Self {
        Avx2(avx2!(_mm256_sub_ps(self.0, o.0)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn mul(self, o: Self) -> Self {
        Avx2(avx2!(_mm256_mul_ps(self.0, o.0)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn div(self, o: Self) -> Self {
        Avx2(avx2!(_mm256_div_ps(self.0, o.0)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn fma(self, b: Self, c: Self) -> Self {
        Avx2(avx2!(_mm256_fmadd_ps(self.0, b.0, c.0)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn lt(self, o: Self) -> __m256 {
        avx2!(_mm256_cmp_ps::<_CMP_LT_OQ>(self.0, o.0))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn eq(self, o: Self) -> __m256 {
        avx2!(_mm256_cmp_ps::<_CMP_EQ_OQ>(self.0, o.0))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn is_nan(self) -> __m256 {
        avx2!(_mm256_cmp_ps::<_CMP_UNORD_Q>(self.0, self.0))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn either_nan(self, o: Self) -> __m256 {
        avx2!(_mm256_cmp_ps::<_CMP_UNORD_Q>(self.0, o.0))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn or_mask(a: __m256, b: __m256) -> __m256 {
        avx2!(_mm256_or_ps(a, b))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn max_or(self, o: Self) -> Self {
        Avx2(avx2!(_mm256_max_ps(self.0, o.0)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn min_or(self, o: Self) -> Self {
        Avx2(avx2!(_mm256_min_ps(self.0, o.0)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn select(m: __m256, t: Self, f: Self) -> Self {
        Avx2(avx2!(_mm256_blendv_ps(f.0, t.0, m)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn abs(self) -> Self {
        Avx2(avx2!(_mm256_andnot_ps(_mm256_set1_ps(-0.0), self.0)))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn copysign(self, sign: Self) -> Self {
        let s = avx2!(_mm256_set1_ps(-0.0));
        Avx2(avx2!(_mm256_or_ps(
            _mm256_andnot_ps(s, self.0),
            _mm256_and_ps(s, sign.0)
        )))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn pow2i(k: Self) -> Self {
        let i = avx2!(_mm256_add_epi32(
            _mm256_cvttps_epi32(k.0),
            _mm256_set1_epi32(127)
        ));
        Avx2(avx2!(_mm256_castsi256_ps(_mm256_slli_epi32::<23>(i))))
    }
    #[cfg_attr(sinter_inline, inline(always))]
    fn split_exponent(self) -> (Self, Self) {
        let b = avx2!(_mm256_castps_si256(self.0));
        let m = avx2!(_mm256_or_si256(
            _mm256_and_si256(b, _mm256_set1_epi32(0x007f_ffff)),
            _mm256_set1_epi32(0x3f80_0000)
        ));
        let e = avx2!(_mm256_sub_epi32(
            _mm256_and_si256(_mm256_srli_epi32::<23>(b), _mm256_set1_epi32(0xff)),
            _mm256_set1_epi32(127)
        ));
        (
            Avx2(avx2!(_mm256_castsi256_ps(m))),
            Avx2(avx2!(_mm256_cvtepi32_ps(e))),
        )
    }
}

/// A mask of the first `n` of 8 lanes (the sign bit set), for the masked loads and stores.
///
/// # Safety
/// AVX is available.
#[cfg_attr(sinter_inline, inline(always))]
unsafe fn first_lanes(n: usize) -> __m256i {
    const IDS: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];
    // SAFETY: 8 values from `8 - n` (n <= 8) are inside IDS; AVX is the caller's contract.
    unsafe { _mm256_loadu_si256(IDS.as_ptr().add(8 - n.min(8)).cast()) }
}

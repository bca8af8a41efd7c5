//! x86-64 tiers. Capability tokens prove the CPU check once; entry points take the token.

pub(crate) mod avx2;
pub(crate) mod avx512;

use super::activation::Activation;
use super::attention::{self, Attend};
use super::direct::DirectConv;
use super::dispatch::{Tier, tiles};
use super::epilogue::{self, EpOp};
use super::gemm::{self, GemmCall};
use super::math::{self, RowNorm};
use super::ops;
use super::winograd::Winograd;
use avx2::Avx2;
use avx512::Avx512;
use std::ops::Range;

/// Proof that the CPU has AVX2 and FMA.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2Token(());

impl Avx2Token {
    pub(crate) fn new() -> Option<Self> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
            .then_some(Avx2Token(()))
    }
}

impl Tier for Avx2Token {
    // 16 ymm registers: 6 x 16 (12 accumulators), 6 x 8 for narrow layers, 3 x 24 for
    // widths of three vectors (4 x 24 needs all 16 registers and spilled: 2x slower).
    // Rates: one vector per row hides too little FMA latency; 3 x 24 loads 6 values per 9
    // FMAs and runs 2-4% below 6 x 16 on a long K (256 x 1024 x 1024, 128 x 384 x 1536),
    // but a width of 24 or 72 is whole panels (on 16-wide ones it ends in a one-vector
    // panel): 11-15% faster on a short K (3136 x 16 x 72, 784 x 72 x 24 on Zen 3).
    tiles!(8, gemm_avx2, [(1, 6, 72), (2, 6, 95), (3, 3, 92)]);
    fn activation(self, act: Activation, data: &mut [f32]) {
        // SAFETY: the token proves AVX2+FMA.
        unsafe { act_avx2(act, data) }
    }
    fn rows(self, ops: &[EpOp<'_>], data: &mut [f32], n: usize) {
        // SAFETY: the token proves AVX2+FMA.
        unsafe { rows_avx2(ops, data, n) }
    }
    fn affine(self, data: &mut [f32], scale: &[f32], shift: &[f32]) {
        // SAFETY: the token proves AVX2+FMA.
        unsafe { affine_avx2(data, scale, shift) }
    }
    fn plain<L: ops::PlainLoop>(self, l: &L, x: &[f32], y: &mut [f32], s: &mut [f32]) {
        // SAFETY: the token proves AVX2+FMA.
        unsafe { plain_avx2(l, x, y, s) }
    }
    fn winograd_in(
        self,
        w: &Winograd,
        x: &[f32],
        rows: Range<usize>,
        v: &mut [f32],
        t: &mut [f32],
    ) {
        // SAFETY: the token proves AVX2+FMA.
        unsafe { winograd_in_avx2(w, x, rows, v, t) }
    }
    fn direct_conv(
        self,
        d: &DirectConv,
        kernel: &[f32],
        ops: &[EpOp<'_>],
        x: &[f32],
        y: &mut [f32],
        scratch: &mut [f32],
    ) {
        // SAFETY: the token proves AVX2+FMA.
        unsafe { direct_avx2(d, kernel, ops, x, y, scratch) }
    }
    fn winograd_out(
        self,
        w: &Winograd,
        m: &[f32],
        rows: Range<usize>,
        y: &mut [f32],
        ops: &[EpOp<'_>],
    ) {
        // SAFETY: the token proves AVX2+FMA.
        unsafe { winograd_out_avx2(self, w, m, rows, y, ops) }
    }
    fn norm_rows(self, norm: &RowNorm, data: &mut [f32], n: usize) {
        // SAFETY: the token proves AVX2+FMA.
        unsafe { norm_avx2(norm, data, n) }
    }
    fn fma_loop(self, iters: usize) -> f32 {
        // SAFETY: the token proves AVX2+FMA.
        unsafe { fma_avx2(iters) }
    }
    fn attend(self, a: &Attend<'_>, out: &mut [f32], scratch: &mut [f32]) {
        // SAFETY: the token proves AVX2+FMA; the caller checked `a.fits`.
        unsafe { attend_avx2(a, out, scratch) }
    }
}

/// Proof that the CPU has AVX-512F (and AVX2+FMA, which every AVX-512 CPU has).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512Token(());

impl Avx512Token {
    pub(crate) fn new() -> Option<Self> {
        (is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma"))
        .then_some(Avx512Token(()))
    }
}

impl Tier for Avx512Token {
    // 32 zmm registers: 8 x 16, 6 x 32 (12 accumulators), 6 x 64 (24). Each tile compiles
    // once per row count up to its rows: 6 rows for 32-wide panels, not 8, kept the crate's
    // release rebuild 2 to 3 s of CPU shorter with no measured change (MNIST convnet at batch
    // 64, mobilenet_v3_small at batch 1, mnist-mlp at batch 1: 0.99, 1.00, 0.99x).
    tiles!(16, gemm_avx512, [(1, 8, 72), (2, 6, 95), (4, 6, 100)]);
    fn activation(self, act: Activation, data: &mut [f32]) {
        // SAFETY: the token proves AVX-512F.
        unsafe { act_avx512(act, data) }
    }
    fn rows(self, ops: &[EpOp<'_>], data: &mut [f32], n: usize) {
        // SAFETY: the token proves AVX-512F and AVX2.
        unsafe { rows_avx512(ops, data, n) }
    }
    fn affine(self, data: &mut [f32], scale: &[f32], shift: &[f32]) {
        // SAFETY: the token proves AVX-512F.
        unsafe { affine_avx512(data, scale, shift) }
    }
    fn plain<L: ops::PlainLoop>(self, l: &L, x: &[f32], y: &mut [f32], s: &mut [f32]) {
        // SAFETY: the token proves AVX-512F.
        unsafe { plain_avx512(l, x, y, s) }
    }
    fn winograd_in(
        self,
        w: &Winograd,
        x: &[f32],
        rows: Range<usize>,
        v: &mut [f32],
        t: &mut [f32],
    ) {
        // SAFETY: the token proves AVX-512F.
        unsafe { winograd_in_avx512(w, x, rows, v, t) }
    }
    fn direct_conv(
        self,
        d: &DirectConv,
        kernel: &[f32],
        ops: &[EpOp<'_>],
        x: &[f32],
        y: &mut [f32],
        scratch: &mut [f32],
    ) {
        // SAFETY: the token proves AVX-512F.
        unsafe { direct_avx512(d, kernel, ops, x, y, scratch) }
    }
    fn winograd_out(
        self,
        w: &Winograd,
        m: &[f32],
        rows: Range<usize>,
        y: &mut [f32],
        ops: &[EpOp<'_>],
    ) {
        // SAFETY: the token proves AVX-512F.
        unsafe { winograd_out_avx512(self, w, m, rows, y, ops) }
    }
    fn norm_rows(self, norm: &RowNorm, data: &mut [f32], n: usize) {
        // SAFETY: the token proves AVX-512F.
        unsafe { norm_avx512(norm, data, n) }
    }
    fn fma_loop(self, iters: usize) -> f32 {
        // SAFETY: the token proves AVX-512F.
        unsafe { fma_avx512(iters) }
    }
    fn attend(self, a: &Attend<'_>, out: &mut [f32], scratch: &mut [f32]) {
        // SAFETY: the token proves AVX-512F; the caller checked `a.fits`.
        unsafe { attend_avx512(a, out, scratch) }
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn gemm_avx2<const NV: usize, const MR: usize>(g: &mut GemmCall<'_>) {
    // SAFETY: features enabled on this function; extents and width checked by the caller.
    unsafe { gemm::driver::<Avx2, Avx2, MR, NV>(g) }
}

/// Out of line (see `Simd::act_slice`): the activation math is compiled once per tier.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
pub(super) unsafe fn act_avx2(act: Activation, data: &mut [f32]) {
    // SAFETY: features enabled on this function; one row of `data.len()` values is `data`.
    // (The row entry holds the tier's only copy of the activation math.)
    unsafe { act_rows_avx2(act, data.as_mut_ptr(), data.len(), 1, data.len()) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(ops: &[EpOp<'_>], data: &mut [f32], n: usize) {
    for (r, row) in data.chunks_exact_mut(n).enumerate() {
        // SAFETY: features enabled on this function.
        unsafe { row_avx2(ops, r, row) };
    }
}

/// Out of line (see `Simd::row_stage`).
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
pub(super) unsafe fn row_avx2(ops: &[EpOp<'_>], r: usize, row: &mut [f32]) {
    // SAFETY: features enabled on this function.
    unsafe { epilogue::row_ops::<Avx2, Avx2>(ops, r, row) };
}

#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gemm_avx512<const NV: usize, const MR: usize>(g: &mut GemmCall<'_>) {
    // SAFETY: features enabled on this function; extents and width checked by the caller.
    unsafe { gemm::driver::<Avx512, Avx2, MR, NV>(g) }
}

/// Out of line (see `Simd::act_slice`): the activation math is compiled once per tier.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline(never)]
pub(super) unsafe fn act_avx512(act: Activation, data: &mut [f32]) {
    // SAFETY: features enabled on this function; one row of `data.len()` values is `data`.
    // (The row entry holds the tier's only copy of the activation math.)
    unsafe { act_rows_avx512(act, data.as_mut_ptr(), data.len(), 1, data.len()) }
}

#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn rows_avx512(ops: &[EpOp<'_>], data: &mut [f32], n: usize) {
    for (r, row) in data.chunks_exact_mut(n).enumerate() {
        // SAFETY: features enabled on this function.
        unsafe { row_avx512(ops, r, row) };
    }
}

/// Out of line (see `Simd::row_stage`).
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline(never)]
pub(super) unsafe fn row_avx512(ops: &[EpOp<'_>], r: usize, row: &mut [f32]) {
    // SAFETY: features enabled on this function.
    unsafe { epilogue::row_ops::<Avx512, Avx2>(ops, r, row) };
}

#[target_feature(enable = "avx2,fma")]
fn fma_avx2(iters: usize) -> f32 {
    // SAFETY: features enabled on this function.
    unsafe { gemm::fma_loop::<Avx2>(iters) }
}

#[target_feature(enable = "avx512f,avx2,fma")]
fn fma_avx512(iters: usize) -> f32 {
    // SAFETY: features enabled on this function.
    unsafe { gemm::fma_loop::<Avx512>(iters) }
}

/// Out of line (see `Simd::act_rows`).
///
/// # Safety
/// As `Simd::act_rows`.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
pub(super) unsafe fn act_rows_avx2(
    act: Activation,
    c: *mut f32,
    ld: usize,
    rows: usize,
    cols: usize,
) {
    // SAFETY: features enabled on this function; extents are the caller's contract.
    unsafe { math::apply_rows::<Avx2>(act, c, ld, rows, cols) }
}

/// Out of line (see `Simd::act_rows`).
///
/// # Safety
/// As `Simd::act_rows`.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline(never)]
pub(super) unsafe fn act_rows_avx512(
    act: Activation,
    c: *mut f32,
    ld: usize,
    rows: usize,
    cols: usize,
) {
    // SAFETY: features enabled on this function; extents are the caller's contract.
    unsafe { math::apply_rows::<Avx512>(act, c, ld, rows, cols) }
}

#[target_feature(enable = "avx2,fma")]
fn plain_avx2<L: ops::PlainLoop>(l: &L, x: &[f32], y: &mut [f32], s: &mut [f32]) {
    // SAFETY: features enabled on this function.
    unsafe { l.run::<Avx2>(x, y, s) }
}

#[target_feature(enable = "avx2,fma")]
fn direct_avx2(
    d: &DirectConv,
    kernel: &[f32],
    ops: &[EpOp<'_>],
    x: &[f32],
    y: &mut [f32],
    scratch: &mut [f32],
) {
    // SAFETY: features enabled on this function; 4 and 2 vectors of Avx2's lanes are 32
    // and 16.
    unsafe { d.run::<Avx2, 4, 3, 2, 6>(kernel, ops, x, y, scratch) }
}

#[target_feature(enable = "avx2,fma")]
fn winograd_in_avx2(w: &Winograd, x: &[f32], rows: Range<usize>, v: &mut [f32], t: &mut [f32]) {
    // SAFETY: features enabled on this function.
    unsafe { w.input::<Avx2>(x, rows, v, t) }
}

#[target_feature(enable = "avx2,fma")]
fn winograd_out_avx2(
    t: Avx2Token,
    w: &Winograd,
    m: &[f32],
    rows: Range<usize>,
    y: &mut [f32],
    ops: &[EpOp<'_>],
) {
    // SAFETY: features enabled on this function.
    unsafe { w.output::<Avx2, _>(t, m, rows, y, ops) }
}

#[target_feature(enable = "avx512f,avx2,fma")]
fn plain_avx512<L: ops::PlainLoop>(l: &L, x: &[f32], y: &mut [f32], s: &mut [f32]) {
    // SAFETY: features enabled on this function.
    unsafe { l.run::<Avx512>(x, y, s) }
}

#[target_feature(enable = "avx512f,avx2,fma")]
fn direct_avx512(
    d: &DirectConv,
    kernel: &[f32],
    ops: &[EpOp<'_>],
    x: &[f32],
    y: &mut [f32],
    scratch: &mut [f32],
) {
    // SAFETY: features enabled on this function; 2 and 1 vectors of Avx512's lanes are 32
    // and 16.
    unsafe { d.run::<Avx512, 2, 6, 1, 12>(kernel, ops, x, y, scratch) }
}

#[target_feature(enable = "avx512f,avx2,fma")]
fn winograd_in_avx512(w: &Winograd, x: &[f32], rows: Range<usize>, v: &mut [f32], t: &mut [f32]) {
    // SAFETY: features enabled on this function.
    unsafe { w.input::<Avx512>(x, rows, v, t) }
}

#[target_feature(enable = "avx512f,avx2,fma")]
fn winograd_out_avx512(
    t: Avx512Token,
    w: &Winograd,
    m: &[f32],
    rows: Range<usize>,
    y: &mut [f32],
    ops: &[EpOp<'_>],
) {
    // SAFETY: features enabled on this function.
    unsafe { w.output::<Avx512, _>(t, m, rows, y, ops) }
}

#[target_feature(enable = "avx2,fma")]
fn affine_avx2(data: &mut [f32], scale: &[f32], shift: &[f32]) {
    // SAFETY: features enabled on this function.
    unsafe { math::affine_slice::<Avx2>(data, scale, shift) }
}

#[target_feature(enable = "avx512f,avx2,fma")]
fn affine_avx512(data: &mut [f32], scale: &[f32], shift: &[f32]) {
    // SAFETY: features enabled on this function.
    unsafe { math::affine_slice::<Avx512>(data, scale, shift) }
}

/// # Safety
/// The CPU has AVX2+FMA.
unsafe fn norm_avx2(norm: &RowNorm, data: &mut [f32], n: usize) {
    for row in data.chunks_exact_mut(n) {
        // SAFETY: the caller's contract.
        unsafe { norm_row_avx2(norm, row) };
    }
}

/// # Safety
/// The CPU has AVX-512.
unsafe fn norm_avx512(norm: &RowNorm, data: &mut [f32], n: usize) {
    for row in data.chunks_exact_mut(n) {
        // SAFETY: the caller's contract.
        unsafe { norm_row_avx512(norm, row) };
    }
}

/// One row's layer normalization, out of line: the separate pass and the fused row stage run
/// this same code.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
pub(super) unsafe fn norm_row_avx2(norm: &RowNorm, row: &mut [f32]) {
    // SAFETY: features enabled on this function; Avx2 has 8 lanes.
    unsafe { math::row_norm::<Avx2>(row, norm) };
}

/// The row reduction runs on 8 lanes (the canonical order) on every tier.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline(never)]
pub(super) unsafe fn norm_row_avx512(norm: &RowNorm, row: &mut [f32]) {
    // SAFETY: features enabled on this function; Avx2 has 8 lanes.
    unsafe { math::row_norm::<Avx2>(row, norm) };
}

#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(a: &Attend<'_>, out: &mut [f32], scratch: &mut [f32]) {
    // SAFETY: features enabled on this function; `a.fits` is the caller's contract.
    unsafe { attention::attend::<Avx2, Avx2, 4>(a, out, scratch) }
}

/// The softmax runs on 8 lanes (the canonical order) on every tier.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn attend_avx512(a: &Attend<'_>, out: &mut [f32], scratch: &mut [f32]) {
    // SAFETY: features enabled on this function; `a.fits` is the caller's contract.
    unsafe { attention::attend::<Avx512, Avx2, 8>(a, out, scratch) }
}

//! Passes over activations outside the GEMM: the separate activation pass, per-row
//! activations, channel affine and row normalization. Each gives the bits of the
//! corresponding fused epilogue.

use super::attention::Attend;
use super::dispatch::with_tier;
use super::{Activation, EpOp, Isa, RowNorm};

/// A plain loop over one sample `x` into `y` (a depthwise convolution, a pool) with its
/// scratch, compiled with `isa`'s instructions: the same bits on every tier
/// ([`super::ops::PlainLoop`]).
pub(crate) fn plain<L: super::ops::PlainLoop>(
    isa: Isa,
    l: &L,
    x: &[f32],
    y: &mut [f32],
    scratch: &mut [f32],
) {
    with_tier!(isa, |t| t.plain(l, x, y, scratch))
}

/// A direct convolution of one sample `x` into `y` (see [`super::DirectConv`]): the bits of
/// the GEMM over its unrolled windows, on every tier.
///
/// # Panics
/// As [`super::DirectConv`]'s `run`: a geometry that does not hold, buffers not its size, an
/// op that is not cheap.
pub fn direct_conv(
    isa: Isa,
    d: &super::DirectConv,
    kernel: &[f32],
    ops: &[EpOp<'_>],
    x: &[f32],
    y: &mut [f32],
    scratch: &mut [f32],
) {
    with_tier!(isa, |t| t.direct_conv(d, kernel, ops, x, y, scratch))
}

/// Applies an elementwise activation in place (the separate pass of an unfused plan).
/// A row-wise activation (softmax) treats all of `data` as one row.
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

/// One sample's scaled dot-product attention (see [`Attend`]) into `out`, using `scratch`
/// (at least [`Attend::scratch_len`] values). The same bits on every tier, and for a
/// sequence alone or padded beside longer ones under a mask.
///
/// # Panics
/// If the operands do not hold what `a` says (`Attend::fits`).
pub fn attention(isa: Isa, a: &Attend<'_>, out: &mut [f32], scratch: &mut [f32]) {
    assert!(
        a.fits(out, scratch),
        "attention operands do not fit their shape"
    );
    with_tier!(isa, |t| t.attend(a, out, scratch))
}

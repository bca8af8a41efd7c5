//! Activation math written once over [`Simd`].
//!
//! Only operations with one IEEE-754 result are used (add, sub, mul, div, a single-rounding
//! FMA, compare, select, exact bit manipulation; no approximate reciprocal), so every tier
//! returns the same bits (the portable tier's FMA is exact too: `fused`). Polynomials run in
//! Horner form on FMAs: half the operations and half the latency of a multiply then an add.
//! Accuracy (measured against f64 in the tests): a few ulp for exp, log, tanh, sigmoid; the erf
//! used by exact GELU has a relative error below 1.2e-7 on erfc.

use super::activation::{Activation, SELU_ALPHA, SELU_SCALE};
use super::simd::{Quad, Simd};

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `1.5 * 2^23`: adding and subtracting it rounds to the nearest integer for |t| < 2^22.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// `ln 2` split so that `k * LN2_HI` is exact for |k| < 2^15.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const EXP_HI: f32 = 89.0;
const EXP_LO: f32 = -104.0;
/// Where [`expm1_neg`] clamps: `k = round(x log2 e)` is -126 there, and `e^x - 1` has rounded
/// to -1 well before.
const EXPM1_NEG_LO: f32 = -87.0;

#[cfg_attr(sinter_inline, inline(always))]
fn round_int<V: Simd>(t: V) -> V {
    t.add(t.dup(ROUND_MAGIC)).sub(t.dup(ROUND_MAGIC))
}

/// `x = k ln2 + r`, |r| <= ln2 / 2, and `p = e^r - 1` (degree-7 Taylor, truncation < 1e-8),
/// `x` clamped to `[EXP_LO, EXP_HI]` first.
#[cfg_attr(sinter_inline, inline(always))]
fn exp_reduce<V: Simd>(x: V) -> (V, V) {
    let x = V::select(x.gt(x.dup(EXP_HI)), x.dup(EXP_HI), x);
    reduce(x.dup(EXP_LO).max_or(x))
}

/// [`exp_reduce`] of an `x` already inside the range it clamps to (or NaN).
#[cfg_attr(sinter_inline, inline(always))]
fn reduce<V: Simd>(x: V) -> (V, V) {
    let k = round_int(x.mul(x.dup(LOG2E)));
    let nk = k.neg();
    let r = nk.fma(x.dup(LN2_HI), x);
    let r = nk.fma(x.dup(LN2_LO), r);
    let c = |v: f32| x.dup(v);
    let q = c(1.0 / 5040.0);
    let q = q.fma(r, c(1.0 / 720.0));
    let q = q.fma(r, c(1.0 / 120.0));
    let q = q.fma(r, c(1.0 / 24.0));
    let q = q.fma(r, c(1.0 / 6.0));
    let q = q.fma(r, c(0.5));
    let p = r.mul(r).fma(q, r);
    (k, p)
}

/// `v * 2^k` for integral `k` in [-150, 128], rounding once.
#[cfg_attr(sinter_inline, inline(always))]
fn scale_pow2<V: Simd>(v: V, k: V) -> V {
    let k1 = round_int(k.mul(v.dup(0.5)));
    let k2 = k.sub(k1);
    v.mul(V::pow2i(k1)).mul(V::pow2i(k2))
}

/// `e^x`.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) fn exp<V: Simd>(x: V) -> V {
    let (k, p) = exp_reduce(x);
    scale_pow2(x.dup(1.0).add(p), k)
}

/// `2^-64`.
const POW2_M64: f32 = f32::from_bits(0x1f80_0000);

/// `e^x` for `x <= 0` (or NaN), with [`exp`]'s bits: no upper clamp, and one power of two
/// instead of two. `(1 + p) 2^(k + 64)` is exact (normal for `k >= -150`, at most `2^65`) and
/// the multiply by `2^-64` rounds once, as [`scale_pow2`]'s second multiply does: both are
/// `(1 + p) 2^k` correctly rounded. Sigmoid's `e^-|x|` (LSTM and GRU gates, SiLU).
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) fn exp_nonpositive<V: Simd>(x: V) -> V {
    let (k, p) = reduce(x.dup(EXP_LO).max_or(x));
    let s = V::pow2i(k.add(x.dup(64.0)));
    x.dup(1.0).add(p).mul(s).mul(x.dup(POW2_M64))
}

/// `e^x - 1` for `x <= 0` (or NaN), accurate near 0: `2^k p + (2^k - 1)`, or `p` for `k =
/// 0`. Below [`EXPM1_NEG_LO`] it has rounded to -1, so one clamp (no overflow side) and one
/// power of two (`2^k` is normal for `k >= -126`) do. tanh, ELU and SELU need no positive
/// side: an `e^x - 1` for any `x` (two powers of two, a branch for large `k`) took twice the
/// operations for the same bits on this side (tanh 0.88 -> 0.64 ns per value on Zen 3).
#[cfg_attr(sinter_inline, inline(always))]
fn expm1_neg<V: Simd>(x: V) -> V {
    let (k, p) = reduce(x.dup(EXPM1_NEG_LO).max_or(x));
    let one = x.dup(1.0);
    let s = V::pow2i(k);
    let mid = s.mul(p).add(s.sub(one));
    V::select(k.eq(x.dup(0.0)), p, mid)
}

/// Natural logarithm: exact exponent split, `log m = 2 atanh(f / (2 + f))` series.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) fn log<V: Simd>(x: V) -> V {
    let c = |v: f32| x.dup(v);
    let tiny = x.lt(c(f32::MIN_POSITIVE));
    let xs = V::select(tiny, x.mul(c(8_388_608.0)), x);
    let (m, e) = xs.split_exponent();
    let e = V::select(tiny, e.sub(c(23.0)), e);
    let big = m.gt(c(std::f32::consts::SQRT_2));
    let m = V::select(big, m.mul(c(0.5)), m);
    let e = V::select(big, e.add(c(1.0)), e);
    let f = m.sub(c(1.0));
    let s = f.div(c(2.0).add(f));
    let z = s.mul(s);
    let q = c(1.0 / 9.0);
    let q = q.fma(z, c(1.0 / 7.0));
    let q = q.fma(z, c(1.0 / 5.0));
    let q = q.fma(z, c(1.0 / 3.0));
    let s2 = s.add(s);
    let lm = s2.add(s2.mul(z.mul(q)));
    let y = e.mul(c(LN2_HI)).add(lm.add(e.mul(c(LN2_LO))));
    let y = V::select(x.eq(c(0.0)), c(f32::NEG_INFINITY), y);
    let y = V::select(x.eq(c(f32::INFINITY)), x, y);
    V::select(x.lt(c(0.0)), c(f32::NAN), y)
}

/// `log(1 + u)` for `u` in [0, 1] (Goldberg's correction for the rounding of `1 + u`).
#[cfg_attr(sinter_inline, inline(always))]
fn log1p_unit<V: Simd>(u: V) -> V {
    let w = u.dup(1.0).add(u);
    let d = w.sub(u.dup(1.0));
    let y = log(w).mul(u.div(d));
    V::select(d.eq(u.dup(0.0)), u, y)
}

#[cfg_attr(sinter_inline, inline(always))]
pub(crate) fn tanh<V: Simd>(x: V) -> V {
    let e = expm1_neg(x.abs().mul(x.dup(-2.0)));
    let t = e.neg().div(e.add(x.dup(2.0)));
    t.copysign(x)
}

/// `1 / (1 + e^-x)` for x >= 0 and `e^x / (1 + e^x)` below, so neither side overflows: the
/// numerator chosen before the one division (two divisions and a choice after gave the same
/// bits).
#[cfg_attr(sinter_inline, inline(always))]
fn sigmoid<V: Simd>(x: V) -> V {
    let e = exp_nonpositive(x.abs().neg());
    let d = x.dup(1.0).add(e);
    V::select(x.lt(x.dup(0.0)), e, x.dup(1.0)).div(d)
}

#[cfg_attr(sinter_inline, inline(always))]
fn softplus<V: Simd>(x: V) -> V {
    let pos = x.max_nn(x.dup(0.0));
    pos.add(log1p_unit(exp_nonpositive(x.abs().neg())))
}

#[cfg_attr(sinter_inline, inline(always))]
fn relu6<V: Simd>(x: V) -> V {
    x.max_nn(x.dup(0.0)).min_nn(x.dup(6.0))
}

/// [`relu6`] of `x + 3`, in two instructions where the tier has them: `x + 3` is never -0,
/// so the zero-ties of `max_or` agree with `relu6`'s; a NaN gives 0 here (NaN in `relu6`),
/// which the caller's NaN check on `x` undoes.
#[cfg_attr(sinter_inline, inline(always))]
fn relu6_of_plus_3<V: Simd>(x: V) -> V {
    x.add(x.dup(3.0)).max_or(x.dup(0.0)).min_or(x.dup(6.0))
}

/// `1 + erf(z)`, from erfc with relative error < 1.2e-7 (Chebyshev fit of `erfc`).
#[cfg_attr(sinter_inline, inline(always))]
fn one_plus_erf<V: Simd>(z: V) -> V {
    let c = |v: f32| z.dup(v);
    let a = z.abs();
    let t = c(1.0).div(c(1.0).add(c(0.5).mul(a)));
    let mut q = c(0.170_872_77);
    for k in [
        -0.822_152_23,
        1.488_515_9,
        -1.135_204,
        0.278_868_07,
        -0.186_288_06,
        0.096_784_18,
        0.374_091_96,
        1.000_023_7,
        -1.265_512_2,
    ] {
        q = q.fma(t, c(k));
    }
    let erfc = t.mul(exp(a.neg().fma(a, q)));
    V::select(z.lt(c(0.0)), erfc, c(2.0).sub(erfc))
}

/// The cheap activations (compares, selects, one multiply-add: [`Activation::is_cheap`]),
/// small enough to inline into every register tile; `None` for the rest.
#[cfg_attr(sinter_inline, inline(always))]
fn cheap<V: Simd>(act: Activation, x: V) -> Option<V> {
    let c = |v: f32| x.dup(v);
    let zero = c(0.0);
    Some(match act {
        Activation::Linear => x,
        Activation::Relu {
            negative_slope,
            max_value,
            threshold,
        } => {
            // `x > 0 ? x : 0` is one `max_or` (the same zero and NaN lanes).
            let mut pos = match threshold == 0.0 {
                true => x.max_or(zero),
                false => V::select(x.gt(c(threshold)), x, zero),
            };
            if let Some(m) = max_value {
                pos = pos.max_nn(zero).min_nn(c(m));
            }
            if negative_slope != 0.0 {
                let neg = c(threshold).sub(x).max_nn(zero);
                pos.sub(c(negative_slope).mul(neg))
            } else {
                pos
            }
        }
        Activation::Relu6 => relu6(x),
        Activation::LeakyRelu { negative_slope } => {
            V::select(x.gt(zero), x, x.mul(c(negative_slope)))
        }
        // `relu6(x + 3) / 6` as a product by the nearest float to 1/6: a compare-and-multiply
        // that stays in the registers (a division per vector made hard-swish 9% of
        // mobilenet_v3_small). Within an ulp and a half of the quotient.
        Activation::HardSigmoid => relu6_of_plus_3(x).mul(c(1.0 / 6.0)),
        Activation::HardSilu => x.mul(relu6_of_plus_3(x).mul(c(1.0 / 6.0))),
        Activation::HardSigmoidAffine { alpha, beta } => x
            .mul(c(alpha))
            .add(c(beta))
            .max_nn(x.dup(0.0))
            .min_nn(x.dup(1.0)),
        _ => return None,
    })
}

/// Applies an elementwise activation. NaN in (or NaN produced) gives the canonical NaN.
/// Row-wise activations are not elementwise; they pass through here unchanged.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) fn apply<V: Simd>(act: Activation, x: V) -> V {
    if let Some(y) = cheap(act, x) {
        return canonical_nan(x, y);
    }
    let c = |v: f32| x.dup(v);
    let zero = c(0.0);
    let y = match act {
        // The negative side's `e^x - 1` of `min(x, 0)`: the other lanes are not read.
        Activation::Elu { alpha } => {
            V::select(x.gt(zero), x, c(alpha).mul(expm1_neg(x.min_or(zero))))
        }
        Activation::Selu => {
            let e = V::select(x.gt(zero), x, c(SELU_ALPHA).mul(expm1_neg(x.min_or(zero))));
            c(SELU_SCALE).mul(e)
        }
        Activation::Gelu { approximate: false } => {
            let z = x.mul(c(std::f32::consts::FRAC_1_SQRT_2));
            c(0.5).mul(x).mul(one_plus_erf(z))
        }
        // `0.5 x (1 + tanh(z))` as `x sigmoid(2z)`: the same function, without the sum that
        // cancels to 0 in the negative tail.
        Activation::Gelu { approximate: true } => {
            let cube = x.mul(x).mul(x);
            let inner = c(2.0 * 0.797_884_6).mul(x.add(c(0.044_715).mul(cube)));
            x.mul(sigmoid(inner))
        }
        Activation::Sigmoid => sigmoid(x),
        Activation::Silu => x.mul(sigmoid(x)),
        Activation::Tanh => tanh(x),
        Activation::Softplus => softplus(x),
        Activation::Softsign => x.div(x.abs().add(c(1.0))),
        Activation::Exponential => exp(x),
        Activation::Mish => x.mul(tanh(softplus(x))),
        // Cheap ones returned above; row-wise ones are not elementwise.
        _ => x,
    };
    canonical_nan(x, y)
}

/// [`apply`] for a cheap activation ([`Activation::is_cheap`]), small enough for the register
/// epilogue; `None` for any other. (A fallback call here, even one never taken, makes LLVM keep
/// the accumulators in memory: measured 103 -> 44 GFLOP/s.)
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) fn apply_cheap<V: Simd>(act: Activation, x: V) -> Option<V> {
    cheap(act, x).map(|y| canonical_nan(x, y))
}

/// [`apply_cheap`] on every vector of a register tile for ReLU, ReLU6 or the hard sigmoid or
/// swish (the ones a CNN puts after a convolution),
/// matched once per tile: each arm's formula is [`cheap`]'s with the activation a constant,
/// so the tile runs straight through. (Matched per vector, the dispatch and the accumulators
/// it spilled cost a 3136x16x64 GEMM's bias + ReLU epilogue 19 us on 50.) Returns whether it
/// ran (`false`, the tile untouched, for any other activation).
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) fn apply_common_tile<V: Simd, const R: usize, const NV: usize>(
    act: Activation,
    acc: &mut [[V; NV]; R],
) -> bool {
    macro_rules! each {
        (|$x:ident| $y:expr) => {
            for row in acc.iter_mut() {
                for v in row.iter_mut() {
                    let $x = *v;
                    *v = $y;
                }
            }
        };
    }
    match act {
        // `max_or` is never NaN: only `x` needs the NaN check.
        a if a == Activation::RELU => {
            each!(|x| V::select(x.is_nan(), x.dup(f32::NAN), x.max_or(x.dup(0.0))))
        }
        Activation::Relu6 => {
            each!(|x| apply_cheap(Activation::Relu6, x).unwrap_or(x))
        }
        // A non-NaN `x` gives a finite `y`: only `x` needs the NaN check.
        Activation::HardSigmoid => each!(|x| {
            let y = cheap(Activation::HardSigmoid, x).unwrap_or(x);
            V::select(x.is_nan(), x.dup(f32::NAN), y)
        }),
        // `x * ...` is NaN where `x` is: only `y` needs the NaN check.
        Activation::HardSilu => each!(|x| {
            let y = cheap(Activation::HardSilu, x).unwrap_or(x);
            V::select(y.is_nan(), x.dup(f32::NAN), y)
        }),
        _ => return false,
    }
    true
}

/// [`apply_cheap`] on every vector of a register tile: ReLU, ReLU6 and the hard sigmoid and
/// swish through [`apply_common_tile`], the other cheap ones a vector at a time. A non-cheap `act`
/// leaves the tile as it is (`RegOps` never holds one).
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) fn apply_cheap_tile<V: Simd, const R: usize, const NV: usize>(
    act: Activation,
    acc: &mut [[V; NV]; R],
) {
    if !apply_common_tile(act, acc) {
        for row in acc.iter_mut() {
            for v in row.iter_mut() {
                *v = apply_cheap(act, *v).unwrap_or(*v);
            }
        }
    }
}

/// `y`, or the canonical NaN where `x` or `y` is NaN.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) fn canonical_nan<V: Simd>(x: V, y: V) -> V {
    V::select(x.either_nan(y), x.dup(f32::NAN), y)
}

/// Applies `act` to `data` in place ([`apply_rows`] over one row).
///
/// # Safety
/// The caller guarantees `V`'s instruction set is available.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) unsafe fn apply_slice<V: Simd>(act: Activation, data: &mut [f32]) {
    let n = data.len();
    // SAFETY: `data` is one row of `n` values, borrowed for the call.
    unsafe { apply_rows::<V>(act, data.as_mut_ptr(), n, 1, n) }
}

/// Applies `act` in place to `rows` rows of `cols` values, `ld` apart: the rows' whole
/// vectors in order, four at a time side by side where the tier overlaps them (`Quad`: the
/// long chains of the transcendental functions overlapped), across the ends of rows (a GEMM
/// tile's rows of 16 or 24 values are too short for four), then each row's tail as a part of
/// a vector. Each lane computes what one vector does, so the bits do not depend on the
/// grouping. One loop for a slice and a tile, so one copy of it per tier in the build.
///
/// # Safety
/// `V`'s instruction set is available; `c` is readable and writable at `r * ld + j` for
/// `r < rows`, `j < cols`, and nothing else references those values during the call.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) unsafe fn apply_rows<V: Simd>(
    act: Activation,
    c: *mut f32,
    ld: usize,
    rows: usize,
    cols: usize,
) {
    let lanes = V::LANES;
    let (per_row, whole) = (cols / lanes, cols / lanes * lanes);
    let mut left = rows * per_row;
    // The next whole vector: row `r`, vector `j` of it.
    let (mut r, mut j) = (0, 0);
    let mut next = || {
        let p = c.wrapping_add(r * ld + j * lanes);
        j += 1;
        if j == per_row {
            (r, j) = (r + 1, 0);
        }
        p
    };
    if V::SIDE_BY_SIDE && !act.is_cheap() {
        while left >= 4 {
            let p = [next(), next(), next(), next()];
            // SAFETY: the caller's contract: each is a whole vector of a row.
            unsafe {
                let q = Quad::<V>::gather([p[0].cast_const(), p[1], p[2], p[3]]);
                apply(act, q).scatter(p);
            }
            left -= 4;
        }
    }
    for _ in 0..left {
        let p = next();
        // SAFETY: as above.
        unsafe { apply(act, V::load(p)).store(p) };
    }
    if whole < cols {
        for r in 0..rows {
            let (p, n) = (c.wrapping_add(r * ld + whole), cols - whole);
            // SAFETY: the row's last `n < LANES` values; the ISA is the caller's contract.
            unsafe { apply(act, V::load_part(p, n)).store_part(p, n) };
        }
    }
}

/// Width of the canonical reduction order used by row-wise activations, on every tier.
pub(crate) const ROW_LANES: usize = 8;

/// Loads `V::LANES` values of `row` starting at `i`, padding past its end with `pad`.
///
/// # Safety
/// `V`'s instruction set is available.
#[cfg_attr(sinter_inline, inline(always))]
unsafe fn load_row<V: Simd>(row: &[f32], i: usize, pad: f32) -> V {
    assert!(V::LANES <= 16, "vectors of at most 16 lanes");
    if i + V::LANES <= row.len() {
        // SAFETY: LANES elements are in bounds; the ISA is the caller's contract.
        unsafe { V::load(row.as_ptr().add(i)) }
    } else {
        let mut buf = [pad; 16];
        let n = row.len().saturating_sub(i);
        buf[..n].copy_from_slice(&row[i..i + n]);
        // SAFETY: `buf` has 16 >= LANES elements; the ISA is the caller's contract.
        unsafe { V::load(buf.as_ptr()) }
    }
}

/// Stores `v`'s lanes into `row` from `i`, those past its end dropped.
#[cfg_attr(sinter_inline, inline(always))]
fn store_row<V: Simd>(v: V, row: &mut [f32], i: usize) {
    assert!(V::LANES <= 16, "vectors of at most 16 lanes");
    if i + V::LANES <= row.len() {
        // SAFETY: LANES elements are in bounds.
        unsafe { v.store(row.as_mut_ptr().add(i)) }
    } else {
        let mut buf = [0.0; 16];
        // SAFETY: `buf` has 16 >= LANES elements.
        unsafe { v.store(buf.as_mut_ptr()) };
        let n = row.len().saturating_sub(i);
        row[i..i + n].copy_from_slice(&buf[..n]);
    }
}

/// Sums the 8 lanes in a fixed tree: (0+4, 1+5, 2+6, 3+7), then pairs, then the last two.
#[cfg_attr(sinter_inline, inline(always))]
fn sum_lanes<V: Simd>(v: V) -> f32 {
    let mut l = [0.0f32; ROW_LANES];
    // SAFETY: `l` has 8 elements.
    unsafe { v.store(l.as_mut_ptr()) };
    let a = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    let b = [a[0] + a[2], a[1] + a[3]];
    b[0] + b[1]
}

/// Softmax or log-softmax of one row, in place. Lane `j` of the sum accumulates elements
/// `j, j+8, j+16, ...` in order, then the fixed tree of [`sum_lanes`]: the same order whatever
/// the tier's native vector width.
///
/// `V` must be an 8-lane vector.
///
/// # Safety
/// `V`'s instruction set is available.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) unsafe fn row_softmax<V: Simd>(row: &mut [f32], log_space: bool) {
    debug_assert_eq!(V::LANES, ROW_LANES);
    if row.is_empty() {
        return;
    }
    // SAFETY: the ISA is the caller's contract.
    let m = unsafe { row_max::<V>(row) };
    let mut sum = m.dup(0.0);
    let mut i = 0;
    while i < row.len() {
        // SAFETY: the ISA is the caller's contract.
        let x = unsafe { load_row::<V>(row, i, f32::NEG_INFINITY) };
        let e = exp(x.sub(m));
        let e = V::select(x.eq(x.dup(f32::NEG_INFINITY)), x.dup(0.0), e);
        sum = sum.add(e);
        if !log_space {
            store_row(e, row, i);
        }
        i += ROW_LANES;
    }
    let s = sum.dup(sum_lanes(sum));
    let ls = log(s);
    i = 0;
    while i < row.len() {
        // SAFETY: the ISA is the caller's contract.
        let x = unsafe { load_row::<V>(row, i, 0.0) };
        let y = if log_space {
            x.sub(m).sub(ls)
        } else {
            x.div(s)
        };
        let y = canonical_nan(x, y);
        store_row(y, row, i);
        i += ROW_LANES;
    }
}

/// The largest value of a non-empty row in the canonical order of [`row_softmax`], in every
/// lane.
///
/// # Safety
/// `V`'s instruction set is available; `V` has 8 lanes.
#[cfg_attr(sinter_inline, inline(always))]
unsafe fn row_max<V: Simd>(row: &[f32]) -> V {
    // SAFETY: the ISA is the caller's contract.
    let load = |i: usize, pad: f32| unsafe { load_row::<V>(row, i, pad) };
    let mut mx = load(0, f32::NEG_INFINITY);
    let mut i = ROW_LANES;
    while i < row.len() {
        mx = mx.max_nn(load(i, f32::NEG_INFINITY));
        i += ROW_LANES;
    }
    mx.dup(max_lanes(mx))
}

/// The largest of the 8 lanes, folded in lane order.
#[cfg_attr(sinter_inline, inline(always))]
fn max_lanes<V: Simd>(v: V) -> f32 {
    let mut lanes = [0.0f32; ROW_LANES];
    // SAFETY: `lanes` has 8 elements.
    unsafe { v.store(lanes.as_mut_ptr()) };
    lanes
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, |a, b| if a < b { b } else { a })
}

/// The softmax of `R` rows at once (attention's), with its elementwise passes `W` lanes wide.
/// Row `r` is the first `lens[r]` values from `r * ld` in `rows` (a row of length 0 is left
/// alone). The maximum, the exponentials and the sum are [`row_softmax`]'s, in its canonical
/// 8-lane order (`R8`) within each row; the normalization multiplies by the reciprocal of the
/// sum where [`row_softmax`] divides (at most an ulp apart). Only the elementwise steps, one
/// value at a time whatever the width, are `W`-wide, so the bits do not depend on the tier.
/// The rows advance in lock-step, so their dependency chains (the maximum, the sum) overlap.
///
/// # Safety
/// `W`'s and `R8`'s instruction sets are available; `R8` has 8 lanes, `W` at most 16.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) unsafe fn rows_softmax_wide<W: Simd, R8: Simd, const R: usize>(
    rows: &mut [f32],
    ld: usize,
    lens: [usize; R],
) {
    debug_assert!(R8::LANES == ROW_LANES && W::LANES <= 16);
    let Some(longest) = lens.iter().copied().max().filter(|&n| n > 0) else {
        return;
    };
    assert!(
        lens.iter()
            .enumerate()
            .all(|(r, &n)| n == 0 || r * ld + n <= rows.len()),
        "softmax rows out of bounds"
    );
    fn row(rows: &mut [f32], start: usize, len: usize) -> &mut [f32] {
        &mut rows[start..][..len]
    }
    // SAFETY: the ISA is the caller's contract.
    let zero8 = unsafe { R8::splat(0.0) };
    // The maxima: each row's lanes from its first vector on, then the fixed fold.
    let mut mx = [zero8; R];
    for (r, m) in mx.iter_mut().enumerate() {
        if lens[r] > 0 {
            // SAFETY: the ISA is the caller's contract.
            *m = unsafe { load_row::<R8>(row(rows, r * ld, lens[r]), 0, f32::NEG_INFINITY) };
        }
    }
    let mut i = ROW_LANES;
    while i < longest {
        for (r, m) in mx.iter_mut().enumerate() {
            if i < lens[r] {
                // SAFETY: the ISA is the caller's contract.
                *m = m.max_nn(unsafe {
                    load_row::<R8>(row(rows, r * ld, lens[r]), i, f32::NEG_INFINITY)
                });
            }
        }
        i += ROW_LANES;
    }
    // (Loops, not array `map`: that is not inlined into the tier's function.)
    let mut m = [0.0f32; R];
    for (m, &v) in m.iter_mut().zip(&mx) {
        *m = max_lanes(v);
    }
    // The exponentials, four vectors of W side by side (`Quad`), then W at a time (the tail
    // padded with -inf: 0).
    #[cfg_attr(sinter_inline, inline(always))]
    fn exp_from<V: Simd>(x: V, m: f32) -> V {
        let e = exp(x.sub(x.dup(m)));
        V::select(x.eq(x.dup(f32::NEG_INFINITY)), x.dup(0.0), e)
    }
    for (r, &m) in m.iter().enumerate().filter(|&(r, _)| lens[r] > 0) {
        let mut rest = row(rows, r * ld, lens[r]);
        if W::SIDE_BY_SIDE {
            let mut quads = rest.chunks_exact_mut(4 * W::LANES);
            for q in &mut quads {
                // SAFETY: `q` holds 4 * LANES values; the ISA is the caller's contract.
                unsafe { exp_from(Quad::<W>::load(q.as_ptr()), m).store(q.as_mut_ptr()) };
            }
            rest = quads.into_remainder();
        }
        i = 0;
        while i < rest.len() {
            // SAFETY: the ISA is the caller's contract.
            let x = unsafe { load_row::<W>(rest, i, f32::NEG_INFINITY) };
            store_row(exp_from(x, m), rest, i);
            i += W::LANES;
        }
    }
    // Their sums in the canonical 8-lane order.
    let mut sum = [zero8; R];
    i = 0;
    while i < longest {
        for (r, s) in sum.iter_mut().enumerate() {
            if i < lens[r] {
                // SAFETY: the ISA is the caller's contract.
                *s = s.add(unsafe { load_row::<R8>(row(rows, r * ld, lens[r]), i, 0.0) });
            }
        }
        i += ROW_LANES;
    }
    let mut s = [0.0f32; R];
    for (s, &v) in s.iter_mut().zip(&sum) {
        *s = sum_lanes(v);
    }
    // Each row times the reciprocal of its sum (one division per row, not per value; the sum
    // is at least 1, the maximum's own term), W at a time.
    i = 0;
    while i < longest {
        for r in 0..R {
            if i < lens[r] {
                let row = row(rows, r * ld, lens[r]);
                // SAFETY: the ISA is the caller's contract.
                let x = unsafe { load_row::<W>(row, i, 0.0) };
                store_row(canonical_nan(x, x.mul(x.dup(1.0 / s[r]))), row, i);
            }
        }
        i += W::LANES;
    }
}

/// `x * scale[c] + shift[c]` (one rounding) over rows of `scale.len()` channels, in place;
/// every NaN canonical.
///
/// # Safety
/// `V`'s instruction set is available.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) unsafe fn affine_slice<V: Simd>(data: &mut [f32], scale: &[f32], shift: &[f32]) {
    let ch = scale.len();
    if ch == 0 {
        return;
    }
    for row in data.chunks_exact_mut(ch) {
        let mut j = 0;
        while j + V::LANES <= ch {
            // SAFETY: LANES values from j are in bounds of the row, scale and shift.
            unsafe {
                let x = V::load(row.as_ptr().add(j));
                let y = x.fma(
                    V::load(scale.as_ptr().add(j)),
                    V::load(shift.as_ptr().add(j)),
                );
                canonical_nan(x, y).store(row.as_mut_ptr().add(j));
            }
            j += V::LANES;
        }
        for ((x, &s), &t) in row[j..].iter_mut().zip(&scale[j..]).zip(&shift[j..]) {
            let y = super::fused::fused(*x, s, t);
            *x = if y.is_nan() || x.is_nan() {
                f32::NAN
            } else {
                y
            };
        }
    }
}

/// Layer normalization's parameters as the kernels take them.
#[derive(Clone, Debug, PartialEq)]
pub struct RowNorm {
    /// Added to the variance (mean square with `rms`).
    pub epsilon: f32,
    /// Root-mean-square normalization (no mean subtracted, no beta).
    pub rms: bool,
    /// Per-column scale.
    pub gamma: Option<Vec<f32>>,
    /// Per-column offset.
    pub beta: Option<Vec<f32>>,
}

/// One term of [`row_sum`]: `x`, `x²` or `(x - centre)²`. A function, not a closure: a closure
/// would not inherit the caller's target features, and its vector ops would become calls.
#[cfg_attr(sinter_inline, inline(always))]
fn sum_term<V: Simd>(x: V, centre: Option<f32>, square: bool) -> V {
    let d = match centre {
        Some(m) => x.sub(x.dup(m)),
        None => x,
    };
    if square { d.mul(d) } else { d }
}

/// `(x - mean) * (inv * gamma) + beta` (or without gamma / beta), NaN canonical.
#[cfg_attr(sinter_inline, inline(always))]
fn norm_term<V: Simd>(x: V, mean: V, inv: V, gamma: Option<V>, beta: Option<V>) -> V {
    let scale = gamma.map_or(inv, |g| inv.mul(g));
    let d = x.sub(mean);
    let y = match beta {
        Some(b) => d.fma(scale, b),
        None => d.mul(scale),
    };
    canonical_nan(y, y)
}

/// Sum of [`sum_term`]s over a row in the canonical order: 8-value chunk `c` (elements
/// `8c..8c+8`, the last padded with `pad`, chosen so that its term is 0) goes to accumulator `c % 4`, lane
/// by lane; then `(a0 + a1) + (a2 + a3)` lane-wise and the fixed tree of [`sum_lanes`]. Four
/// independent chains keep the adds pipelined; the order depends only on element positions,
/// not on the tier's vector width.
///
/// # Safety
/// `V` is an 8-lane vector whose instruction set is available.
#[cfg_attr(sinter_inline, inline(always))]
unsafe fn row_sum<V: Simd>(row: &[f32], pad: f32, centre: Option<f32>, square: bool) -> f32 {
    // SAFETY: the ISA is the caller's contract.
    let zero = unsafe { V::splat(0.0) };
    let mut acc = [zero; 4];
    let n = row.len();
    let body = n - n % (4 * ROW_LANES);
    let mut i = 0;
    while i < body {
        for (a, acc) in acc.iter_mut().enumerate() {
            // SAFETY: 32 values from i < body are in bounds; the ISA is the caller's contract.
            let x = unsafe { V::load(row.as_ptr().add(i + a * ROW_LANES)) };
            *acc = acc.add(sum_term(x, centre, square));
        }
        i += 4 * ROW_LANES;
    }
    let mut c = 0;
    while i < n {
        // SAFETY: the ISA is the caller's contract; `load_row` pads past the end.
        let x = unsafe { load_row::<V>(row, i, pad) };
        acc[c] = acc[c].add(sum_term(x, centre, square));
        i += ROW_LANES;
        c += 1;
    }
    sum_lanes(acc[0].add(acc[1]).add(acc[2].add(acc[3])))
}

/// Layer (or RMS) normalization of one row, in place: mean and variance (biased, two
/// passes) summed in the canonical 8-lane order, `inv = 1 / sqrt(var + eps)`, then
/// `(x - mean) * (inv * gamma) + beta` with one rounding for the last step. The same bits on
/// every tier.
///
/// # Safety
/// `V` is an 8-lane vector whose instruction set is available.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) unsafe fn row_norm<V: Simd>(row: &mut [f32], norm: &RowNorm) {
    debug_assert_eq!(V::LANES, ROW_LANES);
    if row.is_empty() {
        return;
    }
    let n = row.len() as f32;
    let (mean, var) = if norm.rms {
        // SAFETY: the caller's contract.
        (0.0, unsafe { row_sum::<V>(row, 0.0, None, true) } / n)
    } else {
        // SAFETY: the caller's contract.
        let mean = unsafe { row_sum::<V>(row, 0.0, None, false) } / n;
        // Padding with the mean contributes (mean - mean)^2 = 0.
        // SAFETY: the caller's contract.
        let var = unsafe { row_sum::<V>(row, mean, Some(mean), true) } / n;
        (mean, var)
    };
    let inv = 1.0 / (var + norm.epsilon).sqrt();
    // `(x - mean) * (inv * gamma) + beta`, 8 lanes at a time (elementwise: the same bits at
    // any width); the tail through padded buffers.
    // SAFETY: the ISA is the caller's contract.
    let (vm, vinv) = unsafe { (V::splat(mean), V::splat(inv)) };
    let n = row.len();
    let body = n - n % ROW_LANES;
    let (gamma, beta) = (norm.gamma.as_deref(), norm.beta.as_deref());
    let mut i = 0;
    while i < body {
        // SAFETY: 8 values from i < body are in bounds of the row, gamma and beta (each n
        // long, `kernels::norm_rows` / `PackedB::set_row_norm`); the ISA is the caller's.
        unsafe {
            let x = V::load(row.as_ptr().add(i));
            let g = gamma.map(|g| V::load(g.as_ptr().add(i)));
            let b = beta.map(|b| V::load(b.as_ptr().add(i)));
            norm_term(x, vm, vinv, g, b).store(row.as_mut_ptr().add(i));
        }
        i += ROW_LANES;
    }
    if body < n {
        // SAFETY: the ISA is the caller's contract; `load_row` pads past the end.
        let (x, g, b) = unsafe {
            (
                load_row::<V>(row, body, 0.0),
                gamma.map(|g| load_row::<V>(g, body, 0.0)),
                beta.map(|b| load_row::<V>(b, body, 0.0)),
            )
        };
        store_row(norm_term(x, vm, vinv, g, b), row, body);
    }
}

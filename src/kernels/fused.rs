//! `a * b + c` with one rounding (IEEE-754 fusedMultiplyAdd) for code that runs without an
//! FMA instruction: the portable tier, and the scalar tails of the epilogues.
//!
//! `f32::mul_add` on an x86 build without the `fma` target feature (the default x86-64 target)
//! is a call into libm's `fmaf`: correct, but about 1 ns per lane, so the portable tier peaked
//! at 0.6 GFLOP/s. Here the product is formed exactly in f64 (24 + 24 bits fit in 53), the sum
//! is rounded to f64 *to odd* (rounded to nearest, then, if inexact and even, moved one ulp
//! toward the exact sum, which TwoSum gives exactly), and that is rounded to f32. Rounding to
//! odd with at least two extra bits and then to nearest gives the correctly rounded result
//! (Boldo and Melquiond, "Emulation of FMA and correctly rounded sums: proved algorithms using
//! rounding to odd", IEEE TC 2008), so the bits equal a hardware FMA's. Other targets (aarch64,
//! or x86 built with `fma`) have the instruction and use `mul_add`.

/// Whether this build has no FMA instruction to call (`mul_add` would call libm).
const EMULATE: bool = cfg!(all(
    any(target_arch = "x86", target_arch = "x86_64"),
    not(target_feature = "fma")
));

/// `a * b + c`, rounded once.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) fn fused(a: f32, b: f32, c: f32) -> f32 {
    if EMULATE {
        emulated(a, b, c)
    } else {
        a.mul_add(b, c)
    }
}

/// The emulation itself (see the module docs); tested on every target.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) fn emulated(a: f32, b: f32, c: f32) -> f32 {
    let p = f64::from(a) * f64::from(b); // exact
    let c = f64::from(c);
    let s = p + c;
    // TwoSum: `s + e == p + c` exactly (no overflow: |p| < 2^256).
    let v = s - p;
    let e = (p - (s - v)) + (c - v);
    let bits = s.to_bits();
    // Branch-free (so that the lanes vectorize): if `e != 0`, `s` is finite and its last bit
    // is even, move it one ulp toward the exact sum: up in magnitude when `e` has the sign of
    // `s`. (`s == 0` only when the sum is exactly 0: it is a nonzero multiple of 2^-298
    // otherwise; a NaN or infinite `s` is left alone.)
    let same_sign = ((e.to_bits() ^ bits) >> 63) ^ 1;
    let step = (same_sign << 1).wrapping_sub(1); // +1 or -1
    let adjust = u64::from(e != 0.0) & u64::from(s.is_finite()) & (!bits & 1);
    f64::from_bits(bits.wrapping_add(step & adjust.wrapping_neg())) as f32
}
#[cfg(test)]
mod tests {
    use super::emulated;
    use crate::model::init::SplitMix64;

    fn same(a: f32, b: f32, c: f32) {
        let want = a.mul_add(b, c);
        let got = emulated(a, b, c);
        let ok = got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan());
        assert!(ok, "fma({a:e}, {b:e}, {c:e}) = {want:e}, emulated {got:e}");
    }

    #[test]
    fn edge_values() {
        let edges = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f32::from_bits(1),
            f32::from_bits(0x8000_0001),
            f32::from_bits(0x007f_ffff),
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1.0 + f32::EPSILON,
            1.0 - f32::EPSILON / 2.0,
            3.0,
            0.1,
            1e-30,
            1e30,
        ];
        for &a in &edges {
            for &b in &edges {
                for &c in &edges {
                    same(a, b, c);
                }
            }
        }
    }

    #[test]
    fn random_and_near_ties() {
        let mut r = SplitMix64::new(0xf3a);
        for i in 0..2_000_000u32 {
            let bits = |r: &mut SplitMix64| r.next_u64() as u32;
            let (a, b) = match i % 3 {
                // Any bits, NaN and infinities included.
                0 => (f32::from_bits(bits(&mut r)), f32::from_bits(bits(&mut r))),
                // Moderate magnitudes, where products and sums interact.
                _ => (r.next_signed() * 4.0, r.next_signed() * 4.0),
            };
            let p = f64::from(a) * f64::from(b);
            let c = match i % 5 {
                0 => f32::from_bits(bits(&mut r)),
                // Cancels most of the product: the exact residual decides the rounding.
                1 => -(p as f32),
                // Half an f32 ulp of the product away: near-ties of the final rounding.
                2 => {
                    let q = p as f32;
                    let ulp = f32::from_bits(q.to_bits().wrapping_add(1)) - q;
                    -(q - ulp / 2.0)
                }
                3 => r.next_signed() * 1e-7,
                _ => r.next_signed(),
            };
            same(a, b, c);
        }
    }
}

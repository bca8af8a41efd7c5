//! Scaled dot-product attention over one sample: per head, the scores of each query against
//! the keys it may see (`q · kᵀ · scale`), a row softmax, and the weighted sum of the values.
//!
//! **One order for every sum, whatever the padding.** A score is one FMA chain over the head's
//! `dk` values, from zero. The softmax is [`math::row_softmax`] over the query's kept keys in
//! key order. An output value is one FMA chain over the kept keys, in key order, from zero.
//! None of these orders depends on the vector width, the blocking, the thread or on keys a
//! mask drops: a dropped key is never read (never multiplied by zero, which an infinite value
//! would turn into NaN). A sequence therefore gives the same bits alone or padded in a batch
//! beside longer ones, as long as the padding is masked.
//!
//! The scores live in a few rows of scratch (`ROWS` queries at a time, as long as the keys):
//! no `[heads, S, T]` tensor is ever stored.

use super::math;
use super::simd::Simd;

/// Queries whose scores are computed together (each key chunk of K is loaded once for them).
const ROWS: usize = 4;

/// Key columns of the scratch are padded to a multiple of this (the widest lane count).
const PAD: usize = 16;

/// Which keys each query sees, besides the causal limit.
#[derive(Clone, Copy, Debug)]
pub enum KeyMask<'a> {
    /// Every key.
    All,
    /// One value per key, shared by every query: kept where `> 0.5` (Keras's rule: `1` keeps,
    /// `0` drops).
    Keys(&'a [f32]),
    /// One value per (query, key), `queries x keys` row-major: kept where `> 0.5`.
    Pairs(&'a [f32]),
}

/// What a query that sees no key gets (frameworks differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoKeys {
    /// Zeros (Keras 3's masked softmax with dropout; a query that attends to nothing).
    Zeros,
    /// The mean of every key's value, masked or not: the softmax of equal scores, as a mask
    /// added as a large negative number gives (Keras's `dot_product_attention`, Hugging Face).
    Uniform,
    /// NaN: the softmax of scores that are all minus infinity (PyTorch's
    /// `scaled_dot_product_attention` under a mask of `-inf`, as `nn.TransformerEncoder` gives a
    /// sequence that is all padding).
    Nan,
}

/// Kept where the mask value is above one half (a NaN is not): the rule every mask follows.
pub fn kept(m: f32) -> bool {
    m > 0.5
}

/// One sample's attention: `queries` rows of Q, `keys` rows of K and V, each row `heads`
/// blocks of the head width, at their own row strides (a fused QKV projection's output is read
/// in place).
#[derive(Clone, Copy, Debug)]
pub struct Attend<'a> {
    /// Queries, row `i` at `i * ldq`, head `h` at `h * dk` in it.
    pub q: &'a [f32],
    /// Keys, row `j` at `j * ldk`.
    pub k: &'a [f32],
    /// Values, row `j` at `j * ldv`, head `h` at `h * dv`.
    pub v: &'a [f32],
    /// Row stride of Q.
    pub ldq: usize,
    /// Row stride of K.
    pub ldk: usize,
    /// Row stride of V.
    pub ldv: usize,
    /// Row stride of the output.
    pub ldo: usize,
    /// Query rows.
    pub queries: usize,
    /// Key (and value) rows.
    pub keys: usize,
    /// Heads.
    pub heads: usize,
    /// Width of a head's query and key.
    pub dk: usize,
    /// Width of a head's value (and output).
    pub dv: usize,
    /// Multiplies each dot product.
    pub scale: f32,
    /// Query `i` sees only keys `j <= i`.
    pub causal: bool,
    /// Which keys each query sees.
    pub mask: KeyMask<'a>,
    /// What a query that sees no key gets.
    pub no_keys: NoKeys,
}

impl Attend<'_> {
    /// Scratch values [`attend`] needs: the kept keys' transposed K of one head, `ROWS` score
    /// rows and the list of kept keys.
    pub fn scratch_len(keys: usize, dk: usize) -> usize {
        let tp = keys.div_ceil(PAD) * PAD;
        (dk + ROWS + 1) * tp
    }

    /// Whether the operands hold what the shape says (the kernel's precondition).
    pub fn fits(&self, out: &[f32], scratch: &[f32]) -> bool {
        let span = |rows: usize, ld: usize, w: usize| match rows {
            0 => Some(0),
            _ => (rows - 1).checked_mul(ld).and_then(|x| x.checked_add(w)),
        };
        let (hk, hv) = (self.heads * self.dk, self.heads * self.dv);
        let holds = |len: usize, rows: usize, ld: usize, w: usize| {
            span(rows, ld, w).is_some_and(|n| n <= len) && (rows <= 1 || ld >= w)
        };
        let mask = match self.mask {
            KeyMask::All => true,
            KeyMask::Keys(m) => m.len() >= self.keys,
            KeyMask::Pairs(m) => m.len() >= self.queries * self.keys,
        };
        holds(self.q.len(), self.queries, self.ldq, hk)
            && holds(self.k.len(), self.keys, self.ldk, hk)
            && holds(self.v.len(), self.keys, self.ldv, hv)
            && holds(out.len(), self.queries, self.ldo, hv)
            && scratch.len() >= Self::scratch_len(self.keys, self.dk)
            && self.keys < 1 << 24
            && mask
    }
}

/// Attention of one sample into `out` (`queries` rows of `heads * dv` at stride `ldo`). A
/// query that sees no key gets what `a.no_keys` says. `R8` is an 8-lane vector (the
/// softmax's canonical order).
///
/// # Safety
/// `V`'s and `R8`'s instruction sets are available, and `a.fits(out, scratch)`.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) unsafe fn attend<V: Simd, R8: Simd>(
    a: &Attend<'_>,
    out: &mut [f32],
    scratch: &mut [f32],
) {
    let tp = a.keys.div_ceil(PAD) * PAD;
    let (kt, rest) = scratch.split_at_mut(a.dk * tp);
    let (rows, list) = rest.split_at_mut(ROWS * tp);
    // The kept keys in order (exact as f32: fewer than 2^24).
    let mut n_keys = 0;
    for j in 0..a.keys {
        if let KeyMask::Keys(m) = a.mask
            && !kept(m[j])
        {
            continue;
        }
        list[n_keys] = j as f32;
        n_keys += 1;
    }
    let list = &list[..n_keys];
    // SAFETY: the ISA is the caller's contract.
    let zero = unsafe { V::splat(0.0) };
    for h in 0..a.heads {
        // K of the kept keys, transposed: kt[d * tp + n] is key list[n]'s value d; the columns
        // past the last key are zero, so a whole vector of them can be read.
        // Key by key: each one's `dk` values are contiguous in `a.k`.
        for (n, &j) in list.iter().enumerate() {
            let key = &a.k[j as usize * a.ldk + h * a.dk..][..a.dk];
            for (col, &v) in kt[n..].iter_mut().step_by(tp).zip(key) {
                *col = v;
            }
        }
        for row in kt[..a.dk * tp].chunks_exact_mut(tp) {
            row[n_keys..].fill(0.0);
        }
        let mut i0 = 0;
        while i0 < a.queries {
            let rb = ROWS.min(a.queries - i0);
            let mut seen = [0usize; ROWS];
            for (r, s) in seen.iter_mut().enumerate().take(rb) {
                *s = if a.causal {
                    list.partition_point(|&j| j as usize <= i0 + r)
                } else {
                    n_keys
                };
            }
            let most = seen.iter().copied().max().unwrap_or(0);
            let qrow = |r: usize| &a.q[(i0 + r) * a.ldq + h * a.dk..][..a.dk];
            let mut j = 0;
            while j < most {
                let wide = j + 2 * V::LANES <= tp;
                // SAFETY: the ISA is the caller's contract; `kt` and `rows` have `tp` columns
                // and `j` (+ one or two vectors) stays within them.
                unsafe {
                    if rb == ROWS && wide {
                        scores::<V, ROWS, 2>(
                            zero,
                            [0, 1, 2, 3].map(qrow),
                            kt,
                            tp,
                            j,
                            a.scale,
                            rows,
                        );
                    } else {
                        for r in 0..rb {
                            let row = &mut rows[r * tp..];
                            scores::<V, 1, 1>(zero, [qrow(r)], kt, tp, j, a.scale, row);
                        }
                    }
                }
                j += if rb == ROWS && wide { 2 } else { 1 } * V::LANES;
            }
            // Softmax each row, then the weighted sums: rows whose keys are the shared
            // list's prefix (no per-pair mask) together, then each row alone for the rest.
            let mut kind = [Row::Done; ROWS];
            for (r, &c) in seen.iter().enumerate().take(rb) {
                let i = i0 + r;
                let row = &mut rows[r * tp..][..c];
                let mut any = c > 0;
                if let KeyMask::Pairs(m) = a.mask {
                    let pm = &m[i * a.keys..(i + 1) * a.keys];
                    any = false;
                    for (s, &j) in row.iter_mut().zip(list) {
                        if kept(pm[j as usize]) {
                            any = true;
                        } else {
                            *s = f32::NEG_INFINITY;
                        }
                    }
                }
                kind[r] = match (any, a.no_keys) {
                    (true, _) => {
                        // SAFETY: the ISA is the caller's contract; R8 has 8 lanes, V at
                        // most 16.
                        unsafe { math::row_softmax_wide::<V, R8>(row) };
                        if matches!(a.mask, KeyMask::Pairs(_)) {
                            Row::Pairs
                        } else {
                            Row::Joint
                        }
                    }
                    (false, NoKeys::Uniform) if a.keys > 0 => {
                        // Every key weighs 1 / keys (the row's scratch is as long as the keys).
                        rows[r * tp..][..a.keys].fill(1.0 / a.keys as f32);
                        Row::Uniform
                    }
                    (false, NoKeys::Nan) => {
                        out[i * a.ldo + h * a.dv..][..a.dv].fill(f32::NAN);
                        Row::Done
                    }
                    (false, _) => {
                        out[i * a.ldo + h * a.dv..][..a.dv].fill(0.0);
                        Row::Done
                    }
                };
            }
            let listed = |n: usize| &a.v[list[n] as usize * a.ldv + h * a.dv..][..a.dv];
            let no_skip = |_: usize| false;
            let shared = seen.iter().take(rb).copied().min().unwrap_or(0);
            let together = rb == ROWS && kind.iter().all(|&k| k == Row::Joint) && shared > 0;
            let mut outs = out[i0 * a.ldo..]
                .chunks_mut(a.ldo)
                .map(|o| &mut o[h * a.dv..][..a.dv]);
            let mut orow: [&mut [f32]; ROWS] =
                std::array::from_fn(|_| outs.next().unwrap_or_default());
            if together {
                // The shared prefix of keys for the four rows at once.
                let p: [&[f32]; ROWS] = std::array::from_fn(|r| &rows[r * tp..][..seen[r]]);
                let o = orow.each_mut().map(|o| &mut **o);
                weighted_sum::<V, ROWS>(zero, p, 0..shared, &no_skip, &listed, o, true);
            }
            for r in 0..rb {
                let i = i0 + r;
                let uniform = kind[r] == Row::Uniform;
                let value = |n: usize| {
                    let j = if uniform { n } else { list[n] as usize };
                    &a.v[j * a.ldv + h * a.dv..][..a.dv]
                };
                let skip = |n: usize| match a.mask {
                    KeyMask::Pairs(m) if !uniform => !kept(m[i * a.keys + list[n] as usize]),
                    _ => false,
                };
                let (keys, init) = match kind[r] {
                    Row::Done => continue,
                    Row::Uniform => (0..a.keys, true),
                    Row::Joint if together => (shared..seen[r], false),
                    Row::Pairs | Row::Joint => (0..seen[r], true),
                };
                let p = &rows[r * tp..][..keys.end];
                weighted_sum::<V, 1>(zero, [p], keys, &skip, &value, [&mut *orow[r]], init);
            }
            i0 += rb;
        }
    }
}

/// How a query row's weighted sum is taken.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Row {
    /// Nothing left to do (zeros written, or fewer rows).
    Done,
    /// Every key weighs the same.
    Uniform,
    /// Its own keys under a per-pair mask.
    Pairs,
    /// A prefix of the shared key list.
    Joint,
}

/// Scores of `R` queries against `NJ` vectors of kept keys from column `j`: one FMA chain
/// over `d` each, times `scale`, stored in `rows` (stride `tp`).
///
/// # Safety
/// `V`'s instruction set is available; `kt` has `dk` rows of `tp` columns and `rows` `R` rows
/// of `tp`, with `j + NJ * LANES <= tp`.
#[cfg_attr(sinter_inline, inline(always))]
unsafe fn scores<V: Simd, const R: usize, const NJ: usize>(
    zero: V,
    q: [&[f32]; R],
    kt: &[f32],
    tp: usize,
    j: usize,
    scale: f32,
    rows: &mut [f32],
) {
    let dk = q[0].len();
    assert!(j + NJ * V::LANES <= tp && kt.len() >= dk * tp && rows.len() >= (R - 1) * tp + tp);
    let mut acc = [[zero; NJ]; R];
    for (d, ktd) in kt.chunks_exact(tp).take(dk).enumerate() {
        let mut kv = [zero; NJ];
        for (u, k) in kv.iter_mut().enumerate() {
            // SAFETY: within row d of `kt` (asserted above).
            *k = unsafe { V::load(ktd.as_ptr().add(j + u * V::LANES)) };
        }
        for (acc_r, q_r) in acc.iter_mut().zip(&q) {
            let qs = zero.dup(q_r[d]);
            for (a, k) in acc_r.iter_mut().zip(&kv) {
                *a = qs.fma(*k, *a);
            }
        }
    }
    let s = zero.dup(scale);
    for (acc_r, row) in acc.iter().zip(rows.chunks_exact_mut(tp)) {
        for (u, a) in acc_r.iter().enumerate() {
            // SAFETY: within the row (asserted above).
            unsafe { a.mul(s).store(row.as_mut_ptr().add(j + u * V::LANES)) };
        }
    }
}

/// `o[r] (+)= Σ p[r][n] · value(n)` for `n` in `keys` not skipped, for `R` rows at once: one
/// FMA chain per output value in key order, continued from `o` unless `init` (a chain carried
/// through memory keeps its bits).
#[cfg_attr(sinter_inline, inline(always))]
fn weighted_sum<'v, V: Simd, const R: usize>(
    zero: V,
    p: [&[f32]; R],
    keys: std::ops::Range<usize>,
    skip: &dyn Fn(usize) -> bool,
    value: &dyn Fn(usize) -> &'v [f32],
    mut o: [&mut [f32]; R],
    init: bool,
) {
    let dv = o[0].len();
    let mut c = 0;
    while c + 2 * V::LANES <= dv {
        columns::<V, R, 2>(zero, &p, keys.clone(), skip, value, c, &mut o, init);
        c += 2 * V::LANES;
    }
    while c + V::LANES <= dv {
        columns::<V, R, 1>(zero, &p, keys.clone(), skip, value, c, &mut o, init);
        c += V::LANES;
    }
    if c < dv {
        // The last columns, through vector-wide buffers.
        let w = dv - c;
        for (pr, or) in p.iter().zip(o.iter_mut()) {
            let mut buf = [0.0f32; PAD];
            if !init {
                buf[..w].copy_from_slice(&or[c..]);
            }
            // SAFETY: `buf` has PAD >= LANES values.
            let mut sum = unsafe { V::load(buf.as_ptr()) };
            for n in keys.clone() {
                if skip(n) {
                    continue;
                }
                buf[..w].copy_from_slice(&value(n)[c..]);
                // SAFETY: as above.
                let x = unsafe { V::load(buf.as_ptr()) };
                sum = zero.dup(pr[n]).fma(x, sum);
            }
            // SAFETY: as above.
            unsafe { sum.store(buf.as_mut_ptr()) };
            or[c..].copy_from_slice(&buf[..w]);
        }
    }
}

/// `NV` vectors of output columns from `c`, for `R` rows.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(sinter_inline, inline(always))]
fn columns<'v, V: Simd, const R: usize, const NV: usize>(
    zero: V,
    p: &[&[f32]; R],
    keys: std::ops::Range<usize>,
    skip: &dyn Fn(usize) -> bool,
    value: &dyn Fn(usize) -> &'v [f32],
    c: usize,
    o: &mut [&mut [f32]; R],
    init: bool,
) {
    let mut acc = [[zero; NV]; R];
    if !init {
        for (a, or) in acc.iter_mut().zip(o.iter()) {
            let or = &or[c..c + NV * V::LANES];
            for (u, v) in a.iter_mut().enumerate() {
                // SAFETY: `or` holds NV vectors (sliced above).
                *v = unsafe { V::load(or.as_ptr().add(u * V::LANES)) };
            }
        }
    }
    for n in keys {
        if skip(n) {
            continue;
        }
        let x = &value(n)[c..c + NV * V::LANES];
        let mut xv = [zero; NV];
        for (u, v) in xv.iter_mut().enumerate() {
            // SAFETY: `x` holds NV vectors (sliced above).
            *v = unsafe { V::load(x.as_ptr().add(u * V::LANES)) };
        }
        for (a, pr) in acc.iter_mut().zip(p.iter()) {
            let ps = zero.dup(pr[n]);
            for (av, xv) in a.iter_mut().zip(&xv) {
                *av = ps.fma(*xv, *av);
            }
        }
    }
    for (a, or) in acc.iter().zip(o.iter_mut()) {
        let or = &mut or[c..c + NV * V::LANES];
        for (u, v) in a.iter().enumerate() {
            // SAFETY: `or` holds NV vectors (sliced above).
            unsafe { v.store(or.as_mut_ptr().add(u * V::LANES)) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{Isa, attention};
    use crate::model::init::SplitMix64;

    struct Case {
        s: usize,
        t: usize,
        heads: usize,
        dk: usize,
        dv: usize,
        causal: bool,
        q: Vec<f32>,
        k: Vec<f32>,
        v: Vec<f32>,
        mask: Option<(bool, Vec<f32>)>,
    }

    impl Case {
        fn new(seed: u64) -> Case {
            let mut r = SplitMix64::new(seed);
            let mut pick = |n: usize| (r.next_u64() % n as u64) as usize;
            let (s, t, heads) = (1 + pick(20), 1 + pick(40), 1 + pick(3));
            let (dk, dv) = (1 + pick(40), 1 + pick(70));
            let causal = pick(3) == 0;
            let mask = match pick(3) {
                0 => None,
                1 => Some((false, (0..t).map(|_| (pick(4) != 0) as u8 as f32).collect())),
                _ => Some((
                    true,
                    (0..s * t).map(|_| (pick(4) != 0) as u8 as f32).collect(),
                )),
            };
            let mut r = SplitMix64::new(seed ^ 0x5eed);
            let mut vals = |n: usize| (0..n).map(|_| 2.0 * r.next_signed()).collect::<Vec<f32>>();
            Case {
                q: vals(s * heads * dk),
                k: vals(t * heads * dk),
                v: vals(t * heads * dv),
                s,
                t,
                heads,
                dk,
                dv,
                causal,
                mask,
            }
        }

        fn attend(&self) -> Attend<'_> {
            Attend {
                q: &self.q,
                k: &self.k,
                v: &self.v,
                ldq: self.heads * self.dk,
                ldk: self.heads * self.dk,
                ldv: self.heads * self.dv,
                ldo: self.heads * self.dv,
                queries: self.s,
                keys: self.t,
                heads: self.heads,
                dk: self.dk,
                dv: self.dv,
                scale: 1.0 / (self.dk as f32).sqrt(),
                causal: self.causal,
                mask: match &self.mask {
                    None => KeyMask::All,
                    Some((false, m)) => KeyMask::Keys(m),
                    Some((true, m)) => KeyMask::Pairs(m),
                },
                no_keys: NoKeys::Zeros,
            }
        }

        fn run(&self, isa: Isa) -> Vec<f32> {
            let a = self.attend();
            let mut out = vec![f32::NAN; self.s * self.heads * self.dv];
            let mut scratch = vec![f32::NAN; Attend::scratch_len(self.t, self.dk)];
            attention(isa, &a, &mut out, &mut scratch);
            out
        }

        /// The definition in f64: softmax over the kept keys, zeros where none is kept.
        fn reference(&self) -> Vec<f64> {
            let a = self.attend();
            let (hk, hv) = (self.heads * self.dk, self.heads * self.dv);
            let mut out = vec![0.0; self.s * hv];
            for h in 0..self.heads {
                for i in 0..self.s {
                    let keep = |j: usize| {
                        (!self.causal || j <= i)
                            && match a.mask {
                                KeyMask::All => true,
                                KeyMask::Keys(m) => m[j] > 0.5,
                                KeyMask::Pairs(m) => m[i * self.t + j] > 0.5,
                            }
                    };
                    let keys: Vec<usize> = (0..self.t).filter(|&j| keep(j)).collect();
                    let sc: Vec<f64> = keys
                        .iter()
                        .map(|&j| {
                            (0..self.dk)
                                .map(|d| {
                                    f64::from(self.q[i * hk + h * self.dk + d])
                                        * f64::from(self.k[j * hk + h * self.dk + d])
                                })
                                .sum::<f64>()
                                * f64::from(a.scale)
                        })
                        .collect();
                    let m = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for c in 0..self.dv {
                        out[i * hv + h * self.dv + c] = keys
                            .iter()
                            .zip(&e)
                            .map(|(&j, p)| p / z * f64::from(self.v[j * hv + h * self.dv + c]))
                            .sum();
                    }
                }
            }
            out
        }
    }

    #[test]
    fn every_tier_matches_portable_and_f64() {
        for seed in 0..300 {
            let case = Case::new(seed);
            let want = case.run(Isa::Generic);
            for isa in Isa::available() {
                let got = case.run(isa);
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "seed {seed}: {isa} differs from portable");
            }
            for (i, (&g, r)) in want.iter().zip(case.reference()).enumerate() {
                // |v| <= 2 and the probabilities sum to 1: errors of a few ulps of 2 per term.
                let tol = 1e-5 * (1.0 + case.t as f64).sqrt() + 1e-6 * r.abs();
                assert!(
                    (f64::from(g) - r).abs() <= tol,
                    "seed {seed} value {i}: {g} vs {r}"
                );
            }
        }
    }

    #[test]
    fn padded_keys_change_no_bit() {
        for seed in 0..200 {
            let mut case = Case::new(seed);
            if case.mask.as_ref().is_some_and(|(pairs, _)| *pairs) {
                case.mask = None;
            }
            let alone = case.run(Isa::detect());
            // The same sequence with extra keys that are masked out and hold poison.
            let extra = 1 + (seed as usize % 37);
            let (hk, hv) = (case.heads * case.dk, case.heads * case.dv);
            let mut padded = Case {
                t: case.t + extra,
                k: case.k.clone(),
                v: case.v.clone(),
                q: case.q.clone(),
                mask: None,
                ..case
            };
            let poison = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 3e38];
            padded.k.extend((0..extra * hk).map(|i| poison[i % 4]));
            padded
                .v
                .extend((0..extra * hv).map(|i| poison[(i + 1) % 4]));
            let mut m = match &case.mask {
                Some((_, m)) => m.clone(),
                None => vec![1.0; case.t],
            };
            m.resize(case.t + extra, 0.0);
            padded.mask = Some((false, m));
            for isa in Isa::available() {
                let got = padded.run(isa);
                let same = got
                    .iter()
                    .zip(&alone)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "seed {seed}: {isa}, {extra} padded keys changed the output"
                );
            }
        }
    }

    #[test]
    fn a_query_that_sees_no_key_gets_zeros() {
        let mut case = Case::new(7);
        case.causal = false;
        case.mask = Some((false, vec![0.0; case.t]));
        assert!(case.run(Isa::detect()).iter().all(|&x| x.to_bits() == 0));
        // Uniform: every key weighs 1 / keys, the same for every query.
        let a = Attend {
            no_keys: NoKeys::Uniform,
            ..case.attend()
        };
        let mut out = vec![f32::NAN; case.s * case.heads * case.dv];
        let mut scratch = vec![f32::NAN; Attend::scratch_len(case.t, case.dk)];
        attention(Isa::detect(), &a, &mut out, &mut scratch);
        let hv = case.heads * case.dv;
        for c in 0..hv {
            let (h, c0) = (c / case.dv, c % case.dv);
            let mean: f64 = (0..case.t)
                .map(|j| f64::from(case.v[j * hv + h * case.dv + c0]))
                .sum::<f64>()
                / case.t as f64;
            for i in 0..case.s {
                assert!(
                    (f64::from(out[i * hv + c]) - mean).abs() < 1e-5,
                    "column {c}"
                );
            }
        }
    }
}

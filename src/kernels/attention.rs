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
//! The scores live in a few rows of scratch (a tile of queries at a time, as long as the keys):
//! no `[heads, S, T]` tensor is ever stored. Per head, the kept keys' K is packed transposed
//! and their V packed row by row, so both products run over contiguous, zero-padded operands
//! in register tiles of `R` queries (the tier's choice: the tile changes no sum's order).

use super::math;
use super::simd::Simd;
use std::ops::Range;

/// The most queries a tile holds (the widest tier's tile; the scratch holds this many score
/// rows).
pub(crate) const ROWS_MAX: usize = 8;

/// Key columns of the scratch, and a packed value row, are padded to a multiple of this (the
/// widest lane count).
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
    /// Scratch values [`attend`] needs: one head's kept keys, K transposed and V packed, a
    /// tile of score rows and the list of kept keys (saturating: a size that overflows is
    /// never met).
    pub fn scratch_len(keys: usize, dk: usize, dv: usize) -> usize {
        let tp = keys.div_ceil(PAD).saturating_mul(PAD);
        let dvp = dv.div_ceil(PAD).saturating_mul(PAD);
        dk.saturating_add(ROWS_MAX + 1)
            .saturating_add(dvp)
            .saturating_mul(tp)
    }

    /// Whether the operands hold what the shape says (the kernel's precondition).
    pub fn fits(&self, out: &[f32], scratch: &[f32]) -> bool {
        let span = |rows: usize, ld: usize, w: usize| match rows {
            0 => Some(0),
            _ => (rows - 1).checked_mul(ld).and_then(|x| x.checked_add(w)),
        };
        let (Some(hk), Some(hv)) = (
            self.heads.checked_mul(self.dk),
            self.heads.checked_mul(self.dv),
        ) else {
            return false;
        };
        let holds = |len: usize, rows: usize, ld: usize, w: usize| {
            span(rows, ld, w).is_some_and(|n| n <= len) && (rows <= 1 || ld >= w)
        };
        let mask = match self.mask {
            KeyMask::All => true,
            KeyMask::Keys(m) => m.len() >= self.keys,
            KeyMask::Pairs(m) => self
                .queries
                .checked_mul(self.keys)
                .is_some_and(|n| m.len() >= n),
        };
        holds(self.q.len(), self.queries, self.ldq, hk)
            && holds(self.k.len(), self.keys, self.ldk, hk)
            && holds(self.v.len(), self.keys, self.ldv, hv)
            && holds(out.len(), self.queries, self.ldo, hv)
            && scratch.len() >= Self::scratch_len(self.keys, self.dk, self.dv)
            && self.keys < 1 << 24
            && mask
    }
}

/// Attention of one sample into `out` (`queries` rows of `heads * dv` at stride `ldo`), in
/// tiles of `R` queries. A query that sees no key gets what `a.no_keys` says. `R8` is an
/// 8-lane vector (the softmax's canonical order).
///
/// # Safety
/// `V`'s and `R8`'s instruction sets are available, `a.fits(out, scratch)` and
/// `1 <= R <= ROWS_MAX`.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) unsafe fn attend<V: Simd, R8: Simd, const R: usize>(
    a: &Attend<'_>,
    out: &mut [f32],
    scratch: &mut [f32],
) {
    const { assert!(R >= 1 && R <= ROWS_MAX) };
    let tp = a.keys.div_ceil(PAD) * PAD;
    let dvp = a.dv.div_ceil(PAD) * PAD;
    let (kt, rest) = scratch.split_at_mut(a.dk * tp);
    let (rows, rest) = rest.split_at_mut(ROWS_MAX * tp);
    let (list, vh) = rest.split_at_mut(tp);
    let vh = &mut vh[..tp * dvp];
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
        // The kept keys of this head: K transposed (kt[d * tp + n] is key list[n]'s value d)
        // and V row by row (vh[n * dvp + c]), both zero past the last key and value, so whole
        // vectors of them can be read.
        for (n, &j) in list.iter().enumerate() {
            let j = j as usize;
            let key = &a.k[j * a.ldk + h * a.dk..][..a.dk];
            if let Some(last) = a.dk.checked_sub(1) {
                let col = &mut kt[n..][..last * tp + 1];
                for (d, &x) in key.iter().enumerate() {
                    col[d * tp] = x;
                }
            }
            let row = &mut vh[n * dvp..][..dvp];
            row[..a.dv].copy_from_slice(&a.v[j * a.ldv + h * a.dv..][..a.dv]);
            row[a.dv..].fill(0.0);
        }
        for row in kt[..a.dk * tp].chunks_exact_mut(tp) {
            row[n_keys..].fill(0.0);
        }
        let mut i0 = 0;
        while i0 < a.queries {
            let rb = R.min(a.queries - i0);
            let mut seen = [0usize; R];
            for (r, s) in seen.iter_mut().enumerate().take(rb) {
                *s = if a.causal {
                    list.partition_point(|&j| j as usize <= i0 + r)
                } else {
                    n_keys
                };
            }
            let most = seen.iter().copied().max().unwrap_or(0);
            let qrow = |r: usize| &a.q[(i0 + r.min(rb - 1)) * a.ldq + h * a.dk..][..a.dk];
            let mut j = 0;
            while j < most {
                let wide = j + 2 * V::LANES <= tp;
                // SAFETY: the ISA is the caller's contract; `kt` has `dk` rows and `rows`
                // `ROWS_MAX` rows of `tp` columns, and `j` (+ one or two vectors) stays
                // within them.
                unsafe {
                    if rb == R && wide {
                        let q = std::array::from_fn(qrow);
                        scores::<V, R, 2>(zero, q, kt, tp, j, a.scale, rows);
                    } else {
                        // A short tile, or the last odd vector of keys: row by row.
                        for r in 0..rb {
                            let row = &mut rows[r * tp..];
                            scores::<V, 1, 1>(zero, [qrow(r)], kt, tp, j, a.scale, row);
                        }
                    }
                }
                j += if rb == R && wide { 2 } else { 1 } * V::LANES;
            }
            // Softmax each row, then the weighted sums: rows whose keys are the shared
            // list's prefix (no per-pair mask) together, then each row alone for the rest.
            let mut kind = [Row::Done; R];
            let mut lens = [0; R];
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
                        lens[r] = c;
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
            // SAFETY: the ISA is the caller's contract; R8 has 8 lanes, V at most 16.
            unsafe { math::rows_softmax_wide::<V, R8, R>(rows, tp, lens) };
            let shared = seen.iter().take(rb).copied().min().unwrap_or(0);
            let together = rb == R && kind.iter().all(|&k| k == Row::Joint) && shared > 0;
            let mut outs = out[i0 * a.ldo..]
                .chunks_mut(a.ldo.max(1))
                .map(|o| &mut o[h * a.dv..][..a.dv]);
            let mut orow: [&mut [f32]; R] =
                std::array::from_fn(|_| outs.next().unwrap_or_default());
            if together {
                // The shared prefix of keys for the whole tile at once.
                let o = orow.each_mut().map(|o| &mut **o);
                weighted_sum::<V, R>(zero, rows, tp, vh, dvp, 0..shared, o, true);
            }
            for r in 0..rb {
                let i = i0 + r;
                let row = &rows[r * tp..];
                let o = [&mut *orow[r]];
                match kind[r] {
                    Row::Done => {}
                    Row::Joint if together => {
                        weighted_sum::<V, 1>(zero, row, tp, vh, dvp, shared..seen[r], o, false);
                    }
                    Row::Joint => {
                        weighted_sum::<V, 1>(zero, row, tp, vh, dvp, 0..seen[r], o, true);
                    }
                    Row::Pairs => {
                        // Each kept key's own chain link, in key order: the dropped ones are
                        // skipped, never multiplied by zero.
                        let m = match a.mask {
                            KeyMask::Pairs(m) => &m[i * a.keys..(i + 1) * a.keys],
                            _ => &[],
                        };
                        let mut init = true;
                        let mut n = 0;
                        while n < seen[r] {
                            let start = n;
                            while n < seen[r] && kept(m[list[n] as usize]) {
                                n += 1;
                            }
                            if n > start {
                                let o = [&mut *orow[r]];
                                weighted_sum::<V, 1>(zero, row, tp, vh, dvp, start..n, o, init);
                                init = false;
                            }
                            n += 1;
                        }
                    }
                    Row::Uniform => uniform::<V>(zero, a, h, &row[..a.keys], &mut *orow[r]),
                }
            }
            i0 += rb;
        }
    }
}

/// How a query row's weighted sum is taken.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Row {
    /// Nothing left to do (zeros or NaN written, or fewer rows).
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
    assert!(
        j + NJ * V::LANES <= tp
            && kt.len() >= dk * tp
            && rows.len() >= R * tp
            && q.iter().all(|q| q.len() == dk)
    );
    let mut acc = [[zero; NJ]; R];
    let ktp = kt.as_ptr();
    for d in 0..dk {
        let mut kv = [zero; NJ];
        for (u, k) in kv.iter_mut().enumerate() {
            // SAFETY: within row d of `kt` (asserted above).
            *k = unsafe { V::load(ktp.add(d * tp + j + u * V::LANES)) };
        }
        for (acc_r, q_r) in acc.iter_mut().zip(&q) {
            // SAFETY: d < dk = q_r.len() (asserted above).
            let qs = zero.dup(unsafe { *q_r.get_unchecked(d) });
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

/// `o[r] (+)= Σ p[r][n] · vh[n]` over the packed keys `keys`, for `R` rows of probabilities
/// `tp` apart in `p`: one FMA chain per output value in key order, continued from `o` unless
/// `init` (a chain carried through memory keeps its bits).
#[allow(clippy::too_many_arguments)]
#[cfg_attr(sinter_inline, inline(always))]
fn weighted_sum<V: Simd, const R: usize>(
    zero: V,
    p: &[f32],
    tp: usize,
    vh: &[f32],
    dvp: usize,
    keys: Range<usize>,
    mut o: [&mut [f32]; R],
    init: bool,
) {
    let dv = o[0].len();
    assert!(
        keys.start <= keys.end
            && keys.end <= tp
            && p.len() >= (R - 1) * tp + keys.end
            && vh.len() >= keys.end * dvp
            && dv <= dvp
            && dvp.is_multiple_of(V::LANES)
            && o.iter().all(|o| o.len() == dv)
    );
    let mut c = 0;
    while c + 2 * V::LANES <= dvp {
        // SAFETY: as asserted, with c + 2 vectors <= dvp.
        unsafe { columns::<V, R, 2>(zero, p, tp, vh, dvp, keys.clone(), c, &mut o, init) };
        c += 2 * V::LANES;
    }
    if c < dvp {
        // SAFETY: as asserted, with c + 1 vector <= dvp (dvp is a multiple of the lanes).
        unsafe { columns::<V, R, 1>(zero, p, tp, vh, dvp, keys, c, &mut o, init) };
    }
}

/// `NV` vectors of output columns from `c`, for `R` rows; the columns past `o`'s width go
/// through a buffer.
///
/// # Safety
/// What [`weighted_sum`] asserts, and `c + NV * LANES <= dvp`.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(sinter_inline, inline(always))]
unsafe fn columns<V: Simd, const R: usize, const NV: usize>(
    zero: V,
    p: &[f32],
    tp: usize,
    vh: &[f32],
    dvp: usize,
    keys: Range<usize>,
    c: usize,
    o: &mut [&mut [f32]; R],
    init: bool,
) {
    let mut acc = [[zero; NV]; R];
    if !init {
        for (a, or) in acc.iter_mut().zip(o.iter()) {
            for (u, v) in a.iter_mut().enumerate() {
                *v = load_part(zero, or, c + u * V::LANES);
            }
        }
    }
    let (pp, vp) = (p.as_ptr(), vh.as_ptr());
    for n in keys {
        let mut xv = [zero; NV];
        for (u, v) in xv.iter_mut().enumerate() {
            // SAFETY: n < keys.end and c + NV vectors <= dvp: within `vh` (caller).
            *v = unsafe { V::load(vp.add(n * dvp + c + u * V::LANES)) };
        }
        for (r, a) in acc.iter_mut().enumerate() {
            // SAFETY: r < R and n < keys.end: within `p` (caller).
            let ps = zero.dup(unsafe { *pp.add(r * tp + n) });
            for (av, xv) in a.iter_mut().zip(&xv) {
                *av = ps.fma(*xv, *av);
            }
        }
    }
    for (a, or) in acc.iter().zip(o.iter_mut()) {
        for (u, v) in a.iter().enumerate() {
            store_part(*v, or, c + u * V::LANES);
        }
    }
}

/// The vector of `o` from `c`, zeros past its end.
#[cfg_attr(sinter_inline, inline(always))]
fn load_part<V: Simd>(_isa: V, o: &[f32], c: usize) -> V {
    if c + V::LANES <= o.len() {
        // SAFETY: LANES values from c are within `o`.
        unsafe { V::load(o.as_ptr().add(c)) }
    } else {
        let mut buf = [0.0f32; PAD];
        let w = o.len().saturating_sub(c);
        buf[..w].copy_from_slice(&o[c.min(o.len())..]);
        // SAFETY: `buf` has PAD >= LANES values.
        unsafe { V::load(buf.as_ptr()) }
    }
}

/// Stores the part of `x` that falls within `o` from `c`.
#[cfg_attr(sinter_inline, inline(always))]
fn store_part<V: Simd>(x: V, o: &mut [f32], c: usize) {
    if c + V::LANES <= o.len() {
        // SAFETY: LANES values from c are within `o`.
        unsafe { x.store(o.as_mut_ptr().add(c)) }
    } else {
        let mut buf = [0.0f32; PAD];
        // SAFETY: `buf` has PAD >= LANES values.
        unsafe { x.store(buf.as_mut_ptr()) };
        let (len, w) = (o.len(), o.len().saturating_sub(c));
        o[c.min(len)..].copy_from_slice(&buf[..w]);
    }
}

/// A query that sees no key under [`NoKeys::Uniform`]: `Σ p[j] · v[j]` over every key `j`,
/// masked or not, one FMA chain per value in key order (read in place: the packed values hold
/// the kept keys only).
#[cfg_attr(sinter_inline, inline(always))]
fn uniform<V: Simd>(zero: V, a: &Attend<'_>, h: usize, p: &[f32], o: &mut [f32]) {
    let mut c = 0;
    while c < a.dv {
        let mut sum = zero;
        for (j, &pj) in p.iter().enumerate() {
            let x = load_part(zero, &a.v[j * a.ldv + h * a.dv..][..a.dv], c);
            sum = zero.dup(pj).fma(x, sum);
        }
        store_part(sum, o, c);
        c += V::LANES;
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
            let mut scratch = vec![f32::NAN; Attend::scratch_len(self.t, self.dk, self.dv)];
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
    fn heads_of_width_zero_are_defined() {
        for (seed, dk, dv) in [(1, 0, 5), (2, 3, 0), (3, 0, 0), (4, 0, 17)] {
            let mut case = Case::new(seed);
            case.dk = dk;
            case.dv = dv;
            case.q.truncate(case.s * case.heads * dk);
            case.k.truncate(case.t * case.heads * dk);
            case.v.truncate(case.t * case.heads * dv);
            let want = case.reference();
            for isa in Isa::available() {
                let got = case.run(isa);
                assert_eq!(got.len(), want.len());
                // (A scale of 1 / sqrt(0) makes NaN scores: NaN in both.)
                for (&g, &r) in got.iter().zip(&want) {
                    let same = (g.is_nan() && r.is_nan()) || (f64::from(g) - r).abs() <= 1e-5;
                    assert!(same, "dk {dk} dv {dv}: {g} vs {r}");
                }
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
        let mut scratch = vec![f32::NAN; Attend::scratch_len(case.t, case.dk, case.dv)];
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

//! The data-movement ops of a plan, one sample at a time: padding, im2col, pooling, the copy
//! of a concatenation's part, elementwise sums, transposes. Plain safe loops; none of them
//! rounds more than once per value, so every tier and thread count gives the same bits.
//! Window geometry (which input step a tap reads) comes from the caller as a function, so
//! kernels stay ignorant of Keras's padding rules.

/// Runs a one-sample op over a batch: `x` and `y` each hold `batch` samples of equal length.
pub fn per_sample(batch: usize, x: &[f32], y: &mut [f32], mut f: impl FnMut(&[f32], &mut [f32])) {
    if batch == 0 {
        return;
    }
    let (il, ol) = (x.len() / batch, y.len() / batch);
    for (x, y) in x.chunks_exact(il.max(1)).zip(y.chunks_exact_mut(ol.max(1))) {
        f(x, y);
    }
}

/// `y = [0; left] ++ x ++ [0; right]` (values, for one sample).
pub fn pad(left: usize, right: usize, x: &[f32], y: &mut [f32]) {
    let (head, rest) = y.split_at_mut(left);
    let (body, tail) = rest.split_at_mut(x.len());
    head.fill(0.0);
    body.copy_from_slice(x);
    tail[..right].fill(0.0);
}

/// [`pad`] of the transpose of `x`: `x` is `[ch, steps]`, the body of `y` `[steps, ch]`.
/// Goes by blocks of 8 steps so that each read stays within a few cache lines per channel.
pub fn pad_transposed(ch: usize, left: usize, right: usize, x: &[f32], y: &mut [f32]) {
    let (head, rest) = y.split_at_mut(left);
    let (body, tail) = rest.split_at_mut(x.len());
    head.fill(0.0);
    tail[..right].fill(0.0);
    if ch == 0 {
        return;
    }
    let steps = x.len() / ch;
    for t0 in (0..steps).step_by(8) {
        let t1 = (t0 + 8).min(steps);
        for (c, row) in x.chunks_exact(steps).enumerate() {
            for (t, &v) in row[t0..t1].iter().enumerate() {
                body[(t0 + t) * ch + c] = v;
            }
        }
    }
}

/// Windows of `x` (`[len, ch]`) unrolled into the rows of `y` (`[out, size * ch]`): tap `t`
/// of window `o` is step `source(o, t)` of `x`, or zeros (padding) for `None`.
pub fn im2col(
    size: usize,
    ch: usize,
    source: impl Fn(usize, usize) -> Option<usize>,
    x: &[f32],
    y: &mut [f32],
) {
    for (o, row) in y.chunks_exact_mut(size * ch).enumerate() {
        for (t, tap) in row.chunks_exact_mut(ch).enumerate() {
            match source(o, t) {
                Some(i) => tap.copy_from_slice(&x[i * ch..][..ch]),
                None => tap.fill(0.0),
            }
        }
    }
}

/// Max or mean per window, `[len, ch]` to `[out, ch]`: window `o` reads the steps
/// `sources(o)` in order (padding is not among them: max ignores it, mean divides by the real
/// taps only, as Keras does). NaN wins a max; a window without taps gives -inf (max) or NaN.
pub fn pool<I: Iterator<Item = usize>>(
    max: bool,
    ch: usize,
    sources: impl Fn(usize) -> I,
    x: &[f32],
    y: &mut [f32],
) {
    for (o, out) in y.chunks_exact_mut(ch).enumerate() {
        let mut taps = sources(o);
        let Some(first) = taps.next() else {
            out.fill(if max { f32::NEG_INFINITY } else { f32::NAN });
            continue;
        };
        out.copy_from_slice(&x[first * ch..][..ch]);
        let mut n = 1u32;
        for i in taps {
            n += 1;
            for (acc, &v) in out.iter_mut().zip(&x[i * ch..][..ch]) {
                *acc = if !max {
                    *acc + v
                } else if v > *acc || v.is_nan() {
                    v
                } else {
                    *acc
                };
            }
        }
        if !max {
            let n = n as f32;
            out.iter_mut().for_each(|v| *v /= n);
        }
    }
}

/// One input's part of a concatenation: `outer` blocks of `width` values from `x` go to
/// columns `offset..offset + width` of `y`'s `total`-wide blocks.
pub fn concat_part(
    outer: usize,
    width: usize,
    total: usize,
    offset: usize,
    x: &[f32],
    y: &mut [f32],
) {
    for o in 0..outer {
        y[o * total + offset..][..width].copy_from_slice(&x[o * width..][..width]);
    }
}

/// How [`merge`] combines `y` with the next input `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// `y + x`
    Add,
    /// `y - x`
    Sub,
    /// `y * x`
    Mul,
    /// The larger; NaN if either is NaN.
    Max,
    /// The smaller; NaN if either is NaN.
    Min,
}

/// Expands `$body` once per [`Combine`], with `$f` a plain function: the choice is made
/// outside the loop, so each loop is straight-line code the compiler vectorizes.
macro_rules! per_combine {
    ($op:expr, |$f:ident| $body:expr) => {{
        fn nan_or(a: f32, b: f32, f: fn(f32, f32) -> f32) -> f32 {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else {
                f(a, b)
            }
        }
        match $op {
            Combine::Add => {
                let $f = |a: f32, b: f32| a + b;
                $body
            }
            Combine::Sub => {
                let $f = |a: f32, b: f32| a - b;
                $body
            }
            Combine::Mul => {
                let $f = |a: f32, b: f32| a * b;
                $body
            }
            Combine::Max => {
                let $f = |a: f32, b: f32| nan_or(a, b, f32::max);
                $body
            }
            Combine::Min => {
                let $f = |a: f32, b: f32| nan_or(a, b, f32::min);
                $body
            }
        }
    }};
}

/// `y = y (op) x`, elementwise; every NaN canonical (IEEE gives one result for each op, and a
/// NaN in either operand makes a NaN for max and min too, as NumPy's maximum does).
pub fn merge(op: Combine, x: &[f32], y: &mut [f32]) {
    per_combine!(op, |f| for (y, &x) in y.iter_mut().zip(x) {
        *y = canonical(f(*y, x));
    })
}

/// `out = a (op) b`, elementwise: [`merge`] of `b` into a copy of `a`, in one pass.
pub fn combine(op: Combine, a: &[f32], b: &[f32], out: &mut [f32]) {
    per_combine!(op, |f| for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = canonical(f(a, b));
    })
}

/// `v`, or the canonical NaN.
#[inline(always)]
fn canonical(v: f32) -> f32 {
    if v.is_nan() { f32::NAN } else { v }
}

/// `y /= n` (an average's last step).
pub fn div(n: f32, y: &mut [f32]) {
    for v in y {
        let q = *v / n;
        *v = if q.is_nan() { f32::NAN } else { q };
    }
}

/// `y[r]` = the index of the largest value of row `r` of `x` (rows `width` long), as an f32
/// (exact: `width <= 2^24`): the first on ties, the first NaN if there is one (NumPy's rule).
pub fn argmax(width: usize, x: &[f32], y: &mut [f32]) {
    for (row, out) in x.chunks_exact(width).zip(y.iter_mut()) {
        let mut best = 0;
        for (j, &v) in row.iter().enumerate().skip(1) {
            let b = row[best];
            if !b.is_nan() && (v > b || v.is_nan()) {
                best = j;
            }
        }
        *out = best as f32;
    }
}

/// Rows of `table` (`dim` values each) for each id, in order: `y[i*dim..]` = row `ids[i]`.
/// The ids were checked to be in range before the run.
pub fn gather(table: &[f32], dim: usize, ids: impl Iterator<Item = usize>, y: &mut [f32]) {
    for (row, id) in y.chunks_exact_mut(dim).zip(ids) {
        row.copy_from_slice(&table[id * dim..][..dim]);
    }
}

/// One sample's transpose: `y` (axes in `perm` order) from `x` (of shape `shape`). Walks `y`
/// in order, reading `x` with the permuted strides; no allocation.
pub fn permute(shape: &[usize], perm: &[usize], x: &[f32], y: &mut [f32]) {
    /// Copies the block of `y` for output axes `depth..`, whose first source value is `x[at]`.
    fn walk(shape: &[usize], perm: &[usize], depth: usize, x: &[f32], at: usize, y: &mut [f32]) {
        let axis = perm[depth];
        let stride: usize = shape[axis + 1..].iter().product();
        if depth + 1 == perm.len() {
            for (j, v) in y.iter_mut().enumerate() {
                *v = x[at + j * stride];
            }
            return;
        }
        let block = y.len() / shape[axis].max(1);
        for (j, part) in y.chunks_exact_mut(block.max(1)).enumerate() {
            walk(shape, perm, depth + 1, x, at + j * stride, part);
        }
    }
    if !y.is_empty() {
        walk(shape, perm, 0, x, 0, y);
    }
}

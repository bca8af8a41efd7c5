//! The data-movement ops of a plan, one sample at a time: padding, im2col, pooling, the copy
//! of a concatenation's part, elementwise sums, transposes. Plain safe loops; none of them
//! rounds more than once per value, so every tier and thread count gives the same bits.
//! Window geometry (which input step a tap reads) comes from the caller as a function, so
//! kernels stay ignorant of Keras's padding rules.

use std::ops::Range;

use super::Isa;
use super::simd::Simd;

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

/// A zero pad of one image read channels-first: `x` is `[ch, h, w]`, `y` `[top + h + bottom,
/// left + w + right, ch]` (`rows = (top, bottom)`, `cols = (left, right)`). One pass over
/// the image where a transpose and then a pad would be two.
pub fn pad2d_channels_first(
    ch: usize,
    (h, w): (usize, usize),
    rows: (usize, usize),
    cols: (usize, usize),
    x: &[f32],
    y: &mut [f32],
) {
    let line = (cols.0 + w + cols.1) * ch;
    let (top, rest) = y.split_at_mut(rows.0 * line);
    let (body, bottom) = rest.split_at_mut(h * line);
    top.fill(0.0);
    bottom[..rows.1 * line].fill(0.0);
    let plane = h * w;
    for (r, out) in body.chunks_exact_mut(line.max(1)).enumerate() {
        let (before, rest) = out.split_at_mut(cols.0 * ch);
        let (mid, after) = rest.split_at_mut(w * ch);
        before.fill(0.0);
        after.fill(0.0);
        let src = |c: usize| &x[c * plane + r * w..][..w];
        match ch {
            // An image's colors: one interleaving pass.
            3 => interleave_rows([src(0), src(1), src(2)], mid),
            1 => mid.copy_from_slice(src(0)),
            _ => {
                for c in 0..ch {
                    for (px, &v) in mid.chunks_exact_mut(ch).zip(src(c)) {
                        px[c] = v;
                    }
                }
            }
        }
    }
}

/// `y[j * R + i] = rows[i][j]`.
fn interleave_rows<const R: usize>(rows: [&[f32]; R], y: &mut [f32]) {
    for (j, out) in y.chunks_exact_mut(R).enumerate() {
        for (o, row) in out.iter_mut().zip(rows) {
            *o = row[j];
        }
    }
}

/// One axis of a sliding window, in numbers (the caller's padding rule already applied): tap
/// `t` of output `o` reads input step `o * stride + t * dilation - pad`, or padding outside
/// `0..len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Axis {
    /// Input steps.
    pub len: usize,
    /// Taps per window.
    pub size: usize,
    /// Steps between windows.
    pub stride: usize,
    /// Steps between taps.
    pub dilation: usize,
    /// Padding steps before the input.
    pub pad: usize,
    /// Outputs.
    pub out: usize,
}

impl Axis {
    /// `len / size` whole windows side by side, no padding.
    pub fn whole(len: usize, size: usize) -> Axis {
        Axis {
            len,
            size,
            stride: size,
            dilation: 1,
            pad: 0,
            out: len / size.max(1),
        }
    }

    pub(crate) fn source(&self, o: usize, t: usize) -> Option<usize> {
        (o * self.stride + t * self.dilation)
            .checked_sub(self.pad)
            .filter(|&i| i < self.len)
    }

    /// The input steps of output `o`'s taps inside the input, without dilation.
    pub(crate) fn span(&self, o: usize) -> Range<usize> {
        let start = o * self.stride;
        let first = start.max(self.pad) - self.pad;
        let end = (start + self.size)
            .min(self.pad + self.len)
            .saturating_sub(self.pad);
        first..end.max(first)
    }

    /// The outputs whose taps are all inside the input (`lo..hi`).
    pub(crate) fn full(&self) -> std::ops::Range<usize> {
        let lo = self.pad.div_ceil(self.stride.max(1));
        let span = (self.size.max(1) - 1) * self.dilation + 1;
        let hi = (self.len + self.pad)
            .checked_sub(span)
            .map_or(0, |room| room / self.stride.max(1) + 1)
            .min(self.out);
        lo..hi.max(lo)
    }

    /// The outputs whose taps are all inside the input and adjacent (`lo..hi`).
    fn inside(&self) -> std::ops::Range<usize> {
        if self.dilation != 1 && self.size > 1 {
            return 0..0;
        }
        let lo = self.pad.div_ceil(self.stride.max(1));
        let hi = (self.len + self.pad)
            .checked_sub(self.size)
            .map_or(0, |room| room / self.stride.max(1) + 1)
            .min(self.out);
        lo..hi.max(lo)
    }
}

/// The windows of `x` (`[rows.len, cols.len, ch]`) unrolled into the rows of `y` (im2col:
/// `[rows.out * cols.out, rows.size * cols.size * take.len()]`, zeros for padding), each tap
/// holding the channels `take` (all of them, or one group of a grouped convolution). Goes by
/// output row and kernel row, so the taps of a kernel row inside the input are one copy when
/// every channel is taken: a 3x3 window over one channel is three copies of three values. A
/// 1-D window is one column. Out-of-range `take` leaves `y` as it is.
pub fn im2col(rows: Axis, cols: Axis, ch: usize, take: Range<usize>, x: &[f32], y: &mut [f32]) {
    let width = take.len();
    let run = cols.size * width;
    let window = rows.size * run;
    if window == 0 || cols.out == 0 || take.end > ch {
        return;
    }
    let inside = if width == ch { cols.inside() } else { 0..0 };
    for (oh, out_row) in y.chunks_exact_mut(cols.out * window).enumerate() {
        for i in 0..rows.size {
            let Some(r) = rows.source(oh, i) else {
                for w in out_row.chunks_exact_mut(window) {
                    w[i * run..][..run].fill(0.0);
                }
                continue;
            };
            let line = &x[r * cols.len * ch..][..cols.len * ch];
            if !inside.is_empty() {
                // The windows inside the input: one run each, copied in one loop.
                let (step, first) = (
                    cols.stride * ch,
                    (inside.start * cols.stride - cols.pad) * ch,
                );
                let at = inside.start * window + i * run;
                copy_runs(
                    run,
                    &mut out_row[at..],
                    window,
                    &line[first..],
                    step,
                    inside.len(),
                );
            }
            let dsts = out_row
                .chunks_exact_mut(window)
                .map(|w| &mut w[i * run..][..run]);
            for (ow, dst) in dsts.enumerate() {
                if inside.contains(&ow) {
                    continue;
                }
                for (t, tap) in dst.chunks_exact_mut(width).enumerate() {
                    match cols.source(ow, t) {
                        Some(c) => copy_short(tap, &line[c * ch..][take.clone()]),
                        None => tap.fill(0.0),
                    }
                }
            }
        }
    }
}

/// `count` runs of `run` values: run `n` from `src[n * step..]` to `dst[n * ld..]`. Runs of
/// up to 16 values are fixed-size copies (no library call per run).
fn copy_runs(run: usize, dst: &mut [f32], ld: usize, src: &[f32], step: usize, count: usize) {
    fn go<const R: usize>(dst: &mut [f32], ld: usize, src: &[f32], step: usize, count: usize) {
        for n in 0..count {
            let s: &[f32; R] = src[n * step..][..R].try_into().expect("R values");
            let d: &mut [f32; R] = (&mut dst[n * ld..][..R]).try_into().expect("R values");
            *d = *s;
        }
    }
    macro_rules! runs {
        ($($r:literal)*) => {
            match run {
                $($r => go::<$r>(dst, ld, src, step, count),)*
                _ => (0..count).for_each(|n| {
                    copy_short(&mut dst[n * ld..][..run], &src[n * step..][..run])
                }),
            }
        };
    }
    runs!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);
}

/// `dst.copy_from_slice(src)` without a library call for a few values (the call costs more
/// than the copy): four at a time, then one at a time, unrolled by hand.
#[inline]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    if dst.len() >= 32 {
        dst.copy_from_slice(src);
        return;
    }
    let mut d = dst.chunks_exact_mut(4);
    let mut s = src.chunks_exact(4);
    for (d, s) in (&mut d).zip(&mut s) {
        let s: [f32; 4] = s.try_into().expect("4 values");
        d.copy_from_slice(&s);
    }
    let (d, s) = (d.into_remainder(), s.remainder());
    if let (Some(a), Some(b)) = (d.first_mut(), s.first()) {
        *a = *b;
    }
    if let (Some(a), Some(b)) = (d.get_mut(1), s.get(1)) {
        *a = *b;
    }
    if let (Some(a), Some(b)) = (d.get_mut(2), s.get(2)) {
        *a = *b;
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
        let mut taps = sources(o).map(|i| &x[i * ch..][..ch]);
        match taps.next() {
            None => out.fill(if max { f32::NEG_INFINITY } else { f32::NAN }),
            Some(first) if max => fold::<true>(out, first, taps),
            Some(first) => fold::<false>(out, first, taps),
        }
    }
}

/// A loop over one sample whose bits do not depend on the tier that runs it: written over
/// [`Simd`] (whose every operation has one result), or scalar code in a fixed order without
/// FMA that the compiler may vectorize. Each tier compiles it with its own instructions and
/// lanes ([`super::plain`]).
pub(crate) trait PlainLoop: Sync {
    /// One sample `x` into `y`, with `scratch` of the loop's own size (none for a pool).
    ///
    /// # Safety
    /// `V`'s instruction set is available.
    unsafe fn run<V: Simd>(&self, x: &[f32], y: &mut [f32], scratch: &mut [f32]);
}

/// [`pool`] over rectangles, one sample: `x` is `[rows.len, cols.len, ch]`, `y` `[rows.out,
/// cols.out, ch]`, the windows without dilation. Each output is the max (NaN wins) or the
/// mean of its window's taps inside the input, row by row (the order and bits of [`pool`]);
/// a window with none gives -inf (max) or NaN (mean).
#[derive(Clone, Copy, Debug)]
pub struct PoolRects {
    /// Max, or mean.
    pub max: bool,
    /// Down the rows.
    pub rows: Axis,
    /// Across the columns.
    pub cols: Axis,
    /// Channels.
    pub ch: usize,
}

impl PlainLoop for PoolRects {
    #[inline(always)]
    unsafe fn run<V: Simd>(&self, x: &[f32], y: &mut [f32], _: &mut [f32]) {
        let (ch, width) = (self.ch, self.cols.len);
        if ch == 0 || self.cols.out == 0 {
            return;
        }
        for (oh, out_row) in y.chunks_exact_mut(self.cols.out * ch).enumerate() {
            let rows = self.rows.span(oh);
            for (ow, out) in out_row.chunks_exact_mut(ch).enumerate() {
                let cols = self.cols.span(ow);
                if rows.is_empty() || cols.is_empty() {
                    out.fill(if self.max {
                        f32::NEG_INFINITY
                    } else {
                        f32::NAN
                    });
                } else if self.max {
                    rect_fold::<true>(out, x, (rows.clone(), cols), width);
                } else {
                    rect_fold::<false>(out, x, (rows.clone(), cols), width);
                }
            }
        }
    }
}

/// [`fold`] over the non-empty rectangle `rows` x `cols` of `x` (rows `width` positions of
/// `out.len()` channels), row by row: 16 channels at a time in a local accumulator (registers),
/// then 8, then one by one.
#[inline(always)]
fn rect_fold<const MAX: bool>(
    out: &mut [f32],
    x: &[f32],
    (rows, cols): (Range<usize>, Range<usize>),
    width: usize,
) {
    let ch = out.len();
    let mut c0 = 0;
    while c0 + 16 <= ch {
        fold_block::<MAX, 16>(&mut out[c0..c0 + 16], x, (&rows, &cols), width, ch, c0);
        c0 += 16;
    }
    if c0 + 8 <= ch {
        fold_block::<MAX, 8>(&mut out[c0..c0 + 8], x, (&rows, &cols), width, ch, c0);
        c0 += 8;
    }
    for c in c0..ch {
        fold_block::<MAX, 1>(&mut out[c..c + 1], x, (&rows, &cols), width, ch, c);
    }
}

/// [`rect_fold`] of channels `c0..c0 + W`: the max from -inf (the same as from the first tap)
/// or the sum from the first tap, then the mean.
#[inline(always)]
fn fold_block<const MAX: bool, const W: usize>(
    out: &mut [f32],
    x: &[f32],
    (rows, cols): (&Range<usize>, &Range<usize>),
    width: usize,
    ch: usize,
    c0: usize,
) {
    let mut acc = [f32::NEG_INFINITY; W];
    let mut first = !MAX;
    for r in rows.clone() {
        for c in cols.clone() {
            let tap: &[f32; W] = x[(r * width + c) * ch + c0..][..W]
                .try_into()
                .expect("W values");
            if first {
                acc = *tap;
                first = false;
            } else {
                for (a, &v) in acc.iter_mut().zip(tap) {
                    *a = fold_value::<MAX>(*a, v);
                }
            }
        }
    }
    if !MAX {
        let n = (rows.len() * cols.len()) as f32;
        acc.iter_mut().for_each(|v| *v /= n);
    }
    out.copy_from_slice(&acc);
}

/// The max (NaN wins) or the sum of `acc` and `v`.
#[inline(always)]
fn fold_value<const MAX: bool>(acc: f32, v: f32) -> f32 {
    if !MAX {
        acc + v
    } else if v > acc || v.is_nan() {
        v
    } else {
        acc
    }
}

/// `out` = max (NaN wins) or sum of `out` and `tap`, value by value.
#[inline(always)]
fn fold_tap<const MAX: bool>(out: &mut [f32], tap: &[f32]) {
    for (acc, &v) in out.iter_mut().zip(tap) {
        *acc = fold_value::<MAX>(*acc, v);
    }
}

/// `out` = the max (NaN wins) or the mean of `first` and `rest`, value by value, in order.
fn fold<'a, const MAX: bool>(
    out: &mut [f32],
    first: &[f32],
    rest: impl Iterator<Item = &'a [f32]>,
) {
    out.copy_from_slice(first);
    let mut n = 1u32;
    for tap in rest {
        n += 1;
        fold_tap::<MAX>(out, tap);
    }
    if !MAX {
        let n = n as f32;
        out.iter_mut().for_each(|v| *v /= n);
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

/// `out = a (op) b` where `a` and `b` each repeat to `out`'s length: equal shapes, or one a
/// block broadcast over leading axes (a squeeze-and-excitation block's `[1, 1, C]` scale
/// against its `[H, W, C]` map). Add, subtract and multiply run on the tier's lanes; every
/// tier gives the bits of [`combine`] (one IEEE operation, NaN canonical).
///
/// # Panics
/// If `a` or `b` is empty while `out` is not, or its length does not divide `out`'s.
pub(crate) fn combine_cyclic(isa: Isa, op: Combine, a: &[f32], b: &[f32], out: &mut [f32]) {
    let n = out.len();
    let (la, lb) = (a.len(), b.len());
    if n == 0 {
        return;
    }
    assert!(
        la > 0 && lb > 0 && n.is_multiple_of(la) && n.is_multiple_of(lb),
        "combine of {la} and {lb} values into {n}"
    );
    let vector = matches!(op, Combine::Add | Combine::Sub | Combine::Mul);
    if vector && (la == n || lb == n) {
        let (full, row, row_first) = if la == n { (a, b, false) } else { (b, a, true) };
        let l = Cyclic { op, row, row_first };
        return super::plain(isa, &l, full, out, &mut []);
    }
    per_combine!(op, |f| for (i, o) in out.iter_mut().enumerate() {
        *o = canonical(f(a[i % la], b[i % lb]));
    })
}

/// `y = x (op) row` (or `row (op) x`) for each `row.len()`-value block of `x`: the vector loop
/// of [`combine_cyclic`].
struct Cyclic<'a> {
    op: Combine,
    row: &'a [f32],
    row_first: bool,
}

impl PlainLoop for Cyclic<'_> {
    #[inline(always)]
    unsafe fn run<V: Simd>(&self, x: &[f32], y: &mut [f32], _: &mut [f32]) {
        // Each op its own loop (a closure, inlined), chosen once.
        match self.op {
            // SAFETY: the caller's contract: `V`'s instructions are available.
            Combine::Add => unsafe { self.each::<V>(x, y, |a, b| a.add(b)) },
            // SAFETY: as above.
            Combine::Sub => unsafe { self.each::<V>(x, y, |a, b| a.sub(b)) },
            // SAFETY: as above.
            Combine::Mul => unsafe { self.each::<V>(x, y, |a, b| a.mul(b)) },
            Combine::Max | Combine::Min => unreachable!("max and min run the scalar loop"),
        }
    }
}

impl Cyclic<'_> {
    /// # Safety
    /// `V`'s instruction set is available.
    #[inline(always)]
    unsafe fn each<V: Simd>(&self, x: &[f32], y: &mut [f32], f: impl Fn(V, V) -> V) {
        let c = self.row.len();
        assert!(c > 0 && x.len() == y.len() && x.len().is_multiple_of(c));
        let lanes = V::LANES;
        for (xs, ys) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
            let mut j = 0;
            while j < c {
                let n = (c - j).min(lanes);
                // SAFETY: `n` values from `j` are inside the row, this block of `x` and of
                // `y` (each `c` long); the ISA is available (caller contract).
                unsafe {
                    let (xp, rp, yp) = (
                        xs.as_ptr().add(j),
                        self.row.as_ptr().add(j),
                        ys.as_mut_ptr().add(j),
                    );
                    let (xv, rv) = match n == lanes {
                        true => (V::load(xp), V::load(rp)),
                        false => (V::load_part(xp, n), V::load_part(rp, n)),
                    };
                    let v = match self.row_first {
                        true => f(rv, xv),
                        false => f(xv, rv),
                    };
                    let v = super::math::canonical_nan(v, v);
                    match n == lanes {
                        true => v.store(yp),
                        false => v.store_part(yp, n),
                    }
                }
                j += lanes;
            }
        }
    }
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
    if y.is_empty() {
        return;
    }
    // Axes rotated (`[k.., ..k]`, e.g. NCHW <-> NHWC): a 2-D transpose of `[first k, rest]`.
    let n = perm.len();
    if let Some(k) = perm.first().copied().filter(|&k| k > 0 && k < n)
        && perm.iter().enumerate().all(|(i, &a)| a == (i + k) % n)
    {
        let rows: usize = shape[..k].iter().product();
        return transpose(rows, x.len() / rows.max(1), x, y);
    }
    walk(shape, perm, 0, x, 0, y);
}

/// `y` (`[cols, rows]`) = `x` (`[rows, cols]`) transposed, in tiles that keep both sides'
/// lines in cache.
fn transpose(rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
    // A few rows (an image's channels): interleaved in one pass.
    match rows {
        1 => return y[..cols].copy_from_slice(&x[..cols]),
        2 => return interleave::<2>(cols, x, y),
        3 => return interleave::<3>(cols, x, y),
        4 => return interleave::<4>(cols, x, y),
        _ => {}
    }
    const TILE: usize = 32;
    for i0 in (0..rows).step_by(TILE) {
        let i1 = (i0 + TILE).min(rows);
        for j0 in (0..cols).step_by(TILE) {
            for j in j0..(j0 + TILE).min(cols) {
                let dst = &mut y[j * rows + i0..j * rows + i1];
                for (d, i) in dst.iter_mut().zip(i0..i1) {
                    *d = x[i * cols + j];
                }
            }
        }
    }
}

/// [`transpose`] of `R` rows: `y[j * R + i] = x[i * cols + j]`.
fn interleave<const R: usize>(cols: usize, x: &[f32], y: &mut [f32]) {
    let rows: [&[f32]; R] = std::array::from_fn(|i| &x[i * cols..][..cols]);
    interleave_rows(rows, &mut y[..cols * R]);
}

#[cfg(test)]
mod tests {
    /// The channels-first zero pad is the transpose, then the pad, for any channel count.
    #[test]
    fn channels_first_pad_is_a_transpose_then_a_pad() {
        let (h, w, rows, cols) = (3, 5, (1, 2), (2, 0));
        for ch in 1..6 {
            let x: Vec<f32> = (0..ch * h * w).map(|i| i as f32 + 1.0).collect();
            let mut t = vec![0.0; x.len()];
            super::permute(&[ch, h, w], &[1, 2, 0], &x, &mut t);
            let line = (cols.0 + w + cols.1) * ch;
            let mut want = vec![0.0; (rows.0 + h + rows.1) * line];
            for (r, row) in t.chunks_exact(w * ch).enumerate() {
                super::pad(
                    cols.0 * ch,
                    cols.1 * ch,
                    row,
                    &mut want[(rows.0 + r) * line..],
                );
            }
            let mut got = vec![f32::NAN; want.len()];
            super::pad2d_channels_first(ch, (h, w), rows, cols, &x, &mut got);
            assert_eq!(got, want, "{ch} channels");
        }
    }

    /// Every rotation of every small shape, against the definition: `y` at output index
    /// `(o_0, .., o_n)` holds `x` at the input index with `i[perm[d]] = o_d`.
    #[test]
    fn rotations_move_values_like_the_definition() {
        for shape in [
            vec![1, 5],
            vec![2, 7],
            vec![3, 4, 5],
            vec![4, 3, 2],
            vec![5, 6],
            vec![33, 2, 3],
        ] {
            let n = shape.len();
            let x: Vec<f32> = (0..shape.iter().product::<usize>())
                .map(|i| i as f32)
                .collect();
            for k in 1..n {
                let perm: Vec<usize> = (0..n).map(|i| (i + k) % n).collect();
                let mut y = vec![f32::NAN; x.len()];
                super::permute(&shape, &perm, &x, &mut y);
                let out: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
                for (o, &v) in y.iter().enumerate() {
                    // Output index digits, then the input index they name.
                    let mut rest = o;
                    let mut idx = vec![0; n];
                    for d in (0..n).rev() {
                        idx[perm[d]] = rest % out[d];
                        rest /= out[d];
                    }
                    let at = idx.iter().zip(&shape).fold(0, |acc, (&i, &s)| acc * s + i);
                    assert_eq!(v, x[at], "{shape:?} {perm:?} at {o}");
                }
            }
        }
    }
}

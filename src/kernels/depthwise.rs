//! The depthwise convolution (a `DepthwiseConv2D`, a grouped ONNX `Conv` with one group per
//! channel): not a GEMM (its arithmetic intensity is too low), a direct loop over the taps
//! written once over the tiers' vectors.

use super::ops::{Axis, PlainLoop};
use super::simd::Simd;

/// A depthwise convolution of one sample: `x` is `[rows.len, cols.len, ch]`, `y`
/// `[rows.out, cols.out, ch * mult]`, `kernel` `[rows.size * cols.size, ch * mult]` (output
/// channel `c * mult + m` reads input channel `c`). Each output is a chain of fused
/// multiply-adds over all its taps in row-major kernel order from zero, a tap in the padding
/// reading zero (as the definition pads the input: an infinite weight there gives NaN, as in
/// every framework), then the bias added. One rounding per tap and one for the bias,
/// whichever tier runs it and however it blocks channels and positions: every tier gives
/// the same bits.
///
/// With one output per channel and at least a vector of channels (every depthwise
/// convolution of a MobileNet), a vector of channels runs over 8 output positions at a time,
/// each tap's weights loaded once for all 8 and the sums kept in registers; the last block of
/// channels overlaps the one before it (recomputing the same values) instead of a scalar
/// tail. Positions with a tap in the padding run one at a time, unless they are many (a
/// small map: [`copies`](Self::copies)); then the sample is first copied into the scratch
/// with its zeros written out ([`scratch_len`](Self::scratch_len) values) and every position
/// runs 8 at a time, across rows. Other shapes run a scalar loop.
#[derive(Clone, Copy, Debug)]
pub struct Depthwise<'a> {
    /// Down the rows.
    pub rows: Axis,
    /// Across the columns.
    pub cols: Axis,
    /// Input channels.
    pub ch: usize,
    /// Outputs per input channel.
    pub mult: usize,
    /// `[taps, ch * mult]`.
    pub kernel: &'a [f32],
    /// `ch * mult` values, if any.
    pub bias: Option<&'a [f32]>,
}

impl PlainLoop for Depthwise<'_> {
    #[inline(always)]
    unsafe fn run<V: Simd>(&self, x: &[f32], y: &mut [f32], scratch: &mut [f32]) {
        // SAFETY: `V`'s instruction set is available (this method's contract).
        unsafe { self.sample::<V>(x, y, scratch) }
    }
}

impl Axis {
    /// The same windows over the input with its padding written out (`pad` zeros before,
    /// as many after as the last window reaches), or `None` if nothing needs writing out.
    fn padded(&self) -> Option<Axis> {
        let span = (self.size.max(1) - 1) * self.dilation + 1;
        let reach = (self.out.max(1) - 1) * self.stride + span;
        let len = (self.pad + self.len).max(reach);
        (len != self.len).then_some(Axis {
            len,
            pad: 0,
            ..*self
        })
    }
}

impl Depthwise<'_> {
    /// Whether the vector loop copies the sample with its padding written out: when under
    /// two thirds of the outputs have every tap inside the input (a 5x5 kernel over 7x7 or
    /// 14x14), so that the rest, one position at a time, would cost more than the copy.
    fn copies(&self) -> bool {
        let (r, c) = (self.rows.full().len(), self.cols.full().len());
        let all = self.rows.out.saturating_mul(self.cols.out);
        let padded = self.rows.padded().is_some() || self.cols.padded().is_some();
        padded && self.mult == 1 && r.saturating_mul(c).saturating_mul(3) < all.saturating_mul(2)
    }

    /// Scratch values [`super::plain`] needs: the padded copy of a sample, or 0.
    pub fn scratch_len(&self) -> usize {
        if !self.copies() {
            return 0;
        }
        let r = self.rows.padded().unwrap_or(self.rows);
        let c = self.cols.padded().unwrap_or(self.cols);
        r.len.saturating_mul(c.len).saturating_mul(self.ch)
    }

    /// Runs on one sample.
    ///
    /// # Panics
    /// If `x`, `y`, the kernel, the bias or the scratch is shorter than the geometry says.
    ///
    /// # Safety
    /// `V`'s instruction set is available.
    #[inline(always)]
    unsafe fn sample<V: Simd>(&self, x: &[f32], y: &mut [f32], scratch: &mut [f32]) {
        let (rows, cols, ch, mult) = (self.rows, self.cols, self.ch, self.mult);
        let n = ch.saturating_mul(mult);
        if n == 0 || cols.out == 0 || rows.out == 0 {
            return;
        }
        // The padded copy's size, 0 when the loop reads the sample in place.
        let padded = self.scratch_len();
        let size = |parts: &[usize]| parts.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        let holds = |len: usize, parts: &[usize]| size(parts).is_some_and(|s| len >= s);
        assert!(
            holds(x.len(), &[rows.len, cols.len, ch])
                && holds(y.len(), &[rows.out, cols.out, n])
                && holds(self.kernel.len(), &[rows.size, cols.size, n])
                && self.bias.is_none_or(|b| b.len() >= n)
                && scratch.len() >= padded,
            "depthwise: buffers shorter than the geometry"
        );
        if mult != 1 || ch < V::LANES {
            return self.scalar(x, y);
        }
        let lanes = V::LANES;
        let (d, x) = match padded {
            0 => (*self, x),
            len => self.pad_into(x, &mut scratch[..len]),
        };
        let (full_rows, full_cols) = (d.rows.full(), d.cols.full());
        let all_inside = full_rows.len() == rows.out && full_cols.len() == cols.out;
        let mut c0 = 0;
        loop {
            // The last block ends at the last channel (overlapping the one before).
            let c = c0.min(ch - lanes);
            // SAFETY (every call below): `V` is available; positions in `full_rows` x
            // `full_cols` have every tap inside `x`, and `border` reads only taps inside it;
            // channels `c..c + lanes` are below `ch`, the positions below `rows.out *
            // cols.out`: inside the buffers checked above.
            if all_inside {
                // Groups of positions in output order, across rows.
                let (mut o, last) = (0, rows.out * cols.out);
                while o < last {
                    // SAFETY: as above.
                    o += unsafe { d.group::<V>(x, c, o, last - o, y) };
                }
            } else {
                for oh in 0..rows.out {
                    let mut ow = 0;
                    while ow < cols.out {
                        let o = oh * cols.out + ow;
                        ow += if full_rows.contains(&oh) && full_cols.contains(&ow) {
                            // SAFETY: as above.
                            unsafe { d.group::<V>(x, c, o, full_cols.end - ow, y) }
                        } else {
                            // SAFETY: as above.
                            unsafe { d.border::<V>(x, c, oh, ow, y) }
                        };
                    }
                }
            }
            if c + lanes >= ch {
                break;
            }
            c0 += lanes;
        }
    }

    /// `x` copied into `scratch` with its padding written out, and the convolution without
    /// padding that reads it.
    fn pad_into<'s>(&self, x: &[f32], scratch: &'s mut [f32]) -> (Self, &'s [f32]) {
        let (rows, cols, ch) = (self.rows, self.cols, self.ch);
        let (pr, pc) = (rows.padded().unwrap_or(rows), cols.padded().unwrap_or(cols));
        let line = pc.len * ch;
        for (r, out) in scratch.chunks_exact_mut(line).enumerate() {
            match r.checked_sub(rows.pad).filter(|&r| r < rows.len) {
                Some(r) => {
                    let (before, rest) = out.split_at_mut(cols.pad * ch);
                    let (row, after) = rest.split_at_mut(cols.len * ch);
                    before.fill(0.0);
                    row.copy_from_slice(&x[r * cols.len * ch..][..cols.len * ch]);
                    after.fill(0.0);
                }
                None => out.fill(0.0),
            }
        }
        let d = Depthwise {
            rows: pr,
            cols: pc,
            ..*self
        };
        (d, scratch)
    }

    /// [`positions`](Self::positions) of as many of the next `left` positions as one group
    /// takes (8, 4, 2 or 1). Returns how many.
    ///
    /// # Safety
    /// As `positions` for the group.
    #[inline(always)]
    unsafe fn group<V: Simd>(
        &self,
        x: &[f32],
        c: usize,
        o: usize,
        left: usize,
        y: &mut [f32],
    ) -> usize {
        // SAFETY: the caller's contract.
        unsafe {
            match left {
                8.. => self.positions::<V, 8>(x, c, o, y),
                4.. => self.positions::<V, 4>(x, c, o, y),
                2.. => self.positions::<V, 2>(x, c, o, y),
                _ => self.positions::<V, 1>(x, c, o, y),
            }
        }
    }

    /// Channels `c..c + V::LANES` of the `P` output positions from `o` (row-major over the
    /// output, so a group may span rows). Returns `P`.
    ///
    /// # Safety
    /// `V`'s instruction set is available; every tap of the `P` positions is inside `x`,
    /// `x` and `y` hold the sample and its output, `c + V::LANES <= ch`.
    #[inline(always)]
    unsafe fn positions<V: Simd, const P: usize>(
        &self,
        x: &[f32],
        c: usize,
        o: usize,
        y: &mut [f32],
    ) -> usize {
        let (rows, cols, ch) = (self.rows, self.cols, self.ch);
        let (row_step, col_step) = (rows.dilation * cols.len * ch, cols.dilation * ch);
        let (mut oh, mut ow) = (o / cols.out, o % cols.out);
        // Each position's first tap (inside the input: the contract).
        let first: [usize; P] = std::array::from_fn(|_| {
            let r = oh * rows.stride - rows.pad;
            let at = (r * cols.len + ow * cols.stride - cols.pad) * ch + c;
            ow += 1;
            if ow == cols.out {
                (oh, ow) = (oh + 1, 0);
            }
            at
        });
        // SAFETY: the caller's contract.
        unsafe {
            let xp = x.as_ptr();
            let starts = first.map(|at| xp.add(at));
            let mut acc = [V::splat(0.0); P];
            let wp = self.kernel.as_ptr().add(c);
            for i in 0..rows.size {
                for j in 0..cols.size {
                    let w = V::load(wp.add((i * cols.size + j) * ch));
                    let tap = i * row_step + j * col_step;
                    for (a, s) in acc.iter_mut().zip(starts) {
                        *a = V::load(s.add(tap)).fma(w, *a);
                    }
                }
            }
            self.finish(c, acc, y.as_mut_ptr().add(o * ch + c));
        }
        P
    }

    /// Channels `c..c + V::LANES` of output `(oh, ow)`, whose taps may reach into the
    /// padding: those read zero. Returns 1.
    ///
    /// # Safety
    /// `V`'s instruction set is available; `x` and `y` hold the sample and its output, `c +
    /// V::LANES <= ch`, `(oh, ow)` an output.
    #[inline(always)]
    unsafe fn border<V: Simd>(
        &self,
        x: &[f32],
        c: usize,
        oh: usize,
        ow: usize,
        y: &mut [f32],
    ) -> usize {
        let (rows, cols, ch) = (self.rows, self.cols, self.ch);
        // SAFETY: the caller's contract; `source` gives only steps inside the input.
        unsafe {
            let zero = V::splat(0.0);
            let mut acc = zero;
            let wp = self.kernel.as_ptr().add(c);
            for i in 0..rows.size {
                let r = rows.source(oh, i);
                for j in 0..cols.size {
                    let w = V::load(wp.add((i * cols.size + j) * ch));
                    let v = match (r, cols.source(ow, j)) {
                        (Some(r), Some(col)) => {
                            V::load(x.as_ptr().add((r * cols.len + col) * ch + c))
                        }
                        _ => zero,
                    };
                    acc = v.fma(w, acc);
                }
            }
            self.finish(c, [acc], y.as_mut_ptr().add((oh * cols.out + ow) * ch + c));
        }
        1
    }

    /// Stores `P` positions' sums of channels `c..` plus the bias, `ch` apart from `out`.
    ///
    /// # Safety
    /// `out` is writable at `p * ch + l` for `p < P`, `l < V::LANES`; `c + V::LANES <= ch`.
    #[inline(always)]
    unsafe fn finish<V: Simd, const P: usize>(&self, c: usize, acc: [V; P], out: *mut f32) {
        // SAFETY: the caller's contract; a bias holds `ch` values (checked by `sample`).
        unsafe {
            let bias = self.bias.map(|b| V::load(b.as_ptr().add(c)));
            for (p, a) in acc.into_iter().enumerate() {
                bias.map_or(a, |b| a.add(b)).store(out.add(p * self.ch));
            }
        }
    }

    /// Any multiplier and channel count, one value at a time in the same order (the
    /// single-rounding multiply-add of [`super::fused`]; a tap in the padding reads zero).
    fn scalar(&self, x: &[f32], y: &mut [f32]) {
        let (rows, cols, ch, mult) = (self.rows, self.cols, self.ch, self.mult);
        let (n, kw) = (ch * mult, cols.size);
        for (o, acc) in y.chunks_exact_mut(n).take(rows.out * cols.out).enumerate() {
            let (oh, ow) = (o / cols.out, o % cols.out);
            acc.fill(0.0);
            for i in 0..rows.size {
                let r = rows.source(oh, i);
                for j in 0..kw {
                    let w = &self.kernel[(i * kw + j) * n..][..n];
                    match (r, cols.source(ow, j)) {
                        (Some(r), Some(col)) => {
                            let px = &x[(r * cols.len + col) * ch..][..ch];
                            for (jj, (a, &k)) in acc.iter_mut().zip(w).enumerate() {
                                *a = super::fused::fused(px[jj / mult], k, *a);
                            }
                        }
                        _ => {
                            for (a, &k) in acc.iter_mut().zip(w) {
                                *a = super::fused::fused(0.0, k, *a);
                            }
                        }
                    }
                }
            }
            if let Some(b) = self.bias {
                acc.iter_mut().zip(b).for_each(|(a, &b)| *a += b);
            }
        }
    }
}

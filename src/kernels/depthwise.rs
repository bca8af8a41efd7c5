//! The depthwise convolution (a `DepthwiseConv2D`, a grouped ONNX `Conv` with one group per
//! channel): not a GEMM (its arithmetic intensity is too low), a direct loop over the taps
//! written once over the tiers' vectors.

use super::math;
use super::ops::{Axis, PlainLoop};
use super::simd::Simd;
use crate::kernels::Activation;
use std::ops::Range;

/// Bytes of L1 a group's input pixels may take (of 32 to 48 KiB).
const L1_SHARE: usize = 16 << 10;

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
/// convolution of a MobileNet), 8 output positions run at a time, each tap's weights loaded
/// once for all 8 and the sums kept in registers, every vector of channels of a chunk in turn
/// (the chunk sized so the group's input pixels stay in L1); the last vector of channels
/// overlaps the one before it (recomputing the same values) instead of a scalar tail. Groups
/// run along the interior of each row; a border row's interior runs 8 at a time too, as
/// does a border column's down the column (a tap in the padding adds `0 x w` to all 8), and
/// only the corners run alone. A small map (under two thirds of the outputs inside:
/// [`copies`](Self::copies)) is first copied into the scratch with its zeros written out
/// ([`scratch_len`](Self::scratch_len) values) and runs 8 at a time in output order, across
/// rows. Other shapes run a scalar loop.
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
    /// Run on every output after the bias, NaN made canonical (the separate pass's bits):
    /// elementwise (a row-wise one is the caller's); `Linear` runs nothing. ReLU and the
    /// hard sigmoid and swish run on the registers before the store, as one formula
    /// ([`Hard`]); the others on the sample's outputs at the end.
    pub act: Activation,
}

/// ReLU, hard sigmoid and hard swish as one formula, `m * (min(max(x + c, 0), hi) * s)` with
/// `m` either `x` or 1, x86's `max`/`min` ([`Simd::max_or`]), NaN in gives the canonical NaN:
/// their definitions' operations in their order (the extra `+ 0`, `min(.., inf)` and `* 1`
/// are exact), so the separate pass's bits. One formula, not a `match` in the store: each
/// arm multiplied the depthwise loop's code (the crate's release build took 28 s more CPU).
#[derive(Clone, Copy)]
struct Hard {
    c: f32,
    hi: f32,
    s: f32,
    /// 1 to multiply by `x` (hard swish), 0 not to.
    times_x: f32,
}

impl Hard {
    fn of(act: Activation) -> Option<Hard> {
        let (c, hi, s, times_x) = match act {
            a if a == Activation::RELU => (0.0, f32::INFINITY, 1.0, 0.0),
            Activation::HardSigmoid => (3.0, 6.0, 1.0 / 6.0, 0.0),
            Activation::HardSilu => (3.0, 6.0, 1.0 / 6.0, 1.0),
            _ => return None,
        };
        Some(Hard { c, hi, s, times_x })
    }

    #[inline(always)]
    fn apply<V: Simd>(self, x: V) -> V {
        let r = x
            .add(x.dup(self.c))
            .max_or(x.dup(0.0))
            .min_or(x.dup(self.hi));
        let m = V::select(x.dup(self.times_x).gt(x.dup(0.0)), x, x.dup(1.0));
        math::canonical_nan(x, m.mul(r.mul(x.dup(self.s))))
    }
}

/// Output positions the vector loop runs together.
#[derive(Clone, Copy)]
enum Line {
    /// From output `(oh, ow)` on, in output order (across rows), every tap inside the input.
    Output(usize, usize),
    /// From `(oh, ow)` along the row, every column's taps inside the input.
    Across(usize, usize),
    /// From `(oh, ow)` down the column, every row's taps inside the input.
    Down(usize, usize),
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
        let out = &mut y[..rows.out * cols.out * n];
        // What the vector loop leaves to a pass over the outputs.
        let after = match self.act {
            Activation::Linear => None,
            a if Hard::of(a).is_some() && mult == 1 && ch >= V::LANES => None,
            a => Some(a),
        };
        if let Some(act) = after {
            assert!(
                !act.is_row_wise(),
                "depthwise: a row-wise activation is the caller's"
            );
        }
        if mult != 1 || ch < V::LANES {
            self.scalar(x, out);
        } else {
            // SAFETY: `V` is available (this method's contract); the buffers are checked.
            unsafe { self.vectors::<V>(x, out, scratch, padded) };
        }
        if let Some(act) = after {
            // SAFETY: `V` is available (this method's contract).
            unsafe { math::apply_slice::<V>(act, out) };
        }
    }

    /// [`sample`](Self::sample)'s vector loop, the cheap activation in its stores.
    ///
    /// # Safety
    /// `V`'s instruction set is available; the buffers are checked, `mult == 1`, `V::LANES
    /// <= ch`, `padded` the scratch's padded copy's size.
    #[inline(always)]
    unsafe fn vectors<V: Simd>(
        &self,
        x: &[f32],
        y: &mut [f32],
        scratch: &mut [f32],
        padded: usize,
    ) {
        let (rows, cols, ch) = (self.rows, self.cols, self.ch);
        let (d, x) = match padded {
            0 => (*self, x),
            len => self.pad_into(x, &mut scratch[..len]),
        };
        // Channels in chunks whose share of a group's input rows (8 positions' windows) stays
        // well inside L1: every vector of channels of a group runs while its pixels are
        // there, and a wide map is not read a vector of channels at a time.
        let lanes = V::LANES;
        let window = rows.size * (8 * cols.stride + cols.size * cols.dilation);
        let per_block = window.saturating_mul(lanes * 4).max(1);
        let chunk = (L1_SHARE / per_block).max(1) * lanes;
        let mut c0 = 0;
        while c0 < ch {
            let cs = c0..(c0 + chunk).min(ch);
            // SAFETY: `V` is available; `x`, `y` are checked above, `V::LANES <= ch`.
            unsafe { d.sweep::<V>(x, cs.clone(), y) };
            c0 = cs.end;
        }
    }

    /// Channels `cs` of every output, in groups of positions.
    ///
    /// # Safety
    /// `V`'s instruction set is available; `x` and `y` hold the sample (its padding written
    /// out if `self` has none left) and its output; `V::LANES <= ch`, `cs` inside `0..ch`.
    #[inline(always)]
    unsafe fn sweep<V: Simd>(&self, x: &[f32], cs: Range<usize>, y: &mut [f32]) {
        let (rows, cols) = (self.rows, self.cols);
        let (full_rows, full_cols) = (rows.full(), cols.full());
        let all_inside = full_rows.len() == rows.out && full_cols.len() == cols.out;
        // SAFETY (every call below): `V` is available; positions in `full_rows` x
        // `full_cols` have every tap inside `x`, and `chains` reads only taps inside it; the
        // positions are below `rows.out * cols.out`: inside the buffers checked above.
        if all_inside {
            // Groups of positions in output order, across rows.
            let at = |o: usize| Line::Output(o / cols.out, o % cols.out);
            // SAFETY: as above.
            unsafe { self.walk::<V>(x, cs, 0..rows.out * cols.out, at, y) };
            return;
        }
        let clamp = |r: Range<usize>, n: usize| r.start.min(n)..r.end.min(n);
        let (inner_rows, inner_cols) = (clamp(full_rows, rows.out), clamp(full_cols, cols.out));
        let outer_cols = || (0..inner_cols.start).chain(inner_cols.end..cols.out);
        // Bottom row first: a map larger than L2 (the stem's 803 KB, an expansion's 903 KB)
        // was written top to bottom just before, so its last rows are the ones still in L2;
        // top first, each read evicted a row not yet read (mobilenet_v3_small's 16- and
        // 72-channel stride-2 layers 6-7% faster on Zen 3). The order changes no value.
        for oh in (0..rows.out).rev() {
            // The row's interior columns, a border row's with its taps in the padding.
            let inside = inner_rows.contains(&oh);
            let at = |ow: usize| match inside {
                true => Line::Output(oh, ow),
                false => Line::Across(oh, ow),
            };
            // SAFETY: as above.
            unsafe { self.walk::<V>(x, cs.clone(), inner_cols.clone(), at, y) };
            // A border row's border columns (the corners), one at a time.
            for ow in outer_cols().filter(|_| !inside) {
                // SAFETY: as above.
                unsafe { self.line::<V, 1>(x, cs.clone(), Line::Across(oh, ow), y) };
            }
        }
        // The border columns of the interior rows, down each column.
        for ow in outer_cols() {
            let at = |oh: usize| Line::Down(oh, ow);
            // SAFETY: as above.
            unsafe { self.walk::<V>(x, cs.clone(), inner_rows.clone(), at, y) };
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

    /// Positions `range` of a line (`at(i)`: the line from position `i` on) in groups of 8,
    /// 4, 2 or 1, as [`line`](Self::line) runs them. A last group of fewer than 8 (or 4)
    /// starts early instead where the range holds 8 (4): it computes again some of the
    /// positions before it (the same values, stored again), where groups of 2 and 1 were two
    /// FMA chains a vector of channels, a tap every FMA latency (mobilenet_v3_small's
    /// 27-column rows ended in a group of 2 and one of 1).
    ///
    /// # Safety
    /// As [`line`](Self::line) for every group of positions inside `range`.
    #[inline(always)]
    unsafe fn walk<V: Simd>(
        &self,
        x: &[f32],
        cs: Range<usize>,
        range: Range<usize>,
        at: impl Fn(usize) -> Line,
        y: &mut [f32],
    ) {
        let mut i = range.start;
        while i < range.end {
            let left = range.end - i;
            let p = match left {
                8.. => 8,
                5.. if range.len() >= 8 => 8,
                4.. => 4,
                _ if range.len() >= 4 => 4,
                2.. => 2,
                _ => 1,
            };
            let start = i.min(range.end - p);
            let (cs, line) = (cs.clone(), at(start));
            // SAFETY: positions `start..start + p` are inside `range` (the caller's contract).
            unsafe {
                match p {
                    8 => self.line::<V, 8>(x, cs, line, y),
                    4 => self.line::<V, 4>(x, cs, line, y),
                    2 => self.line::<V, 2>(x, cs, line, y),
                    _ => self.line::<V, 1>(x, cs, line, y),
                }
            };
            i = start + p;
        }
    }

    /// Every channel of `P` positions of `line`, a vector of channels at a time (the last
    /// block ending at the last channel, overlapping the one before): where the positions'
    /// taps and outputs are is worked out once for all the blocks. Returns `P`.
    ///
    /// # Safety
    /// `V`'s instruction set is available; `x` and `y` hold the sample and its output, `V::
    /// LANES <= ch`; the `P` positions of `line` are outputs and, for [`Line::Output`],
    /// have every tap inside `x`; for the others, across the line every tap inside the input
    /// on the axis the line runs along.
    #[inline(always)]
    unsafe fn line<V: Simd, const P: usize>(
        &self,
        x: &[f32],
        cs: Range<usize>,
        line: Line,
        y: &mut [f32],
    ) -> usize {
        let (rows, cols, ch) = (self.rows, self.cols, self.ch);
        let (oh, ow, dh, dw) = match line {
            Line::Output(oh, ow) => (oh, ow, 0, 1),
            Line::Across(oh, ow) => (oh, ow, 0, 1),
            Line::Down(oh, ow) => (oh, ow, 1, 0),
        };
        // The first tap of output (h, w) as an offset into `x`: before the sample (negative)
        // when it lies in the padding, read only when `chains` has it inside.
        let first_tap = |h: usize, w: usize| {
            let r = (h * rows.stride) as isize - rows.pad as isize;
            let col = (w * cols.stride) as isize - cols.pad as isize;
            (r * cols.len as isize + col) * ch as isize
        };
        // Which taps lie inside the input: all of them for `Output`, else those of the
        // line's first position, the same for all `P` (the contract).
        let edge = match line {
            Line::Output(..) => None,
            _ => Some((oh, ow)),
        };
        let lanes = V::LANES;
        let blocks = cs.clone().step_by(lanes).map(|c| c.min(ch - lanes));
        let (xp, yp) = (x.as_ptr(), y.as_mut_ptr());
        if ow + P * dw <= cols.out {
            // One row, or one column: evenly spaced, the addresses one multiply each.
            let (f0, o0) = (first_tap(oh, ow), (oh * cols.out + ow) * ch);
            let step = (dh * rows.stride * cols.len + dw * cols.stride) * ch;
            let out_step = (dh * cols.out + dw) * ch;
            // Neighbours along a row share their input pixels (3 or 5 taps wide at stride 1,
            // 3 at stride 2): each pixel is loaded once for all the positions it feeds.
            let slides = dw == 1 && P >= 4 && cols.dilation == 1;
            if slides && cols.size == 3 && cols.stride <= 2 && ch >= 2 * lanes {
                let x0 = xp.wrapping_offset(f0);
                // SAFETY: the caller's contract; `ch >= 2 * lanes`; the stores are the
                // positions' outputs.
                unsafe {
                    let out = |p, c| yp.add(o0 + p * out_step + c);
                    match cols.stride {
                        1 => self.slide_pairs::<V, P, 1>(x0, cs, edge, out),
                        _ => self.slide_pairs::<V, P, 2>(x0, cs, edge, out),
                    }
                };
                return P;
            }
            for c in blocks {
                let x0 = xp.wrapping_offset(f0).wrapping_add(c);
                // SAFETY: the caller's contract; `c + lanes <= ch`.
                unsafe {
                    let acc = match cols.size {
                        5 if slides && cols.stride == 1 => {
                            self.slide::<V, P, 5, 1, 1>(x0, edge, c)[0]
                        }
                        _ => self.chains::<V, P>(|p| x0.wrapping_add(p * step), edge, c),
                    };
                    self.finish(c, acc, |p| yp.add(o0 + p * out_step + c));
                }
            }
        } else {
            // Output order across the end of a row (a padded copy's small map).
            let (mut h, mut w) = (oh, ow);
            let mut first = [0isize; P];
            let mut out = [0usize; P];
            for p in 0..P {
                first[p] = first_tap(h, w);
                out[p] = (h * cols.out + w) * ch;
                w += 1;
                if w == cols.out {
                    (h, w) = (h + 1, 0);
                }
            }
            for c in blocks {
                let starts = first.map(|f| xp.wrapping_offset(f).wrapping_add(c));
                // SAFETY: the caller's contract; `c + lanes <= ch`.
                unsafe {
                    let acc = self.chains::<V, P>(|p| starts[p], edge, c);
                    self.finish(c, acc, |p| yp.add(out[p] + c));
                }
            }
        }
        P
    }

    /// The sums of channels `c..c + V::LANES` of `P` outputs whose first taps are at
    /// `first(p)`: each a chain of FMAs over the taps in row-major order from zero. With an
    /// `edge` position, a tap that position has in the padding adds `0 x w` (the
    /// definition's zero) to all `P`.
    ///
    /// # Safety
    /// `V`'s instruction set is available, `c + V::LANES <= ch`; every tap read (all, or
    /// those inside the input for `edge`) of each position is inside the sample.
    #[inline(always)]
    unsafe fn chains<V: Simd, const P: usize>(
        &self,
        first: impl Fn(usize) -> *const f32,
        edge: Option<(usize, usize)>,
        c: usize,
    ) -> [V; P] {
        let (rows, cols, ch) = (self.rows, self.cols, self.ch);
        let (row_step, col_step) = (rows.dilation * cols.len * ch, cols.dilation * ch);
        // SAFETY: the caller's contract.
        unsafe {
            let zero = V::splat(0.0);
            let mut acc = [zero; P];
            let wp = self.kernel.as_ptr().add(c);
            for i in 0..rows.size {
                let row_in = edge.is_none_or(|(oh, _)| rows.source(oh, i).is_some());
                for j in 0..cols.size {
                    let w = V::load(wp.add((i * cols.size + j) * ch));
                    let tap = i * row_step + j * col_step;
                    if row_in && edge.is_none_or(|(_, ow)| cols.source(ow, j).is_some()) {
                        for (p, a) in acc.iter_mut().enumerate() {
                            *a = V::load(first(p).wrapping_add(tap)).fma(w, *a);
                        }
                    } else {
                        for a in acc.iter_mut() {
                            *a = zero.fma(w, *a);
                        }
                    }
                }
            }
            acc
        }
    }

    /// `P` (a multiple of 4) neighbours along a row, 3 taps wide at stride `S` (1 or 2), the
    /// first position's first tap at `x0` (channel 0), channels `cs`: four positions and two
    /// vectors of channels at a time ([`slide`](Self::slide)), eight chains of multiply-adds
    /// in flight as their latency needs. Eight positions of one vector were ten (stride 1)
    /// or seventeen (stride 2) pixels a row: the addresses spilled the general registers or
    /// the loop was not unrolled; four of one vector are four chains (mobilenet_v3_small's
    /// 16-channel stride-2 layer 1.2x slower than in pairs on Zen 3). Pairs run from the
    /// start of `cs` while more than a vector is left, the last ending at the last channel
    /// (overlapping the one before: the same values); a last vector runs alone. Each sum is
    /// stored through `out(position, first channel)`.
    ///
    /// # Safety
    /// As [`slide`](Self::slide); `2 * V::LANES <= ch`, `cs` inside `0..ch`; `out(p, c)` is
    /// writable for `V::LANES` values for every position and vector of channels.
    #[inline(always)]
    unsafe fn slide_pairs<V: Simd, const P: usize, const S: usize>(
        &self,
        x0: *const f32,
        cs: Range<usize>,
        edge: Option<(usize, usize)>,
        out: impl Fn(usize, usize) -> *mut f32,
    ) {
        let (lanes, ch) = (V::LANES, self.ch);
        let mut c = cs.start;
        while c < cs.end {
            // A pair while more than a vector is left (the last ending at the last channel),
            // else the last vector alone.
            let left = cs.end - c;
            let (c0, pair) = match left > lanes {
                true => (c.min(ch - 2 * lanes), true),
                false => (c.min(ch - lanes), false),
            };
            for h in (0..P).step_by(4) {
                let x = x0.wrapping_add(h * S * ch + c0);
                // SAFETY: positions `h..h + 4` of the caller's `P`; channels `c0..c0 + 2 *
                // lanes` (a pair) or `c0..c0 + lanes` inside `0..ch`; `out`'s contract.
                unsafe {
                    if pair {
                        let acc = self.slide::<V, 4, 3, S, 2>(x, edge, c0);
                        self.finish(c0, acc[0], |p| out(h + p, c0));
                        self.finish(c0 + lanes, acc[1], |p| out(h + p, c0 + lanes));
                    } else {
                        let [acc] = self.slide::<V, 4, 3, S, 1>(x, edge, c0);
                        self.finish(c0, acc, |p| out(h + p, c0));
                    }
                }
            }
            c = c0 + (1 + pair as usize) * lanes;
        }
    }

    /// [`chains`](Self::chains) for `P` neighbours along a row at stride `S` and dilation
    /// 1, `KW` taps wide, in `B` vectors of channels from `c` on, the first position's first
    /// tap at `x0` (channel `c`): per kernel row, each of the `(P - 1) * S + KW` input pixels
    /// is loaded once and added to every position it feeds, with the row's `KW` weights of
    /// each vector in registers (the loads per position were one per tap). Each chain takes
    /// its taps in the same order (kernel rows, then columns left to right), so the same
    /// bits.
    ///
    /// # Safety
    /// As [`chains`](Self::chains) for each vector; `cols.size == KW`, `cols.stride == S`,
    /// `cols.dilation == 1`; `c + B * V::LANES <= ch`; an `edge` position has every column
    /// tap inside the input.
    #[inline(always)]
    unsafe fn slide<V: Simd, const P: usize, const KW: usize, const S: usize, const B: usize>(
        &self,
        x0: *const f32,
        edge: Option<(usize, usize)>,
        c: usize,
    ) -> [[V; P]; B] {
        let (rows, cols, ch) = (self.rows, self.cols, self.ch);
        let row_step = rows.dilation * cols.len * ch;
        // SAFETY: the caller's contract.
        unsafe {
            let zero = V::splat(0.0);
            let mut acc = [[zero; P]; B];
            let wp = self.kernel.as_ptr().add(c);
            for i in 0..rows.size {
                let skip = edge.is_some_and(|(oh, _)| rows.source(oh, i).is_none());
                let row = x0.wrapping_add(i * row_step);
                // A vector of channels at a time, its row of weights in registers (both
                // vectors' were too many registers: spills); the unrolled code lets the
                // core overlap the two vectors' chains.
                for (b, acc) in acc.iter_mut().enumerate() {
                    let w: [V; KW] =
                        std::array::from_fn(|j| V::load(wp.add((i * KW + j) * ch + b * V::LANES)));
                    if skip {
                        for w in w {
                            for a in acc.iter_mut() {
                                *a = zero.fma(w, *a);
                            }
                        }
                        continue;
                    }
                    for q in 0..(P - 1) * S + KW {
                        let v = V::load(row.wrapping_add(q * ch + b * V::LANES));
                        // Pixel q is tap j of position (q - j) / S: j ascending, the
                        // chain's order.
                        for (j, w) in w.iter().enumerate() {
                            if q >= j && (q - j) % S == 0 && (q - j) / S < P {
                                let p = (q - j) / S;
                                acc[p] = v.fma(*w, acc[p]);
                            }
                        }
                    }
                }
            }
            acc
        }
    }

    /// Stores `P` sums of channels `c..` plus the bias at `out(p)`.
    ///
    /// # Safety
    /// `out(p)` is writable for `V::LANES` values; `c + V::LANES <= ch`.
    #[inline(always)]
    unsafe fn finish<V: Simd, const P: usize>(
        &self,
        c: usize,
        acc: [V; P],
        out: impl Fn(usize) -> *mut f32,
    ) {
        // SAFETY: the caller's contract; a bias holds `ch` values (checked by `sample`).
        unsafe {
            let bias = self.bias.map(|b| V::load(b.as_ptr().add(c)));
            let hard = Hard::of(self.act);
            for (p, a) in acc.into_iter().enumerate() {
                let v = bias.map_or(a, |b| a.add(b));
                match hard {
                    Some(h) => h.apply(v).store(out(p)),
                    None => v.store(out(p)),
                }
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

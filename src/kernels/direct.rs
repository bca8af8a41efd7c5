//! A convolution with few values per window (`K = taps x channels`, a 3x3 kernel over one
//! channel): a GEMM over its unrolled windows would spend its time copying windows of a few
//! values and storing outputs after a few multiply-adds each. Here each output tile's window
//! values are broadcast straight from the (padded) input, tap by tap, against the kernel's
//! rows: the GEMM's own sum (an FMA chain from zero over K in the unrolled rows' order, `K <=
//! KB`) and its register epilogue, so the bits are the GEMM's.
//!
//! A channels-first image (a torch model's stem) is read as it is ([`Planar`]): each output
//! row's band of input rows is copied, padded, into the scratch as planes (a copy per row, not
//! an interleave per value), and the windows are read from there, value `k` of a window at its
//! plane's offset; the same sum in the same order over the same values, so the same bits.
//! mobilenet_v3_small's 224x224 RGB image took a 48 us pass to pad and interleave first.

use super::cache::prefetch;
use super::epilogue::{TileEpilogue, register_epilogue, split_register_ops};
use super::ops::{Axis, PlainLoop, PoolRects};
use super::simd::Simd;
use super::winograd::product;
use super::{EpOp, KB};

/// Filters per block: one tile's columns (one AVX-512 vector, two AVX2 ones), so that a
/// 16-filter stem (mobilenet's 3x3 over RGB) runs here too.
pub const FILTER_BLOCK: usize = 16;

/// One direct convolution's geometry over one sample: a padded input of `[rows, cols, ch]`,
/// windows of `kernel` taps `(down, across)` (rows `dilation` apart, columns adjacent) from
/// column `offset` on, `strides` apart; convolution outputs of `[out_rows, out_cols,
/// filters]`, max-pooled by `pool` (whole windows `(down, across)` side by side: the output
/// `[out_rows / down, out_cols / across, filters]`; `(1, 1)`: no pool).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectConv {
    /// Padded input rows.
    pub rows: usize,
    /// Padded input columns.
    pub cols: usize,
    /// Input channels.
    pub ch: usize,
    /// Kernel `(rows, columns)`.
    pub kernel: (usize, usize),
    /// Input steps between windows `(down, across)`.
    pub strides: (usize, usize),
    /// Input rows between kernel rows.
    pub dilation: usize,
    /// Columns skipped before the first window (a padding shared with a wider kernel).
    pub offset: usize,
    /// Output rows.
    pub out_rows: usize,
    /// Output columns.
    pub out_cols: usize,
    /// Output channels: a multiple of [`FILTER_BLOCK`].
    pub filters: usize,
    /// The max pool's windows, dividing `out_rows` and `out_cols`.
    pub pool: (usize, usize),
    /// `None`: the input is the padded `[rows, cols, ch]` itself. `Some`: the input is a
    /// channels-first image, unpadded, that the run pads itself, one output row's band of
    /// input rows at a time (a torch model's stem: no pass that interleaves the image).
    pub planar: Option<Planar>,
}

/// A channels-first input `[ch, h, w]` that is the top-left part of the padded input: `top`
/// zero rows above it, `left` zero columns before it, zeros after it up to `rows x cols`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planar {
    /// Image rows.
    pub h: usize,
    /// Image columns.
    pub w: usize,
    /// Zero rows above.
    pub top: usize,
    /// Zero columns before.
    pub left: usize,
}

impl DirectConv {
    /// The values per window (the GEMM's K).
    pub fn k(&self) -> usize {
        self.kernel.0 * self.kernel.1 * self.ch
    }
    /// Whether the geometry holds together: positive sizes, `K <= KB` (one FMA chain),
    /// whole filter blocks, every window inside the input.
    pub fn valid(&self) -> bool {
        let ((kh, kw), (sh, sw)) = (self.kernel, self.strides);
        let last = |out: usize, s: usize, span: usize| {
            (out - 1).checked_mul(s).and_then(|v| v.checked_add(span))
        };
        [
            self.ch,
            kh,
            kw,
            sh,
            sw,
            self.out_rows,
            self.out_cols,
            self.filters,
        ]
        .iter()
        .all(|&v| v > 0)
            && self.pool.0 > 0
            && self.pool.1 > 0
            && self.out_rows.is_multiple_of(self.pool.0)
            && self.out_cols.is_multiple_of(self.pool.1)
            && product(&[kh, kw, self.ch]).is_some_and(|k| k <= KB)
            && self.filters.is_multiple_of(FILTER_BLOCK)
            && product(&[self.rows, self.cols, self.ch]).is_some()
            && product(&[self.out_rows, self.out_cols, self.filters]).is_some()
            && (kh - 1)
                .checked_mul(self.dilation)
                .and_then(|span| last(self.out_rows, sh, span + 1))
                .is_some_and(|r| r <= self.rows)
            && kw
                .checked_add(self.offset)
                .and_then(|span| last(self.out_cols, sw, span))
                .is_some_and(|c| c <= self.cols)
            && self.planar.is_none_or(|p| {
                p.h.checked_add(p.top).is_some_and(|r| r <= self.rows)
                    && p.w.checked_add(p.left).is_some_and(|c| c <= self.cols)
            })
            && product(&[self.kernel.0, self.ch, self.cols]).is_some()
    }
    /// Values per input sample.
    pub fn in_len(&self) -> usize {
        match self.planar {
            None => self.rows * self.cols * self.ch,
            Some(p) => self.ch * p.h * p.w,
        }
    }
    /// Values per output sample (pooled).
    pub fn out_len(&self) -> usize {
        (self.out_rows / self.pool.0.max(1)) * (self.out_cols / self.pool.1.max(1)) * self.filters
    }
    /// Scratch values a run needs: the convolution rows of one pooled row (none without a
    /// pool), then a planar input's band ([`band`](Self::band)).
    pub fn scratch(&self) -> usize {
        let pool = match self.pool {
            (1, 1) => 0,
            (ph, _) => ph * self.out_cols * self.filters,
        };
        pool + self.band()
    }
    /// A planar input's band: the `kernel.0` padded input rows one output row reads, each
    /// as `ch` planes of `cols` values (`[kh, ch, cols]`); 0 for a padded input.
    fn band(&self) -> usize {
        match self.planar {
            None => 0,
            Some(_) => self.kernel.0 * self.ch * self.cols,
        }
    }
    /// Where window value `k` is from the window's first (K order: tap row, tap column,
    /// channel), in `off[..K]` (`K <= KB`: nothing allocated per run): in the padded input,
    /// or in a planar input's band.
    fn offsets(&self, off: &mut [usize; KB]) {
        let (kh, kw) = self.kernel;
        let taps = (0..kh).flat_map(|a| (0..kw).map(move |b| (a, b)));
        let values = taps.flat_map(|(a, b)| (0..self.ch).map(move |c| (a, b, c)));
        for (o, (a, b, c)) in off.iter_mut().zip(values) {
            *o = match self.planar {
                None => (a * self.dilation * self.cols + b) * self.ch + c,
                Some(_) => (a * self.ch + c) * self.cols + b,
            };
        }
    }
    /// Fills `band` with the padded input rows output row `oy` reads from the planar image
    /// `x` (see [`band`](Self::band)): zeros where the padding is.
    fn fill_band(&self, p: Planar, x: &[f32], oy: usize, band: &mut [f32]) {
        let plane = p.h * p.w;
        let rows = band.chunks_exact_mut(self.ch * self.cols);
        for (a, rows) in rows.enumerate() {
            let iy = oy * self.strides.0 + a * self.dilation;
            let src = iy.checked_sub(p.top).filter(|&r| r < p.h);
            for (c, line) in rows.chunks_exact_mut(self.cols).enumerate() {
                let Some(r) = src else {
                    line.fill(0.0);
                    continue;
                };
                let (before, rest) = line.split_at_mut(p.left);
                let (image, after) = rest.split_at_mut(p.w);
                before.fill(0.0);
                image.copy_from_slice(&x[c * plane + r * p.w..][..p.w]);
                after.fill(0.0);
            }
        }
    }

    /// Brings into the caches the image rows output row `oy` reads that row `oy - 1` does
    /// not (none past the image): the image comes from the caller, usually from L3 or
    /// memory, and one row's band copied while the row before computes arrives without the
    /// wait.
    fn prefetch_band(&self, p: Planar, x: &[f32], oy: usize) {
        let plane = p.h * p.w;
        let span = (self.kernel.0 - 1) * self.dilation;
        let seen = (oy * self.strides.0 + span).checked_sub(self.strides.0);
        for a in 0..self.kernel.0 {
            let iy = oy * self.strides.0 + a * self.dilation;
            let Some(r) = iy.checked_sub(p.top).filter(|&r| r < p.h) else {
                continue;
            };
            if seen.is_some_and(|last| iy <= last) {
                continue;
            }
            for c in 0..self.ch {
                let line = &x[c * plane + r * p.w..][..p.w];
                for v in line.iter().step_by(16).chain(line.last()) {
                    prefetch(v);
                }
            }
        }
    }

    /// One sample `x` (the padded input, or the [`Planar`] image) into `y`: `kernel` is the
    /// `K x filters` GEMM weights (row-major),
    /// `ops` the epilogue (its cheap prefix on the registers, the rest on each stored row,
    /// as the GEMM runs them; no `AddC`). Tiles of
    /// `R` output columns by `NV` vectors of `V` (two [`FILTER_BLOCK`]s), or, for a last
    /// single block, `RH` by `NH` vectors (one). With a pool, each
    /// pooled row's convolution rows go to `scratch` ([`scratch`](Self::scratch) values), then
    /// their max per window (the bits of [`PoolRects`] over the whole output).
    ///
    /// # Safety
    /// `V`'s instruction set is available, `NV * V::LANES == 2 * FILTER_BLOCK` and `NH *
    /// V::LANES == FILTER_BLOCK`.
    ///
    /// # Panics
    /// If the geometry is not [`valid`](Self::valid), `x`, `y` or `kernel` is not its size,
    /// or an op is an `AddC` or does not hold `filters` values.
    #[inline(always)]
    pub(crate) unsafe fn run<
        V: Simd,
        const NV: usize,
        const R: usize,
        const NH: usize,
        const RH: usize,
    >(
        &self,
        kernel: &[f32],
        ops: &[EpOp<'_>],
        x: &[f32],
        y: &mut [f32],
        scratch: &mut [f32],
    ) {
        let f = self.filters;
        assert!(self.valid() && NV * V::LANES == 2 * FILTER_BLOCK && NH * V::LANES == FILTER_BLOCK);
        assert!(x.len() == self.in_len() && y.len() == self.out_len());
        assert!(scratch.len() >= self.scratch());
        assert!(kernel.len() == self.k() * f);
        let (reg, rest) = split_register_ops(ops);
        assert!(ops.iter().all(|o| o.check(f).is_ok()));
        // The ops past the register ones run on each stored row, as the GEMM runs them on
        // its stored tile: elementwise activations over the whole row at once.
        let elementwise = rest
            .iter()
            .all(|o| matches!(o, EpOp::Act(a) if !a.is_row_wise()));
        assert!(!ops.iter().any(|o| matches!(o, EpOp::AddC(_))));
        let mut all = [0; KB];
        self.offsets(&mut all);
        let off = &all[..self.k()];
        let (sh, sw) = self.strides;
        let step = match self.planar {
            None => sw * self.ch,
            Some(_) => sw,
        };
        let (scratch, band) = scratch.split_at_mut(self.scratch() - self.band());
        let band = &mut band[..self.band()];
        let (ph, pw) = self.pool;
        let line = self.out_cols * f;
        // The pool over `ph` convolution rows in `scratch`: one output row.
        let pool = PoolRects {
            max: true,
            rows: Axis::whole(ph, ph),
            cols: Axis::whole(self.out_cols, pw),
            ch: f,
        };
        for oy in 0..self.out_rows {
            // The input this output row reads, and where its first window starts.
            let (x, row) = match self.planar {
                None => (x, (oy * sh * self.cols + self.offset) * self.ch),
                Some(p) => {
                    self.fill_band(p, x, oy, band);
                    self.prefetch_band(p, x, oy + 2);
                    (&*band, self.offset)
                }
            };
            let dst = match self.pool {
                (1, 1) => &mut y[oy * line..][..line],
                _ => &mut scratch[oy % ph * line..][..line],
            };
            let mut fb = 0;
            while fb < f {
                // Two blocks at a time where there are two (fewer broadcasts per FMA).
                let wide = fb + 2 * FILTER_BLOCK <= f;
                let e = TileEpilogue {
                    reg,
                    l1: &[],
                    row: 0,
                    col: fb,
                    cols: if wide { 2 * FILTER_BLOCK } else { FILTER_BLOCK },
                };
                let mut ox = 0;
                while ox < self.out_cols {
                    let at = ox * f + fb;
                    let first = row + ox * step;
                    let out = &mut dst[at..];
                    let args = (x, first, step, off, kernel, fb, f);
                    // SAFETY: the ISA, NV and NH are this function's contract; every window
                    // of the output columns `ox..ox + R` (`RH`, 4 or 1) is inside `x`, the
                    // padded input or a planar input's band (`valid`, sizes asserted), their outputs' filters `fb..fb + 32` (`+ 16`)
                    // inside the row `dst`, the kernel holds K rows of `f`, the register ops
                    // are checked cheap per-column ops.
                    unsafe {
                        ox += match (wide, ox + R <= self.out_cols, ox + RH <= self.out_cols) {
                            (true, true, _) => tile::<V, NV, R, 0>(args, &e, out),
                            (true, false, _) => tile::<V, NV, 1, 0>(args, &e, out),
                            // A 16-filter stride-2 stem over image planes (windows 2 values
                            // apart): each tap's windows from one address register.
                            (false, _, true) if step == 2 => tile::<V, NH, RH, 2>(args, &e, out),
                            (false, _, true) => tile::<V, NH, RH, 0>(args, &e, out),
                            // The row's last columns four at a time where four are left
                            // (mobilenet's 112 = 18 x 6 + 4): one column is two FMA chains,
                            // a tap every FMA latency.
                            (false, _, false) if ox + 4 <= self.out_cols => {
                                tile::<V, NH, 4, 0>(args, &e, out)
                            }
                            (false, _, false) => tile::<V, NH, 1, 0>(args, &e, out),
                        };
                    }
                }
                fb += if wide { 2 * FILTER_BLOCK } else { FILTER_BLOCK };
            }
            for op in rest.iter().filter(|_| elementwise) {
                if let EpOp::Act(a) = op {
                    // SAFETY: the ISA is this function's contract.
                    unsafe { V::act_slice(*a, dst) };
                }
            }
            if !elementwise {
                for out in dst.chunks_exact_mut(f) {
                    // SAFETY: the ISA is this function's contract; no op reads a matrix
                    // operand (asserted).
                    unsafe { V::row_stage(rest, 0, out) };
                }
            }
            if self.pool != (1, 1) && oy % ph == ph - 1 {
                let out = line / pw;
                // SAFETY: the ISA is this function's contract.
                unsafe {
                    pool.run::<V>(
                        &scratch[..ph * line],
                        &mut y[oy / ph * out..][..out],
                        &mut [],
                    )
                };
            }
        }
    }
}

/// A tile's input and kernel: `(x, first, step, off, kernel, fb, f)`.
type TileArgs<'a> = (
    &'a [f32],
    usize,
    usize,
    &'a [usize],
    &'a [f32],
    usize,
    usize,
);

/// `R` outputs `step` values apart in the input (windows from `x[first..]`), filters `fb..fb
/// + NV * LANES`, returning `R`: `acc = Σ_k x[.. + off[k]] * kernel[k][..]`, one FMA chain from zero, then the
/// register epilogue, stored `f` apart from `y[0]`.
///
/// # Safety
/// `V`'s instruction set; `STEP` is 0 or `step`; `first + (R - 1) * step + off[k] < x.len()`
/// for every `k`;
/// `kernel` holds `off.len()` rows of `f` values and `fb + NV * LANES <= f`; `y` holds `(R -
/// 1) * f + NV * LANES` values; `e` as [`register_epilogue`] requires.
#[inline(always)]
unsafe fn tile<V: Simd, const NV: usize, const R: usize, const STEP: usize>(
    (x, first, step, off, kernel, fb, f): TileArgs<'_>,
    e: &TileEpilogue<'_>,
    y: &mut [f32],
) -> usize {
    let lanes = V::LANES;
    // A constant step (`STEP > 0`, which is then `step`) makes each window's offset from the
    // first a constant: one address per tap, not one per window.
    let step = if STEP > 0 { STEP } else { step };
    // SAFETY: the ISA (caller contract).
    let mut acc = [[unsafe { V::splat(0.0) }; NV]; R];
    let (xp, wp) = (x.as_ptr(), kernel.as_ptr());
    for (k, &o) in off.iter().enumerate() {
        // SAFETY: row k of the kernel holds `f >= fb + NV * LANES` values (caller contract).
        let b: [V; NV] =
            std::array::from_fn(|v| unsafe { V::load(wp.add(k * f + fb + v * lanes)) });
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: inside `x` (caller contract).
            let a = unsafe { V::splat(*xp.add(first + r * step + o)) };
            for (x, b) in row.iter_mut().zip(b) {
                *x = a.fma(b, *x);
            }
        }
    }
    // SAFETY: the caller's contract.
    unsafe { register_epilogue::<V, R, NV, true>(&mut acc, e) };
    for (r, row) in acc.iter().enumerate() {
        for (v, x) in row.iter().enumerate() {
            let out = &mut y[r * f + v * lanes..][..lanes];
            // SAFETY: `out` holds LANES values.
            unsafe { x.store(out.as_mut_ptr()) };
        }
    }
    R
}

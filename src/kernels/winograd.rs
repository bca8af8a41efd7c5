//! Winograd F(2x2, 3x3): a stride-1 3x3 convolution with 16 multiplies per 2x2 outputs and
//! channel pair instead of 36 (Lavin and Gray, 2015).
//!
//! Each 4x4 patch `d` of the padded input (patches 2 positions apart) becomes `V = Bᵀ d B`;
//! the kernel `g` of each (channel, filter) pair becomes `U = G g Gᵀ` once, at compile time.
//! The 16 positions `ξ` of the transformed patch are independent: `M[ξ] = V[ξ] · U[ξ]` is a
//! GEMM over the channels (one per `ξ`, rows = patches). The outputs are `Aᵀ M A` (2x2 per
//! patch, clipped at the right and bottom edges), then the bias and the activation.
//!
//! The transforms are adds and subtractions in one fixed order, written as plain loops over
//! the channels: every tier compiles them with its own vectors ([`Tier::winograd_in`] /
//! [`Tier::winograd_out`]) and gives the same bits, and the GEMMs are the tiers' own (K-sums in
//! one fixed chain). A block of patch rows runs all three stages while its values are in L2;
//! how a sample is cut into blocks, and which thread runs one, never changes a value.
//!
//! [`Tier::winograd_in`]: super::dispatch::Tier::winograd_in
//! [`Tier::winograd_out`]: super::dispatch::Tier::winograd_out

use super::dispatch::{Tier, with_tier};
use super::epilogue::{RegOps, TileEpilogue, register_epilogue, split_register_ops};
use super::simd::Simd;
use super::{ARows, EpOp, Gemm, Isa, PackedB};

/// Transformed positions of a patch.
pub const POSITIONS: usize = 16;

/// `Some` product of `v`, unless it overflows (a geometry's sizes, checked once so that no
/// index computed from them can wrap).
pub(crate) fn product(v: &[usize]) -> Option<usize> {
    v.iter().try_fold(1usize, |p, &x| p.checked_mul(x))
}

/// The transformed kernel: `[3, 3, ch, filters]` (Keras's order, rows (tap row, tap column,
/// channel)) as 16 `ch x filters` matrices `U[ξ] = G g Gᵀ`, position `ξ = 4 i + j`, computed
/// in f64 and rounded once; `None` if `kernel` does not hold `9 x ch x filters` values.
pub fn transform_kernel(kernel: &[f32], ch: usize, filters: usize) -> Option<Vec<f32>> {
    const G: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let (c, f) = (ch, filters);
    if product(&[9, c, f]) != Some(kernel.len()) {
        return None;
    }
    let mut u = vec![0.0f32; POSITIONS * c * f];
    for k in 0..c {
        for o in 0..f {
            let g = |a: usize, b: usize| f64::from(kernel[((a * 3 + b) * c + k) * f + o]);
            for (i, gi) in G.iter().enumerate() {
                for (j, gj) in G.iter().enumerate() {
                    let mut acc = 0.0;
                    for (a, &ga) in gi.iter().enumerate() {
                        for (b, &gb) in gj.iter().enumerate() {
                            acc += ga * g(a, b) * gb;
                        }
                    }
                    u[((i * 4 + j) * c + k) * f + o] = acc as f32;
                }
            }
        }
    }
    Some(u)
}

/// One Winograd convolution's geometry, over one sample at a time: a padded input of `[rows,
/// cols, ch]` (the windows start `offset` columns in) and convolution outputs of `[out_rows,
/// out_cols, filters]` (`out_rows + 2 <= rows`, `out_cols + 2 + offset <= cols`), with `pool`
/// each patch's 2x2 max-pooled (`out_rows` and `out_cols` even: the output `[out_rows / 2,
/// out_cols / 2, filters]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Winograd {
    /// Padded input rows.
    pub rows: usize,
    /// Padded input columns.
    pub cols: usize,
    /// Columns skipped before the first window (a padding shared with a wider kernel).
    pub offset: usize,
    /// Input channels (the GEMMs' K).
    pub ch: usize,
    /// Output rows.
    pub out_rows: usize,
    /// Output columns.
    pub out_cols: usize,
    /// Output channels (the GEMMs' N).
    pub filters: usize,
    /// A 2x2 max pool of each patch's outputs.
    pub pool: bool,
}

/// The packed `U[ξ]` and the epilogue of a [`Winograd`] convolution.
#[derive(Clone, Copy, Debug)]
pub struct WinogradWeights<'a> {
    /// The 16 transformed kernels, packed (`ch x filters` each) as 16 parts.
    pub u: &'a PackedB,
    /// Run on the outputs, in order (bias, activation, ...): elementwise only.
    pub ops: &'a [EpOp<'a>],
}

impl Winograd {
    /// Whether the geometry holds together: positive sizes, windows inside the input.
    pub fn valid(&self) -> bool {
        self.ch > 0
            && self.filters > 0
            && self.out_rows > 0
            && self.out_cols > 0
            && (!self.pool || self.out_rows.is_multiple_of(2) && self.out_cols.is_multiple_of(2))
            && self.out_rows.checked_add(2).is_some_and(|r| r <= self.rows)
            && [self.out_cols, 2, self.offset]
                .iter()
                .try_fold(0usize, |s, &v| s.checked_add(v))
                .is_some_and(|c| c <= self.cols)
            && product(&[self.rows, self.cols, self.ch]).is_some()
            && product(&[self.out_rows, self.out_cols, self.filters]).is_some()
            && product(&[POSITIONS, self.ch, self.filters]).is_some()
    }
    /// Patches down (2 output rows each).
    pub fn patch_rows(&self) -> usize {
        self.out_rows.div_ceil(2)
    }
    /// Patches across (2 output columns each).
    pub fn patch_cols(&self) -> usize {
        self.out_cols.div_ceil(2)
    }
    /// Values per input sample.
    pub fn in_len(&self) -> usize {
        self.rows * self.cols * self.ch
    }
    /// Convolution outputs per output along each axis: 2 with the pool, else 1.
    fn shrink(&self) -> usize {
        if self.pool { 2 } else { 1 }
    }
    /// Values per output row.
    fn out_row(&self) -> usize {
        self.out_cols / self.shrink() * self.filters
    }
    /// Values per output sample.
    pub fn out_len(&self) -> usize {
        self.out_rows / self.shrink() * self.out_row()
    }
    /// Where patch row `g` of a batch (sample `g / patch_rows()`'s patch row `g %
    /// patch_rows()`) starts writing in the batch's output: the rows of a batch's patch rows
    /// follow each other.
    pub fn out_at(&self, g: usize) -> usize {
        let pr = self.patch_rows().max(1);
        let rows = self.out_rows / self.shrink();
        let at = (2 / self.shrink() * (g % pr)).min(rows) * self.out_row();
        g / pr * self.out_len() + at
    }
    /// Scratch values for a block of `patch_rows` patch rows ([`Winograd::run_block`]).
    pub fn scratch(&self, patch_rows: usize) -> usize {
        let p = patch_rows.saturating_mul(self.patch_cols());
        let values = POSITIONS.saturating_mul(p);
        values
            .saturating_mul(self.ch.saturating_add(self.filters))
            .saturating_add(POSITIONS.saturating_mul(self.ch))
    }

    /// Patch rows `rows` of a batch (numbered as in [`out_at`](Self::out_at)) from the batch's
    /// input `x` into `y`, the outputs they make (`out_at(rows.start)..out_at(rows.end)` of
    /// the batch's): the 16 transformed patches into `scratch`, 16 GEMMs (M: the block's
    /// patches), the outputs and `w.ops`. `scratch` holds at least
    /// [`scratch(rows.len())`](Self::scratch) values.
    ///
    /// # Panics
    /// If the geometry is not [`valid`](Self::valid), `x` does not hold the rows' samples,
    /// `y` is not their outputs, the scratch is short, or `w` does not match (16 kernels
    /// packed `ch x filters` for `isa`).
    pub fn run_block(
        &self,
        isa: Isa,
        w: WinogradWeights<'_>,
        (x, y): (&[f32], &mut [f32]),
        rows: std::ops::Range<usize>,
        scratch: &mut [f32],
    ) {
        assert!(self.valid(), "Winograd geometry {self:?}");
        assert!(rows.start <= rows.end);
        let samples = rows.end.div_ceil(self.patch_rows());
        assert!(x.len() >= samples * self.in_len());
        assert!(y.len() == self.out_at(rows.end) - self.out_at(rows.start));
        assert!(w.u.parts() == POSITIONS);
        let (c, f) = (self.ch, self.filters);
        let p = rows.len() * self.patch_cols();
        if p == 0 {
            return;
        }
        let (v, rest) = scratch.split_at_mut(POSITIONS * p * c);
        let (m, edge) = rest.split_at_mut(POSITIONS * p * f);
        with_tier!(isa, |t| t.winograd_in(self, x, rows.clone(), v, edge));
        let parts = (0..POSITIONS).filter_map(|i| w.u.part(i));
        for (i, ((u, v), m)) in parts
            .zip(v.chunks_exact(p * c))
            .zip(m.chunks_exact_mut(p * f))
            .enumerate()
        {
            // The next kernel streams into cache while this one computes.
            let next = w.u.part(i + 1).map_or(&[][..], |n| n.data);
            Gemm::new(isa, p, ARows::new(v, c), u, &[])
                .then(next)
                .run(m, f);
        }
        with_tier!(isa, |t| t.winograd_out(self, m, rows.clone(), y, w.ops));
    }

    /// `V = Bᵀ d B` of a batch's patch rows `rows` of `x` into `v` (`[16][patches][ch]`): each
    /// 4x4 patch from `(2 r, 2 c)`, read in place, or, past the input's edge, from a copy in
    /// `edge` (16 x ch values) with zeros there. `V::LANES` channels at a time, the rest one
    /// by one (the same operations).
    ///
    /// # Safety
    /// `V`'s instruction set is available.
    #[inline(always)]
    pub(crate) unsafe fn input<V: Simd>(
        &self,
        x: &[f32],
        rows: std::ops::Range<usize>,
        v: &mut [f32],
        edge: &mut [f32],
    ) {
        let (c, pc, prs) = (self.ch, self.patch_cols(), self.patch_rows());
        let p = rows.len() * pc;
        assert!(v.len() >= POSITIONS * p * c && edge.len() >= POSITIONS * c);
        let whole = c - c % V::LANES;
        // Where a patch's 16 inputs are from its first: in the input, and in `edge`.
        let (mut inside, mut copied) = ([0; 16], [0; 16]);
        for k in 0..16 {
            inside[k] = ((k / 4) * self.cols + k % 4) * c;
            copied[k] = k * c;
        }
        for (i, g) in rows.enumerate() {
            let (x, pr) = (&x[g / prs * self.in_len()..][..self.in_len()], g % prs);
            for q in 0..pc {
                let patch = i * pc + q;
                let (r0, c0) = (2 * pr, 2 * q + self.offset);
                let (src, first, off) = if r0 + 4 <= self.rows && c0 + 4 <= self.cols {
                    (x, (r0 * self.cols + c0) * c, &inside)
                } else {
                    for (k, e) in edge.chunks_exact_mut(c).take(16).enumerate() {
                        let (r, col) = (r0 + k / 4, c0 + k % 4);
                        match r < self.rows && col < self.cols {
                            true => e.copy_from_slice(&x[(r * self.cols + col) * c..][..c]),
                            false => e.fill(0.0),
                        }
                    }
                    (&*edge, 0, &copied)
                };
                assert!(first + off[15] + c <= src.len());
                let dst = |k: usize, ch: usize| (k * p + patch) * c + ch;
                for ch in (0..whole).step_by(V::LANES) {
                    // SAFETY: the ISA is this function's contract; `first + off[k] + ch +
                    // LANES <= first + off[15] + c <= src.len()` (asserted).
                    let dv: [V; 16] = unsafe { load16(src, first, off, ch) };
                    for (k, r) in input_patch(&dv).into_iter().enumerate() {
                        // SAFETY: `v` holds 16 p c values (asserted) and `dst(k, ch) +
                        // LANES <= (k p + patch + 1) c`.
                        unsafe { r.store(v.as_mut_ptr().add(dst(k, ch))) };
                    }
                }
                for ch in whole..c {
                    let mut dv = [0.0; 16];
                    dv.iter_mut()
                        .zip(off)
                        .for_each(|(d, o)| *d = src[first + o + ch]);
                    for (k, r) in input_patch(&dv).into_iter().enumerate() {
                        v[dst(k, ch)] = r;
                    }
                }
            }
        }
    }

    /// `Aᵀ M A` of a batch's patch rows `rows` from `m` (`[16][patches][filters]`) into `y`,
    /// the outputs they make, 2x2 per patch, clipped at the output's edges, NaN canonical
    /// (an infinity minus an infinity makes the CPU's own NaN). Then `ops`: their cheap
    /// prefix on the registers when the filters are whole vectors, the rest (on tier `t`)
    /// over each patch row's outputs once they are written (the same bits either way). With
    /// the pool, the max of each patch's 4 outputs (after `ops`, which must then all run on
    /// the registers) is its one output.
    ///
    /// # Safety
    /// `V`'s instruction set is available.
    #[inline(always)]
    pub(crate) unsafe fn output<V: Simd, T: Tier>(
        &self,
        t: T,
        m: &[f32],
        rows: std::ops::Range<usize>,
        y: &mut [f32],
        ops: &[EpOp<'_>],
    ) {
        let (f, pc, prs) = (self.filters, self.patch_cols(), self.patch_rows());
        let p = rows.len() * pc;
        assert!(m.len() >= POSITIONS * p * f);
        assert!(
            ops.iter()
                .all(|o| o.check(f).is_ok() && !matches!(o, EpOp::AddC(_)))
        );
        let (reg, rest) = match f.is_multiple_of(V::LANES) {
            true => split_register_ops(ops),
            false => (RegOps::NONE, ops),
        };
        let whole = f - f % V::LANES;
        assert!(!self.pool || (rest.is_empty() && whole == f));
        let row = self.out_row();
        // Where a patch's 16 products are, from its first.
        let mut off = [0; 16];
        for (k, o) in off.iter_mut().enumerate() {
            *o = k * p * f;
        }
        let first = self.out_at(rows.start);
        for (i, g) in rows.enumerate() {
            let here = (self.out_rows - 2 * (g % prs)).min(2);
            let y = &mut y[self.out_at(g) - first..][..here / self.shrink() * row];
            for q in 0..pc {
                let patch = i * pc + q;
                let here_cols = (self.out_cols - 2 * q).min(2);
                // Output `k` (row `k / 2`, column `k % 2`), if inside the output.
                let dst = |k: usize, c0: usize| {
                    let (r, col) = (k / 2, k % 2);
                    (r < here && col < here_cols).then(|| r * row + (2 * q + col) * f + c0)
                };
                for c0 in (0..whole).step_by(V::LANES) {
                    // SAFETY: the ISA is this function's contract; `patch f + off[k] + c0 +
                    // LANES <= (15 p + patch + 1) f <= 16 p f <= m.len()` (asserted).
                    let mv: [V; 16] = unsafe { load16(m, patch * f, &off, c0) };
                    let o = output_patch(&mv);
                    let mut acc = [[o[0]], [o[1]], [o[2]], [o[3]]];
                    let e = TileEpilogue {
                        reg,
                        l1: &[],
                        row: 0,
                        col: c0,
                        cols: V::LANES,
                    };
                    // SAFETY: the register ops are per-column ops and cheap activations
                    // (no matrix operand), each holding `f` values (asserted), and
                    // `c0 + LANES <= f`.
                    unsafe { register_epilogue::<V, 4, 1, true>(&mut acc, &e) };
                    if self.pool {
                        // In the pool's order: from -inf, row by row, NaN wins.
                        // SAFETY: the ISA is this function's contract.
                        let mut max = unsafe { V::splat(f32::NEG_INFINITY) };
                        for [o] in acc {
                            max = V::select(V::or_mask(o.gt(max), o.is_nan()), o, max);
                        }
                        let out = &mut y[q * f + c0..][..V::LANES];
                        // SAFETY: `out` holds LANES values.
                        unsafe { max.store(out.as_mut_ptr()) };
                        continue;
                    }
                    for (k, [o]) in acc.into_iter().enumerate() {
                        if let Some(at) = dst(k, c0) {
                            let out = &mut y[at..at + V::LANES];
                            // SAFETY: `out` holds LANES values.
                            unsafe { o.store(out.as_mut_ptr()) };
                        }
                    }
                }
                for c0 in whole..f {
                    let mut mv = [0.0; 16];
                    mv.iter_mut()
                        .zip(off)
                        .for_each(|(v, o)| *v = m[patch * f + o + c0]);
                    for (k, o) in output_patch(&mv).into_iter().enumerate() {
                        if let Some(at) = dst(k, c0) {
                            y[at] = if o.is_nan() { f32::NAN } else { o };
                        }
                    }
                }
            }
            if !rest.is_empty() {
                t.rows(rest, y, f);
            }
        }
    }
}

/// The 16 vectors at `s[first + off[k] + at..]`.
///
/// # Safety
/// `V`'s instruction set is available and `first + off[k] + at + V::LANES <= s.len()` for
/// every `k`.
#[inline(always)]
unsafe fn load16<V: Simd>(s: &[f32], first: usize, off: &[usize; 16], at: usize) -> [V; 16] {
    let p = s.as_ptr().wrapping_add(first + at);
    // Written out: a loop here stays a loop, through the stack.
    macro_rules! load {
        ($($k:literal)*) => {
            // SAFETY: the caller's contract.
            [$(unsafe { V::load(p.add(off[$k])) }),*]
        };
    }
    load!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
}

/// What the transforms compute with: a lane vector, or one value (the channels past the
/// last whole vector), with the same operations.
trait Lane: Copy {
    fn plus(self, o: Self) -> Self;
    fn minus(self, o: Self) -> Self;
}

impl Lane for f32 {
    #[inline(always)]
    fn plus(self, o: f32) -> f32 {
        self + o
    }
    #[inline(always)]
    fn minus(self, o: f32) -> f32 {
        self - o
    }
}

impl<V: Simd> Lane for V {
    #[inline(always)]
    fn plus(self, o: V) -> V {
        self.add(o)
    }
    #[inline(always)]
    fn minus(self, o: V) -> V {
        self.sub(o)
    }
}

/// `Bᵀ d B` of one patch: `d[4 r + s]` is row `r`, column `s`; the result's `[4 k + j]` is
/// position `ξ = (k, j)`. Rows first, then columns, each combination one add or subtraction.
#[inline(always)]
fn input_patch<L: Lane>(d: &[L; 16]) -> [L; 16] {
    let mut t = *d;
    for s in 0..4 {
        let (d0, d1, d2, d3) = (d[s], d[4 + s], d[8 + s], d[12 + s]);
        t[s] = d0.minus(d2);
        t[4 + s] = d1.plus(d2);
        t[8 + s] = d2.minus(d1);
        t[12 + s] = d1.minus(d3);
    }
    let mut v = t;
    for k in 0..4 {
        let (a, b, c, e) = (t[4 * k], t[4 * k + 1], t[4 * k + 2], t[4 * k + 3]);
        v[4 * k] = a.minus(c);
        v[4 * k + 1] = b.plus(c);
        v[4 * k + 2] = c.minus(b);
        v[4 * k + 3] = b.minus(e);
    }
    v
}

/// `Aᵀ M A` of one patch: `m[4 i + j]` is position `(i, j)`; the result's `[2 r + c]` is
/// output `(r, c)`, each `(a + b) + c` or `(a - b) - c` of such sums of `M`'s rows.
#[inline(always)]
fn output_patch<L: Lane>(m: &[L; 16]) -> [L; 4] {
    let mut s = [m[0]; 8];
    for j in 0..4 {
        let (m0, m1, m2, m3) = (m[j], m[4 + j], m[8 + j], m[12 + j]);
        s[j] = m0.plus(m1).plus(m2);
        s[4 + j] = m1.minus(m2).minus(m3);
    }
    let mut y = [m[0]; 4];
    for r in 0..2 {
        let (a, b, c, e) = (s[4 * r], s[4 * r + 1], s[4 * r + 2], s[4 * r + 3]);
        y[2 * r] = a.plus(b).plus(c);
        y[2 * r + 1] = b.minus(c).minus(e);
    }
    y
}

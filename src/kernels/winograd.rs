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

use super::dispatch::with_tier;
use super::{ARows, EpOp, Gemm, Isa, PackedB};

/// Transformed positions of a patch.
pub const POSITIONS: usize = 16;

/// The transformed kernel: `[3, 3, ch, filters]` (Keras's order, rows (tap row, tap column,
/// channel)) as 16 `ch x filters` matrices `U[ξ] = G g Gᵀ`, position `ξ = 4 i + j`, computed
/// in f64 and rounded once.
pub fn transform_kernel(kernel: &[f32], ch: usize, filters: usize) -> Vec<f32> {
    const G: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let (c, f) = (ch, filters);
    let mut u = vec![0.0f32; POSITIONS * c * f];
    if kernel.len() != 9 * c * f {
        return u;
    }
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
    u
}

/// One Winograd convolution's geometry, over one sample at a time: a padded input of `[rows,
/// cols, ch]` (the windows start `offset` columns in) and an output of `[out_rows, out_cols,
/// filters]` (`out_rows + 2 <= rows`, `out_cols + 2 + offset <= cols`).
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
}

/// The packed `U[ξ]` and the epilogue of a [`Winograd`] convolution.
#[derive(Clone, Copy, Debug)]
pub struct WinogradWeights<'a> {
    /// The 16 transformed kernels, packed (`ch x filters` each).
    pub u: &'a [PackedB],
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
            && self.out_rows.checked_add(2).is_some_and(|r| r <= self.rows)
            && [self.out_cols, 2, self.offset]
                .iter()
                .try_fold(0usize, |s, &v| s.checked_add(v))
                .is_some_and(|c| c <= self.cols)
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
    /// Values per output sample.
    pub fn out_len(&self) -> usize {
        self.out_rows * self.out_cols * self.filters
    }
    /// The output rows patch rows `rows` make, as a range of one sample's output values.
    pub fn out_rows_of(&self, rows: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let row = self.out_cols * self.filters;
        let at = |r: usize| (2 * r).min(self.out_rows) * row;
        at(rows.start)..at(rows.end)
    }
    /// Scratch values for a block of `patch_rows` patch rows ([`Winograd::run_block`]).
    pub fn scratch(&self, patch_rows: usize) -> usize {
        let p = patch_rows * self.patch_cols();
        POSITIONS * p * (self.ch + self.filters) + self.tmp_len()
    }
    /// Working values of one patch's transforms: its rows combined (16 x ch) and a row of
    /// zeros (ch), or its outputs' rows combined (8 x filters).
    fn tmp_len(&self) -> usize {
        (17 * self.ch).max(8 * self.filters)
    }

    /// Patch rows `rows` of one sample `x` into `y`, the output rows they make (from row `2
    /// rows.start`, [`out_rows_of`](Self::out_rows_of)): the 16 transformed patches into
    /// `scratch`, 16 GEMMs, the outputs and `w.ops`. `scratch` holds at least
    /// [`scratch(rows.len())`](Self::scratch) values.
    ///
    /// # Panics
    /// If the geometry is not [`valid`](Self::valid), `x` is not one sample, `y` not those
    /// rows, `rows` is past the patch rows, the scratch is short, or `w` does not match (16
    /// kernels packed `ch x filters` for `isa`).
    pub fn run_block(
        &self,
        isa: Isa,
        w: WinogradWeights<'_>,
        (x, y): (&[f32], &mut [f32]),
        rows: std::ops::Range<usize>,
        scratch: &mut [f32],
    ) {
        assert!(self.valid(), "Winograd geometry {self:?}");
        assert!(rows.start <= rows.end && rows.end <= self.patch_rows());
        assert!(x.len() == self.in_len() && y.len() == self.out_rows_of(rows.clone()).len());
        assert!(w.u.len() == POSITIONS);
        let (c, f) = (self.ch, self.filters);
        let p = rows.len() * self.patch_cols();
        if p == 0 {
            return;
        }
        let (v, rest) = scratch.split_at_mut(POSITIONS * p * c);
        let (m, rest) = rest.split_at_mut(POSITIONS * p * f);
        let tmp = &mut rest[..self.tmp_len()];
        with_tier!(isa, |t| t.winograd_in(self, x, rows.clone(), v, tmp));
        for ((u, v), m) in
            w.u.iter()
                .zip(v.chunks_exact(p * c))
                .zip(m.chunks_exact_mut(p * f))
        {
            Gemm::new(isa, p, ARows::new(v, c), u.view(), &[]).run(m, f);
        }
        with_tier!(isa, |t| t.winograd_out(self, m, rows.clone(), y, tmp));
        // The block's output rows are contiguous: the epilogue runs over them at once.
        if !w.ops.is_empty() {
            with_tier!(isa, |t| t.rows(w.ops, y, f));
        }
    }

    /// `V = Bᵀ d B` of patch rows `rows` of `x` into `v` (`[16][patches][ch]`): each 4x4
    /// patch from `(2 r, 2 c)`, zeros past the input's edge. `tmp`: [`tmp_len`] values.
    ///
    /// [`tmp_len`]: Self::tmp_len
    #[inline(always)]
    pub(crate) fn input(
        &self,
        x: &[f32],
        rows: std::ops::Range<usize>,
        v: &mut [f32],
        tmp: &mut [f32],
    ) {
        let (c, pc) = (self.ch, self.patch_cols());
        let p = rows.len() * pc;
        let (t, zeros) = tmp.split_at_mut(16 * c);
        let zeros = &mut zeros[..c];
        zeros.fill(0.0);
        let zeros = &*zeros;
        let at = |r: usize, col: usize| -> &[f32] {
            let col = col + self.offset;
            if r < self.rows && col < self.cols {
                &x[(r * self.cols + col) * c..][..c]
            } else {
                zeros
            }
        };
        for (i, pr) in rows.enumerate() {
            for q in 0..pc {
                let patch = i * pc + q;
                // Bᵀ d: the rows of each of the patch's columns `s` combined, into t[s][k].
                for s in 0..4 {
                    let d = |r: usize| at(2 * pr + r, 2 * q + s);
                    let [t0, t1, t2, t3] = four(&mut t[s * 4 * c..][..4 * c], c);
                    sub(d(0), d(2), t0);
                    add(d(1), d(2), t1);
                    sub(d(2), d(1), t2);
                    sub(d(1), d(3), t3);
                }
                // (Bᵀ d) B: the columns of each row `k` combined, into v[4 k + j].
                for k in 0..4 {
                    let col = |s: usize| &t[(s * 4 + k) * c..][..c];
                    let out = |j: usize| ((4 * k + j) * p + patch) * c;
                    sub(col(0), col(2), &mut v[out(0)..][..c]);
                    add(col(1), col(2), &mut v[out(1)..][..c]);
                    sub(col(2), col(1), &mut v[out(2)..][..c]);
                    sub(col(1), col(3), &mut v[out(3)..][..c]);
                }
            }
        }
    }

    /// `Aᵀ M A` of patch rows `rows` from `m` (`[16][patches][filters]`) into `y`, the output
    /// rows they make, 2x2 per patch, clipped at the output's edges. `tmp`: [`tmp_len`] values.
    ///
    /// [`tmp_len`]: Self::tmp_len
    #[inline(always)]
    pub(crate) fn output(
        &self,
        m: &[f32],
        rows: std::ops::Range<usize>,
        y: &mut [f32],
        tmp: &mut [f32],
    ) {
        let (f, pc) = (self.filters, self.patch_cols());
        let p = rows.len() * pc;
        let t = &mut tmp[..8 * f];
        for (i, pr) in rows.enumerate() {
            for q in 0..pc {
                let patch = i * pc + q;
                let mm = |xi: usize| &m[(xi * p + patch) * f..][..f];
                // Aᵀ M: the 4 rows of each column `j` combined into t[j][0..2].
                for j in 0..4 {
                    let (s0, s1) = t[j * 2 * f..][..2 * f].split_at_mut(f);
                    add3(mm(j), mm(4 + j), mm(8 + j), s0);
                    sub3(mm(4 + j), mm(8 + j), mm(12 + j), s1);
                }
                // (Aᵀ M) A: the columns of each row combined, straight into the output.
                for r in 0..2 {
                    if 2 * pr + r >= self.out_rows {
                        break;
                    }
                    let s = |j: usize| &t[(j * 2 + r) * f..][..f];
                    let at = ((2 * i + r) * self.out_cols + 2 * q) * f;
                    add3(s(0), s(1), s(2), &mut y[at..][..f]);
                    if 2 * q + 1 < self.out_cols {
                        sub3(s(1), s(2), s(3), &mut y[at + f..][..f]);
                    }
                }
            }
        }
    }
}

/// `s` cut into four `c`-long parts.
#[inline(always)]
fn four(s: &mut [f32], c: usize) -> [&mut [f32]; 4] {
    let (a, s) = s.split_at_mut(c);
    let (b, s) = s.split_at_mut(c);
    let (d, e) = s.split_at_mut(c);
    [a, b, d, &mut e[..c]]
}

/// `o = a + b`.
#[inline(always)]
fn add(a: &[f32], b: &[f32], o: &mut [f32]) {
    for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
        *o = a + b;
    }
}

/// `o = a - b`.
#[inline(always)]
fn sub(a: &[f32], b: &[f32], o: &mut [f32]) {
    for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
        *o = a - b;
    }
}

/// `o = (a + b) + c`, NaN canonical.
#[inline(always)]
fn add3(a: &[f32], b: &[f32], c: &[f32], o: &mut [f32]) {
    for (((o, a), b), c) in o.iter_mut().zip(a).zip(b).zip(c) {
        *o = canonical(a + b + c);
    }
}

/// `o = (a - b) - c`, NaN canonical.
#[inline(always)]
fn sub3(a: &[f32], b: &[f32], c: &[f32], o: &mut [f32]) {
    for (((o, a), b), c) in o.iter_mut().zip(a).zip(b).zip(c) {
        *o = canonical(a - b - c);
    }
}

/// `x`, or the canonical NaN (an infinity minus an infinity makes the CPU's own NaN).
#[inline(always)]
fn canonical(x: f32) -> f32 {
    if x.is_nan() { f32::NAN } else { x }
}

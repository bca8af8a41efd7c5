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
    /// Where patch row `g` of a batch (sample `g / patch_rows()`'s patch row `g %
    /// patch_rows()`) starts writing in the batch's output: the rows of a batch's patch rows
    /// follow each other.
    pub fn out_at(&self, g: usize) -> usize {
        let pr = self.patch_rows().max(1);
        let at = (2 * (g % pr)).min(self.out_rows) * self.out_cols * self.filters;
        g / pr * self.out_len() + at
    }
    /// Scratch values for a block of `patch_rows` patch rows ([`Winograd::run_block`]).
    pub fn scratch(&self, patch_rows: usize) -> usize {
        let p = patch_rows * self.patch_cols();
        POSITIONS * p * (self.ch + self.filters) + self.ch
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
        assert!(w.u.len() == POSITIONS);
        let (c, f) = (self.ch, self.filters);
        let p = rows.len() * self.patch_cols();
        if p == 0 {
            return;
        }
        let (v, rest) = scratch.split_at_mut(POSITIONS * p * c);
        let (m, zeros) = rest.split_at_mut(POSITIONS * p * f);
        let zeros = &mut zeros[..c];
        zeros.fill(0.0);
        with_tier!(isa, |t| t.winograd_in(self, x, rows.clone(), v, zeros));
        for ((u, v), m) in
            w.u.iter()
                .zip(v.chunks_exact(p * c))
                .zip(m.chunks_exact_mut(p * f))
        {
            Gemm::new(isa, p, ARows::new(v, c), u.view(), &[]).run(m, f);
        }
        with_tier!(isa, |t| t.winograd_out(self, m, rows.clone(), y, w.ops));
    }

    /// `V = Bᵀ d B` of a batch's patch rows `rows` of `x` into `v` (`[16][patches][ch]`): each
    /// 4x4 patch from `(2 r, 2 c)`, zeros past the input's edge (`zeros`: `ch` of them).
    #[inline(always)]
    pub(crate) fn input(
        &self,
        x: &[f32],
        rows: std::ops::Range<usize>,
        v: &mut [f32],
        zeros: &[f32],
    ) {
        let (c, pc, prs) = (self.ch, self.patch_cols(), self.patch_rows());
        let p = rows.len() * pc;
        for (i, g) in rows.enumerate() {
            let (x, pr) = (&x[g / prs * self.in_len()..][..self.in_len()], g % prs);
            let at = |r: usize, col: usize| -> &[f32] {
                let col = col + self.offset;
                match x.get((r * self.cols + col) * c..) {
                    Some(d) if r < self.rows && col < self.cols => &d[..c],
                    _ => &zeros[..c],
                }
            };
            for q in 0..pc {
                let patch = i * pc + q;
                let mut d = [zeros; 16];
                for (k, d) in d.iter_mut().enumerate() {
                    *d = at(2 * pr + k / 4, 2 * q + k % 4);
                }
                let mut out = |k: usize, c0: usize, vals: &[f32]| {
                    v[(k * p + patch) * c + c0..][..vals.len()].copy_from_slice(vals);
                };
                let whole = c - c % LANES;
                for c0 in (0..whole).step_by(LANES) {
                    let vt = input_lanes::<LANES>(&gather(&d, c0));
                    vt.iter().enumerate().for_each(|(k, vals)| out(k, c0, vals));
                }
                for c0 in whole..c {
                    let vt = input_lanes::<1>(&gather(&d, c0));
                    vt.iter().enumerate().for_each(|(k, vals)| out(k, c0, vals));
                }
            }
        }
    }

    /// `Aᵀ M A` of a batch's patch rows `rows` from `m` (`[16][patches][filters]`) into `y`,
    /// the outputs they make, 2x2 per patch, clipped at the output's edges; `ops` run (on tier `t`)
    /// over each patch row's output rows once they are written.
    #[inline(always)]
    pub(crate) fn output<T: Tier>(
        &self,
        t: T,
        m: &[f32],
        rows: std::ops::Range<usize>,
        y: &mut [f32],
        ops: &[EpOp<'_>],
    ) {
        let (f, pc, prs) = (self.filters, self.patch_cols(), self.patch_rows());
        let p = rows.len() * pc;
        let row = self.out_cols * f;
        let first = self.out_at(rows.start);
        for (i, g) in rows.enumerate() {
            let here = (self.out_rows - 2 * (g % prs)).min(2);
            let y = &mut y[self.out_at(g) - first..][..here * row];
            for q in 0..pc {
                let patch = i * pc + q;
                let here_cols = (self.out_cols - 2 * q).min(2);
                let mut mm: [&[f32]; 16] = [&[]; 16];
                for (k, mm) in mm.iter_mut().enumerate() {
                    *mm = &m[(k * p + patch) * f..][..f];
                }
                let mut out = |k: usize, c0: usize, vals: &[f32]| {
                    let (r, col) = (k / 2, k % 2);
                    if r < here && col < here_cols {
                        let at = r * row + (2 * q + col) * f + c0;
                        y[at..][..vals.len()].copy_from_slice(vals);
                    }
                };
                let whole = f - f % LANES;
                for c0 in (0..whole).step_by(LANES) {
                    let yt = output_lanes::<LANES>(&gather(&mm, c0));
                    yt.iter().enumerate().for_each(|(k, vals)| out(k, c0, vals));
                }
                for c0 in whole..f {
                    let yt = output_lanes::<1>(&gather(&mm, c0));
                    yt.iter().enumerate().for_each(|(k, vals)| out(k, c0, vals));
                }
            }
            if !ops.is_empty() {
                t.rows(ops, y, f);
            }
        }
    }
}

/// Channels transformed side by side: one AVX-512 vector (two AVX2 ones).
const LANES: usize = 16;

/// `s[k][c0..c0 + L]` of each of the 16 slices (plain loops: `array::map` is not inlined
/// into the tier's code).
#[inline(always)]
fn gather<const L: usize>(s: &[&[f32]; 16], c0: usize) -> [[f32; L]; 16] {
    let mut out = [[0.0; L]; 16];
    for (o, s) in out.iter_mut().zip(s) {
        o.copy_from_slice(&s[c0..c0 + L]);
    }
    out
}

/// `Bᵀ d B` of one patch, `L` channels at a time: `d[4 r + s]` is row `r`, column `s`; the
/// result's `[4 k + j]` is position `ξ = (k, j)`. Rows first, then columns, each combination
/// one add or subtraction.
#[inline(always)]
fn input_lanes<const L: usize>(d: &[[f32; L]; 16]) -> [[f32; L]; 16] {
    let mut t = [[0.0; L]; 16];
    for s in 0..4 {
        for l in 0..L {
            let (d0, d1, d2, d3) = (d[s][l], d[4 + s][l], d[8 + s][l], d[12 + s][l]);
            t[s][l] = d0 - d2;
            t[4 + s][l] = d1 + d2;
            t[8 + s][l] = d2 - d1;
            t[12 + s][l] = d1 - d3;
        }
    }
    let mut v = [[0.0; L]; 16];
    for k in 0..4 {
        for l in 0..L {
            let (a, b, c, e) = (
                t[4 * k][l],
                t[4 * k + 1][l],
                t[4 * k + 2][l],
                t[4 * k + 3][l],
            );
            v[4 * k][l] = a - c;
            v[4 * k + 1][l] = b + c;
            v[4 * k + 2][l] = c - b;
            v[4 * k + 3][l] = b - e;
        }
    }
    v
}

/// `Aᵀ M A` of one patch, `L` filters at a time: `m[4 i + j]` is position `(i, j)`; the
/// result's `[2 r + c]` is output `(r, c)`, NaN canonical (an infinity minus an infinity
/// makes the CPU's own NaN). Each output is `(a + b) + c` or `(a - b) - c` of `(a + b) + c`
/// or `(a - b) - c` sums of `M`.
#[inline(always)]
fn output_lanes<const L: usize>(m: &[[f32; L]; 16]) -> [[f32; L]; 4] {
    let mut s = [[0.0; L]; 8];
    for j in 0..4 {
        for l in 0..L {
            let (m0, m1, m2, m3) = (m[j][l], m[4 + j][l], m[8 + j][l], m[12 + j][l]);
            s[j][l] = m0 + m1 + m2;
            s[4 + j][l] = m1 - m2 - m3;
        }
    }
    let mut y = [[0.0; L]; 4];
    for r in 0..2 {
        for l in 0..L {
            let (a, b, c, e) = (
                s[4 * r][l],
                s[4 * r + 1][l],
                s[4 * r + 2][l],
                s[4 * r + 3][l],
            );
            y[2 * r][l] = canonical(a + b + c);
            y[2 * r + 1][l] = canonical(b - c - e);
        }
    }
    y
}

/// `x`, or the canonical NaN.
#[inline(always)]
fn canonical(x: f32) -> f32 {
    if x.is_nan() { f32::NAN } else { x }
}

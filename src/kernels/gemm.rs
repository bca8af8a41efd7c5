//! The blocked GEMM driver, written once over [`Simd`]: `C = epilogue(A · B)` with B packed.
//!
//! Loop nest (BLIS order): `jc` over NC column blocks, `pc` over KC blocks of K, `ic` over MC
//! blocks of rows, `jp` over NR-wide packed panels, `ir` over MR-row tiles. Each output element's
//! K-sum has one order, fixed by [`KB`] alone: FMA chains over blocks of KB values, each from
//! zero, added to the running sum in k order (kept in C between blocks), so tile shape, KC, MC,
//! NC, the loop order and how A is addressed (strided rows, K segments) never change the bits.
//! The epilogue ([`super::epilogue`]) runs on the accumulators of the last block, before the
//! store; row-wise ops run once a row block's last panel is stored.

use super::cache::prefetch;
use super::epilogue::{
    EpOp, RegOps, TileEpilogue, canonical_tile, l1_epilogue, register_epilogue, split_ops,
    split_register_ops,
};
use super::operands::{ARows, Segment};
use super::pack::PackedBRef;
use super::simd::Simd;

/// The summation block: each output's K-sum is `s_0 + s_1 + ...` added in k order, `s_i` the
/// FMA chain from zero over `k` in `[i * KB, (i + 1) * KB)`. Part of the definition of every
/// result, the same on every machine, tier and tuning (it is not a cache parameter): the
/// error of one long chain grows with K, blocks keep it near the peers' (`tests/golden.rs`).
pub const KB: usize = 128;

/// Cache block of K: how much of K one pass over a tile covers (a multiple of [`KB`], so a
/// pass ends on a summation block; the bits never depend on it).
/// Measured best on Zen 4 among 128-4096: long blocks keep each weight panel streaming.
pub const KC: usize = 1024;
const _: () = assert!(KC.is_multiple_of(KB));

/// One GEMM call: `C[m x n] = ops(A[m x k] · B)` over the column panels `panels`, row stride
/// `ldc`. `C` is a raw pointer so that column parts can run on several threads; each call
/// writes only its own panels' columns. Row `r` of the call reads row `row0 + r` of the
/// epilogue's matrix operands.
#[derive(Clone)]
pub(crate) struct GemmCall<'a> {
    pub m: usize,
    pub a: ARows<'a>,
    pub b: PackedBRef<'a>,
    pub c: *mut f32,
    pub c_len: usize,
    pub ldc: usize,
    pub ops: &'a [EpOp<'a>],
    pub row0: usize,
    pub panels: std::ops::Range<usize>,
    /// What the caller reads after this call: fetched into cache during its last column
    /// block (a hint; never read).
    pub then: &'a [f32],
}

impl GemmCall<'_> {
    /// Checks every extent the unsafe driver relies on.
    pub(crate) fn check(&self) {
        let (m, k, n) = (self.m, self.b.k, self.b.n);
        assert!(self.ldc >= n && (self.a.lda > 0 || m <= 1), "strides");
        // What one row reads from its start: K, or the furthest segment's end.
        let Some(row_extent) = self.a.row_extent(k) else {
            panic!("A's segments do not add up to K = {k} (or end past usize::MAX)");
        };
        if m > 0 {
            // Checked: a wrapped product would pass the length test and let the driver read
            // out of bounds.
            let end = |ld: usize, w: usize| (m - 1).checked_mul(ld).and_then(|x| x.checked_add(w));
            assert!(
                end(self.a.lda, row_extent).is_some_and(|e| self.a.data.len() >= e),
                "A too short"
            );
            assert!(
                end(self.ldc, n).is_some_and(|e| self.c_len >= e),
                "C too short"
            );
        }
        let all = n.div_ceil(self.b.nr);
        // The packing holds every panel the driver indexes (`pack` built it so; this keeps
        // the driver's pointer arithmetic honest whatever changes there).
        let packed = all.checked_mul(k).and_then(|x| x.checked_mul(self.b.nr));
        assert!(packed == Some(self.b.data.len()), "packed B");
        assert!(
            self.panels.start <= self.panels.end && self.panels.end <= all,
            "panels"
        );
        let (_, rest) = split_ops(self.ops);
        assert!(
            rest.is_empty() || self.panels == (0..all),
            "row-wise epilogues need whole rows"
        );
        // The operands every op reads exist.
        let rows = self
            .row0
            .checked_add(m)
            .expect("rows of the operands overflow");
        for op in self.ops {
            if let Err(e) = op.check(n) {
                panic!("epilogue operand: {e}");
            }
            if let EpOp::AddC(c) = op {
                assert!(c.holds(rows, n), "AddC operand too short");
            }
        }
    }
}

/// Where a tile's A values are for one pass over K values `pc..`: the tile's first row
/// starts at `row`, rows `lda` apart; K values come from the segments in order, read from
/// segment `seg` on, which starts at K value `seg_k <= pc`. A plain A is one segment, `(0, K)`.
#[derive(Clone, Copy)]
struct APass {
    row: *const f32,
    lda: usize,
    segs: *const Segment,
    seg: usize,
    seg_k: usize,
    pc: usize,
    /// The whole pass lies in segment `seg` (always, for a plain A): row 0's value of K
    /// value `pc + kk` is `row[run + kk]`, no segment walk needed.
    run: Option<usize>,
}

/// An `R x NR` tile (`NR = NV * LANES`) over `kc` values of K: the K-sum in blocks of
/// [`KB`], each an FMA chain from zero added to the running sum in C (`first`: this call starts
/// the sum). On the call that ends K (`epilogue` given), the last block's total stays in the
/// registers: register ops, NaN made canonical, store, then the L1 ops on the stored rows.
/// `REG`: a tile of all `MR` rows, which may have register ops; the others (fewer rows) are
/// compiled without them. `WHOLE`: all NR columns (a constant width); else only C's first
/// `cols` columns are read and written (a layer's last panel: masked loads and stores for a
/// part of a vector, none past it).
///
/// # Safety
/// `a.seg` indexes a segment, and the segments from it on add up to at least
/// `a.pc + kc - a.seg_k` values; for `r < R`
/// every value a segment addresses, `a.row[r * lda + offset + i]` for `i < len`, is readable;
/// `b` readable for `kc` rows `ldb >= NR` apart, `NR` values each; `c` readable and writable at `r * ldc + j` for `r < R`,
/// `j < cols <= NR` (`cols == NR` if `WHOLE`); the epilogue as
/// [`register_epilogue`] and [`l1_epilogue`] require; `V`'s instruction set available.
#[cfg_attr(sinter_inline, inline(always))]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<V: Simd, const R: usize, const NV: usize, const REG: bool, const WHOLE: bool>(
    kc: usize,
    a: APass,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    mut first: bool,
    epilogue: Option<TileEpilogue<'_>>,
    ahead: &mut Ahead,
    ldb: usize,
) {
    let lanes = V::LANES;
    let nr = NV * lanes;
    // A whole tile's width is a constant: its loads and stores compile without the checks.
    let cols = if WHOLE { nr } else { cols.min(nr) };
    // The values of vector `v` of a row that are C's: all, some or none.
    let live = |v: usize| cols.saturating_sub(v * lanes).min(lanes);
    let mut cursor = (a.seg, a.seg_k);
    // A block that straddles segments is staged here (R rows of KB values): a few copies per
    // KB x NR multiply-adds, and one FMA loop for every block.
    let mut stage = [std::mem::MaybeUninit::<f32>::uninit(); 8 * KB];
    let mut k0 = 0;
    loop {
        let kn = KB.min(kc - k0);
        // Row 0's values of this block's K values, and the row stride.
        let (ap, lda) = match a.run {
            // SAFETY: K values pc+k0.. are the segment's, from `row[run + k0]` on (caller
            // contract).
            Some(run) => (unsafe { a.row.add(run + k0) }, a.lda),
            // SAFETY: the caller's contract; `stage` holds R <= 8 rows of KB values.
            None => unsafe { block_rows(&a, &mut cursor, k0, kn, R, &mut stage) },
        };
        // SAFETY: the ISA is available (caller contract).
        let mut acc = [[unsafe { V::splat(0.0) }; NV]; R];
        ahead.fetch();
        // SAFETY: `ap` holds the block's kn values of each of the R rows, `lda` apart; `b`
        // holds kc rows of NR (caller contract).
        unsafe { fma_run::<V, R, NV>(&mut acc, ap, lda, b.add(k0 * ldb), ldb, kn) };
        if !first {
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    let (p, n) = (c.wrapping_add(r * ldc + v * lanes), live(v));
                    if n == 0 {
                        continue;
                    }
                    // SAFETY: row r of C holds `cols` values (caller contract), `n` of
                    // them from `p`.
                    let sum = unsafe {
                        match n == lanes {
                            true => V::load(p),
                            false => V::load_part(p, n),
                        }
                    };
                    *x = sum.add(*x);
                }
            }
        }
        k0 += kn;
        let done = k0 >= kc;
        match &epilogue {
            // SAFETY: the caller's contract.
            Some(e) if done && REG => unsafe { register_epilogue::<V, R, NV, WHOLE>(&mut acc, e) },
            // A tile of fewer rows runs its ops in L1; its NaNs are made canonical here.
            Some(_) if done => canonical_tile(&mut acc),
            _ => {}
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                let (p, n) = (c.wrapping_add(r * ldc + v * lanes), live(v));
                // SAFETY: as for the load above.
                unsafe {
                    match n {
                        0 => {}
                        n if n == lanes => x.store(p),
                        n => x.store_part(p, n),
                    }
                }
            }
        }
        first = false;
        if done {
            break;
        }
    }
    // Heavy activations run on the tile just stored, still in L1, one vector at a time and out
    // of line: applied to all R x NV accumulators at once they spill registers, and inlined
    // into every tile shape they multiply the build time.
    if let Some(e) = &epilogue
        && !e.l1.is_empty()
    {
        // SAFETY: the caller's contract: C holds R rows of `cols` values.
        unsafe { l1_epilogue::<V>(c, ldc, R, cols, e) };
    }
}

/// A whole `MR x NR` tile (`NR = NV * LANES`) whose K values are all in one block of [`KB`]
/// and one run of A (row 0's at `ap`, rows `lda` apart): [`tile`]'s sums, epilogue and stores
/// for its one block and one pass, with none of its bookkeeping (the K blocks, the segment
/// walk, the running sum in C). A 1x1 convolution over 16 to 96 channels does a few hundred
/// multiply-adds a tile, and that bookkeeping was a fifth of its time.
///
/// # Safety
/// As [`tile`] with `WHOLE`, `first`, the epilogue given, `kc <= KB` and a plain A run: row
/// `r`'s K values readable at `ap + r * lda`, `b` holding `kc` rows of NR.
#[cfg_attr(sinter_inline, inline(always))]
unsafe fn one_block_tile<V: Simd, const R: usize, const NV: usize>(
    kc: usize,
    (ap, lda): (*const f32, usize),
    b: *const f32,
    (c, ldc): (*mut f32, usize),
    e: &TileEpilogue<'_>,
    ahead: &mut Ahead,
) {
    let lanes = V::LANES;
    // SAFETY: the ISA is available (caller contract).
    let mut acc = [[unsafe { V::splat(0.0) }; NV]; R];
    ahead.fetch();
    // SAFETY: the caller's contract.
    unsafe {
        fma_run::<V, R, NV>(&mut acc, ap, lda, b, NV * lanes, kc);
        register_epilogue::<V, R, NV, true>(&mut acc, e);
    }
    for (r, row) in acc.iter().enumerate() {
        for (v, x) in row.iter().enumerate() {
            // SAFETY: row r of C holds NR values from `c + r * ldc` (caller contract).
            unsafe { x.store(c.add(r * ldc + v * lanes)) };
        }
    }
    if !e.l1.is_empty() {
        // SAFETY: the caller's contract: C holds R rows of NR values.
        unsafe { l1_epilogue::<V>(c, ldc, R, NV * lanes, e) };
    }
}

/// Panels a tile of one row covers at once, and of two or three rows ([`rows_panels`]).
const ROW_PANELS: usize = 4;
const FEW_ROW_PANELS: usize = 2;

/// `R` rows over `P` whole panels at once, `R x P x NV` FMA chains: a tile of one to three
/// rows has only `R x NV`, too few to cover the FMA latency, so a GEMV (a batch of one) ran at
/// the chains' pace, not the weights' bandwidth, and two rows took 2.2 times one row's time
/// (a 2x128x512 GEMM 6.5 us, 1x128x512 2.9, Zen 3). Each output's sum is the tile's, in the
/// same order, made canonical and stored the same way; the epilogue runs on the stored rows
/// as for a tile of fewer than `MR` rows (per-column and elementwise ops: one call over the
/// `P` panels gives the same bits).
///
/// # Safety
/// As [`tile`] with `cols = NR`, for each of the `P` panels: panel `p`'s rows from `b + p *
/// pstride`, `ldb = NR`, its C values from `c + r * ldc + p * NR`; `R <= 8`; the epilogue's
/// columns cover all `P` panels.
#[cfg_attr(sinter_inline, inline(always))]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_panels<V: Simd, const R: usize, const NV: usize, const P: usize>(
    kc: usize,
    a: APass,
    (b, pstride): (*const f32, usize),
    (c, ldc): (*mut f32, usize),
    mut first: bool,
    epilogue: Option<TileEpilogue<'_>>,
    ahead: &mut Ahead,
) {
    let lanes = V::LANES;
    let nr = NV * lanes;
    let mut cursor = (a.seg, a.seg_k);
    let mut stage = [std::mem::MaybeUninit::<f32>::uninit(); 8 * KB];
    let mut k0 = 0;
    loop {
        let kn = KB.min(kc - k0);
        let (ap, lda) = match a.run {
            // SAFETY: as in `tile`.
            Some(run) => (unsafe { a.row.add(run + k0) }, a.lda),
            // SAFETY: as in `tile`; `stage` holds R <= 8 rows of KB values.
            None => unsafe { block_rows(&a, &mut cursor, k0, kn, R, &mut stage) },
        };
        // SAFETY: the ISA is available (caller contract).
        let mut acc = [[[unsafe { V::splat(0.0) }; NV]; P]; R];
        ahead.fetch();
        for j in 0..kn {
            // SAFETY: `ap` holds the block's kn values of each of the R rows, `lda` apart;
            // panel p holds kc rows of NR from `b + p * pstride` (caller contract).
            unsafe {
                let av: [V; R] = std::array::from_fn(|r| V::splat(*ap.add(r * lda + j)));
                let bj = b.add((k0 + j) * nr);
                for p in 0..P {
                    for v in 0..NV {
                        let bv = V::load(bj.add(p * pstride + v * lanes));
                        for (row, a) in acc.iter_mut().zip(&av) {
                            row[p][v] = a.fma(bv, row[p][v]);
                        }
                    }
                }
            }
        }
        k0 += kn;
        let done = k0 >= kc;
        // Row r's panel p's NR values of C are at `c + r * ldc + p * NR` (caller contract).
        let at = |r: usize, p: usize, v: usize| c.wrapping_add(r * ldc + p * nr + v * lanes);
        for (r, row) in acc.iter_mut().enumerate() {
            for (p, panel) in row.iter_mut().enumerate() {
                for (v, x) in panel.iter_mut().enumerate() {
                    if !first {
                        // SAFETY: in C (above).
                        *x = unsafe { V::load(at(r, p, v)) }.add(*x);
                    }
                }
                if done && epilogue.is_some() {
                    canonical_tile(std::array::from_mut(panel));
                }
                for (v, x) in panel.iter().enumerate() {
                    // SAFETY: in C (above).
                    unsafe { x.store(at(r, p, v)) };
                }
            }
        }
        first = false;
        if done {
            break;
        }
    }
    if let Some(e) = &epilogue
        && !e.l1.is_empty()
    {
        // SAFETY: the caller's contract: C's R rows hold the P panels' values.
        unsafe { l1_epilogue::<V>(c, ldc, R, P * nr, e) };
    }
}

/// Where K values `pc + k0..pc + k0 + kn` of the tile's `rows` rows are: `(p, ld)`, row `r`'s
/// values at `p[r * ld + j]`. Straight from A when they are one segment's, else copied in k
/// order into `stage` (rows KB apart). Moves `cursor` (segment, its first K value) to the
/// segment holding K value `pc + k0`. Out of line: only segmented A gets here.
///
/// # Safety
/// As [`tile`] for K values up to `pc + k0 + kn`, the cursor a segment at or before the one
/// holding `pc + k0`; `rows <= 8`, `kn <= KB`.
#[inline(never)]
unsafe fn block_rows(
    a: &APass,
    cursor: &mut (usize, usize),
    k0: usize,
    kn: usize,
    rows: usize,
    stage: &mut [std::mem::MaybeUninit<f32>; 8 * KB],
) -> (*const f32, usize) {
    let (seg, seg_k) = cursor;
    let seg_at = |i: usize| {
        // SAFETY: the cursor never passes the segment holding a K value below the pass's end
        // (caller contract), and is only read at such values.
        unsafe { *a.segs.add(i) }
    };
    let mut kk = k0;
    let end = k0 + kn;
    while kk < end {
        let s = seg_at(*seg);
        let g = a.pc + kk;
        if g >= *seg_k + s.len {
            *seg_k += s.len;
            *seg += 1;
            continue;
        }
        let stop = end.min(*seg_k + s.len - a.pc);
        // SAFETY: K values g..g + (stop - kk) of each row are this segment's values from
        // `g - seg_k` on, inside the row's extent (caller contract).
        let from = unsafe { a.row.add(s.offset + (g - *seg_k)) };
        if kk == k0 && stop == end {
            // The whole block is one run: read it in place.
            return (from, a.lda);
        }
        let dst = stage.as_mut_ptr().cast::<f32>();
        for r in 0..rows {
            // SAFETY: as above for the source; row r of `stage` holds KB values from
            // `r * KB`, and `kk - k0 + (stop - kk) <= kn <= KB`.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    from.add(r * a.lda),
                    dst.add(r * KB + kk - k0),
                    stop - kk,
                )
            };
        }
        kk = stop;
    }
    // Every value the FMA loop reads (rows `< rows`, `kn` values each) was written above.
    (stage.as_ptr().cast::<f32>(), KB)
}

/// `acc[r] += A[r][j] * B[j]` for `j < len`, in j order: row `r`'s values at `ap[r * lda + j]`,
/// B's rows `ldb` apart from `bp` (their first `NV` vectors read).
///
/// # Safety
/// Those values are readable; `V`'s instruction set is available.
#[cfg_attr(sinter_inline, inline(always))]
unsafe fn fma_run<V: Simd, const R: usize, const NV: usize>(
    acc: &mut [[V; NV]; R],
    ap: *const f32,
    lda: usize,
    bp: *const f32,
    ldb: usize,
    len: usize,
) {
    let lanes = V::LANES;
    for j in 0..len {
        // SAFETY: the caller's contract.
        unsafe {
            let bj = bp.add(j * ldb);
            let bv: [V; NV] = std::array::from_fn(|v| V::load(bj.add(v * lanes)));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = V::splat(*ap.add(r * lda + j));
                for (x, bv) in row.iter_mut().zip(bv) {
                    *x = av.fma(bv, *x);
                }
            }
        }
    }
}

/// The weights the driver reads next, brought into cache a few lines per block of [`KB`]
/// while the current column block computes. At batch 1 an encoder's weights (tens of MB, more
/// than the last-level cache) come from memory on every run, and the hardware prefetchers do
/// not keep up: cold weights cost a 128-row GEMM 7 to 10% of its time
/// (`cargo bench --bench gemm -- gemm-cold`). Prefetches never fault and change no value, so
/// the range is only a hint.
/// Multiply-adds of the current GEMM per value of the next one's weights it may prefetch:
/// an FMA peak of 100+ G multiply-adds a second against a few G values a second from the
/// last-level cache.
const PREFETCH_MACS_PER_FLOAT: usize = 16;

#[derive(Clone, Copy)]
struct Ahead {
    /// The next line to fetch.
    next: *const f32,
    /// Lines this tile fetches.
    lines: usize,
    /// Lines to fetch per block of [`KB`] values of K.
    per_block: usize,
}

impl Ahead {
    /// Floats per 64-byte cache line.
    const LINE: usize = 16;

    /// Takes a tile's share of the lines left: up to `n`, `per_block` of them per block.
    #[cfg_attr(sinter_inline, inline(always))]
    fn take(&mut self, left: &mut usize, n: usize, per_block: usize) {
        self.lines = n.min(*left);
        self.per_block = per_block;
        *left -= self.lines;
    }

    /// Fetches the next block's share of lines.
    #[cfg_attr(sinter_inline, inline(always))]
    fn fetch(&mut self) {
        let n = self.per_block.min(self.lines);
        for i in 0..n {
            prefetch(self.next.wrapping_add(i * Self::LINE));
        }
        self.next = self.next.wrapping_add(n * Self::LINE);
        self.lines -= n;
    }
}

macro_rules! dispatch_rows {
    ($rows:expr, $mr:expr, $f:ident::<$V:ident, $NV:ident $(, $flag:literal)*>($($arg:expr),*)) => {
        match $rows {
            1 => $f::<$V, 1, $NV $(, $flag)*>($($arg),*),
            2 if $mr >= 2 => $f::<$V, 2, $NV $(, $flag)*>($($arg),*),
            3 if $mr >= 3 => $f::<$V, 3, $NV $(, $flag)*>($($arg),*),
            4 if $mr >= 4 => $f::<$V, 4, $NV $(, $flag)*>($($arg),*),
            5 if $mr >= 5 => $f::<$V, 5, $NV $(, $flag)*>($($arg),*),
            6 if $mr >= 6 => $f::<$V, 6, $NV $(, $flag)*>($($arg),*),
            7 if $mr >= 7 => $f::<$V, 7, $NV $(, $flag)*>($($arg),*),
            8 if $mr >= 8 => $f::<$V, 8, $NV $(, $flag)*>($($arg),*),
            _ => unreachable!("tile rows above MR"),
        }
    };
}

/// Cache blocking of one GEMM. None of it changes the bits (each output's K-sum order is
/// fixed by [`KB`]; blocks over M and N only reorder independent outputs), so it can be chosen
/// per machine and per layer, or measured (`CompileOptions::tune`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    /// K values per pass over a tile: a multiple of [`KB`].
    pub kc: usize,
    /// Rows per row block (MC).
    pub mc: usize,
    /// Panels per column block (NC / NR).
    pub nc_panels: usize,
}

impl Blocking {
    /// The default for this machine, an `m x k` call on panels `nr` wide, tiles `mr` rows:
    /// MC: the input rows of a row block take about 1.5 x L1d (`MC x KC`, read in place).
    /// NC: a column block of weights (`KC x NC`) takes about 2 x L2 and streams from L3.
    /// KC: [`KC`] (measured best on Zen 4 among 128-4096: long blocks keep each weight panel
    /// streaming); on Intel server cores with two 512-bit FMA ports, the weight panel is kept
    /// in L1 instead (`KC x NR` in 3/4 of L1d, as BLIS's skx kernels do; not measured here:
    /// `CompileOptions::tune` checks it on the machine). A few rows (`m <= 2 mr`): the input
    /// rows sit in L1 whatever K is, so each weight panel streams once, front to back.
    pub fn heuristic(m: usize, k: usize, nr: usize, mr: usize) -> Blocking {
        let caches = super::cache::Caches::get();
        let kc = if super::cache::two_fma512_ports() {
            (caches.l1d * 3 / 4 / (nr * 4)) / KB * KB
        } else {
            KC
        }
        .clamp(KB, KC);
        // The rows of a row block hold `min(K, KC)` values each.
        let row_k = kc.min(k.div_ceil(KB) * KB).max(KB);
        let mc = (caches.l1d * 3 / 2 / (row_k * 4)).clamp(mr, 16 * mr) / mr * mr;
        let nc = (2 * caches.l2 / (kc * 4)).clamp(4 * nr, 64 * nr);
        let kc = if m <= 2 * mr { k.max(1) } else { kc };
        Blocking {
            kc,
            mc,
            nc_panels: (nc / nr).max(1),
        }
    }

    /// The blocking with every field in range: KC a positive multiple of [`KB`] (at most
    /// 2^24, so rounding up cannot overflow), MC and the column block at least 1.
    pub fn valid(self) -> Blocking {
        Blocking {
            kc: self.kc.clamp(1, 1 << 24).div_ceil(KB) * KB,
            mc: self.mc.max(1),
            nc_panels: self.nc_panels.max(1),
        }
    }
}

/// Splits `mc` rows into tiles of at most `mr` rows: whole tiles of `mr` (the ones with the
/// register epilogue), the last two sharing what is left as evenly as they can (8 rows -> 4 +
/// 4, not 6 + 2; 49 -> 7 x 6 + 4 + 3), so no tile is left with too few FMA chains to hide
/// the latency. (Splitting all of them evenly, 49 -> 4 x 6 + 5 x 5, ran five of nine tiles
/// without the register epilogue.)
#[cfg_attr(sinter_inline, inline(always))]
fn tile_rows(mc: usize, mr: usize, i: usize) -> usize {
    let tiles = mc.div_ceil(mr);
    let whole = whole_tiles(mc, mr);
    if i < whole {
        return mr;
    }
    let (rest, parts) = (mc - whole * mr, tiles - whole);
    rest / parts + usize::from(i - whole < rest % parts)
}

/// How many of [`tile_rows`]'s tiles of `mc` rows are whole `mr`-row tiles: they come first.
#[cfg_attr(sinter_inline, inline(always))]
fn whole_tiles(mc: usize, mr: usize) -> usize {
    match mc % mr {
        0 => mc / mr,
        _ => mc.div_ceil(mr).saturating_sub(2),
    }
}

/// The driver. Instantiated once per tier inside a `#[target_feature]` function.
/// Loop nest: `jc` over NC column blocks, `pc` over KC, `ic` over MC, `jp` over NR panels,
/// `ir` over MR tiles.
///
/// # Safety
/// `g.check()` holds and `g.b.nr() == NV * V::LANES`; `V` and `R8` (8 lanes) are available; `MR <= 8`.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) unsafe fn driver<V: Simd, R8: Simd, const MR: usize, const NV: usize>(
    g: &mut GemmCall<'_>,
) {
    let nr = NV * V::LANES;
    let (m, k, n) = (g.m, g.b.k, g.b.n);
    let panels = n.div_ceil(nr);
    // A tuned blocking is for the plan's full batches; a few rows keep the streaming default.
    let (tile_ops, rest) = split_ops(g.ops);
    let blk = match g.b.blocking {
        Some(b) if m > 2 * MR => b,
        _ => Blocking::heuristic(m, k, nr, MR),
    };

    let (reg_ops, l1_ops) = split_register_ops(tile_ops);
    // A plain A is one segment: each row's K values from its start.
    let whole = [Segment { offset: 0, len: k }];
    let segs = match g.a.segs {
        Some(s) if !s.is_empty() => s,
        _ => &whole[..],
    };
    let (a, lda) = (g.a.data.as_ptr(), g.a.lda);
    let c = g.c;
    let b = g.b.data.as_ptr();
    // Tiles per column of a K pass: the row blocks' tiles.
    let row_tiles: usize = (0..m)
        .step_by(blk.mc.max(1))
        .map(|ic| blk.mc.min(m - ic).div_ceil(MR))
        .sum();
    let passes = k.div_ceil(blk.kc.max(1)).max(1);
    let mut jc = g.panels.start;
    while jc < g.panels.end {
        let jc_end = (jc + blk.nc_panels).min(g.panels.end);
        let last_jc = jc_end == panels;
        // What comes next, spread over this block's tiles: the next column block's panels
        // (contiguous), or after the last one what the caller reads next, up to L2's size.
        // No more than this block's arithmetic hides: a prefetch costs the bandwidth of a
        // read. One GEMM's worth of the next layer's weights behind a short GEMM
        // (mobilenet_v3_small's last 1x1 conv before its 2.4 MB classifier) only moved the
        // read into it, later than the hardware would have made it; and a one-row GEMM whose
        // weights sit in L2 (a recurrent step at batch 1) ran 1.25x slower with the next
        // block's prefetches than with none: they only compete with its own reads.
        let hidden = m * k * (jc_end - jc) * nr / PREFETCH_MACS_PER_FLOAT;
        let (next, len) = if jc_end < g.panels.end {
            let next_end = (jc_end + blk.nc_panels).min(g.panels.end);
            let next = b.wrapping_add(jc_end * k * nr);
            (next, (next_end - jc_end) * k * nr)
        } else {
            let l2 = super::cache::Caches::get().l2 / 4;
            (g.then.as_ptr(), g.then.len().min(l2))
        };
        let mut lines = len.min(hidden) / Ahead::LINE;
        let tiles = (passes * row_tiles * (jc_end - jc)).max(1);
        let per_tile = lines.div_ceil(tiles);
        let mut ahead = Ahead {
            next,
            lines: 0,
            per_block: 0,
        };
        let mut pc = 0;
        // The segment holding K value `pc`, and the K value it starts at.
        let (mut seg, mut seg_k) = (0, 0);
        loop {
            let kc = blk.kc.min(k - pc);
            let last = pc + kc == k;
            // A tile's share of the prefetches, spread over its blocks of KB (worked out
            // once a pass: a division per tile cost short-K layers 2%).
            let per_block = per_tile.div_ceil(kc.div_ceil(KB).max(1));
            while seg + 1 < segs.len() && seg_k + segs[seg].len <= pc {
                seg_k += segs[seg].len;
                seg += 1;
            }
            // The pass in one segment (every pass of a plain A): read it as one run. (An
            // empty pass reads nothing: its run starts at the row, whatever its segments.)
            let run = if kc == 0 {
                Some(0)
            } else {
                (pc + kc <= seg_k + segs[seg].len).then(|| segs[seg].offset + pc - seg_k)
            };
            // Where a tile whose first row is `row` reads this pass's A values.
            let pass_at = |row: usize| APass {
                row: a.wrapping_add(row * lda),
                lda,
                segs: segs.as_ptr(),
                seg,
                seg_k,
                pc,
                run,
            };
            let mut ic = 0;
            while ic < m {
                let mc = blk.mc.min(m - ic);
                let mut jp = jc;
                while jp < jc_end {
                    let cols = nr.min(n - jp * nr);
                    // SAFETY: in bounds by `g.check`: panel jp starts at jp*k*nr, block pc at pc*nr.
                    let bp = unsafe { b.add(jp * k * nr + pc * nr) };
                    // A block of one to three rows (fewer than a tile's): several panels at
                    // once.
                    let panels_at_once = match mc {
                        1 => ROW_PANELS,
                        _ if mc < MR.min(4) => FEW_ROW_PANELS,
                        _ => 0,
                    };
                    let fits = jp + panels_at_once <= jc_end && (jp + panels_at_once) * nr <= n;
                    if panels_at_once > 0 && fits {
                        let epi = last.then_some(TileEpilogue {
                            reg: RegOps::NONE,
                            l1: tile_ops,
                            row: g.row0 + ic,
                            col: jp * nr,
                            cols: panels_at_once * nr,
                        });
                        // SAFETY: as for a tile of `mc` rows below, for the whole panels from
                        // jp (all inside the call's columns and C's rows), k * nr apart.
                        unsafe {
                            let ap = pass_at(ic);
                            let bc = (bp, k * nr);
                            let cc = (c.add(ic * g.ldc + jp * nr), g.ldc);
                            let first = pc == 0;
                            let (tile, block) =
                                (per_tile * panels_at_once, per_block * panels_at_once);
                            ahead.take(&mut lines, tile, block);
                            let ahead = &mut ahead;
                            match mc {
                                1 => rows_panels::<V, 1, NV, ROW_PANELS>(
                                    kc, ap, bc, cc, first, epi, ahead,
                                ),
                                2 => rows_panels::<V, 2, NV, FEW_ROW_PANELS>(
                                    kc, ap, bc, cc, first, epi, ahead,
                                ),
                                _ => rows_panels::<V, 3, NV, FEW_ROW_PANELS>(
                                    kc, ap, bc, cc, first, epi, ahead,
                                ),
                            }
                        }
                        jp += panels_at_once;
                        continue;
                    }
                    // The epilogue of this panel's tile whose first row is `row`.
                    let epi_at = |row: usize| {
                        last.then_some(TileEpilogue {
                            reg: reg_ops,
                            l1: l1_ops,
                            row: g.row0 + row,
                            col: jp * nr,
                            cols,
                        })
                    };
                    let mut ir = 0;
                    let mut t = 0;
                    if cols == nr {
                        // A whole panel's whole tiles first, in a loop of their own with
                        // little state (in the loop below, choosing each tile's kind kept
                        // a third of a short-K layer's time in bookkeeping).
                        let whole = whole_tiles(mc, MR);
                        let mut epi = epi_at(ic);
                        // SAFETY: as below, for rows ic..ic + whole * MR, all in the block.
                        unsafe {
                            let mut ap = pass_at(ic);
                            let mut cp = c.add(ic * g.ldc + jp * nr);
                            // One pass of one block over a plain run: the lean tile
                            // (panels of two or more vectors, on the SIMD tiers).
                            let lean = NV > 1 && V::ONE_BLOCK_TILES && kc <= KB && pc == 0;
                            if let (Some(run), Some(e), true) = (run, &mut epi, lean) {
                                let mut a0 = ap.row.add(run);
                                for _ in 0..whole {
                                    ahead.take(&mut lines, per_tile, per_block);
                                    one_block_tile::<V, MR, NV>(
                                        kc,
                                        (a0, lda),
                                        bp,
                                        (cp, g.ldc),
                                        e,
                                        &mut ahead,
                                    );
                                    a0 = a0.wrapping_add(MR * lda);
                                    cp = cp.wrapping_add(MR * g.ldc);
                                    e.row += MR;
                                }
                            } else {
                                for _ in 0..whole {
                                    ahead.take(&mut lines, per_tile, per_block);
                                    tile::<V, MR, NV, true, true>(
                                        kc,
                                        ap,
                                        bp,
                                        cp,
                                        g.ldc,
                                        nr,
                                        pc == 0,
                                        epi,
                                        &mut ahead,
                                        nr,
                                    );
                                    ap.row = ap.row.wrapping_add(MR * lda);
                                    cp = cp.wrapping_add(MR * g.ldc);
                                    if let Some(e) = &mut epi {
                                        e.row += MR;
                                    }
                                }
                            }
                        }
                        ir = whole * MR;
                        t = whole;
                    }
                    while ir < mc {
                        let rows = tile_rows(mc, MR, t);
                        let row = ic + ir;
                        let epi = epi_at(row);
                        // SAFETY: rows row..row+rows exist in A and C; every segment's values
                        // are inside a row's extent, columns jp*nr..jp*nr+cols of C are in
                        // bounds, the segments add up to K and the operands cover the rows
                        // and columns (g.check).
                        unsafe {
                            let ap = pass_at(row);
                            let cp = c.add(row * g.ldc + jp * nr);
                            let first = pc == 0;
                            ahead.take(&mut lines, per_tile, per_block);
                            if rows == MR && cols == nr {
                                tile::<V, MR, NV, true, true>(
                                    kc, ap, bp, cp, g.ldc, nr, first, epi, &mut ahead, nr,
                                );
                            } else if rows == MR && NV > 1 && cols <= V::LANES {
                                // A last panel of one vector (a 40-column layer's last 8 on
                                // 32-wide panels) computes one vector per row, not NV.
                                tile::<V, MR, 1, true, false>(
                                    kc, ap, bp, cp, g.ldc, cols, first, epi, &mut ahead, nr,
                                );
                            } else if rows == MR {
                                tile::<V, MR, NV, true, false>(
                                    kc, ap, bp, cp, g.ldc, cols, first, epi, &mut ahead, nr,
                                );
                            } else {
                                // Fewer rows: the epilogue on the stored tile, not
                                // compiled into every row count (the same bits). The crate's
                                // release rebuild took 6 s less CPU (62-64 to 56-58 s);
                                // mnist-mlp at batch 8 (two 4-row tiles) ran 1.5% slower,
                                // resnet18, the MNIST convnet, mobilenet and ffn within noise.
                                let epi = epi.map(|e| TileEpilogue {
                                    reg: RegOps::NONE,
                                    l1: tile_ops,
                                    ..e
                                });
                                dispatch_rows!(
                                    rows,
                                    MR,
                                    tile::<V, NV, false, false>(
                                        kc, ap, bp, cp, g.ldc, cols, first, epi, &mut ahead, nr
                                    )
                                );
                            }
                        }
                        ir += rows;
                        t += 1;
                    }
                    jp += 1;
                }
                // Every column of these rows is final: earlier column blocks are done.
                if last && last_jc && !rest.is_empty() {
                    for r in ic..ic + mc {
                        // SAFETY: row r of C has n values (g.check); this call owns all
                        // columns when there are row-wise ops (g.check).
                        let row = unsafe { std::slice::from_raw_parts_mut(c.add(r * g.ldc), n) };
                        // SAFETY: the ISA is available (caller contract).
                        unsafe { V::row_stage(rest, g.row0 + r, row) };
                    }
                }
                ic += mc;
            }
            pc += kc;
            if pc >= k {
                break;
            }
        }
        jc = jc_end;
    }
}

/// `iters` rounds of 12 independent FMA chains: the machine's FMA peak, for benches.
///
/// # Safety
/// `V`'s instruction set is available.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) unsafe fn fma_loop<V: Simd>(iters: usize) -> f32 {
    // SAFETY: the caller's contract.
    let a = unsafe { V::splat(0.999_999) };
    let mut acc = [a.dup(0.0); 12];
    let b = a.dup(1e-3);
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = a.fma(*x, b);
        }
    }
    let mut out = [0.0f32; 16];
    let mut sum = 0.0;
    for x in acc {
        // SAFETY: `out` holds 16 >= LANES values.
        unsafe { x.store(out.as_mut_ptr()) };
        sum += out[0];
    }
    sum
}
#[cfg(test)]
mod tests {
    use super::tile_rows;
    use crate::kernels::{Isa, PackedB, Strided, dense_strided};

    #[test]
    #[should_panic(expected = "packed B")]
    fn driver_check_compares_the_packed_length() {
        let mut w = PackedB::pack(Isa::Generic, &[1.0; 64], 4, 16).expect("packs");
        w.truncate(16); // one K row of the panel instead of four
        let (a, mut c) = ([1.0f32; 4], [0.0f32; 16]);
        dense_strided(Isa::Generic, 1, Strided::new(&a, 4, &mut c, 16), &w, &[]);
    }

    #[test]
    fn tile_rows_are_whole_tiles_then_an_even_pair() {
        for mr in 1..=8 {
            for mc in 1usize..200 {
                let tiles = mc.div_ceil(mr);
                let rows: Vec<usize> = (0..tiles).map(|i| tile_rows(mc, mr, i)).collect();
                assert_eq!(rows.iter().sum::<usize>(), mc, "mc {mc} mr {mr}: {rows:?}");
                assert!(
                    rows.iter().all(|&r| r > 0 && r <= mr),
                    "{mc} {mr}: {rows:?}"
                );
                // Every tile but the last two is whole; those two differ by one at most.
                let short = rows.iter().filter(|&&r| r < mr).count();
                assert!(short <= 2 && rows[..tiles.saturating_sub(2)].iter().all(|&r| r == mr));
                if let [.., a, b] = rows[..] {
                    assert!(a.abs_diff(b) <= 1, "{mc} {mr}: {rows:?}");
                }
            }
        }
        assert_eq!(
            (0..9).map(|i| tile_rows(49, 6, i)).collect::<Vec<_>>(),
            [6, 6, 6, 6, 6, 6, 6, 4, 3]
        );
        assert_eq!(
            (0..2).map(|i| tile_rows(8, 6, i)).collect::<Vec<_>>(),
            [4, 4]
        );
    }
}

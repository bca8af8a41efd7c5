//! The GEMM's entry points: [`Gemm`] (one call, split by rows or column panels) and the
//! plain [`dense`] / [`dense_strided`] forms over compile-time packed weights.

use super::dispatch::with_tier;
use super::epilogue;
use super::gemm::GemmCall;
use super::{ARows, EpOp, Isa, PackedB, PackedBRef};
/// `C = ops(A · B)`: `A` is `m x K` row-major (row stride K), `C` is `m x N` (row stride N),
/// `B` packed for `isa`. Runs on the calling thread.
///
/// # Panics
/// If slice lengths disagree with the shapes, an epilogue operand is too short, `w` was
/// packed for another tier, or `isa` is not available on this CPU. Plans check all of this
/// when they are compiled.
pub fn dense(isa: Isa, m: usize, a: &[f32], w: &PackedB, c: &mut [f32], ops: &[EpOp<'_>]) {
    dense_strided(isa, m, Strided::new(a, w.k(), c, w.n()), w, ops);
}

/// `A` and `C` with row strides: row `r` of `A` starts at `a[r * lda]`, row `r` of `C` at
/// `c[r * ldc]`. `lda` may be smaller than K: rows then overlap, which is how a stride-1
/// convolution reads its windows straight from the (padded) input, an implicit im2col. `ldc`
/// larger than N writes into a wider buffer, e.g. this layer's slice of a concatenation.
pub struct Strided<'a, 'c> {
    a: &'a [f32],
    lda: usize,
    c: &'c mut [f32],
    ldc: usize,
}

impl<'a, 'c> Strided<'a, 'c> {
    /// Operands with their row strides.
    pub fn new(a: &'a [f32], lda: usize, c: &'c mut [f32], ldc: usize) -> Self {
        Strided { a, lda, c, ldc }
    }
}

/// [`dense`] with row strides (see [`Strided`]): `A` rows may overlap (`lda < K`), `C` rows
/// may be spaced wider than N. Same bits as [`dense`] on the same values.
///
/// # Panics
/// As [`dense`]; also if `lda == 0` with `m > 1`, or `ldc < N`.
pub fn dense_strided(isa: Isa, m: usize, s: Strided<'_, '_>, w: &PackedB, ops: &[EpOp<'_>]) {
    Gemm::new(isa, m, ARows::new(s.a, s.lda), w.view(), ops).run(s.c, s.ldc);
}

/// One GEMM, `C = ops(A · B)`, described but for C: `m` rows of A ([`ARows`]: strided or
/// K-segmented), B packed ([`PackedBRef`]: at compile time or into scratch at run time), the
/// epilogue ops with their operands. `Copy`: run it whole ([`run`](Self::run)), by row ranges
/// ([`rows`](Self::rows)) or by column panels ([`columns`](Self::columns)) on several threads;
/// every split gives the same bits, since each output's K-sum is one fixed chain whatever
/// covers it.
///
/// ```
/// use sinter::kernels::{ARows, EpOp, Gemm, Isa, PackedB, Segment};
/// let isa = Isa::Generic;
/// // Two rows whose K = 4 values come from two runs of 2, 3 apart: rows [0, 1, 3, 4] and
/// // [2, 3, 5, 6] of the input (row stride 2), plus a residual added elementwise.
/// let x: Vec<f32> = (0..7).map(|v| v as f32).collect();
/// let segs = [Segment { offset: 0, len: 2 }, Segment { offset: 3, len: 2 }];
/// let w = PackedB::pack(isa, &[1.0, 1.0, 1.0, 1.0], 4, 1)?;
/// let residual = [100.0, 200.0];
/// let ops = [EpOp::add_c(&residual, 1)];
/// let mut y = [0.0f32; 2];
/// Gemm::new(isa, 2, ARows::segmented(&x, 2, &segs), w.view(), &ops).run(&mut y, 1);
/// assert_eq!(y, [108.0, 216.0]);
/// # Ok::<(), sinter::kernels::PackError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Gemm<'a> {
    isa: Isa,
    m: usize,
    a: ARows<'a>,
    b: PackedBRef<'a>,
    ops: &'a [EpOp<'a>],
    row0: usize,
    then: &'a [f32],
}

impl<'a> Gemm<'a> {
    /// `C = ops(A · B)` over `m` rows on `isa`. Nothing is checked until it runs.
    pub fn new(isa: Isa, m: usize, a: ARows<'a>, b: PackedBRef<'a>, ops: &'a [EpOp<'a>]) -> Self {
        Gemm {
            isa,
            m,
            a,
            b,
            ops,
            row0: 0,
            then: &[],
        }
    }

    /// The same GEMM, told what the caller reads next (the next layer's packed weights): a
    /// hint, fetched into cache while the last column block computes. Changes no value.
    pub fn then(self, next: &'a [f32]) -> Self {
        Gemm { then: next, ..self }
    }

    /// Rows (M).
    pub fn m(&self) -> usize {
        self.m
    }
    /// B, packed.
    pub fn b(&self) -> PackedBRef<'a> {
        self.b
    }
    /// The epilogue.
    pub fn ops(&self) -> &'a [EpOp<'a>] {
        self.ops
    }
    /// Multiply-add flops (2 per multiply-add).
    pub fn flops(&self) -> usize {
        2 * self.m * self.b.k * self.b.n
    }

    /// The GEMM of rows `r` of this one: the rows of A from `r.start` on, and the same rows of
    /// the epilogue's matrix operands. Its C is the caller's rows `r` of this one's C.
    ///
    /// # Panics
    /// If `r` is not a range of `0..m`.
    pub fn rows(self, r: std::ops::Range<usize>) -> Self {
        assert!(
            r.start <= r.end && r.end <= self.m,
            "rows {r:?} of {}",
            self.m
        );
        Gemm {
            m: r.end - r.start,
            a: self.a.skip_rows(r.start),
            row0: self.row0.checked_add(r.start).expect("row overflow"),
            ..self
        }
    }

    /// The same GEMM reading its epilogue's matrix operands ([`EpOp::AddC`]) from row `row`
    /// on: row `r` adds operand row `row + r` (a convolution's sample `s` of `rows` rows
    /// reads from `s * rows`).
    pub fn operand_rows_from(self, row: usize) -> Self {
        Gemm { row0: row, ..self }
    }

    /// Runs on the calling thread, writing row `r` of C at `c[r * ldc..]`.
    ///
    /// # Panics
    /// If an operand is too short for the shapes (A, C, a per-column operand, a matrix
    /// operand's rows), K segments do not add up to K, `ldc < N`, `lda == 0` with `m > 1`,
    /// B was packed for another tier, or the tier is not available on this CPU.
    pub fn run(&self, c: &mut [f32], ldc: usize) {
        run(self.isa, &mut self.call(c, ldc));
    }

    /// All of B's column panels as one [`ColumnParts`], to be split over threads.
    ///
    /// # Panics
    /// As [`run`](Self::run); also if the epilogue has a row-wise op.
    pub fn columns(self, c: &'a mut [f32], ldc: usize) -> ColumnParts<'a> {
        assert!(
            epilogue::split_ops(self.ops).1.is_empty(),
            "row-wise epilogues cannot be split by columns"
        );
        let call = self.call(c, ldc);
        call.check();
        ColumnParts {
            isa: self.isa,
            call,
        }
    }

    /// The driver's call over every column panel; `check` validates it before any unsafe
    /// code runs.
    fn call(&self, c: &mut [f32], ldc: usize) -> GemmCall<'a> {
        GemmCall {
            m: self.m,
            a: self.a,
            b: self.b,
            c: c.as_mut_ptr(),
            c_len: c.len(),
            ldc,
            ops: self.ops,
            row0: self.row0,
            panels: 0..self.b.n.div_ceil(self.b.nr),
            then: self.then,
        }
    }
}

fn run(isa: Isa, g: &mut GemmCall<'_>) {
    g.check();
    with_tier!(isa, |t| t.gemm(g))
}

/// A Dense call over a range of its column panels, to be split and run on several threads.
/// Splitting over N never changes the bits (each output is still one FMA chain).
///
/// Sound by construction: [`split_at`](Self::split_at) and [`run`](Self::run) consume the
/// value, so every panel belongs to exactly one `ColumnParts` and is computed at most once;
/// two threads can never write (or, with K > KC, read back) the same columns. It is `Send`
/// (a part may move to another thread) but not `Sync` or `Clone`. Not for row-wise epilogues
/// (softmax), which need whole rows.
///
/// ```
/// use sinter::kernels::{ColumnParts, EpOp, Isa, PackedB, Strided};
/// let isa = Isa::Generic;
/// let (k, n) = (3, 40);
/// let w = PackedB::pack(isa, &vec![0.5; k * n], k, n).unwrap();
/// let (a, mut c) = (vec![1.0f32; 2 * k], vec![0.0f32; 2 * n]);
/// let parts = ColumnParts::new(isa, 2, Strided::new(&a, k, &mut c, n), &w, &[]);
/// let (left, right) = parts.split_at(1);
/// std::thread::scope(|s| {
///     s.spawn(move || left.run());
///     right.run();
/// });
/// assert!(c.iter().all(|&y| y == 1.5));
/// ```
///
/// Sharing one part between threads does not compile (it is not `Sync`, and `run` takes it by
/// value), so the same columns can never be written twice at once:
///
/// ```compile_fail,E0277
/// use sinter::kernels::{ColumnParts, Isa, PackedB, Strided};
/// let isa = Isa::Generic;
/// let w = PackedB::pack(isa, &[1.0; 16], 1, 16).unwrap();
/// let (a, mut c) = ([1.0f32], [0.0f32; 16]);
/// let part = ColumnParts::new(isa, 1, Strided::new(&a, 1, &mut c, 16), &w, &[]);
/// let part = &part;
/// std::thread::scope(|s| {
///     s.spawn(move || part.panels());
/// });
/// ```
#[doc(hidden)]
pub struct ColumnParts<'a> {
    isa: Isa,
    call: GemmCall<'a>,
}

// SAFETY: a `ColumnParts` writes only the columns of its own panels, which no other value
// covers (values are made only by `Gemm::columns`, which borrows `c` mutably for `'a`, and by
// `split_at`, which consumes its input and hands out disjoint halves); A, B and the ops are
// shared read-only (`EpOp` is `Sync`). It is deliberately not `Sync`: running needs ownership.
unsafe impl Send for ColumnParts<'_> {}

impl<'a> ColumnParts<'a> {
    /// `C = ops(A · B)` over all of B's column panels.
    ///
    /// # Panics
    /// As [`dense`]; also if `ops` has a row-wise activation.
    pub fn new(
        isa: Isa,
        m: usize,
        s: Strided<'a, 'a>,
        w: &'a PackedB,
        ops: &'a [EpOp<'a>],
    ) -> Self {
        Gemm::new(isa, m, ARows::new(s.a, s.lda), w.view(), ops).columns(s.c, s.ldc)
    }

    /// Column panels this part covers.
    pub fn panels(&self) -> usize {
        self.call.panels.len()
    }

    /// Splits into the first `at` panels (at most all of them) and the rest.
    pub fn split_at(self, at: usize) -> (Self, Self) {
        let (all, at) = (self.panels(), at.min(self.panels()));
        let mid = self.call.panels.start + at;
        let (isa, call) = (self.isa, self.call);
        // Each part fetches its share of what comes next.
        let then = call.then.split_at(call.then.len() / all.max(1) * at);
        let left = GemmCall {
            panels: call.panels.start..mid,
            then: then.0,
            ..call.clone()
        };
        let right = GemmCall {
            panels: mid..call.panels.end,
            then: then.1,
            ..call
        };
        (
            ColumnParts { isa, call: left },
            ColumnParts { isa, call: right },
        )
    }

    /// Splits into `ways` parts of nearly equal panel counts (fewer if there are fewer panels),
    /// handed out in column order.
    pub fn split_even(self, ways: usize) -> impl Iterator<Item = ColumnParts<'a>> + Send {
        let ways = ways.clamp(1, self.panels().max(1));
        let mut rest = Some(self);
        (0..ways).rev().map_while(move |left| {
            let part = rest.take()?;
            if left == 0 {
                return Some(part);
            }
            let at = part.panels() / (left + 1);
            let (first, more) = part.split_at(at);
            rest = Some(more);
            Some(first)
        })
    }

    /// Computes this part's columns.
    pub fn run(mut self) {
        if !self.call.panels.is_empty() {
            run(self.isa, &mut self.call);
        }
    }
}

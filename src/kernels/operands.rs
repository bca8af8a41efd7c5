//! How a GEMM finds its A rows and its matrix epilogue operands in memory. Addressing only:
//! no description here changes which values are multiplied or the order they are summed in.

/// One run of a row's K values: `len` values from `offset` after the row's first value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Segment {
    /// Where the run starts, from the row's start.
    pub offset: usize,
    /// Values in the run.
    pub len: usize,
}

/// The A operand of a GEMM: row `r` starts at `data[r * lda]`, and its K values are either the
/// first K from there ([`new`](Self::new)) or, K-segmented ([`segmented`](Self::segmented)),
/// the runs of its [`Segment`]s one after another. `lda` may be smaller than what a row reads:
/// rows then overlap, which is how a convolution reads its windows straight from the (padded)
/// input, an implicit im2col. A 2-D `kh x kw` window over channels-last rows of `w * C` values
/// is `kh` segments of `kw * C` values, `w * C` apart.
///
/// The segments only address: the GEMM over a segmented A gives the same bits as over the
/// same rows copied out (im2col), since every K value keeps its place in the fixed K-sum.
#[derive(Clone, Copy, Debug)]
pub struct ARows<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) lda: usize,
    pub(crate) segs: Option<&'a [Segment]>,
}

impl<'a> ARows<'a> {
    /// Rows `lda` apart, each row's K values contiguous from its start.
    pub fn new(data: &'a [f32], lda: usize) -> Self {
        ARows {
            data,
            lda,
            segs: None,
        }
    }

    /// Rows `lda` apart, each row's K values read from `segs` in order (their lengths add up
    /// to K; a GEMM checks this before it runs).
    pub fn segmented(data: &'a [f32], lda: usize, segs: &'a [Segment]) -> Self {
        ARows {
            data,
            lda,
            segs: Some(segs),
        }
    }

    /// Values one row reads from its start for K values (K, or the furthest segment end);
    /// `None` if the segments do not add up to `k` or a sum overflows.
    pub(crate) fn row_extent(&self, k: usize) -> Option<usize> {
        let Some(segs) = self.segs else {
            return Some(k);
        };
        let mut total = 0usize;
        let mut end = 0usize;
        for s in segs {
            total = total.checked_add(s.len)?;
            if s.len > 0 {
                end = end.max(s.offset.checked_add(s.len)?);
            }
        }
        (total == k).then_some(end)
    }

    /// The rows from row `r` on (empty data if `r` rows are not there: the GEMM's check then
    /// reports A too short).
    pub(crate) fn skip_rows(self, r: usize) -> Self {
        let data = r
            .checked_mul(self.lda)
            .and_then(|o| self.data.get(o..))
            .unwrap_or(&[]);
        ARows { data, ..self }
    }
}

/// A matrix operand of an epilogue ([`EpOp::AddC`](super::EpOp::AddC)): row `r` of the GEMM
/// reads `data[r * ld..]`, its N values. Rows may overlap or repeat (`ld` 0 adds one row to
/// every row).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatRef<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) ld: usize,
}

impl<'a> MatRef<'a> {
    /// Rows `ld` apart in `data`.
    pub fn new(data: &'a [f32], ld: usize) -> Self {
        MatRef { data, ld }
    }

    /// Whether rows `0..rows` of `cols` values are all in `data` (overflow-checked).
    pub(crate) fn holds(&self, rows: usize, cols: usize) -> bool {
        if rows == 0 || cols == 0 {
            return true;
        }
        (rows - 1)
            .checked_mul(self.ld)
            .and_then(|x| x.checked_add(cols))
            .is_some_and(|e| e <= self.data.len())
    }

    /// Columns `col..col + cols` of row `r`.
    ///
    /// # Panics
    /// If they are not in `data` (never, for rows a checked GEMM call reads).
    pub(crate) fn row(&self, r: usize, col: usize, cols: usize) -> &'a [f32] {
        let start = r * self.ld + col;
        &self.data[start..start + cols]
    }
}

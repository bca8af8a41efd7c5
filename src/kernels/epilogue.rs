//! The epilogue of a GEMM, as data: a list of [`EpOp`]s applied in order to `A · B`, each
//! carrying its operand (tract's `FusedKerSpec::PerColAdd(ptr)`): nothing is read from a side
//! channel on another object. Written once over [`Simd`]; three stages run it:
//!
//! - **registers**: per-column and matrix adds, scale and shift, cheap activations, on the
//!   accumulators of a tile of all MR rows before the store (operands read masked on a
//!   layer's last, partial panel);
//! - **L1**: from the first heavy activation on (and the whole tile list on a tile of fewer
//!   rows), on the tile just stored;
//! - **rows**: from the first row-wise op on (softmax, normalization), once a row is complete.
//!
//! An op gives the same bits in every stage (the register add is the scalar add, the register
//! FMA is [`fused`](super::fused::fused)), so where it runs never changes the result.

use super::activation::Activation;
use super::math::{self, RowNorm};
use super::operands::MatRef;
use super::pack::PackError;
use super::simd::Simd;
use std::borrow::Cow;

/// One epilogue step, with its operand. A call's ops are applied in the order given, every
/// order allowed. Per-column operands hold N values; a GEMM checks every operand before it
/// runs ([`EpOp::check`]).
///
/// Operands are borrowed ([`EpOp::bias`] and friends) or owned (`EpOp<'static>`, what a
/// compiled plan stores with its weights).
#[derive(Clone, Debug, PartialEq)]
pub enum EpOp<'a> {
    /// Add a per-column vector (the layer's bias).
    Bias(Cow<'a, [f32]>),
    /// Apply an activation (row-wise ones run as a row epilogue).
    Act(Activation),
    /// `x * scale + shift` per column, one rounding (an inference batch normalization that
    /// could not be folded).
    ScaleShift {
        /// Per-column multiplier.
        scale: Cow<'a, [f32]>,
        /// Per-column offset.
        shift: Cow<'a, [f32]>,
    },
    /// Layer (or RMS) normalization of each whole row, a row epilogue (gamma and beta, if
    /// present, N values each).
    Norm(Cow<'a, RowNorm>),
    /// Add an `M x N` matrix elementwise (a residual, a recurrent step's input projection, an
    /// attention mask), given at run time with its own row stride.
    AddC(MatRef<'a>),
}

impl<'a> EpOp<'a> {
    /// [`EpOp::Bias`] borrowing `bias`.
    pub fn bias(bias: &'a [f32]) -> Self {
        EpOp::Bias(Cow::Borrowed(bias))
    }
    /// [`EpOp::ScaleShift`] borrowing `scale` and `shift`.
    pub fn scale_shift(scale: &'a [f32], shift: &'a [f32]) -> Self {
        EpOp::ScaleShift {
            scale: Cow::Borrowed(scale),
            shift: Cow::Borrowed(shift),
        }
    }
    /// [`EpOp::Norm`] borrowing `norm`.
    pub fn norm(norm: &'a RowNorm) -> Self {
        EpOp::Norm(Cow::Borrowed(norm))
    }
    /// [`EpOp::AddC`] of the matrix whose row `r` is `data[r * ld..]`.
    pub fn add_c(data: &'a [f32], ld: usize) -> Self {
        EpOp::AddC(MatRef::new(data, ld))
    }

    /// Runs once a row is complete (softmax, log-softmax, normalization).
    pub fn is_row_wise(&self) -> bool {
        match self {
            EpOp::Act(a) => a.is_row_wise(),
            EpOp::Norm(_) => true,
            EpOp::Bias(_) | EpOp::ScaleShift { .. } | EpOp::AddC(_) => false,
        }
    }

    /// Runs on the accumulator registers (a few exact vector operations).
    pub fn is_cheap(&self) -> bool {
        match self {
            EpOp::Act(a) => a.is_cheap(),
            EpOp::Bias(_) | EpOp::ScaleShift { .. } | EpOp::AddC(_) => true,
            EpOp::Norm(_) => false,
        }
    }

    /// Checks the per-column operands against a GEMM of `n` columns: bias, scale, shift,
    /// gamma and beta hold `n` values each. ([`EpOp::AddC`]'s extent depends on the rows too;
    /// the GEMM checks it.)
    pub fn check(&self, n: usize) -> Result<(), PackError> {
        let exact = |what, v: &[f32]| {
            if v.len() != n {
                Err(PackError::Length {
                    what,
                    got: v.len(),
                    want: n,
                })
            } else {
                Ok(())
            }
        };
        match self {
            EpOp::Bias(b) => exact("bias", b),
            EpOp::ScaleShift { scale, shift } => {
                exact("scale", scale)?;
                exact("shift", shift)
            }
            EpOp::Norm(norm) => {
                for (what, v) in [("gamma", &norm.gamma), ("beta", &norm.beta)] {
                    if let Some(v) = v.as_ref().filter(|v| v.len() != n) {
                        return Err(PackError::Length {
                            what,
                            got: v.len(),
                            want: n,
                        });
                    }
                }
                Ok(())
            }
            EpOp::Act(_) | EpOp::AddC(_) => Ok(()),
        }
    }
}

/// Splits an epilogue into the part done on register tiles and the row-wise rest.
pub(crate) fn split_ops<'o, 'a>(ops: &'o [EpOp<'a>]) -> (&'o [EpOp<'a>], &'o [EpOp<'a>]) {
    let at = ops
        .iter()
        .position(|op| op.is_row_wise())
        .unwrap_or(ops.len());
    ops.split_at(at)
}

/// The register stage of an epilogue: adds, scale and shift, cheap activations only. Made only
/// by [`split_register_ops`], which cuts the list before the first op that is not cheap.
#[derive(Clone, Copy)]
pub(crate) struct RegOps<'e>(&'e [EpOp<'e>]);

impl RegOps<'_> {
    /// No register ops (a tile of fewer than MR rows runs its whole epilogue in L1).
    pub(crate) const NONE: RegOps<'static> = RegOps(&[]);
}

/// Splits the tile part of an epilogue into what runs on the registers (adds and cheap
/// activations) and what runs on the stored tile in L1 (from the first activation that needs
/// exp, log or division on).
pub(crate) fn split_register_ops<'e>(ops: &'e [EpOp<'e>]) -> (RegOps<'e>, &'e [EpOp<'e>]) {
    let at = ops
        .iter()
        .position(|op| !op.is_cheap())
        .unwrap_or(ops.len());
    let (reg, l1) = ops.split_at(at);
    (RegOps(reg), l1)
}

/// The epilogue of one tile and where the tile is: its operands are read at these rows and
/// columns.
#[derive(Clone, Copy)]
pub(crate) struct TileEpilogue<'e> {
    /// Ops on the accumulators (empty for a tile of fewer than MR rows).
    pub reg: RegOps<'e>,
    /// Ops on the stored tile.
    pub l1: &'e [EpOp<'e>],
    /// The tile's first row, in the rows of the matrix operands.
    pub row: usize,
    /// The tile's first column (its panel's).
    pub col: usize,
    /// Real columns: NR, fewer only on a layer's last panel (its operands are read only
    /// there: masked loads).
    pub cols: usize,
}

/// The register ops on the accumulators of a full `R x NR` tile (`NR = NV * LANES`), in order;
/// then every NaN made canonical (which an activation last has done).
///
/// `WHOLE`: the tile has all NR columns (`e.cols == NR`).
///
/// # Safety
/// `e.col + e.cols <= N`, `e.cols <= NR` (`==` if `WHOLE`), and the ops passed `GemmCall::check` for a call
/// whose rows include `e.row..e.row + R`: every operand value read here exists.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) unsafe fn register_epilogue<
    V: Simd,
    const R: usize,
    const NV: usize,
    const WHOLE: bool,
>(
    acc: &mut [[V; NV]; R],
    e: &TileEpilogue<'_>,
) {
    let lanes = V::LANES;
    // The values of vector `v` that are the layer's: all of them (`WHOLE`: a constant) but
    // on its last panel.
    let live = |v: usize| match WHOLE {
        true => lanes,
        false => e.cols.saturating_sub(v * lanes).min(lanes),
    };
    // Vector `v` of an operand row at `p` (the tile's first column), its columns past the
    // layer's end not read (left zero; those lanes are never stored). Every `p` below holds
    // the tile's `e.cols` values.
    let load = |p: *const f32, v: usize| {
        // SAFETY: `live(v)` values from `v * lanes` are among those `e.cols`; the ISA is
        // available (caller contract).
        unsafe {
            match live(v) {
                n if n == lanes => V::load(p.add(v * lanes)),
                0 => V::splat(0.0),
                n => V::load_part(p.add(v * lanes), n),
            }
        }
    };
    for op in e.reg.0 {
        match op {
            EpOp::Bias(b) => {
                // SAFETY: `b` holds N values (check), `e.cols` of them from `col`.
                let bv: [V; NV] =
                    std::array::from_fn(|v| load(unsafe { b.as_ptr().add(e.col) }, v));
                for row in acc.iter_mut() {
                    for (x, bv) in row.iter_mut().zip(bv) {
                        *x = x.add(bv);
                    }
                }
            }
            EpOp::ScaleShift { scale, shift } => {
                // SAFETY: as for the bias.
                let (sp, tp) = unsafe { (scale.as_ptr().add(e.col), shift.as_ptr().add(e.col)) };
                let (sv, tv): ([V; NV], [V; NV]) = (
                    std::array::from_fn(|v| load(sp, v)),
                    std::array::from_fn(|v| load(tp, v)),
                );
                for row in acc.iter_mut() {
                    for ((x, s), t) in row.iter_mut().zip(sv).zip(tv) {
                        *x = x.fma(s, t);
                    }
                }
            }
            EpOp::AddC(m) => {
                for (r, row) in acc.iter_mut().enumerate() {
                    // SAFETY: row `e.row + r` is one of the call's rows, whose N values the
                    // operand holds (check), `e.cols` of them from `col`.
                    let p = unsafe { m.data.as_ptr().add((e.row + r) * m.ld + e.col) };
                    for (v, x) in row.iter_mut().enumerate() {
                        *x = x.add(load(p, v));
                    }
                }
            }
            EpOp::Norm(_) => unreachable!("row-wise ops never run on the registers"),
            // `RegOps` holds only cheap activations.
            &EpOp::Act(act) => math::apply_cheap_tile(act, acc),
        }
    }
    // An activation's results are canonical already (`apply_cheap`).
    if !matches!(e.reg.0.last(), Some(EpOp::Act(_))) {
        canonical_tile(acc);
    }
}

/// Every NaN of the accumulators made canonical (the end of every register epilogue, and all
/// of a partial tile's).
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) fn canonical_tile<V: Simd, const R: usize, const NV: usize>(acc: &mut [[V; NV]; R]) {
    for row in acc.iter_mut() {
        for x in row.iter_mut() {
            *x = math::canonical_nan(*x, *x);
        }
    }
}

/// The L1 ops on a stored tile of `rows` rows, `nr` values `ldc` apart from `c`: per-column
/// ops on its real columns, activations on whole rows of the tile.
///
/// # Safety
/// `V`'s instruction set is available; `c` is readable and writable at `r * ldc + j` for
/// `r < rows`, `j < nr`, and nothing else references those values; `e.cols <= nr`; the ops
/// passed `GemmCall::check` for a call whose rows include `e.row..e.row + rows` and whose
/// columns include `e.col..e.col + e.cols`.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) unsafe fn l1_epilogue<V: Simd>(
    c: *mut f32,
    ldc: usize,
    rows: usize,
    nr: usize,
    e: &TileEpilogue<'_>,
) {
    let row = |r: usize| {
        // SAFETY: row r of the tile holds `nr >= cols` values (caller contract) and nothing
        // else references them during this call.
        unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), e.cols) }
    };
    let cols = e.col..e.col + e.cols;
    for op in e.l1 {
        match op {
            // Plain loops: a closure would not inherit the caller's instruction set.
            EpOp::Bias(b) => {
                for r in 0..rows {
                    // SAFETY: the ISA is available (caller contract).
                    unsafe { add_bias::<V>(row(r), &b[cols.clone()]) };
                }
            }
            EpOp::ScaleShift { scale, shift } => {
                let (s, t) = (&scale[cols.clone()], &shift[cols.clone()]);
                for r in 0..rows {
                    // SAFETY: as above.
                    unsafe { scale_shift::<V>(row(r), s, t) };
                }
            }
            EpOp::AddC(m) => {
                for r in 0..rows {
                    // SAFETY: as above.
                    unsafe { add_bias::<V>(row(r), m.row(e.row + r, e.col, e.cols)) };
                }
            }
            // SAFETY: the ISA is available and C holds `rows` rows of `nr` values (caller
            // contract); one call per tile.
            EpOp::Act(act) => unsafe { V::act_rows(*act, c, ldc, rows, nr) },
            EpOp::Norm(_) => unreachable!("row-wise ops run in the row stage"),
        }
    }
}

/// Runs the row-wise part of an epilogue (from the first row-wise op on) over one whole row,
/// row `r` of the call's matrix operands. `R8` is an 8-lane vector.
///
/// # Safety
/// `V`'s and `R8`'s instruction sets are available.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) unsafe fn row_ops<V: Simd, R8: Simd>(ops: &[EpOp<'_>], r: usize, row: &mut [f32]) {
    let n = row.len();
    for op in ops {
        match op {
            // SAFETY: the caller's contract.
            EpOp::Act(Activation::Softmax) => unsafe { math::row_softmax::<R8>(row, false) },
            // SAFETY: the caller's contract.
            EpOp::Act(Activation::LogSoftmax) => unsafe { math::row_softmax::<R8>(row, true) },
            // SAFETY: ISA availability is the Simd type's invariant.
            EpOp::Act(act) => unsafe { V::act_slice(*act, row) },
            // SAFETY: the caller's contract.
            EpOp::Bias(b) => unsafe { add_bias::<V>(row, b) },
            // SAFETY: the caller's contract.
            EpOp::ScaleShift { scale, shift } => unsafe { scale_shift::<V>(row, scale, shift) },
            // SAFETY: the caller's contract.
            EpOp::AddC(m) => unsafe { add_bias::<V>(row, m.row(r, 0, n)) },
            EpOp::Norm(norm) => {
                assert!(
                    norm.gamma.as_ref().is_none_or(|g| g.len() == n)
                        && norm.beta.as_ref().is_none_or(|b| b.len() == n),
                    "norm parameters for rows of {n}"
                );
                // SAFETY: ISA availability is the Simd type's invariant; gamma and beta are
                // `n` long (asserted).
                unsafe { V::norm_row(norm, row) }
            }
        }
    }
}

/// `row += v` elementwise (a bias or a row of a matrix operand), NaN canonical: the same bits
/// as the register epilogue's vector add, on `V`'s lanes.
///
/// # Safety
/// `V`'s instruction set is available.
#[cfg_attr(sinter_inline, inline(always))]
unsafe fn add_bias<V: Simd>(row: &mut [f32], v: &[f32]) {
    // SAFETY: the caller's contract.
    unsafe { lanes::<V>(row, v, None) }
}

/// `row = row * scale + shift` with one rounding, NaN canonical: the same bits as the register
/// epilogue's FMA, on `V`'s lanes.
///
/// # Safety
/// `V`'s instruction set is available.
#[cfg_attr(sinter_inline, inline(always))]
unsafe fn scale_shift<V: Simd>(row: &mut [f32], scale: &[f32], shift: &[f32]) {
    // SAFETY: the caller's contract.
    unsafe { lanes::<V>(row, shift, Some(scale)) }
}

/// `row = row * scale + v` (one rounding) or `row + v`, over the first `min` length of them,
/// a vector at a time (the last one masked), NaN canonical.
///
/// # Safety
/// `V`'s instruction set is available.
#[cfg_attr(sinter_inline, inline(always))]
unsafe fn lanes<V: Simd>(row: &mut [f32], v: &[f32], scale: Option<&[f32]>) {
    let n = row
        .len()
        .min(v.len())
        .min(scale.map_or(usize::MAX, <[f32]>::len));
    let w = V::LANES;
    let mut j = 0;
    while j < n {
        let live = (n - j).min(w);
        // SAFETY: `live` values from `j` are inside `row`, `v` and `scale` (`n` is the
        // shortest); the ISA is the caller's contract.
        unsafe {
            let (p, q) = (row.as_mut_ptr().add(j), v.as_ptr().add(j));
            let (x, b) = match live == w {
                true => (V::load(p), V::load(q)),
                false => (V::load_part(p, live), V::load_part(q, live)),
            };
            let y = match scale {
                None => x.add(b),
                Some(s) => {
                    let s = s.as_ptr().add(j);
                    let s = if live == w {
                        V::load(s)
                    } else {
                        V::load_part(s, live)
                    };
                    x.fma(s, b)
                }
            };
            let y = math::canonical_nan(y, y);
            match live == w {
                true => y.store(p),
                false => y.store_part(p, live),
            }
        }
        j += w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::portable::Portable;

    #[test]
    fn register_ops_are_exactly_the_cheap_activations() {
        let bias = [0.0f32; 4];
        for act in Activation::ALL {
            // SAFETY: portable lanes need no CPU feature.
            let x = unsafe { Portable::splat(0.5) };
            assert_eq!(math::apply_cheap(act, x).is_some(), act.is_cheap(), "{act}");
            let ops = [
                EpOp::bias(&bias),
                EpOp::Act(act),
                EpOp::Act(Activation::RELU),
            ];
            let (reg, l1) = split_register_ops(&ops);
            let cheap = |op: &EpOp<'_>| match op {
                EpOp::Bias(_) | EpOp::ScaleShift { .. } | EpOp::AddC(_) => true,
                EpOp::Act(a) => a.is_cheap(),
                EpOp::Norm(_) => false,
            };
            assert!(reg.0.iter().all(cheap), "{act}");
            assert_eq!(reg.0.len() + l1.len(), 3);
        }
    }
}

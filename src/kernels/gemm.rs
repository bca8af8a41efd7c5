//! The blocked GEMM driver, written once over [`Simd`]: `C = epilogue(A · B)` with B prepacked.
//!
//! Loop nest (BLIS order): `jc` over NC column blocks, `pc` over KC blocks of K, `ic` over MC
//! blocks of rows, `jp` over NR-wide packed panels, `ir` over MR-row tiles. Each output element's
//! K-sum has one order, fixed by [`KB`] alone: FMA chains over blocks of KB values, each from
//! zero, added to the running sum in k order (kept in C between blocks), so tile shape, KC, MC,
//! NC and the loop order never change the bits. The epilogue runs on the accumulators of the
//! last block, before the store; row-wise ops run once a row block's last panel is stored.

use super::activation::Activation;
use super::math;
use super::math::RowNorm;
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

/// One epilogue step. A call's ops are applied in the order given, every order allowed: cheap
/// ones on the registers, the rest on the stored tile while it is in L1, row-wise activations
/// (and everything after them) once a row is complete.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EpOp {
    /// Add the layer's bias, per column.
    Bias,
    /// Apply an activation (row-wise ones run as a row epilogue).
    Act(Activation),
    /// `x * scale + shift` per column, one rounding (an inference batch normalization that
    /// could not be folded): the constants set by [`PackedB::set_scale_shift`].
    ScaleShift,
    /// Layer (or RMS) normalization of each whole row, a row epilogue: the parameters set by
    /// [`PackedB::set_row_norm`].
    Norm,
}

impl EpOp {
    /// Runs once a row is complete (softmax, log-softmax, normalization).
    pub fn is_row_wise(self) -> bool {
        match self {
            EpOp::Act(a) => a.is_row_wise(),
            EpOp::Norm => true,
            EpOp::Bias | EpOp::ScaleShift => false,
        }
    }
    /// Runs on the accumulator registers (a few exact vector operations).
    fn is_cheap(self) -> bool {
        match self {
            EpOp::Act(a) => a.is_cheap(),
            EpOp::Bias | EpOp::ScaleShift => true,
            EpOp::Norm => false,
        }
    }
}

/// The per-column and per-row constants of a GEMM's epilogue, by reference: what a row stage
/// reads (each `n` values, or empty when the epilogue has no such op).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RowConsts<'a> {
    pub bias: &'a [f32],
    pub scale: &'a [f32],
    pub shift: &'a [f32],
    pub norm: Option<&'a RowNorm>,
}

/// A Dense layer's `K x N` kernel packed into NR-wide column panels (`k`-major inside a panel,
/// last panel zero-padded), plus the bias padded to whole panels.
#[derive(Clone, Debug)]
pub struct PackedB {
    k: usize,
    n: usize,
    nr: usize,
    data: Vec<f32>,
    bias: Vec<f32>,
    /// [`EpOp::ScaleShift`]'s constants, padded to whole panels like the bias (empty: none).
    scale: Vec<f32>,
    shift: Vec<f32>,
    /// [`EpOp::Norm`]'s parameters.
    norm: Option<RowNorm>,
    /// Blocking chosen for these weights (tuned), else the machine's default per call.
    blocking: Option<Blocking>,
}

/// Why a kernel could not be packed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// The kernel or bias does not have the values its shape says.
    #[error("{what} has {got} values, expected {want}")]
    Length {
        /// `"kernel"` or `"bias"`.
        what: &'static str,
        /// Values given.
        got: usize,
        /// Values the shape implies.
        want: usize,
    },
    /// The packed size does not fit in memory (`K x N` padded to whole panels).
    #[error("a {k} x {n} kernel does not fit in memory when packed")]
    TooLarge {
        /// Rows.
        k: usize,
        /// Columns.
        n: usize,
    },
}

impl PackedB {
    /// Packs a row-major `K x N` kernel (`kernel[k * n + j]`) for `isa`'s microkernel, in the
    /// panel width that tier uses for `n` columns ([`Isa::nr_for`](super::Isa::nr_for)).
    /// An error if `kernel` is not `K x N` values, `bias` not `N`, or the packing would not fit
    /// in memory (every size is computed with overflow checks).
    pub fn pack(
        isa: super::Isa,
        kernel: &[f32],
        bias: Option<&[f32]>,
        k: usize,
        n: usize,
    ) -> Result<Self, PackError> {
        Self::pack_nr(isa, kernel, bias, k, n, isa.nr_for(n))
    }

    /// [`pack`](Self::pack) in panels `nr` wide: one of `isa`'s tile widths
    /// ([`Isa::tiles`](super::Isa::tiles)), else the default width for `n`.
    pub fn pack_nr(
        isa: super::Isa,
        kernel: &[f32],
        bias: Option<&[f32]>,
        k: usize,
        n: usize,
        nr: usize,
    ) -> Result<Self, PackError> {
        let nr = if isa.tiles().iter().any(|t| t.nr == nr) {
            nr
        } else {
            isa.nr_for(n)
        };
        let too_large = PackError::TooLarge { k, n };
        let want = k.checked_mul(n).ok_or(too_large.clone())?;
        if kernel.len() != want {
            return Err(PackError::Length {
                what: "kernel",
                got: kernel.len(),
                want,
            });
        }
        if let Some(b) = bias.filter(|b| b.len() != n) {
            return Err(PackError::Length {
                what: "bias",
                got: b.len(),
                want: n,
            });
        }
        let panels = n.div_ceil(nr);
        let panel_len = k.checked_mul(nr).ok_or(too_large.clone())?;
        let len = panels
            .checked_mul(panel_len)
            .filter(|l| l.checked_mul(4).is_some())
            .ok_or(too_large.clone())?;
        let zeros = |len: usize| {
            let mut v = Vec::new();
            v.try_reserve_exact(len).map(|()| {
                v.resize(len, 0.0f32);
                v
            })
        };
        let mut data = zeros(len).map_err(|_| too_large.clone())?;
        if panel_len > 0 {
            for (p, panel) in data.chunks_exact_mut(panel_len).enumerate() {
                let j0 = p * nr;
                let w = nr.min(n - j0);
                for (kk, dst) in panel.chunks_exact_mut(nr).enumerate() {
                    dst[..w].copy_from_slice(&kernel[kk * n + j0..kk * n + j0 + w]);
                }
            }
        }
        // panels * nr <= n + nr: cannot overflow once `len` did not (or k == 0, checked here).
        let mut padded =
            zeros(panels.checked_mul(nr).ok_or(too_large.clone())?).map_err(|_| too_large)?;
        if let Some(b) = bias {
            padded[..n].copy_from_slice(b);
        }
        Ok(PackedB {
            k,
            n,
            nr,
            data,
            bias: padded,
            scale: Vec::new(),
            shift: Vec::new(),
            norm: None,
            blocking: None,
        })
    }

    /// Sets the per-column `scale` and `shift` of [`EpOp::ScaleShift`] (`n` values each).
    pub fn set_scale_shift(&mut self, scale: &[f32], shift: &[f32]) -> Result<(), PackError> {
        for (what, v) in [("scale", scale), ("shift", shift)] {
            if v.len() != self.n {
                return Err(PackError::Length {
                    what,
                    got: v.len(),
                    want: self.n,
                });
            }
        }
        let padded = |v: &[f32]| {
            let mut p = vec![0.0; self.bias.len()];
            p[..self.n].copy_from_slice(v);
            p
        };
        self.scale = padded(scale);
        self.shift = padded(shift);
        Ok(())
    }

    /// Sets the row normalization of [`EpOp::Norm`] (gamma and beta `n` values, if present).
    pub fn set_row_norm(&mut self, norm: RowNorm) -> Result<(), PackError> {
        for (what, v) in [("gamma", &norm.gamma), ("beta", &norm.beta)] {
            if let Some(v) = v.as_ref().filter(|v| v.len() != self.n) {
                return Err(PackError::Length {
                    what,
                    got: v.len(),
                    want: self.n,
                });
            }
        }
        self.norm = Some(norm);
        Ok(())
    }

    /// The same epilogue constants as `other` (for a repacking of one layer).
    pub(crate) fn copy_consts(&mut self, other: &PackedB) {
        let pad = |v: &[f32], len: usize| {
            let mut p = v.to_vec();
            p.resize(if v.is_empty() { 0 } else { len }, 0.0);
            p
        };
        self.scale = pad(
            &other.scale[..other.scale.len().min(self.n)],
            self.bias.len(),
        );
        self.shift = pad(
            &other.shift[..other.shift.len().min(self.n)],
            self.bias.len(),
        );
        self.norm = other.norm.clone();
    }
    /// Rows of the unpacked kernel (the layer's input width).
    pub fn k(&self) -> usize {
        self.k
    }
    /// Columns (the layer's units).
    pub fn n(&self) -> usize {
        self.n
    }
    /// Panel width this was packed for.
    pub fn nr(&self) -> usize {
        self.nr
    }
    /// The blocking calls on these weights use for more than a few rows (`None`: the
    /// machine's default, [`Blocking::heuristic`]).
    pub fn blocking(&self) -> Option<Blocking> {
        self.blocking
    }
    /// Sets that blocking (made [`valid`](Blocking::valid)). The bits never depend on it.
    pub fn set_blocking(&mut self, b: Option<Blocking>) {
        self.blocking = b.map(Blocking::valid);
    }
    /// Bytes held by the packed weights and bias.
    pub fn bytes(&self) -> usize {
        (self.data.len() + self.bias.len() + self.scale.len() + self.shift.len()) * 4
    }

    /// The row constants for rows of all `n` columns.
    fn row_consts(&self) -> RowConsts<'_> {
        let n = self.n;
        RowConsts {
            bias: &self.bias[..n],
            scale: self.scale.get(..n).unwrap_or(&[]),
            shift: self.shift.get(..n).unwrap_or(&[]),
            norm: self.norm.as_ref(),
        }
    }
}

/// One GEMM call: `C[m x n] = ops(A[m x k] · B)` over the column panels `panels`, row strides
/// `lda`, `ldc`. `C` is a raw pointer so that column parts can run on several threads; each
/// call writes only its own panels' columns.
pub(crate) struct GemmCall<'a> {
    pub m: usize,
    pub a: &'a [f32],
    pub lda: usize,
    pub b: &'a PackedB,
    pub c: *mut f32,
    pub c_len: usize,
    pub ldc: usize,
    pub ops: &'a [EpOp],
    pub panels: std::ops::Range<usize>,
}

impl GemmCall<'_> {
    /// Checks every extent the unsafe driver relies on.
    pub(crate) fn check(&self) {
        let (m, k, n) = (self.m, self.b.k, self.b.n);
        assert!(self.ldc >= n && (self.lda > 0 || m <= 1), "strides");
        if m > 0 {
            // Checked: a wrapped product would pass the length test and let the driver read
            // out of bounds.
            let end = |ld: usize, w: usize| (m - 1).checked_mul(ld).and_then(|x| x.checked_add(w));
            assert!(
                end(self.lda, k).is_some_and(|e| self.a.len() >= e),
                "A too short"
            );
            assert!(
                end(self.ldc, n).is_some_and(|e| self.c_len >= e),
                "C too short"
            );
        }
        let all = n.div_ceil(self.b.nr);
        // The packing holds every panel the driver indexes (`PackedB::pack` built it so; this
        // keeps the driver's pointer arithmetic honest whatever changes there).
        let packed = all.checked_mul(k).and_then(|x| x.checked_mul(self.b.nr));
        assert!(
            packed == Some(self.b.data.len()) && all * self.b.nr == self.b.bias.len(),
            "packed B"
        );
        assert!(
            self.panels.start <= self.panels.end && self.panels.end <= all,
            "panels"
        );
        let (_, rest) = split_ops(self.ops);
        assert!(
            rest.is_empty() || self.panels == (0..all),
            "row-wise epilogues need whole rows"
        );
        // The constants an op reads exist (padded to whole panels).
        if self.ops.contains(&EpOp::ScaleShift) {
            assert!(
                self.b.scale.len() == self.b.bias.len() && self.b.shift.len() == self.b.bias.len(),
                "ScaleShift without scale and shift"
            );
        }
        if self.ops.contains(&EpOp::Norm) {
            assert!(self.b.norm.is_some(), "Norm without parameters");
        }
    }
}

/// The epilogue of one tile: register ops, the panel's constants, then the L1 ops.
#[derive(Clone, Copy)]
struct TileEpilogue<'e> {
    reg: RegOps<'e>,
    c: PanelConsts,
    l1: &'e [EpOp],
}

/// Per-column constants of one panel (NR values each, valid where an op reads them).
#[derive(Clone, Copy)]
struct PanelConsts {
    bias: *const f32,
    scale: *const f32,
    shift: *const f32,
}

/// The register stage of an epilogue: bias and cheap activations only. Made only by
/// [`split_register_ops`], which cuts the list before the first activation that is not cheap.
#[derive(Clone, Copy)]
pub(crate) struct RegOps<'e>(&'e [EpOp]);

/// A full `R x NR` tile (`NR = NV * LANES`) over `kc` values of K: the K-sum in blocks of
/// [`KB`], each an FMA chain from zero added to the running sum in C (`first`: this call starts
/// the sum). On the call that ends K (`epilogue` given), the last block's total stays in the
/// registers: register ops, NaN made canonical, store, then the L1 ops on the stored rows.
///
/// # Safety
/// `a` readable at `r * lda + kk` for `r < R`, `kk < kc`; `b` readable for `kc * NR` values;
/// `c` readable and writable at `r * ldc + j` for `r < R`, `j < NR`; the bias (when an
/// epilogue is given) readable for NR values; `V`'s instruction set available.
#[cfg_attr(sinter_inline, inline(always))]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<V: Simd, const R: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    mut first: bool,
    epilogue: Option<TileEpilogue<'_>>,
) {
    let lanes = V::LANES;
    let nr = NV * lanes;
    let mut k0 = 0;
    loop {
        let kn = KB.min(kc - k0);
        // SAFETY: the ISA is available (caller contract).
        let mut acc = [[unsafe { V::splat(0.0) }; NV]; R];
        for kk in k0..k0 + kn {
            // SAFETY: `b` holds kc rows of NR; `a` rows hold kc values (caller contract).
            unsafe {
                let bp = b.add(kk * nr);
                let bv: [V; NV] = std::array::from_fn(|v| V::load(bp.add(v * lanes)));
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = V::splat(*a.add(r * lda + kk));
                    for (x, bv) in row.iter_mut().zip(bv) {
                        *x = av.fma(bv, *x);
                    }
                }
            }
        }
        if !first {
            for (r, row) in acc.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    // SAFETY: row r of C holds NR values (caller contract).
                    *x = unsafe { V::load(c.add(r * ldc + v * lanes)) }.add(*x);
                }
            }
        }
        k0 += kn;
        let done = k0 >= kc;
        if done && let Some(e) = epilogue {
            register_epilogue::<V, R, NV>(&mut acc, e.reg, e.c);
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                // SAFETY: as for the load above.
                unsafe { x.store(c.add(r * ldc + v * lanes)) };
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
    if let Some(e) = epilogue
        && !e.l1.is_empty()
    {
        let row = |r: usize| {
            // SAFETY: row r of C holds NR values (caller contract) and nothing else
            // references them during this call.
            unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), nr) }
        };
        for op in e.l1 {
            match *op {
                EpOp::Bias => {
                    // SAFETY: the bias panel holds NR values (caller contract).
                    let bias = unsafe { std::slice::from_raw_parts(e.c.bias, nr) };
                    (0..R).for_each(|r| add_bias(row(r), bias));
                }
                EpOp::ScaleShift => {
                    // SAFETY: `GemmCall::check` made sure the panel's scale and shift exist.
                    let (s, t) = unsafe {
                        (
                            std::slice::from_raw_parts(e.c.scale, nr),
                            std::slice::from_raw_parts(e.c.shift, nr),
                        )
                    };
                    (0..R).for_each(|r| scale_shift(row(r), s, t));
                }
                // SAFETY: the ISA is available and C holds R rows of NR values (caller
                // contract); one call per tile.
                EpOp::Act(act) => unsafe { V::act_rows(act, c, ldc, R, nr) },
                EpOp::Norm => unreachable!("row-wise ops run in the row stage"),
            }
        }
    }
}

/// Bias and cheap activations on the accumulators, in order; then every NaN made canonical.
#[cfg_attr(sinter_inline, inline(always))]
fn register_epilogue<V: Simd, const R: usize, const NV: usize>(
    acc: &mut [[V; NV]; R],
    ops: RegOps<'_>,
    c: PanelConsts,
) {
    for op in ops.0 {
        match *op {
            EpOp::Bias => {
                // SAFETY: the bias panel holds NR values (caller contract of `tile`).
                let bv: [V; NV] =
                    std::array::from_fn(|v| unsafe { V::load(c.bias.add(v * V::LANES)) });
                for row in acc.iter_mut() {
                    for (x, bv) in row.iter_mut().zip(bv) {
                        *x = x.add(bv);
                    }
                }
            }
            EpOp::ScaleShift => {
                // SAFETY: `GemmCall::check` made sure the panel's NR scales and shifts exist.
                let (sv, tv): ([V; NV], [V; NV]) = unsafe {
                    (
                        std::array::from_fn(|v| V::load(c.scale.add(v * V::LANES))),
                        std::array::from_fn(|v| V::load(c.shift.add(v * V::LANES))),
                    )
                };
                for row in acc.iter_mut() {
                    for ((x, s), t) in row.iter_mut().zip(sv).zip(tv) {
                        *x = x.fma(s, t);
                    }
                }
            }
            EpOp::Norm => unreachable!("row-wise ops never run on the registers"),
            EpOp::Act(act) => {
                for row in acc.iter_mut() {
                    for x in row.iter_mut() {
                        // `RegOps` holds only cheap activations: `None` is unreachable.
                        *x = math::apply_cheap(act, *x).unwrap_or(*x);
                    }
                }
            }
        }
    }
    for row in acc.iter_mut() {
        for x in row.iter_mut() {
            *x = math::canonical_nan(*x, *x);
        }
    }
}

/// A tile of `cols < NR` columns (the last panel of a layer whose width is not a multiple of
/// NR): the full tile runs on a stack copy, whose padding columns see zero weights and bias,
/// and only the real columns go back to C.
///
/// # Safety
/// As [`tile`], except that `c` is readable and writable only for `j < cols`.
#[cfg_attr(sinter_inline, inline(always))]
#[allow(clippy::too_many_arguments)]
unsafe fn edge_tile<V: Simd, const R: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    first: bool,
    epilogue: Option<TileEpilogue<'_>>,
) {
    let nr = NV * V::LANES;
    let mut buf = [0.0f32; 8 * 64];
    debug_assert!(R * nr <= buf.len() && cols <= nr);
    if !first {
        for r in 0..R {
            // SAFETY: row r of C holds `cols` values (caller contract); `buf` row r holds NR.
            unsafe {
                std::ptr::copy_nonoverlapping(c.add(r * ldc), buf.as_mut_ptr().add(r * nr), cols)
            };
        }
    }
    // SAFETY: `buf` holds R rows of NR values; the rest is the caller's contract.
    unsafe { tile::<V, R, NV>(kc, a, lda, b, buf.as_mut_ptr(), nr, first, epilogue) };
    for r in 0..R {
        // SAFETY: as above.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr().add(r * nr), c.add(r * ldc), cols) };
    }
}

/// `row += bias`, NaN canonical: the same bits as the register epilogue's vector add.
fn add_bias(row: &mut [f32], bias: &[f32]) {
    for (x, &b) in row.iter_mut().zip(bias) {
        let y = *x + b;
        *x = if y.is_nan() { f32::NAN } else { y };
    }
}

/// `row = row * scale + shift` with one rounding, NaN canonical: the same bits as the register
/// epilogue's FMA.
fn scale_shift(row: &mut [f32], scale: &[f32], shift: &[f32]) {
    for ((x, &s), &t) in row.iter_mut().zip(scale).zip(shift) {
        let y = super::fused::fused(*x, s, t);
        *x = if y.is_nan() { f32::NAN } else { y };
    }
}

/// Splits the tile part of an epilogue into what runs on the registers (bias and cheap
/// activations) and what runs on the stored tile in L1 (from the first activation that needs
/// exp, log or division on).
pub(crate) fn split_register_ops(ops: &[EpOp]) -> (RegOps<'_>, &[EpOp]) {
    let at = ops
        .iter()
        .position(|op| !op.is_cheap())
        .unwrap_or(ops.len());
    let (reg, l1) = ops.split_at(at);
    (RegOps(reg), l1)
}

/// Runs the row-wise part of an epilogue (from the first row-wise op on) over one whole row;
/// `c` holds the row's constants (a `Bias` op after a row-wise one adds the bias here). `R8`
/// is an 8-lane vector.
///
/// # Safety
/// `V`'s and `R8`'s instruction sets are available.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) unsafe fn row_ops<V: Simd, R8: Simd>(ops: &[EpOp], c: &RowConsts<'_>, row: &mut [f32]) {
    for op in ops {
        match *op {
            // SAFETY: the caller's contract.
            EpOp::Act(Activation::Softmax) => unsafe { math::row_softmax::<R8>(row, false) },
            // SAFETY: the caller's contract.
            EpOp::Act(Activation::LogSoftmax) => unsafe { math::row_softmax::<R8>(row, true) },
            // SAFETY: ISA availability is the Simd type's invariant.
            EpOp::Act(act) => unsafe { V::act_slice(act, row) },
            EpOp::Bias => add_bias(row, c.bias),
            EpOp::ScaleShift => scale_shift(row, c.scale, c.shift),
            EpOp::Norm => {
                if let Some(norm) = c.norm {
                    // SAFETY: ISA availability is the Simd type's invariant.
                    unsafe { V::norm_row(norm, row) }
                }
            }
        }
    }
}

/// Splits an epilogue into the part done on register tiles and the row-wise rest.
pub(crate) fn split_ops(ops: &[EpOp]) -> (&[EpOp], &[EpOp]) {
    let at = ops
        .iter()
        .position(|op| op.is_row_wise())
        .unwrap_or(ops.len());
    ops.split_at(at)
}

macro_rules! dispatch_rows {
    ($rows:expr, $mr:expr, $f:ident::<$V:ident, $NV:ident>($($arg:expr),*)) => {
        match $rows {
            1 => $f::<$V, 1, $NV>($($arg),*),
            2 if $mr >= 2 => $f::<$V, 2, $NV>($($arg),*),
            3 if $mr >= 3 => $f::<$V, 3, $NV>($($arg),*),
            4 if $mr >= 4 => $f::<$V, 4, $NV>($($arg),*),
            5 if $mr >= 5 => $f::<$V, 5, $NV>($($arg),*),
            6 if $mr >= 6 => $f::<$V, 6, $NV>($($arg),*),
            7 if $mr >= 7 => $f::<$V, 7, $NV>($($arg),*),
            8 if $mr >= 8 => $f::<$V, 8, $NV>($($arg),*),
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
        let mc = (caches.l1d * 3 / 2 / (kc * 4)).clamp(mr, 16 * mr) / mr * mr;
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

/// Splits `mc` rows into tiles of at most `mr` rows, as even as possible (8 rows -> 4 + 4, not
/// 6 + 2), so no tile is left with too few FMA chains to hide the latency.
#[cfg_attr(sinter_inline, inline(always))]
fn tile_rows(mc: usize, mr: usize, i: usize) -> usize {
    let tiles = mc.div_ceil(mr);
    let base = mc / tiles;
    base + usize::from(i < mc % tiles)
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
    let a = g.a.as_ptr();
    let c = g.c;
    let b = g.b.data.as_ptr();
    let bias = g.b.bias.as_ptr();
    // Absent constants are never read (`g.check`); the bias stands in as a valid pointer.
    let scale = if g.b.scale.is_empty() {
        bias
    } else {
        g.b.scale.as_ptr()
    };
    let shift = if g.b.shift.is_empty() {
        bias
    } else {
        g.b.shift.as_ptr()
    };
    let mut jc = g.panels.start;
    while jc < g.panels.end {
        let jc_end = (jc + blk.nc_panels).min(g.panels.end);
        let last_jc = jc_end == panels;
        let mut pc = 0;
        loop {
            let kc = blk.kc.min(k - pc);
            let last = pc + kc == k;
            let mut ic = 0;
            while ic < m {
                let mc = blk.mc.min(m - ic);
                for jp in jc..jc_end {
                    let cols = nr.min(n - jp * nr);
                    // SAFETY: in bounds by `g.check`: panel jp starts at jp*k*nr, block pc at pc*nr.
                    let bp = unsafe { b.add(jp * k * nr + pc * nr) };
                    // SAFETY: the bias (and scale and shift, when present) are padded to whole
                    // panels, so panel jp's NR values exist.
                    let consts = unsafe {
                        PanelConsts {
                            bias: bias.add(jp * nr),
                            scale: scale.add(jp * nr),
                            shift: shift.add(jp * nr),
                        }
                    };
                    let epi = last.then_some(TileEpilogue {
                        reg: reg_ops,
                        c: consts,
                        l1: l1_ops,
                    });
                    let mut ir = 0;
                    let mut t = 0;
                    while ir < mc {
                        let rows = tile_rows(mc, MR, t);
                        let row = ic + ir;
                        // SAFETY: rows row..row+rows exist in A and C; columns pc..pc+kc of A
                        // and jp*nr..jp*nr+cols of C are in bounds (g.check).
                        unsafe {
                            let ap = a.add(row * g.lda + pc);
                            let cp = c.add(row * g.ldc + jp * nr);
                            let first = pc == 0;
                            if cols == nr {
                                dispatch_rows!(
                                    rows,
                                    MR,
                                    tile::<V, NV>(kc, ap, g.lda, bp, cp, g.ldc, first, epi)
                                );
                            } else {
                                dispatch_rows!(
                                    rows,
                                    MR,
                                    edge_tile::<V, NV>(
                                        kc, ap, g.lda, bp, cp, g.ldc, cols, first, epi
                                    )
                                );
                            }
                        }
                        ir += rows;
                        t += 1;
                    }
                }
                // Every column of these rows is final: earlier column blocks are done.
                if last && last_jc && !rest.is_empty() {
                    let consts = g.b.row_consts();
                    for r in ic..ic + mc {
                        // SAFETY: row r of C has n values (g.check); this call owns all
                        // columns when there are row-wise ops (g.check).
                        let row = unsafe { std::slice::from_raw_parts_mut(c.add(r * g.ldc), n) };
                        // SAFETY: the ISA is available (caller contract).
                        unsafe { V::row_stage(rest, &consts, row) };
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
    use super::*;
    use crate::kernels::portable::Portable;
    use crate::kernels::{Isa, Strided, dense_strided};

    #[test]
    fn register_ops_are_exactly_the_cheap_activations() {
        for act in Activation::ALL {
            // SAFETY: portable lanes need no CPU feature.
            let x = unsafe { Portable::splat(0.5) };
            assert_eq!(math::apply_cheap(act, x).is_some(), act.is_cheap(), "{act}");
            let ops = [EpOp::Bias, EpOp::Act(act), EpOp::Act(Activation::RELU)];
            let (reg, l1) = split_register_ops(&ops);
            let cheap = |op: &EpOp| match op {
                EpOp::Bias | EpOp::ScaleShift => true,
                EpOp::Act(a) => a.is_cheap(),
                EpOp::Norm => false,
            };
            assert!(reg.0.iter().all(cheap), "{act}");
            assert_eq!(reg.0.len() + l1.len(), 3);
        }
    }

    #[test]
    #[should_panic(expected = "packed B")]
    fn driver_check_compares_the_packed_length() {
        let mut w = PackedB::pack(Isa::Generic, &[1.0; 64], None, 4, 16).expect("packs");
        w.data.truncate(16); // one K row of the panel instead of four
        let (a, mut c) = ([1.0f32; 4], [0.0f32; 16]);
        dense_strided(Isa::Generic, 1, Strided::new(&a, 4, &mut c, 16), &w, &[]);
    }
}

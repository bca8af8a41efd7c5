//! One kernel type per tier, one dispatch.
//!
//! Each tier is a capability token (it exists only once its CPU features were detected) that
//! implements [`Tier`]: its tile shapes, stated once ([`tiles!`]), and its entry points, each a
//! `#[target_feature]` function that instantiates the shared driver and math for the tier's
//! lane type. [`with_tier!`] is the only place an [`Isa`] becomes a token.

use super::Isa;
use super::activation::Activation;
use super::attention::Attend;
use super::epilogue::EpOp;
use super::gemm::GemmCall;
use super::math::RowNorm;

/// A microkernel tile: `mr` rows by `nr` columns (an NR-wide weight panel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileShape {
    /// Rows (accumulator rows; the A rows one tile reads).
    pub mr: usize,
    /// Columns (panel width).
    pub nr: usize,
    /// Its speed on a long K, in per cent of the tier's fastest tile: what
    /// [`Isa::nr_for`](super::Isa::nr_for) weighs a layer's panel widths by.
    pub rate: u32,
}

/// A kernel tier. Implemented by the capability tokens only.
pub(crate) trait Tier: Copy {
    /// Tile shapes, narrowest panel first.
    const TILES: &'static [TileShape];
    /// `C = ops(A · B)` over `g`'s panels. `g.check()` must have passed.
    fn gemm(self, g: &mut GemmCall<'_>);
    /// An elementwise activation over `data`.
    fn activation(self, act: Activation, data: &mut [f32]);
    /// Row ops over each `n`-wide row of `data` (no bias).
    fn rows(self, ops: &[EpOp<'_>], data: &mut [f32], n: usize);
    /// `x * scale + shift` per channel over rows of `scale.len()`.
    fn affine(self, data: &mut [f32], scale: &[f32], shift: &[f32]);
    /// Layer / RMS normalization of each `n`-wide row of `data`.
    fn norm_rows(self, norm: &RowNorm, data: &mut [f32], n: usize);
    /// 12 independent FMA chains, `iters` rounds (the peak probe).
    fn fma_loop(self, iters: usize) -> f32;
    /// One sample's attention. `a.fits(out, scratch)` must hold.
    fn attend(self, a: &Attend<'_>, out: &mut [f32], scratch: &mut [f32]);
    /// `l` over one sample `x` into `y` with its scratch, the plain loop compiled for this
    /// tier.
    fn plain<L: super::ops::PlainLoop>(self, l: &L, x: &[f32], y: &mut [f32], s: &mut [f32]);
    /// [`DirectConv`](super::direct::DirectConv) of one sample `x` into `y`, compiled for this
    /// tier.
    fn direct_conv(
        self,
        d: &super::direct::DirectConv,
        kernel: &[f32],
        ops: &[EpOp<'_>],
        x: &[f32],
        y: &mut [f32],
        scratch: &mut [f32],
    );
    /// [`Winograd::input`](super::winograd::Winograd::input), compiled for this tier.
    fn winograd_in(
        self,
        w: &super::winograd::Winograd,
        x: &[f32],
        rows: std::ops::Range<usize>,
        v: &mut [f32],
        edge: &mut [f32],
    );
    /// [`Winograd::output`](super::winograd::Winograd::output), compiled for this tier.
    fn winograd_out(
        self,
        w: &super::winograd::Winograd,
        m: &[f32],
        rows: std::ops::Range<usize>,
        y: &mut [f32],
        ops: &[EpOp<'_>],
    );
}

/// Declares a tier's tile shapes once: `TILES` and the `gemm` that instantiates the driver
/// for each, `(NV vectors of LANES, MR rows, rate in per cent)`.
macro_rules! tiles {
    ($lanes:expr, $entry:ident, [$(($nv:literal, $mr:literal, $rate:literal)),+ $(,)?]) => {
        const TILES: &'static [$crate::kernels::dispatch::TileShape] = &[
            $($crate::kernels::dispatch::TileShape { mr: $mr, nr: $nv * $lanes, rate: $rate }),+
        ];
        fn gemm(self, g: &mut $crate::kernels::gemm::GemmCall<'_>) {
            let nr = g.b.nr();
            $(
                if nr == $nv * $lanes {
                    // SAFETY: the token proves the tier's CPU features; the caller ran
                    // `g.check()`; the packing is NV vectors wide.
                    return unsafe { $entry::<$nv, $mr>(g) };
                }
            )+
            panic!("weights packed {nr} wide, not for this tier");
        }
    };
}
pub(crate) use tiles;

/// Runs `$body` with `$t` bound to `$isa`'s token.
///
/// # Panics
/// If the tier is not available on this CPU (plans check availability when compiled).
macro_rules! with_tier {
    ($isa:expr, |$t:ident| $body:expr) => {{
        #[allow(unused_imports)]
        use $crate::kernels::dispatch::Tier as _;
        match $isa {
            #[cfg(target_arch = "x86_64")]
            $crate::kernels::Isa::Avx512 => {
                let $t = $crate::kernels::x86::Avx512Token::new().expect("AVX-512F not available");
                $body
            }
            #[cfg(target_arch = "x86_64")]
            $crate::kernels::Isa::Avx2 => {
                let $t = $crate::kernels::x86::Avx2Token::new().expect("AVX2+FMA not available");
                $body
            }
            #[cfg(not(target_arch = "x86_64"))]
            isa @ ($crate::kernels::Isa::Avx512 | $crate::kernels::Isa::Avx2) => {
                panic!("{isa} is not available on this architecture")
            }
            $crate::kernels::Isa::Generic => {
                let $t = $crate::kernels::portable::PortableTier;
                $body
            }
        }
    }};
}
pub(crate) use with_tier;

/// The tile shapes of `isa` (whether or not this CPU has it).
pub(crate) fn tiles_of(isa: Isa) -> &'static [TileShape] {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => <super::x86::Avx512Token as Tier>::TILES,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => <super::x86::Avx2Token as Tier>::TILES,
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx512 | Isa::Avx2 => <super::portable::PortableTier as Tier>::TILES,
        Isa::Generic => <super::portable::PortableTier as Tier>::TILES,
    }
}

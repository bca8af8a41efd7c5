//! A 3x3 stride-1 Conv2D as Winograd F(2x2, 3x3) (the math: `kernels::Winograd`): 16 GEMMs
//! over the channels instead of one over 9 taps, 2.25x fewer multiply-adds.
//!
//! Which convolutions: [`Conv2DConfig::winograd`] decides when the layer lowers (the shape
//! only, never the batch or the threads, so a sample's bits do not depend on them) and marks
//! the implicit-im2col GEMM it lowers to (`Band::winograd`). The GEMM stays a Dense in the
//! graph while the passes fold a batch norm into its weights and fuse its activations;
//! [`Winograd`](crate::passes::Winograd), the last pass before the plan, makes it this step.

use super::conv2d::Conv2DConfig;
use crate::kernels::{self, EpOp, Isa, PackedB, WinogradWeights};
use crate::plan::{StepIo, StepOp, StepRef};

/// Input channels from which a convolution runs as Winograd: a GEMM with K this short spends
/// more of its time outside the multiply-adds than the transforms save.
const MIN_CHANNELS: usize = 16;

/// Filters from which it does (the output transform's cost per multiply-add grows as N
/// shrinks).
const MIN_FILTERS: usize = 16;

/// Patches per block (at most): the block's transformed patches and GEMM outputs, `16 x
/// patches x (channels + filters)` values, stay in L2 (half of a 1 MiB one).
const BLOCK_VALUES: usize = 128 << 10;

impl Conv2DConfig {
    /// Whether this layer, over `ch` input channels, runs as Winograd F(2x2, 3x3).
    pub(crate) fn winograd(&self, ch: usize) -> bool {
        self.kernel_size == (3, 3)
            && self.strides == (1, 1)
            && self.dilation_rate == (1, 1)
            && self.groups == 1
            && ch >= MIN_CHANNELS
            && self.filters >= MIN_FILTERS
    }
}

/// The step: one sample's patch rows at a time, blocks of them split over the threads.
#[derive(Debug)]
pub(crate) struct WinogradStep {
    geo: kernels::Winograd,
    /// Patch rows per block.
    block: usize,
    /// The 16 transformed kernels, `[16][ch][filters]`, until packed.
    u: Vec<f32>,
    /// Packed for `isa` (16 of them), once packed.
    packed: Vec<PackedB>,
    isa: Option<Isa>,
    /// Bias, activations, ... (elementwise only).
    ops: Vec<EpOp<'static>>,
}

impl WinogradStep {
    /// The step for `geo`, from the layer's kernel (`[3, 3, ch, filters]`) and its
    /// epilogue; `None` if the geometry or the kernel do not fit, or an op needs whole rows.
    pub(crate) fn new(
        geo: kernels::Winograd,
        kernel: &[f32],
        ops: Vec<EpOp<'static>>,
    ) -> Option<WinogradStep> {
        let (c, f) = (geo.ch, geo.filters);
        let fits = geo.valid() && c.checked_mul(f)?.checked_mul(9)? == kernel.len();
        if !fits || ops.iter().any(EpOp::is_row_wise) || ops.iter().any(|o| o.check(f).is_err()) {
            return None;
        }
        let per_row = kernels::POSITIONS * geo.patch_cols() * (c + f);
        let block = (BLOCK_VALUES / per_row.max(1)).clamp(1, geo.patch_rows());
        Some(WinogradStep {
            geo,
            block,
            u: kernels::transform_kernel(kernel, c, f),
            packed: Vec::new(),
            isa: None,
            ops,
        })
    }
}

impl StepOp for WinogradStep {
    fn describe(&self) -> String {
        let g = &self.geo;
        format!(
            "winograd F(2x2,3x3) conv {}x{}: 16 gemms {}x{}, {}x{} patches in blocks of {} rows",
            g.ch,
            g.filters,
            g.ch,
            g.filters,
            g.patch_rows(),
            g.patch_cols(),
            self.block
        )
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let g = &self.geo;
        match inputs {
            [[r, c, ch]] if (*r, *c, *ch) == (g.rows, g.cols, g.ch) => {
                Ok(vec![g.out_rows, g.out_cols, g.filters])
            }
            _ => Err(format!(
                "a Winograd convolution reads [{}, {}, {}]",
                g.rows, g.cols, g.ch
            )),
        }
    }
    fn scratch(&self) -> usize {
        self.geo.scratch(self.block)
    }
    fn weight_bytes(&self) -> usize {
        self.packed.iter().map(PackedB::bytes).sum()
    }
    fn flops(&self) -> usize {
        let g = &self.geo;
        2 * kernels::POSITIONS * g.patch_rows() * g.patch_cols() * g.ch * g.filters
    }
    fn pack(&self, isa: Isa) -> Option<Result<StepRef, String>> {
        let (c, f) = (self.geo.ch, self.geo.filters);
        let packed = self
            .u
            .chunks_exact(c * f)
            .map(|u| PackedB::pack(isa, u, c, f).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>();
        Some(packed.map(|packed| {
            StepRef::new(WinogradStep {
                geo: self.geo,
                block: self.block,
                u: Vec::new(),
                packed,
                isa: Some(isa),
                ops: self.ops.clone(),
            })
        }))
    }
    fn run(&self, isa: Isa, io: StepIo<'_>) {
        let g = &self.geo;
        if self.isa != Some(isa) || self.packed.len() != kernels::POSITIONS {
            debug_assert!(false, "a Winograd step runs only as its plan packed it");
            return;
        }
        let batch = io.batch();
        let pool = io.pool(batch * self.flops());
        let (ins, out, scratch) = io.scratch();
        let one = self.scratch();
        let blocks = g.patch_rows().div_ceil(self.block);
        let units = batch * blocks;
        let threads = match pool {
            Some(_) => scratch.len() / one.max(1),
            None => 1,
        };
        if units == 0 || out.len() != batch * g.out_len() {
            return;
        }
        let x = ins.get(0);
        let w = WinogradWeights {
            u: &self.packed,
            ops: &self.ops,
        };
        // Units (sample, block) in order, cut into one contiguous run per thread; each
        // unit's output rows follow the previous unit's.
        let rows = |b: usize| b * self.block..((b + 1) * self.block).min(g.patch_rows());
        let end = |u: usize| u / blocks * g.out_len() + g.out_rows_of(rows(u % blocks)).start;
        let parts = threads.min(units).max(1);
        let each = units.div_ceil(parts);
        let mut rest = out;
        let mut first = 0;
        let items = std::iter::from_fn(|| {
            if first >= units {
                return None;
            }
            let last = (first + each).min(units);
            let (part, tail) = std::mem::take(&mut rest).split_at_mut(end(last) - end(first));
            rest = tail;
            let item = (first..last, part);
            first = last;
            Some(item)
        })
        .zip(scratch.chunks_mut(one.max(1)));
        StepIo::for_each(pool, items, |((us, mut y), s)| {
            for u in us {
                let (sample, b) = (u / blocks, u % blocks);
                let r = rows(b);
                let (here, tail) = y.split_at_mut(g.out_rows_of(r.clone()).len());
                y = tail;
                let x = &x[sample * g.in_len()..][..g.in_len()];
                g.run_block(isa, w, (x, here), r, s);
            }
        });
    }
}

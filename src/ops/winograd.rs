//! A 3x3 stride-1 Conv2D as Winograd F(2x2, 3x3) (the math: `kernels::Winograd`): 16 GEMMs
//! over the channels instead of one over 9 taps, 2.25x fewer multiply-adds.
//!
//! Which convolutions: [`Conv2DConfig::winograd`] decides when the layer lowers (the shape
//! only, never the batch or the threads, so a sample's bits do not depend on them) and marks
//! the implicit-im2col GEMM it lowers to (`ConvAlgo::Winograd`). The GEMM stays a Dense in the
//! graph while the passes fold a batch norm into its weights and fuse its activations;
//! [`ConvSteps`](crate::passes::ConvSteps), the last pass before the plan, makes it this step.

use super::conv2d::Conv2DConfig;
use crate::kernels::{self, EpOp, Isa, PackedB, WinogradWeights};
use crate::plan::{StepIo, StepOp, StepRef};

/// Input channels from which a convolution runs as Winograd: below, its 16 GEMMs' K is too
/// short for the transforms to pay. Measured on Zen 5 (one same-padded 3x3 conv + ReLU,
/// filters = channels, batch 8, one thread; Winograd time / GEMM time): 8 channels 2.9x
/// (56x56) and 2.7x (28x28), 16 channels 0.85x and 0.81x, 32 channels 0.63x (28x28).
const MIN_CHANNELS: usize = 16;

/// Filters from which it does (the output transform's cost per multiply-add grows as N
/// shrinks; measured with the channels, above).
const MIN_FILTERS: usize = 16;

/// Values of a block's transformed patches and GEMM outputs (`16 x patches x (channels +
/// filters)`, at most, but at least one patch row): 4 MiB, past L2, since each block streams
/// all 16 packed kernels once. Measured on Zen 5, resnet18 at batch 1 (one thread): blocks
/// of 1 Mi values ran 0.88x the time of 128 Ki ones and 0.95x that of 4 Mi ones (0.94x at
/// batch 8).
const BLOCK_VALUES: usize = 1 << 20;

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

/// The step: the batch's patch rows in blocks, the blocks split over the threads.
#[derive(Debug)]
pub(crate) struct WinogradStep {
    geo: kernels::Winograd,
    /// Patch rows per block.
    block: usize,
    /// The 16 transformed kernels, `[16][ch][filters]`, until packed.
    u: Vec<f32>,
    /// Packed for `isa` (16 parts), once packed.
    packed: Option<PackedB>,
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
        if !geo.valid() || ops.iter().any(|o| o.is_row_wise() || o.check(f).is_err()) {
            return None;
        }
        // A pooled patch's ops all run on the registers, so on whole vectors of every tier.
        if geo.pool && (!f.is_multiple_of(16) || !ops.iter().all(EpOp::is_cheap)) {
            return None;
        }
        let per_row = [geo.patch_cols(), c.saturating_add(f)]
            .into_iter()
            .fold(kernels::POSITIONS, usize::saturating_mul);
        let block = (BLOCK_VALUES / per_row.max(1)).max(1);
        Some(WinogradStep {
            geo,
            block,
            u: kernels::transform_kernel(kernel, c, f)?,
            packed: None,
            isa: None,
            ops,
        })
    }
}

impl StepOp for WinogradStep {
    fn describe(&self) -> String {
        let g = &self.geo;
        let pool = if g.pool {
            ", each patch max-pooled"
        } else {
            ""
        };
        format!(
            "winograd F(2x2,3x3): 16 gemms {}x{} over {}x{} patches{pool}, up to {} patch rows a block",
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
                let s = if g.pool { 2 } else { 1 };
                Ok(vec![g.out_rows / s, g.out_cols / s, g.filters])
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
    fn epilogue(&self) -> &[EpOp<'static>] {
        &self.ops
    }
    fn weight_bytes(&self) -> usize {
        self.packed
            .as_ref()
            .map_or(self.u.len() * 4, PackedB::bytes)
    }
    fn flops(&self) -> usize {
        let g = &self.geo;
        2 * kernels::POSITIONS * g.patch_rows() * g.patch_cols() * g.ch * g.filters
    }
    fn pack(&self, isa: Isa) -> Option<Result<StepRef, String>> {
        let (c, f) = (self.geo.ch, self.geo.filters);
        let packed = PackedB::pack_parts(isa, &self.u, kernels::POSITIONS, c, f);
        Some(packed.map_err(|e| e.to_string()).map(|packed| {
            StepRef::new(WinogradStep {
                geo: self.geo,
                block: self.block,
                u: Vec::new(),
                packed: Some(packed),
                isa: Some(isa),
                ops: self.ops.clone(),
            })
        }))
    }
    fn run(&self, isa: Isa, io: StepIo<'_>) {
        let g = &self.geo;
        let Some(u) = self.packed.as_ref().filter(|_| self.isa == Some(isa)) else {
            debug_assert!(false, "a Winograd step runs only as its plan packed it");
            return;
        };
        let batch = io.batch();
        let pool = io.pool(batch * self.flops());
        let (ins, out, scratch) = io.scratch();
        let one = self.scratch();
        // The batch's patch rows, in blocks (which may straddle samples: M is the block's
        // patches, whatever samples they come from); one contiguous run of blocks per thread,
        // as many blocks for each (the blocking never changes a value).
        let total = batch * g.patch_rows();
        let threads = match pool {
            Some(_) => (scratch.len() / one.max(1)).clamp(1, total.max(1)),
            None => 1,
        };
        let blocks = total.div_ceil(self.block).next_multiple_of(threads);
        let block = total.div_ceil(blocks.max(1));
        if total == 0 || out.len() != batch * g.out_len() {
            return;
        }
        let x = ins.get(0);
        let w = WinogradWeights { u, ops: &self.ops };
        let row = |b: usize| (b * block).min(total);
        let each = blocks / threads;
        let mut rest = out;
        let mut first = 0;
        let parts = std::iter::from_fn(|| {
            if first >= blocks {
                return None;
            }
            let last = (first + each).min(blocks);
            let len = g.out_at(row(last)) - g.out_at(row(first));
            let (part, tail) = std::mem::take(&mut rest).split_at_mut(len);
            rest = tail;
            let item = (first..last, part);
            first = last;
            Some(item)
        });
        let items = parts.zip(scratch.chunks_mut(one.max(1)));
        StepIo::for_each(pool, items, |((bs, mut y), s)| {
            for b in bs {
                let rows = row(b)..row(b + 1);
                let len = g.out_at(rows.end) - g.out_at(rows.start);
                let (here, tail) = y.split_at_mut(len);
                y = tail;
                g.run_block(isa, w, (x, here), rows, s);
            }
        });
    }
}

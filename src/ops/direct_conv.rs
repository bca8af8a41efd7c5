//! A Conv2D with few values per window (a 3x3 kernel over one channel) as a direct loop (the
//! math: `kernels::DirectConv`): each window value broadcast from the padded input against
//! the kernel's row, instead of unrolling the windows for a GEMM whose K is a few values. The
//! GEMM's sum and epilogue, so the GEMM's bits.
//!
//! Which convolutions: [`Conv2DConfig::direct`] decides when the layer lowers (the shape only)
//! and marks the implicit-im2col GEMM it lowers to (`ConvAlgo::Direct`); the
//! [`ConvSteps`](crate::passes::ConvSteps) pass makes it this step once batch norms are folded
//! and activations fused (a GEMM it stays if its epilogue adds a matrix).

use super::conv2d::Conv2DConfig;
use crate::kernels::{self, EpOp, FILTER_BLOCK, Isa, KB};
use crate::plan::{StepIo, StepOp};

impl Conv2DConfig {
    /// Whether this layer, over `ch` input channels, runs as a direct loop: its windows'
    /// rows are shorter than an implicit im2col reads well (`run`: `kw * ch` values), K fits
    /// one FMA chain, the filters are whole blocks of 16.
    pub(crate) fn direct(&self, ch: usize, short_runs: bool) -> bool {
        let k = self.kernel_size.0 * self.kernel_size.1 * ch;
        short_runs
            && self.groups == 1
            && self.dilation_rate.1 == 1
            && self.kernel_size != (1, 1)
            && k <= KB
            && self.filters.is_multiple_of(FILTER_BLOCK)
    }
}

/// The step: samples split over the threads.
#[derive(Debug)]
pub(crate) struct DirectStep {
    geo: kernels::DirectConv,
    /// `K x filters`, as the GEMM's.
    kernel: Vec<f32>,
    /// Bias, scale and shift, activations (no `AddC`).
    ops: Vec<EpOp<'static>>,
}

impl DirectStep {
    /// The step for `geo`, with the layer's GEMM weights and epilogue; `None` if the geometry
    /// or the weights do not fit, or an op adds a matrix.
    pub(crate) fn new(
        geo: kernels::DirectConv,
        kernel: &[f32],
        ops: Vec<EpOp<'static>>,
    ) -> Option<DirectStep> {
        let f = geo.filters;
        let fits = geo.valid() && geo.k().checked_mul(f)? == kernel.len();
        let fit = ops.iter().all(|o| o.check(f).is_ok());
        (fits && fit && !ops.iter().any(|o| matches!(o, EpOp::AddC(_)))).then(|| DirectStep {
            geo,
            kernel: kernel.to_vec(),
            ops,
        })
    }
}

impl StepOp for DirectStep {
    fn describe(&self) -> String {
        let g = &self.geo;
        let pool = match g.pool {
            (1, 1) => String::new(),
            (ph, pw) => format!(", then max pool {ph}x{pw}"),
        };
        let reads = match g.planar {
            None => "windows read in place",
            Some(_) => "windows read from the channels-first image, padded a band at a time",
        };
        format!(
            "direct conv {}x{} ({}x{} taps over {} channels s{}x{}), {reads}{pool}",
            g.k(),
            g.filters,
            g.kernel.0,
            g.kernel.1,
            g.ch,
            g.strides.0,
            g.strides.1
        )
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let g = &self.geo;
        let reads = match g.planar {
            None => [g.rows, g.cols, g.ch],
            Some(p) => [g.ch, p.h, p.w],
        };
        match inputs {
            [x] if *x == reads => Ok(vec![
                g.out_rows / g.pool.0,
                g.out_cols / g.pool.1,
                g.filters,
            ]),
            _ => Err(format!("a direct convolution reads {reads:?}")),
        }
    }
    fn epilogue(&self) -> &[EpOp<'static>] {
        &self.ops
    }
    fn weight_bytes(&self) -> usize {
        self.kernel.len() * 4
    }
    fn flops(&self) -> usize {
        let g = &self.geo;
        2 * g.out_rows * g.out_cols * g.filters * g.k()
    }
    fn scratch(&self) -> usize {
        self.geo.scratch()
    }
    fn run(&self, isa: Isa, io: StepIo<'_>) {
        let g = self.geo;
        io.per_sample_scratch(g.scratch(), |x, y, s| {
            kernels::direct_conv(isa, &g, &self.kernel, &self.ops, x, y, s)
        });
    }
}

//! How a model is compiled: [`CompileOptions`] and their checks.

use super::*;

/// How to compile a model: `CompileOptions::new().max_batch(64).threads(1)`. New options
/// may be added (the struct is `#[non_exhaustive]`), so build it with the methods below.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CompileOptions {
    /// Fold activations into the Dense epilogues (`true`) or run each as a separate step.
    pub fuse: bool,
    /// Largest batch a session of this plan runs; sizes the arena.
    pub max_batch: usize,
    /// Kernel tier; `None` uses `SINTER_ISA` if set, else the best the CPU has.
    pub isa: Option<Isa>,
    /// Threads for large layers (1 runs everything on the caller's thread). Defaults to the
    /// available cores ([`default_threads`]), and then every plan of the process shares one
    /// worker pool; any other count gives the plan a pool of its own.
    pub threads: usize,
    /// Time candidate panel widths and blockings of every GEMM on this machine while
    /// compiling, and keep the fastest (tens to hundreds of milliseconds per layer). Never
    /// changes a bit of any result.
    pub tune: bool,
    /// Run large layers on this pool of the caller's (for example a `rayon::ThreadPool`, with
    /// the `rayon` feature) instead of sinter's own workers. Its thread count replaces
    /// [`threads`](#structfield.threads).
    pub pool: Option<Arc<dyn WorkerPool>>,
    /// Layers below this many flops per run stay on the calling thread (waking workers costs
    /// more). Tests lower it so that small models really split.
    #[doc(hidden)]
    pub parallel_flops: usize,
    /// Bytes moved per sample from which a layer is run in the plan's stretch
    /// ([`Plan::stretch`]); `None`: half of L2 on one thread, else no stretch; 0: no
    /// stretch. Never changes a bit of any result; tests lower it so that small models have
    /// one.
    #[doc(hidden)]
    pub stretch_bytes: Option<usize>,
}

impl CompileOptions {
    /// The defaults: fused, `max_batch` 256, the best ISA, one thread per available core.
    pub fn new() -> Self {
        Self::default()
    }
    /// See [`CompileOptions::fuse`](#structfield.fuse).
    pub fn fuse(mut self, fuse: bool) -> Self {
        self.fuse = fuse;
        self
    }
    /// See [`CompileOptions::max_batch`](#structfield.max_batch).
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }
    /// See [`CompileOptions::isa`](#structfield.isa).
    pub fn isa(mut self, isa: impl Into<Option<Isa>>) -> Self {
        self.isa = isa.into();
        self
    }
    /// See [`CompileOptions::threads`](#structfield.threads).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }
    /// See [`CompileOptions::tune`](#structfield.tune).
    pub fn tune(mut self, tune: bool) -> Self {
        self.tune = tune;
        self
    }
    /// See [`CompileOptions::pool`](#structfield.pool).
    pub fn pool(mut self, pool: Arc<dyn WorkerPool>) -> Self {
        self.pool = Some(pool);
        self
    }
    /// Splits every layer of at least `flops` flops over the threads (the default is
    /// [`PARALLEL_FLOPS`]); for tests that must see small models split.
    #[doc(hidden)]
    pub fn parallel_flops(mut self, flops: usize) -> Self {
        self.parallel_flops = flops;
        self
    }
    /// See [`CompileOptions::stretch_bytes`](#structfield.stretch_bytes).
    #[doc(hidden)]
    pub fn stretch_bytes(mut self, bytes: usize) -> Self {
        self.stretch_bytes = Some(bytes);
        self
    }
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            fuse: true,
            max_batch: 256,
            isa: None,
            threads: default_threads(),
            tune: false,
            pool: None,
            parallel_flops: PARALLEL_FLOPS,
            stretch_bytes: None,
        }
    }
}

/// Below this many flops a layer stays on the calling thread by default (waking workers
/// costs more): [`CompileOptions::parallel_flops`].
pub const PARALLEL_FLOPS: usize = 4_000_000;

/// Validates the options; returns the kernel tier to compile for.
pub(super) fn check_options(opts: &CompileOptions) -> Result<Isa> {
    let isa = match opts.isa {
        Some(i) => i,
        None => Isa::from_env()
            .map_err(|e| Error::Options(e.to_string()))?
            .unwrap_or_else(Isa::detect),
    };
    if !isa.is_available() {
        return Err(Error::IsaUnavailable(isa));
    }
    // Detect cache sizes now, so no session run ever does (it reads sysfs, allocating).
    let _ = kernels::Caches::get();
    if opts.max_batch == 0 {
        return Err(Error::Options("max_batch must be at least 1".into()));
    }
    if opts.threads == 0 || opts.threads > 1024 {
        return Err(Error::Options(format!(
            "threads must be in 1..=1024, got {}",
            opts.threads
        )));
    }
    Ok(isa)
}

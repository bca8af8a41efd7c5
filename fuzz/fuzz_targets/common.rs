//! Shared by the loader targets: a model that loads must compile and run without panicking.

use std::sync::Arc;

/// Compiles `model` (fused, max_batch 2, one thread) and, when a sample has at most 2^16
/// values, runs one zero sample through it. Errors are fine; panics are findings.
pub fn compile_and_run(model: &sinter::model::Model) {
    let opts = sinter::plan::CompileOptions { fuse: true, threads: 1, max_batch: 2, isa: None, tune: false };
    let Ok(plan) = model.compile(&opts) else { return };
    let n = plan.input_len();
    if n <= 1 << 16 {
        let _ = Arc::new(plan).run(&vec![0.0; n]);
    }
}

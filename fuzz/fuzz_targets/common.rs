//! Shared by the loader targets: a model that loads must compile and run without panicking.

use sinter::plan::Values;
use std::sync::Arc;

/// Compiles `model` (fused, max_batch 2, one thread) and, when its inputs hold at most 2^16
/// values per sample, runs one sample of zeros (id 0 for integer inputs) through it. Errors
/// are fine; panics are findings.
pub fn compile_and_run(model: &sinter::model::Model) {
    let opts = sinter::plan::CompileOptions::new().threads(1).max_batch(2);
    let Ok(plan) = model.compile(&opts) else { return };
    let n: usize = plan.inputs().iter().map(|i| i.len).sum();
    if n <= 1 << 16 {
        let (floats, ids) = (vec![0.0f32; n], vec![0i64; n]);
        let inputs: Vec<Values> = plan
            .inputs()
            .iter()
            .map(|i| match i.dtype {
                sinter::model::DType::F32 => Values::F32(&floats[..i.len]),
                _ => Values::I64(&ids[..i.len]),
            })
            .collect();
        let _ = Arc::new(plan).run_all(&inputs);
    }
}

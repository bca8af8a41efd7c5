//! Shared by the loader targets: a model that loads must compile and run without panicking.

use sinter::plan::Values;
use std::sync::Arc;

/// Compiles `model` (fused, max_batch 2, one thread) and, when its inputs hold at most 2^16
/// values per sample, runs one sample of zeros (id 0 for integer inputs) through it, and,
/// when the plan has a variable sequence, a run of every length from its shortest up to 3.
/// Errors are fine; panics are findings.
pub fn compile_and_run(model: &sinter::model::Model) {
    let opts = sinter::plan::CompileOptions::new().threads(1).max_batch(2);
    let Ok(plan) = model.compile(&opts) else { return };
    let n: usize = plan.inputs().iter().map(|i| i.len).sum();
    if n > 1 << 16 {
        return;
    }
    let plan = Arc::new(plan);
    let (floats, ids) = (vec![0.0f32; n], vec![0i64; n]);
    let inputs = |seq: Option<usize>| -> Vec<Values> {
        plan.inputs()
            .iter()
            .map(|i| {
                let len = seq.map_or(i.len, |s| i.len_at(s));
                match i.dtype {
                    sinter::model::DType::F32 => Values::F32(&floats[..len]),
                    _ => Values::I64(&ids[..len]),
                }
            })
            .collect()
    };
    let _ = plan.run_all(&inputs(None));
    if let Some(r) = plan.seq_range() {
        for s in *r.start()..=(*r.end()).min(3) {
            let _ = plan.run_seq(s, &inputs(Some(s)));
        }
    }
}

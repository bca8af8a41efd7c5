//! Running a batch up to the plan's max batch allocates nothing (counting global allocator).

use sinter::plan::CompileOptions;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counter is process-wide, and the test harness allocates whenever it starts another
/// test's thread: so this file has one test, which runs the cases one after another.
#[test]
fn runs_allocate_nothing() {
    session_run_allocates_nothing();
    conv_and_chunked_runs_allocate_nothing();
    multi_threaded_runs_allocate_nothing();
    graph_runs_allocate_nothing();
    plan_run_into_allocates_nothing();
}

/// `Plan::run_into` (no session: the plan's arena pool) allocates nothing once warm.
fn plan_run_into_allocates_nothing() {
    for model in [sinter::builtin::mnist_mlp(), sinter::builtin::conv1d()] {
        let opts = CompileOptions::new().max_batch(16).threads(1);
        let plan = model.compile(&opts).unwrap();
        let x: Vec<f32> = (0..16 * plan.input_len())
            .map(|i| (i as f32).cos())
            .collect();
        let mut y = vec![0.0f32; 16 * plan.output_len()];
        for b in [1, 16] {
            let mut out = [&mut y[..b * plan.output_len()]];
            let values = [sinter::plan::Values::F32(&x[..b * plan.input_len()])];
            plan.run_into(&values, &mut out).unwrap(); // warm: the pool's first arena
        }
        let before = ALLOCS.load(Ordering::SeqCst);
        for b in [1, 7, 16, 3] {
            let mut out = [&mut y[..b * plan.output_len()]];
            let values = [sinter::plan::Values::F32(&x[..b * plan.input_len()])];
            assert_eq!(plan.run_into(&values, &mut out).unwrap(), b);
        }
        let n = ALLOCS.load(Ordering::SeqCst) - before;
        assert_eq!(n, 0, "{}: {n} allocations", model.name());
    }
}

/// Several inputs (token ids through an Embedding), several outputs, fused layer norms and
/// scale+shift epilogues: `run_all` allocates nothing either, chunked or not, 1 or 2 threads.
fn graph_runs_allocate_nothing() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/graphs");
    for name in [
        "two_inputs",
        "two_outputs",
        "layernorm",
        "bn_unfoldable",
        "text_cnn",
    ] {
        let model = sinter::io::load(dir.join(format!("{name}.keras"))).unwrap();
        for threads in [1, 2] {
            // Every step splits on 2 threads, so the split path is the one measured.
            let opts = CompileOptions::new()
                .max_batch(40)
                .threads(threads)
                .parallel_flops(0);
            let plan = Arc::new(model.compile(&opts).unwrap());
            let inputs: Vec<sinter::io::npy::Array> = plan
                .inputs()
                .iter()
                .map(|i| match i.dtype {
                    sinter::model::DType::F32 => sinter::io::npy::Array::F32(vec![0.5; 40 * i.len]),
                    _ => sinter::io::npy::Array::I32(vec![1; 40 * i.len]),
                })
                .collect();
            let mut session = plan.session().unwrap();
            let lens: Vec<usize> = plan.inputs().iter().map(|i| i.len).collect();
            let view = |b: usize| -> Vec<sinter::plan::Values<'_>> {
                inputs
                    .iter()
                    .zip(&lens)
                    .map(|(a, &l)| match a {
                        sinter::io::npy::Array::F32(v) => sinter::plan::Values::F32(&v[..b * l]),
                        sinter::io::npy::Array::I32(v) => sinter::plan::Values::I32(&v[..b * l]),
                        sinter::io::npy::Array::I64(v) => sinter::plan::Values::I64(&v[..b * l]),
                        sinter::io::npy::Array::Bool(v) => sinter::plan::Values::Bool(&v[..b * l]),
                    })
                    .collect()
            };
            let batches = [1, 7, 40];
            let views: Vec<Vec<sinter::plan::Values<'_>>> =
                batches.iter().map(|&b| view(b)).collect();
            for v in &views {
                session.run_all(v).unwrap(); // warm
            }
            let before = ALLOCS.load(Ordering::SeqCst);
            let mut checksum = 0.0;
            for _ in 0..5 {
                for v in &views {
                    let out = session.run_all(v).unwrap();
                    checksum += out.get(out.len() - 1)[0];
                }
            }
            let n = ALLOCS.load(Ordering::SeqCst) - before;
            assert!(checksum.is_finite());
            assert_eq!(n, 0, "{name} threads={threads}: {n} allocations");
            assert_eq!(
                plan.split_steps() > 0,
                threads > 1,
                "{name}: threads={threads}"
            );
        }
    }
}

fn session_run_allocates_nothing() {
    for model in [sinter::builtin::seed(), sinter::builtin::mnist_mlp()] {
        for fuse in [true, false] {
            let opts = CompileOptions::new().fuse(fuse).max_batch(64).threads(1);
            let plan = Arc::new(model.compile(&opts).unwrap());
            let mut session = plan.session().unwrap();
            let x = vec![0.25f32; 64 * 784];
            let before = ALLOCS.load(Ordering::SeqCst);
            let mut checksum = 0.0f32;
            for batch in [1, 5, 64, 3] {
                let y = session.run(&x[..batch * 784]).unwrap();
                checksum += y[0];
            }
            let after = ALLOCS.load(Ordering::SeqCst);
            assert!(checksum.is_finite());
            assert_eq!(
                after - before,
                0,
                "fuse={fuse}: {} allocations",
                after - before
            );
        }
    }
}

/// Allocations made by `runs` runs of each batch in `batches` on a warm session.
fn allocations(plan: &Arc<sinter::plan::Plan>, batches: &[usize], runs: usize) -> usize {
    let mut session = plan.session().unwrap();
    let per = plan.input_len();
    let max = batches.iter().copied().max().unwrap_or(1);
    let x: Vec<f32> = (0..max * per).map(|i| (i as f32 * 0.01).sin()).collect();
    for &b in batches {
        session.run(&x[..b * per]).unwrap(); // warm: thread pools, lazily built queues
    }
    let before = ALLOCS.load(Ordering::SeqCst);
    let mut checksum = 0.0f32;
    for _ in 0..runs {
        for &b in batches {
            checksum += session.run(&x[..b * per]).unwrap()[0];
        }
    }
    assert!(checksum.is_finite());
    ALLOCS.load(Ordering::SeqCst) - before
}

fn conv_and_chunked_runs_allocate_nothing() {
    let model = sinter::builtin::conv1d();
    for fuse in [true, false] {
        let opts = CompileOptions::new().fuse(fuse).max_batch(40).threads(1);
        let plan = Arc::new(model.compile(&opts).unwrap());
        // The conv model's weights fit in L2: batches above the chunk run in chunks.
        assert!(plan.chunk() < 40, "chunk {}", plan.chunk());
        let n = allocations(&plan, &[1, plan.chunk(), plan.chunk() + 1, 40], 3);
        assert_eq!(n, 0, "fuse={fuse}: {n} allocations");
    }
}

fn multi_threaded_runs_allocate_nothing() {
    // mnist-mlp at batch 64 splits its layers by column panels over 2 threads; softmax
    // (row-wise) splits its layer by rows; conv1d splits by samples.
    for model in [sinter::builtin::mnist_mlp(), sinter::builtin::conv1d()] {
        let opts = CompileOptions::new().max_batch(64).threads(2);
        let plan = Arc::new(model.compile(&opts).unwrap());
        let n = allocations(&plan, &[64, 7], 50);
        assert_eq!(n, 0, "{}: {n} allocations in 100 runs", model.name());
        assert!(plan.split_steps() > 0, "{}: nothing split", model.name());
    }
}

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

#[test]
fn session_run_allocates_nothing() {
    for model in [sinter::builtin::seed(), sinter::builtin::mnist_mlp()] {
        for fuse in [true, false] {
            let opts = CompileOptions {
                fuse,
                max_batch: 64,
                threads: 1,
                ..CompileOptions::default()
            };
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

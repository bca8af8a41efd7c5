//! A plan can run its large layers on the caller's thread pool (`CompileOptions::pool`):
//! rayon's, or any `WorkerPool`. The bits never depend on the pool.

use sinter::{CompileOptions, Model, Plan, WorkerPool};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn input(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect()
}

fn inputs_len(plan: &Plan) -> usize {
    plan.inputs()[0].shape.iter().product()
}

/// Each builtin at batches that take both the column and the row split, and the per-sample
/// split of the convolutions, on `pool` against one thread.
fn same_bits_as_one_thread(pool: Arc<dyn WorkerPool>) {
    for model in [
        sinter::builtin::mnist_mlp(),
        sinter::builtin::conv1d(),
        sinter::builtin::ffn(),
    ] {
        let alone = model.compile(&CompileOptions::new().threads(1)).unwrap();
        let pooled = model
            .compile(&CompileOptions::new().pool(pool.clone()))
            .unwrap();
        for batch in [1, 7, 64, 300] {
            let x = input(batch * inputs_len(&alone));
            assert_eq!(
                pooled.run(&x).unwrap(),
                alone.run(&x).unwrap(),
                "batch {batch}"
            );
        }
        if pooled.threads() > 1 {
            assert!(pooled.split_steps() > 0, "{}: nothing split", model.name());
        }
    }
}

fn rayon_pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// Counts the calls of `work` that ran on one of the pool's own threads.
struct Counting {
    inner: rayon::ThreadPool,
    on_pool: AtomicUsize,
}

impl WorkerPool for Counting {
    fn threads(&self) -> usize {
        self.inner.threads()
    }
    fn run_on(&self, threads: usize, work: &(dyn Fn() + Sync)) {
        self.inner.run_on(threads, &|| {
            if self.inner.current_thread_index().is_some() {
                self.on_pool.fetch_add(1, Ordering::Relaxed);
            }
            work()
        });
    }
}

#[test]
fn rayon_pool_gives_the_bits_of_one_thread() {
    same_bits_as_one_thread(Arc::new(rayon_pool(2)));
    same_bits_as_one_thread(Arc::new(rayon_pool(3)));
}

#[test]
fn large_layers_run_on_the_pool_threads() {
    let pool = Arc::new(Counting {
        inner: rayon_pool(2),
        on_pool: AtomicUsize::new(0),
    });
    let plan = sinter::builtin::ffn()
        .compile(&CompileOptions::new().pool(pool.clone()))
        .unwrap();
    assert_eq!(plan.threads(), 2);
    let x = input(256 * inputs_len(&plan));
    plan.run(&x).unwrap();
    assert!(
        pool.on_pool.load(Ordering::Relaxed) > 0,
        "no work reached the pool"
    );
}

#[test]
fn runs_from_inside_the_pool_and_from_many_threads() {
    let pool = Arc::new(rayon_pool(2));
    let model: Model = sinter::builtin::mnist_mlp();
    let alone = model.compile(&CompileOptions::new().threads(1)).unwrap();
    let plan = model
        .compile(&CompileOptions::new().pool(pool.clone()))
        .unwrap();
    let x = input(64 * 784);
    let want = alone.run(&x).unwrap();
    // From the pool's own threads (the caller's service may run its handlers there).
    let got: Vec<_> = pool.install(|| {
        use rayon::prelude::*;
        (0..8)
            .into_par_iter()
            .map(|_| plan.run(&x).unwrap())
            .collect()
    });
    assert!(got.iter().all(|g| *g == want));
    // From threads outside it, at once.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    assert_eq!(plan.run(&x).unwrap(), want);
                }
            });
        }
    });
}

/// A pool that never runs the work it is given (the caller does all of it), claiming some
/// number of threads.
struct Idle(usize);

impl WorkerPool for Idle {
    fn threads(&self) -> usize {
        self.0
    }
    fn run_on(&self, _: usize, _: &(dyn Fn() + Sync)) {}
}

/// A pool that runs the calls one after another on the caller's thread.
struct Serial;

impl WorkerPool for Serial {
    fn threads(&self) -> usize {
        3
    }
    fn run_on(&self, threads: usize, work: &(dyn Fn() + Sync)) {
        (0..threads).for_each(|_| work());
    }
}

#[test]
fn a_pool_that_does_less_only_costs_time() {
    for claimed in [0, 4, usize::MAX] {
        same_bits_as_one_thread(Arc::new(Idle(claimed)));
    }
    same_bits_as_one_thread(Arc::new(Serial));
}

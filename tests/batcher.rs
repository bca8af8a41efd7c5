//! The dynamic batcher: concurrent requests from threads and from async tasks share plan
//! runs, and every response is bit-identical to running that request alone; a full queue
//! refuses requests (backpressure) without losing any it accepted; dropping the batcher
//! answers what was queued.

use sinter::io::npy::Array;
use sinter::model::init::SplitMix64;
use sinter::plan::{Batcher, BatcherOptions, CompileOptions, Plan};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

fn plan(name: &str) -> Arc<Plan> {
    let model = sinter::builtin::by_name(name).unwrap();
    Arc::new(
        model
            .compile(&CompileOptions::new().max_batch(32).threads(1))
            .unwrap(),
    )
}

fn request(plan: &Plan, rows: usize, seed: u64) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..rows * plan.input_len())
        .map(|_| r.next_signed() * 2.0)
        .collect()
}

fn bits(v: &[Vec<f32>]) -> Vec<u32> {
    v.iter().flatten().map(|x| x.to_bits()).collect()
}

#[test]
fn batched_responses_equal_runs_alone() {
    for name in ["mnist-mlp", "conv1d"] {
        let plan = plan(name);
        let opts = BatcherOptions::new()
            .max_batch(32)
            .max_delay(Duration::from_millis(2));
        let batcher = Batcher::new(plan.clone(), opts).unwrap();
        let handles: Vec<_> = (0..12u64)
            .map(|t| {
                let (b, plan) = (batcher.clone(), plan.clone());
                std::thread::spawn(move || {
                    for i in 0..20u64 {
                        let rows = 1 + ((t + i) % 4) as usize;
                        let x = request(&plan, rows, t * 1000 + i);
                        let got = b.run(vec![Array::F32(x.clone())]).unwrap();
                        let alone = plan.run_all(&[sinter::Values::F32(&x)]).unwrap();
                        assert_eq!(bits(&got), bits(&alone), "thread {t} request {i}");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = batcher.stats();
        assert_eq!(s.requests, 12 * 20);
        assert!(
            s.runs < s.requests,
            "{name}: no request shared a batch ({s:?})"
        );
    }
}

/// A waker that counts wake-ups.
struct Count(std::sync::atomic::AtomicUsize);
impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Many futures polled by one thread (a single-threaded executor): polling never blocks, every
/// future resolves to its request's answer alone.
#[test]
fn async_callers_never_block_and_get_their_rows() {
    let plan = plan("mnist-mlp");
    let batcher = Batcher::new(
        plan.clone(),
        BatcherOptions::new().max_delay(Duration::from_millis(5)),
    )
    .unwrap();
    let xs: Vec<Vec<f32>> = (0..24)
        .map(|i| request(&plan, 1 + i % 3, i as u64))
        .collect();
    let mut futures: Vec<Pin<Box<sinter::plan::Response>>> = xs
        .iter()
        .map(|x| Box::pin(batcher.run_async(vec![Array::F32(x.clone())])))
        .collect();
    let counter = Arc::new(Count(Default::default()));
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    let mut results: Vec<Option<Vec<Vec<f32>>>> = vec![None; xs.len()];
    let start = std::time::Instant::now();
    while results.iter().any(Option::is_none) {
        for (i, f) in futures.iter_mut().enumerate() {
            if results[i].is_none() {
                let t = std::time::Instant::now();
                if let Poll::Ready(r) = f.as_mut().poll(&mut cx) {
                    results[i] = Some(r.unwrap());
                }
                assert!(t.elapsed() < Duration::from_secs(1), "a poll blocked");
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "futures never resolved"
        );
        std::thread::yield_now();
    }
    for (x, got) in xs.iter().zip(results) {
        let alone = plan.run_all(&[sinter::Values::F32(x)]).unwrap();
        assert_eq!(bits(&got.unwrap()), bits(&alone));
    }
    assert!(
        counter.0.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "no wake-ups"
    );
}

#[test]
fn a_full_queue_refuses_and_loses_nothing() {
    let plan = plan("mnist-mlp");
    // 8 rows may wait and no batch runs until the oldest has waited 2 s (a full batch, 16 rows,
    // never fits the queue): the first 4 two-row requests fill it, and the rest, submitted
    // well within 2 s however loaded the machine, are refused.
    let opts = BatcherOptions::new()
        .max_batch(16)
        .queue_rows(8)
        .max_delay(Duration::from_secs(2));
    let batcher = Batcher::new(plan.clone(), opts).unwrap();
    let x = request(&plan, 2, 7);
    let alone = plan.run_all(&[sinter::Values::F32(&x)]).unwrap();
    let pending: Vec<_> = (0..40)
        .map(|_| batcher.run_async(vec![Array::F32(x.clone())]))
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for f in pending {
        match block_on(f) {
            Ok(y) => {
                assert_eq!(bits(&y), bits(&alone));
                ok += 1;
            }
            Err(sinter::Error::Overloaded(_)) => refused += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(refused > 0, "the queue never filled");
    assert!(ok >= 4, "{ok} answered");
    assert_eq!(batcher.stats().requests, ok);
    // Bad requests are refused when queued, naming the input.
    let e = batcher.run(vec![Array::F32(vec![0.0; 5])]).unwrap_err();
    assert!(e.to_string().contains("784"), "{e}");
}

#[test]
fn dropping_the_batcher_answers_the_queue() {
    let plan = plan("seed");
    let batcher = Batcher::new(
        plan.clone(),
        BatcherOptions::new().max_delay(Duration::from_secs(10)),
    )
    .unwrap();
    let x = request(&plan, 1, 3);
    let f = batcher.run_async(vec![Array::F32(x.clone())]);
    drop(batcher);
    let got = block_on(f).unwrap();
    assert_eq!(
        bits(&got),
        bits(&plan.run_all(&[sinter::Values::F32(&x)]).unwrap())
    );
}

/// Polls `f` to completion on this thread, parking between polls.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = Box::pin(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

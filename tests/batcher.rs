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

/// A BERT encoder (the Hugging Face fixture) loaded for up to 8 tokens: requests of every
/// length from 1 to 8, with padding masks, share runs padded to the longest, and each answer
/// is the bits of the request alone at its own length.
#[test]
fn sequences_of_different_lengths_share_runs_and_keep_their_bits() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/transformers/bert.ts.onnx");
    let model = sinter::io::load_with(&path, &sinter::io::LoadOptions::new().seq(8)).unwrap();
    let plan = Arc::new(
        model
            .compile(&CompileOptions::new().max_batch(16).threads(1))
            .unwrap(),
    );
    assert!(
        plan.pads(),
        "BERT's attention masks its keys by the attention_mask input"
    );
    let opts = BatcherOptions::new()
        .max_batch(16)
        .max_delay(Duration::from_millis(5));
    let batcher = Batcher::new(plan.clone(), opts).unwrap();
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let (b, plan) = (batcher.clone(), plan.clone());
            std::thread::spawn(move || {
                let mut r = SplitMix64::new(t);
                for i in 0..12u64 {
                    let rows = 1 + (r.next_u64() % 2) as usize;
                    let len = 1 + (r.next_u64() % 8) as usize;
                    let ids: Vec<i64> = (0..rows * len)
                        .map(|_| (r.next_u64() % 50) as i64)
                        .collect();
                    // Some requests mask their own last tokens.
                    let keep = 1 + (r.next_u64() as usize % len);
                    let mask: Vec<i64> =
                        (0..rows * len).map(|j| i64::from(j % len < keep)).collect();
                    let types: Vec<i64> = (0..rows * len).map(|j| (j % 2) as i64).collect();
                    let inputs = vec![Array::I64(ids), Array::I64(mask), Array::I64(types)];
                    let got = b.run_seq(len, inputs.clone()).unwrap();
                    let values: Vec<sinter::Values> = inputs.iter().map(Array::values).collect();
                    let alone = plan.run_seq(len, &values).unwrap();
                    assert_eq!(got[0].len(), rows * len * 16);
                    assert_eq!(
                        bits(&got),
                        bits(&alone),
                        "thread {t} request {i} of length {len}"
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(batcher.stats().requests, 8 * 12);
    // A length the plan does not run is refused when queued.
    let err = batcher
        .run_seq(9, vec![Array::I64(vec![1; 9]); 3])
        .unwrap_err();
    assert!(err.to_string().contains("1 to 8"), "{err}");
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

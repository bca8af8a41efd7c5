//! One `Arc<Plan>` shared by many threads, each with its own `Session`: every output equals a
//! single-threaded run, bit for bit. Plans with their own worker pool (threads > 1) are also
//! driven from many callers at once: no deadlock, same bits.

use sinter::builtin;
use sinter::model::Model;
use sinter::model::init::SplitMix64;
use sinter::plan::{CompileOptions, Plan};
use std::sync::Arc;

fn inputs(plan: &Plan, batch: usize, count: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut r = SplitMix64::new(seed);
    (0..count)
        .map(|_| {
            (0..batch * plan.input_len())
                .map(|_| r.next_signed() * 2.0)
                .collect()
        })
        .collect()
}

fn compile(model: &Model, threads: usize, max_batch: usize) -> Arc<Plan> {
    let opts = CompileOptions::new().threads(threads).max_batch(max_batch);
    Arc::new(model.compile(&opts).unwrap())
}

/// `callers` threads each run every input `rounds` times through their own session and compare
/// with the expected outputs computed up front on this thread.
fn hammer(plan: Arc<Plan>, batch: usize, callers: usize, rounds: usize) {
    let xs = Arc::new(inputs(&plan, batch, 8, plan.output_len() as u64));
    let expected: Arc<Vec<Vec<u32>>> = Arc::new(
        xs.iter()
            .map(|x| plan.run(x).unwrap().iter().map(|v| v.to_bits()).collect())
            .collect(),
    );
    let handles: Vec<_> = (0..callers)
        .map(|t| {
            let (plan, xs, expected) = (plan.clone(), xs.clone(), expected.clone());
            std::thread::spawn(move || {
                let mut s = plan.session().unwrap();
                for round in 0..rounds {
                    let i = (round * 7 + t) % xs.len();
                    let y = s.run(&xs[i]).unwrap();
                    assert!(
                        y.iter()
                            .map(|v| v.to_bits())
                            .eq(expected[i].iter().copied()),
                        "caller {t}, round {round}: output differs"
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a caller panicked");
    }
}

#[test]
fn eight_callers_share_one_plan() {
    for name in ["seed", "conv1d"] {
        hammer(compile(&builtin::by_name(name).unwrap(), 1, 4), 3, 8, 1000);
    }
}

#[test]
fn callers_and_the_plans_own_pool_do_not_deadlock() {
    // Batch 64 of mnist-mlp is above the parallel threshold: every run uses the plan's pool
    // from 8 caller threads at once.
    let plan = compile(&builtin::mnist_mlp(), 3, 64);
    hammer(plan.clone(), 64, 8, 25);
    assert!(plan.split_steps() > 0, "nothing split");
}

/// Many threads call `Plan::run` on one shared plan (no sessions: the plan's arena pool, more
/// callers than pooled arenas): every output is bit-identical to a run alone.
#[test]
fn plan_run_from_many_threads_without_sessions() {
    let plan = compile(&builtin::by_name("conv1d").unwrap(), 1, 4);
    let xs = Arc::new(inputs(&plan, 3, 8, 11));
    let expected: Arc<Vec<Vec<f32>>> = Arc::new(xs.iter().map(|x| plan.run(x).unwrap()).collect());
    let callers = sinter::plan::POOLED_ARENAS + 4;
    let handles: Vec<_> = (0..callers)
        .map(|t| {
            let (plan, xs, expected) = (plan.clone(), xs.clone(), expected.clone());
            std::thread::spawn(move || {
                for round in 0..60 {
                    let i = (round * 5 + t) % xs.len();
                    let y = plan.run(&xs[i]).unwrap();
                    let same = y
                        .iter()
                        .zip(&expected[i])
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "caller {t}, round {round}: output differs");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a caller panicked");
    }
}

/// A batch above `max_batch` runs in chunks: each sample's output is what it gives alone.
#[test]
fn plan_run_chunks_batches_above_max_batch() {
    for name in ["mnist-mlp", "conv1d"] {
        let plan = compile(&builtin::by_name(name).unwrap(), 2, 4);
        let (n_in, n_out) = (plan.input_len(), plan.output_len());
        let x = inputs(&plan, 11, 1, 3).pop().unwrap();
        let all = plan.run(&x).unwrap();
        assert_eq!(all.len(), 11 * n_out);
        for s in 0..11 {
            let alone = plan.run(&x[s * n_in..(s + 1) * n_in]).unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&all[s * n_out..(s + 1) * n_out]),
                bits(&alone),
                "{name} sample {s}"
            );
        }
        // Wrong output buffers are errors.
        let values = [sinter::plan::Values::F32(&x)];
        let mut short = [0.0; 3];
        assert!(plan.run_into(&values, &mut [&mut short[..]]).is_err());
        assert!(plan.run_into(&values, &mut []).is_err());
    }
}

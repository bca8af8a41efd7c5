//! The proof: fused == separate bit for bit, on random models and hostile inputs; the same bits
//! on every ISA tier, every thread count (every layer split) and every batch position; and, for
//! finite inputs, every layer within a stated error bound of a naive f64 evaluation of that
//! layer on the plan's own inputs.
//!
//! `PROPTEST_CASES=N` raises the number of cases.

mod common;

use common::bound::{self, Bounded};
use common::{Spec, first_diff, some_not_nan, strategy};
use proptest::prelude::*;
use sinter::Isa;
use sinter::model::DenseConfig;
use sinter::model::{Layer, Model, Node};
use sinter::plan::CompileOptions;
use std::sync::Arc;

fn run(model: &Model, opts: &CompileOptions, x: &[f32]) -> Vec<f32> {
    let plan = Arc::new(model.compile(opts).expect("compiles"));
    plan.run(x).expect("runs")
}

fn opts(fuse: bool, batch: usize) -> CompileOptions {
    CompileOptions::new().fuse(fuse).max_batch(batch).threads(1)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(256)))]

    /// Invariant 1: fused and separate plans give identical bits, specials included.
    #[test]
    fn fused_equals_separate_bitwise(spec in strategy::spec()) {
        let model = spec.model();
        let x = spec.input(true);
        let fused = run(&model, &opts(true, spec.batch), &x);
        prop_assume!(some_not_nan(&fused), "every output NaN: nothing to compare");
        let separate = run(&model, &opts(false, spec.batch), &x);
        prop_assert_eq!(first_diff(&fused, &separate), None, "fused vs separate");
    }

    /// Invariant 2 (ISA): every tier this CPU has gives the same bits.
    #[test]
    fn every_tier_gives_the_same_bits(spec in strategy::spec()) {
        let model = spec.model();
        let x = spec.input(true);
        let want = run(&model, &opts(true, spec.batch).isa(Some(Isa::Generic)), &x);
        prop_assume!(some_not_nan(&want), "every output NaN: nothing to compare");
        for isa in Isa::available() {
            for fuse in [true, false] {
                let got = run(&model, &opts(fuse, spec.batch).isa(Some(isa)), &x);
                prop_assert_eq!(first_diff(&got, &want), None, "{} fuse={}", isa, fuse);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(64)))]

    /// Invariant 2 (batch, threads): a row alone == that row inside the batch; 2-4 threads
    /// agree with one, every layer split (by rows or by column panels) wherever its shape allows.
    #[test]
    fn rows_and_threads_give_the_same_bits(spec in strategy::spec()) {
        let model = spec.model();
        let x = spec.input(true);
        let per = spec.input;
        let out = model.output_shape().iter().product::<usize>();
        let want = run(&model, &opts(true, spec.batch), &x);
        prop_assume!(some_not_nan(&want), "every output NaN: nothing to compare");
        for threads in [2, 3, 4] {
            let o = opts(true, spec.batch).threads(threads).parallel_flops(0);
            let plan = Arc::new(model.compile(&o).unwrap());
            let got = plan.run(&x).unwrap();
            // A model of one-panel layers at a batch below two register tiles has nothing to
            // split; such a case tells nothing about threads.
            prop_assume!(plan.split_steps() > 0, "nothing split");
            prop_assert_eq!(first_diff(&got, &want), None, "threads={}", threads);
        }
        let plan = Arc::new(model.compile(&opts(true, spec.batch)).unwrap());
        let mut s = plan.session().unwrap();
        for r in [0, spec.batch / 2, spec.batch - 1] {
            let alone = s.run(&x[r * per..(r + 1) * per]).unwrap();
            prop_assert_eq!(first_diff(alone, &want[r * out..(r + 1) * out]), None, "row {}", r);
        }
    }

    /// Accuracy, layer by layer: with finite inputs, each layer's f32 output is within the
    /// error bound of an f64 evaluation of that layer on the plan's own f32 input of it (see
    /// `layer_bound`). The bounds never compound through the model.
    #[test]
    fn every_layer_matches_f64_within_bound(spec in strategy::spec()) {
        let x = spec.input(false);
        let model = spec.model();
        let prefixes = spec.prefixes();
        let mut input = x.clone();
        let mut checked = 0;
        for (prefix, node) in prefixes.iter().zip(&model.nodes()[1..]) {
            let got = run(prefix, &opts(true, spec.batch), &x);
            checked += check_layer(node, &input, &got).map_err(TestCaseError::fail)?;
            input = got;
        }
        prop_assert!(checked > 0 || spec.layers.is_empty(), "no output was checked");
    }
}

/// Checks one layer's f32 output `got` against an f64 evaluation of `node` on the f32 values
/// `x` it read (`common::bound`: Higham's bound for sinter's summation, the activation's own
/// error in ulps of the true value); returns how many outputs were checked (not rows with a
/// non-finite input, nor values beyond the f32 range).
fn check_layer(node: &Node, x: &[f32], got: &[f32]) -> Result<usize, String> {
    let n = node.shape.last().copied().unwrap_or(1);
    let k = x.len() / (got.len() / n);
    let (act, weights) = match &node.layer {
        Layer::Dense(DenseConfig { activation, .. }) => (*activation, node.weights.as_ref()),
        Layer::Activation(act) => (*act, None),
        Layer::Dropout(_) => {
            return match first_diff(got, x) {
                None => Ok(0),
                Some(d) => Err(format!("{}: dropout changed {d:?}", node.name)),
            };
        }
        other => unreachable!("the f64 check covers Dense chains, not {other:?}"),
    };
    let mut checked = 0;
    for (r, (row, out)) in x.chunks_exact(k).zip(got.chunks_exact(n)).enumerate() {
        if row.iter().any(|v| !v.is_finite()) {
            continue;
        }
        let row: Vec<Bounded> = row.iter().map(|&v| Bounded::exact(v)).collect();
        let pre: Vec<Bounded> = match weights {
            Some(w) => (0..n)
                .map(|j| {
                    let terms = row.iter().enumerate();
                    let b = w.bias.as_ref().map_or(0.0, |b| f64::from(b[j]));
                    bound::dot(
                        terms.map(|(kk, &x)| (x, f64::from(w.kernel[kk * n + j]))),
                        b,
                    )
                })
                .collect(),
            None => row,
        };
        let want = bound::activation_row(act, &pre);
        checked += bound::check(&format!("{} ({act}) row {r}", node.name), out, &want)?;
    }
    Ok(checked)
}

/// Regression guard for the demo's claim.
#[test]
fn seed_model_fused_equals_separate() {
    let model = sinter::builtin::seed();
    let spec = Spec {
        input: 784,
        layers: vec![],
        batch: 64,
        seed: 7,
    };
    let x = spec.input(true);
    let fused = run(&model, &opts(true, 64), &x);
    let separate = run(&model, &opts(false, 64), &x);
    let finite = fused.iter().filter(|v| v.is_finite()).count();
    assert!(finite >= fused.len() / 2, "only {finite} finite outputs");
    assert_eq!(first_diff(&fused, &separate), None);
}

//! The proof: fused == separate bit for bit, on random models and hostile inputs; the same bits
//! on every ISA tier, every thread count (every layer split) and every batch position; and, for
//! finite inputs, every layer within a stated error bound of a naive f64 evaluation of that
//! layer on the plan's own inputs.
//!
//! `PROPTEST_CASES=N` raises the number of cases.

mod common;

use common::{Spec, first_diff, some_not_nan, strategy};
use proptest::prelude::*;
use sinter::model::{Layer, Model, Node};
use sinter::plan::CompileOptions;
use sinter::{Activation, Isa, reference};
use std::sync::Arc;

fn run(model: &Model, opts: &CompileOptions, x: &[f32]) -> Vec<f32> {
    let plan = Arc::new(model.compile(opts).expect("compiles"));
    plan.run(x).expect("runs")
}

fn opts(fuse: bool, batch: usize) -> CompileOptions {
    CompileOptions::new().fuse(fuse).max_batch(batch).threads(1)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

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
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

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

/// Largest |f'| of an activation on an interval of half-width `e` around `x`.
fn slope(act: Activation, x: f64, e: f64) -> f64 {
    match act {
        Activation::Linear
        | Activation::Relu6
        | Activation::Tanh
        | Activation::Softplus
        | Activation::Softsign => 1.0,
        Activation::Relu { negative_slope, .. } | Activation::LeakyRelu { negative_slope } => {
            f64::from(negative_slope).abs().max(1.0)
        }
        Activation::Elu { alpha } => f64::from(alpha).abs().max(1.0),
        Activation::Selu => f64::from(sinter::kernels::SELU_SCALE * sinter::kernels::SELU_ALPHA),
        Activation::Gelu { .. } | Activation::Silu | Activation::Mish => 1.2,
        Activation::Sigmoid => 0.25,
        Activation::HardSigmoid => 1.0 / 6.0,
        Activation::HardSigmoidAffine { alpha, .. } => f64::from(alpha).abs(),
        Activation::HardSilu => 1.5,
        Activation::Exponential => (x + e).exp(),
        Activation::Softmax | Activation::LogSoftmax => unreachable!("row-wise"),
    }
}

/// Checks one layer's f32 output `got` against an f64 evaluation of `node` on the f32 values
/// `x` it read; returns how many outputs were checked (rows with a non-finite input, and
/// outputs beyond the f32 range, are not).
///
/// Dense: the pre-activation's error is at most `gamma_n (sum_k |x_k w_kj| + |b_j|)` (Higham's
/// bound, `gamma_n = n u / (1 - n u)`, `u = 2^-24`), where `n` is the longest chain of roundings
/// a product goes through in sinter's fixed order: an FMA chain over a block of at most 128,
/// the block sums added one after another, then the bias. The activation multiplies that by its
/// largest slope nearby and adds its own error, in ulps of the true value
/// (`reference::activation_tolerance`); a thresholded ReLU adds its jump when the input is
/// within the error of the threshold. Softmax: a shift of at most E in its inputs scales
/// outputs by at most `e^(2E)`; log-softmax moves by at most `2E`; plus the row's own rounding
/// (`reference::row_tolerance`).
fn check_layer(node: &Node, x: &[f32], got: &[f32]) -> Result<usize, String> {
    let u = f64::from(f32::EPSILON) / 2.0;
    let gamma = |n: usize| n as f64 * u / (1.0 - n as f64 * u);
    let n = node.shape.last().copied().unwrap_or(1);
    let k = x.len() / (got.len() / n);
    let (act, weights) = match &node.layer {
        Layer::Dense { activation, .. } => (*activation, node.weights.as_ref()),
        Layer::Activation(act) => (*act, None),
        Layer::Dropout { .. } => {
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
        let row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
        let (mut pre, mut pe) = (row.clone(), vec![0.0; n]);
        if let Some(w) = weights {
            pre = vec![0.0; n];
            let chain = k.min(128) + k.div_ceil(128);
            for j in 0..n {
                let (mut s, mut mag) = (0.0, 0.0);
                for (kk, &xv) in row.iter().enumerate() {
                    let wk = f64::from(w.kernel[kk * n + j]);
                    s += xv * wk;
                    mag += (xv * wk).abs();
                }
                let b = w.bias.as_ref().map_or(0.0, |b| f64::from(b[j]));
                pre[j] = s + b;
                pe[j] = gamma(chain) * (mag + b.abs());
            }
        }
        let (want, tol) = activation_bound(act, &pre, &pe);
        for (j, ((&g, &w), &t)) in out.iter().zip(&want).zip(&tol).enumerate() {
            if !w.is_finite()
                || w.abs() > f64::from(f32::MAX) / 2.0
                || pre[j].abs() + pe[j] > f64::from(f32::MAX)
            {
                continue;
            }
            let err = (f64::from(g) - w).abs();
            if !(err <= t) {
                return Err(format!(
                    "{} row {r} output {j}: got {g}, f64 {w}, err {err:e} > bound {t:e} (pre-activation {}, {act})",
                    node.name, pre[j]
                ));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

/// The f64 activation of `pre` and, per element, the bound on the f32 result given
/// pre-activation errors `pe` (see [`check_layer`]).
fn activation_bound(act: Activation, pre: &[f64], pe: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut y = pre.to_vec();
    if act.is_row_wise() {
        reference::activation_row(act, &mut y);
        let e = pe.iter().copied().fold(0.0, f64::max);
        let own = reference::row_tolerance(act, pre, &y);
        let tol = y
            .iter()
            .zip(own)
            .map(|(y, own)| {
                own + if act == Activation::Softmax {
                    y * ((2.0 * e).exp() - 1.0)
                } else {
                    2.0 * e
                }
            })
            .collect();
        return (y, tol);
    }
    let tol = pre
        .iter()
        .zip(pe)
        .zip(y.iter_mut())
        .map(|((&x, &e), y)| {
            *y = reference::activation(act, x);
            let mut b = slope(act, x, e) * e + reference::activation_tolerance(act, x, *y);
            if let Activation::Relu {
                threshold,
                max_value,
                ..
            } = act
                && threshold != 0.0
                && (x - f64::from(threshold)).abs() <= e
            {
                b += f64::from(threshold).abs() + max_value.map_or(0.0, |m| f64::from(m).abs());
            }
            b
        })
        .collect();
    (y, tol)
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

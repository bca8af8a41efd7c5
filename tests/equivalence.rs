//! The proof: fused == separate bit for bit, on random models and hostile inputs; the same bits
//! on every ISA tier, every thread count and every batch position; and, for finite inputs,
//! agreement with a naive f64 reference within a stated error bound.
//!
//! `PROPTEST_CASES=N` raises the number of cases.

mod common;

use common::{Spec, first_diff, strategy};
use proptest::prelude::*;
use sinter::model::{Layer, Model};
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
        let separate = run(&model, &opts(false, spec.batch), &x);
        prop_assert_eq!(first_diff(&fused, &separate), None, "fused vs separate");
    }

    /// Invariant 2 (ISA): every tier this CPU has gives the same bits.
    #[test]
    fn every_tier_gives_the_same_bits(spec in strategy::spec()) {
        let model = spec.model();
        let x = spec.input(true);
        let want = run(&model, &opts(true, spec.batch).isa(Some(Isa::Generic)), &x);
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

    /// Invariant 2 (batch, threads): a row alone == that row inside the batch; 1-4 threads agree
    /// (layers above the parallel threshold split by rows or by column panels).
    #[test]
    fn rows_and_threads_give_the_same_bits(spec in strategy::spec()) {
        let model = spec.model();
        let x = spec.input(true);
        let per = spec.input;
        let out = model.output_shape().iter().product::<usize>();
        let want = run(&model, &opts(true, spec.batch), &x);
        for threads in [2, 3, 4] {
            let got = run(&model, &opts(true, spec.batch).threads(threads), &x);
            prop_assert_eq!(first_diff(&got, &want), None, "threads={}", threads);
        }
        let plan = Arc::new(model.compile(&opts(true, spec.batch)).unwrap());
        let mut s = plan.session().unwrap();
        for r in [0, spec.batch / 2, spec.batch - 1] {
            let alone = s.run(&x[r * per..(r + 1) * per]).unwrap();
            prop_assert_eq!(first_diff(alone, &want[r * out..(r + 1) * out]), None, "row {}", r);
        }
    }

    /// Accuracy: with finite inputs every output is within the propagated error bound of a
    /// naive f64 evaluation (see `error_bound`).
    #[test]
    fn matches_f64_reference_within_bound(spec in strategy::spec()) {
        let model = spec.model();
        let x = spec.input(false);
        let got = run(&model, &opts(true, spec.batch), &x);
        let (want, bound) = error_bound(&model, &x);
        for (i, ((&g, &w), &b)) in got.iter().zip(&want).zip(&bound).enumerate() {
            if !b.is_finite() || !w.is_finite() || w.abs() > f64::from(f32::MAX) / 2.0 {
                continue; // overflowed in f32 or the bound is vacuous
            }
            let err = (f64::from(g) - w).abs();
            prop_assert!(err <= b, "output {}: got {}, f64 {}, err {:e} > bound {:e}", i, g, w, err, b);
        }
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

/// The f64 reference output and, per element, a bound on |f32 plan - f64 reference|.
///
/// Propagated layer by layer: a Dense pre-activation's error is at most
/// `sum_k |w_kj| e_k + gamma_(K+1) (sum_k |x_k w_kj| + |b_j|)` (Higham's bound for a K-term FMA
/// chain plus the bias add, `gamma_n = n u / (1 - n u)`, `u = 2^-24`); an activation multiplies
/// it by its largest slope nearby and adds its own error (`reference::activation_tolerance`);
/// the discontinuous thresholded ReLU adds its jump when the input is within the error of the
/// threshold. Softmax: a shift of at most E in its inputs changes outputs by a factor of at most
/// `e^(2E)`, plus `(n + 16) u` relative rounding; log-softmax moves by at most `2E` plus rounding.
/// Where a value may leave the f32 range the bound becomes infinite (no claim).
/// The check allows twice the bound, for magnitudes taken from the reference rather than
/// the plan.
fn error_bound(model: &Model, input: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let u = f64::from(f32::EPSILON) / 2.0;
    let gamma = |n: usize| n as f64 * u / (1.0 - n as f64 * u);
    let nodes = model.nodes();
    let mut vals: Vec<Vec<f64>> = vec![vec![]; nodes.len()];
    let mut errs: Vec<Vec<f64>> = vec![vec![]; nodes.len()];
    let apply = |act: Activation, pre: &mut [f64], e: &mut [f64]| {
        if act.is_row_wise() {
            let emax = e.iter().copied().fold(0.0, f64::max);
            let n = pre.len();
            reference::activation_row(act, pre);
            for (y, e) in pre.iter().zip(e.iter_mut()) {
                *e = if act == Activation::Softmax {
                    y * ((2.0 * emax).exp() - 1.0) + (n + 16) as f64 * u * y
                } else {
                    2.0 * emax + (n + 16) as f64 * u * (y.abs() + 1.0)
                };
            }
            return;
        }
        for (x, e) in pre.iter_mut().zip(e.iter_mut()) {
            let y = reference::activation(act, *x);
            let mut b = slope(act, *x, *e) * *e + reference::activation_tolerance(act, *x, y);
            if let Activation::Relu {
                threshold,
                max_value,
                ..
            } = act
                && threshold != 0.0
                && (*x - f64::from(threshold)).abs() <= *e
            {
                b += f64::from(threshold).abs() + max_value.map_or(0.0, |m| f64::from(m).abs());
            }
            *x = y;
            *e = b;
        }
    };
    for (i, node) in nodes.iter().enumerate() {
        let (x, ex) = match node.inputs.first() {
            Some(&j) => (vals[j].clone(), errs[j].clone()),
            None => (
                input.iter().map(|&v| f64::from(v)).collect(),
                vec![0.0; input.len()],
            ),
        };
        let n = node.shape.last().copied().unwrap_or(1);
        let (v, e) = match &node.layer {
            Layer::Input => (x, ex),
            Layer::Dense { activation, .. } => {
                let w = node.weights.as_ref().unwrap();
                let k = w.kernel.len() / n;
                let (mut v, mut e) = (Vec::new(), Vec::new());
                for (row, erow) in x.chunks_exact(k).zip(ex.chunks_exact(k)) {
                    let mut pre = vec![0.0; n];
                    let mut pe = vec![0.0; n];
                    for j in 0..n {
                        let (mut s, mut mag, mut prop) = (0.0, 0.0, 0.0);
                        for kk in 0..k {
                            let wk = f64::from(w.kernel[kk * n + j]);
                            s += row[kk] * wk;
                            mag += (row[kk].abs() + erow[kk]) * wk.abs();
                            prop += wk.abs() * erow[kk];
                        }
                        let b = w.bias.as_ref().map_or(0.0, |b| f64::from(b[j]));
                        pre[j] = s + b;
                        pe[j] = prop + gamma(k + 1) * (mag + b.abs());
                    }
                    apply(*activation, &mut pre, &mut pe);
                    v.extend(pre);
                    e.extend(pe);
                }
                (v, e)
            }
            Layer::Activation(act) => {
                let (mut v, mut e) = (x, ex);
                for (r, er) in v.chunks_exact_mut(n).zip(e.chunks_exact_mut(n)) {
                    apply(*act, r, er);
                }
                (v, e)
            }
            Layer::Dropout { .. } | Layer::Flatten => (x, ex),
            other => unreachable!("the f64 bound covers Dense chains, not {other:?}"),
        };
        // Where the f32 computation may overflow, the bound says nothing.
        let e = v
            .iter()
            .zip(e)
            .map(|(v, e)| {
                if e.is_finite() && v.abs() + e <= f64::from(f32::MAX) {
                    e
                } else {
                    f64::INFINITY
                }
            })
            .collect();
        vals[i] = v;
        errs[i] = e;
    }
    let out = model.output();
    let bound = errs[out].iter().map(|e| 2.0 * e + 1e-30).collect();
    (std::mem::take(&mut vals[out]), bound)
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
    assert_eq!(first_diff(&fused, &separate), None);
}

//! Normalization layers at plan level, one thread:
//! - `batchnorm`: `Dense(1024) -> BatchNormalization -> relu -> Dense(10)` against the same
//!   model without the normalization (it is folded into the first Dense: the targets say
//!   within 3%);
//! - `batchnorm_unfolded`: `Dense(1024, relu) -> BatchNormalization` (the affine runs on the
//!   accumulator registers when fused) fused against separate;
//! - `layernorm`: `Dense(1024) -> LayerNormalization -> Dense(10)`, the normalization as a row
//!   epilogue (fused) against a separate row pass; `layernorm_k64` the same after a 64-wide
//!   input, where the GEMM is cheap and the normalization's extra trip over the output shows.
//!
//! `cargo bench --bench norm`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sinter::model::init::SplitMix64;
use sinter::model::{BatchNormalization, Dense, Input, LayerNormalization, Model};
use sinter::plan::CompileOptions;
use sinter::{Activation, Isa};
use std::sync::Arc;

const N: usize = 1024;

fn vecs(r: &mut SplitMix64, n: usize, scale: f32, offset: f32) -> Vec<f32> {
    (0..n).map(|_| offset + r.next_signed() * scale).collect()
}

fn bn(r: &mut SplitMix64) -> BatchNormalization {
    BatchNormalization::new().weights(
        vecs(r, N, 0.5, 1.0),
        vecs(r, N, 0.2, 0.0),
        vecs(r, N, 0.5, 0.0),
        vecs(r, N, 0.5, 1.0),
    )
}

/// `which`: 0 = Dense -> BN -> relu, 1 = Dense(relu) (no BN), 2 = Dense(relu) -> BN,
/// 3 = Dense -> LayerNorm; each then Dense(10).
fn model(which: usize, k: usize) -> Model {
    let mut r = SplitMix64::new(7);
    let x = Input::new([k]).unwrap();
    let w1 = vecs(&mut r, k * N, 0.05, 0.0);
    let b1 = Some(vecs(&mut r, N, 0.1, 0.0));
    let d = |act| {
        Dense::new(N)
            .activation(act)
            .weights(w1.clone(), b1.clone())
    };
    let h = match which {
        0 => {
            let h = d(Activation::Linear).call(&x).unwrap();
            let h = bn(&mut r).call(&h).unwrap();
            sinter::model::ActivationLayer::new(Activation::RELU)
                .call(&h)
                .unwrap()
        }
        1 => d(Activation::RELU).call(&x).unwrap(),
        2 => {
            let h = d(Activation::RELU).call(&x).unwrap();
            bn(&mut r).call(&h).unwrap()
        }
        _ => {
            let h = d(Activation::Linear).call(&x).unwrap();
            LayerNormalization::new()
                .weights(vecs(&mut r, N, 0.5, 1.0), vecs(&mut r, N, 0.2, 0.0))
                .call(&h)
                .unwrap()
        }
    };
    let y = Dense::new(10).call(&h).unwrap();
    Model::new(&x, &y).unwrap()
}

fn norm(c: &mut Criterion) {
    let isa = Isa::from_env().ok().flatten().unwrap_or_else(Isa::detect);
    // (group, input width, [(variant, model, fused); 2])
    type Variant = (&'static str, usize, bool);
    let cases: [(&str, usize, [Variant; 2]); 4] = [
        (
            "batchnorm",
            512,
            [("with_bn", 0, true), ("without_bn", 1, true)],
        ),
        (
            "batchnorm_unfolded",
            512,
            [("fused", 2, true), ("separate", 2, false)],
        ),
        (
            "layernorm",
            512,
            [("fused", 3, true), ("separate", 3, false)],
        ),
        (
            "layernorm_k64",
            64,
            [("fused", 3, true), ("separate", 3, false)],
        ),
    ];
    for (group, k, variants) in cases {
        let mut g = c.benchmark_group(group);
        for batch in [1usize, 64, 256] {
            g.throughput(Throughput::Elements((2 * batch * k * N) as u64));
            let x = vec![0.25f32; batch * k];
            for (name, which, fuse) in variants {
                let plan = Arc::new(
                    model(which, k)
                        .compile(
                            &CompileOptions::new()
                                .fuse(fuse)
                                .isa(Some(isa))
                                .threads(1)
                                .max_batch(batch),
                        )
                        .unwrap(),
                );
                let mut s = plan.session().unwrap();
                g.bench_with_input(BenchmarkId::new(name, batch), &(), |b, _| {
                    b.iter(|| s.run(&x).unwrap()[0])
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, norm);
criterion_main!(benches);

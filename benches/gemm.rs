//! Dense kernel vs `matrixmultiply::sgemm` (which packs both operands on every call).
//! GFLOP/s shown through `Throughput::Elements` = 2 m k n.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sinter::Isa;
use sinter::kernels::{self, EpOp, PackedB};
use sinter::model::init::SplitMix64;
use std::hint::black_box;

fn rand(n: usize, seed: u64) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..n).map(|_| r.next_signed()).collect()
}

fn gemm(c: &mut Criterion) {
    let isa = Isa::from_env().ok().flatten().unwrap_or_else(Isa::detect);
    let mut g = c.benchmark_group("gemm");
    for (m, k, n) in [
        (1, 784, 32),
        (1, 1024, 1024),
        // mobilenet_v3_small's classifier at batch 1: one row streams the weights.
        (1, 576, 1024),
        (1, 1024, 1000),
        (8, 1024, 1024),
        (64, 1024, 1024),
        (256, 1024, 1024),
        (1024, 1024, 1024),
        (8, 4096, 4096),
        (32, 4096, 4096),
        // An encoder's projections at sequence 128 (MiniLM: hidden 384, intermediate 1536).
        (128, 384, 384),
        (128, 384, 1536),
        (128, 1536, 384),
        // mobilenet_v3_small's 1x1 convolutions at 224x224: short K, narrow N.
        (3136, 16, 72),
        (3136, 16, 64),
        (3136, 16, 80),
        (784, 72, 24),
        (784, 24, 88),
        (196, 40, 240),
        (196, 240, 40),
        (49, 96, 576),
    ] {
        let a = rand(m * k, 1);
        let w = rand(k * n, 2);
        let mut out = vec![0.0f32; m * n];
        let packed = PackedB::pack(isa, &w, k, n).expect("packs");
        let id = format!("{m}x{k}x{n}");
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        g.bench_with_input(
            BenchmarkId::new(format!("sinter-{isa}"), &id),
            &(),
            |b, _| {
                b.iter(|| kernels::dense(isa, m, black_box(&a), &packed, &mut out, &[] as &[EpOp]))
            },
        );
        g.bench_with_input(BenchmarkId::new("matrixmultiply", &id), &(), |b, _| {
            b.iter(|| {
                // SAFETY: pointers and strides describe the live m x k, k x n and m x n buffers.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        black_box(a.as_ptr()),
                        k as isize,
                        1,
                        w.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        out.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                }
            })
        });
    }
    g.finish();
}

/// The same shapes with weights that come from memory, as in an encoder at batch 1: each call
/// uses the next of enough packed copies to overflow the last-level cache (64 MB of weights),
/// so every weight panel is a cold stream, not an L2 hit.
fn gemm_cold(c: &mut Criterion) {
    let isa = Isa::from_env().ok().flatten().unwrap_or_else(Isa::detect);
    let mut g = c.benchmark_group("gemm-cold");
    for (m, k, n) in [
        (128, 384, 384),
        (128, 384, 1536),
        (128, 1536, 384),
        (1024, 384, 1536),
    ] {
        let a = rand(m * k, 1);
        let copies = (64 << 20) / (4 * k * n);
        let packed: Vec<PackedB> = (0..copies)
            .map(|i| PackedB::pack(isa, &rand(k * n, 2 + i as u64), k, n).expect("packs"))
            .collect();
        let mut out = vec![0.0f32; m * n];
        let id = format!("{m}x{k}x{n}");
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        let mut next = 0;
        g.bench_with_input(
            BenchmarkId::new(format!("sinter-{isa}"), &id),
            &(),
            |b, _| {
                b.iter(|| {
                    next = (next + 1) % copies;
                    kernels::dense(
                        isa,
                        m,
                        black_box(&a),
                        &packed[next],
                        &mut out,
                        &[] as &[EpOp],
                    )
                })
            },
        );
    }
    g.finish();
}

/// mobilenet_v3_small's 1x1 convolutions with their epilogue (bias, ReLU): short K, so the
/// epilogue is a large part of each tile, and widths that end in a partial panel.
fn gemm_epilogue(c: &mut Criterion) {
    let isa = Isa::from_env().ok().flatten().unwrap_or_else(Isa::detect);
    let mut g = c.benchmark_group("gemm-epilogue");
    for (m, k, n) in [(3136, 16, 72), (784, 24, 88), (784, 72, 24), (196, 96, 40)] {
        let a = rand(m * k, 1);
        let packed = PackedB::pack(isa, &rand(k * n, 2), k, n).expect("packs");
        let bias = rand(n, 3);
        let ops = [EpOp::bias(&bias), EpOp::Act(sinter::Activation::RELU)];
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        g.bench_with_input(
            BenchmarkId::new(format!("sinter-{isa}"), format!("{m}x{k}x{n}+bias+relu")),
            &(),
            |b, _| b.iter(|| kernels::dense(isa, m, black_box(&a), &packed, &mut out, &ops)),
        );
    }
    g.finish();
}

criterion_group!(benches, gemm, gemm_cold, gemm_epilogue);
criterion_main!(benches);

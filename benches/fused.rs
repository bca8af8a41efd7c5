//! Fused vs separate activation on M=256, K=64, N=4096: the output (4 MiB) leaves L2, so a
//! separate pass costs a full extra trip through memory.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sinter::kernels::{self, EpOp, PackedB};
use sinter::model::init::SplitMix64;
use sinter::{Activation, Isa};
use std::hint::black_box;

fn fused(c: &mut Criterion) {
    let isa = Isa::from_env().ok().flatten().unwrap_or_else(Isa::detect);
    let (m, k, n) = (256, 64, 4096);
    let mut r = SplitMix64::new(3);
    let a: Vec<f32> = (0..m * k).map(|_| r.next_signed()).collect();
    let w: Vec<f32> = (0..k * n).map(|_| r.next_signed() * 0.2).collect();
    let bias: Vec<f32> = (0..n).map(|_| r.next_signed()).collect();
    let packed = PackedB::pack(isa, &w, k, n).expect("packs");
    let mut out = vec![0.0f32; m * n];
    let mut g = c.benchmark_group("fused_vs_separate");
    g.throughput(Throughput::Elements((2 * m * k * n) as u64));
    for act in Activation::ALL {
        let name = act.to_string();
        g.bench_with_input(BenchmarkId::new("fused", &name), &(), |b, _| {
            b.iter(|| {
                kernels::dense(
                    isa,
                    m,
                    black_box(&a),
                    &packed,
                    &mut out,
                    &[EpOp::bias(&bias), EpOp::Act(act)],
                )
            })
        });
        g.bench_with_input(BenchmarkId::new("separate", &name), &(), |b, _| {
            b.iter(|| {
                kernels::dense(
                    isa,
                    m,
                    black_box(&a),
                    &packed,
                    &mut out,
                    &[EpOp::bias(&bias)],
                );
                if act.is_row_wise() {
                    kernels::rows(isa, act, &mut out, n);
                } else {
                    kernels::activation(isa, act, &mut out);
                }
            })
        });
    }
    g.finish();
}

/// The same comparison where the output (64 MiB) cannot stay in the 32 MiB L3: M=1024, K=16,
/// N=16384. Here a separate pass is a real extra trip to DRAM.
fn fused_dram(c: &mut Criterion) {
    let isa = Isa::from_env().ok().flatten().unwrap_or_else(Isa::detect);
    let (m, k, n) = (1024, 16, 16384);
    let mut r = SplitMix64::new(5);
    let a: Vec<f32> = (0..m * k).map(|_| r.next_signed()).collect();
    let w: Vec<f32> = (0..k * n).map(|_| r.next_signed() * 0.2).collect();
    let bias: Vec<f32> = (0..n).map(|_| r.next_signed()).collect();
    let packed = PackedB::pack(isa, &w, k, n).expect("packs");
    let mut out = vec![0.0f32; m * n];
    let mut g = c.benchmark_group("fused_vs_separate_dram");
    g.sample_size(20);
    g.throughput(Throughput::Elements((2 * m * k * n) as u64));
    for act in [
        Activation::RELU,
        Activation::Gelu { approximate: false },
        Activation::Sigmoid,
    ] {
        let name = act.to_string();
        g.bench_with_input(BenchmarkId::new("fused", &name), &(), |b, _| {
            b.iter(|| {
                kernels::dense(
                    isa,
                    m,
                    black_box(&a),
                    &packed,
                    &mut out,
                    &[EpOp::bias(&bias), EpOp::Act(act)],
                )
            })
        });
        g.bench_with_input(BenchmarkId::new("separate", &name), &(), |b, _| {
            b.iter(|| {
                kernels::dense(
                    isa,
                    m,
                    black_box(&a),
                    &packed,
                    &mut out,
                    &[EpOp::bias(&bias)],
                );
                kernels::activation(isa, act, &mut out);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, fused, fused_dram);
criterion_main!(benches);

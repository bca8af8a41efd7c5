//! The machine's single-core FMA peak per tier (12 independent chains), so GEMM figures can be
//! read as a fraction of it.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sinter::Isa;
use sinter::kernels::fma_peak_probe;
use std::hint::black_box;

fn peak(c: &mut Criterion) {
    let mut g = c.benchmark_group("fma_peak");
    let iters = 100_000;
    for isa in Isa::available().into_iter().filter(|i| *i != Isa::Generic) {
        let (flops, _) = fma_peak_probe(isa, 1);
        g.throughput(Throughput::Elements((flops * iters) as u64));
        g.bench_with_input(BenchmarkId::new(isa.name(), iters), &iters, |b, &n| {
            b.iter(|| fma_peak_probe(isa, black_box(n)))
        });
    }
    g.finish();
}

criterion_group!(benches, peak);
criterion_main!(benches);

//! The built-in models at batch 1, 8, 64, 256, one thread, fused plans; and two threads on
//! sinter's own workers against a caller's rayon pool (`CompileOptions::pool`).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sinter::builtin;
use sinter::model::init::SplitMix64;
use sinter::plan::CompileOptions;
use std::sync::Arc;

fn models(c: &mut Criterion) {
    let mut g = c.benchmark_group("models");
    for name in builtin::NAMES {
        let model = builtin::by_name(name).expect("built-in");
        let opts = CompileOptions::new().threads(1);
        let plan = Arc::new(model.compile(&opts).expect("compiles"));
        let mut session = plan.session().expect("arena");
        for batch in [1usize, 8, 64, 256] {
            let mut r = SplitMix64::new(batch as u64);
            let x: Vec<f32> = (0..batch * plan.input_len())
                .map(|_| r.next_signed())
                .collect();
            g.throughput(Throughput::Elements(
                (plan.flops_per_sample() * batch) as u64,
            ));
            g.bench_with_input(BenchmarkId::new(name, batch), &(), |b, _| {
                b.iter(|| session.run(&x).expect("runs")[0])
            });
        }
    }
    g.finish();
}

fn pools(c: &mut Criterion) {
    let mut g = c.benchmark_group("pools");
    let rayon = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("rayon pool"),
    );
    for name in ["mnist-mlp", "ffn"] {
        let model = builtin::by_name(name).expect("built-in");
        let own = model
            .compile(&CompileOptions::new().threads(2))
            .expect("compiles");
        let on_rayon = model
            .compile(&CompileOptions::new().pool(rayon.clone()))
            .expect("compiles");
        for batch in [64usize, 256] {
            let mut r = SplitMix64::new(batch as u64);
            let x: Vec<f32> = (0..batch * own.input_len())
                .map(|_| r.next_signed())
                .collect();
            for (pool, plan) in [("workers", &own), ("rayon", &on_rayon)] {
                let id = BenchmarkId::new(format!("{name}/{pool}"), batch);
                g.bench_with_input(id, &(), |b, _| b.iter(|| plan.run(&x).expect("runs")[0]));
            }
        }
    }
    g.finish();
}

criterion_group!(benches, models, pools);
criterion_main!(benches);

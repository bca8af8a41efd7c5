//! The attention kernel alone, one sample of MiniLM's shapes (12 heads of 32, 128 positions):
//! - `keys`: a key mask that keeps every key (what a BERT `attention_mask` of ones gives);
//! - `causal`: every key, each query seeing only the keys up to its own;
//! - `padded`: a mask that keeps the first 96 of 128 keys.
//!
//! Throughput counts `4 * heads * S * T * d` flops (the scores and the weighted sum).
//!
//! `cargo bench --bench attention`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sinter::Isa;
use sinter::kernels::{Attend, KeyMask, NoKeys, attention};
use sinter::model::init::SplitMix64;

const S: usize = 128;
const HEADS: usize = 12;
const D: usize = 32;

fn bench(c: &mut Criterion) {
    let mut r = SplitMix64::new(3);
    let mut vals = |n: usize| (0..n).map(|_| r.next_signed()).collect::<Vec<f32>>();
    let w = HEADS * D;
    let (q, k, v) = (vals(S * w), vals(S * w), vals(S * w));
    let ones = vec![1.0f32; S];
    let padded: Vec<f32> = (0..S).map(|j| f32::from(u8::from(j < 96))).collect();
    let mut out = vec![0.0f32; S * w];
    let mut scratch = vec![0.0f32; Attend::scratch_len(S, D, D)];
    let mut g = c.benchmark_group("attention");
    g.throughput(Throughput::Elements((4 * HEADS * S * S * D) as u64));
    for isa in Isa::available() {
        for (name, mask, causal) in [
            ("keys", KeyMask::Keys(&ones), false),
            ("causal", KeyMask::All, true),
            ("padded", KeyMask::Keys(&padded), false),
        ] {
            let a = Attend {
                q: &q,
                k: &k,
                v: &v,
                ldq: w,
                ldk: w,
                ldv: w,
                ldo: w,
                queries: S,
                keys: S,
                heads: HEADS,
                dk: D,
                dv: D,
                scale: 1.0 / (D as f32).sqrt(),
                causal,
                mask,
                no_keys: NoKeys::Uniform,
            };
            g.bench_function(BenchmarkId::new(name, isa), |b| {
                b.iter(|| attention(isa, &a, &mut out, &mut scratch))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

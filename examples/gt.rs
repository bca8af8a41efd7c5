use sinter::Isa;
use sinter::kernels::{self, EpOp, PackedB};
use sinter::model::init::SplitMix64;
use std::hint::black_box;
use std::time::Instant;
fn rand(n: usize, seed: u64) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..n).map(|_| r.next_signed()).collect()
}
fn main() {
    let isa = Isa::detect();
    let shapes: Vec<(usize, usize, usize)> = std::env::args()
        .skip(1)
        .map(|s| {
            let v: Vec<usize> = s.split('x').map(|x| x.parse().unwrap()).collect();
            (v[0], v[1], v[2])
        })
        .collect();
    for (m, k, n) in shapes {
        let a = rand(m * k, 1);
        let packed = PackedB::pack(isa, &rand(k * n, 2), k, n).expect("packs");
        let bias = rand(n, 3);
        let ops = [EpOp::bias(&bias), EpOp::Act(sinter::Activation::RELU)];
        let mut out = vec![0.0f32; m * n];
        let mut ts = vec![];
        let iters = (200_000_000 / (m * k * n + 1000)).clamp(50, 20000);
        for _ in 0..iters {
            let t = Instant::now();
            kernels::dense(isa, m, black_box(&a), &packed, &mut out, &ops);
            ts.push(t.elapsed().as_secs_f64() * 1e6);
        }
        ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{m}x{k}x{n} min {:.2} p10 {:.2} med {:.2} us",
            ts[0],
            ts[ts.len() / 10],
            ts[ts.len() / 2]
        );
    }
}

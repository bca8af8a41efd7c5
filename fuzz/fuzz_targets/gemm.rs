//! The GEMM kernels on fuzzer-chosen shapes (M, N, K of 1, MR/NR remainders, K across KC,
//! overlapping or spaced rows) with exact-length operands, so AddressSanitizer reports any
//! access outside them; every available tier must give the portable tier's bits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sinter::Activation;
use sinter::kernels::{self, EpOp, Isa, PackedB, Strided};

fuzz_target!(|p: (u8, u8, u16, u8, u8, u8, u64)| {
    let (m, n, k, lda_extra, ldc_extra, act, seed) = p;
    let (m, n, k) = (usize::from(m % 40) + 1, usize::from(n % 80) + 1, usize::from(k % 1100) + 1);
    // lda below k makes rows overlap (an implicit im2col); above k spaces them.
    let lda = (k + usize::from(lda_extra % 8)).saturating_sub(usize::from(lda_extra / 128) * k / 2).max(1);
    let ldc = n + usize::from(ldc_extra % 8);
    let act = Activation::ALL[usize::from(act) % Activation::ALL.len()];
    let mut s = seed | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let a: Vec<f32> = (0..(m - 1) * lda + k).map(|_| next()).collect();
    let w: Vec<f32> = (0..k * n).map(|_| next()).collect();
    let bias: Vec<f32> = (0..n).map(|_| next()).collect();
    let ops = [EpOp::bias(&bias), EpOp::Act(act)];
    let run = |isa: Isa| {
        let packed = PackedB::pack(isa, &w, k, n).expect("packs");
        let mut c = vec![0.0f32; (m - 1) * ldc + n];
        kernels::dense_strided(isa, m, Strided::new(&a, lda, &mut c, ldc), &packed, &ops);
        c
    };
    let want = run(Isa::Generic);
    for isa in Isa::available() {
        let got = run(isa);
        for r in 0..m {
            for j in 0..n {
                let (g, w) = (got[r * ldc + j], want[r * ldc + j]);
                assert_eq!(g.to_bits(), w.to_bits(), "{isa} m{m} n{n} k{k} lda{lda} ldc{ldc} {act}");
            }
        }
    }
});

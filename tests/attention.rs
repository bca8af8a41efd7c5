//! Attention on random encoder blocks: `x [S, D]` and a key mask `[S]` in; query, key and value
//! Dense projections, multi-head attention (causal or not), an output Dense, a residual add
//! and a LayerNormalization. Checked, bit for bit: fused == separate, every tier, 1 and 2
//! threads, a sample alone == in the batch, and — the promise no peer makes — a sequence
//! alone == the same sequence padded to a longer length with masked garbage after it. And
//! agreement with the float64 reference.
//!
//! `PROPTEST_CASES=N` raises the number of cases.

use proptest::prelude::*;
use sinter::model::init::SplitMix64;
use sinter::model::{Add, Attention, DType, Dense, Input, LayerNormalization, Model, Tensor};
use sinter::plan::{CompileOptions, Values};
use sinter::{Isa, reference};
use std::sync::Arc;

#[derive(Clone, Debug)]
struct Net {
    /// Length of each sample's sequence (the rest of the model's `s` is padding).
    lens: Vec<usize>,
    s: usize,
    d: usize,
    heads: usize,
    dk: usize,
    dv: usize,
    causal: bool,
    /// The mask marks padding (PyTorch's sense) rather than keeping (Keras's).
    pads: bool,
    seed: u64,
}

fn vecs(r: &mut SplitMix64, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| r.next_signed() * scale).collect()
}

fn dense(r: &mut SplitMix64, x: &Tensor, units: usize) -> Tensor {
    let k = *x.shape().last().unwrap();
    let s = (3.0 / k as f32).sqrt();
    Dense::new(units)
        .weights(vecs(r, k * units, s), Some(vecs(r, units, 0.3)))
        .call(x)
        .unwrap()
}

impl Net {
    /// The block for sequences of `s` steps (the weights do not depend on `s`).
    fn model(&self, s: usize) -> Model {
        self.model_with_mask(s, DType::F32)
    }

    /// The block with a mask input of `dtype`.
    fn model_with_mask(&self, s: usize, dtype: DType) -> Model {
        let mut r = SplitMix64::new(self.seed);
        let x = Input::new([s, self.d]).unwrap();
        let mask = Input::typed([s], dtype, Some("mask")).unwrap();
        let (hk, hv) = (self.heads * self.dk, self.heads * self.dv);
        let q = dense(&mut r, &x, hk);
        let k = dense(&mut r, &x, hk);
        let v = dense(&mut r, &x, hv);
        let a = Attention::new(self.heads)
            .causal(self.causal)
            .mask_pads(self.pads)
            .call_masked(&q, &k, &v, &mask)
            .unwrap();
        let o = dense(&mut r, &a, self.d);
        let y = Add::new().call(&[&x, &o]).unwrap();
        let g = vecs(&mut r, self.d, 0.5).iter().map(|v| v + 1.0).collect();
        let y = LayerNormalization::new()
            .weights(g, vecs(&mut r, self.d, 0.2))
            .call(&y)
            .unwrap();
        Model::new([&x, &mask], &y).unwrap()
    }

    /// A mask that keeps `n` positions.
    fn kept(&self, n: usize) -> Vec<f32> {
        vec![if self.pads { 0.0 } else { 1.0 }; n]
    }

    /// Inputs for sequences padded to `s` steps: the padding holds garbage and is masked.
    fn inputs(&self, s: usize) -> (Vec<f32>, Vec<f32>) {
        let mut r = SplitMix64::new(self.seed ^ 0xda7a);
        let (mut x, mut mask) = (Vec::new(), Vec::new());
        for &len in &self.lens {
            let real = vecs(&mut r, len * self.d, 2.0);
            x.extend(&real);
            x.extend((0..(s - len) * self.d).map(|i| [1e30, -7.0, 3.0][i % 3]));
            mask.extend((0..s).map(|i| if (i < len) != self.pads { 1.0 } else { 0.0 }));
        }
        (x, mask)
    }
}

fn net() -> impl Strategy<Value = Net> {
    (
        1usize..4,
        1usize..9,
        1usize..4,
        1usize..20,
        1usize..20,
        1usize..40,
    )
        .prop_flat_map(|(batch, s, heads, dk, dv, d)| {
            (
                proptest::collection::vec(1..=s, batch),
                Just((s, heads, dk, dv, d)),
                any::<(bool, bool)>(),
                any::<u64>(),
            )
        })
        .prop_map(|(lens, (s, heads, dk, dv, d), (causal, pads), seed)| Net {
            lens,
            s,
            d,
            heads,
            dk,
            dv,
            causal,
            pads,
            seed,
        })
}

fn run(model: &Model, opts: CompileOptions, x: &[f32], mask: &[f32]) -> Vec<u32> {
    let plan = Arc::new(model.compile(&opts).expect("compiles"));
    let out = plan.run_all(&[Values::F32(x), Values::F32(mask)]).unwrap();
    out[0].iter().map(|v| v.to_bits()).collect()
}

fn opts(fuse: bool, batch: usize) -> CompileOptions {
    CompileOptions::new().fuse(fuse).max_batch(batch).threads(1)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn attention_blocks_keep_every_invariant(net in net()) {
        let (s, d, n) = (net.s, net.d, net.lens.len());
        let model = net.model(s);
        let (x, mask) = net.inputs(s);
        let want = run(&model, opts(true, n), &x, &mask);
        prop_assert!(want == run(&model, opts(false, n), &x, &mask), "fused != separate");
        for isa in Isa::available() {
            prop_assert!(want == run(&model, opts(true, n).isa(Some(isa)), &x, &mask), "isa {}", isa);
        }
        let two = opts(true, n).threads(2).parallel_flops(0);
        prop_assert!(want == run(&model, two, &x, &mask), "2 threads");
        let per = s * d;
        for (b, &len) in net.lens.iter().enumerate() {
            let xb = &x[b * per..(b + 1) * per];
            let mb = &mask[b * s..(b + 1) * s];
            prop_assert!(
                want[b * per..(b + 1) * per] == run(&model, opts(true, 1), xb, mb)[..],
                "sample {} alone", b
            );
            // The sequence alone, at its own length, without padding: its real steps are the
            // same bits as in the padded batch.
            let short = net.model(len);
            let alone = run(&short, opts(true, 1), &xb[..len * d], &net.kept(len));
            prop_assert!(
                want[b * per..b * per + len * d] == alone[..],
                "sample {} of length {} padded to {} differs from it alone", b, len, s
            );
        }
    }

    #[test]
    fn one_plan_runs_every_sequence_length(net in net(), threads in 1usize..3) {
        let (s, d, n) = (net.s, net.d, net.lens.len());
        let mut model = net.model(s);
        model.set_seq_input(0).unwrap();
        model.set_seq_input(1).unwrap();
        let o = opts(true, n).threads(threads).parallel_flops(0);
        let plan = Arc::new(model.compile(&o).unwrap());
        prop_assert_eq!(plan.seq_range(), Some(1..=s));
        let mut session = plan.session().unwrap();
        let (x, _) = net.inputs(s);
        for &len in &net.lens {
            // Every sample cut to `len` steps, in one batch of that length.
            let xs: Vec<f32> = x.chunks(s * d).flat_map(|c| c[..len * d].to_vec()).collect();
            let ones = net.kept(n * len);
            let got: Vec<u32> = session
                .run_seq(len, &[Values::F32(&xs), Values::F32(&ones)])
                .unwrap()
                .get(0)
                .iter()
                .map(|v| v.to_bits())
                .collect();
            prop_assert_eq!(got.len(), n * len * d);
            // The model built for that length, compiled for it alone.
            let fixed = run(&net.model(len), opts(true, n), &xs, &ones);
            prop_assert!(got == fixed, "length {} of {}: the variable plan differs", len, s);
        }
    }

    #[test]
    fn an_int64_mask_gives_the_bits_of_a_float_one(net in net()) {
        let (x, mask) = net.inputs(net.s);
        let n = net.lens.len();
        let want = run(&net.model(net.s), opts(true, n), &x, &mask);
        let ints: Vec<i64> = mask.iter().map(|&m| m as i64).collect();
        let model = net.model_with_mask(net.s, DType::I64);
        let plan = Arc::new(model.compile(&opts(true, n)).unwrap());
        let got = plan.run_all(&[Values::F32(&x), Values::I64(&ints)]).unwrap();
        prop_assert!(got[0].iter().map(|v| v.to_bits()).collect::<Vec<_>>() == want);
    }

    #[test]
    fn attention_blocks_match_the_f64_reference(net in net()) {
        let model = net.model(net.s);
        let (x, mask) = net.inputs(net.s);
        // Finite padding for the reference (garbage in masked steps still flows through the
        // per-step layers).
        let x: Vec<f32> = x.iter().map(|&v| v.clamp(-10.0, 10.0)).collect();
        let got = run(&model, opts(true, net.lens.len()), &x, &mask);
        let want = reference::run_all(&model, &[Values::F32(&x), Values::F32(&mask)]).unwrap();
        for (i, (&g, &r)) in got.iter().zip(&want[0]).enumerate() {
            let g = f64::from(f32::from_bits(g));
            // A layer-normalized output: values of order one, a few thousand ulps at most.
            prop_assert!((g - r).abs() <= 2e-4 * (1.0 + r.abs()), "value {}: {} vs {}", i, g, r);
        }
    }
}

/// Self-attention's three projections become one GEMM (`fuse_qkv`) with the bits of three;
/// projections that one GEMM cannot replace stay apart: a cross-attention (keys and values
/// from another input), a projection something else also reads, and projections that differ
/// in having a bias.
#[test]
fn projections_fuse_into_one_gemm_only_where_it_computes_the_same() {
    let mut r = SplitMix64::new(5);
    let (s, d, heads) = (6, 12, 2);
    let x = Input::new([s, d]).unwrap();
    let y = Input::new([s, d]).unwrap();
    let bare = |r: &mut SplitMix64, t: &Tensor| {
        Dense::new(8)
            .use_bias(false)
            .weights(vecs(r, d * 8, 0.4), None)
            .call(t)
            .unwrap()
    };
    let attend = |q: &Tensor, k: &Tensor, v: &Tensor| Attention::new(heads).call(q, k, v).unwrap();
    let (q, k, v) = (
        dense(&mut r, &x, 8),
        dense(&mut r, &x, 8),
        dense(&mut r, &x, 6),
    );
    let own = attend(&q, &k, &v);
    let (k2, v2) = (dense(&mut r, &y, 8), dense(&mut r, &y, 6));
    let cross = attend(&q, &k2, &v2);
    let (q3, k3, v3) = (
        dense(&mut r, &x, 8),
        dense(&mut r, &x, 8),
        dense(&mut r, &x, 8),
    );
    let shared = attend(&q3, &k3, &v3);
    let shared = Add::new().call(&[&shared, &q3]).unwrap();
    let (q4, k4, v4) = (bare(&mut r, &x), dense(&mut r, &x, 8), bare(&mut r, &x));
    let mixed = attend(&q4, &k4, &v4);
    let mut rx = SplitMix64::new(9);
    let data = vecs(&mut rx, 2 * s * d, 2.0);
    let ins = [Values::F32(&data[..s * d]), Values::F32(&data[s * d..])];
    for (name, out, fuses) in [
        ("self", &own, true),
        ("cross", &cross, false),
        ("read elsewhere", &shared, false),
        ("bias on some", &mixed, false),
    ] {
        let model = Model::new([&x, &y], out).unwrap();
        let plan = |fuse: bool| model.compile(&opts(fuse, 1)).unwrap();
        let fused = plan(true);
        assert_eq!(
            format!("{fused}").contains("q k v packed"),
            fuses,
            "{name}:\n{fused}"
        );
        let bits = |p: sinter::plan::Plan| -> Vec<u32> {
            p.run_all(&ins).unwrap()[0]
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        assert_eq!(bits(fused), bits(plan(false)), "{name}: fused != separate");
    }
}

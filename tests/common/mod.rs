//! Random models and inputs shared by the integration tests.
#![allow(dead_code)]

pub mod bound;

/// Whether two outputs are the same bits, value for value.
pub fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// `model` compiled with `opts`, run once on `x`.
pub fn run_once(model: &Model, x: &[f32], opts: sinter::plan::CompileOptions) -> Vec<f32> {
    let plan = std::sync::Arc::new(model.compile(&opts).unwrap());
    plan.run(x).unwrap()
}

/// Every invariant on one-input `model` and a batch `x` of `batch` samples, bit for bit: fused
/// == separate, 2 and 3 threads with every step split, every step that can in a stretch (a
/// sample at a time through them all), each ISA tier, each sample alone == in the batch. `Ok(false)`: every output is NaN, nothing to compare.
pub fn every_invariant(model: &Model, x: &[f32], batch: usize) -> Result<bool, String> {
    use sinter::plan::CompileOptions;
    let opts = |fuse, threads, isa| {
        CompileOptions::new()
            .fuse(fuse)
            .threads(threads)
            .isa(isa)
            .max_batch(batch)
    };
    let base = run_once(model, x, opts(true, 1, None));
    if base.iter().all(|v| v.is_nan()) {
        return Ok(false);
    }
    let check = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
    let separate = run_once(model, x, opts(false, 1, None));
    check(same_bits(&base, &separate), "fused != separate".into())?;
    for t in [2, 3] {
        let got = run_once(model, x, opts(true, t, None).parallel_flops(0));
        check(same_bits(&base, &got), format!("threads {t}"))?;
    }
    // Every step that can in a stretch (a sample at a time through them all, rows split).
    let got = run_once(
        model,
        x,
        opts(true, 2, None).parallel_flops(0).stretch_bytes(1),
    );
    check(same_bits(&base, &got), "stretch".into())?;
    for isa in sinter::Isa::available() {
        let got = run_once(model, x, opts(true, 1, Some(isa)));
        check(same_bits(&base, &got), format!("isa {isa}"))?;
    }
    let (per_in, per_out) = (x.len() / batch, base.len() / batch);
    let plan = std::sync::Arc::new(model.compile(&opts(true, 1, None)).unwrap());
    let mut s = plan.session().unwrap();
    for r in 0..batch {
        let alone = s.run(&x[r * per_in..(r + 1) * per_in]).unwrap();
        let batched = &base[r * per_out..(r + 1) * per_out];
        check(same_bits(alone, batched), format!("sample {r}"))?;
    }
    Ok(true)
}

/// The fixture folders under `tests/fixtures/` with a `manifest.json` naming their cases.
pub const MANIFESTS: [&str; 10] = [
    "",
    "conv/",
    "conv2d/",
    "graphs/",
    "exporters/",
    "torchvision/",
    "legacy/",
    "layout/",
    "transformers/",
    "recurrent/",
];

use sinter::Activation;
use sinter::model::init::SplitMix64;
use sinter::model::{ActivationLayer, Dense, Dropout, Input, Model, Tensor};

/// One layer of a random model.
#[derive(Clone, Debug)]
pub enum LayerSpec {
    /// Dense(units, ALL[act]) with or without bias.
    Dense {
        units: usize,
        act: usize,
        bias: bool,
    },
    /// A separate Activation(ALL[act]).
    Act(usize),
    /// Dropout (identity).
    Dropout,
}

/// A random model and batch.
#[derive(Clone, Debug)]
pub struct Spec {
    pub input: usize,
    pub layers: Vec<LayerSpec>,
    pub batch: usize,
    pub seed: u64,
}

impl Spec {
    pub fn model(&self) -> Model {
        let (x, layers) = self.tensors();
        Model::new(&x, layers.last().unwrap_or(&x)).unwrap()
    }

    /// The model cut after each of its layers: `prefixes()[i]` outputs layer `i`.
    pub fn prefixes(&self) -> Vec<Model> {
        let (x, layers) = self.tensors();
        layers.iter().map(|h| Model::new(&x, h).unwrap()).collect()
    }

    /// The input and every layer's output.
    fn tensors(&self) -> (Tensor, Vec<Tensor>) {
        let x = Input::new([self.input]).unwrap();
        let mut out = Vec::new();
        let mut h = x.clone();
        let mut rng = SplitMix64::new(self.seed);
        for l in &self.layers {
            h = match *l {
                LayerSpec::Dense { units, act, bias } => {
                    let k = h.shape()[0];
                    // Glorot-like scale keeps activations in a useful range through 6 layers.
                    let s = (3.0 / k as f32).sqrt();
                    let w = (0..k * units).map(|_| rng.next_signed() * s).collect();
                    let b = bias.then(|| (0..units).map(|_| rng.next_signed() * 0.5).collect());
                    Dense::new(units)
                        .activation(Activation::ALL[act])
                        .use_bias(bias)
                        .weights(w, b)
                        .call(&h)
                        .unwrap()
                }
                LayerSpec::Act(a) => ActivationLayer::new(Activation::ALL[a]).call(&h).unwrap(),
                LayerSpec::Dropout => Dropout::new(0.5).call(&h).unwrap(),
            };
            out.push(h.clone());
        }
        (x, out)
    }

    /// `batch x input` values. Without `specials`, finite values in (-3, 3). With `specials`,
    /// each row is one of: finite (about half of them); finite with ±0, subnormals and 1e-45
    /// scattered in; tiny (|x| < 1e-38, some exact zeros: the dot products land on ±0 and
    /// subnormals, which reach the epilogue when there is no bias); one ±inf at a random
    /// position (±inf per output, by the sign of each weight); huge values (±1e30 to ±3e38:
    /// sums overflow in some outputs and not in others); one NaN at a random position.
    pub fn input(&self, specials: bool) -> Vec<f32> {
        input_rows(self.seed, self.batch, self.input, specials)
    }
}

/// See [`Spec::input`]: `rows x width` values from `seed`, hostile values placed per row and
/// per position when `specials`.
pub fn input_rows(seed: u64, rows: usize, width: usize, specials: bool) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed ^ 0x1234_5678);
    let mut x = Vec::with_capacity(rows * width);
    for _ in 0..rows {
        let kind = if specials { rng.next_u64() % 12 } else { 0 };
        let at = (rng.next_u64() % width as u64) as usize;
        for i in 0..width {
            let r = rng.next_u64();
            let v = rng.next_signed();
            x.push(match kind {
                // finite rows (0..=5)
                6 if r.is_multiple_of(4) => {
                    const S: [f32; 6] = [0.0, -0.0, 1e-40, -3e-39, 1e-45, -1e-45];
                    S[(r / 4 % S.len() as u64) as usize]
                }
                7 if r.is_multiple_of(5) => 0.0,
                7 => v * 1e-38,
                8 if i == at => {
                    if r.is_multiple_of(2) {
                        f32::INFINITY
                    } else {
                        f32::NEG_INFINITY
                    }
                }
                9 => v * if r.is_multiple_of(2) { 1e30 } else { 3e38 },
                10 if i == at => f32::NAN,
                _ => v * 3.0,
            });
        }
    }
    x
}

/// Checks that a bitwise comparison compares something: not every value is NaN.
pub fn some_not_nan(v: &[f32]) -> bool {
    v.iter().any(|x| !x.is_nan())
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Index of the first element whose bits differ, with both values.
pub fn first_diff(a: &[f32], b: &[f32]) -> Option<(usize, f32, f32)> {
    a.iter()
        .zip(b)
        .enumerate()
        .find(|(_, (x, y))| x.to_bits() != y.to_bits())
        .map(|(i, (x, y))| (i, *x, *y))
}

pub mod strategy {
    use super::{LayerSpec, Spec};
    use proptest::prelude::*;
    use sinter::Activation;

    fn layer() -> impl Strategy<Value = Vec<LayerSpec>> {
        (
            1usize..=300,
            0..Activation::ALL.len(),
            any::<bool>(),
            prop_oneof![6 => Just(None), 3 => (0..Activation::ALL.len()).prop_map(Some), 1 => Just(Some(99))],
        )
            .prop_map(|(units, act, bias, extra)| {
                let mut v = vec![LayerSpec::Dense { units, act, bias }];
                match extra {
                    Some(99) => v.push(LayerSpec::Dropout),
                    Some(a) => v.push(LayerSpec::Act(a)),
                    None => {}
                }
                v
            })
    }

    /// 1-6 Dense layers, widths 1-300, activations fused or as separate layers, batch 1-70.
    pub fn spec() -> impl Strategy<Value = Spec> {
        (
            1usize..=300,
            prop::collection::vec(layer(), 1..=6),
            1usize..=70,
            any::<u64>(),
        )
            .prop_map(|(input, layers, batch, seed)| Spec {
                input,
                layers: layers.into_iter().flatten().collect(),
                batch,
                seed,
            })
    }
}

/// A float64 `.npy` (the fixtures' NumPy reference) rounded to f32: exact to half an ulp, far
/// below every golden tolerance.
pub fn read_f64_as_f32(path: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = npyz::NpyFile::new(&bytes[..]).expect("a .npy file");
    file.into_vec::<f64>()
        .expect("float64 values")
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// The golden tests' comparison of sinter's `got` with a framework's `want`, both f32 rows of
/// `width`: every value within `atol + rtol |want|` (NaN where the framework has NaN). Rows of
/// probabilities (softmax outputs: every value in [0, 1], each row summing to 1) are compared
/// relatively instead, however small a value is: a logit error of E moves a probability by a
/// factor of at most `e^(2E)`, so `|got - want| <= (2 atol + rtol) |want|`, with 1e-37 of slack
/// for frameworks that flush subnormals. Returns the largest difference.
pub fn golden_diff(
    got: &[f32],
    want: &[f32],
    width: usize,
    atol: f32,
    rtol: f32,
) -> Result<f32, String> {
    if got.len() != want.len() {
        return Err(format!("{} values, expected {}", got.len(), want.len()));
    }
    let mut worst = 0.0f32;
    for (r, (g_row, w_row)) in got.chunks(width).zip(want.chunks(width)).enumerate() {
        let probabilities = probability_row(w_row);
        for (j, (&g, &w)) in g_row.iter().zip(w_row).enumerate() {
            let d = (g - w).abs();
            let ok = if probabilities {
                d <= 1e-37 + (2.0 * atol + rtol) * w.abs()
            } else {
                d <= atol + rtol * w.abs()
            };
            if !ok || g.is_nan() != w.is_nan() {
                let what = if probabilities { "probability " } else { "" };
                return Err(format!(
                    "row {r}, {what}value {j}: sinter {g} vs framework {w} (|diff| {d:e})"
                ));
            }
            worst = worst.max(d);
        }
    }
    Ok(worst)
}

/// The golden tests' rule against a float64 reference `exact`: sinter's largest error may be at
/// most 4x the framework's plus 4e-6, errors measured relative to `|exact|` in probability rows
/// (see [`golden_diff`]) and absolute elsewhere. Returns (sinter's, the framework's) errors.
pub fn f64_diff(
    got: &[f32],
    want: &[f32],
    exact: &[f32],
    width: usize,
) -> Result<(f32, f32), String> {
    let err = |v: &[f32]| {
        let mut worst = 0.0f32;
        for (v_row, x_row) in v.chunks(width).zip(exact.chunks(width)) {
            let probabilities = probability_row(x_row);
            for (&v, &x) in v_row.iter().zip(x_row) {
                let d = (v - x).abs();
                // Relative where the value is a normal f32 (frameworks may flush subnormals).
                let relative = probabilities && x.abs() >= f32::MIN_POSITIVE;
                worst = worst.max(if relative { d / x.abs() } else { d });
            }
        }
        worst
    };
    let (ours, theirs) = (err(got), err(want));
    if ours > 4.0 * theirs + 4e-6 {
        return Err(format!(
            "sinter is {ours:e} from the float64 reference, the framework {theirs:e}"
        ));
    }
    Ok((ours, theirs))
}

/// A row of softmax outputs: every value in [0, 1] and the row summing to 1.
fn probability_row(row: &[f32]) -> bool {
    row.iter().all(|v| (0.0..=1.0).contains(v))
        && (row.iter().map(|&v| f64::from(v)).sum::<f64>() - 1.0).abs() < 1e-4
}

/// Runs `model` on 2 threads with every step split (`parallel_flops(0)`), on `inputs` (of
/// `batch` samples) repeated until there are at least 32 samples, so that every GEMM has rows
/// enough to split. Checks that the plan did split and that every copy gives the first copy's
/// bits; returns the first copy's outputs.
pub fn split_run(
    model: &Model,
    inputs: &[sinter::plan::Values<'_>],
    batch: usize,
) -> Result<Vec<Vec<f32>>, String> {
    use sinter::io::npy::Array;
    use sinter::plan::{CompileOptions, Values};
    let copies = 32usize.div_ceil(batch.max(1));
    let tile = |v: &Values| match v {
        Values::F32(v) => Array::F32(v.repeat(copies)),
        Values::I32(v) => Array::I32(v.repeat(copies)),
        Values::I64(v) => Array::I64(v.repeat(copies)),
        Values::Bool(v) => Array::Bool(v.repeat(copies)),
    };
    let owned: Vec<Array> = inputs.iter().map(tile).collect();
    let tiled: Vec<Values> = owned.iter().map(Array::values).collect();
    let opts = CompileOptions::new()
        .threads(2)
        .parallel_flops(0)
        .max_batch(batch * copies);
    let plan = std::sync::Arc::new(model.compile(&opts).map_err(|e| format!("compile: {e}"))?);
    let outs = plan.run_all(&tiled).map_err(|e| format!("run: {e}"))?;
    if plan.split_steps() == 0 {
        return Err("the 2-thread plan split no step".into());
    }
    outs.into_iter()
        .map(|o| {
            let per = o.len() / copies;
            match o.chunks(per).position(|c| bits(c) != bits(&o[..per])) {
                Some(c) => Err(format!("copy {c} of the batch differs from the first")),
                None => Ok(o[..per].to_vec()),
            }
        })
        .collect()
}

/// A property's number of cases: `PROPTEST_CASES` if set, else `default` (a config that names
/// its own count ignores the variable otherwise).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

//! Random models and inputs shared by the integration tests.
#![allow(dead_code)]

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
                6 if r % 4 == 0 => {
                    const S: [f32; 6] = [0.0, -0.0, 1e-40, -3e-39, 1e-45, -1e-45];
                    S[(r / 4 % S.len() as u64) as usize]
                }
                7 if r % 5 == 0 => 0.0,
                7 => v * 1e-38,
                8 if i == at => {
                    if r % 2 == 0 {
                        f32::INFINITY
                    } else {
                        f32::NEG_INFINITY
                    }
                }
                9 => v * if r % 2 == 0 { 1e30 } else { 3e38 },
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

//! Random models and inputs shared by the integration tests.
#![allow(dead_code)]

use sinter::Activation;
use sinter::model::init::SplitMix64;
use sinter::model::{ActivationLayer, Dense, Dropout, Input, Model};

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
        let x = Input::new([self.input]).unwrap();
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
        }
        Model::new(&x, &h).unwrap()
    }

    /// `batch x input` values; with `specials`, about one in six is ±0, a subnormal, ±1e30,
    /// ±inf or NaN.
    pub fn input(&self, specials: bool) -> Vec<f32> {
        let mut rng = SplitMix64::new(self.seed ^ 0x1234_5678);
        (0..self.batch * self.input)
            .map(|_| {
                let r = rng.next_u64();
                if specials && r.is_multiple_of(6) {
                    const S: [f32; 10] = [
                        0.0,
                        -0.0,
                        1e-40,
                        -3e-39,
                        1e30,
                        -1e30,
                        f32::INFINITY,
                        f32::NEG_INFINITY,
                        f32::NAN,
                        1e-45,
                    ];
                    S[(r / 6 % S.len() as u64) as usize]
                } else {
                    rng.next_signed() * 3.0
                }
            })
            .collect()
    }
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

    fn layer() -> impl Strategy<Value = Vec<LayerSpec>> {
        (
            1usize..=300,
            0usize..20,
            any::<bool>(),
            prop_oneof![6 => Just(None), 3 => (0usize..20).prop_map(Some), 1 => Just(Some(99))],
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

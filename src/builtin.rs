//! Built-in models with deterministic weights: `seed`, `mnist-mlp`, `ffn`, `conv1d`.

use crate::kernels::Activation;
use crate::model::init::{SplitMix64, glorot_uniform};
use crate::model::{
    ActivationLayer, Concatenate, Conv1D, Dense, Flatten, Input, Model, Padding, Tensor,
};

/// Names accepted by [`by_name`] (and as `builtin:NAME` on the command line).
pub const NAMES: [&str; 4] = ["seed", "mnist-mlp", "ffn", "conv1d"];

fn dense(x: &Tensor, units: usize, act: Activation, seed: u64) -> Tensor {
    let k = *x.shape().last().expect("rank >= 1");
    let mut rng = SplitMix64::new(seed ^ 0xb1a5);
    let bias = (0..units).map(|_| rng.next_signed() * 0.1).collect();
    Dense::new(units)
        .activation(act)
        .weights(glorot_uniform(k, units, seed).collect(), Some(bias))
        .call(x)
        .expect("built-in layer shapes are consistent")
}

fn input(n: usize) -> Tensor {
    Input::new([n]).expect("built-in input shape is valid")
}

fn model(x: &Tensor, y: &Tensor) -> Model {
    Model::new(x, y).expect("built-in model is valid")
}

/// `Input(784) -> Dense(32, tanh) -> Activation(relu) -> Dense(8, softmax)`.
pub fn seed() -> Model {
    let x = input(784);
    let h = dense(&x, 32, Activation::Tanh, 1);
    let h = ActivationLayer::new(Activation::RELU)
        .call(&h)
        .expect("same shape");
    let y = dense(&h, 8, Activation::Softmax, 2);
    model(&x, &y)
}

/// `784 -> Dense(512, relu) -> Dense(512, relu) -> Dense(10, softmax)`.
pub fn mnist_mlp() -> Model {
    let x = input(784);
    let h = dense(&x, 512, Activation::RELU, 11);
    let h = dense(&h, 512, Activation::RELU, 12);
    let y = dense(&h, 10, Activation::Softmax, 13);
    model(&x, &y)
}

/// `1024 -> Dense(4096, relu) -> Dense(1024)`.
pub fn ffn() -> Model {
    let x = input(1024);
    let h = dense(&x, 4096, Activation::RELU, 21);
    let y = dense(&h, 1024, Activation::Linear, 22);
    model(&x, &y)
}

/// `Input(128 steps, 16 channels)` -> three `Conv1D(32, k, padding="same")` branches (k = 3, 5,
/// 7) -> `Concatenate` -> `Activation(relu)` -> `Flatten` -> `Dense(8, softmax)`.
pub fn conv1d() -> Model {
    let x = Input::new([128, 16]).expect("built-in input shape is valid");
    let branches: Vec<Tensor> = [3usize, 5, 7]
        .iter()
        .map(|&k| {
            let mut rng = SplitMix64::new(k as u64 ^ 0xc0);
            let bias = (0..32).map(|_| rng.next_signed() * 0.1).collect();
            Conv1D::new(32, k)
                .padding(Padding::Same)
                .weights(
                    glorot_uniform(k * 16, 32, 30 + k as u64).collect(),
                    Some(bias),
                )
                .call(&x)
                .expect("built-in layer shapes are consistent")
        })
        .collect();
    let refs: Vec<&Tensor> = branches.iter().collect();
    let c = Concatenate::new(-1).call(&refs).expect("same steps");
    let h = ActivationLayer::new(Activation::RELU)
        .call(&c)
        .expect("same shape");
    let f = Flatten::new().call(&h).expect("flatten");
    let y = dense(&f, 8, Activation::Softmax, 31);
    model(&x, &y)
}

/// A built-in by name (`"seed"`, `"mnist-mlp"`, `"ffn"`).
pub fn by_name(name: &str) -> Option<Model> {
    match name {
        "seed" => Some(seed()),
        "mnist-mlp" | "mnist_mlp" => Some(mnist_mlp()),
        "ffn" => Some(ffn()),
        "conv1d" => Some(conv1d()),
        _ => None,
    }
}

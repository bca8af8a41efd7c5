//! Random small models built with the public API: every model that builds compiles fused and
//! separate, and both give bit-identical outputs on any input (NaN and inf included).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sinter::Activation;
use sinter::model::{
    ActivationLayer, Add, AveragePooling1D, Concatenate, Conv1D, Dense, Dropout, Flatten,
    GlobalAveragePooling1D, GlobalMaxPooling1D, Input, MaxPooling1D, Model, Padding,
};
use sinter::plan::CompileOptions;
use std::sync::Arc;

#[derive(Arbitrary, Debug)]
struct Conv {
    filters: u8,
    kernel: u8,
    strides: u8,
    dilation: u8,
    padding: u8,
    act: u8,
    bias: bool,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Dense { units: u8, act: u8, bias: bool },
    Activation(u8),
    Dropout(u8),
    Flatten,
    Conv(Conv),
    MaxPool { pool: u8, strides: u8, padding: u8 },
    AvgPool { pool: u8, strides: u8, padding: u8 },
    GlobalMax,
    GlobalAvg,
    Branch { a: Conv, b: Conv, add: bool, axis: u8 },
}

#[derive(Arbitrary, Debug)]
struct Spec {
    shape: (u8, Option<u8>),
    steps: Vec<Step>,
    batch: u8,
    /// Input values as f32 bit patterns, repeated to fill the batch.
    values: Vec<u32>,
}

fn act(i: u8) -> Activation {
    Activation::ALL[i as usize % Activation::ALL.len()]
}
fn pad(i: u8) -> Padding {
    [Padding::Valid, Padding::Same, Padding::Causal][i as usize % 3]
}
fn conv(c: &Conv) -> Conv1D {
    Conv1D::new(1 + c.filters as usize % 8, 1 + c.kernel as usize % 5)
        .strides(1 + c.strides as usize % 3)
        .dilation_rate(1 + c.dilation as usize % 3)
        .padding(pad(c.padding))
        .activation(act(c.act))
        .use_bias(c.bias)
}
fn window(size: u8, strides: u8) -> (usize, usize) {
    (1 + size as usize % 5, 1 + strides as usize % 3)
}

fn build(spec: &Spec) -> sinter::Result<Model> {
    let mut shape = vec![1 + spec.shape.0 as usize % 32];
    shape.extend(spec.shape.1.map(|c| 1 + c as usize % 32));
    let x = Input::new(shape)?;
    let mut y = x.clone();
    for step in spec.steps.iter().take(6) {
        let seq = y.shape().len() == 2;
        y = match step {
            Step::Dense { units, act: a, bias } => {
                Dense::new(1 + *units as usize % 16).activation(act(*a)).use_bias(*bias).call(&y)?
            }
            Step::Activation(a) => ActivationLayer::new(act(*a)).call(&y)?,
            Step::Dropout(r) => Dropout::new(*r as f32 / 200.0).call(&y)?,
            Step::Flatten => Flatten::new().call(&y)?,
            _ if !seq => continue,
            Step::Conv(c) => conv(c).call(&y)?,
            Step::MaxPool { pool, strides, padding } => {
                let (p, s) = window(*pool, *strides);
                MaxPooling1D::new(p, s, pad(*padding)).call(&y)?
            }
            Step::AvgPool { pool, strides, padding } => {
                let (p, s) = window(*pool, *strides);
                AveragePooling1D::new(p, s, pad(*padding)).call(&y)?
            }
            Step::GlobalMax => GlobalMaxPooling1D::new().call(&y)?,
            Step::GlobalAvg => GlobalAveragePooling1D::new().call(&y)?,
            Step::Branch { a, b, add, axis } => {
                let (a, b) = (conv(a).call(&y)?, conv(b).call(&y)?);
                if *add {
                    Add::new().call(&[&a, &b])?
                } else {
                    Concatenate::new([-1, -2, 1, 2][*axis as usize % 4]).call(&[&a, &b])?
                }
            }
        };
    }
    Model::new(&x, &y)
}

fuzz_target!(|spec: Spec| {
    let Ok(model) = build(&spec) else { return };
    let batch = 1 + spec.batch as usize % 4;
    let compile = |fuse| {
        let opts = CompileOptions::new().fuse(fuse).threads(1).max_batch(batch);
        model.compile(&opts).map(Arc::new)
    };
    let (Ok(fused), Ok(separate)) = (compile(true), compile(false)) else { return };
    let n = batch * fused.input_len();
    let input: Vec<f32> = match spec.values.as_slice() {
        [] => vec![0.0; n],
        v => v.iter().cycle().take(n).map(|&b| f32::from_bits(b)).collect(),
    };
    let (Ok(a), Ok(b)) = (fused.run(&input), separate.run(&input)) else { return };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert!(bits(&a) == bits(&b), "fused {a:?} != separate {b:?} for {spec:?}");
});

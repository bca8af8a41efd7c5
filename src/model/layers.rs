//! Layer constructors, Keras-shaped: configure, then `call` on a symbolic tensor.

use super::{DenseWeights, Layer, Padding, Tensor};
use crate::error::{Error, Result};
use crate::kernels::Activation;

/// `keras.Input(shape)`: the model's input.
#[derive(Debug)]
pub struct Input;

impl Input {
    /// A symbolic input of the given shape (without the batch axis). Like `keras.Input`, it
    /// returns the tensor, not a layer.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(shape: impl Into<Vec<usize>>) -> Result<Tensor> {
        Input::named(shape, None)
    }

    /// A named symbolic input.
    pub fn named(shape: impl Into<Vec<usize>>, name: Option<&str>) -> Result<Tensor> {
        let shape = shape.into();
        if shape.is_empty() || shape.contains(&0) {
            return Err(Error::Shape {
                layer: name.unwrap_or("InputLayer").into(),
                msg: format!("input shape {shape:?} must be non-empty and positive"),
            });
        }
        super::checked_elems(&shape).map_err(|msg| Error::Shape {
            layer: name.unwrap_or("InputLayer").into(),
            msg,
        })?;
        Ok(Tensor(std::rc::Rc::new(super::TensorNode {
            id: super::next_id(),
            layer: Layer::Input,
            name: name.map(str::to_string),
            inputs: vec![],
            shape,
            weights: None,
        })))
    }
}

/// `keras.layers.Dense(units, activation, use_bias)`.
#[derive(Clone, Debug)]
pub struct Dense {
    units: usize,
    activation: Activation,
    use_bias: bool,
    name: Option<String>,
    weights: Option<DenseWeights>,
}

impl Dense {
    /// A Dense layer with `units` outputs, linear activation and a bias.
    pub fn new(units: usize) -> Self {
        Dense {
            units,
            activation: Activation::Linear,
            use_bias: true,
            name: None,
            weights: None,
        }
    }
    /// Sets the activation.
    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }
    /// Sets whether there is a bias.
    pub fn use_bias(mut self, b: bool) -> Self {
        self.use_bias = b;
        self
    }
    /// Names the layer.
    pub fn name(mut self, n: &str) -> Self {
        self.name = Some(n.into());
        self
    }
    /// Sets the weights: `kernel` is `K x units` row-major, `bias` has `units` values.
    pub fn weights(mut self, kernel: Vec<f32>, bias: Option<Vec<f32>>) -> Self {
        self.weights = Some(DenseWeights { kernel, bias });
        self
    }
    /// Applies the layer to a symbolic tensor.
    pub fn call(&self, x: &Tensor) -> Result<Tensor> {
        Tensor::new(
            Layer::Dense {
                units: self.units,
                activation: self.activation,
                use_bias: self.use_bias,
            },
            self.name.clone(),
            vec![x.clone()],
            self.weights.clone(),
        )
    }
}

/// `keras.layers.Activation(activation)`.
#[derive(Clone, Debug)]
pub struct ActivationLayer {
    activation: Activation,
    name: Option<String>,
}

impl ActivationLayer {
    /// An activation layer.
    pub fn new(a: Activation) -> Self {
        ActivationLayer {
            activation: a,
            name: None,
        }
    }
    /// Names the layer.
    pub fn name(mut self, n: &str) -> Self {
        self.name = Some(n.into());
        self
    }
    /// Applies the layer to a symbolic tensor.
    pub fn call(&self, x: &Tensor) -> Result<Tensor> {
        Tensor::new(
            Layer::Activation(self.activation),
            self.name.clone(),
            vec![x.clone()],
            None,
        )
    }
}

/// `keras.layers.Dropout(rate)`: identity at inference.
#[derive(Clone, Debug)]
pub struct Dropout {
    rate: f32,
    name: Option<String>,
}

impl Dropout {
    /// A dropout layer.
    pub fn new(rate: f32) -> Self {
        Dropout { rate, name: None }
    }
    /// Names the layer.
    pub fn name(mut self, n: &str) -> Self {
        self.name = Some(n.into());
        self
    }
    /// Applies the layer to a symbolic tensor.
    pub fn call(&self, x: &Tensor) -> Result<Tensor> {
        Tensor::new(
            Layer::Dropout { rate: self.rate },
            self.name.clone(),
            vec![x.clone()],
            None,
        )
    }
}

/// `keras.layers.Flatten()`.
#[derive(Clone, Debug, Default)]
pub struct Flatten {
    name: Option<String>,
}

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Self {
        Flatten::default()
    }
    /// Names the layer.
    pub fn name(mut self, n: &str) -> Self {
        self.name = Some(n.into());
        self
    }
    /// Applies the layer to a symbolic tensor.
    pub fn call(&self, x: &Tensor) -> Result<Tensor> {
        Tensor::new(Layer::Flatten, self.name.clone(), vec![x.clone()], None)
    }
}

/// Any layer applied to one or more symbolic tensors, with optional weights: the generic form
/// behind the typed constructors (and what loaders and tests use for layers built from data).
pub fn apply(
    layer: Layer,
    name: Option<&str>,
    inputs: &[&Tensor],
    weights: Option<DenseWeights>,
) -> Result<Tensor> {
    Tensor::new(
        layer,
        name.map(str::to_string),
        inputs.iter().map(|&t| t.clone()).collect(),
        weights,
    )
}

/// `keras.layers.Conv1D(filters, kernel_size, strides, padding, dilation_rate, activation,
/// use_bias)` over `[steps, channels]`.
#[derive(Clone, Debug)]
pub struct Conv1D {
    filters: usize,
    kernel_size: usize,
    strides: usize,
    padding: Padding,
    dilation_rate: usize,
    activation: Activation,
    use_bias: bool,
    name: Option<String>,
    weights: Option<DenseWeights>,
}

impl Conv1D {
    /// `filters` outputs per step, `kernel_size` taps; stride 1, valid padding, no dilation,
    /// linear activation, with a bias (Keras defaults).
    pub fn new(filters: usize, kernel_size: usize) -> Self {
        Conv1D {
            filters,
            kernel_size,
            strides: 1,
            padding: Padding::Valid,
            dilation_rate: 1,
            activation: Activation::Linear,
            use_bias: true,
            name: None,
            weights: None,
        }
    }
    /// Step between windows.
    pub fn strides(mut self, s: usize) -> Self {
        self.strides = s;
        self
    }
    /// `Padding::Valid`, `Same` or `Causal`.
    pub fn padding(mut self, p: Padding) -> Self {
        self.padding = p;
        self
    }
    /// Spacing between taps.
    pub fn dilation_rate(mut self, d: usize) -> Self {
        self.dilation_rate = d;
        self
    }
    /// Activation after the bias.
    pub fn activation(mut self, a: Activation) -> Self {
        self.activation = a;
        self
    }
    /// Whether there is a bias.
    pub fn use_bias(mut self, b: bool) -> Self {
        self.use_bias = b;
        self
    }
    /// Names the layer.
    pub fn name(mut self, n: &str) -> Self {
        self.name = Some(n.into());
        self
    }
    /// Weights as Keras stores them: kernel `[kernel_size, in_channels, filters]` row-major,
    /// bias `[filters]`.
    pub fn weights(mut self, kernel: Vec<f32>, bias: Option<Vec<f32>>) -> Self {
        self.weights = Some(DenseWeights { kernel, bias });
        self
    }
    /// Applies the layer to a symbolic `[steps, channels]` tensor.
    pub fn call(&self, x: &Tensor) -> Result<Tensor> {
        let layer = Layer::Conv1D {
            filters: self.filters,
            kernel_size: self.kernel_size,
            strides: self.strides,
            padding: self.padding,
            dilation_rate: self.dilation_rate,
            activation: self.activation,
            use_bias: self.use_bias,
        };
        apply(layer, self.name.as_deref(), &[x], self.weights.clone())
    }
}

/// A weightless layer with a Keras-style constructor and `call`.
macro_rules! simple_layer {
    ($(#[$doc:meta])* $name:ident ( $($arg:ident : $ty:ty),* ) => $layer:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            layer: Layer,
            name: Option<String>,
        }
        impl $name {
            /// The layer, configured as Keras would be with these arguments.
            #[allow(clippy::new_without_default)]
            pub fn new($($arg: $ty),*) -> Self {
                $name { layer: $layer, name: None }
            }
            /// Names the layer.
            pub fn name(mut self, n: &str) -> Self {
                self.name = Some(n.into());
                self
            }
        }
    };
}

simple_layer!(
    /// `keras.layers.Concatenate(axis)` (batch is axis 0; `-1` the last).
    Concatenate(axis: isize) => Layer::Concatenate { axis }
);
simple_layer!(
    /// `keras.layers.Add()`.
    Add() => Layer::Add
);
simple_layer!(
    /// `keras.layers.MaxPooling1D(pool_size, strides, padding)`.
    MaxPooling1D(pool_size: usize, strides: usize, padding: Padding) =>
        Layer::MaxPooling1D { pool_size, strides, padding }
);
simple_layer!(
    /// `keras.layers.AveragePooling1D(pool_size, strides, padding)`.
    AveragePooling1D(pool_size: usize, strides: usize, padding: Padding) =>
        Layer::AveragePooling1D { pool_size, strides, padding }
);
simple_layer!(
    /// `keras.layers.GlobalMaxPooling1D()`.
    GlobalMaxPooling1D() => Layer::GlobalMaxPooling1D
);
simple_layer!(
    /// `keras.layers.GlobalAveragePooling1D()`.
    GlobalAveragePooling1D() => Layer::GlobalAveragePooling1D
);
simple_layer!(
    /// `keras.layers.Reshape(target_shape)`; one entry may be `-1`.
    Reshape(target_shape: Vec<isize>) => Layer::Reshape { target_shape }
);
simple_layer!(
    /// `keras.layers.Permute(dims)`: output axis `i` is input axis `dims[i]`, numbered from 1
    /// (`Permute(vec![2, 1])` swaps steps and channels).
    Permute(dims: Vec<usize>) => Layer::Permute { dims }
);

impl Concatenate {
    /// Joins the tensors.
    pub fn call(&self, xs: &[&Tensor]) -> Result<Tensor> {
        apply(self.layer.clone(), self.name.as_deref(), xs, None)
    }
}

impl Add {
    /// Sums the tensors.
    pub fn call(&self, xs: &[&Tensor]) -> Result<Tensor> {
        apply(self.layer.clone(), self.name.as_deref(), xs, None)
    }
}

macro_rules! unary_call {
    ($($name:ident),*) => {$(
        impl $name {
            /// Applies the layer to a symbolic tensor.
            pub fn call(&self, x: &Tensor) -> Result<Tensor> {
                apply(self.layer.clone(), self.name.as_deref(), &[x], None)
            }
        }
    )*};
}
unary_call!(
    MaxPooling1D,
    AveragePooling1D,
    GlobalMaxPooling1D,
    GlobalAveragePooling1D,
    Reshape,
    Permute
);

//! Layer constructors, Keras-shaped: configure, then `call` on a symbolic tensor.

use super::{DenseWeights, Layer, Tensor};
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

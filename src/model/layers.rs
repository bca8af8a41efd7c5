//! Layer constructors, Keras-shaped: configure, then `call` on a symbolic tensor.

use super::{
    ArgMaxConfig, AttentionConfig, AveragePooling1DConfig, AveragePooling2DConfig,
    ConcatenateConfig, Conv1DConfig, Conv2DConfig, DenseConfig, DepthwiseConv2DConfig,
    DropoutConfig, EmbeddingConfig, GlobalPooling2D, MaxPooling1DConfig, MaxPooling2DConfig,
    NormalizationConfig, PermuteConfig, RescalingConfig, ReshapeConfig,
};
use super::{ChannelNorm, DType, DenseWeights, Layer, Merge, Padding, RowNorm, Tensor};
use crate::error::{Error, Result};
use crate::kernels::{Activation, NoKeys};

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
        Input::typed(shape, DType::F32, name)
    }

    /// A symbolic input of a given element type (`keras.Input(shape, dtype="int32")` for
    /// token ids that feed an [`Embedding`]).
    pub fn typed(shape: impl Into<Vec<usize>>, dtype: DType, name: Option<&str>) -> Result<Tensor> {
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
            dtype,
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
            Layer::Dense(DenseConfig {
                units: self.units,
                activation: self.activation,
                use_bias: self.use_bias,
            }),
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
            Layer::Dropout(DropoutConfig { rate: self.rate }),
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
        let layer = Layer::Conv1D(Conv1DConfig {
            filters: self.filters,
            kernel_size: self.kernel_size,
            strides: self.strides,
            padding: self.padding,
            dilation_rate: self.dilation_rate,
            activation: self.activation,
            use_bias: self.use_bias,
        });
        apply(layer, self.name.as_deref(), &[x], self.weights.clone())
    }
}

/// The options a 2-D convolution builder shares (`Conv2D`, `DepthwiseConv2D`), on its
/// `config`.
macro_rules! image_conv_options {
    ($($name:ident),*) => {$(
        impl $name {
            /// Steps between windows `(down, across)`.
            pub fn strides(mut self, s: (usize, usize)) -> Self {
                self.config.strides = s;
                self
            }
            /// `Padding::Valid` or `Same`, along both axes.
            pub fn padding(mut self, p: Padding) -> Self {
                self.config.padding = (p, p);
                self
            }
            /// Spacing between taps `(down, across)`.
            pub fn dilation_rate(mut self, d: (usize, usize)) -> Self {
                self.config.dilation_rate = d;
                self
            }
            /// Activation after the bias.
            pub fn activation(mut self, a: Activation) -> Self {
                self.config.activation = a;
                self
            }
            /// Whether there is a bias.
            pub fn use_bias(mut self, b: bool) -> Self {
                self.config.use_bias = b;
                self
            }
            /// Names the layer.
            pub fn name(mut self, n: &str) -> Self {
                self.name = Some(n.into());
                self
            }
        }
    )*};
}
image_conv_options!(Conv2D, DepthwiseConv2D);

/// `keras.layers.Conv2D(filters, kernel_size, strides, padding, dilation_rate, groups,
/// activation, use_bias)` over `[height, width, channels]`.
#[derive(Clone, Debug)]
pub struct Conv2D {
    config: Conv2DConfig,
    name: Option<String>,
    weights: Option<DenseWeights>,
}

impl Conv2D {
    /// `filters` output channels, a `(height, width)` window; stride 1, valid padding, no
    /// dilation, linear activation, with a bias (Keras defaults).
    pub fn new(filters: usize, kernel_size: (usize, usize)) -> Self {
        Conv2D {
            config: Conv2DConfig {
                filters,
                kernel_size,
                strides: (1, 1),
                padding: (Padding::Valid, Padding::Valid),
                dilation_rate: (1, 1),
                activation: Activation::Linear,
                use_bias: true,
                groups: 1,
            },
            name: None,
            weights: None,
        }
    }
    /// Channel groups, each convolving `in_channels / groups` channels into `filters /
    /// groups` (both must divide).
    pub fn groups(mut self, g: usize) -> Self {
        self.config.groups = g;
        self
    }
    /// Weights as Keras stores them: kernel `[kernel_h, kernel_w, in_channels / groups,
    /// filters]` row-major, bias `[filters]`.
    pub fn weights(mut self, kernel: Vec<f32>, bias: Option<Vec<f32>>) -> Self {
        self.weights = Some(DenseWeights { kernel, bias });
        self
    }
    /// Applies the layer to a symbolic `[height, width, channels]` tensor.
    pub fn call(&self, x: &Tensor) -> Result<Tensor> {
        let layer = Layer::Conv2D(self.config);
        apply(layer, self.name.as_deref(), &[x], self.weights.clone())
    }
}

/// `keras.layers.DepthwiseConv2D(kernel_size, strides, padding, depth_multiplier,
/// dilation_rate, activation, use_bias)` over `[height, width, channels]`.
#[derive(Clone, Debug)]
pub struct DepthwiseConv2D {
    config: DepthwiseConv2DConfig,
    name: Option<String>,
    weights: Option<DenseWeights>,
}

impl DepthwiseConv2D {
    /// A `(height, width)` window per channel; stride 1, valid padding, multiplier 1, no
    /// dilation, linear activation, with a bias (Keras defaults).
    pub fn new(kernel_size: (usize, usize)) -> Self {
        DepthwiseConv2D {
            config: DepthwiseConv2DConfig {
                kernel_size,
                strides: (1, 1),
                padding: (Padding::Valid, Padding::Valid),
                dilation_rate: (1, 1),
                depth_multiplier: 1,
                activation: Activation::Linear,
                use_bias: true,
            },
            name: None,
            weights: None,
        }
    }
    /// Output channels per input channel.
    pub fn depth_multiplier(mut self, m: usize) -> Self {
        self.config.depth_multiplier = m;
        self
    }
    /// Weights as Keras stores them: kernel `[kernel_h, kernel_w, channels, multiplier]`
    /// row-major, bias `[channels * multiplier]`.
    pub fn weights(mut self, kernel: Vec<f32>, bias: Option<Vec<f32>>) -> Self {
        self.weights = Some(DenseWeights { kernel, bias });
        self
    }
    /// Applies the layer to a symbolic `[height, width, channels]` tensor.
    pub fn call(&self, x: &Tensor) -> Result<Tensor> {
        let layer = Layer::DepthwiseConv2D(self.config);
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
    Concatenate(axis: isize) => Layer::Concatenate(ConcatenateConfig { axis })
);
simple_layer!(
    /// `keras.layers.Add()`.
    Add() => Layer::Merge(Merge::Add)
);
simple_layer!(
    /// `keras.layers.Subtract()`: `a - b`.
    Subtract() => Layer::Merge(Merge::Subtract)
);
simple_layer!(
    /// `keras.layers.Multiply()`.
    Multiply() => Layer::Merge(Merge::Multiply)
);
simple_layer!(
    /// `keras.layers.Average()`.
    Average() => Layer::Merge(Merge::Average)
);
simple_layer!(
    /// `keras.layers.Maximum()`.
    Maximum() => Layer::Merge(Merge::Maximum)
);
simple_layer!(
    /// `keras.layers.Minimum()`.
    Minimum() => Layer::Merge(Merge::Minimum)
);
simple_layer!(
    /// `keras.layers.Rescaling(scale, offset)`: `x * scale + offset`.
    Rescaling(scale: f32, offset: f32) => Layer::Rescaling(RescalingConfig { scale, offset })
);
simple_layer!(
    /// `keras.layers.Identity()`.
    Identity() => Layer::Identity
);
simple_layer!(
    /// ONNX `ArgMax` over the last axis: int64 labels, for a model output.
    ArgMax(keepdims: bool) => Layer::ArgMax(ArgMaxConfig { keepdims })
);
simple_layer!(
    /// `keras.layers.MaxPooling1D(pool_size, strides, padding)`.
    MaxPooling1D(pool_size: usize, strides: usize, padding: Padding) =>
        Layer::MaxPooling1D(MaxPooling1DConfig { pool_size, strides, padding })
);
simple_layer!(
    /// `keras.layers.AveragePooling1D(pool_size, strides, padding)`.
    AveragePooling1D(pool_size: usize, strides: usize, padding: Padding) =>
        Layer::AveragePooling1D(AveragePooling1DConfig { pool_size, strides, padding })
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
    /// `keras.layers.MaxPooling2D(pool_size, strides, padding)`, sizes `(height, width)`.
    MaxPooling2D(pool_size: (usize, usize), strides: (usize, usize), padding: Padding) =>
        Layer::MaxPooling2D(MaxPooling2DConfig { pool_size, strides, padding: (padding, padding) })
);
simple_layer!(
    /// `keras.layers.AveragePooling2D(pool_size, strides, padding)`, sizes `(height, width)`.
    AveragePooling2D(pool_size: (usize, usize), strides: (usize, usize), padding: Padding) =>
        Layer::AveragePooling2D(AveragePooling2DConfig {
            pool_size,
            strides,
            padding: (padding, padding),
        })
);
simple_layer!(
    /// `keras.layers.GlobalMaxPooling2D(keepdims)`.
    GlobalMaxPooling2D(keepdims: bool) =>
        Layer::GlobalMaxPooling2D(GlobalPooling2D { keepdims })
);
simple_layer!(
    /// `keras.layers.GlobalAveragePooling2D(keepdims)`.
    GlobalAveragePooling2D(keepdims: bool) =>
        Layer::GlobalAveragePooling2D(GlobalPooling2D { keepdims })
);
simple_layer!(
    /// `keras.layers.Reshape(target_shape)`; one entry may be `-1`.
    Reshape(target_shape: Vec<isize>) => Layer::Reshape(ReshapeConfig { target_shape })
);
simple_layer!(
    /// `keras.layers.Permute(dims)`: output axis `i` is input axis `dims[i]`, numbered from 1
    /// (`Permute(vec![2, 1])` swaps steps and channels).
    Permute(dims: Vec<usize>) => Layer::Permute(PermuteConfig { dims })
);

impl Concatenate {
    /// Joins the tensors.
    pub fn call(&self, xs: &[&Tensor]) -> Result<Tensor> {
        apply(self.layer.clone(), self.name.as_deref(), xs, None)
    }
}

macro_rules! merge_call {
    ($($name:ident),*) => {$(
        impl $name {
            /// Merges the tensors, left to right.
            pub fn call(&self, xs: &[&Tensor]) -> Result<Tensor> {
                apply(self.layer.clone(), self.name.as_deref(), xs, None)
            }
        }
    )*};
}
merge_call!(Add, Subtract, Multiply, Average, Maximum, Minimum);

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
    MaxPooling2D,
    AveragePooling2D,
    GlobalMaxPooling2D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalAveragePooling1D,
    Reshape,
    Permute,
    Rescaling,
    Identity,
    ArgMax
);

/// The last axis of `x`, the channels a normalization layer works on.
fn channels(x: &Tensor, layer: &str) -> Result<usize> {
    x.shape().last().copied().ok_or_else(|| Error::Shape {
        layer: layer.into(),
        msg: "needs an input of rank >= 1 (besides the batch)".into(),
    })
}

/// `keras.layers.Embedding(input_dim, output_dim)`: integer ids to rows of a table.
#[derive(Clone, Debug)]
pub struct Embedding {
    input_dim: usize,
    output_dim: usize,
    name: Option<String>,
    table: Option<Vec<f32>>,
}

impl Embedding {
    /// A table of `input_dim` rows (the vocabulary) of `output_dim` values.
    pub fn new(input_dim: usize, output_dim: usize) -> Self {
        Embedding {
            input_dim,
            output_dim,
            name: None,
            table: None,
        }
    }
    /// Names the layer.
    pub fn name(mut self, n: &str) -> Self {
        self.name = Some(n.into());
        self
    }
    /// The table, `input_dim x output_dim` row-major (Keras's `embeddings`).
    pub fn weights(mut self, table: Vec<f32>) -> Self {
        self.table = Some(table);
        self
    }
    /// Looks up the ids of `x` (an integer input).
    pub fn call(&self, x: &Tensor) -> Result<Tensor> {
        let layer = Layer::Embedding(EmbeddingConfig {
            input_dim: self.input_dim,
            output_dim: self.output_dim,
        });
        let w = self
            .table
            .clone()
            .map(|kernel| DenseWeights { kernel, bias: None });
        apply(layer, self.name.as_deref(), &[x], w)
    }
}

/// `keras.layers.BatchNormalization(epsilon, center, scale)` at inference, over the last axis.
/// Without [`weights`](Self::weights) it holds Keras's initial values (gamma 1, beta 0, mean 0,
/// variance 1).
#[derive(Clone, Debug)]
pub struct BatchNormalization {
    epsilon: f32,
    center: bool,
    scale: bool,
    name: Option<String>,
    stats: Option<[Vec<f32>; 4]>,
}

impl BatchNormalization {
    /// Keras defaults: `epsilon = 1e-3`, center and scale.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        BatchNormalization {
            epsilon: 1e-3,
            center: true,
            scale: true,
            name: None,
            stats: None,
        }
    }
    /// Added to the variance.
    pub fn epsilon(mut self, e: f32) -> Self {
        self.epsilon = e;
        self
    }
    /// Whether there is a `beta`.
    pub fn center(mut self, c: bool) -> Self {
        self.center = c;
        self
    }
    /// Whether there is a `gamma`.
    pub fn scale(mut self, s: bool) -> Self {
        self.scale = s;
        self
    }
    /// Names the layer.
    pub fn name(mut self, n: &str) -> Self {
        self.name = Some(n.into());
        self
    }
    /// `gamma`, `beta`, `moving_mean`, `moving_variance`, one value per channel each (a
    /// `gamma` or `beta` the layer does not have is ignored).
    pub fn weights(
        mut self,
        gamma: Vec<f32>,
        beta: Vec<f32>,
        mean: Vec<f32>,
        variance: Vec<f32>,
    ) -> Self {
        self.stats = Some([gamma, beta, mean, variance]);
        self
    }
    /// Applies the layer to a symbolic tensor.
    pub fn call(&self, x: &Tensor) -> Result<Tensor> {
        let ch = channels(x, self.name.as_deref().unwrap_or("BatchNormalization"))?;
        let [gamma, beta, mean, variance] = self
            .stats
            .clone()
            .unwrap_or_else(|| [vec![1.0; ch], vec![0.0; ch], vec![0.0; ch], vec![1.0; ch]]);
        let n = ChannelNorm {
            axis: -1,
            epsilon: self.epsilon,
            gamma: self.scale.then_some(gamma),
            beta: self.center.then_some(beta),
            mean,
            variance,
        };
        apply(
            Layer::BatchNormalization(n),
            self.name.as_deref(),
            &[x],
            None,
        )
    }
}

/// `keras.layers.LayerNormalization(epsilon, center, scale)` over the last axis, or
/// `keras.layers.RMSNormalization(epsilon)` ([`rms`](Self::rms)). Without
/// [`weights`](Self::weights): gamma 1, beta 0.
#[derive(Clone, Debug)]
pub struct LayerNormalization {
    epsilon: f32,
    center: bool,
    scale: bool,
    rms: bool,
    name: Option<String>,
    params: Option<(Vec<f32>, Vec<f32>)>,
}

impl LayerNormalization {
    /// Keras defaults: `epsilon = 1e-3`, center and scale.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        LayerNormalization {
            epsilon: 1e-3,
            center: true,
            scale: true,
            rms: false,
            name: None,
            params: None,
        }
    }
    /// `keras.layers.RMSNormalization`: `x / sqrt(mean(x²) + epsilon) * scale` (Keras
    /// default epsilon `1e-6`; no offset).
    pub fn rms() -> Self {
        LayerNormalization {
            epsilon: 1e-6,
            center: false,
            rms: true,
            ..LayerNormalization::new()
        }
    }
    /// Added to the variance.
    pub fn epsilon(mut self, e: f32) -> Self {
        self.epsilon = e;
        self
    }
    /// Whether there is a `beta` (never with [`rms`](Self::rms)).
    pub fn center(mut self, c: bool) -> Self {
        self.center = c && !self.rms;
        self
    }
    /// Whether there is a `gamma`.
    pub fn scale(mut self, s: bool) -> Self {
        self.scale = s;
        self
    }
    /// Names the layer.
    pub fn name(mut self, n: &str) -> Self {
        self.name = Some(n.into());
        self
    }
    /// `gamma` and `beta`, one value per channel (one the layer does not have is ignored).
    pub fn weights(mut self, gamma: Vec<f32>, beta: Vec<f32>) -> Self {
        self.params = Some((gamma, beta));
        self
    }
    /// Applies the layer to a symbolic tensor.
    pub fn call(&self, x: &Tensor) -> Result<Tensor> {
        let ch = channels(x, self.name.as_deref().unwrap_or("LayerNormalization"))?;
        let (gamma, beta) = self
            .params
            .clone()
            .unwrap_or_else(|| (vec![1.0; ch], vec![0.0; ch]));
        let n = RowNorm {
            axis: -1,
            epsilon: self.epsilon,
            gamma: self.scale.then_some(gamma),
            beta: self.center.then_some(beta),
            rms: self.rms,
        };
        apply(
            Layer::LayerNormalization(n),
            self.name.as_deref(),
            &[x],
            None,
        )
    }
}

/// `keras.layers.Normalization(mean, variance)` over the last axis (statistics given, as
/// after `adapt`).
#[derive(Clone, Debug)]
pub struct Normalization {
    mean: Vec<f32>,
    variance: Vec<f32>,
    name: Option<String>,
}

impl Normalization {
    /// Per-channel mean and variance.
    pub fn new(mean: Vec<f32>, variance: Vec<f32>) -> Self {
        Normalization {
            mean,
            variance,
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
        let layer = Layer::Normalization(NormalizationConfig {
            axis: -1,
            mean: self.mean.clone(),
            variance: self.variance.clone(),
        });
        apply(layer, self.name.as_deref(), &[x], None)
    }
}

/// Multi-head scaled dot-product attention: the core of `keras.layers.MultiHeadAttention`
/// (whose query, key, value and output projections are [`Dense`] layers around it) and of
/// PyTorch's `scaled_dot_product_attention`.
///
/// Queries `[S, heads * dk]`, keys `[T, heads * dk]` and values `[T, heads * dv]` give
/// `[S, heads * dv]`; each head's scores are `q · kᵀ · scale` (`1 / sqrt(dk)` unless set),
/// softmaxed over the keys a query sees. A mask keeps a key where it is above one half:
/// `[T]` or `[1, T]` per key, or `[S, T]` per query and key. A query that sees no key gets
/// the mean of all values, as a softmax of equal scores (Keras, Hugging Face) gives; or zeros,
/// with [`Attention::no_keys`]. Masked keys are skipped, not multiplied by zero: a sequence gives
/// the same bits alone or padded, with a mask, beside longer ones.
#[derive(Clone, Debug)]
pub struct Attention {
    config: AttentionConfig,
    name: Option<String>,
}

impl Attention {
    /// Attention over `heads` heads.
    pub fn new(heads: usize) -> Self {
        Attention {
            config: AttentionConfig {
                heads,
                scale: None,
                causal: false,
                no_keys: NoKeys::Uniform,
                mask_pads: false,
            },
            name: None,
        }
    }
    /// Query `i` sees only keys `j <= i` (Keras's `use_causal_mask`).
    pub fn causal(mut self, causal: bool) -> Self {
        self.config.causal = causal;
        self
    }
    /// What a query that sees no key gets (the mean of all values unless set).
    pub fn no_keys(mut self, no_keys: NoKeys) -> Self {
        self.config.no_keys = no_keys;
        self
    }
    /// The mask marks padding rather than keeping: a key is dropped where the mask is above
    /// one half (PyTorch's `key_padding_mask`, where true means padding).
    pub fn mask_pads(mut self, pads: bool) -> Self {
        self.config.mask_pads = pads;
        self
    }
    /// Multiplies the dot products by `scale` instead of `1 / sqrt(dk)`.
    pub fn scale(mut self, scale: f32) -> Self {
        self.config.scale = Some(scale);
        self
    }
    /// Names the layer.
    pub fn name(mut self, n: &str) -> Self {
        self.name = Some(n.into());
        self
    }
    /// Attention of `query` over `key` and `value`.
    pub fn call(&self, query: &Tensor, key: &Tensor, value: &Tensor) -> Result<Tensor> {
        let layer = Layer::Attention(self.config);
        apply(layer, self.name.as_deref(), &[query, key, value], None)
    }
    /// Attention with a mask (see the type's documentation for its shapes).
    pub fn call_masked(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        mask: &Tensor,
    ) -> Result<Tensor> {
        let layer = Layer::Attention(self.config);
        apply(
            layer,
            self.name.as_deref(),
            &[query, key, value, mask],
            None,
        )
    }
}

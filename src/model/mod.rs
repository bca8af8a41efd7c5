//! The user's graph: layers, symbolic tensors, shapes, `summary()`. Knows no kernels.
//!
//! Keras functional style: create an [`Input`], call layers on symbolic [`Tensor`]s, then make a
//! [`Model`] from the input to the output.
//!
//! ```
//! use sinter::{Activation, model::{ActivationLayer, Dense, Input, Model}};
//! # fn main() -> sinter::Result<()> {
//! let x = Input::new([784])?;
//! let h = Dense::new(32).activation(Activation::Tanh).call(&x)?;
//! let h = ActivationLayer::new(Activation::RELU).call(&h)?;
//! let y = Dense::new(8).activation(Activation::Softmax).call(&h)?;
//! let model = Model::new(&x, &y)?;
//! assert_eq!(model.count_params(), 25_384);
//! assert_eq!(model.nodes()[1].name, "dense");
//! # Ok(()) }
//! ```

pub mod init;
mod layers;
mod summary;

pub use layers::{
    ActivationLayer, Add, ArgMax, Average, AveragePooling1D, BatchNormalization, Concatenate,
    Conv1D, Dense, Dropout, Embedding, Flatten, GlobalAveragePooling1D, GlobalMaxPooling1D,
    Identity, Input, LayerNormalization, MaxPooling1D, Maximum, Minimum, Multiply, Normalization,
    Permute, Rescaling, Reshape, Subtract, apply,
};

use crate::error::{Error, Result};
use crate::kernels::Activation;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

/// A layer and its configuration (weights live on the [`Node`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// The model's input (Keras `InputLayer`).
    Input,
    /// `y = activation(x · kernel + bias)` over the last axis.
    Dense {
        /// Output width.
        units: usize,
        /// Activation applied after the bias.
        activation: Activation,
        /// Whether the layer has a bias vector.
        use_bias: bool,
    },
    /// An activation as a layer of its own.
    Activation(Activation),
    /// Identity at inference.
    Dropout {
        /// Fraction dropped during training, in `[0, 1)`.
        rate: f32,
    },
    /// Collapses all non-batch axes into one.
    Flatten,
    /// 1-D convolution over `[steps, channels]` (channels_last), Keras `Conv1D`. The kernel is
    /// stored as Keras does, `[kernel_size, in_channels, filters]`, i.e. a
    /// `(kernel_size * in_channels) x filters` matrix.
    Conv1D {
        /// Output channels.
        filters: usize,
        /// Taps per window.
        kernel_size: usize,
        /// Step between windows.
        strides: usize,
        /// Border handling.
        padding: Padding,
        /// Spacing between taps.
        dilation_rate: usize,
        /// Activation applied after the bias.
        activation: Activation,
        /// Whether the layer has a bias vector.
        use_bias: bool,
    },
    /// Joins its inputs along `axis` (Keras numbering: the batch is axis 0, `-1` the last).
    Concatenate {
        /// Axis, counting the batch axis as 0; negative counts from the end.
        axis: isize,
    },
    /// Largest value per window over `[steps, channels]`.
    MaxPooling1D {
        /// Window length.
        pool_size: usize,
        /// Step between windows.
        strides: usize,
        /// `Valid` or `Same`.
        padding: Padding,
    },
    /// Mean per window over `[steps, channels]`; with `Same` padding only real steps count.
    AveragePooling1D {
        /// Window length.
        pool_size: usize,
        /// Step between windows.
        strides: usize,
        /// `Valid` or `Same`.
        padding: Padding,
    },
    /// Largest value over all steps: `[steps, channels] -> [channels]`.
    GlobalMaxPooling1D,
    /// Mean over all steps: `[steps, channels] -> [channels]`.
    GlobalAveragePooling1D,
    /// A new shape with the same number of values; one entry may be `-1`.
    Reshape {
        /// Target shape without the batch axis.
        target_shape: Vec<isize>,
    },
    /// Reorders the non-batch axes, Keras `Permute(dims)`: output axis `i` is input axis
    /// `dims[i]` (numbered from 1, as Keras does; the batch axis stays first).
    Permute {
        /// A permutation of `1..=rank`.
        dims: Vec<usize>,
    },
    /// Rows of a `input_dim x output_dim` table (the node's kernel) looked up by integer ids:
    /// `[..] -> [.., output_dim]`. An id outside `0..input_dim` is an error when run.
    Embedding {
        /// Vocabulary size (rows of the table).
        input_dim: usize,
        /// Width of a row.
        output_dim: usize,
    },
    /// Inference batch normalization over the last axis:
    /// `(x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta`.
    BatchNormalization(ChannelNorm),
    /// Normalization of each position over its last axis, with a learned `gamma` and `beta`
    /// per channel: `(x - mean) / sqrt(var + epsilon) * gamma + beta`, or with `rms`
    /// (Keras `RMSNormalization`) `x / sqrt(mean(x²) + epsilon) * gamma`.
    LayerNormalization(RowNorm),
    /// Keras's preprocessing `Normalization` with adapted statistics over the last axis:
    /// `(x - mean) / max(sqrt(variance), 1e-7)`.
    Normalization {
        /// The axis of the statistics (Keras numbering, `-1` = last); only the last axis.
        axis: isize,
        /// Per-channel mean.
        mean: Vec<f32>,
        /// Per-channel variance.
        variance: Vec<f32>,
    },
    /// `x * scale + offset`.
    Rescaling {
        /// Multiplier.
        scale: f32,
        /// Added after the multiplication.
        offset: f32,
    },
    /// Passes its input through.
    Identity,
    /// The position of the largest value along the last axis (the first one on ties; a NaN
    /// counts as largest, as NumPy's `argmax`): int64 class labels, ONNX `ArgMax`. Its values
    /// are model outputs only.
    ArgMax {
        /// Keep the last axis with length 1 (ONNX `keepdims=1`), else drop it.
        keepdims: bool,
    },
    /// An elementwise merge of two or more inputs of one shape (Keras `Add`, `Subtract`,
    /// `Multiply`, `Average`, `Maximum`, `Minimum`).
    Merge(Merge),
    /// `x * scale[c] + shift[c]` per channel `c` of the last axis, one rounding: an ONNX `Add`,
    /// `Sub` or `Mul` of a constant broadcast along the last axis. It fuses into a producing
    /// Dense's epilogue (or folds into its weights) like a batch normalization.
    Affine {
        /// Per-channel multiplier (one per channel of the last axis).
        scale: Vec<f32>,
        /// Per-channel offset, added after the multiplication.
        shift: Vec<f32>,
    },
    /// An elementwise function of one input (ONNX `Sqrt`, `Neg`, `Abs`, `Erf`, `Clip`, and
    /// `Pow` / `Div` by a constant).
    Unary(Unary),
}

/// The elementwise function of a [`Layer::Unary`]. Each is one scalar function in every tier
/// and batch (`libm` where the standard library has none), so its bits never depend on the
/// machine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// `sqrt(x)` (NaN below zero).
    Sqrt,
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// The error function.
    Erf,
    /// `x` to a constant power (`x * x` for 2, `powf` otherwise).
    Pow(f32),
    /// `x / d` for a constant `d` (a true division, not a multiplication by `1 / d`).
    Div(f32),
    /// `min(max(x, min), max)`; NaN stays NaN.
    Clip {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
    /// `1 / x` (a true division).
    Reciprocal,
    /// `⌊x⌋`.
    Floor,
    /// `⌈x⌉`.
    Ceil,
    /// `x` rounded to the nearest integer, halves to even (as ONNX and numpy).
    Round,
}

impl Unary {
    /// The function at `x`.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Unary::Sqrt => x.sqrt(),
            Unary::Neg => -x,
            Unary::Abs => x.abs(),
            Unary::Erf => libm::erff(x),
            Unary::Pow(2.0) => x * x,
            Unary::Pow(1.0) => x,
            Unary::Pow(p) => libm::powf(x, p),
            Unary::Div(d) => x / d,
            Unary::Clip { min, max } => {
                if x.is_nan() {
                    x
                } else {
                    x.max(min).min(max)
                }
            }
            Unary::Reciprocal => 1.0 / x,
            Unary::Floor => x.floor(),
            Unary::Ceil => x.ceil(),
            Unary::Round => x.round_ties_even(),
        }
    }

    /// The same function in f64 (the reference's).
    pub fn apply_f64(self, x: f64) -> f64 {
        match self {
            Unary::Sqrt => x.sqrt(),
            Unary::Neg => -x,
            Unary::Abs => x.abs(),
            Unary::Erf => libm::erf(x),
            Unary::Pow(p) => x.powf(f64::from(p)),
            Unary::Div(d) => x / f64::from(d),
            Unary::Clip { min, max } => {
                if x.is_nan() {
                    x
                } else {
                    x.max(f64::from(min)).min(f64::from(max))
                }
            }
            Unary::Reciprocal => 1.0 / x,
            Unary::Floor => x.floor(),
            Unary::Ceil => x.ceil(),
            Unary::Round => x.round_ties_even(),
        }
    }

    /// The ONNX operator's name.
    pub fn name(self) -> &'static str {
        match self {
            Unary::Sqrt => "Sqrt",
            Unary::Neg => "Neg",
            Unary::Abs => "Abs",
            Unary::Erf => "Erf",
            Unary::Pow(_) => "Pow",
            Unary::Div(_) => "Div",
            Unary::Clip { .. } => "Clip",
            Unary::Reciprocal => "Reciprocal",
            Unary::Floor => "Floor",
            Unary::Ceil => "Ceil",
            Unary::Round => "Round",
        }
    }
}

impl std::fmt::Display for Unary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unary::Pow(p) => write!(f, "pow({p})"),
            Unary::Div(d) => write!(f, "div({d})"),
            Unary::Clip { min, max } => write!(f, "clip({min}, {max})"),
            u => f.write_str(&u.name().to_lowercase()),
        }
    }
}

/// How a [`Layer::Merge`] combines its inputs, left to right.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Merge {
    /// `a + b + ...`
    Add,
    /// `a - b` (exactly two inputs).
    Subtract,
    /// `a * b * ...`
    Multiply,
    /// `(a + b + ...) / n`
    Average,
    /// Largest per element (NaN if any input is NaN).
    Maximum,
    /// Smallest per element (NaN if any input is NaN).
    Minimum,
}

impl Merge {
    /// The Keras class name.
    pub fn type_name(self) -> &'static str {
        match self {
            Merge::Add => "Add",
            Merge::Subtract => "Subtract",
            Merge::Multiply => "Multiply",
            Merge::Average => "Average",
            Merge::Maximum => "Maximum",
            Merge::Minimum => "Minimum",
        }
    }
}

/// Batch normalization's inference parameters, one value per channel of the last axis.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelNorm {
    /// The normalized axis as Keras numbers it (batch = 0, `-1` = last); only the last axis
    /// is supported.
    pub axis: isize,
    /// Added to the variance.
    pub epsilon: f32,
    /// Scale (`None`: Keras `scale=False`, i.e. 1).
    pub gamma: Option<Vec<f32>>,
    /// Offset (`None`: Keras `center=False`, i.e. 0).
    pub beta: Option<Vec<f32>>,
    /// Moving mean.
    pub mean: Vec<f32>,
    /// Moving variance (non-negative).
    pub variance: Vec<f32>,
}

impl ChannelNorm {
    /// The per-channel `(scale, shift)` with `y = x * scale + shift`, computed in f64 and
    /// rounded once: `scale = gamma / sqrt(var + eps)`, `shift = beta - mean * scale`.
    pub fn affine(&self) -> (Vec<f32>, Vec<f32>) {
        let n = self.mean.len();
        (0..n)
            .map(|c| {
                let g = self.gamma.as_ref().map_or(1.0, |g| f64::from(g[c]));
                let b = self.beta.as_ref().map_or(0.0, |b| f64::from(b[c]));
                let s = g / (f64::from(self.variance[c]) + f64::from(self.epsilon)).sqrt();
                (s as f32, (b - f64::from(self.mean[c]) * s) as f32)
            })
            .unzip()
    }

    fn check(&self, shape: &[usize]) -> Result<(), String> {
        let ch = last_axis(shape, self.axis)?;
        let vecs = [
            ("gamma", self.gamma.as_deref()),
            ("beta", self.beta.as_deref()),
            ("moving_mean", Some(&self.mean[..])),
            ("moving_variance", Some(&self.variance[..])),
        ];
        check_channel_vecs(&vecs, ch)?;
        check_epsilon(self.epsilon)?;
        if let Some(i) = self.variance.iter().position(|&v| v < 0.0) {
            return Err(format!(
                "moving_variance[{i}] is {} (a variance cannot be negative)",
                self.variance[i]
            ));
        }
        Ok(())
    }

    fn count(&self) -> usize {
        self.mean.len() * 2
            + self.gamma.as_ref().map_or(0, Vec::len)
            + self.beta.as_ref().map_or(0, Vec::len)
    }
}

/// Layer normalization's parameters, one value per channel of the last axis.
#[derive(Clone, Debug, PartialEq)]
pub struct RowNorm {
    /// The normalized axis as Keras numbers it (batch = 0, `-1` = last); only the last axis
    /// is supported.
    pub axis: isize,
    /// Added to the variance (or mean square).
    pub epsilon: f32,
    /// Scale (`None`: 1).
    pub gamma: Option<Vec<f32>>,
    /// Offset (`None`: 0; always `None` with `rms`).
    pub beta: Option<Vec<f32>>,
    /// Root-mean-square normalization: no mean is subtracted.
    pub rms: bool,
}

impl RowNorm {
    fn check(&self, shape: &[usize]) -> Result<(), String> {
        let ch = last_axis(shape, self.axis)?;
        check_channel_vecs(
            &[
                ("gamma", self.gamma.as_deref()),
                ("beta", self.beta.as_deref()),
            ],
            ch,
        )?;
        if self.rms && self.beta.is_some() {
            return Err("an RMS normalization has no beta".into());
        }
        check_epsilon(self.epsilon)
    }

    fn count(&self) -> usize {
        self.gamma.as_ref().map_or(0, Vec::len) + self.beta.as_ref().map_or(0, Vec::len)
    }
}

fn check_epsilon(eps: f32) -> Result<(), String> {
    if eps.is_finite() && eps >= 0.0 {
        Ok(())
    } else {
        Err(format!("epsilon {eps} must be finite and non-negative"))
    }
}

/// Each present vector has `ch` finite values.
fn check_channel_vecs(vecs: &[(&str, Option<&[f32]>)], ch: usize) -> Result<(), String> {
    for &(what, v) in vecs {
        let Some(v) = v else { continue };
        if v.len() != ch {
            return Err(format!(
                "{what} has {} values, expected {ch} (one per channel of the last axis)",
                v.len()
            ));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(format!("{what}[{i}] is {} (weights must be finite)", v[i]));
        }
    }
    Ok(())
}

/// Element type of a model input or output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    #[default]
    F32,
    /// 32-bit signed integer (token ids).
    I32,
    /// 64-bit signed integer (token ids, labels).
    I64,
}

impl DType {
    /// The NumPy / Keras name (`float32`, `int32`, `int64`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::I32 => "int32",
            DType::I64 => "int64",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "float32" => Ok(DType::F32),
            "int32" => Ok(DType::I32),
            "int64" => Ok(DType::I64),
            other => Err(format!(
                "dtype {other:?} (expected float32, int32 or int64)"
            )),
        }
    }
}

/// How a window treats the borders (Keras `padding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// No padding: only full windows.
    Valid,
    /// Zero padding split around the input so that `out = ceil(steps / strides)`.
    Same,
    /// Zero padding on the left only (`dilation * (kernel - 1)` steps): no window sees the future.
    Causal,
    /// Explicit padding steps on each side (ONNX `pads`): `out = (steps + left + right - span)
    /// / stride + 1`. For pooling, padded taps are skipped (max) or not counted (mean).
    Explicit {
        /// Steps before the input.
        left: usize,
        /// Steps after the input.
        right: usize,
    },
}

impl std::str::FromStr for Padding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "valid" => Ok(Padding::Valid),
            "same" => Ok(Padding::Same),
            "causal" => Ok(Padding::Causal),
            other => Err(format!(
                "padding {other:?} (expected valid, same or causal)"
            )),
        }
    }
}

/// Geometry of a 1-D sliding window: which input steps feed output step `o`
/// (`o * stride - pad_left + t * dilation` for tap `t`; outside `0..len` is padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Input steps.
    pub len: usize,
    /// Taps per window.
    pub size: usize,
    /// Step between windows.
    pub stride: usize,
    /// Spacing between taps.
    pub dilation: usize,
    /// Padding steps before the input.
    pub pad_left: usize,
    /// Output steps.
    pub out: usize,
}

impl Window {
    /// Keras's output length and padding for a window over `len` steps.
    pub fn new(
        len: usize,
        size: usize,
        stride: usize,
        dilation: usize,
        padding: Padding,
    ) -> Result<Window, String> {
        if size == 0 || stride == 0 || dilation == 0 {
            return Err(format!(
                "kernel/pool size {size}, strides {stride} and dilation {dilation} must be positive"
            ));
        }
        let span = (size - 1)
            .checked_mul(dilation)
            .and_then(|s| s.checked_add(1))
            .ok_or("window span overflows")?;
        let (out, pad_left) = match padding {
            Padding::Valid => {
                if len < span {
                    return Err(format!(
                        "a window spanning {span} steps does not fit in {len} steps (padding valid)"
                    ));
                }
                ((len - span) / stride + 1, 0)
            }
            Padding::Same => {
                let out = len.div_ceil(stride);
                let total = (out.max(1) - 1)
                    .checked_mul(stride)
                    .and_then(|x| x.checked_add(span))
                    .ok_or("window extent overflows")?
                    .saturating_sub(len);
                (out, total / 2)
            }
            Padding::Causal => (len.div_ceil(stride), span - 1),
            Padding::Explicit { left, right } => {
                let padded = len
                    .checked_add(left)
                    .and_then(|x| x.checked_add(right))
                    .ok_or("window extent overflows")?;
                if padded < span {
                    return Err(format!(
                        "a window spanning {span} steps does not fit in {len} steps padded \
                         {left}+{right}"
                    ));
                }
                ((padded - span) / stride + 1, left)
            }
        };
        // Every later size (the padded input, the last window's end) is at most this.
        (out.max(1) - 1)
            .checked_mul(stride)
            .and_then(|x| x.checked_add(span))
            .and_then(|x| x.max(len).checked_add(pad_left))
            .ok_or("window extent overflows")?;
        Ok(Window {
            len,
            size,
            stride,
            dilation,
            pad_left,
            out,
        })
    }

    /// The input step of tap `t` of output step `o`, or `None` where it falls in the padding.
    pub fn source(&self, o: usize, t: usize) -> Option<usize> {
        (o * self.stride + t * self.dilation)
            .checked_sub(self.pad_left)
            .filter(|&i| i < self.len)
    }

    /// The input steps of output step `o` that are not padding, in tap order: what
    /// `(0..size).filter_map(|t| source(o, t))` gives, in time proportional to the real taps
    /// (a pool may be far wider than its input).
    pub fn sources(&self, o: usize) -> impl Iterator<Item = usize> + use<> {
        let start = o * self.stride; // padded coordinate of tap 0
        let d = self.dilation;
        // First tap at or after the left padding, one past the last before the right end.
        let first = self.pad_left.saturating_sub(start).div_ceil(d);
        let end = (self.pad_left + self.len)
            .checked_sub(start)
            .map_or(0, |room| room.div_ceil(d))
            .min(self.size);
        let pad_left = self.pad_left;
        (first..end.max(first)).map(move |t| start + t * d - pad_left)
    }
}

fn steps_channels(s: &[usize], what: &str) -> Result<(usize, usize), String> {
    match *s {
        [steps, ch] => Ok((steps, ch)),
        _ => Err(format!(
            "{what} needs an input of shape [steps, channels], got {s:?}"
        )),
    }
}

impl Layer {
    /// The Keras class name, as `summary()` shows it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Layer::Input => "InputLayer",
            Layer::Dense { .. } => "Dense",
            Layer::Activation(_) => "Activation",
            Layer::Dropout { .. } => "Dropout",
            Layer::Flatten => "Flatten",
            Layer::Conv1D { .. } => "Conv1D",
            Layer::Concatenate { .. } => "Concatenate",
            Layer::MaxPooling1D { .. } => "MaxPooling1D",
            Layer::AveragePooling1D { .. } => "AveragePooling1D",
            Layer::GlobalMaxPooling1D => "GlobalMaxPooling1D",
            Layer::GlobalAveragePooling1D => "GlobalAveragePooling1D",
            Layer::Reshape { .. } => "Reshape",
            Layer::Permute { .. } => "Permute",
            Layer::Embedding { .. } => "Embedding",
            Layer::BatchNormalization(_) => "BatchNormalization",
            Layer::LayerNormalization(n) if n.rms => "RMSNormalization",
            Layer::LayerNormalization(_) => "LayerNormalization",
            Layer::Normalization { .. } => "Normalization",
            Layer::Rescaling { .. } => "Rescaling",
            Layer::Identity => "Identity",
            Layer::ArgMax { .. } => "ArgMax",
            Layer::Merge(m) => m.type_name(),
            Layer::Affine { .. } => "Affine",
            Layer::Unary(u) => u.name(),
        }
    }

    /// Base of auto-generated names (`dense`, `dense_1`, ... as Keras names them).
    pub fn base_name(&self) -> &'static str {
        match self {
            Layer::Input => "input_layer",
            Layer::Dense { .. } => "dense",
            Layer::Activation(_) => "activation",
            Layer::Dropout { .. } => "dropout",
            Layer::Flatten => "flatten",
            Layer::Conv1D { .. } => "conv1d",
            Layer::Concatenate { .. } => "concatenate",
            Layer::MaxPooling1D { .. } => "max_pooling1d",
            Layer::AveragePooling1D { .. } => "average_pooling1d",
            Layer::GlobalMaxPooling1D => "global_max_pooling1d",
            Layer::GlobalAveragePooling1D => "global_average_pooling1d",
            Layer::Reshape { .. } => "reshape",
            Layer::Permute { .. } => "permute",
            Layer::Embedding { .. } => "embedding",
            Layer::BatchNormalization(_) => "batch_normalization",
            Layer::LayerNormalization(n) if n.rms => "rms_normalization",
            Layer::LayerNormalization(_) => "layer_normalization",
            Layer::Normalization { .. } => "normalization",
            Layer::Rescaling { .. } => "rescaling",
            Layer::Identity => "identity",
            Layer::ArgMax { .. } => "argmax",
            Layer::Merge(Merge::Add) => "add",
            Layer::Merge(Merge::Subtract) => "subtract",
            Layer::Merge(Merge::Multiply) => "multiply",
            Layer::Merge(Merge::Average) => "average",
            Layer::Merge(Merge::Maximum) => "maximum",
            Layer::Merge(Merge::Minimum) => "minimum",
            Layer::Affine { .. } => "affine",
            Layer::Unary(_) => "unary",
        }
    }

    /// Element type of the layer's output: int64 for ArgMax, float32 for every other layer
    /// (an input's type is its node's).
    pub fn output_dtype(&self) -> DType {
        match self {
            Layer::ArgMax { .. } => DType::I64,
            _ => DType::F32,
        }
    }

    /// [`Self::output_dtype`] given the first input's type: a view (`Reshape`, `Flatten`) of
    /// int64 labels stays int64.
    pub fn output_dtype_of(&self, input: Option<DType>) -> DType {
        match (self, input) {
            (Layer::Reshape { .. } | Layer::Flatten, Some(DType::I64)) => DType::I64,
            _ => self.output_dtype(),
        }
    }

    /// Parameters the layer holds in its configuration (normalization statistics), as
    /// Keras counts them; kernels and biases are on the node.
    pub fn param_count(&self) -> usize {
        match self {
            Layer::BatchNormalization(n) => n.count(),
            Layer::LayerNormalization(n) => n.count(),
            // Keras also counts the adapted sample count.
            Layer::Normalization { mean, variance, .. } => mean.len() + variance.len() + 1,
            _ => 0,
        }
    }

    /// For layers with weights: `(K, units, use_bias)` of the `K x units` kernel matrix the
    /// layer multiplies by, given its input shape.
    pub fn weight_dims(&self, input: &[usize]) -> Option<(usize, usize, bool)> {
        let last = *input.last().unwrap_or(&0);
        match *self {
            Layer::Dense {
                units, use_bias, ..
            } => Some((last, units, use_bias)),
            Layer::Conv1D {
                filters,
                kernel_size,
                use_bias,
                ..
            } => Some((kernel_size.saturating_mul(last), filters, use_bias)),
            Layer::Embedding {
                input_dim,
                output_dim,
            } => Some((input_dim, output_dim, false)),
            _ => None,
        }
    }

    /// The window of a Conv1D or pooling layer over an input of `[steps, channels]`.
    pub fn window(&self, input: &[usize]) -> Result<Option<Window>, String> {
        let (steps, _) = match self {
            Layer::Conv1D { .. } | Layer::MaxPooling1D { .. } | Layer::AveragePooling1D { .. } => {
                steps_channels(input, self.type_name())?
            }
            _ => return Ok(None),
        };
        match *self {
            Layer::Conv1D {
                kernel_size,
                strides,
                padding,
                dilation_rate,
                ..
            } => Window::new(steps, kernel_size, strides, dilation_rate, padding).map(Some),
            Layer::MaxPooling1D {
                pool_size,
                strides,
                padding,
            }
            | Layer::AveragePooling1D {
                pool_size,
                strides,
                padding,
            } => {
                if padding == Padding::Causal {
                    return Err("pooling padding must be valid or same".into());
                }
                Window::new(steps, pool_size, strides, 1, padding).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Output shape (without the batch axis) for the given input shapes.
    pub fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let one = |inputs: &[&[usize]]| -> Result<Vec<usize>, String> {
            match inputs {
                [s] => Ok(s.to_vec()),
                _ => Err(format!("expects 1 input, got {}", inputs.len())),
            }
        };
        match *self {
            Layer::Input => Err("an InputLayer takes no inputs".into()),
            Layer::Dense { units, .. } => {
                let mut s = one(inputs)?;
                if s.is_empty() {
                    return Err("Dense needs an input of rank >= 1 (besides the batch)".into());
                }
                if units == 0 {
                    return Err("Dense units must be positive".into());
                }
                *s.last_mut().expect("rank checked") = units;
                Ok(s)
            }
            Layer::Activation(_) | Layer::Identity | Layer::Rescaling { .. } | Layer::Unary(_) => {
                one(inputs)
            }
            Layer::Affine {
                ref scale,
                ref shift,
            } => {
                let s = one(inputs)?;
                if s.last() != Some(&scale.len()) || shift.len() != scale.len() {
                    return Err(format!(
                        "Affine of {} scales and {} shifts on shape {s:?}: one of each per \
                         channel of the last axis",
                        scale.len(),
                        shift.len()
                    ));
                }
                if scale.iter().chain(shift.iter()).any(|v| !v.is_finite()) {
                    return Err("Affine constants must be finite".into());
                }
                Ok(s)
            }
            Layer::ArgMax { keepdims } => {
                let mut s = one(inputs)?;
                let c = last_axis(&s, -1)?;
                if c >= 1 << 24 {
                    return Err(format!("ArgMax over {c} values: at most 2^24 (16,777,216)"));
                }
                s.pop();
                if keepdims {
                    s.push(1);
                }
                Ok(s)
            }
            Layer::Embedding {
                input_dim,
                output_dim,
            } => {
                let mut s = one(inputs)?;
                if input_dim == 0 || output_dim == 0 {
                    return Err("Embedding input_dim and output_dim must be positive".into());
                }
                s.push(output_dim);
                checked_elems(&s)?;
                Ok(s)
            }
            Layer::BatchNormalization(ref n) => {
                let s = one(inputs)?;
                n.check(&s)?;
                Ok(s)
            }
            Layer::LayerNormalization(ref n) => {
                let s = one(inputs)?;
                n.check(&s)?;
                Ok(s)
            }
            Layer::Normalization {
                axis,
                ref mean,
                ref variance,
            } => {
                let s = one(inputs)?;
                let ch = last_axis(&s, axis)?;
                check_channel_vecs(
                    &[("mean", Some(&mean[..])), ("variance", Some(&variance[..]))],
                    ch,
                )?;
                if let Some(i) = variance.iter().position(|&v| v < 0.0) {
                    return Err(format!(
                        "variance[{i}] is {} (cannot be negative)",
                        variance[i]
                    ));
                }
                Ok(s)
            }
            Layer::Merge(m) => {
                let [first, rest @ ..] = inputs else {
                    return Err(format!("{} needs at least 2 inputs", m.type_name()));
                };
                if rest.is_empty() || (m == Merge::Subtract && rest.len() != 1) {
                    return Err(format!(
                        "{} needs {} inputs, got {}",
                        m.type_name(),
                        if m == Merge::Subtract {
                            "exactly 2"
                        } else {
                            "at least 2"
                        },
                        inputs.len()
                    ));
                }
                if let Some(other) = rest.iter().find(|s| *s != first) {
                    return Err(format!(
                        "{} inputs differ in shape: {first:?} vs {other:?}",
                        m.type_name()
                    ));
                }
                Ok(first.to_vec())
            }
            Layer::Dropout { rate } => {
                if !(0.0..1.0).contains(&rate) {
                    return Err(format!("Dropout rate must be in [0, 1), got {rate}"));
                }
                one(inputs)
            }
            Layer::Flatten => {
                let s = one(inputs)?;
                Ok(vec![checked_elems(&s)?])
            }
            Layer::Conv1D { filters, .. } => {
                let s = one(inputs)?;
                if filters == 0 {
                    return Err("Conv1D filters must be positive".into());
                }
                let w = self.window(&s)?.ok_or("no window")?;
                Ok(vec![w.out, filters])
            }
            Layer::MaxPooling1D { .. } | Layer::AveragePooling1D { .. } => {
                let s = one(inputs)?;
                let (_, ch) = steps_channels(&s, self.type_name())?;
                let w = self.window(&s)?.ok_or("no window")?;
                Ok(vec![w.out, ch])
            }
            Layer::GlobalMaxPooling1D | Layer::GlobalAveragePooling1D => {
                let s = one(inputs)?;
                let (_, ch) = steps_channels(&s, self.type_name())?;
                Ok(vec![ch])
            }
            Layer::Concatenate { axis } => {
                let [first, rest @ ..] = inputs else {
                    return Err("Concatenate needs at least 1 input".into());
                };
                let a = concat_axis(axis, first.len())?;
                let mut out = first.to_vec();
                for s in rest {
                    let same_rest = s.len() == first.len()
                        && s.iter()
                            .zip(first.iter())
                            .enumerate()
                            .all(|(i, (x, y))| i == a || x == y);
                    if !same_rest {
                        return Err(format!(
                            "Concatenate on axis {axis}: shapes {first:?} and {s:?} differ off that axis"
                        ));
                    }
                    out[a] = out[a].checked_add(s[a]).ok_or("size overflows")?;
                }
                Ok(out)
            }
            Layer::Reshape { ref target_shape } => {
                let s = one(inputs)?;
                reshape(&s, target_shape)
            }
            Layer::Permute { ref dims } => {
                let s = one(inputs)?;
                let perm = permutation(dims, s.len())?;
                Ok(perm.iter().map(|&a| s[a]).collect())
            }
        }
    }
}

/// The length of the last axis (the channels a normalization works on), checking that `axis`
/// (Keras numbering: batch = 0, negative from the end) names it.
fn last_axis(s: &[usize], axis: isize) -> Result<usize, String> {
    let ch = s
        .last()
        .copied()
        .ok_or_else(|| "needs an input of rank >= 1 (besides the batch)".to_string())?;
    if axis != -1 && axis != s.len() as isize {
        return Err(format!(
            "axis {axis} of a rank-{} tensor: only the last axis (-1) is supported",
            s.len() + 1
        ));
    }
    Ok(ch)
}

/// A Keras concatenation axis (batch = 0, negative from the end) as an index into the
/// per-sample shape of rank `rank`.
pub fn concat_axis(axis: isize, rank: usize) -> Result<usize, String> {
    let r = rank as isize;
    let a = if axis < 0 { r + axis } else { axis - 1 };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!(
            "axis {axis} is not a non-batch axis of a rank-{} tensor",
            rank + 1
        ))
    }
}

/// Keras `Permute` dims (numbered from 1) as a 0-based permutation of a rank-`rank` shape.
pub fn permutation(dims: &[usize], rank: usize) -> Result<Vec<usize>, String> {
    let mut seen = vec![false; rank];
    let mut perm = Vec::with_capacity(rank);
    for &d in dims {
        match d.checked_sub(1) {
            Some(a) if a < rank && !seen[a] => {
                seen[a] = true;
                perm.push(a);
            }
            _ => break,
        }
    }
    if perm.len() != rank || dims.len() != rank {
        return Err(format!(
            "Permute dims {dims:?} are not a permutation of 1..={rank} (the input has {rank} non-batch axes)"
        ));
    }
    Ok(perm)
}

/// `Reshape(target)` of a per-sample shape: same number of values, one `-1` inferred. An
/// empty target is one value per sample (ONNX's `[N]`).
pub fn reshape(from: &[usize], target: &[isize]) -> Result<Vec<usize>, String> {
    let elems = checked_elems(from)?;
    if target.is_empty() && elems != 1 {
        return Err(format!(
            "cannot reshape {from:?} ({elems} values) to one value per sample"
        ));
    }
    if target.iter().filter(|&&d| d == -1).count() > 1 {
        return Err(format!("target shape {target:?}: at most one -1"));
    }
    let mut out = Vec::with_capacity(target.len());
    let mut known = 1usize;
    for &d in target {
        match d {
            -1 => out.push(0),
            d if d > 0 => {
                let d = d as usize;
                known = known.checked_mul(d).ok_or("target shape overflows")?;
                out.push(d);
            }
            d => return Err(format!("target shape {target:?}: invalid entry {d}")),
        }
    }
    if let Some(i) = target.iter().position(|&d| d == -1) {
        if known == 0 || !elems.is_multiple_of(known) {
            return Err(format!(
                "cannot reshape {from:?} ({elems} values) to {target:?}"
            ));
        }
        out[i] = elems / known;
    } else if known != elems {
        return Err(format!(
            "cannot reshape {from:?} ({elems} values) to {target:?}"
        ));
    }
    Ok(out)
}

/// Number of elements of a shape, or an error on overflow.
pub fn checked_elems(shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} has more elements than fit in memory"))
}

/// Weights of a Dense layer: `kernel` is `K x units`, row-major (Keras layout), `bias` `units`.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseWeights {
    /// `K x units`, row-major.
    pub kernel: Vec<f32>,
    /// `units` values, if the layer has a bias.
    pub bias: Option<Vec<f32>>,
}

/// A symbolic tensor: the output of a layer, with its shape (without the batch axis).
#[derive(Clone, Debug)]
pub struct Tensor(Rc<TensorNode>);

#[derive(Debug)]
struct TensorNode {
    id: u64,
    layer: Layer,
    name: Option<String>,
    inputs: Vec<Tensor>,
    shape: Vec<usize>,
    weights: Option<DenseWeights>,
    dtype: DType,
}

impl Tensor {
    fn new(
        layer: Layer,
        name: Option<String>,
        inputs: Vec<Tensor>,
        weights: Option<DenseWeights>,
    ) -> Result<Tensor> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let label = name
            .clone()
            .unwrap_or_else(|| layer.type_name().to_string());
        let dtypes: Vec<DType> = inputs.iter().map(|t| t.0.dtype).collect();
        check_dtypes(&label, &layer, &dtypes)?;
        let shape = layer.output_shape(&shapes).map_err(|msg| Error::Shape {
            layer: label.clone(),
            msg,
        })?;
        match (
            layer.weight_dims(shapes.first().copied().unwrap_or(&[])),
            &weights,
        ) {
            (Some(dims), Some(w)) => check_dense_weights(&label, dims, w)?,
            (None, Some(_)) => {
                return Err(Error::Model(format!("layer {label:?} has no weights")));
            }
            _ => {}
        }
        let dtype = layer.output_dtype_of(inputs.first().map(|t| t.0.dtype));
        Ok(Tensor(Rc::new(TensorNode {
            id: next_id(),
            layer,
            name,
            inputs,
            shape,
            dtype,
            weights,
        })))
    }

    /// Shape without the batch axis.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
}

/// Integer values are read only by an Embedding (token ids) and by views of integer labels
/// (a `Reshape`/`Flatten` of an ArgMax, as skl2onnx writes a classifier's label).
fn check_dtypes(label: &str, layer: &Layer, dtypes: &[DType]) -> Result<()> {
    if matches!(layer, Layer::Embedding { .. })
        || matches!(layer, Layer::Reshape { .. } | Layer::Flatten) && dtypes == [DType::I64]
    {
        return Ok(());
    }
    match dtypes.iter().find(|&&d| d != DType::F32) {
        Some(d) => Err(Error::Shape {
            layer: label.into(),
            msg: format!(
                "{} cannot read {d} values: only an Embedding reads integer ids",
                layer.type_name()
            ),
        }),
        None => Ok(()),
    }
}

/// One or several symbolic tensors: what [`Model::new`] takes as inputs and outputs
/// (`&x`, `&[&a, &b]`, `[&a, &b]`, `&[a, b]`, `vec![a, b]`).
pub trait Tensors {
    /// The tensors, in order.
    fn tensors(&self) -> Vec<Tensor>;
}

impl Tensors for Tensor {
    fn tensors(&self) -> Vec<Tensor> {
        vec![self.clone()]
    }
}
impl Tensors for &Tensor {
    fn tensors(&self) -> Vec<Tensor> {
        vec![(*self).clone()]
    }
}
impl Tensors for [&Tensor] {
    fn tensors(&self) -> Vec<Tensor> {
        self.iter().map(|&t| t.clone()).collect()
    }
}
impl Tensors for [Tensor] {
    fn tensors(&self) -> Vec<Tensor> {
        self.to_vec()
    }
}
impl<const N: usize> Tensors for [&Tensor; N] {
    fn tensors(&self) -> Vec<Tensor> {
        self.iter().map(|&t| t.clone()).collect()
    }
}
impl Tensors for Vec<Tensor> {
    fn tensors(&self) -> Vec<Tensor> {
        self.clone()
    }
}
impl<T: Tensors + ?Sized> Tensors for &&T {
    fn tensors(&self) -> Vec<Tensor> {
        (**self).tensors()
    }
}

/// Creation order of symbolic tensors: a topological order of any graph built from them.
fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Glorot-uniform kernel and zero bias for a layer built without weights. The size is
/// checked and reserved fallibly: `Dense(1 << 40)` is an error, not an abort.
fn init_weights(
    layer: &str,
    (k, units, use_bias): (usize, usize, bool),
    seed: u64,
) -> Result<DenseWeights> {
    let err = |msg: String| Error::Shape {
        layer: layer.into(),
        msg,
    };
    let count = k
        .checked_mul(units)
        .filter(|n| n.checked_mul(4).is_some())
        .ok_or_else(|| err(format!("a {k} x {units} kernel overflows")))?;
    let mut kernel = Vec::new();
    kernel
        .try_reserve_exact(count)
        .map_err(|_| err(format!("cannot allocate a {k} x {units} kernel")))?;
    kernel.extend(init::glorot_uniform(k, units, 0x5eed ^ seed));
    Ok(DenseWeights {
        kernel,
        bias: use_bias.then(|| vec![0.0; units]),
    })
}

fn check_dense_weights(
    layer: &str,
    (k, units, use_bias): (usize, usize, bool),
    w: &DenseWeights,
) -> Result<()> {
    let expected = k.checked_mul(units).ok_or_else(|| Error::Shape {
        layer: layer.into(),
        msg: "kernel size overflows".into(),
    })?;
    if w.kernel.len() != expected {
        return Err(Error::Weights {
            layer: layer.into(),
            what: "kernel",
            expected,
            got: w.kernel.len(),
        });
    }
    match (&w.bias, use_bias) {
        (Some(b), true) if b.len() != units => Err(Error::Weights {
            layer: layer.into(),
            what: "bias",
            expected: units,
            got: b.len(),
        }),
        (Some(_), false) => Err(Error::Weights {
            layer: layer.into(),
            what: "bias",
            expected: 0,
            got: units,
        }),
        (None, true) => Err(Error::Weights {
            layer: layer.into(),
            what: "bias",
            expected: units,
            got: 0,
        }),
        _ => Ok(()),
    }
}

/// A layer instance in a built model.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Unique layer name.
    pub name: String,
    /// The layer and its configuration.
    pub layer: Layer,
    /// Indices of the nodes this one reads (earlier in `Model::nodes`).
    pub inputs: Vec<usize>,
    /// Output shape without the batch axis.
    pub shape: Vec<usize>,
    /// Weights: the kernel and bias of Dense and Conv1D layers, an Embedding's table.
    pub weights: Option<DenseWeights>,
    /// Element type of the node's values: integer only for inputs of token ids.
    pub dtype: DType,
}

impl Node {
    /// A node with `f32` values.
    pub fn new(
        name: impl Into<String>,
        layer: Layer,
        inputs: Vec<usize>,
        shape: Vec<usize>,
        weights: Option<DenseWeights>,
    ) -> Node {
        Node {
            name: name.into(),
            layer,
            inputs,
            shape,
            weights,
            dtype: DType::F32,
        }
    }

    /// Number of weights (Keras's count, normalization statistics included).
    pub fn count_params(&self) -> usize {
        self.weights
            .as_ref()
            .map_or(0, |w| w.kernel.len() + w.bias.as_ref().map_or(0, Vec::len))
            + self.layer.param_count()
    }
}

/// A model: nodes in topological order, its inputs and outputs in Keras order.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    name: String,
    nodes: Vec<Node>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    /// Name of each output (the producing layer's, or the file's output name).
    output_names: Vec<String>,
    /// Where the model came from (set by the loaders: format and producer version).
    origin: String,
}

impl Model {
    /// The model from `inputs` to `outputs`, as Keras's `Model(inputs, outputs)`: one tensor
    /// (`&x`) or a list (`&[&a, &b]`) each, kept in the order given.
    /// Layers without weights get Glorot-uniform kernels (seeded by position) and zero biases.
    pub fn new(inputs: impl Tensors, outputs: impl Tensors) -> Result<Model> {
        let (inputs, outputs) = (inputs.tensors(), outputs.tensors());
        if outputs.is_empty() {
            return Err(Error::Model("a model needs at least one output".into()));
        }
        let mut seen = HashSet::new();
        let mut stack = outputs.clone();
        let mut found = Vec::new();
        while let Some(t) = stack.pop() {
            if seen.insert(t.0.id) {
                stack.extend(t.0.inputs.iter().cloned());
                found.push(t);
            }
        }
        // Given inputs the outputs do not read are still inputs of the model (Keras keeps them).
        for t in &inputs {
            if seen.insert(t.0.id) {
                found.push(t.clone());
            }
        }
        found.sort_by_key(|t| t.0.id);
        let given: HashSet<u64> = inputs.iter().map(|t| t.0.id).collect();
        if let Some(t) = inputs.iter().find(|t| t.0.layer != Layer::Input) {
            return Err(Error::Model(format!(
                "{:?} is given as an input but is the output of a {} layer",
                t.0.name.as_deref().unwrap_or(""),
                t.0.layer.type_name()
            )));
        }
        if given.len() != inputs.len() {
            return Err(Error::Model("the same input is given twice".into()));
        }
        if let Some(t) = found
            .iter()
            .find(|t| t.0.layer == Layer::Input && !given.contains(&t.0.id))
        {
            return Err(Error::Model(format!(
                "the outputs depend on an input that is not given ({:?}, shape {:?})",
                t.0.name.as_deref().unwrap_or("unnamed"),
                t.0.shape
            )));
        }
        let index: HashMap<u64, usize> =
            found.iter().enumerate().map(|(i, t)| (t.0.id, i)).collect();
        let nodes = found
            .iter()
            .map(|t| Node {
                name: t.0.name.clone().unwrap_or_default(),
                layer: t.0.layer.clone(),
                inputs: t.0.inputs.iter().map(|i| index[&i.0.id]).collect(),
                shape: t.0.shape.clone(),
                weights: t.0.weights.clone(),
                dtype: t.0.dtype,
            })
            .collect();
        let ins: Vec<usize> = inputs.iter().map(|t| index[&t.0.id]).collect();
        let outs: Vec<usize> = outputs.iter().map(|t| index[&t.0.id]).collect();
        Model::from_nodes("functional", nodes, &ins, &outs)
    }

    /// Builds a model from nodes in topological order (what file loaders produce). Empty names
    /// are filled as Keras would; shapes are re-inferred and checked; missing Dense weights are
    /// initialised.
    pub fn from_nodes(
        name: &str,
        mut nodes: Vec<Node>,
        inputs: &[usize],
        outputs: &[usize],
    ) -> Result<Model> {
        if inputs.is_empty() || outputs.is_empty() {
            return Err(Error::Model(
                "a model needs at least one input and one output".into(),
            ));
        }
        if inputs.iter().chain(outputs).any(|&i| i >= nodes.len()) {
            return Err(Error::Model("input or output index out of range".into()));
        }
        if inputs.iter().collect::<HashSet<_>>().len() != inputs.len() {
            return Err(Error::Model("the same input is given twice".into()));
        }
        assign_names(&mut nodes)?;
        for i in 0..nodes.len() {
            let node = &nodes[i];
            if node.inputs.iter().any(|&j| j >= i) {
                return Err(Error::Model(format!(
                    "layer {:?} reads a layer that comes after it (cycle or bad order)",
                    node.name
                )));
            }
            let shape = if node.layer == Layer::Input {
                if !inputs.contains(&i) {
                    return Err(Error::Model(format!(
                        "layer {:?} is an InputLayer that is not one of the model's inputs",
                        node.name
                    )));
                }
                if !node.inputs.is_empty() {
                    return Err(Error::Model(format!(
                        "input {:?} reads other layers",
                        node.name
                    )));
                }
                if node.shape.is_empty() || node.shape.contains(&0) {
                    return Err(Error::Shape {
                        layer: node.name.clone(),
                        msg: format!(
                            "input shape {:?} must be non-empty and positive",
                            node.shape
                        ),
                    });
                }
                checked_elems(&node.shape).map_err(|msg| Error::Shape {
                    layer: node.name.clone(),
                    msg,
                })?;
                node.shape.clone()
            } else {
                let shapes: Vec<&[usize]> = node
                    .inputs
                    .iter()
                    .map(|&j| nodes[j].shape.as_slice())
                    .collect();
                node.layer
                    .output_shape(&shapes)
                    .map_err(|msg| Error::Shape {
                        layer: node.name.clone(),
                        msg,
                    })?
            };
            let in_shape = node.inputs.first().map(|&j| nodes[j].shape.clone());
            if node.layer != Layer::Input {
                let dtypes: Vec<DType> = node.inputs.iter().map(|&j| nodes[j].dtype).collect();
                check_dtypes(&node.name, &node.layer, &dtypes)?;
            }
            let first = node.inputs.first().map(|&j| nodes[j].dtype);
            let node = &mut nodes[i];
            if node.layer != Layer::Input {
                node.dtype = node.layer.output_dtype_of(first);
            }
            node.shape = shape;
            if let Some(dims) = node.layer.weight_dims(&in_shape.unwrap_or_default()) {
                match &node.weights {
                    Some(w) => check_dense_weights(&node.name, dims, w)?,
                    None => node.weights = Some(init_weights(&node.name, dims, i as u64)?),
                }
            } else if node.weights.is_some() {
                return Err(Error::Model(format!(
                    "layer {:?} ({}) has no weights",
                    node.name,
                    node.layer.type_name()
                )));
            }
        }
        if let Some(&i) = inputs.iter().find(|&&i| nodes[i].layer != Layer::Input) {
            return Err(Error::Model(format!(
                "input {:?} is not an InputLayer",
                nodes[i].name
            )));
        }
        let output_names = outputs.iter().map(|&o| nodes[o].name.clone()).collect();
        Ok(Model {
            name: name.to_string(),
            nodes,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            output_names,
            origin: "built in code".into(),
        })
    }

    /// Where the model came from: "built in code", or the file format and the producer's
    /// version as the file records it (e.g. "Keras 2.21.0 (tensorflow), whole-model HDF5").
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Sets [`origin`](Self::origin) (loaders do).
    pub fn set_origin(&mut self, origin: impl Into<String>) {
        self.origin = origin.into();
    }

    /// Renames the outputs (ONNX names its graph outputs apart from the nodes making them).
    pub fn set_output_names(&mut self, names: Vec<String>) -> Result<()> {
        if names.len() != self.outputs.len() {
            return Err(Error::Model(format!(
                "{} output names for {} outputs",
                names.len(),
                self.outputs.len()
            )));
        }
        if names.iter().collect::<HashSet<_>>().len() != names.len() {
            return Err(Error::Model(format!("two outputs share a name: {names:?}")));
        }
        self.output_names = names;
        Ok(())
    }

    /// The model restricted to the named outputs (in the order named), with every layer only
    /// an unrequested output needs removed. The inputs stay as they are.
    pub fn select_outputs(&self, names: &[&str]) -> Result<Model> {
        let mut outs = Vec::with_capacity(names.len());
        let mut out_names = Vec::with_capacity(names.len());
        for &n in names {
            let k = self.output_index(n).ok_or_else(|| {
                Error::Model(format!(
                    "no output named {n:?} (outputs: {})",
                    self.output_names.join(", ")
                ))
            })?;
            outs.push(self.outputs[k]);
            out_names.push(self.output_names[k].clone());
        }
        let mut live = vec![false; self.nodes.len()];
        for &o in &outs {
            live[o] = true;
        }
        for &i in &self.inputs {
            live[i] = true;
        }
        for i in (0..self.nodes.len()).rev() {
            if live[i] {
                for &j in &self.nodes[i].inputs {
                    live[j] = true;
                }
            }
        }
        let mut map = vec![usize::MAX; self.nodes.len()];
        let mut nodes = Vec::new();
        for (i, n) in self.nodes.iter().enumerate().filter(|&(i, _)| live[i]) {
            map[i] = nodes.len();
            let mut n = n.clone();
            n.inputs.iter_mut().for_each(|j| *j = map[*j]);
            nodes.push(n);
        }
        let ins: Vec<usize> = self.inputs.iter().map(|&i| map[i]).collect();
        let outs: Vec<usize> = outs.iter().map(|&o| map[o]).collect();
        let mut m = Model::from_nodes(&self.name, nodes, &ins, &outs)?;
        m.output_names = out_names;
        m.origin = self.origin.clone();
        Ok(m)
    }

    /// Position of the output named `name`.
    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.output_names.iter().position(|n| n == name)
    }

    /// Position of the input named `name`.
    pub fn input_index(&self, name: &str) -> Option<usize> {
        self.inputs.iter().position(|&i| self.nodes[i].name == name)
    }

    /// The model's name (`"functional"` unless a loader says otherwise).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Nodes in topological order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    /// Indices of the input nodes, in the model's input order.
    pub fn inputs(&self) -> &[usize] {
        &self.inputs
    }
    /// Indices of the output nodes, in the model's output order.
    pub fn outputs(&self) -> &[usize] {
        &self.outputs
    }
    /// Names of the inputs (their InputLayers' names), in order.
    pub fn input_names(&self) -> Vec<&str> {
        self.inputs
            .iter()
            .map(|&i| self.nodes[i].name.as_str())
            .collect()
    }
    /// Names of the outputs, in order.
    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }
    /// Index of the first input node (the input of a one-input model).
    pub fn input(&self) -> usize {
        self.inputs[0]
    }
    /// Index of the first output node (the output of a one-output model).
    pub fn output(&self) -> usize {
        self.outputs[0]
    }
    /// Shape of the first input, without the batch axis.
    pub fn input_shape(&self) -> &[usize] {
        &self.nodes[self.inputs[0]].shape
    }
    /// Shape of the first output, without the batch axis.
    pub fn output_shape(&self) -> &[usize] {
        &self.nodes[self.outputs[0]].shape
    }
    /// The node named `name`.
    pub fn layer(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
    /// Total number of weights.
    pub fn count_params(&self) -> usize {
        self.nodes.iter().map(Node::count_params).sum()
    }

    /// Replaces a Dense or Conv1D layer's weights (`kernel` row-major as Keras stores it:
    /// `[K, units]` or `[kernel_size, in_channels, filters]`).
    pub fn set_weights(
        &mut self,
        name: &str,
        kernel: Vec<f32>,
        bias: Option<Vec<f32>>,
    ) -> Result<()> {
        let i = self
            .nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| Error::NoSuchLayer(name.into()))?;
        let in_shape = self.nodes[i]
            .inputs
            .first()
            .map(|&j| self.nodes[j].shape.clone())
            .unwrap_or_default();
        let node = &mut self.nodes[i];
        let Some(dims) = node.layer.weight_dims(&in_shape) else {
            return Err(Error::Model(format!(
                "layer {name:?} ({}) has no weights",
                node.layer.type_name()
            )));
        };
        let w = DenseWeights { kernel, bias };
        check_dense_weights(name, dims, &w)?;
        node.weights = Some(w);
        Ok(())
    }

    /// Keras-style summary table.
    pub fn summary(&self) -> String {
        summary::render(self)
    }
}

/// Fills empty names per layer class (`dense`, `dense_1`, ...) and rejects duplicates.
fn assign_names(nodes: &mut [Node]) -> Result<()> {
    let mut taken: HashSet<String> = HashSet::new();
    for n in nodes.iter().filter(|n| !n.name.is_empty()) {
        if !taken.insert(n.name.clone()) {
            return Err(Error::Model(format!("two layers are named {:?}", n.name)));
        }
    }
    let mut counters: BTreeMap<&'static str, usize> = BTreeMap::new();
    for n in nodes.iter_mut().filter(|n| n.name.is_empty()) {
        let base = n.layer.base_name();
        let c = counters.entry(base).or_insert(0);
        loop {
            let candidate = if *c == 0 {
                base.to_string()
            } else {
                format!("{base}_{c}")
            };
            *c += 1;
            if taken.insert(candidate.clone()) {
                n.name = candidate;
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sources_are_the_non_padding_taps() {
        for len in 1..9 {
            for size in 1..7 {
                for stride in 1..4 {
                    for dilation in 1..4 {
                        for padding in [Padding::Valid, Padding::Same, Padding::Causal] {
                            let Ok(w) = Window::new(len, size, stride, dilation, padding) else {
                                continue;
                            };
                            for o in 0..w.out {
                                let want: Vec<usize> =
                                    (0..size).filter_map(|t| w.source(o, t)).collect();
                                let got: Vec<usize> = w.sources(o).collect();
                                assert_eq!(got, want, "{w:?} o={o}");
                            }
                        }
                    }
                }
            }
        }
    }
}

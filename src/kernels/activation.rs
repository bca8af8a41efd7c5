//! Activation functions, named and parameterised as Keras names them.

use std::fmt;
use std::str::FromStr;

/// An activation function, spelled as in Keras 3 (`keras.activations`).
///
/// Every elementwise activation maps NaN to NaN (the canonical quiet NaN, `f32::NAN`), whatever
/// the payload that came in, so results are bit-identical across ISA tiers.
/// `Softmax` and `LogSoftmax` act on the last axis (one row at a time).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Activation {
    /// `x`.
    Linear,
    /// Keras `relu(x, negative_slope, max_value, threshold)`:
    /// `x > threshold ? min(x, max_value) : negative_slope * (x - threshold)`.
    Relu {
        /// Slope below the threshold (0 for the plain ReLU).
        negative_slope: f32,
        /// Upper saturation, if any.
        max_value: Option<f32>,
        /// Values at or below it are the "negative" part.
        threshold: f32,
    },
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x >= 0 ? x : negative_slope * x` (Keras default slope 0.2).
    LeakyRelu {
        /// Slope for negative inputs.
        negative_slope: f32,
    },
    /// `x > 0 ? x : alpha * (exp(x) - 1)`.
    Elu {
        /// Scale of the negative part.
        alpha: f32,
    },
    /// `scale * elu(x, alpha)` with the self-normalising constants.
    Selu,
    /// `0.5 x (1 + erf(x / sqrt 2))`, or the tanh approximation when `approximate`.
    Gelu {
        /// Use `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
        approximate: bool,
    },
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `relu6(x + 3) / 6`.
    HardSigmoid,
    /// ONNX `HardSigmoid`: `max(0, min(1, alpha x + beta))` (ONNX defaults 0.2, 0.5).
    HardSigmoidAffine {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// `x * sigmoid(x)` (Keras also calls it `swish`).
    Silu,
    /// `x * hard_sigmoid(x)` (Keras also calls it `hard_swish`).
    HardSilu,
    /// Hyperbolic tangent.
    Tanh,
    /// `log(exp(x) + 1)`, computed without overflow.
    Softplus,
    /// `x / (|x| + 1)`.
    Softsign,
    /// `exp(x)`.
    Exponential,
    /// `x * tanh(softplus(x))`.
    Mish,
    /// `exp(x - max) / sum(exp(x - max))` over the last axis.
    Softmax,
    /// `x - max - log(sum(exp(x - max)))` over the last axis.
    LogSoftmax,
}

/// SELU's `alpha`, as Keras defines it.
pub const SELU_ALPHA: f32 = 1.673_263_2;
/// SELU's `scale`, as Keras defines it.
pub const SELU_SCALE: f32 = 1.050_701;

impl Activation {
    /// Plain ReLU, `max(x, 0)`.
    pub const RELU: Activation = Activation::Relu {
        negative_slope: 0.0,
        max_value: None,
        threshold: 0.0,
    };

    /// Every activation with its Keras defaults, in Keras's order (plus ONNX's affine hard
    /// sigmoid); used by tests and `verify`.
    pub const ALL: [Activation; 21] = [
        Activation::Linear,
        Activation::RELU,
        Activation::Relu {
            negative_slope: 0.1,
            max_value: Some(4.5),
            threshold: 0.25,
        },
        Activation::Relu6,
        Activation::LeakyRelu {
            negative_slope: 0.2,
        },
        Activation::Elu { alpha: 1.0 },
        Activation::Selu,
        Activation::Gelu { approximate: false },
        Activation::Gelu { approximate: true },
        Activation::Sigmoid,
        Activation::HardSigmoid,
        Activation::HardSigmoidAffine {
            alpha: 0.2,
            beta: 0.5,
        },
        Activation::Silu,
        Activation::HardSilu,
        Activation::Tanh,
        Activation::Softplus,
        Activation::Softsign,
        Activation::Exponential,
        Activation::Mish,
        Activation::Softmax,
        Activation::LogSoftmax,
    ];

    /// True for activations that need a whole row (softmax, log_softmax).
    pub fn is_row_wise(self) -> bool {
        matches!(self, Activation::Softmax | Activation::LogSoftmax)
    }

    /// True for activations made of a few compares, selects, adds and multiplies (no exp, log
    /// or division): cheap enough to run on a whole register tile at once.
    pub fn is_cheap(self) -> bool {
        matches!(
            self,
            Activation::Linear
                | Activation::Relu { .. }
                | Activation::Relu6
                | Activation::LeakyRelu { .. }
                | Activation::HardSigmoidAffine { .. }
                | Activation::HardSigmoid
                | Activation::HardSilu
        )
    }

    /// True for `linear`, which a plan drops entirely.
    pub fn is_identity(self) -> bool {
        matches!(self, Activation::Linear)
    }

    /// The Keras name (`"relu"`, `"gelu"`, ...), without parameters.
    pub fn keras_name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu { .. } => "relu",
            Activation::Relu6 => "relu6",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Elu { .. } => "elu",
            Activation::Selu => "selu",
            Activation::Gelu { .. } => "gelu",
            Activation::Sigmoid => "sigmoid",
            Activation::HardSigmoid | Activation::HardSigmoidAffine { .. } => "hard_sigmoid",
            Activation::Silu => "silu",
            Activation::HardSilu => "hard_silu",
            Activation::Tanh => "tanh",
            Activation::Softplus => "softplus",
            Activation::Softsign => "softsign",
            Activation::Exponential => "exponential",
            Activation::Mish => "mish",
            Activation::Softmax => "softmax",
            Activation::LogSoftmax => "log_softmax",
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Activation::Relu {
                negative_slope,
                max_value,
                threshold,
            } if *self != Activation::RELU => {
                write!(f, "relu(negative_slope={negative_slope}")?;
                if let Some(m) = max_value {
                    write!(f, ", max_value={m}")?;
                }
                write!(f, ", threshold={threshold})")
            }
            Activation::LeakyRelu { negative_slope } => {
                write!(f, "leaky_relu(negative_slope={negative_slope})")
            }
            Activation::Elu { alpha } if alpha != 1.0 => write!(f, "elu(alpha={alpha})"),
            Activation::Gelu { approximate: true } => f.write_str("gelu(approximate=True)"),
            Activation::HardSigmoidAffine { alpha, beta } => {
                write!(f, "hard_sigmoid(alpha={alpha}, beta={beta})")
            }
            a => f.write_str(a.keras_name()),
        }
    }
}

/// An activation name Keras does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown activation {0:?} (expected a Keras name such as \"relu\", \"gelu\", \"softmax\")")]
pub struct UnknownActivation(pub String);

impl FromStr for Activation {
    type Err = UnknownActivation;

    /// Parses a Keras activation name with its defaults (`"swish"` and `"hard_swish"` included).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "linear" | "None" | "none" => Activation::Linear,
            "relu" => Activation::RELU,
            "relu6" => Activation::Relu6,
            "leaky_relu" => Activation::LeakyRelu {
                negative_slope: 0.2,
            },
            "elu" => Activation::Elu { alpha: 1.0 },
            "selu" => Activation::Selu,
            "gelu" => Activation::Gelu { approximate: false },
            "sigmoid" => Activation::Sigmoid,
            "hard_sigmoid" => Activation::HardSigmoid,
            "silu" | "swish" => Activation::Silu,
            "hard_silu" | "hard_swish" => Activation::HardSilu,
            "tanh" => Activation::Tanh,
            "softplus" => Activation::Softplus,
            "softsign" => Activation::Softsign,
            "exponential" => Activation::Exponential,
            "mish" => Activation::Mish,
            "softmax" => Activation::Softmax,
            "log_softmax" => Activation::LogSoftmax,
            other => return Err(UnknownActivation(other.to_string())),
        })
    }
}

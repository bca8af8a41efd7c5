//! The layer enum: every layer kind a model can hold, with its shape rule.

use super::*;

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
pub(super) fn last_axis(s: &[usize], axis: isize) -> Result<usize, String> {
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

//! The layer enum: every layer kind a model can hold. Each kind's behaviour lives in its own
//! module under `ops/`; this file is the table that names them.

use super::*;
use crate::ops::{LayerOp, identity, input::InputOp, pool, reshape};

/// One line per layer kind: the variant and its payload (the kind's configuration; weights
/// live on the [`Node`](super::Node)), or a unit variant and the op that carries it.
macro_rules! layers {
    (
        units { $( $(#[$um:meta])* $u:ident => $uop:expr, )* }
        kinds { $( $(#[$m:meta])* $v:ident($t:ty), )* }
    ) => {
        /// A layer and its configuration (weights live on the [`Node`](super::Node)).
        #[derive(Clone, Debug, PartialEq)]
        #[non_exhaustive]
        pub enum Layer {
            $( $(#[$um])* $u, )*
            $( $(#[$m])* $v($t), )*
        }

        impl Layer {
            /// The module that gives this kind its behaviour.
            pub(crate) fn op(&self) -> &dyn LayerOp {
                match self {
                    $( Layer::$u => &$uop, )*
                    $( Layer::$v(p) => p, )*
                }
            }
        }
    };
}

layers! {
    units {
        /// The model's input (Keras `InputLayer`).
        Input => InputOp,
        /// Collapses all non-batch axes into one.
        Flatten => reshape::FlattenOp,
        /// Passes its input through.
        Identity => identity::IdentityOp,
        /// Largest value over all steps: `[steps, channels] -> [channels]`.
        GlobalMaxPooling1D => pool::GlobalPooling1D::<true>,
        /// Mean over all steps: `[steps, channels] -> [channels]`.
        GlobalAveragePooling1D => pool::GlobalPooling1D::<false>,
    }
    kinds {
        /// `y = activation(x · kernel + bias)` over the last axis.
        Dense(DenseConfig),
        /// An activation as a layer of its own.
        Activation(Activation),
        /// Identity at inference.
        Dropout(DropoutConfig),
        /// A layer that acts only in training (Keras `GaussianNoise`, `AlphaDropout`, ...):
        /// identity at inference.
        TrainingOnly(TrainingOnly),
        /// 1-D convolution over `[steps, channels]` (channels_last), Keras `Conv1D`.
        Conv1D(Conv1DConfig),
        /// 2-D convolution over `[height, width, channels]` (channels_last), Keras `Conv2D`.
        Conv2D(Conv2DConfig),
        /// Transposed 2-D convolution (a decoder's upsampling), Keras `Conv2DTranspose`.
        Conv2DTranspose(Conv2DTransposeConfig),
        /// Joins its inputs along an axis (Keras numbering: the batch is axis 0, `-1` the last).
        Concatenate(ConcatenateConfig),
        /// Largest value per window over `[steps, channels]`.
        MaxPooling1D(MaxPooling1DConfig),
        /// Mean per window over `[steps, channels]`; with `Same` padding only real steps count.
        AveragePooling1D(AveragePooling1DConfig),
        /// Keras `ZeroPadding2D`, `Cropping2D` and `UpSampling2D` (nearest): positions of
        /// `[height, width, channels]` moved, repeated or padded with zeros.
        Resample(Resample),
        /// Each channel of `[height, width, channels]` convolved with its own filters, Keras
        /// `DepthwiseConv2D` (ONNX `Conv` with a group per channel).
        DepthwiseConv2D(DepthwiseConv2DConfig),
        /// A depthwise convolution then a 1x1 one, Keras `SeparableConv2D`.
        SeparableConv2D(SeparableConv2DConfig),
        /// Largest value per 2-D window of `[height, width, channels]`.
        MaxPooling2D(MaxPooling2DConfig),
        /// Mean per 2-D window (of the real positions, as Keras with `same` padding).
        AveragePooling2D(AveragePooling2DConfig),
        /// Largest value over all positions: `[h, w, channels] -> [channels]` (or
        /// `[1, 1, channels]` with `keepdims`).
        GlobalMaxPooling2D(GlobalPooling2D<true>),
        /// Mean over all positions: `[h, w, channels] -> [channels]` (or `[1, 1, channels]`).
        GlobalAveragePooling2D(GlobalPooling2D<false>),
        /// A new shape with the same number of values; one entry may be `-1`.
        Reshape(ReshapeConfig),
        /// Reorders the non-batch axes, Keras `Permute(dims)`.
        Permute(PermuteConfig),
        /// Rows of a `input_dim x output_dim` table (the node's kernel) looked up by integer ids.
        Embedding(EmbeddingConfig),
        /// Rows of a table (the node's kernel) picked per position by a rule on a model
        /// input's ids (RoBERTa's position ids).
        PositionEmbedding(PositionEmbeddingConfig),
        /// Inference batch normalization over the last axis:
        /// `(x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta`.
        BatchNormalization(ChannelNorm),
        /// Normalization of each position over its last axis (or, with `rms`, Keras
        /// `RMSNormalization`).
        LayerNormalization(RowNorm),
        /// Keras's preprocessing `Normalization` with adapted statistics over the last axis.
        Normalization(NormalizationConfig),
        /// `x * scale + offset`.
        Rescaling(RescalingConfig),
        /// The position of the largest value along the last axis: int64 class labels, ONNX
        /// `ArgMax`. Its values are model outputs only.
        ArgMax(ArgMaxConfig),
        /// Scaled dot-product attention over heads: queries, keys, values and an optional
        /// mask in, `softmax(q · kᵀ · scale) · v` per head out.
        Attention(AttentionConfig),
        /// A recurrent layer over `[steps, features]` (Keras `SimpleRNN`, `LSTM`, `GRU`,
        /// `Bidirectional`; ONNX `RNN`, `LSTM`, `GRU`).
        Recurrent(RecurrentConfig),
        /// `[features] -> [n, features]`, Keras `RepeatVector(n)`.
        RepeatVector(RepeatVectorConfig),
        /// Keras `Masking`: steps whose features all equal a value zeroed, or the mask they
        /// make (`[steps]`, 0 where masked) for the recurrent layers after it.
        Masking(MaskingConfig),
        /// An elementwise merge of two or more inputs of one shape (Keras `Add`, `Subtract`,
        /// `Multiply`, `Average`, `Maximum`, `Minimum`).
        Merge(Merge),
        /// An ONNX primitive with no Keras layer of its own.
        Primitive(Primitive),
    }
}

/// ONNX primitives with no Keras layer of their own: what an exporter writes out op by op.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Primitive {
    /// `x * scale[c] + shift[c]` per channel of the last axis, one rounding: an ONNX `Add`,
    /// `Sub` or `Mul` of a constant broadcast along the last axis.
    Affine(AffineConfig),
    /// `x + c` with `c` a constant of the sample's shape (an ONNX `Add` of a folded
    /// constant, such as position embeddings).
    AddConst(AddConstConfig),
    /// Positions picked along one axis by constant indices (ONNX `Gather` of an activation).
    Take(TakeConfig),
    /// An elementwise function of one input (ONNX `Sqrt`, `Neg`, `Abs`, `Erf`, `Clip`,
    /// `Reciprocal`, `Floor`, `Ceil`, `Round`, and `Pow` / `Div` by a constant).
    Unary(Unary),
}

impl Primitive {
    fn op(&self) -> &dyn LayerOp {
        match self {
            Primitive::Affine(a) => a,
            Primitive::AddConst(a) => a,
            Primitive::Take(t) => t,
            Primitive::Unary(u) => u,
        }
    }
}

impl LayerOp for Primitive {
    fn class_name(&self) -> &'static str {
        self.op().class_name()
    }
    fn base_name(&self) -> &'static str {
        self.op().base_name()
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        self.op().output_shape(inputs)
    }
    fn lower<'m>(
        &'m self,
        cx: &mut crate::ops::Lowering<'m, '_>,
    ) -> crate::Result<crate::passes::Op<'m>> {
        self.op().lower(cx)
    }
    fn reference(&self, cx: &crate::ops::Reference<'_>) -> crate::Result<Vec<f64>> {
        self.op().reference(cx)
    }
}

impl Layer {
    /// The Keras class name, as `summary()` shows it.
    pub fn type_name(&self) -> &'static str {
        self.op().class_name()
    }

    /// Base of auto-generated names (`dense`, `dense_1`, ... as Keras names them).
    pub fn base_name(&self) -> &'static str {
        self.op().base_name()
    }

    /// Element type of the layer's output given the first input's type: int64 for ArgMax and
    /// for a view (`Reshape`, `Flatten`) of int64 labels, float32 otherwise.
    pub fn output_dtype_of(&self, input: Option<DType>) -> DType {
        self.op().output_dtype(input)
    }

    /// Element type of the layer's output for float inputs.
    pub fn output_dtype(&self) -> DType {
        self.op().output_dtype(None)
    }

    /// Parameters the layer holds in its configuration (normalization statistics), as
    /// Keras counts them; kernels and biases are on the node.
    pub fn param_count(&self) -> usize {
        self.op().param_count()
    }

    /// For layers with weights: `(K, units, use_bias)` of the `K x units` kernel matrix the
    /// layer multiplies by, given its input shape.
    pub fn weight_dims(&self, input: &[usize]) -> Option<(usize, usize, bool)> {
        self.op().weight_dims(input)
    }

    /// Output shape (without the batch axis) for the given input shapes.
    pub fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        self.op().output_shape(inputs)
    }
}

/// The length of the last axis (the channels a normalization works on), checking that `axis`
/// (Keras numbering: batch = 0, negative from the end) names it.
pub(crate) fn last_axis(s: &[usize], axis: isize) -> Result<usize, String> {
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

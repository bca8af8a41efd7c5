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

mod graph;
pub mod init;
mod layer;
mod layers;
mod shape;
mod summary;
mod tensor;

pub use layers::{
    ActivationLayer, Add, ArgMax, Attention, Average, AveragePooling1D, AveragePooling2D,
    BatchNormalization, Concatenate, Conv1D, Conv2D, Dense, DepthwiseConv2D, Dropout, Embedding,
    Flatten, GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalMaxPooling1D,
    GlobalMaxPooling2D, Identity, Input, LayerNormalization, MaxPooling1D, MaxPooling2D, Maximum,
    Minimum, Multiply, Normalization, Permute, Rescaling, Reshape, Subtract, apply,
};

use crate::error::{Error, Result};
use crate::kernels::Activation;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

pub use crate::kernels::NoKeys;
pub use crate::ops::{
    argmax::ArgMaxConfig,
    attention::AttentionConfig,
    concat::ConcatenateConfig,
    conv1d::Conv1DConfig,
    conv2d::{Conv2DConfig, Conv2DTransposeConfig},
    dense::DenseConfig,
    depthwise::{DepthwiseConv2DConfig, SeparableConv2DConfig},
    embedding::{EmbeddingConfig, PositionEmbeddingConfig, PositionRule},
    identity::{DropoutConfig, TrainingOnly},
    masking::MaskingConfig,
    merge::Merge,
    norm::{ChannelNorm, NormalizationConfig, RowNorm},
    permute::PermuteConfig,
    pool::{
        AveragePooling1DConfig, AveragePooling2DConfig, GlobalPooling2D, MaxPooling1DConfig,
        MaxPooling2DConfig, Pooling1D, Pooling2D,
    },
    recurrent::{Cell, Direction, MergeMode, RecurrentConfig, Returns, StepMask},
    repeat::RepeatVectorConfig,
    resample::{Coordinates, Resample},
    reshape::ReshapeConfig,
    scale::{AddConstConfig, AffineConfig, RescalingConfig},
    take::TakeConfig,
    unary::Unary,
};
pub use graph::{BatchAxis, Model, Node};
pub(crate) use layer::last_axis;
pub use layer::{Layer, Primitive};
pub use shape::{
    DType, Padding, Window, Window2, checked_elems, concat_axis, permutation, reshape,
};
pub use tensor::{DenseWeights, Tensor, Tensors};
use tensor::{TensorNode, check_dense_weights, check_dtypes, init_weights, next_id};

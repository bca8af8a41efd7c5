//! ONNX ops: one table line per `op_type`, each pointing at the function that converts such a
//! node into sinter's layers (in `ops/<family>.rs`). Adding an op is one function (or a closure
//! over a shared one, as the activations are) and one line in [`OPS`]; ops evaluated at load
//! time on constants are lines in [`super::fold::FOLDS`].

mod arith;
mod conv;
mod elementwise;
mod gemm;
mod norm;
mod pool;
mod recurrent;
mod reduce;
mod resize;
mod shape;

use super::convert::Converter;
use super::proto::NodeProto;
use crate::error::Result;
use crate::kernels::Activation;
use crate::model::{Merge, Unary};
use elementwise::{activation, softmax, unary};

/// Converts one node: reads its inputs and attributes through the [`Converter`], pushes the
/// layers it becomes and records its output (and the output's layout).
pub(super) type OpFn = fn(&mut Converter<'_>, &NodeProto) -> Result<()>;

/// Every op of the default domain (`""`, `ai.onnx`) sinter converts, by `op_type`.
pub(super) const OPS: &[(&str, OpFn)] = &[
    // Activations.
    ("Relu", |cx, n| activation(cx, n, Activation::RELU)),
    ("LeakyRelu", |cx, n| {
        let negative_slope = cx.attr_f(n, "alpha")?.unwrap_or(0.01);
        activation(cx, n, Activation::LeakyRelu { negative_slope })
    }),
    ("Elu", |cx, n| {
        let alpha = cx.attr_f(n, "alpha")?.unwrap_or(1.0);
        activation(cx, n, Activation::Elu { alpha })
    }),
    ("Selu", elementwise::selu),
    ("Sigmoid", |cx, n| activation(cx, n, Activation::Sigmoid)),
    ("HardSigmoid", elementwise::hard_sigmoid),
    ("HardSwish", |cx, n| activation(cx, n, Activation::HardSilu)),
    ("Swish", elementwise::swish),
    ("Tanh", |cx, n| activation(cx, n, Activation::Tanh)),
    ("Softplus", |cx, n| activation(cx, n, Activation::Softplus)),
    ("Softsign", |cx, n| activation(cx, n, Activation::Softsign)),
    ("Exp", |cx, n| activation(cx, n, Activation::Exponential)),
    ("Mish", |cx, n| activation(cx, n, Activation::Mish)),
    ("Gelu", elementwise::gelu),
    ("Softmax", |cx, n| softmax(cx, n, Activation::Softmax)),
    ("LogSoftmax", |cx, n| softmax(cx, n, Activation::LogSoftmax)),
    // Elementwise functions.
    ("Sqrt", |cx, n| unary(cx, n, Unary::Sqrt)),
    ("Neg", |cx, n| unary(cx, n, Unary::Neg)),
    ("Abs", |cx, n| unary(cx, n, Unary::Abs)),
    ("Erf", |cx, n| unary(cx, n, Unary::Erf)),
    ("Reciprocal", |cx, n| unary(cx, n, Unary::Reciprocal)),
    ("Floor", |cx, n| unary(cx, n, Unary::Floor)),
    ("Ceil", |cx, n| unary(cx, n, Unary::Ceil)),
    ("Round", |cx, n| unary(cx, n, Unary::Round)),
    ("Pow", elementwise::pow),
    ("Clip", elementwise::clip),
    ("Cast", elementwise::cast),
    // Arithmetic.
    ("Add", arith::add),
    ("Sub", arith::binary),
    ("Mul", arith::binary),
    ("Div", arith::binary),
    ("Sum", |cx, n| arith::variadic(cx, n, Merge::Add)),
    ("Mean", |cx, n| arith::variadic(cx, n, Merge::Average)),
    ("Max", |cx, n| arith::variadic(cx, n, Merge::Maximum)),
    ("Min", |cx, n| arith::variadic(cx, n, Merge::Minimum)),
    // Dense layers.
    ("Gemm", gemm::gemm),
    ("MatMul", gemm::matmul),
    // Recurrent layers.
    ("LSTM", recurrent::recurrent),
    ("Slice", shape::slice_steps),
    ("GRU", recurrent::recurrent),
    ("RNN", recurrent::recurrent),
    // Convolution and pooling (1-D).
    ("Conv", |cx, n| conv::window(cx, n, conv::conv)),
    ("ConvTranspose", conv::conv_transpose),
    ("MaxPool", |cx, n| conv::window(cx, n, pool::pool)),
    ("AveragePool", |cx, n| conv::window(cx, n, pool::pool)),
    ("GlobalMaxPool", pool::global_pool),
    ("GlobalAveragePool", pool::global_pool),
    // Resampling (2-D).
    ("Pad", resize::pad),
    ("Resize", resize::resize),
    // Normalization.
    ("BatchNormalization", norm::batch_norm),
    ("LayerNormalization", norm::layer_norm),
    // Reductions.
    ("ReduceMean", reduce::reduce),
    ("ReduceMax", reduce::reduce),
    ("ArgMax", reduce::argmax),
    // Shapes, views and values.
    ("Transpose", shape::transpose),
    ("Flatten", shape::flatten),
    ("Reshape", shape::reshape),
    ("Squeeze", shape::squeeze),
    ("Unsqueeze", shape::squeeze),
    ("Concat", shape::concat),
    ("Gather", shape::gather),
    ("Identity", shape::identity),
    ("Dropout", shape::dropout),
    ("Constant", shape::constant),
];

/// The ops of the `ai.onnx.ml` domain sinter converts.
pub(super) const ML_OPS: &[(&str, OpFn)] =
    &[("ArrayFeatureExtractor", shape::array_feature_extractor)];

/// The converter of `op_type` in `table`.
pub(super) fn find(table: &[(&str, OpFn)], op_type: &str) -> Option<OpFn> {
    table
        .iter()
        .find(|(op, _)| *op == op_type)
        .map(|&(_, convert)| convert)
}

/// The op types of `table`, sorted, as a list for an error message.
pub(super) fn names(table: &[(&str, OpFn)]) -> String {
    let mut names: Vec<&str> = table.iter().map(|(op, _)| *op).collect();
    names.sort_unstable();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::{ML_OPS, OPS};

    #[test]
    fn every_op_has_one_line() {
        for table in [OPS, ML_OPS] {
            let mut names: Vec<&str> = table.iter().map(|(op, _)| *op).collect();
            names.sort_unstable();
            let n = names.len();
            names.dedup();
            assert_eq!(names.len(), n, "an op listed twice");
        }
    }
}

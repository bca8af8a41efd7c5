//! Keras `Embedding(input_dim, output_dim)`: rows of a table looked up by integer ids.

use super::{LayerOp, Lowering, Reference, one};
use crate::error::{Error, Result};
use crate::model::{DType, Layer, checked_elems};
use crate::passes::Op;

/// An Embedding layer's configuration: `[..] -> [.., output_dim]`, the table
/// (`input_dim x output_dim`) is the node's kernel. An id outside `0..input_dim` is an error
/// when run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbeddingConfig {
    /// Vocabulary size (rows of the table).
    pub input_dim: usize,
    /// Width of a row.
    pub output_dim: usize,
}

impl LayerOp for EmbeddingConfig {
    fn class_name(&self) -> &'static str {
        "Embedding"
    }
    fn base_name(&self) -> &'static str {
        "embedding"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let mut s = one(inputs)?;
        if self.input_dim == 0 || self.output_dim == 0 {
            return Err("Embedding input_dim and output_dim must be positive".into());
        }
        s.push(self.output_dim);
        checked_elems(&s)?;
        Ok(s)
    }
    fn reads(&self, _: &[DType]) -> bool {
        true
    }
    fn weight_dims(&self, _: &[usize]) -> Option<(usize, usize, bool)> {
        Some((self.input_dim, self.output_dim, false))
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let src = cx.node.inputs.first().map(|&j| &cx.model.nodes()[j]);
        if !src.is_some_and(|s| s.layer == Layer::Input) {
            return Err(Error::Shape {
                layer: cx.node.name.clone(),
                msg: "an Embedding must read a model input (its ids)".into(),
            });
        }
        let table = match cx.graph_weights()? {
            std::borrow::Cow::Owned(w) => std::borrow::Cow::Owned(w.kernel),
            std::borrow::Cow::Borrowed(w) => std::borrow::Cow::Borrowed(&w.kernel[..]),
        };
        Ok(Op::Gather {
            table,
            dim: self.output_dim,
        })
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let (input_dim, output_dim) = (self.input_dim, self.output_dim);
        let table = &cx.weights()?.kernel;
        let ids = cx.inputs[0];
        let mut y = Vec::with_capacity(ids.len() * output_dim);
        for &id in ids {
            if id.fract() != 0.0 || id < 0.0 || id >= input_dim as f64 {
                return Err(Error::Model(format!(
                    "layer {:?}: id {id} is not in 0..{input_dim}",
                    cx.node.name
                )));
            }
            let row = &table[id as usize * output_dim..][..output_dim];
            y.extend(row.iter().map(|&v| f64::from(v)));
        }
        Ok(y)
    }
}

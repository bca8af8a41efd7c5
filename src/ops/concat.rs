//! Keras `Concatenate(axis)`: joins its inputs along one axis (often elided: the producers
//! write straight into one buffer, see `passes::ElideConcat`).

use super::{LayerOp, Lowering, Reference};
use crate::error::{Error, Result};
use crate::model::concat_axis;
use crate::passes::Op;

/// A Concatenate layer's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConcatenateConfig {
    /// Axis, counting the batch axis as 0; negative counts from the end.
    pub axis: isize,
}

impl LayerOp for ConcatenateConfig {
    fn class_name(&self) -> &'static str {
        "Concatenate"
    }
    fn base_name(&self) -> &'static str {
        "concatenate"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let axis = self.axis;
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
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        Ok(Op::Concat {
            axis: concat_axis(self.axis, cx.in_shape().len()).map_err(|m| cx.fail(m))?,
            elided: false,
        })
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let shape = &cx.node.shape;
        let a = concat_axis(self.axis, shape.len()).map_err(Error::Model)?;
        let outer: usize = shape[..a].iter().product();
        let widths: Vec<usize> = cx.shapes.iter().map(|s| s[a..].iter().product()).collect();
        let mut y = Vec::with_capacity(cx.batch * shape.iter().product::<usize>());
        for b in 0..cx.batch {
            for o in 0..outer {
                for (x, &w) in cx.inputs.iter().zip(&widths) {
                    let start = b * outer * w + o * w;
                    y.extend_from_slice(&x[start..start + w]);
                }
            }
        }
        Ok(y)
    }
}

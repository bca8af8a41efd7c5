//! The graph check run after lowering and after every pass: order, arity and shapes.

use super::{ConvRows, Graph, Op, elide_concat};
use crate::model::{DenseWeights, permutation};

type Check = Result<Vec<usize>, String>;

impl Graph<'_> {
    /// Checks order, arity and shapes.
    pub fn check(&self) -> Result<(), String> {
        let n = self.nodes.len();
        if self.inputs.iter().chain(&self.outputs).any(|&i| i >= n)
            || self.outputs.is_empty()
            || self.inputs.len() != self.input_types.len()
        {
            return Err("inputs or outputs out of range".into());
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if node.inputs.iter().any(|&j| j >= i) {
                return Err(format!("{:?} is not in topological order", node.name));
            }
            if let Op::Input = node.op {
                if !node.inputs.is_empty() || !self.inputs.contains(&i) {
                    return Err(format!("{:?}: stray input node", node.name));
                }
                continue;
            }
            let expect = self
                .implied_shape(i)
                .map_err(|e| format!("{:?}: {e}", node.name))?;
            if expect != node.shape {
                return Err(format!(
                    "{:?}: shape {:?}, inputs imply {:?}",
                    node.name, node.shape, expect
                ));
            }
        }
        Ok(())
    }

    /// The shape node `i`'s op makes of its inputs' shapes.
    fn implied_shape(&self, i: usize) -> Check {
        let node = &self.nodes[i];
        let ins: Vec<&[usize]> = node
            .inputs
            .iter()
            .map(|&j| self.nodes[j].shape.as_slice())
            .collect();
        let one = || match ins.as_slice() {
            [x] => Ok(*x),
            _ => Err("takes one input".to_string()),
        };
        match &node.op {
            Op::Input => Err("an input reads nothing".into()),
            Op::Dense { weights, conv, .. } => dense(weights, conv.as_ref(), one()?, &node.shape),
            Op::Pad {
                left,
                right,
                transposed,
            } => match one()? {
                [ch, steps] if *transposed => Ok(vec![steps + left + right, *ch]),
                [steps, ch] if !*transposed => Ok(vec![steps + left + right, *ch]),
                _ => Err("pad needs [steps, ch]".into()),
            },
            Op::Affine { scale, shift } => match one()? {
                x if x.last() == Some(&scale.len()) && shift.len() == scale.len() => Ok(x.to_vec()),
                _ => Err("affine width".into()),
            },
            Op::Norm(norm) => {
                let x = one()?;
                let fits =
                    |v: &Option<Vec<f32>>| v.as_ref().is_none_or(|v| x.last() == Some(&v.len()));
                if fits(&norm.gamma) && fits(&norm.beta) {
                    Ok(x.to_vec())
                } else {
                    Err("normalization width".into())
                }
            }
            Op::Gather { table, dim } => match node.inputs.as_slice() {
                [j] if self.inputs.contains(j)
                    && *dim > 0
                    && table.len().is_multiple_of(*dim)
                    && !table.is_empty() =>
                {
                    let mut s = self.nodes[*j].shape.clone();
                    s.push(*dim);
                    Ok(s)
                }
                _ => Err("gather reads a graph input".into()),
            },
            Op::Step(step) => step.0.output_shape(&ins),
            Op::Activation(_) | Op::Dropout => Ok(one()?.to_vec()),
            Op::Flatten => Ok(vec![one()?.iter().product()]),
            Op::Reshape => match one()? {
                x if x.iter().product::<usize>() == node.shape.iter().product::<usize>() => {
                    Ok(node.shape.clone())
                }
                _ => Err("reshape changes the size".into()),
            },
            Op::Concat { axis, elided } => {
                if *elided && !elide_concat::elidable(self, i) {
                    return Err(
                        "marked elided, but its inputs are not GEMMs read only by it".into(),
                    );
                }
                let first = ins.first().ok_or("concat without inputs")?;
                let mut s = first.to_vec();
                if *axis >= s.len() {
                    return Err("axis out of range".into());
                }
                s[*axis] = ins.iter().map(|x| x.get(*axis).copied().unwrap_or(0)).sum();
                Ok(s)
            }
            Op::Permute(perm) => {
                let x = one()?;
                let dims: Vec<usize> = perm.iter().map(|a| a + 1).collect();
                match permutation(&dims, x.len()) {
                    Ok(_) => Ok(perm.iter().map(|&a| x[a]).collect()),
                    Err(_) => Err(format!("permute {perm:?} of {ins:?}")),
                }
            }
        }
    }
}

/// A Dense (or implicit-im2col convolution) of `x`'s rows by a `K x units` kernel.
fn dense(weights: &DenseWeights, conv: Option<&ConvRows>, x: &[usize], shape: &[usize]) -> Check {
    let units = shape.last().copied().unwrap_or(0);
    let (k, s) = match (conv, x) {
        (None, _) => {
            let mut s = x.to_vec();
            if let Some(l) = s.last_mut() {
                *l = units;
            }
            (*x.last().unwrap_or(&0), s)
        }
        (Some(c @ ConvRows { band: None, .. }), [steps, ch])
            if shape.first().is_some_and(|&out| c.fits(out, *steps)) =>
        {
            (c.size * ch, vec![shape[0], units])
        }
        (Some(c @ ConvRows { band: Some(b), .. }), [rows, cols, ch])
            if c.fits_image(shape, *rows, *cols) =>
        {
            (b.size * c.size * ch, vec![shape[0], shape[1], units])
        }
        (Some(_), _) => return Err(format!("convolution input {x:?}")),
    };
    if weights.kernel.len() != k * units {
        return Err(format!("kernel is not {k} x {units}"));
    }
    Ok(s)
}

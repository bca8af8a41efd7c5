//! A sequence axis that varies per run: which values of the lowered graph have the run's
//! sequence as their first axis, and the lengths a plan accepts.
//!
//! A plan is sized for the longest sequence (the size the model's input gives the axis) and
//! runs any length from [`SeqAxis::min`] up to it in the same arena. A value whose first axis
//! follows the sequence holds `len x positions` values per sample, packed: at a shorter
//! length the samples simply sit closer together. Steps that treat every position alike
//! (Dense, activations, normalizations, embeddings, elementwise merges) need nothing else;
//! a step that relates positions (attention, a take) says so through [`StepOp::seq`].

use super::{Op, Padding};
use crate::passes::Graph;

/// The variable sequence of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SeqAxis {
    /// Per node of the lowered graph: whether axis 0 of its value is the sequence.
    pub nodes: Vec<bool>,
    /// The longest sequence (the plan's buffers are sized for it).
    pub max: usize,
    /// The shortest a run may have.
    pub min: usize,
    /// Padding a sequence at its end leaves its real positions' bits alone
    /// ([`Plan::pads`](super::Plan::pads)).
    pub pads: bool,
    /// Per model input: its padded positions hold 1 (a mask that marks padding), not 0.
    pub pad_one: Vec<bool>,
}

/// The plan's variable sequence, `Ok(None)` when no input has one, or why a step needs a
/// fixed length (the plan then runs only the model's own length).
pub(crate) fn analyse(g: &Graph) -> Result<Option<SeqAxis>, String> {
    if !g.input_seq.iter().any(|&s| s) {
        return Ok(None);
    }
    let mut seq = vec![false; g.nodes.len()];
    let mut max = None;
    let mut min = 1;
    let mut pads = true;
    let mut pad: Vec<Option<bool>> = vec![None; g.inputs.len()];
    for (k, &i) in g.inputs.iter().enumerate() {
        if !g.input_seq.get(k).copied().unwrap_or(false) {
            continue;
        }
        let len = g.nodes[i].shape[0];
        if *max.get_or_insert(len) != len {
            return Err(format!(
                "the variable sequences of the inputs differ in length ({} and {len})",
                max.unwrap_or(0)
            ));
        }
        seq[i] = true;
    }
    for (i, node) in g.nodes.iter().enumerate() {
        let ins: Vec<bool> = node.inputs.iter().map(|&j| seq[j]).collect();
        // A node that reads no sequence has none (an input's flag is set above).
        if matches!(node.op, Op::Input) || !ins.iter().any(|&s| s) {
            continue;
        }
        let rank = node.shape.len();
        let all = ins.iter().all(|&s| s);
        let out = match &node.op {
            // Every position alike, over the last axis of a value of rank 2 or more.
            Op::Dense { conv: None, .. }
            | Op::Activation(_)
            | Op::Affine { .. }
            | Op::Norm(_)
            | Op::Dropout
                if rank >= 2 =>
            {
                Ok(true)
            }
            Op::Gather { .. } => Ok(true),
            Op::Concat { axis, .. } if *axis > 0 && all => Ok(true),
            Op::Step(s) => s.0.seq(&ins),
            Op::Dense { conv: Some(_), .. } | Op::Pad { .. } => {
                Err("a convolution needs a fixed sequence length".to_string())
            }
            Op::Reshape if node.shape == g.nodes[node.inputs[0]].shape => Ok(true),
            _ => Err("the layer needs a fixed sequence length".to_string()),
        };
        seq[i] = out.map_err(|e| format!("layer {:?}: {e}", node.name))?;
        if let Op::Step(s) = &node.op {
            min = min.max(s.0.min_seq());
            pads &= match s.0.padding() {
                Padding::Exact => true,
                // Every step a mask reaches must read its padding alike.
                Padding::MaskedBy { input, one } => node
                    .inputs
                    .get(input)
                    .filter(|&&j| matches!(g.nodes[j].op, Op::Input) && seq[j])
                    .and_then(|&j| g.inputs.iter().position(|&i| i == j))
                    .is_some_and(|k| *pad[k].get_or_insert(one) == one),
                Padding::Changes => false,
            };
        }
    }
    let max = max.unwrap_or(1);
    if min > max {
        return Err(format!(
            "a step needs {min} positions, the longest sequence is {max}"
        ));
    }
    Ok(Some(SeqAxis {
        nodes: seq,
        max,
        min,
        pads,
        pad_one: pad.into_iter().map(|p| p.unwrap_or(false)).collect(),
    }))
}

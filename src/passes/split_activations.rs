//! The unfused form: a Dense keeps only its bias; each of its activations becomes a separate
//! Activation node right after it.

use super::{GNode, Graph, Op, Pass};

/// Moves Dense epilogue activations into separate nodes.
pub struct SplitActivations;

impl Pass for SplitActivations {
    fn name(&self) -> &'static str {
        "split_activations"
    }
    fn run<'m>(&self, g: Graph<'m>) -> Graph<'m> {
        let mut nodes: Vec<GNode<'m>> = Vec::with_capacity(g.nodes.len());
        let mut map = vec![0usize; g.nodes.len()];
        for (i, mut node) in g.nodes.into_iter().enumerate() {
            node.inputs.iter_mut().for_each(|j| *j = map[*j]);
            let acts = match &mut node.op {
                Op::Dense { acts, .. } => std::mem::take(acts),
                _ => Vec::new(),
            };
            let shape = node.shape.clone();
            let name = node.name.clone();
            nodes.push(node);
            for act in acts {
                let prev = nodes.len() - 1;
                nodes.push(GNode {
                    name: format!("{name}.{}", act.label()),
                    op: act.into(),
                    inputs: vec![prev],
                    shape: shape.clone(),
                });
            }
            map[i] = nodes.len() - 1;
        }
        let mut out = Graph {
            nodes,
            inputs: g.inputs,
            outputs: g.outputs,
            input_types: g.input_types,
            input_seq: g.input_seq,
        };
        out.remap_io(&map);
        out
    }
}

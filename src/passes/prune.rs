//! Drops nodes the output does not depend on and renumbers the rest.

use super::{Graph, Pass};

/// Dead-node elimination.
pub struct Prune;

impl Pass for Prune {
    fn name(&self) -> &'static str {
        "prune"
    }
    fn run<'m>(&self, g: Graph<'m>) -> Graph<'m> {
        let mut live = vec![false; g.nodes.len()];
        for &i in g.inputs.iter().chain(&g.outputs) {
            live[i] = true;
        }
        for i in (0..g.nodes.len()).rev() {
            if live[i] {
                for &j in &g.nodes[i].inputs {
                    live[j] = true;
                }
            }
        }
        let mut map = vec![usize::MAX; g.nodes.len()];
        let mut nodes = Vec::new();
        for (i, mut node) in g.nodes.into_iter().enumerate() {
            if live[i] {
                node.inputs.iter_mut().for_each(|j| *j = map[*j]);
                map[i] = nodes.len();
                nodes.push(node);
            }
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

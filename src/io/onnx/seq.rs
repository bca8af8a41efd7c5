//! Which graph inputs have a sequence axis that may vary per run, proven at load time.
//!
//! A graph is loaded at one length (the size given to its symbolic axis), and every shape
//! computation is folded at that length. A plan may run shorter sequences only if no folded
//! constant that a layer keeps depends on the length — or, for a constant added to the
//! activations (BERT's position embeddings, `Gather(table, position_ids[:, :S])`), only as
//! its first `S` rows. Each such constant is recomputed by the [`probe`](super::probe) at
//! other lengths and compared with the folded one; if any differs in another way, the
//! inputs keep their loaded length.

use super::convert::{Converter, Value};
use super::probe::{Probe, T};
use super::proto::{GraphProto, NodeProto, TensorProto};
use std::collections::{HashMap, HashSet};

/// The graph inputs (by model input index) whose axis 1 is symbolic, when every constant a
/// layer keeps is proven to follow a shorter sequence; else why not.
pub(super) fn variable_inputs(
    cx: &Converter<'_>,
    graph: &GraphProto,
    nodes: &[NodeProto],
    needed: &[bool],
) -> Result<Vec<usize>, String> {
    let mut producers: HashMap<&str, &NodeProto> = HashMap::new();
    for n in nodes {
        for o in &n.output {
            producers.insert(o.as_str(), n);
        }
    }
    // Initializers (streamed apart from the graph): the constants no node produces.
    let init = |name: &str| {
        matches!(cx.values.get(name), Some(Value::Const(_))) && !producers.contains_key(name)
    };
    let inputs: Vec<&super::proto::ValueInfoProto> =
        graph.input.iter().filter(|i| !init(&i.name)).collect();
    let dims_of = |i: &super::proto::ValueInfoProto| {
        i.r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .and_then(|t| t.shape.as_ref())
            .map(|s| s.dim.clone())
            .unwrap_or_default()
    };
    // Inputs whose first axis after the batch is symbolic, all at one size.
    let mut seq = Vec::new();
    let mut max = None;
    for (k, i) in inputs.iter().enumerate() {
        let dims = dims_of(i);
        let Some(name) = dims.get(1).and_then(|d| d.dim_param.as_ref()) else {
            continue;
        };
        if dims[1].dim_value.is_some_and(|v| v > 0) {
            continue;
        }
        let Some(len) = cx.opts.dim_size(name) else {
            continue;
        };
        if *max.get_or_insert(len) != len {
            return Err(format!(
                "the symbolic axes of the inputs differ in size ({} and {len})",
                max.unwrap_or(0)
            ));
        }
        seq.push(k);
    }
    let Some(max) = max.filter(|&m| m > 1) else {
        return Ok(Vec::new());
    };
    // The computed constants the converted nodes read, and whether a layer adds them to the
    // activations (the one use where a constant may follow the sequence as its first rows).
    let input_names: HashSet<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
    let mut kept: Vec<(&str, bool)> = Vec::new();
    for (n, _) in nodes.iter().zip(needed).filter(|(_, need)| **need) {
        let folded = n
            .output
            .iter()
            .all(|o| matches!(cx.values.get(o), Some(Value::Const(_))));
        if folded {
            continue;
        }
        for i in &n.input {
            let computed = matches!(cx.values.get(i), Some(Value::Const(_)))
                && producers.contains_key(i.as_str());
            if computed && reaches_input(i, &producers, &input_names) {
                kept.push((i, matches!(n.op_type.as_str(), "Add" | "Sub")));
            }
        }
    }
    if kept.is_empty() {
        return Ok(seq);
    }
    let consts = |name: &str| match cx.values.get(name) {
        // Initializers and `Constant` nodes: the same at any length.
        Some(Value::Const(c)) if producers.get(name).is_none_or(|p| p.op_type == "Constant") => {
            Some(c)
        }
        _ => None,
    };
    let decode = |t: &TensorProto| cx.constant(t, "a constant").ok();
    // Each kept constant at the loaded length and at shorter ones.
    let probe = |len: usize| {
        let ins = inputs
            .iter()
            .enumerate()
            .filter_map(|(k, i)| {
                let node = cx.nodes.get(k)?;
                let mut d: Vec<usize> = node.shape.clone();
                if seq.contains(&k) {
                    d[0] = len;
                }
                d.insert(0, 2);
                // Integer inputs hold ones (valid ids), float ones their shape.
                let int = node.dtype != crate::model::DType::F32;
                let data = int.then(|| vec![1.0; d.iter().product()]);
                Some((i.name.clone(), T { dims: d, data, int }))
            })
            .collect();
        let mut p = Probe::new(nodes, &consts, &decode, ins).weights_up_to(1 << 21);
        kept.iter()
            .map(|(name, _)| p.eval(name))
            .collect::<Vec<_>>()
    };
    let full = probe(max);
    for len in [max - 1, 1, max / 2].into_iter().filter(|&l| l >= 1) {
        for ((name, add), (at_max, at_len)) in kept.iter().zip(full.iter().zip(probe(len))) {
            let (Some(a), Some(b)) = (at_max, at_len) else {
                return Err(format!(
                    "constant {name:?} is computed from the inputs' shapes"
                ));
            };
            if !(same(a, &b) || *add && prefix(a, &b, (max, len))) {
                return Err(format!(
                    "constant {name:?} depends on the sequence length (at {len} positions it \
                     is not the first {len} of those at {max})"
                ));
            }
        }
    }
    Ok(seq)
}

/// Whether computing `name` reads a graph input (its shape or its values).
fn reaches_input(
    name: &str,
    producers: &HashMap<&str, &NodeProto>,
    inputs: &HashSet<&str>,
) -> bool {
    let mut stack = vec![name];
    let mut seen = HashSet::new();
    while let Some(n) = stack.pop() {
        if inputs.contains(n) {
            return true;
        }
        if !seen.insert(n) {
            continue;
        }
        if let Some(p) = producers.get(n) {
            stack.extend(p.input.iter().map(String::as_str).filter(|i| !i.is_empty()));
        }
    }
    false
}

/// The same values.
fn same(a: &T, b: &T) -> bool {
    a.dims == b.dims && a.data.is_some() && a.data == b.data
}

/// `b` is `a` cut to its first `len` along the one axis where `a` has `max`.
fn prefix(a: &T, b: &T, (max, len): (usize, usize)) -> bool {
    let (Some(x), Some(y)) = (&a.data, &b.data) else {
        return false;
    };
    if a.dims.len() != b.dims.len() {
        return false;
    }
    let diff: Vec<usize> = (0..a.dims.len())
        .filter(|&k| a.dims[k] != b.dims[k])
        .collect();
    let axis = match diff[..] {
        [k] if a.dims[k] == max && b.dims[k] == len => k,
        [] if max == len => return x == y,
        _ => return false,
    };
    let outer: usize = a.dims[..axis].iter().product();
    let inner: usize = a.dims[axis + 1..].iter().product();
    (0..outer).all(|o| x[o * max * inner..][..len * inner] == y[o * len * inner..][..len * inner])
}

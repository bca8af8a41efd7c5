//! Rows of an embedding table picked by ids the graph computes from a model input's ids,
//! found and proven before conversion: RoBERTa's (and XLM-R's) position ids,
//! `cumsum(ids != pad) * (ids != pad) + pad`, and a buffered `token_type_ids` of one value
//! gathered by them. What such an id tensor means is established by evaluating it
//! ([`probe`](super::probe)) for probe ids; a `Gather(table, ids')` whose ids' are exactly one
//! [`PositionRule`] of one input on every probe becomes one `PositionRows` node (domain
//! `sinter`), converted to a [`Layer::PositionEmbedding`].

use super::attention::{Context, DOMAIN, probe_inputs};
use super::convert::Converter;
use super::probe::{Probe, T};
use super::proto::{AttributeProto, GraphProto, NodeProto};
use crate::error::Result;
use crate::model::{DenseWeights, Layer, PositionEmbeddingConfig, PositionRule};

/// Ids of the probes: small values, so that the padding id appears often.
const PROBES: u64 = 6;

/// The rule `ids` (computed) follows on the graph input `input`, if one does on every probe.
fn rule_of(nodes: &[NodeProto], cx: &Context<'_>, ids: &str, input: &str) -> Option<PositionRule> {
    let base = probe_inputs(cx, None);
    let dims = base.iter().find(|(n, _)| n == input)?.1.dims.clone();
    let n: usize = dims.iter().product();
    let &[batch, len] = dims.as_slice() else {
        return None;
    };
    let mut seen: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    for probe in 0..PROBES {
        let mut r = crate::model::init::SplitMix64::new(probe + 91);
        let v: Vec<f64> = (0..n).map(|_| (r.next_u64() % 4) as f64).collect();
        let inputs = probe_inputs(cx, Some((input, &v))).into_iter().collect();
        let t: T = Probe::new(nodes, cx.consts, cx.decode, inputs).eval(ids)?;
        let data = t.data?;
        if t.dims != dims || !t.int || data.len() != n {
            return None;
        }
        seen.push((v, data));
    }
    let first = seen.first()?.1.first().copied()?;
    let whole = |x: f64| (x >= 0.0 && x.fract() == 0.0).then_some(x as usize);
    let candidates = [
        whole(first).map(|row| PositionRule::Constant { row }),
        whole(first).map(|pad| PositionRule::AfterPadding { pad }),
        whole(first - 1.0).map(|pad| PositionRule::AfterPadding { pad }),
    ];
    candidates.into_iter().flatten().find(|&rule| {
        let mut rows = Vec::new();
        seen.iter().all(|(v, got)| {
            (0..batch).all(|b| {
                let sample = &v[b * len..(b + 1) * len];
                rule.rows(sample.iter().copied(), &mut rows);
                rows.iter()
                    .zip(&got[b * len..(b + 1) * len])
                    .all(|(&r, &g)| r as f64 == g)
            })
        })
    })
}

/// Rewrites every `Gather(table, ids)` whose ids follow a proven rule; returns the nodes and
/// how many were rewritten.
pub(super) fn rewrite(
    mut nodes: Vec<NodeProto>,
    graph: &GraphProto,
    cx: &Context<'_>,
) -> (Vec<NodeProto>, usize) {
    // Integer graph inputs [batch, len]: the candidates.
    let inputs: Vec<String> = probe_inputs(cx, None)
        .into_iter()
        .filter(|(_, t)| t.int && t.dims.len() == 2)
        .map(|(n, _)| n)
        .collect();
    let is_input = |n: &str| graph.input.iter().any(|i| i.name == n);
    let mut found = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let (Some(table), Some(ids)) = (node.input.first(), node.input.get(1)) else {
            continue;
        };
        let axis = node
            .attribute
            .iter()
            .find(|a| a.name == "axis")
            .map_or(0, |a| a.i);
        if node.op_type != "Gather"
            || !node.domain.is_empty()
            || axis != 0
            || (cx.consts)(ids).is_some()
            || is_input(ids)
            || (cx.consts)(table).is_none_or(|c| c.dims.len() != 2 || c.f32.is_empty())
        {
            continue;
        }
        let hit = inputs
            .iter()
            .find_map(|input| Some((input.clone(), rule_of(&nodes, cx, ids, input)?)));
        if let Some((input, rule)) = hit {
            found.push((i, input, rule));
        }
    }
    let n = found.len();
    for (i, input, rule) in found {
        let (kind, value) = match rule {
            PositionRule::AfterPadding { pad } => ("after_padding", pad),
            PositionRule::Constant { row } => ("constant", row),
        };
        let old = &nodes[i];
        nodes[i] = NodeProto {
            input: vec![input, old.input[0].clone()],
            output: old.output.clone(),
            name: old.name.clone(),
            op_type: "PositionRows".into(),
            attribute: vec![AttributeProto {
                name: kind.into(),
                i: value as i64,
                ..Default::default()
            }],
            domain: DOMAIN.into(),
        };
    }
    (nodes, n)
}

/// Converts a rewritten `PositionRows`: ids (a model input `[S]`), the table `[rows, dim]`.
pub(super) fn convert(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let ids = cx.input_node(node, 0)?;
    if cx.nodes[ids].layer != Layer::Input {
        return Err(cx.unsupported(node, "position rows must read a model input's ids"));
    }
    let rule = match (
        cx.attr_i(node, "after_padding")?,
        cx.attr_i(node, "constant")?,
    ) {
        (Some(pad), None) => usize::try_from(pad)
            .ok()
            .map(|pad| PositionRule::AfterPadding { pad }),
        (None, Some(row)) => usize::try_from(row)
            .ok()
            .map(|row| PositionRule::Constant { row }),
        _ => None,
    }
    .ok_or_else(|| cx.invalid(node, "one rule: after_padding or constant"))?;
    let (dims, table) = cx.take_const_f32(node, 1)?;
    let &[rows, dim] = dims.as_slice() else {
        return Err(cx.invalid(node, format!("a table of shape {dims:?}, expected 2-D")));
    };
    let len = cx.nodes[ids].shape.first().copied().unwrap_or(0);
    let layer = Layer::PositionEmbedding(PositionEmbeddingConfig { rows, dim, rule });
    let weights = DenseWeights {
        kernel: table,
        bias: None,
    };
    cx.push(
        cx.output(node)?,
        layer,
        vec![ids],
        vec![len, dim],
        Some(weights),
    );
    Ok(())
}

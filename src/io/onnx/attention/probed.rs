//! Attention whose heads reach it through any chain of data movement, as PyTorch's
//! `nn.MultiheadAttention` writes it: the input turned sequence-first, one packed projection
//! for queries, keys and values split by `Reshape`/`Unsqueeze`/`Transpose`/`Squeeze`/`Gather`,
//! heads folded into the batch as `[S, N * heads, d]` and back, and the output projection
//! applied to the rows in sequence-first order before the batch axis is moved back.
//!
//! What such a chain does is not read from its ops: it is measured. The chain is evaluated
//! ([`Probe`]) with its source holding each element's own index, which gives, for every
//! element of the heads, the element of the source it holds. The heads are accepted only when
//! that map is exactly "rows of the source in batch-first or sequence-first order, a block of
//! `heads x d` columns": then the projection is rebuilt on the batch-first input (row-wise ops
//! commute with a reordering of rows) over the block's columns of its weights, and the output
//! projection on the attention's batch-first rows, the moves around both dropped.

use super::super::convert::Const;
use super::super::probe::{Probe, T};
use super::super::proto::{AttributeProto, NodeProto, TensorProto};
use super::{Context, Index, PROBE_BATCH, arg, perm, probe_inputs};
use std::collections::HashMap;

/// Ops that only move values; input 0 is the data.
const MOVES: &[&str] = &[
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Flatten",
    "Gather",
    "Slice",
];

/// Elements an index probe may follow.
const MAX_PROBE: usize = 1 << 21;

fn moves(n: &NodeProto) -> bool {
    n.domain.is_empty() && MOVES.contains(&n.op_type.as_str())
}

/// The tensor a chain of moves ending at `x` reads: the first up the chain not made by a move.
pub(super) fn source<'n>(g: &Index<'n>, x: &'n str) -> &'n str {
    let mut x = x;
    for _ in 0..64 {
        match g.producer.get(x) {
            Some(&i) if moves(&g.nodes[i]) => x = arg(&g.nodes[i], 0),
            _ => break,
        }
    }
    x
}

/// Down from `y`: the moves that alone read it (besides `Shape` nodes), each added to `gone`;
/// the last tensor they make.
pub(super) fn sink<'n>(g: &Index<'n>, y: &'n str, gone: &mut Vec<usize>) -> &'n str {
    let mut y = y;
    for _ in 0..64 {
        let readers: Vec<usize> = g
            .readers(y)
            .into_iter()
            .filter(|&r| g.nodes[r].op_type != "Shape")
            .collect();
        match readers[..] {
            [r] if moves(&g.nodes[r]) && arg(&g.nodes[r], 0) == y && g.used_once(y) => {
                gone.push(r);
                y = g.out(r);
            }
            _ => break,
        }
    }
    y
}

/// The dims of tensor `name` at the probes' sizes.
fn dims_of(g: &Index<'_>, cx: &Context<'_>, name: &str) -> Option<Vec<usize>> {
    let inputs = probe_inputs(cx, None).into_iter().collect();
    Some(
        Probe::new(g.nodes, cx.consts, cx.decode, inputs)
            .eval(name)?
            .dims,
    )
}

/// The index map from `from` to `to`.
struct Map {
    /// `from`'s dims.
    from: Vec<usize>,
    /// `to`'s dims.
    to: Vec<usize>,
    /// For every element of `to`, the element of `from` it holds.
    idx: Vec<usize>,
}

/// Tensor `to` evaluated with `from` holding each element's own flat index.
fn index_map(g: &Index<'_>, cx: &Context<'_>, from: &str, to: &str) -> Option<Map> {
    let dims = dims_of(g, cx, from)?;
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    if n > MAX_PROBE {
        return None;
    }
    let mut inputs: HashMap<String, T> = probe_inputs(cx, None).into_iter().collect();
    inputs.insert(
        from.to_string(),
        T {
            dims: dims.clone(),
            data: Some((0..n).map(|i| i as f64).collect()),
            int: false,
        },
    );
    let t = Probe::new(g.nodes, cx.consts, cx.decode, inputs).eval(to)?;
    let idx = t
        .data?
        .iter()
        .map(|&v| (v >= 0.0 && v.fract() == 0.0 && v < n as f64).then_some(v as usize))
        .collect::<Option<Vec<_>>>()?;
    Some(Map {
        from: dims,
        to: t.dims,
        idx,
    })
}

/// The rows of a `[B, S, ..]` tensor in batch-first order, or of `[S, B, ..]` in
/// sequence-first order: row `(b, s)`'s index.
fn row(seq_first: bool, (b, s): (usize, usize), (nb, ns): (usize, usize)) -> usize {
    if seq_first { s * nb + b } else { b * ns + s }
}

/// How heads `[B, H, S, d]` (keys transposed: `[B, H, d, S]`) read their source: its `B x S`
/// rows in one order, and in each the block of `H x d` columns at `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Heads {
    pub seq_first: bool,
    pub off: usize,
    /// The source's row width.
    pub width: usize,
    pub heads: usize,
    pub d: usize,
}

/// Measures how heads `x` (keys transposed with `transposed`) read the source of their chain of
/// moves: the source's name and the map, if it is a block of columns of its rows.
pub(super) fn heads<'n>(
    g: &Index<'n>,
    cx: &Context<'_>,
    x: &'n str,
    transposed: bool,
) -> Option<(&'n str, Heads)> {
    let src = source(g, x);
    let Map {
        from: src_dims,
        to: dims,
        idx,
    } = index_map(g, cx, src, x)?;
    let [nb, h, a, c] = batch_heads(&dims)?;
    let (s, d) = if transposed { (c, a) } else { (a, c) };
    let width = *src_dims.last()?;
    let rows = src_dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))? / width.max(1);
    let hd = h.checked_mul(d)?;
    if nb != PROBE_BATCH || width == 0 || Some(rows) != nb.checked_mul(s) || hd == 0 {
        return None;
    }
    let off = idx.first()? % width;
    if off.checked_add(hd)? > width {
        return None;
    }
    [false, true].into_iter().find_map(|seq_first| {
        // A 3-D source, [B, S, width] or [S, B, width].
        let rows = if seq_first { [s, nb] } else { [nb, s] };
        if src_dims != [rows[0], rows[1], width] {
            return None;
        }
        let fits = (0..nb).all(|b| {
            (0..h).all(|hh| {
                (0..s).all(|ss| {
                    (0..d).all(|dd| {
                        let at = if transposed {
                            ((b * h + hh) * d + dd) * s + ss
                        } else {
                            ((b * h + hh) * s + ss) * d + dd
                        };
                        idx.get(at).copied()
                            == Some(row(seq_first, (b, ss), (nb, s)) * width + off + hh * d + dd)
                    })
                })
            })
        });
        fits.then_some((
            src,
            Heads {
                seq_first,
                off,
                width,
                heads: h,
                d,
            },
        ))
    })
}

/// Heads' dims as `[B, H, .., ..]`: 4-D, or 3-D with the heads folded into the batch
/// (`[B x H, .., ..]`, as `nn.MultiheadAttention` computes them when it returns its weights).
fn batch_heads(dims: &[usize]) -> Option<[usize; 4]> {
    match *dims {
        [nb, h, a, c] => Some([nb, h, a, c]),
        [bh, a, c] if bh % PROBE_BATCH == 0 => Some([PROBE_BATCH, bh / PROBE_BATCH, a, c]),
        _ => None,
    }
}

/// A constant by name, through `Identity` nodes.
fn constant<'c>(g: &Index<'_>, cx: &Context<'c>, name: &str) -> Option<&'c Const> {
    let mut name = name;
    for _ in 0..8 {
        if let Some(c) = (cx.consts)(name) {
            return Some(c);
        }
        name = arg(&g.nodes[g.made_by(name, "Identity")?], 0);
    }
    None
}

/// A `Constant` node holding `values` of `dims`.
fn const_node(out: &str, dims: &[usize], values: Vec<f32>) -> NodeProto {
    NodeProto {
        output: vec![out.to_string()],
        op_type: "Constant".into(),
        attribute: vec![AttributeProto {
            name: "value".into(),
            t: Some(TensorProto {
                dims: dims.iter().map(|&d| d as i64).collect(),
                data_type: 1,
                float_data: values,
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], out: &str) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![out.to_string()],
        op_type: op.into(),
        ..Default::default()
    }
}

/// The projection heads `h` read from `src`, on the batch-first rows: `src` itself when it is
/// that already, else rebuilt from `src = [Add(bias,)] MatMul(rows, W)` (rows batch-first, or
/// `Transpose(x, [1, 0, 2])` of them) over the block's columns, its nodes pushed to `pre`
/// under names starting with `name`.
pub(super) fn projection(
    g: &Index<'_>,
    cx: &Context<'_>,
    src: &str,
    h: Heads,
    name: &str,
    pre: &mut Vec<NodeProto>,
) -> Option<String> {
    let cols = h.heads * h.d;
    if !h.seq_first && h.off == 0 && h.width == cols {
        return Some(src.to_string());
    }
    // [Add(bias, )] MatMul(rows, W).
    let (mm, bias) = match g.made_by(src, "Add") {
        Some(a) => {
            let n = &g.nodes[a];
            let (m, b) = [(0, 1), (1, 0)]
                .into_iter()
                .find_map(|(m, b)| Some((g.made_by(arg(n, m), "MatMul")?, arg(n, b))))?;
            (m, Some(constant(g, cx, b)?))
        }
        None => (g.made_by(src, "MatMul")?, None),
    };
    let w = constant(g, cx, arg(&g.nodes[mm], 1))?;
    let &[k, width] = w.dims.as_slice() else {
        return None;
    };
    if width != h.width || w.f32.len() != k * width {
        return None;
    }
    let mut x = arg(&g.nodes[mm], 0);
    if h.seq_first {
        let t = g.made_by(x, "Transpose")?;
        if perm(&g.nodes[t]) != [1, 0, 2] {
            return None;
        }
        x = arg(&g.nodes[t], 0);
    }
    let block: Vec<f32> = w
        .f32
        .chunks_exact(width)
        .flat_map(|r| &r[h.off..h.off + cols])
        .copied()
        .collect();
    let (wn, mn) = (format!("{name}/weights"), format!("{name}/matmul"));
    pre.push(const_node(&wn, &[k, cols], block));
    match bias {
        None => pre.push(node("MatMul", &[x, &wn], name)),
        Some(b) => {
            if b.dims.last() != Some(&width) || b.f32.len() != width {
                return None;
            }
            let bn = format!("{name}/bias");
            pre.push(const_node(
                &bn,
                &[cols],
                b.f32[h.off..h.off + cols].to_vec(),
            ));
            pre.push(node("MatMul", &[x, &wn], &mn));
            pre.push(node("Add", &[&mn, &bn], name));
        }
    }
    Some(name.to_string())
}

/// Where the heads' output `y` (`[B, H, S, dv]`) goes: through moves that merge the heads
/// into rows of `H x dv`, batch-first (the attention's output is then the last of them) or
/// sequence-first, read by a row-wise projection (`Gemm`, or `MatMul` [+ `Add`]) whose
/// output moves back to batch-first. The last node replaced and, for the sequence-first
/// case, the projection's nodes rebuilt on `att` (the attention's batch-first output), the
/// last one making the tensor the moves made.
pub(super) fn merged(
    g: &Index<'_>,
    cx: &Context<'_>,
    y: &str,
    att: &str,
    gone: &mut Vec<usize>,
) -> Option<(usize, Vec<NodeProto>)> {
    let ym = sink(g, y, gone);
    if ym == y {
        return None;
    }
    let Map {
        from: y4,
        to: ydims,
        idx: yidx,
    } = index_map(g, cx, y, ym)?;
    let [nb, h, s, dv] = batch_heads(&y4)?;
    let w = h * dv;
    if nb != PROBE_BATCH || w == 0 || yidx.len() != nb * s * w {
        return None;
    }
    // Element `j` of the merged rows holds head `h`, column `d` of row (b, s).
    let order = [false, true].into_iter().find(|&seq_first| {
        (0..nb).all(|b| {
            (0..s).all(|ss| {
                (0..w).all(|c| {
                    let j = row(seq_first, (b, ss), (nb, s)) * w + c;
                    yidx.get(j).copied() == Some(((b * h + c / dv) * s + ss) * dv + c % dv)
                })
            })
        })
    })?;
    let last = *g.producer.get(ym)?;
    if !order {
        // The attention's own output: [B, S, heads x dv].
        return (ydims == [nb, s, w]).then_some((last, Vec::new()));
    }
    // Sequence-first rows: a row-wise projection, then moves back to batch-first.
    let readers: Vec<usize> = g
        .readers(ym)
        .into_iter()
        .filter(|&r| g.nodes[r].op_type != "Shape")
        .collect();
    let [p] = readers[..] else { return None };
    let pn = &g.nodes[p];
    let row_wise = match pn.op_type.as_str() {
        "Gemm" => {
            let attr = |k: &str| pn.attribute.iter().find(|a| a.name == k).map_or(0, |a| a.i);
            attr("transA") == 0 && constant(g, cx, arg(pn, 1)).is_some()
        }
        "MatMul" => constant(g, cx, arg(pn, 1)).is_some_and(|c| c.dims.len() == 2),
        _ => false,
    };
    if !row_wise || arg(pn, 0) != ym || !g.used_once(ym) || !pn.domain.is_empty() {
        return None;
    }
    let mut ops = vec![p];
    let mut z = g.out(p);
    if pn.op_type == "MatMul"
        && let Some(a) = g.sole(z, "Add")
    {
        let an = &g.nodes[a];
        let other = if arg(an, 0) == z {
            arg(an, 1)
        } else {
            arg(an, 0)
        };
        if constant(g, cx, other).is_some_and(|c| c.dims.iter().rev().skip(1).all(|&d| d == 1)) {
            ops.push(a);
            z = g.out(a);
        }
    }
    let before = gone.len();
    let zf = sink(g, z, gone);
    if zf == z {
        return None;
    }
    let Map {
        to: zdims,
        idx: zidx,
        ..
    } = index_map(g, cx, z, zf)?;
    let n = *zdims.last()?;
    if n == 0 || zdims != [nb, s, n] {
        gone.truncate(before);
        return None;
    }
    let back = (0..nb).all(|b| {
        (0..s).all(|ss| {
            (0..n).all(|c| {
                zidx.get((b * s + ss) * n + c).copied() == Some(row(true, (b, ss), (nb, s)) * n + c)
            })
        })
    });
    if !back {
        return None;
    }
    gone.extend(&ops);
    let last = *g.producer.get(zf)?;
    // The projection on the batch-first rows, under new names but the last.
    let mut post = Vec::new();
    let mut input = att.to_string();
    for (k, &o) in ops.iter().enumerate() {
        let mut copy = g.nodes[o].clone();
        let old = g.out(o);
        for i in &mut copy.input {
            if *i == ym || (k > 0 && i == g.out(ops[k - 1])) {
                *i = input.clone();
            }
        }
        let out = if k + 1 == ops.len() {
            zf.to_string()
        } else {
            format!("{old}/rows")
        };
        copy.output = vec![out.clone()];
        input = out;
        post.push(copy);
    }
    Some((last, post))
}

/// The attention of `core` if its queries, keys and values are blocks of projections reached
/// through moves, and its output merges back into rows (see the module's comment).
pub(super) fn find(g: &Index<'_>, cx: &Context<'_>, core: super::Core<'_>) -> Option<super::Found> {
    let super::Core {
        mut gone,
        q,
        kt,
        pv,
        scale,
        mask,
        nan_guard,
        name,
    } = core;
    let (qs, hq) = heads(g, cx, q, false)?;
    let (ks, hk) = heads(g, cx, kt, true)?;
    let (vs, hv) = heads(g, cx, arg(&g.nodes[pv], 1), false)?;
    if (hk.heads, hk.d) != (hq.heads, hq.d) || hv.heads != hq.heads {
        return None;
    }
    let mut pre = Vec::new();
    let q = projection(g, cx, qs, hq, &format!("{name}/q"), &mut pre)?;
    let k = projection(g, cx, ks, hk, &format!("{name}/k"), &mut pre)?;
    let v = projection(g, cx, vs, hv, &format!("{name}/v"), &mut pre)?;
    let att = format!("{name}/attention");
    let (last, post) = merged(g, cx, g.out(pv), &att, &mut gone)?;
    gone.retain(|&j| j != last);
    Some(super::Found {
        gone,
        last,
        q,
        k,
        v,
        split: super::Split::HeadSize(hq.d as i64),
        scale: Some(scale),
        mask,
        nan_guard,
        causal: false,
        output: (!post.is_empty()).then_some(att),
        pre,
        post,
    })
}

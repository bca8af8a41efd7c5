//! Constant folding at load time: the shape arithmetic exporters write
//! (`Shape -> Gather -> Unsqueeze -> Concat -> Reshape`, casts of constants), evaluated once.
//! One line per op in [`FOLDS`]. The batch size is not known until a run, so `Shape` gives
//! [`BATCH`] for it; a `Reshape` may keep it as its first entry, any arithmetic on it is refused.

use super::convert::{BATCH, Const, Converter, Value, dtype_name};
use super::proto::{NodeProto, dtype};
use crate::error::{Error, Result};
use crate::model::checked_elems;

/// Evaluates one node at load time; `Ok(None)`: not this node (it is left to its converter).
type FoldFn = fn(&Converter<'_>, &NodeProto) -> Result<Option<Const>>;

/// What a foldable node's inputs must be.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Inputs {
    /// Anything: `Shape` reads only the shape of a computed tensor.
    Any,
    /// Every given input a constant (an initializer or a folded node).
    Constant,
}

/// Every op evaluated at load time, by `op_type`.
pub(super) const FOLDS: &[(&str, Inputs, FoldFn)] = &[
    ("Shape", Inputs::Any, shape),
    ("Identity", Inputs::Constant, |cx, n| {
        Ok(Some(cx.input_const(n, 0)?.clone()))
    }),
    ("Cast", Inputs::Constant, cast),
    ("Reshape", Inputs::Constant, reshape),
    ("Squeeze", Inputs::Constant, squeeze),
    ("Unsqueeze", Inputs::Constant, squeeze),
    ("Gather", Inputs::Constant, gather),
    ("Concat", Inputs::Constant, concat),
    ("Slice", Inputs::Constant, slice),
    ("ConstantOfShape", Inputs::Constant, constant_of_shape),
    ("Add", Inputs::Constant, arithmetic),
    ("Sub", Inputs::Constant, arithmetic),
    ("Mul", Inputs::Constant, arithmetic),
    ("Div", Inputs::Constant, arithmetic),
    ("Equal", Inputs::Constant, equal),
    ("Where", Inputs::Constant, select),
    ("Expand", Inputs::Constant, expand),
    ("GatherElements", Inputs::Constant, gather_elements),
];

/// The value of `node` computed at load time, if its op is in [`FOLDS`] and its inputs allow.
pub(super) fn fold(cx: &Converter<'_>, node: &NodeProto) -> Result<Option<Const>> {
    let Some(&(_, inputs, eval)) = FOLDS.iter().find(|(op, _, _)| *op == node.op_type) else {
        return Ok(None);
    };
    let constant = |n: &String| n.is_empty() || matches!(cx.values.get(n), Some(Value::Const(_)));
    if inputs == Inputs::Constant && (node.input.is_empty() || !node.input.iter().all(constant)) {
        return Ok(None);
    }
    eval(cx, node)
}

/// `node`'s constants break its rules (see [`Converter::invalid`]).
fn invalid(cx: &Converter<'_>, node: &NodeProto, m: &str) -> Error {
    cx.invalid(node, format!("on constants: {m}"))
}

/// `node` asks for a computation sinter does not do at load time (the batch size is not known
/// until a run).
fn unsupported(cx: &Converter<'_>, node: &NodeProto, m: &str) -> Error {
    cx.unsupported(node, format!("on constants: {m}"))
}

fn ints_only(c: &Const) -> bool {
    c.f32.is_empty()
}

fn batch_free(c: &Const) -> bool {
    !c.i64.contains(&BATCH)
}

/// Entry `k` of a 1-D integer operand broadcast from one entry (the caller checked the
/// lengths).
fn pick(v: &Const, k: usize) -> i64 {
    v.i64[if v.i64.len() == 1 { 0 } else { k }]
}

/// A 1-D integer constant.
fn ints(v: Vec<i64>) -> Const {
    Const {
        dims: vec![v.len()],
        f32: vec![],
        i64: v,
    }
}

/// Whether input `i` is given (optional inputs may be absent or named `""`).
fn given(node: &NodeProto, i: usize) -> bool {
    node.input.get(i).is_some_and(|n| !n.is_empty())
}

/// `Shape(x)`, optionally `[start, end)`: [`BATCH`] for a computed tensor's batch axis.
fn shape(cx: &Converter<'_>, node: &NodeProto) -> Result<Option<Const>> {
    let dims: Vec<i64> = match cx.value(node, 0)? {
        Value::Const(c) => c.dims.iter().map(|&d| d as i64).collect(),
        Value::Node(x) => cx.layout(node, 0).onnx_shape(&cx.nodes[*x].shape),
    };
    let rank = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let start = clamp(cx.attr_i(node, "start")?.unwrap_or(0));
    let end = clamp(cx.attr_i(node, "end")?.unwrap_or(rank));
    let v = dims.get(start..end.max(start)).unwrap_or(&[]).to_vec();
    Ok(Some(ints(v)))
}

fn cast(cx: &Converter<'_>, node: &NodeProto) -> Result<Option<Const>> {
    let c = cx.input_const(node, 0)?;
    let to = cx.attr_i(node, "to")?.unwrap_or(0) as i32;
    Ok(Some(match to {
        dtype::FLOAT | dtype::DOUBLE | dtype::FLOAT16 if batch_free(c) => Const {
            dims: c.dims.clone(),
            f32: if ints_only(c) {
                c.i64.iter().map(|&v| v as f32).collect()
            } else {
                c.f32.clone()
            },
            i64: vec![],
        },
        dtype::INT64 | dtype::INT32 => Const {
            dims: c.dims.clone(),
            f32: vec![],
            i64: if ints_only(c) {
                c.i64.clone()
            } else {
                // Truncation toward zero, as ONNX casts; out-of-range values are undefined in
                // ONNX and refused here.
                let mut v = Vec::with_capacity(c.f32.len());
                for &f in &c.f32 {
                    if !(f.is_finite() && f.abs() < 9.2e18) {
                        return Err(invalid(cx, node, &format!("cast of {f} to an integer")));
                    }
                    v.push(f.trunc() as i64);
                }
                v
            },
        },
        _ => {
            return Err(unsupported(
                cx,
                node,
                &format!("cast to {}", dtype_name(to)),
            ));
        }
    }))
}

/// `c`'s values seen with `dims`, which must hold as many.
fn view(cx: &Converter<'_>, node: &NodeProto, c: &Const, dims: Vec<usize>) -> Result<Const> {
    let n = c.f32.len().max(c.i64.len());
    if dims.iter().product::<usize>() != n {
        return Err(invalid(cx, node, &format!("shape {dims:?} for {n} values")));
    }
    Ok(Const {
        dims,
        f32: c.f32.clone(),
        i64: c.i64.clone(),
    })
}

fn reshape(cx: &Converter<'_>, node: &NodeProto) -> Result<Option<Const>> {
    let c = cx.input_const(node, 0)?;
    let n = c.f32.len().max(c.i64.len());
    let t = &cx.input_const(node, 1)?.i64;
    if t.iter().any(|&d| d < -1 || d == BATCH) || t.iter().filter(|&&d| d == -1).count() > 1 {
        let m = format!("shape {t:?}");
        return Err(if t.contains(&BATCH) {
            unsupported(cx, node, &m)
        } else {
            invalid(cx, node, &m)
        });
    }
    let mut d: Vec<usize> = Vec::with_capacity(t.len());
    for (k, &v) in t.iter().enumerate() {
        d.push(match v {
            0 => *c
                .dims
                .get(k)
                .ok_or_else(|| cx.invalid(node, "0 entry beyond the rank"))?,
            -1 => 1,
            v => v as usize,
        });
    }
    if let Some(k) = t.iter().position(|&v| v == -1) {
        let known: usize = d.iter().product();
        if known == 0 || n % known != 0 {
            return Err(invalid(cx, node, &format!("shape {t:?} for {n} values")));
        }
        d[k] = n / known;
    }
    view(cx, node, c, d).map(Some)
}

/// `Squeeze` / `Unsqueeze` with constant axes (opset 13: an input).
fn squeeze(cx: &Converter<'_>, node: &NodeProto) -> Result<Option<Const>> {
    let c = cx.input_const(node, 0)?;
    if !given(node, 1) {
        return Ok(None);
    }
    let axes = cx.input_const(node, 1)?.i64.clone();
    let squeeze = node.op_type == "Squeeze";
    let rank = c.dims.len() as i64 + if squeeze { 0 } else { axes.len() as i64 };
    let mut axes: Vec<i64> = axes
        .iter()
        .map(|&a| if a < 0 { a + rank } else { a })
        .collect();
    axes.sort_unstable();
    if axes.iter().any(|&a| a < 0 || a >= rank) || axes.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid(cx, node, &format!("axes {axes:?}")));
    }
    let dims = if squeeze {
        let mut d = Vec::new();
        for (k, &v) in c.dims.iter().enumerate() {
            if axes.contains(&(k as i64)) {
                if v != 1 {
                    let m = format!("squeeze of axis {k} of length {v}");
                    return Err(invalid(cx, node, &m));
                }
            } else {
                d.push(v);
            }
        }
        d
    } else {
        let mut src = c.dims.iter();
        (0..rank)
            .map(|a| {
                if axes.contains(&a) {
                    1
                } else {
                    src.next().copied().unwrap_or(1)
                }
            })
            .collect()
    };
    view(cx, node, c, dims).map(Some)
}

/// `Gather` along axis 0 of a 1-D constant (a shape's entries).
fn gather(cx: &Converter<'_>, node: &NodeProto) -> Result<Option<Const>> {
    let (data, idx) = (cx.input_const(node, 0)?, cx.input_const(node, 1)?);
    let axis = cx.attr_i(node, "axis")?.unwrap_or(0);
    if data.dims.is_empty() || axis != 0 && axis != -(data.dims.len() as i64) || !ints_only(idx) {
        return Ok(None);
    }
    // Rows of `data` along axis 0 (an embedding table's rows, or a shape's entries).
    let n = data.dims[0] as i64;
    let row: usize = data.dims[1..].iter().product();
    let mut dims = idx.dims.clone();
    dims.extend(&data.dims[1..]);
    cx.opts.check_elems(&dims).map_err(|m| cx.limit(node, m))?;
    let mut f = Vec::new();
    let mut i = Vec::new();
    for &k in &idx.i64 {
        let k = if k < 0 { k + n } else { k };
        if !(0..n).contains(&k) {
            return Err(invalid(cx, node, &format!("index {k} of {n} values")));
        }
        let r = k as usize * row..(k as usize + 1) * row;
        if ints_only(data) {
            i.extend_from_slice(&data.i64[r]);
        } else {
            f.extend_from_slice(&data.f32[r]);
        }
    }
    Ok(Some(Const {
        dims,
        f32: f,
        i64: i,
    }))
}

/// `Concat` of 1-D integer constants.
fn concat(cx: &Converter<'_>, node: &NodeProto) -> Result<Option<Const>> {
    let parts: Vec<&Const> = (0..node.input.len())
        .map(|i| cx.input_const(node, i))
        .collect::<Result<_>>()?;
    if parts.iter().any(|c| c.dims.len() != 1 || !ints_only(c)) {
        return Ok(None);
    }
    Ok(Some(ints(
        parts.iter().flat_map(|c| c.i64.iter().copied()).collect(),
    )))
}

/// `Slice` of a 1-D integer constant along axis 0 with step 1.
fn slice(cx: &Converter<'_>, node: &NodeProto) -> Result<Option<Const>> {
    let data = cx.input_const(node, 0)?;
    let list = |i: usize| -> Result<Option<Vec<i64>>> {
        if !given(node, i) {
            return Ok(None);
        }
        let c = cx.input_const(node, i)?;
        if !ints_only(c) || c.dims.len() > 1 {
            return Err(invalid(
                cx,
                node,
                "starts, ends, axes and steps are 1-D integers",
            ));
        }
        Ok(Some(c.i64.clone()))
    };
    let r = data.dims.len();
    let starts = list(1)?.unwrap_or_default();
    let ends = list(2)?.unwrap_or_default();
    let axes = list(3)?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = list(4)?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(invalid(
            cx,
            node,
            "starts, ends, axes and steps differ in length",
        ));
    }
    // Per axis: the kept indices.
    let mut keep: Vec<Vec<usize>> = data.dims.iter().map(|&d| (0..d).collect()).collect();
    for (k, &a) in axes.iter().enumerate() {
        let a = if a < 0 { a + r as i64 } else { a };
        let Some(a) = usize::try_from(a).ok().filter(|&a| a < r) else {
            return Err(invalid(cx, node, "an axis is out of range"));
        };
        if steps[k] != 1 {
            return Err(unsupported(cx, node, "only steps of 1"));
        }
        let n = data.dims[a] as i64;
        let clamp = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n) as usize;
        let (s0, e0) = (clamp(starts[k]), clamp(ends[k]));
        keep[a] = (s0..e0.max(s0)).collect();
    }
    let dims: Vec<usize> = keep.iter().map(Vec::len).collect();
    let total: usize = dims.iter().product();
    let mut stride = vec![1usize; r];
    for i in (0..r.saturating_sub(1)).rev() {
        stride[i] = stride[i + 1] * data.dims[i + 1];
    }
    let mut idx = vec![0usize; r];
    let mut src = Vec::with_capacity(total);
    for _ in 0..total {
        src.push((0..r).map(|i| keep[i][idx[i]] * stride[i]).sum::<usize>());
        for i in (0..r).rev() {
            idx[i] += 1;
            if idx[i] < dims[i] {
                break;
            }
            idx[i] = 0;
        }
    }
    let pick = |v: &[f32]| src.iter().map(|&j| v[j]).collect::<Vec<_>>();
    let pick_i = |v: &[i64]| src.iter().map(|&j| v[j]).collect::<Vec<_>>();
    Ok(Some(Const {
        dims,
        f32: if ints_only(data) {
            vec![]
        } else {
            pick(&data.f32)
        },
        i64: if ints_only(data) {
            pick_i(&data.i64)
        } else {
            vec![]
        },
    }))
}

/// `ConstantOfShape`. The batch size in the shape becomes 1: the value is the same for every
/// sample, so it broadcasts wherever it meets the activations (the zero initial state the
/// TorchScript exporter builds for a recurrent op from `Shape(x)`).
fn constant_of_shape(cx: &Converter<'_>, node: &NodeProto) -> Result<Option<Const>> {
    let shape: Vec<i64> = cx
        .input_const(node, 0)?
        .i64
        .iter()
        .map(|&d| if d == BATCH { 1 } else { d })
        .collect();
    if shape.iter().any(|&d| d < 0) {
        return Err(invalid(cx, node, "the shape holds a negative entry"));
    }
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    cx.opts.check_elems(&dims).map_err(|m| cx.limit(node, m))?;
    let n = checked_elems(&dims).map_err(|m| cx.limit(node, m))?;
    let value = match Converter::attr(node, "value").and_then(|a| a.t.as_ref()) {
        Some(t) => cx.constant(t, &format!("node {:?}", node.name))?,
        None => Const {
            dims: vec![1],
            f32: vec![0.0],
            i64: vec![],
        },
    };
    Ok(Some(Const {
        dims,
        f32: value.f32.first().map_or(vec![], |&v| vec![v; n]),
        i64: value.i64.first().map_or(vec![], |&v| vec![v; n]),
    }))
}

/// Integer arithmetic on shapes (scalar or same-length operands).
fn arithmetic(cx: &Converter<'_>, node: &NodeProto) -> Result<Option<Const>> {
    let (a, b) = (cx.input_const(node, 0)?, cx.input_const(node, 1)?);
    if !ints_only(a) || !ints_only(b) {
        return Ok(None);
    }
    if !batch_free(a) || !batch_free(b) {
        let m = "arithmetic on the batch size, which is not known until a run";
        return Err(unsupported(cx, node, m));
    }
    let (long, short) = if a.i64.len() >= b.i64.len() {
        (a, b)
    } else {
        (b, a)
    };
    if short.i64.len() != 1 && short.i64.len() != long.i64.len() {
        return Err(invalid(cx, node, "operands of different lengths"));
    }
    let mut v = Vec::with_capacity(long.i64.len());
    for k in 0..long.i64.len() {
        let (x, y) = (pick(a, k), pick(b, k));
        let r = match node.op_type.as_str() {
            "Mul" => x.checked_mul(y),
            "Add" => x.checked_add(y),
            "Sub" => x.checked_sub(y),
            _ => (y != 0).then(|| x.div_euclid(y)),
        };
        v.push(r.ok_or_else(|| cx.invalid(node, "integer overflow or division by zero"))?);
    }
    Ok(Some(Const {
        dims: long.dims.clone(),
        f32: vec![],
        i64: v,
    }))
}

/// `Equal` of 1-D integer constants (scalar or same-length operands): 1 where equal, else 0.
fn equal(cx: &Converter<'_>, node: &NodeProto) -> Result<Option<Const>> {
    let (a, b) = (cx.input_const(node, 0)?, cx.input_const(node, 1)?);
    if !ints_only(a) || !ints_only(b) || a.dims.len() > 1 || b.dims.len() > 1 {
        return Ok(None);
    }
    let n = a.i64.len().max(b.i64.len());
    if ![1, n].contains(&a.i64.len()) || ![1, n].contains(&b.i64.len()) {
        return Err(invalid(cx, node, "operands of different lengths"));
    }
    // The batch size compares equal only to itself (it is not known until a run).
    Ok(Some(ints(
        (0..n)
            .map(|k| i64::from(pick(a, k) == pick(b, k)))
            .collect(),
    )))
}

/// `Where` of 1-D integer constants (scalar or same-length operands).
fn select(cx: &Converter<'_>, node: &NodeProto) -> Result<Option<Const>> {
    let ops = [0, 1, 2].map(|i| cx.input_const(node, i));
    let [c, a, b] = ops;
    let (c, a, b) = (c?, a?, b?);
    if [c, a, b].iter().any(|v| !ints_only(v) || v.dims.len() > 1) {
        return Ok(None);
    }
    let n = [c, a, b].iter().map(|v| v.i64.len()).max().unwrap_or(0);
    if [c, a, b].iter().any(|v| ![1, n].contains(&v.i64.len())) {
        return Err(invalid(cx, node, "operands of different lengths"));
    }
    Ok(Some(ints(
        (0..n)
            .map(|k| {
                if pick(c, k) != 0 {
                    pick(a, k)
                } else {
                    pick(b, k)
                }
            })
            .collect(),
    )))
}

/// `Expand` of a constant to a shape. An entry that is the batch size keeps the constant's
/// axis of 1: the same for every sample, broadcast where it meets the
/// activations (Hugging Face's buffered `token_type_ids` expanded to the batch).
fn expand(cx: &Converter<'_>, node: &NodeProto) -> Result<Option<Const>> {
    let (c, shape) = (cx.input_const(node, 0)?, cx.input_const(node, 1)?);
    if !ints_only(shape) || shape.dims.len() != 1 {
        return Ok(None);
    }
    let r = shape.i64.len().max(c.dims.len());
    let mut from = vec![1usize; r - c.dims.len()];
    from.extend(&c.dims);
    let mut to = vec![1i64; r - shape.i64.len()];
    to.extend(&shape.i64);
    let mut dims = Vec::with_capacity(r);
    for (&f, &t) in from.iter().zip(&to) {
        dims.push(match t {
            // The same values for every sample (the dynamo exporter's zero initial state of a
            // recurrent op, `[layers, N, H]`).
            BATCH if f == 1 => 1,
            BATCH => {
                return Err(unsupported(
                    cx,
                    node,
                    "the batch size over an axis of length > 1",
                ));
            }
            t if t < 0 => return Err(invalid(cx, node, "a negative size")),
            t if f == 1 => t as usize,
            t if t as usize == f || t == 1 => f,
            _ => return Err(invalid(cx, node, "a shape that does not broadcast")),
        });
    }
    cx.opts.check_elems(&dims).map_err(|m| cx.limit(node, m))?;
    checked_elems(&dims).map_err(|m| cx.limit(node, m))?;
    let total: usize = dims.iter().product();
    // Source index of each output element: broadcast axes read index 0.
    let src = |mut flat: usize| {
        let mut at = 0;
        let mut stride = 1;
        for k in (0..r).rev() {
            let i = flat % dims[k];
            flat /= dims[k];
            if from[k] != 1 {
                at += i * stride;
            }
            stride *= from[k];
        }
        at
    };
    let f32 = if ints_only(c) {
        vec![]
    } else {
        (0..total).map(|j| c.f32[src(j)]).collect()
    };
    let i64 = if ints_only(c) {
        (0..total).map(|j| c.i64[src(j)]).collect()
    } else {
        vec![]
    };
    Ok(Some(Const { dims, f32, i64 }))
}

/// `GatherElements` of constants: `out[..i..] = data[..idx[..i..]..]` along `axis`.
fn gather_elements(cx: &Converter<'_>, node: &NodeProto) -> Result<Option<Const>> {
    let (data, idx) = (cx.input_const(node, 0)?, cx.input_const(node, 1)?);
    let r = data.dims.len();
    let axis = cx.attr_i(node, "axis")?.unwrap_or(0);
    let axis = if axis < 0 { axis + r as i64 } else { axis };
    let Some(axis) = usize::try_from(axis).ok().filter(|&a| a < r) else {
        return Err(invalid(cx, node, "the axis is out of range"));
    };
    if !ints_only(idx) || idx.dims.len() != r {
        return Err(invalid(cx, node, "indices of the data's rank"));
    }
    if idx
        .dims
        .iter()
        .zip(&data.dims)
        .enumerate()
        .any(|(k, (&i, &d))| k != axis && i > d)
    {
        return Err(invalid(cx, node, "indices larger than the data"));
    }
    let mut stride = vec![1usize; r];
    for k in (0..r.saturating_sub(1)).rev() {
        stride[k] = stride[k + 1] * data.dims[k + 1];
    }
    let n = data.dims[axis] as i64;
    let mut src = Vec::with_capacity(idx.i64.len());
    for (flat, &v) in idx.i64.iter().enumerate() {
        let v = if v < 0 { v + n } else { v };
        if !(0..n).contains(&v) {
            return Err(invalid(cx, node, &format!("index {v} of {n} values")));
        }
        let (mut rest, mut at) = (flat, 0);
        for k in (0..r).rev() {
            let i = rest % idx.dims[k].max(1);
            rest /= idx.dims[k].max(1);
            at += if k == axis { v as usize } else { i } * stride[k];
        }
        src.push(at);
    }
    Ok(Some(Const {
        dims: idx.dims.clone(),
        f32: if ints_only(data) {
            vec![]
        } else {
            src.iter().map(|&j| data.f32[j]).collect()
        },
        i64: if ints_only(data) {
            src.iter().map(|&j| data.i64[j]).collect()
        } else {
            vec![]
        },
    }))
}

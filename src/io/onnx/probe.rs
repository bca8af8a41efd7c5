//! A small evaluator for the index and mask arithmetic exporters write around attention
//! (Hugging Face builds its padding mask with `Range`, `Flatten`, `Gather`, comparisons and
//! `Expand`), run at load time on probe inputs: what a mask tensor means is found by
//! computing it for masks whose meaning is known, not by trusting the shape of the subgraph.
//!
//! A tensor is a value (every element, in f64: integers and booleans are exact) or, for a
//! float activation, its shape alone: `Shape` of an activation is all the mask arithmetic
//! reads of it, so activations are followed through shape rules only. Anything else (an
//! op not listed, a value needed where only a shape is known, a size over the budget) stops
//! the evaluation, and the caller then leaves the graph as it is.

use super::convert::Const;
use super::proto::{NodeProto, TensorProto};
use std::collections::HashMap;

/// A tensor of the probe: its dims and, unless it is an activation, its values.
#[derive(Clone, Debug)]
pub(super) struct T {
    pub dims: Vec<usize>,
    /// `None`: only the shape is known.
    pub data: Option<Vec<f64>>,
    /// Integer or boolean (integer division truncates).
    pub int: bool,
}

impl T {
    fn val(dims: Vec<usize>, data: Vec<f64>, int: bool) -> T {
        T {
            dims,
            data: Some(data),
            int,
        }
    }
    pub(super) fn shape(dims: Vec<usize>) -> T {
        T {
            dims,
            data: None,
            int: false,
        }
    }
    fn ints(v: Vec<f64>) -> T {
        T::val(vec![v.len()], v, true)
    }
}

/// Elements a probe tensor may hold.
const MAX_ELEMS: usize = 1 << 22;

/// The evaluator: the graph's producers, constants and the probe's graph inputs.
pub(super) struct Probe<'n, 'c> {
    producers: HashMap<&'n str, &'n NodeProto>,
    consts: &'c dyn Fn(&str) -> Option<&'c Const>,
    decode: &'c dyn Fn(&TensorProto) -> Option<Const>,
    inputs: HashMap<String, T>,
    memo: HashMap<String, T>,
    /// Nodes left to evaluate.
    steps: usize,
    /// Constants over this many values are followed by shape only (weights).
    weights: usize,
}

impl<'n, 'c> Probe<'n, 'c> {
    /// An evaluator over `nodes`, with the graph inputs' probe tensors.
    pub(super) fn new(
        nodes: &'n [NodeProto],
        consts: &'c dyn Fn(&str) -> Option<&'c Const>,
        decode: &'c dyn Fn(&TensorProto) -> Option<Const>,
        inputs: HashMap<String, T>,
    ) -> Probe<'n, 'c> {
        let mut producers = HashMap::new();
        for n in nodes {
            for o in &n.output {
                producers.insert(o.as_str(), n);
            }
        }
        Probe {
            producers,
            consts,
            decode,
            inputs,
            memo: HashMap::new(),
            steps: 4096,
            weights: 1 << 16,
        }
    }

    /// The value of tensor `name`, if the evaluator can compute it.
    /// Follows constants of up to `n` values by value (a position embedding's table), larger
    /// ones by shape (default: 2^16).
    pub(super) fn weights_up_to(mut self, n: usize) -> Self {
        self.weights = n.min(MAX_ELEMS);
        self
    }

    pub(super) fn eval(&mut self, name: &str) -> Option<T> {
        if let Some(t) = self.memo.get(name) {
            return Some(t.clone());
        }
        let t = if let Some(t) = self.inputs.get(name) {
            t.clone()
        } else if let Some(c) = (self.consts)(name) {
            let int = c.f32.is_empty();
            // Weights are followed by shape only, as is a constant whose values a layer took
            // (its dims remain).
            let n = c.f32.len().max(c.i64.len());
            if n > self.weights || n != c.dims.iter().product::<usize>() {
                return Some(T::shape(c.dims.clone()));
            }
            let data = if int {
                c.i64.iter().map(|&v| v as f64).collect()
            } else {
                c.f32.iter().map(|&v| f64::from(v)).collect()
            };
            T::val(c.dims.clone(), data, int)
        } else {
            self.steps = self.steps.checked_sub(1)?;
            let node = *self.producers.get(name)?;
            let k = node.output.iter().position(|o| o == name)?;
            if k != 0 {
                return None;
            }
            let mut ins = Vec::with_capacity(node.input.len());
            for i in &node.input {
                ins.push(if i.is_empty() {
                    None
                } else {
                    Some(self.eval(i)?)
                });
            }
            let t = op(node, &ins, self.decode)?;
            // Values are bounded; a shape alone may be of any size.
            if t.data.is_some() && t.data.as_ref().map_or(0, Vec::len) > MAX_ELEMS {
                return None;
            }
            t
        };
        self.memo.insert(name.to_string(), t.clone());
        Some(t)
    }
}

fn attr<'n>(n: &'n NodeProto, name: &str) -> Option<&'n super::proto::AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).map_or(default, |a| a.i)
}

fn axis(a: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if a < 0 { a + r } else { a };
    (0..r).contains(&a).then_some(a as usize)
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Numpy broadcasting of two shapes.
fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let x = if i + a.len() >= r {
                a[i + a.len() - r]
            } else {
                1
            };
            let y = if i + b.len() >= r {
                b[i + b.len() - r]
            } else {
                1
            };
            match (x, y) {
                _ if x == y => Some(x),
                (1, _) => Some(y),
                (_, 1) => Some(x),
                _ => None,
            }
        })
        .collect()
}

/// The element of `t` (of `dims`) that broadcasts to index `idx` of `out`.
fn at(t: &T, data: &[f64], out: &[usize], idx: &[usize]) -> f64 {
    let off = out.len() - t.dims.len();
    let st = strides(&t.dims);
    let mut p = 0;
    for (i, &d) in t.dims.iter().enumerate() {
        if d != 1 {
            p += idx[off + i] * st[i];
        }
    }
    data[p]
}

/// An elementwise op of any number of inputs, broadcast.
fn elementwise(ins: &[&T], int: bool, f: impl Fn(&[f64]) -> f64) -> Option<T> {
    let mut dims = ins.first()?.dims.clone();
    for t in &ins[1..] {
        dims = broadcast(&dims, &t.dims)?;
    }
    let datas: Option<Vec<&Vec<f64>>> = ins.iter().map(|t| t.data.as_ref()).collect();
    let Some(datas) = datas else {
        return Some(T::shape(dims));
    };
    let n: usize = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    if n > MAX_ELEMS {
        return None;
    }
    let st = strides(&dims);
    let mut idx = vec![0; dims.len()];
    let mut vals = vec![0.0; ins.len()];
    let mut out = Vec::with_capacity(n);
    for flat in 0..n {
        let mut r = flat;
        for (i, s) in st.iter().enumerate() {
            idx[i] = r / s;
            r %= s;
        }
        for (k, t) in ins.iter().enumerate() {
            vals[k] = at(t, datas[k], &dims, &idx);
        }
        out.push(f(&vals));
    }
    Some(T::val(dims, out, int))
}

fn ints_of(t: &T) -> Option<Vec<i64>> {
    t.data
        .as_ref()
        .map(|d| d.iter().map(|&v| v as i64).collect())
}

fn b(x: bool) -> f64 {
    f64::from(u8::from(x))
}

/// One node on its inputs (`None`: an omitted optional input).
fn op(
    n: &NodeProto,
    ins: &[Option<T>],
    decode: &dyn Fn(&TensorProto) -> Option<Const>,
) -> Option<T> {
    let x = |i: usize| ins.get(i).and_then(Option::as_ref);
    let data = |i: usize| x(i).and_then(|t| t.data.clone());
    let bin = |f: fn(f64, f64) -> f64, int_out: Option<bool>| {
        let (a, c) = (x(0)?, x(1)?);
        let int = int_out.unwrap_or(a.int && c.int);
        elementwise(&[a, c], int, |v| f(v[0], v[1]))
    };
    match n.op_type.as_str() {
        "Identity" | "Dropout" => x(0).cloned(),
        "Constant" => None,
        "Cast" => {
            let to = attr_i(n, "to", 1);
            let t = x(0)?;
            // float, float16, double, bfloat16; 9 is bool.
            let float = matches!(to, 1 | 10 | 11 | 16);
            let conv = move |v: f64| match to {
                9 => b(v != 0.0),
                _ if float => v,
                _ => v.trunc(),
            };
            Some(match &t.data {
                Some(d) => T::val(t.dims.clone(), d.iter().map(|&v| conv(v)).collect(), !float),
                None if float => T::shape(t.dims.clone()),
                None => return None,
            })
        }
        "Shape" => {
            let t = x(0)?;
            let r = t.dims.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let start = clamp(attr_i(n, "start", 0));
            let end = clamp(attr_i(n, "end", r));
            let v = t.dims[start..end.max(start)]
                .iter()
                .map(|&d| d as f64)
                .collect();
            Some(T::ints(v))
        }
        "Gather" => {
            let (t, i) = (x(0)?, x(1)?);
            let ax = axis(attr_i(n, "axis", 0), t.dims.len())?;
            let len = t.dims[ax] as i64;
            let mut dims = t.dims[..ax].to_vec();
            dims.extend(&i.dims);
            dims.extend(&t.dims[ax + 1..]);
            let (Some(d), Some(idx)) = (&t.data, ints_of(i)) else {
                // Rows of a table (an embedding) picked by ids: followed by shape.
                return (!t.int).then(|| T::shape(dims));
            };
            let outer: usize = t.dims[..ax].iter().product();
            let inner: usize = t.dims[ax + 1..].iter().product();
            let mut out = Vec::new();
            for o in 0..outer {
                for &k in &idx {
                    let k = if k < 0 { k + len } else { k };
                    if !(0..len).contains(&k) {
                        return None;
                    }
                    let base = (o * t.dims[ax] + k as usize) * inner;
                    out.extend_from_slice(&d[base..base + inner]);
                }
            }
            Some(T::val(dims, out, t.int))
        }
        "GatherElements" => {
            let (t, i) = (x(0)?, x(1)?);
            let r = t.dims.len();
            let ax = axis(attr_i(n, "axis", 0), r)?;
            if i.dims.len() != r {
                return None;
            }
            let (Some(d), Some(idx)) = (&t.data, ints_of(i)) else {
                return (!t.int).then(|| T::shape(i.dims.clone()));
            };
            let st = strides(&t.dims);
            let len = t.dims[ax] as i64;
            let mut out = Vec::with_capacity(idx.len());
            for (flat, &v) in idx.iter().enumerate() {
                let v = if v < 0 { v + len } else { v };
                if !(0..len).contains(&v) {
                    return None;
                }
                let (mut rest, mut at) = (flat, 0);
                for k in (0..r).rev() {
                    let e = rest % i.dims[k].max(1);
                    rest /= i.dims[k].max(1);
                    let e = if k == ax { v as usize } else { e };
                    if e >= t.dims[k] {
                        return None;
                    }
                    at += e * st[k];
                }
                out.push(d[at]);
            }
            Some(T::val(i.dims.clone(), out, t.int))
        }
        "GatherND" => {
            let (t, i) = (x(0)?, x(1)?);
            if attr_i(n, "batch_dims", 0) != 0 {
                return None;
            }
            let k = *i.dims.last()?;
            if k == 0 || k > t.dims.len() {
                return None;
            }
            let mut dims = i.dims[..i.dims.len() - 1].to_vec();
            dims.extend(&t.dims[k..]);
            let (Some(d), Some(idx)) = (&t.data, ints_of(i)) else {
                return None;
            };
            let inner: usize = t.dims[k..].iter().product();
            let st = strides(&t.dims[..k]);
            let mut out = Vec::new();
            for tuple in idx.chunks_exact(k) {
                let mut base = 0;
                for (a, &v) in tuple.iter().enumerate() {
                    let len = t.dims[a] as i64;
                    let v = if v < 0 { v + len } else { v };
                    if !(0..len).contains(&v) {
                        return None;
                    }
                    base += v as usize * st[a];
                }
                out.extend_from_slice(&d[base * inner..(base + 1) * inner]);
            }
            Some(T::val(dims, out, t.int))
        }
        "Unsqueeze" | "Squeeze" => {
            let t = x(0)?;
            let axes: Vec<i64> = match x(1) {
                Some(a) => ints_of(a)?,
                None => attr(n, "axes").map(|a| a.ints.clone()).unwrap_or_default(),
            };
            let mut dims = t.dims.clone();
            if n.op_type == "Unsqueeze" {
                let r = dims.len() + axes.len();
                let mut ax: Vec<usize> = axes.iter().map(|&a| axis(a, r)).collect::<Option<_>>()?;
                ax.sort_unstable();
                ax.dedup();
                // An axis named twice is invalid (and would insert past the end).
                if ax.len() != axes.len() {
                    return None;
                }
                for a in ax {
                    dims.insert(a, 1);
                }
            } else if axes.is_empty() {
                dims.retain(|&d| d != 1);
            } else {
                let mut ax: Vec<usize> = axes
                    .iter()
                    .map(|&a| axis(a, dims.len()))
                    .collect::<Option<_>>()?;
                ax.sort_unstable();
                ax.dedup();
                if ax.len() != axes.len() {
                    return None;
                }
                for a in ax.into_iter().rev() {
                    if dims[a] != 1 {
                        return None;
                    }
                    dims.remove(a);
                }
            }
            Some(T { dims, ..t.clone() })
        }
        "Reshape" => {
            let t = x(0)?;
            let shape = ints_of(x(1)?)?;
            let total: usize = t.dims.iter().product();
            let mut dims = Vec::with_capacity(shape.len());
            let mut infer = None;
            for (i, &s) in shape.iter().enumerate() {
                match s {
                    0 if attr_i(n, "allowzero", 0) == 0 => dims.push(*t.dims.get(i)?),
                    -1 if infer.is_none() => {
                        infer = Some(i);
                        dims.push(1);
                    }
                    s if s >= 0 => dims.push(s as usize),
                    _ => return None,
                }
            }
            let known = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
            if let Some(i) = infer {
                if known == 0 || !total.is_multiple_of(known) {
                    return None;
                }
                dims[i] = total / known;
            }
            (dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) == Some(total))
                .then(|| T { dims, ..t.clone() })
        }
        "Flatten" => {
            let t = x(0)?;
            let r = t.dims.len();
            let a = attr_i(n, "axis", 1);
            let a = if a < 0 { a + r as i64 } else { a };
            let a = usize::try_from(a).ok().filter(|&a| a <= r)?;
            let dims = vec![t.dims[..a].iter().product(), t.dims[a..].iter().product()];
            Some(T { dims, ..t.clone() })
        }
        "Concat" => {
            let ts: Vec<&T> = (0..ins.len()).map(x).collect::<Option<_>>()?;
            let first = ts.first()?;
            let ax = axis(attr_i(n, "axis", 0), first.dims.len())?;
            let mut dims = first.dims.clone();
            dims[ax] = 0;
            for t in &ts {
                if t.dims.len() != dims.len() {
                    return None;
                }
                dims[ax] += t.dims[ax];
            }
            if ts.iter().any(|t| t.data.is_none()) {
                return Some(T::shape(dims));
            }
            let outer: usize = dims[..ax].iter().product();
            let mut out = Vec::new();
            for o in 0..outer {
                for t in &ts {
                    let w: usize = t.dims[ax..].iter().product();
                    out.extend_from_slice(&t.data.as_ref()?[o * w..(o + 1) * w]);
                }
            }
            Some(T::val(dims, out, ts.iter().all(|t| t.int)))
        }
        "Range" => {
            let (s, l, d) = (data(0)?, data(1)?, data(2)?);
            let (s, l, d) = (*s.first()?, *l.first()?, *d.first()?);
            if d == 0.0 {
                return None;
            }
            let count = ((l - s) / d).ceil().max(0.0) as usize;
            if count > MAX_ELEMS {
                return None;
            }
            let int = x(0)?.int;
            Some(T::val(
                vec![count],
                (0..count).map(|i| s + i as f64 * d).collect(),
                int,
            ))
        }
        "ConstantOfShape" => {
            let dims: Vec<usize> = ints_of(x(0)?)?
                .into_iter()
                .map(|d| usize::try_from(d).ok())
                .collect::<Option<_>>()?;
            let (v, int) = match attr(n, "value").and_then(|a| a.t.as_ref()) {
                None => (0.0, false),
                Some(t) => {
                    let c = decode(t)?;
                    match c.f32.first() {
                        Some(&f) => (f64::from(f), false),
                        None => (*c.i64.first()? as f64, true),
                    }
                }
            };
            let n: usize = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
            (n <= MAX_ELEMS).then(|| T::val(dims, vec![v; n], int))
        }
        "Expand" => {
            let t = x(0)?;
            let shape: Vec<usize> = ints_of(x(1)?)?
                .into_iter()
                .map(|d| usize::try_from(d).ok())
                .collect::<Option<_>>()?;
            let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
            if n > MAX_ELEMS {
                return None;
            }
            let s = T::val(shape.clone(), vec![0.0; n], true);
            elementwise(&[t, &s], t.int, |v| v[0])
        }
        "Where" => {
            let (c, a, e) = (x(0)?, x(1)?, x(2)?);
            elementwise(&[c, a, e], a.int && e.int, |v| {
                if v[0] != 0.0 { v[1] } else { v[2] }
            })
        }
        "Transpose" => {
            let t = x(0)?;
            let r = t.dims.len();
            let perm: Vec<usize> = match attr(n, "perm") {
                Some(a) => a
                    .ints
                    .iter()
                    .map(|&p| usize::try_from(p).ok())
                    .collect::<Option<_>>()?,
                None => (0..r).rev().collect(),
            };
            let mut seen = vec![false; r];
            if perm.len() != r
                || !perm
                    .iter()
                    .all(|&p| p < r && !std::mem::replace(&mut seen[p], true))
            {
                return None;
            }
            let dims: Vec<usize> = perm
                .iter()
                .map(|&p| t.dims.get(p).copied())
                .collect::<Option<_>>()?;
            let Some(d) = &t.data else {
                return Some(T::shape(dims));
            };
            let (si, so) = (strides(&t.dims), strides(&dims));
            let mut out = vec![0.0; d.len()];
            for (flat, o) in out.iter_mut().enumerate() {
                let mut src = 0;
                for (i, &p) in perm.iter().enumerate() {
                    src += (flat / so[i]) % dims[i] * si[p];
                }
                *o = d[src];
            }
            Some(T::val(dims, out, t.int))
        }
        "Equal" => bin(|a, c| b(a == c), Some(true)),
        "Greater" => bin(|a, c| b(a > c), Some(true)),
        "GreaterOrEqual" => bin(|a, c| b(a >= c), Some(true)),
        "Less" => bin(|a, c| b(a < c), Some(true)),
        "LessOrEqual" => bin(|a, c| b(a <= c), Some(true)),
        "And" => bin(|a, c| b(a != 0.0 && c != 0.0), Some(true)),
        "Or" => bin(|a, c| b(a != 0.0 || c != 0.0), Some(true)),
        "Xor" => bin(|a, c| b((a != 0.0) != (c != 0.0)), Some(true)),
        "Not" => elementwise(&[x(0)?], true, |v| b(v[0] == 0.0)),
        "IsNaN" => elementwise(&[x(0)?], true, |v| b(v[0].is_nan())),
        "IsInf" => elementwise(&[x(0)?], true, |v| b(v[0].is_infinite())),
        "Neg" => elementwise(&[x(0)?], x(0)?.int, |v| -v[0]),
        "Add" => bin(|a, c| a + c, None),
        "Sub" => bin(|a, c| a - c, None),
        "Mul" => bin(|a, c| a * c, None),
        "Div" => {
            let int = x(0)?.int && x(1)?.int;
            let (a, c) = (x(0)?, x(1)?);
            elementwise(&[a, c], int, |v| {
                if int {
                    (v[0] / v[1]).trunc()
                } else {
                    v[0] / v[1]
                }
            })
        }
        "Max" => bin(f64::max, None),
        "Min" => bin(f64::min, None),
        // Integer `Mod` (fmod 0): the remainder takes the divisor's sign, as in Python.
        "Mod" if attr_i(n, "fmod", 0) == 0 && x(0)?.int && x(1)?.int => {
            if x(1)?.data.as_ref()?.contains(&0.0) {
                return None;
            }
            bin(|a, c| a - c * (a / c).floor(), Some(true))
        }
        // Running sums along one axis (RoBERTa's position ids).
        "CumSum" if attr_i(n, "exclusive", 0) == 0 && attr_i(n, "reverse", 0) == 0 => {
            let t = x(0)?;
            let d = t.data.as_ref()?;
            let ax = axis(*ints_of(x(1)?)?.first()?, t.dims.len())?;
            let st = strides(&t.dims);
            let mut out = d.clone();
            for (i, v) in d.iter().enumerate() {
                if !(i / st[ax]).is_multiple_of(t.dims[ax]) {
                    out[i] = out[i - st[ax]] + v;
                }
            }
            Some(T::val(t.dims.clone(), out, t.int))
        }
        "Trilu" => {
            let t = x(0)?;
            let k = match x(1) {
                Some(k) => *ints_of(k)?.first()?,
                None => 0,
            };
            let upper = attr_i(n, "upper", 1) != 0;
            let r = t.dims.len();
            if r < 2 {
                return None;
            }
            let (rows, cols) = (t.dims[r - 2], t.dims[r - 1]);
            let d = t.data.as_ref()?;
            let out = d
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let (row, col) = (((i / cols) % rows) as i64, (i % cols) as i64);
                    let keep = if upper {
                        col - row >= k
                    } else {
                        col - row <= k
                    };
                    if keep { v } else { 0.0 }
                })
                .collect();
            Some(T::val(t.dims.clone(), out, t.int))
        }
        // Activations: only their shapes are followed.
        "Softmax" | "LayerNormalization" | "Erf" | "Tanh" | "Relu" | "Sigmoid" | "Sqrt"
        | "Gelu" | "Pow" | "Reciprocal" => {
            let t = x(0)?;
            match n.op_type.as_str() {
                "Pow" => elementwise(&[t, x(1)?], false, |v| v[0].powf(v[1])),
                // A scale computed from a shape (PyTorch's `1 / sqrt(sqrt(head size))`).
                "Sqrt" => elementwise(&[t], false, |v| v[0].sqrt()),
                "Reciprocal" => elementwise(&[t], false, |v| 1.0 / v[0]),
                _ => Some(T::shape(t.dims.clone())),
            }
        }
        "MatMul" => {
            let (a, c) = (x(0)?, x(1)?);
            let (ra, rc) = (a.dims.len(), c.dims.len());
            if ra < 2 || rc < 2 || a.dims[ra - 1] != c.dims[rc - 2] {
                return None;
            }
            let mut dims = broadcast(&a.dims[..ra - 2], &c.dims[..rc - 2])?;
            dims.extend([a.dims[ra - 2], c.dims[rc - 1]]);
            Some(T::shape(dims))
        }
        "Gemm" => {
            let (a, c) = (x(0)?, x(1)?);
            let m = if attr_i(n, "transA", 0) != 0 {
                a.dims.get(1)?
            } else {
                a.dims.first()?
            };
            let k = if attr_i(n, "transB", 0) != 0 {
                c.dims.first()?
            } else {
                c.dims.get(1)?
            };
            Some(T::shape(vec![*m, *k]))
        }
        "Slice" => {
            let t = x(0)?;
            let starts = ints_of(x(1)?)?;
            let ends = ints_of(x(2)?)?;
            let r = t.dims.len();
            let axes: Vec<usize> = match x(3) {
                Some(a) => ints_of(a)?
                    .into_iter()
                    .map(|a| axis(a, r))
                    .collect::<Option<_>>()?,
                None => (0..starts.len()).collect(),
            };
            let steps = match x(4) {
                Some(s) => ints_of(s)?,
                None => vec![1; starts.len()],
            };
            if axes.len() != starts.len()
                || ends.len() != starts.len()
                || steps.len() != starts.len()
            {
                return None;
            }
            let mut ranges: Vec<Vec<usize>> = t.dims.iter().map(|&d| (0..d).collect()).collect();
            for (k, &a) in axes.iter().enumerate() {
                let d = t.dims[a] as i64;
                if steps[k] != 1 {
                    return None;
                }
                let fix = |v: i64| (if v < 0 { v + d } else { v }).clamp(0, d);
                let (s, e) = (fix(starts[k]), fix(ends[k]));
                ranges[a] = (s..e.max(s)).map(|v| v as usize).collect();
            }
            let dims: Vec<usize> = ranges.iter().map(Vec::len).collect();
            let Some(d) = &t.data else {
                return Some(T::shape(dims));
            };
            let (si, so) = (strides(&t.dims), strides(&dims));
            let total: usize = dims.iter().product();
            let out = (0..total)
                .map(|flat| {
                    let src: usize = (0..r)
                        .map(|i| ranges[i][(flat / so[i]) % dims[i]] * si[i])
                        .sum();
                    d[src]
                })
                .collect();
            Some(T::val(dims, out, t.int))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: output.to_string(),
            op_type: op.to_string(),
            attribute: vec![],
            domain: String::new(),
        }
    }

    #[test]
    fn shapes_of_large_activations_are_followed_without_their_values() {
        // Scores of 12 heads over 512 positions: 6.3M values, never materialised.
        let nodes = vec![
            node("MatMul", &["q", "k"], "scores"),
            node("Shape", &["scores"], "shape"),
        ];
        let consts = |_: &str| None;
        let decode = |_: &TensorProto| None;
        let inputs = [
            ("q".to_string(), T::shape(vec![2, 12, 512, 32])),
            ("k".to_string(), T::shape(vec![2, 12, 32, 512])),
        ];
        let mut p = Probe::new(&nodes, &consts, &decode, inputs.into_iter().collect());
        let shape = p.eval("shape").expect("evaluates");
        assert_eq!(shape.data, Some(vec![2.0, 12.0, 512.0, 512.0]));
    }

    #[test]
    fn values_over_the_budget_and_bad_permutations_stop_the_probe() {
        let mut t = node("Transpose", &["x"], "y");
        t.attribute = vec![super::super::proto::AttributeProto {
            name: "perm".into(),
            ints: vec![0, 0],
            ..Default::default()
        }];
        let nodes = vec![t, node("Expand", &["x", "big"], "z")];
        let big = Const {
            dims: vec![2],
            f32: vec![],
            i64: vec![1 << 20, 1 << 20],
        };
        let consts = |n: &str| (n == "big").then_some(&big);
        let decode = |_: &TensorProto| None;
        let x = T::val(vec![2, 3], vec![0.0; 6], false);
        let mut p = Probe::new(&nodes, &consts, &decode, [("x".to_string(), x)].into());
        assert!(p.eval("y").is_none());
        assert!(p.eval("z").is_none());
    }

    #[test]
    fn an_axis_named_twice_stops_the_probe() {
        // Found by the fuzzer: Unsqueeze of a scalar at axes [1, 1] inserted past the end.
        let consts = |_: &str| None;
        let decode = |_: &TensorProto| None;
        for op in ["Unsqueeze", "Squeeze"] {
            let mut n = node(op, &["x"], "y");
            n.attribute = vec![super::super::proto::AttributeProto {
                name: "axes".into(),
                ints: vec![1, 1],
                ..Default::default()
            }];
            let nodes = vec![n];
            let x = T::val(vec![], vec![3.0], true);
            let mut p = Probe::new(&nodes, &consts, &decode, [("x".to_string(), x)].into());
            assert!(p.eval("y").is_none(), "{op}");
        }
    }

    #[test]
    fn a_table_whose_values_a_layer_took_is_followed_by_shape() {
        // The Embedding took the table's values; its dims remain.
        let table = Const {
            dims: vec![50, 4],
            f32: vec![],
            i64: vec![],
        };
        let nodes = vec![
            node("Gather", &["table", "ids"], "emb"),
            node("Shape", &["emb"], "shape"),
        ];
        let consts = |n: &str| (n == "table").then_some(&table);
        let decode = |_: &TensorProto| None;
        let ids = T::val(vec![2, 3], vec![7.0; 6], true);
        let mut p = Probe::new(&nodes, &consts, &decode, [("ids".to_string(), ids)].into());
        let shape = p.eval("shape").expect("the shape is known");
        assert_eq!(shape.data, Some(vec![2.0, 3.0, 4.0]));
    }
}

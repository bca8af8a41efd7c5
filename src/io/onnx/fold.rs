//! Constant folding at load time: the shape arithmetic exporters write, evaluated once.

use super::convert::{BATCH, Const, Converter, Value, dtype_name};
use super::proto::{NodeProto, dtype};
use crate::error::Result;
use crate::model::checked_elems;

impl Converter<'_> {
    /// Evaluates at load time a node all of whose inputs are constants, or a `Shape`: the shape
    /// arithmetic exporters write (`Shape -> Gather -> Unsqueeze -> Concat -> Reshape`, casts of
    /// constants). The batch size is not known until a run, so `Shape` gives [`BATCH`] for
    /// it; a `Reshape` may keep it as its first entry, any arithmetic on it is refused.
    /// `Ok(None)`: not a foldable node.
    pub(super) fn fold(&self, node: &NodeProto) -> Result<Option<Const>> {
        let op = node.op_type.as_str();
        if op == "Shape" {
            let dims: Vec<i64> = match self.value(node, 0)? {
                Value::Const(c) => c.dims.iter().map(|&d| d as i64).collect(),
                Value::Node(x) => {
                    let onnx = self.layout(node, 0).onnx_dims(&self.nodes[*x].shape);
                    std::iter::once(BATCH)
                        .chain(onnx.iter().map(|&d| d as i64))
                        .collect()
                }
            };
            let rank = dims.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
            let start = clamp(self.attr_i(node, "start")?.unwrap_or(0));
            let end = clamp(self.attr_i(node, "end")?.unwrap_or(rank));
            let v = dims.get(start..end.max(start)).unwrap_or(&[]).to_vec();
            return Ok(Some(Const {
                dims: vec![v.len()],
                f32: vec![],
                i64: v,
            }));
        }
        let foldable = matches!(
            op,
            "Gather"
                | "Unsqueeze"
                | "Squeeze"
                | "Concat"
                | "Cast"
                | "Identity"
                | "Mul"
                | "Add"
                | "Sub"
                | "Div"
                | "Slice"
                | "ConstantOfShape"
                | "Reshape"
        );
        let ins: Vec<&str> = node.input.iter().map(String::as_str).collect();
        if !foldable
            || ins.is_empty()
            || !ins
                .iter()
                .all(|n| n.is_empty() || matches!(self.values.get(*n), Some(Value::Const(_))))
        {
            return Ok(None);
        }
        let get = |i: usize| self.input_const(node, i);
        let fail = |m: &str| Err(self.node_fail(node, format!("on constants: {m}")));
        let ints_only = |c: &Const| c.f32.is_empty();
        let batch_free = |c: &Const| !c.i64.contains(&BATCH);
        let out = match op {
            "Identity" => get(0)?.clone(),
            "Cast" => {
                let c = get(0)?;
                let to = self.attr_i(node, "to")?.unwrap_or(0) as i32;
                match to {
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
                            // Truncation toward zero, as ONNX casts; out-of-range values are
                            // undefined in ONNX and refused here.
                            let mut v = Vec::with_capacity(c.f32.len());
                            for &f in &c.f32 {
                                if !(f.is_finite() && f.abs() < 9.2e18) {
                                    return fail(&format!("cast of {f} to an integer"));
                                }
                                v.push(f.trunc() as i64);
                            }
                            v
                        },
                    },
                    _ => return fail(&format!("cast to {}", dtype_name(to))),
                }
            }
            "Unsqueeze" | "Squeeze" | "Reshape" => {
                let c = get(0)?;
                let n = c.f32.len().max(c.i64.len());
                let dims: Vec<usize> = if op == "Reshape" {
                    let t = &get(1)?.i64;
                    if t.iter().any(|&d| d < -1 || d == BATCH)
                        || t.iter().filter(|&&d| d == -1).count() > 1
                    {
                        return fail(&format!("shape {t:?}"));
                    }
                    let mut d: Vec<usize> = Vec::with_capacity(t.len());
                    for (k, &v) in t.iter().enumerate() {
                        d.push(match v {
                            0 => *c
                                .dims
                                .get(k)
                                .ok_or_else(|| self.node_fail(node, "0 entry beyond the rank"))?,
                            -1 => 1,
                            v => v as usize,
                        });
                    }
                    if let Some(k) = t.iter().position(|&v| v == -1) {
                        let known: usize = d.iter().product();
                        if known == 0 || n % known != 0 {
                            return fail(&format!("shape {t:?} for {n} values"));
                        }
                        d[k] = n / known;
                    }
                    d
                } else {
                    let axes = match ins.get(1).filter(|n| !n.is_empty()) {
                        Some(_) => get(1)?.i64.clone(),
                        None => return Ok(None),
                    };
                    let rank = c.dims.len() as i64
                        + if op == "Squeeze" {
                            0
                        } else {
                            axes.len() as i64
                        };
                    let mut axes: Vec<i64> = axes
                        .iter()
                        .map(|&a| if a < 0 { a + rank } else { a })
                        .collect();
                    axes.sort_unstable();
                    if axes.iter().any(|&a| a < 0 || a >= rank)
                        || axes.windows(2).any(|w| w[0] == w[1])
                    {
                        return fail(&format!("axes {axes:?}"));
                    }
                    if op == "Squeeze" {
                        let mut d = Vec::new();
                        for (k, &v) in c.dims.iter().enumerate() {
                            if axes.contains(&(k as i64)) {
                                if v != 1 {
                                    return fail(&format!("squeeze of axis {k} of length {v}"));
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
                    }
                };
                if dims.iter().product::<usize>() != n {
                    return fail(&format!("shape {dims:?} for {n} values"));
                }
                Const {
                    dims,
                    f32: c.f32.clone(),
                    i64: c.i64.clone(),
                }
            }
            "Gather" => {
                let (data, idx) = (get(0)?, get(1)?);
                let axis = self.attr_i(node, "axis")?.unwrap_or(0);
                if data.dims.len() != 1 || !(axis == 0 || axis == -1) || !ints_only(idx) {
                    return Ok(None);
                }
                let n = data.dims[0] as i64;
                let mut f = Vec::new();
                let mut i = Vec::new();
                for &k in &idx.i64 {
                    let k = if k < 0 { k + n } else { k };
                    if !(0..n).contains(&k) {
                        return fail(&format!("index {k} of {n} values"));
                    }
                    if ints_only(data) {
                        i.push(data.i64[k as usize]);
                    } else {
                        f.push(data.f32[k as usize]);
                    }
                }
                Const {
                    dims: idx.dims.clone(),
                    f32: f,
                    i64: i,
                }
            }
            "Concat" => {
                let parts: Vec<&Const> = (0..ins.len()).map(get).collect::<Result<_>>()?;
                if parts.iter().any(|c| c.dims.len() != 1 || !ints_only(c)) {
                    return Ok(None);
                }
                let v: Vec<i64> = parts.iter().flat_map(|c| c.i64.iter().copied()).collect();
                Const {
                    dims: vec![v.len()],
                    f32: vec![],
                    i64: v,
                }
            }
            "Slice" => {
                let data = get(0)?;
                let scalar = |i: usize, default: i64| -> Result<i64> {
                    match ins.get(i).filter(|n| !n.is_empty()) {
                        None => Ok(default),
                        Some(_) => match get(i)?.i64.as_slice() {
                            [v] => Ok(*v),
                            _ => Err(self.node_fail(node, "only 1-D slices of constants fold")),
                        },
                    }
                };
                if data.dims.len() != 1 || !ints_only(data) {
                    return Ok(None);
                }
                let n = data.dims[0] as i64;
                let (start, end, step) = (scalar(1, 0)?, scalar(2, n)?, scalar(4, 1)?);
                if scalar(3, 0)? != 0 || step != 1 {
                    return fail("only axis 0 with step 1");
                }
                let clamp = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n) as usize;
                let v = data.i64[clamp(start)..clamp(end).max(clamp(start))].to_vec();
                Const {
                    dims: vec![v.len()],
                    f32: vec![],
                    i64: v,
                }
            }
            "ConstantOfShape" => {
                let shape = &get(0)?.i64;
                if shape.iter().any(|&d| d < 0 || d == BATCH) {
                    return fail("the shape holds the batch size or a negative entry");
                }
                let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
                self.opts
                    .check_elems(&dims)
                    .map_err(|m| self.node_fail(node, m))?;
                let n = checked_elems(&dims).map_err(|m| self.node_fail(node, m))?;
                let value = match Self::attr(node, "value").and_then(|a| a.t.as_ref()) {
                    Some(t) => self.constant(t, &format!("node {:?}", node.name))?,
                    None => Const {
                        dims: vec![1],
                        f32: vec![0.0],
                        i64: vec![],
                    },
                };
                Const {
                    dims,
                    f32: value.f32.first().map_or(vec![], |&v| vec![v; n]),
                    i64: value.i64.first().map_or(vec![], |&v| vec![v; n]),
                }
            }
            _ => {
                // Integer arithmetic on shapes (scalar or same-length operands).
                let (a, b) = (get(0)?, get(1)?);
                if !ints_only(a) || !ints_only(b) {
                    return Ok(None);
                }
                if !batch_free(a) || !batch_free(b) {
                    return fail("arithmetic on the batch size, which is not known until a run");
                }
                let (long, short) = if a.i64.len() >= b.i64.len() {
                    (a, b)
                } else {
                    (b, a)
                };
                if short.i64.len() != 1 && short.i64.len() != long.i64.len() {
                    return fail("operands of different lengths");
                }
                let pick = |v: &Const, k: usize| v.i64[if v.i64.len() == 1 { 0 } else { k }];
                let mut v = Vec::with_capacity(long.i64.len());
                for k in 0..long.i64.len() {
                    let (x, y) = (pick(a, k), pick(b, k));
                    let r = match op {
                        "Mul" => x.checked_mul(y),
                        "Add" => x.checked_add(y),
                        "Sub" => x.checked_sub(y),
                        _ => (y != 0).then(|| x.div_euclid(y)),
                    };
                    v.push(r.ok_or_else(|| {
                        self.node_fail(node, "integer overflow or division by zero")
                    })?);
                }
                Const {
                    dims: long.dims.clone(),
                    f32: vec![],
                    i64: v,
                }
            }
        };
        Ok(Some(out))
    }
}

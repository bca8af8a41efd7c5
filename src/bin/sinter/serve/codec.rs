//! The wire formats of `sinter serve`: requests decoded into the model's input arrays, and
//! outputs encoded as answers. KServe v2 (the Open Inference Protocol: JSON tensors with
//! `shape` and `datatype`, or their raw little-endian bytes after a JSON header, the
//! `binary_tensor_data` extension) and TensorFlow Serving's REST predict (`instances` or
//! `inputs`). Nothing here knows HTTP: a fault is the message of a 400.

use serde_json::{Value, json};
use sinter::io::npy::Array;
use sinter::plan::TensorInfo;
use sinter::{DType, Plan};

/// The message of a 400 if `bytes` is not JSON.
pub(super) fn parse_json(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("malformed JSON: {e}"))
}

/// The header of KServe's binary tensor extension: the body's first `n` bytes are the JSON
/// request, the rest the tensors' raw bytes.
pub(super) const HEADER_LENGTH: &str = "inference-header-content-length";

fn kserve_type(d: DType) -> &'static str {
    match d {
        DType::F32 => "FP32",
        DType::I32 => "INT32",
        DType::I64 => "INT64",
    }
}

/// A model's KServe v2 metadata: its inputs and outputs with `-1` for the batch axis.
pub(super) fn metadata(name: &str, plan: &Plan) -> Value {
    let tensors = |ts: &[TensorInfo]| -> Vec<Value> {
        ts.iter()
            .map(|t| {
                let mut shape = vec![-1i64];
                shape.extend(t.shape.iter().map(|&d| d as i64));
                json!({"name": t.name, "datatype": kserve_type(t.dtype), "shape": shape})
            })
            .collect()
    };
    json!({
        "name": name,
        "versions": ["1"],
        "platform": "sinter",
        "inputs": tensors(plan.inputs()),
        "outputs": tensors(plan.outputs()),
    })
}

/// A tensor's values before they meet the model's type: floats, or integers.
enum Flat {
    F32(Vec<f32>),
    Int(Vec<i64>),
}

impl Flat {
    fn len(&self) -> usize {
        match self {
            Flat::F32(v) => v.len(),
            Flat::Int(v) => v.len(),
        }
    }
}

/// A JSON array (nested to any depth) flattened into `out`; `Err` names the first value that
/// is not a number of the type.
fn flatten(v: &Value, out: &mut Flat, depth: usize) -> Result<(), String> {
    if depth > 32 {
        return Err("data nested deeper than 32 levels".into());
    }
    match (v, out) {
        (Value::Array(items), out) => {
            for i in items {
                flatten(i, out, depth + 1)?;
            }
            Ok(())
        }
        (Value::Number(n), Flat::F32(out)) => {
            out.push(n.as_f64().ok_or_else(|| format!("{n} is not a number"))? as f32);
            Ok(())
        }
        (Value::Number(n), Flat::Int(out)) => {
            out.push(n.as_i64().ok_or_else(|| format!("{n} is not an integer"))?);
            Ok(())
        }
        (other, _) => Err(format!("{other} is not a number")),
    }
}

/// A tensor's data: JSON, or its raw little-endian bytes (KServe's binary tensor extension).
#[derive(Clone, Copy)]
enum Data<'a> {
    Json(&'a Value),
    Binary(&'a [u8]),
}

/// Raw little-endian bytes as `N`-byte elements.
fn elements<const N: usize>(
    bytes: &[u8],
    datatype: &str,
) -> Result<impl Iterator<Item = [u8; N]>, String> {
    if !bytes.len().is_multiple_of(N) {
        return Err(format!(
            "{} bytes of binary data: not a whole number of {datatype} values",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(N)
        .map(|c| <[u8; N]>::try_from(c).unwrap_or([0; N])))
}

/// One input's values from a KServe/TF tensor: `(rows, array)`.
fn tensor_values(
    info: &TensorInfo,
    datatype: Option<&str>,
    shape: Option<&[Value]>,
    data: Data<'_>,
) -> Result<(usize, Array), String> {
    let int = match (datatype, info.dtype) {
        (Some("FP32") | None, DType::F32) => false,
        (Some("INT32" | "INT64") | None, DType::I32 | DType::I64) => true,
        (Some("FP32"), _) => false, // whole-number floats as ids, as Keras casts them
        (Some(t), d) => {
            return Err(format!("datatype {t} for an input of {}", kserve_type(d)));
        }
    };
    let flat = match data {
        Data::Json(v) => {
            let mut flat = if int {
                Flat::Int(Vec::new())
            } else {
                Flat::F32(Vec::new())
            };
            flatten(v, &mut flat, 0)?;
            flat
        }
        Data::Binary(b) => match datatype {
            Some("FP32") => Flat::F32(elements::<4>(b, "FP32")?.map(f32::from_le_bytes).collect()),
            Some("INT32") => Flat::Int(
                elements::<4>(b, "INT32")?
                    .map(|e| i64::from(i32::from_le_bytes(e)))
                    .collect(),
            ),
            Some("INT64") => {
                Flat::Int(elements::<8>(b, "INT64")?.map(i64::from_le_bytes).collect())
            }
            _ => return Err("binary data needs a \"datatype\"".into()),
        },
    };
    if flat.len() == 0 || flat.len() % info.len != 0 {
        return Err(format!(
            "{} values: not a whole number of samples of {} ({:?} per sample)",
            flat.len(),
            info.len,
            info.shape
        ));
    }
    let rows = flat.len() / info.len;
    if let Some(shape) = shape {
        let dims: Option<Vec<usize>> = shape
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect();
        let mut want = vec![rows];
        want.extend(&info.shape);
        if dims.as_deref() != Some(&want[..]) {
            return Err(format!(
                "shape {shape:?}, the data and the model give {want:?}"
            ));
        }
    }
    let array = match (flat, info.dtype) {
        (Flat::F32(v), _) => Array::F32(v),
        (Flat::Int(v), DType::I32) => Array::I32(
            v.iter()
                .map(|&v| i32::try_from(v).map_err(|_| format!("{v} is not an int32")))
                .collect::<Result<_, _>>()?,
        ),
        (Flat::Int(v), _) => Array::I64(v),
    };
    Ok((rows, array))
}

/// Appends one input's values, checking its rows against the first input's; the message of
/// a 400 otherwise.
fn add_input(
    arrays: &mut Vec<Array>,
    rows: &mut Option<usize>,
    info: &TensorInfo,
    values: Result<(usize, Array), String>,
) -> Result<(), String> {
    let bad = |m: String| format!("input {:?}: {m}", info.name);
    let (r, a) = values.map_err(bad)?;
    let first = *rows.get_or_insert(r);
    if first != r {
        return Err(bad(format!("{r} rows, the first input has {first}")));
    }
    arrays.push(a);
    Ok(())
}

/// One output tensor: its JSON entry, with the data inline, or with `binary_data_size` and
/// the raw little-endian bytes appended to `binary`.
fn output_json(
    info: &TensorInfo,
    rows: usize,
    values: &[f32],
    binary: Option<&mut Vec<u8>>,
) -> Value {
    let mut shape = vec![rows];
    shape.extend(&info.shape);
    let mut t = json!({"name": info.name, "datatype": kserve_type(info.dtype), "shape": shape});
    match binary {
        Some(out) => {
            let start = out.len();
            match info.dtype {
                DType::F32 => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
                DType::I32 => values
                    .iter()
                    .for_each(|&v| out.extend((v as i32).to_le_bytes())),
                DType::I64 => values
                    .iter()
                    .for_each(|&v| out.extend((v as i64).to_le_bytes())),
            }
            t["parameters"] = json!({"binary_data_size": out.len() - start});
        }
        None => {
            t["data"] = match info.dtype {
                DType::F32 => json!(values),
                _ => json!(values.iter().map(|&v| v as i64).collect::<Vec<_>>()),
            };
        }
    }
    t
}

/// `parameters.<key>` of a request or tensor, when it is a boolean.
fn flag(v: &Value, key: &str) -> Option<bool> {
    v.get("parameters")?.get(key)?.as_bool()
}

/// Splits the binary section among the inputs that declare `binary_data_size`, in the order
/// the request lists them.
fn binary_inputs<'a>(
    inputs: &[Value],
    mut binary: &'a [u8],
) -> Result<Vec<Option<&'a [u8]>>, String> {
    let mut parts = Vec::with_capacity(inputs.len());
    for t in inputs {
        let size = t.get("parameters").and_then(|p| p.get("binary_data_size"));
        let Some(size) = size else {
            parts.push(None);
            continue;
        };
        let name = t.get("name").and_then(Value::as_str).unwrap_or("?");
        let size = size
            .as_u64()
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| format!("input {name:?}: binary_data_size {size} is not a size"))?;
        if size > binary.len() {
            return Err(format!(
                "input {name:?}: binary_data_size {size}, but {} bytes of binary data are left",
                binary.len()
            ));
        }
        let (part, rest) = binary.split_at(size);
        parts.push(Some(part));
        binary = rest;
    }
    if !binary.is_empty() {
        return Err(format!(
            "{} bytes of binary data that no input declares",
            binary.len()
        ));
    }
    Ok(parts)
}

/// A KServe v2 infer request, decoded: the model's inputs, and how to answer.
pub(super) struct KserveRequest {
    /// One array per model input, in the model's order.
    pub(super) arrays: Vec<Array>,
    /// Samples in each array.
    rows: usize,
    /// The outputs to answer with (index into the plan's outputs), each binary or inline.
    wanted: Vec<(usize, bool)>,
    /// The request's `id`, echoed.
    id: Option<Value>,
}

/// An encoded answer: JSON, or a JSON header followed by raw tensor bytes.
pub(super) enum Encoded {
    /// An `application/json` body.
    Json(Value),
    /// An `application/octet-stream` body whose first `header_len` bytes are JSON.
    Binary { bytes: Vec<u8>, header_len: usize },
}

/// Decodes a KServe v2 infer body. `header`: the `Inference-Header-Content-Length` header, if
/// sent (`Some(None)` when it is not a number).
pub(super) fn kserve_request(
    plan: &Plan,
    body: &[u8],
    header: Option<Option<usize>>,
) -> Result<KserveRequest, String> {
    let (json_part, binary) = match header {
        None => (body, &[][..]),
        Some(Some(n)) if n <= body.len() => body.split_at(n),
        Some(_) => {
            return Err(format!(
                "{HEADER_LENGTH} must be a number of bytes up to the body's {}",
                body.len()
            ));
        }
    };
    let body = parse_json(json_part)?;
    let Some(inputs) = body.get("inputs").and_then(Value::as_array) else {
        return Err("the body needs an \"inputs\" array".into());
    };
    let parts = binary_inputs(inputs, binary)?;
    let mut arrays = Vec::with_capacity(plan.inputs().len());
    let mut rows = None;
    for info in plan.inputs() {
        let k = inputs
            .iter()
            .position(|t| t.get("name").and_then(Value::as_str) == Some(&info.name))
            .or_else(|| (plan.inputs().len() == 1 && inputs.len() == 1).then_some(0));
        let Some(k) = k else {
            return Err(format!("input {:?} is missing", info.name));
        };
        let t = &inputs[k];
        let datatype = t.get("datatype").and_then(Value::as_str);
        let shape = t.get("shape").and_then(Value::as_array).map(Vec::as_slice);
        let data = match parts[k] {
            Some(b) => Data::Binary(b),
            None => Data::Json(t.get("data").unwrap_or(&Value::Null)),
        };
        let values = tensor_values(info, datatype, shape, data);
        add_input(&mut arrays, &mut rows, info, values)?;
    }
    // Which outputs, each inline or binary: a listed output's own `binary_data`, else the
    // request's `binary_data_output`.
    let all_binary = flag(&body, "binary_data_output").unwrap_or(false);
    let mut wanted = Vec::new();
    match body.get("outputs").and_then(Value::as_array) {
        Some(listed) => {
            for t in listed {
                let name = t.get("name").and_then(Value::as_str).unwrap_or("");
                let Some(k) = plan.outputs().iter().position(|o| o.name == name) else {
                    return Err(format!("the model has no output named {name:?}"));
                };
                wanted.push((k, flag(t, "binary_data").unwrap_or(all_binary)));
            }
        }
        None => wanted.extend((0..plan.outputs().len()).map(|k| (k, all_binary))),
    }
    Ok(KserveRequest {
        arrays,
        rows: rows.unwrap_or(0),
        wanted,
        id: body.get("id").filter(|id| !id.is_null()).cloned(),
    })
}

/// Encodes the outputs `outs` of a [`kserve_request`] (its arrays taken by the run).
pub(super) fn kserve_response(
    plan: &Plan,
    model: &str,
    req: &KserveRequest,
    outs: &[Vec<f32>],
) -> Encoded {
    let mut binary = Vec::new();
    let outputs: Vec<Value> = req
        .wanted
        .iter()
        .map(|&(k, bin)| {
            output_json(
                &plan.outputs()[k],
                req.rows,
                &outs[k],
                bin.then_some(&mut binary),
            )
        })
        .collect();
    let mut r = json!({"model_name": model, "model_version": "1", "outputs": outputs});
    if let Some(id) = &req.id {
        r["id"] = id.clone();
    }
    if binary.is_empty() && !req.wanted.iter().any(|w| w.1) {
        return Encoded::Json(r);
    }
    let mut bytes = r.to_string().into_bytes();
    let header_len = bytes.len();
    bytes.extend(binary);
    Encoded::Binary { bytes, header_len }
}

/// Decodes TensorFlow Serving's REST predict body: `{"instances": [...]}` (one entry per
/// sample; an object per sample for several inputs) or `{"inputs": ...}` (columnar). The
/// model's input arrays and their samples.
pub(super) fn tf_request(plan: &Plan, mut body: Value) -> Result<(Vec<Array>, usize), String> {
    let infos = plan.inputs();
    let mut arrays = Vec::with_capacity(infos.len());
    let mut rows = None;
    // Each input's values, taken out of the body (not copied).
    let by_name = |o: &mut serde_json::Map<String, Value>, name: &str| {
        o.get_mut(name).map_or(Value::Null, Value::take)
    };
    let columns: Vec<Value> =
        if let Some(inst) = body.get_mut("instances").and_then(Value::as_array_mut) {
            if infos.len() == 1 && !inst.first().is_some_and(Value::is_object) {
                vec![Value::Array(std::mem::take(inst))]
            } else {
                // One object per sample, keyed by input name.
                infos
                    .iter()
                    .map(|info| {
                        Value::Array(
                            inst.iter_mut()
                                .map(|i| match i {
                                    Value::Object(o) => by_name(o, &info.name),
                                    _ => Value::Null,
                                })
                                .collect(),
                        )
                    })
                    .collect()
            }
        } else if let Some(inputs) = body.get_mut("inputs") {
            match inputs {
                Value::Object(o) => infos.iter().map(|i| by_name(o, &i.name)).collect(),
                v if infos.len() == 1 => vec![v.take()],
                _ => return Err("\"inputs\" must be an object keyed by input name".into()),
            }
        } else {
            return Err("the body needs \"instances\" or \"inputs\"".into());
        };
    for (info, col) in infos.iter().zip(&columns) {
        let values = tensor_values(info, None, None, Data::Json(col));
        add_input(&mut arrays, &mut rows, info, values)?;
    }
    Ok((arrays, rows.unwrap_or(0)))
}

/// Encodes a predict's outputs: `{"predictions": [...]}`, one entry per sample (an object
/// keyed by output name when the model has several).
pub(super) fn tf_response(plan: &Plan, rows: usize, outs: &[Vec<f32>]) -> Value {
    let outputs = plan.outputs();
    let sample = |k: usize, r: usize| -> Value {
        let info = &outputs[k];
        let v = &outs[k][r * info.len..(r + 1) * info.len];
        match info.dtype {
            DType::F32 => json!(v),
            _ => json!(v.iter().map(|&x| x as i64).collect::<Vec<_>>()),
        }
    };
    let predictions: Vec<Value> = (0..rows)
        .map(|r| {
            if outputs.len() == 1 {
                sample(0, r)
            } else {
                let m: serde_json::Map<String, Value> = (0..outputs.len())
                    .map(|k| (outputs[k].name.clone(), sample(k, r)))
                    .collect();
                Value::Object(m)
            }
        })
        .collect();
    json!({ "predictions": predictions })
}

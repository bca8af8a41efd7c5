//! The wire formats of `sinter serve`: requests decoded into the model's input arrays, and
//! outputs encoded as answers. KServe v2 (the Open Inference Protocol: JSON tensors with
//! `shape` and `datatype`, or their raw little-endian bytes after a JSON header, the
//! `binary_tensor_data` extension) and TensorFlow Serving's REST predict (`instances` or
//! `inputs`). Nothing here knows HTTP: a fault is the client's (a 400) or the budget's (a
//! 503). Requests are decoded without a JSON tree (`decode.rs`) and answers are written
//! straight into their bytes.

use super::budget::Held;
use super::decode::{self, Flat, InputTensor, Room, Values};
use serde_json::{Value, json};
use sinter::io::npy::Array;
use sinter::plan::TensorInfo;
use sinter::{DType, Plan};
use std::io::Write as _;

/// Why a request cannot be answered.
pub(super) enum Fault {
    /// The request is wrong: the message of a 400.
    Bad(String),
    /// Decoding it would take the server past its memory budget: a 503.
    Busy(String),
}

impl From<String> for Fault {
    fn from(m: String) -> Self {
        Fault::Bad(m)
    }
}

/// The header of KServe's binary tensor extension: the body's first `n` bytes are the JSON
/// request, the rest the tensors' raw bytes.
pub(super) const HEADER_LENGTH: &str = "inference-header-content-length";

pub(super) fn kserve_type(d: DType) -> &'static str {
    match d {
        DType::F32 => "FP32",
        DType::I32 => "INT32",
        DType::I64 => "INT64",
        DType::Bool => "BOOL",
    }
}

/// A tensor's shape as KServe v2 metadata gives it: `-1` for the batch axis and a variable
/// sequence.
pub(super) fn metadata_shape(t: &TensorInfo) -> Vec<i64> {
    let mut shape = vec![-1i64];
    shape.extend(t.shape.iter().map(|&d| d as i64));
    if t.seq {
        shape[1] = -1;
    }
    shape
}

/// A model's KServe v2 metadata: its inputs and outputs with `-1` for the batch axis (and a
/// variable sequence).
pub(super) fn metadata(name: &str, plan: &Plan) -> Value {
    let tensors = |ts: &[TensorInfo]| -> Vec<Value> {
        ts.iter()
            .map(|t| {
                let shape = metadata_shape(t);
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

/// The sequence length a declared `shape` (`[rows, sample..]`) gives the input `info`:
/// `None` without a variable sequence, whose sample must then be the model's exactly; or
/// why the shape does not fit.
pub(super) fn sample_fits(info: &TensorInfo, shape: &[u64]) -> Result<Option<usize>, String> {
    let fits = shape.len() == info.shape.len() + 1
        && shape[1..]
            .iter()
            .zip(&info.shape)
            .enumerate()
            .all(|(i, (&d, &m))| d == m as u64 || (i == 0 && info.seq && d >= 1 && d <= m as u64));
    if !fits {
        let mut dims: Vec<String> = info.shape.iter().map(usize::to_string).collect();
        if info.seq {
            dims[0] = format!("1..={}", info.shape[0]);
        }
        return Err(format!(
            "shape {shape:?}: the model takes [rows, {}]",
            dims.join(", ")
        ));
    }
    Ok(info.seq.then(|| shape[1] as usize))
}

/// The samples and the sequence length of a request's inputs, as they are added.
#[derive(Default)]
pub(super) struct Rows {
    pub(super) rows: Option<usize>,
    pub(super) seq: Option<usize>,
}

impl Rows {
    /// The run's sequence length: the inputs' (the plan's longest when they give none or
    /// the plan has no variable sequence).
    pub(super) fn seq(&self, plan: &Plan) -> usize {
        self.seq
            .or_else(|| plan.seq_range().map(|r| *r.end()))
            .unwrap_or(1)
    }
}

/// Appends one input's values, checking its count against the model and the declared
/// shape, and its rows and sequence length against the other inputs'.
pub(super) fn add_input(
    arrays: &mut Vec<Array>,
    rows: &mut Rows,
    info: &TensorInfo,
    shape: Option<&[u64]>,
    flat: Flat,
) -> Result<(), String> {
    let bad = |m: String| format!("input {:?}: {m}", info.name);
    let seq = match shape {
        Some(s) => sample_fits(info, s).map_err(bad)?,
        None => None,
    };
    if let Some(s) = seq
        && *rows.seq.get_or_insert(s) != s
    {
        return Err(bad(format!(
            "a sequence of {s}, another input has {}",
            rows.seq.unwrap_or(0)
        )));
    }
    let len = info.len_at(seq.unwrap_or(info.shape.first().copied().unwrap_or(1)));
    if flat.len() == 0 || !flat.len().is_multiple_of(len.max(1)) {
        return Err(bad(format!(
            "{} values: not a whole number of samples of {len} ({:?} per sample)",
            flat.len(),
            info.shape
        )));
    }
    let r = flat.len() / len.max(1);
    if let Some(shape) = shape
        && shape.first().is_none_or(|&d| d != r as u64)
    {
        return Err(bad(format!(
            "shape {shape:?}, but the data holds {r} samples of {len} values"
        )));
    }
    let first = *rows.rows.get_or_insert(r);
    if first != r {
        return Err(bad(format!("{r} rows, the first input has {first}")));
    }
    arrays.push(flat.into_array(info.dtype).map_err(bad)?);
    Ok(())
}

/// Raw little-endian bytes as values of `datatype`, charged to the budget.
pub(super) fn binary_values(
    bytes: &[u8],
    datatype: Option<&str>,
    held: &mut Held,
) -> Result<Flat, Fault> {
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
    let decoded = match datatype {
        Some("FP32") => bytes.len(),
        Some("INT32") => bytes.len() * 2,
        Some("INT64") => bytes.len(),
        Some("BOOL") => bytes.len() * 8,
        _ => return Err(Fault::Bad("binary data needs a \"datatype\"".into())),
    };
    held.grow(decoded).map_err(|e| Fault::Busy(e.to_string()))?;
    Ok(match datatype {
        Some("FP32") => Flat::F32(
            elements::<4>(bytes, "FP32")?
                .map(f32::from_le_bytes)
                .collect(),
        ),
        Some("INT32") => Flat::Int(
            elements::<4>(bytes, "INT32")?
                .map(|e| i64::from(i32::from_le_bytes(e)))
                .collect(),
        ),
        Some("BOOL") => Flat::Int(bytes.iter().map(|&b| i64::from(b != 0)).collect()),
        _ => Flat::Int(
            elements::<8>(bytes, "INT64")?
                .map(i64::from_le_bytes)
                .collect(),
        ),
    })
}

/// A KServe v2 infer request, decoded: the model's inputs, and how to answer.
pub(super) struct KserveRequest {
    /// One array per model input, in the model's order.
    pub(super) arrays: Vec<Array>,
    /// Samples in each array.
    rows: usize,
    /// The sequence length of the inputs that have one.
    pub(super) seq: usize,
    /// The outputs to answer with (index into the plan's outputs), each binary or inline.
    wanted: Vec<(usize, bool)>,
    /// The request's `id`, as its JSON text, echoed.
    id: Option<String>,
}

/// An encoded answer: JSON, or a JSON header followed by raw tensor bytes.
pub(super) enum Encoded {
    /// An `application/json` body.
    Json(Vec<u8>),
    /// An `application/octet-stream` body whose first `header_len` bytes are JSON.
    Binary { bytes: Vec<u8>, header_len: usize },
}

impl Encoded {
    /// The body's bytes.
    pub(super) fn len(&self) -> usize {
        match self {
            Encoded::Json(b) | Encoded::Binary { bytes: b, .. } => b.len(),
        }
    }
}

/// Decodes a KServe v2 infer body, charging what it decodes to `held`. `header`: the
/// `Inference-Header-Content-Length` header, if sent (`Some(None)` when it is not a number).
pub(super) fn kserve_request(
    plan: &Plan,
    body: &[u8],
    header: Option<Option<usize>>,
    held: &mut Held,
) -> Result<KserveRequest, Fault> {
    let (json_part, mut binary) = match header {
        None => (body, &[][..]),
        Some(Some(n)) if n <= body.len() => body.split_at(n),
        Some(_) => {
            return Err(Fault::Bad(format!(
                "{HEADER_LENGTH} must be a number of bytes up to the body's {}",
                body.len()
            )));
        }
    };
    let mut room = Room::new(held, json_part.len());
    let decoded = decode::kserve(plan, json_part, &mut room);
    let mut req = match decoded {
        Ok(r) => r,
        Err(m) if room.over_budget => return Err(Fault::Busy(m)),
        Err(m) => return Err(Fault::Bad(m)),
    };
    if req.inputs.is_empty() {
        return Err(Fault::Bad("the body needs an \"inputs\" array".into()));
    }
    // The binary section, split among the tensors that declare a size, in request order.
    let mut parts = Vec::with_capacity(req.inputs.len());
    for t in &req.inputs {
        let Values::Binary(size) = t.values else {
            parts.push(None);
            continue;
        };
        if size > binary.len() {
            return Err(Fault::Bad(format!(
                "input {:?}: binary_data_size {size}, but {} bytes of binary data are left",
                t.name.as_deref().unwrap_or("?"),
                binary.len()
            )));
        }
        let (part, rest) = binary.split_at(size);
        parts.push(Some(part));
        binary = rest;
    }
    if !binary.is_empty() {
        return Err(Fault::Bad(format!(
            "{} bytes of binary data that no input declares",
            binary.len()
        )));
    }
    let mut arrays = Vec::with_capacity(plan.inputs().len());
    let mut rows = Rows::default();
    for info in plan.inputs() {
        let names = req.inputs.iter().map(|t| t.name.as_deref());
        let k = tensor_for(plan, info, names)?;
        let flat = tensor_values(plan, info, &mut req.inputs[k], parts[k], held)?;
        let shape = req.inputs[k].shape.as_deref();
        add_input(&mut arrays, &mut rows, info, shape, flat)?;
    }
    // Which outputs, each inline or binary: a listed output's own `binary_data`, else the
    // request's `binary_data_output`.
    let all_binary = req.binary_data_output.unwrap_or(false);
    let mut wanted = Vec::new();
    match &req.outputs {
        Some(listed) => {
            for o in listed {
                let Some(k) = plan.outputs().iter().position(|i| i.name == o.name) else {
                    return Err(Fault::Bad(format!(
                        "the model has no output named {:?}",
                        o.name
                    )));
                };
                wanted.push((k, o.binary.unwrap_or(all_binary)));
            }
        }
        None => wanted.extend((0..plan.outputs().len()).map(|k| (k, all_binary))),
    }
    Ok(KserveRequest {
        arrays,
        seq: rows.seq(plan),
        rows: rows.rows.unwrap_or(0),
        wanted,
        id: req
            .id
            .map(|r| r.get().to_string())
            .filter(|id| id != "null"),
    })
}

/// The request tensor (of those named `names`, in order) that feeds the model input `info`:
/// the one of its name, else the only one when the model has one input; the message of a 400
/// otherwise.
pub(super) fn tensor_for<'n>(
    plan: &Plan,
    info: &TensorInfo,
    mut names: impl ExactSizeIterator<Item = Option<&'n str>>,
) -> Result<usize, String> {
    let count = names.len();
    names
        .position(|n| n == Some(&info.name))
        .or_else(|| (plan.inputs().len() == 1 && count == 1).then_some(0))
        .ok_or_else(|| format!("input {:?} is missing", info.name))
}

/// One tensor's values for the model input `info`, decoding what was kept for later.
fn tensor_values(
    plan: &Plan,
    info: &TensorInfo,
    t: &mut InputTensor<'_>,
    binary: Option<&[u8]>,
    held: &mut Held,
) -> Result<Flat, Fault> {
    let bad = |m: String| Fault::Bad(format!("input {:?}: {m}", info.name));
    let want = match decode::header(plan, t) {
        Ok(h) => h.and_then(|(_, want)| want),
        Err(m) => return Err(bad(m)),
    };
    let flat = match std::mem::replace(&mut t.values, Values::Missing) {
        Values::Decoded(flat) => flat,
        Values::Later(raw) => {
            let mut room = Room::new(held, raw.get().len());
            match decode::later(raw, info, t.datatype.as_deref(), want, &mut room) {
                Ok(flat) => flat,
                Err(m) if room.over_budget => return Err(Fault::Busy(m)),
                Err(m) => return Err(bad(m)),
            }
        }
        Values::Binary(_) => {
            match binary_values(binary.unwrap_or(&[]), t.datatype.as_deref(), held) {
                Ok(flat) => flat,
                Err(Fault::Bad(m)) => return Err(bad(m)),
                Err(busy) => return Err(busy),
            }
        }
        Values::Missing => return Err(bad("no \"data\" and no binary_data_size".into())),
    };
    Ok(flat)
}

/// Writes `v` as JSON (a string, a number, an `f32` slice) into `out`; writing into a vector
/// cannot fail.
fn json_into<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    let _ = serde_json::to_writer(out, v);
}

/// `values` (the plan's `f32` outputs) as a JSON array of the output's type.
fn values_json(out: &mut Vec<u8>, dtype: DType, values: &[f32]) {
    match dtype {
        DType::F32 => json_into(out, values),
        DType::Bool => {
            out.push(b'[');
            for (i, &v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(if v != 0.0 { b"true" } else { b"false" });
            }
            out.push(b']');
        }
        DType::I32 | DType::I64 => {
            out.push(b'[');
            for (i, &v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = write!(out, "{}", v as i64);
            }
            out.push(b']');
        }
    }
}

/// `values` as the output's raw little-endian bytes.
pub(super) fn values_binary(out: &mut Vec<u8>, dtype: DType, values: &[f32]) {
    match dtype {
        DType::F32 => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
        DType::I32 => values
            .iter()
            .for_each(|&v| out.extend((v as i32).to_le_bytes())),
        DType::I64 => values
            .iter()
            .for_each(|&v| out.extend((v as i64).to_le_bytes())),
        DType::Bool => values.iter().for_each(|&v| out.push(u8::from(v != 0.0))),
    }
}

/// Bytes per value of an output's raw data.
pub(super) fn binary_width(dtype: DType) -> usize {
    match dtype {
        DType::F32 | DType::I32 => 4,
        DType::I64 => 8,
        DType::Bool => 1,
    }
}

/// Encodes the outputs `outs` of a [`kserve_request`] (its arrays taken by the run).
pub(super) fn kserve_response(
    plan: &Plan,
    model: &str,
    req: &KserveRequest,
    outs: &[Vec<f32>],
) -> Encoded {
    let mut json = Vec::with_capacity(256);
    let mut binary = Vec::new();
    json.extend(b"{\"model_name\":");
    json_into(&mut json, model);
    json.extend(b",\"model_version\":\"1\"");
    if let Some(id) = &req.id {
        json.extend(b",\"id\":");
        json.extend(id.as_bytes());
    }
    json.extend(b",\"outputs\":[");
    for (i, &(k, bin)) in req.wanted.iter().enumerate() {
        let info = &plan.outputs()[k];
        if i > 0 {
            json.push(b',');
        }
        json.extend(b"{\"name\":");
        json_into(&mut json, &info.name);
        let _ = write!(
            json,
            ",\"datatype\":\"{}\",\"shape\":[{}",
            kserve_type(info.dtype),
            req.rows
        );
        for (i, d) in info.shape.iter().enumerate() {
            let d = if i == 0 && info.seq { req.seq } else { *d };
            let _ = write!(json, ",{d}");
        }
        json.push(b']');
        if bin {
            let size = outs[k].len() * binary_width(info.dtype);
            let _ = write!(json, ",\"parameters\":{{\"binary_data_size\":{size}}}");
            binary.reserve(size);
            values_binary(&mut binary, info.dtype, &outs[k]);
        } else {
            json.extend(b",\"data\":");
            values_json(&mut json, info.dtype, &outs[k]);
        }
        json.push(b'}');
    }
    json.extend(b"]}");
    if !req.wanted.iter().any(|w| w.1) {
        return Encoded::Json(json);
    }
    let header_len = json.len();
    json.extend(binary);
    Encoded::Binary {
        bytes: json,
        header_len,
    }
}

/// Decodes TensorFlow Serving's REST predict body (see [`decode::tf`]), charging what it
/// decodes to `held`: the model's input arrays and their samples.
pub(super) fn tf_request(
    plan: &Plan,
    body: &[u8],
    held: &mut Held,
) -> Result<(Vec<Array>, usize), Fault> {
    let mut room = Room::new(held, body.len());
    let cols = match decode::tf(plan, body, &mut room) {
        Ok(c) => c,
        Err(m) if room.over_budget => return Err(Fault::Busy(m)),
        Err(m) => return Err(Fault::Bad(m)),
    };
    let mut arrays = Vec::with_capacity(cols.len());
    // Without shapes, samples are read at the plan's longest sequence.
    let mut rows = Rows::default();
    for (info, col) in plan.inputs().iter().zip(cols) {
        add_input(&mut arrays, &mut rows, info, None, col)?;
    }
    Ok((arrays, rows.rows.unwrap_or(0)))
}

/// Encodes a predict's outputs: `{"predictions": [...]}`, one entry per sample (an object
/// keyed by output name when the model has several).
pub(super) fn tf_response(plan: &Plan, rows: usize, outs: &[Vec<f32>]) -> Vec<u8> {
    let outputs = plan.outputs();
    let mut out = Vec::with_capacity(64 + outs.iter().map(|o| o.len() * 12).sum::<usize>());
    out.extend(b"{\"predictions\":[");
    for r in 0..rows {
        if r > 0 {
            out.push(b',');
        }
        let sample = |out: &mut Vec<u8>, k: usize| {
            let info = &outputs[k];
            values_json(out, info.dtype, &outs[k][r * info.len..(r + 1) * info.len]);
        };
        if outputs.len() == 1 {
            sample(&mut out, 0);
        } else {
            out.push(b'{');
            for (k, o) in outputs.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                json_into(&mut out, &o.name);
                out.push(b':');
                sample(&mut out, k);
            }
            out.push(b'}');
        }
    }
    out.extend(b"]}");
    out
}

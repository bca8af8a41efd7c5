//! gRPC on `--grpc-port`: KServe v2's `inference.GRPCInferenceService` (ServerLive,
//! ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer), what
//! `tritonclient.grpc` calls. HTTP/2 without TLS (prior knowledge, as gRPC's insecure channels
//! connect), unary calls only, one length-prefixed protobuf message each way, the status in
//! the trailers. Requests share the REST endpoint's batchers, memory budget and CPU pool, so
//! an answer is bit-identical to the request run alone whichever protocol carried it.
//!
//! Tensors come as `raw_input_contents` (little-endian bytes, what `tritonclient` sends) or
//! as typed `contents`; outputs are answered in `raw_output_contents`.

mod proto;

use super::body::{self, Answer, ReadFault};
use super::budget::Held;
use super::codec::{self, Fault};
use super::decode::Flat;
use super::{Reply, Served, State, on_cpu};
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Request, Response};
use prost::bytes::Bytes;
use proto::*;
use sinter::Error;
use sinter::io::npy::Array;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Calls in flight on one connection, and when the last one ended.
pub(super) struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

/// One call in flight; its end is the connection's latest activity.
pub(super) struct CallGuard<'a>(&'a Activity);

impl Activity {
    pub(super) fn new() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }

    /// A call starts.
    pub(super) fn begin(&self) -> CallGuard<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        CallGuard(self)
    }

    /// Returns once no call has been in flight for `idle`.
    pub(super) async fn idle_for(&self, idle: Duration) {
        loop {
            let since = self.last.lock().map_or(Duration::ZERO, |l| l.elapsed());
            if self.in_flight.load(Ordering::Relaxed) == 0 && since >= idle {
                return;
            }
            tokio::time::sleep(idle.saturating_sub(since).max(idle / 4)).await;
        }
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut l) = self.0.last.lock() {
            *l = Instant::now();
        }
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The service's path prefix.
const SERVICE: &str = "/inference.GRPCInferenceService/";

/// gRPC status codes this server answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Code {
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
}

/// A call's failure: its status code and message.
pub(super) struct Status {
    code: Code,
    message: String,
}

impl Status {
    fn new(code: Code, message: impl std::fmt::Display) -> Self {
        Status {
            code,
            message: message.to_string(),
        }
    }
}

impl From<Fault> for Status {
    fn from(f: Fault) -> Self {
        match f {
            Fault::Bad(m) => Status::new(Code::InvalidArgument, m),
            Fault::Busy(m) => Status::new(Code::Unavailable, m),
        }
    }
}

/// A message as gRPC frames it: a compression flag (0), its length (big-endian u32), itself.
fn frame(msg: &impl prost::Message) -> Vec<u8> {
    let len = msg.encoded_len();
    let mut out = Vec::with_capacity(5 + len);
    out.push(0);
    out.extend((len as u32).to_be_bytes());
    // Encoding into a vector with room for the whole message cannot fail.
    let _ = msg.encode(&mut out);
    out
}

/// The one message of a request body.
fn unframe(body: &Bytes) -> Result<Bytes, Status> {
    let bad = |m: &str| Status::new(Code::InvalidArgument, m);
    if body.len() < 5 {
        return Err(bad(
            "the body is not a gRPC message (shorter than its 5-byte prefix)",
        ));
    }
    if body[0] != 0 {
        return Err(Status::new(
            Code::Unimplemented,
            "compressed messages are not supported (send grpc-encoding identity)",
        ));
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if body.len() - 5 != len {
        return Err(bad(&format!(
            "the message prefix says {len} bytes, the body has {} (one message per call)",
            body.len() - 5
        )));
    }
    Ok(body.slice(5..))
}

fn decode<M: prost::Message + Default>(msg: Bytes) -> Result<M, Status> {
    M::decode(msg)
        .map_err(|e| Status::new(Code::InvalidArgument, format!("malformed message: {e}")))
}

/// `grpc-message`'s percent-encoding: bytes outside printable ASCII, and `%`.
fn percent_encoded(m: &str) -> String {
    let mut out = String::with_capacity(m.len());
    for b in m.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The response of a call: the message and `grpc-status: 0`, or no message and the failure.
fn respond(result: Result<(Vec<u8>, Option<Held>), Status>) -> Reply {
    let mut trailers = HeaderMap::new();
    let (data, held) = match result {
        Ok((data, held)) => {
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            (data, held)
        }
        Err(s) => {
            trailers.insert("grpc-status", HeaderValue::from(s.code as u32));
            if let Ok(v) = HeaderValue::from_str(&percent_encoded(&s.message)) {
                trailers.insert("grpc-message", v);
            }
            (Vec::new(), None)
        }
    };
    let answer = match held {
        Some(h) => Answer::held(data, h),
        None => Answer::new(data),
    };
    let mut r = Response::new(answer.with_trailers(trailers));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    r
}

/// One gRPC call.
pub(super) async fn handle(state: &State, req: Request<hyper::body::Incoming>) -> Reply {
    respond(call(state, req).await)
}

async fn call(
    state: &State,
    req: Request<hyper::body::Incoming>,
) -> Result<(Vec<u8>, Option<Held>), Status> {
    let path = req.uri().path().to_string();
    let Some(method) = path.strip_prefix(SERVICE) else {
        return Err(Status::new(
            Code::Unimplemented,
            format!("no service at {path}"),
        ));
    };
    let grpc = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/grpc"));
    if req.method() != hyper::Method::POST || !grpc {
        return Err(Status::new(
            Code::InvalidArgument,
            "a gRPC call is a POST of application/grpc",
        ));
    }
    let mut held = state.budget.hold();
    let max = state.max_body.saturating_add(5);
    let body = body::read(
        req.into_body(),
        None,
        max,
        state.body_timeout,
        &mut held,
        |_| None,
    )
    .await
    .map_err(|f| match f {
        ReadFault::TooLarge(max) => Status::new(
            Code::ResourceExhausted,
            format!("the message is over {max} bytes (--max-body-bytes)"),
        ),
        ReadFault::Timeout(t) => Status::new(
            Code::DeadlineExceeded,
            format!("the message did not arrive within {} ms", t.as_millis()),
        ),
        ReadFault::Broken(e) => Status::new(Code::InvalidArgument, e),
        ReadFault::Busy(e) => Status::new(Code::Unavailable, e),
        ReadFault::Refused(m) => Status::new(Code::InvalidArgument, m),
    })?;
    let msg = unframe(&Bytes::from(body))?;
    let reply = match method {
        "ServerLive" => frame(&ServerLiveResponse { live: true }),
        "ServerReady" => frame(&ServerReadyResponse { ready: true }),
        "ServerMetadata" => frame(&ServerMetadataResponse {
            name: "sinter".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: Vec::new(),
        }),
        "ModelReady" => {
            let r: ModelRef = decode(msg)?;
            let ready = state.models.contains_key(&r.name) && served_version(&r.version);
            frame(&ModelReadyResponse { ready })
        }
        "ModelMetadata" => {
            let r: ModelRef = decode(msg)?;
            let s = state.models.get(&r.name).ok_or_else(|| {
                Status::new(Code::NotFound, format!("no model named {:?}", r.name))
            })?;
            frame(&metadata(s))
        }
        "ModelInfer" => return infer(state, msg, held).await.map(|(m, h)| (m, Some(h))),
        other => {
            return Err(Status::new(
                Code::Unimplemented,
                format!("GRPCInferenceService/{other} is not served"),
            ));
        }
    };
    Ok((reply, None))
}

/// Every model is served as version 1 (or no version named).
fn served_version(v: &str) -> bool {
    matches!(v, "" | "1")
}

fn metadata(s: &Served) -> ModelMetadataResponse {
    let tensors = |ts: &[sinter::plan::TensorInfo]| {
        ts.iter()
            .map(|t| TensorMetadata {
                name: t.name.clone(),
                datatype: codec::kserve_type(t.dtype).into(),
                shape: codec::metadata_shape(t),
            })
            .collect()
    };
    let plan = s.batcher.plan();
    ModelMetadataResponse {
        name: s.name.clone(),
        versions: vec!["1".into()],
        platform: "sinter".into(),
        inputs: tensors(plan.inputs()),
        outputs: tensors(plan.outputs()),
    }
}

/// A decoded `ModelInfer`: the model's arrays and how to answer.
struct Call {
    arrays: Vec<Array>,
    rows: usize,
    /// The inputs' sequence length.
    seq: usize,
    /// Indices into the plan's outputs.
    wanted: Vec<usize>,
    model: String,
    id: String,
}

async fn infer(state: &State, msg: Bytes, mut held: Held) -> Result<(Vec<u8>, Held), Status> {
    let len = msg.len();
    // The decoded message (typed contents are copies) counts as much as the message.
    held.grow(len)
        .map_err(|e| Status::new(Code::Unavailable, e))?;
    let models = &state.models;
    // A large message's typed contents are a copy loop: off the connection threads too.
    let req: ModelInferRequest = on_cpu(state, len, move || decode(msg))
        .await
        .ok_or_else(|| Status::new(Code::Internal, "internal error"))??;
    let s = models.get(&req.model_name).ok_or_else(|| {
        Status::new(
            Code::NotFound,
            format!("no model named {:?}", req.model_name),
        )
    })?;
    if !served_version(&req.model_version) {
        return Err(Status::new(
            Code::NotFound,
            format!("model {:?} has version 1 only", req.model_name),
        ));
    }
    let plan = s.batcher.plan().clone();
    let name = s.name.clone();
    let decoded = on_cpu(state, len, move || {
        let start = Instant::now();
        let r = arrays(&plan, req, name, &mut held);
        (r, held, start.elapsed())
    })
    .await;
    let (call, mut held, took) =
        decoded.ok_or_else(|| Status::new(Code::Internal, "internal error"))?;
    state.metrics.decode.observe(took);
    let mut call = call?;
    // The message is decoded into arrays: its bytes go back.
    held.shrink_to(held.bytes().saturating_sub(2 * len));
    let outs = s
        .batcher
        .run_seq_async(call.seq, std::mem::take(&mut call.arrays))
        .await
        .map_err(|e| match e {
            Error::Overloaded(m) => Status::new(Code::Unavailable, m),
            e => Status::new(Code::InvalidArgument, e),
        })?;
    let estimate = outs.iter().map(|o| o.len() * 8).sum::<usize>() + 256;
    held.grow(estimate)
        .map_err(|e| Status::new(Code::Unavailable, e))?;
    let plan = s.batcher.plan().clone();
    let bytes = on_cpu(state, estimate, move || answer(&plan, &call, &outs))
        .await
        .ok_or_else(|| Status::new(Code::Internal, "internal error"))?;
    held.shrink_to(bytes.len());
    Ok((bytes, held))
}

/// The model's input arrays from a request, checked as the REST endpoint checks them.
fn arrays(
    plan: &sinter::Plan,
    mut req: ModelInferRequest,
    model: String,
    held: &mut Held,
) -> Result<Call, Status> {
    let raw = std::mem::take(&mut req.raw_input_contents);
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(Status::new(
            Code::InvalidArgument,
            format!(
                "{} raw_input_contents for {} inputs",
                raw.len(),
                req.inputs.len()
            ),
        ));
    }
    let mut arrays = Vec::with_capacity(plan.inputs().len());
    let mut rows = codec::Rows::default();
    for info in plan.inputs() {
        let names = req.inputs.iter().map(|t| Some(t.name.as_str()));
        let k = codec::tensor_for(plan, info, names)
            .map_err(|m| Status::new(Code::InvalidArgument, m))?;
        let t = &mut req.inputs[k];
        let bad =
            |m: String| Status::new(Code::InvalidArgument, format!("input {:?}: {m}", info.name));
        let shape: Vec<u64> = t
            .shape
            .iter()
            .map(|&d| u64::try_from(d).map_err(|_| bad(format!("shape {:?}", t.shape))))
            .collect::<Result<_, _>>()?;
        let datatype = Some(t.datatype.as_str()).filter(|d| !d.is_empty());
        Flat::for_input(info, datatype).map_err(bad)?;
        codec::sample_fits(info, &shape).map_err(bad)?;
        let flat = match raw.get(k) {
            Some(bytes) => codec::binary_values(bytes, datatype, held).map_err(|f| match f {
                Fault::Bad(m) => bad(m),
                busy => Status::from(busy),
            })?,
            None => contents(t.contents.take().unwrap_or_default(), datatype).map_err(bad)?,
        };
        codec::add_input(&mut arrays, &mut rows, info, Some(&shape), flat)
            .map_err(|m| Status::new(Code::InvalidArgument, m))?;
    }
    let wanted = if req.outputs.is_empty() {
        (0..plan.outputs().len()).collect()
    } else {
        req.outputs
            .iter()
            .map(|o| {
                plan.outputs()
                    .iter()
                    .position(|i| i.name == o.name)
                    .ok_or_else(|| {
                        Status::new(
                            Code::InvalidArgument,
                            format!("the model has no output named {:?}", o.name),
                        )
                    })
            })
            .collect::<Result<_, _>>()?
    };
    Ok(Call {
        arrays,
        seq: rows.seq(plan),
        rows: rows.rows.unwrap_or(0),
        wanted,
        model,
        id: req.id,
    })
}

/// Typed `contents` as the values of `datatype`.
fn contents(c: InferTensorContents, datatype: Option<&str>) -> Result<Flat, String> {
    match datatype {
        Some("FP32") => Ok(Flat::F32(c.fp32_contents)),
        Some("INT32") => Ok(Flat::Int(
            c.int_contents.into_iter().map(i64::from).collect(),
        )),
        Some("INT64") => Ok(Flat::Int(c.int64_contents)),
        Some("BOOL") => Ok(Flat::Int(
            c.bool_contents.into_iter().map(i64::from).collect(),
        )),
        _ => Err("contents need a \"datatype\" of FP32, INT32, INT64 or BOOL".into()),
    }
}

/// The framed `ModelInferResponse`: outputs in `raw_output_contents`.
fn answer(plan: &sinter::Plan, call: &Call, outs: &[Vec<f32>]) -> Vec<u8> {
    let mut r = ModelInferResponse {
        model_name: call.model.clone(),
        model_version: "1".into(),
        id: call.id.clone(),
        ..Default::default()
    };
    for &k in &call.wanted {
        let info = &plan.outputs()[k];
        let mut raw = Vec::with_capacity(outs[k].len() * codec::binary_width(info.dtype));
        codec::values_binary(&mut raw, info.dtype, &outs[k]);
        r.outputs.push(InferOutputTensor {
            name: info.name.clone(),
            datatype: codec::kserve_type(info.dtype).into(),
            shape: std::iter::once(call.rows as i64)
                .chain(
                    info.shape
                        .iter()
                        .enumerate()
                        .map(|(i, &d)| (if i == 0 && info.seq { call.seq } else { d }) as i64),
                )
                .collect(),
            ..Default::default()
        });
        r.raw_output_contents.push(raw);
    }
    frame(&r)
}

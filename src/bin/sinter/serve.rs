//! `sinter serve`: models over HTTP/1.1, speaking the Open Inference Protocol (KServe v2 REST,
//! what `tritonclient[http]` sends) and TensorFlow Serving's REST predict. Every model has a
//! [`Batcher`]: concurrent requests share plan runs, and each answer is bit-identical to
//! running that request alone.
//!
//! Limits (each a flag of `sinter serve`): request bodies up to `--max-body-bytes` (64 MiB),
//! `--max-connections` ([`MAX_CONNECTIONS`]) connections at once (more wait in the kernel's
//! accept queue), a request's headers within `--header-timeout-ms` ([`HEADER_TIMEOUT`]; also
//! how long a keep-alive connection may sit idle) and its body within `--body-timeout-ms`
//! ([`BODY_TIMEOUT`], else 408), `--queue-rows` rows waiting per model (64 x `--max-batch`;
//! beyond, 503 with `Retry-After`). Bad requests get a 4xx with `{"error": "..."}`; the server
//! keeps serving. SIGTERM or Ctrl-C closes the listening socket (new connections are refused)
//! and lets in-flight requests finish.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use sinter::io::npy::Array;
use sinter::{Batcher, BatcherOptions, CompileOptions, DType, Error, Result};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Connections served at once (`--max-connections`).
pub(crate) const MAX_CONNECTIONS: usize = 1024;
/// Time a client has to send a request's headers (`--header-timeout-ms`).
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request's body (`--body-timeout-ms`).
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Rows that may wait in a model's queue, per row of `--max-batch` (`--queue-rows`).
const QUEUE_ROWS_PER_BATCH_ROW: usize = 64;
/// Seconds a client refused with 503 (a full queue) is asked to wait before retrying.
const RETRY_AFTER_SECS: u32 = 1;

/// Latency histogram bucket bounds, seconds.
const LATENCY: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

struct Served {
    name: String,
    batcher: Batcher,
}

#[derive(Default)]
struct Metrics {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; LATENCY.len() + 1],
    latency_sum_us: AtomicU64,
}

struct State {
    models: BTreeMap<String, Served>,
    metrics: Metrics,
    max_body: usize,
    body_timeout: Duration,
}

/// A model argument: `NAME=MODEL`, or MODEL named by its file stem (`builtin:x` is `x`).
fn name_of(spec: &str) -> (String, String) {
    if let Some((name, model)) = spec.split_once('=')
        && !name.is_empty()
        && !name.contains('/')
    {
        return (name.to_string(), model.to_string());
    }
    let stem = spec.strip_prefix("builtin:").unwrap_or_else(|| {
        std::path::Path::new(spec)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(spec)
    });
    let stem = stem.strip_suffix(".weights").unwrap_or(stem);
    (stem.to_string(), spec.to_string())
}

/// How every model is served.
pub(crate) struct Limits {
    /// Rows per batched run.
    pub(crate) max_batch: usize,
    /// Microseconds the oldest request waits for others.
    pub(crate) max_delay_us: u64,
    /// Largest request body, bytes.
    pub(crate) max_body: usize,
    /// Threads per batched run.
    pub(crate) threads: usize,
    /// Rows that may wait in each model's queue (`None`: 64 x `max_batch`).
    pub(crate) queue_rows: Option<usize>,
    /// Connections served at once.
    pub(crate) max_connections: usize,
    /// Time a client has to send a request's headers.
    pub(crate) header_timeout: Duration,
    /// Time a client has to send a request's body.
    pub(crate) body_timeout: Duration,
}

impl Limits {
    /// `Ok` when every limit is in range, else the error naming the flag that is not.
    fn check(&self) -> Result<()> {
        let at_least_one = |flag: &str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(Error::Options(format!("{flag} must be at least 1")))
            }
        };
        at_least_one("--max-batch", self.max_batch > 0)?;
        at_least_one("--queue-rows", self.queue_rows != Some(0))?;
        at_least_one("--header-timeout-ms", !self.header_timeout.is_zero())?;
        at_least_one("--body-timeout-ms", !self.body_timeout.is_zero())?;
        at_least_one("--max-connections", self.max_connections > 0)?;
        let most = tokio::sync::Semaphore::MAX_PERMITS;
        if self.max_connections > most {
            return Err(Error::Options(format!(
                "--max-connections must be at most {most}"
            )));
        }
        Ok(())
    }
}

/// Loads the models and serves them until SIGTERM / Ctrl-C.
pub(crate) fn run(specs: &[String], host: &str, port: u16, limits: Limits) -> Result<()> {
    limits.check()?;
    let Limits {
        max_batch,
        max_delay_us,
        max_body,
        threads,
        queue_rows,
        max_connections,
        header_timeout,
        body_timeout,
    } = limits;
    let queue_rows =
        queue_rows.unwrap_or_else(|| max_batch.saturating_mul(QUEUE_ROWS_PER_BATCH_ROW));
    let mut models = BTreeMap::new();
    for spec in specs {
        let (name, model_spec) = name_of(spec);
        let model = crate::load_model(&model_spec)?;
        let opts = CompileOptions::new().max_batch(max_batch).threads(threads);
        let plan = Arc::new(model.compile(&opts)?);
        let opts = BatcherOptions::new()
            .max_batch(max_batch)
            .max_delay(Duration::from_micros(max_delay_us))
            .queue_rows(queue_rows);
        let batcher = Batcher::new(plan, opts)?;
        if models.contains_key(&name) {
            return Err(Error::Options(format!("two models are named {name:?}")));
        }
        models.insert(name.clone(), Served { name, batcher });
    }
    let state = Arc::new(State {
        models,
        metrics: Metrics::default(),
        max_body,
        body_timeout,
    });
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|e| Error::Options(format!("address {host}:{port}: {e}")))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Options(format!("cannot start the server runtime: {e}")))?;
    rt.block_on(serve(state, addr, max_connections, header_timeout))
}

/// A line on stdout; a closed stdout (`sinter serve | head -1`) is not an error of the server.
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line).and_then(|()| out.write_all(b"\n"));
    let _ = out.flush();
}

async fn serve(
    state: Arc<State>,
    addr: SocketAddr,
    max_connections: usize,
    header_timeout: Duration,
) -> Result<()> {
    let io_err = |e: std::io::Error| Error::Options(format!("{addr}: {e}"));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(io_err)?;
    let local = listener.local_addr().map_err(io_err)?;
    let names: Vec<&str> = state.models.keys().map(String::as_str).collect();
    // The line scripts and tests wait for (it carries the port when 0 was asked for).
    say(format_args!(
        "sinter serve: listening on http://{local} (models: {})",
        names.join(", ")
    ));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // A slot is taken before each accept: past `max_connections`, new connections wait in the
    // kernel's accept queue until a served one closes.
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(_) => continue, // e.g. too many open files: try again
            },
            () = &mut shutdown => break,
        };
        let state = state.clone();
        let service = hyper::service::service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    // Closing the listening socket refuses new connections (and those still in its accept
    // queue) at once, instead of leaving them waiting until the process exits.
    drop(listener);
    say(format_args!(
        "sinter serve: shutting down, finishing in-flight requests"
    ));
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => {}
    }
    Ok(())
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: &Value) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Reply {
    reply(status, &json!({ "error": msg.to_string() }))
}

async fn handle(state: &State, req: Request<Incoming>) -> Reply {
    let start = Instant::now();
    let m = &state.metrics;
    m.requests.fetch_add(1, Ordering::Relaxed);
    let r = route(state, req).await;
    if !r.status().is_success() {
        m.errors.fetch_add(1, Ordering::Relaxed);
    }
    let secs = start.elapsed().as_secs_f64();
    let bucket = LATENCY
        .iter()
        .position(|&b| secs <= b)
        .unwrap_or(LATENCY.len());
    m.latency[bucket].fetch_add(1, Ordering::Relaxed);
    m.latency_sum_us
        .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    r
}

async fn route(state: &State, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    let model = |name: &str| state.models.get(name);
    match (&method, parts.as_slice()) {
        (&Method::GET, ["v2", "health", "live" | "ready"]) => reply(StatusCode::OK, &json!({})),
        (&Method::GET, ["v2"]) => reply(
            StatusCode::OK,
            &json!({"name": "sinter", "version": env!("CARGO_PKG_VERSION"), "extensions": ["binary_tensor_data"]}),
        ),
        (&Method::GET, ["metrics"]) => {
            let mut r = Response::new(Full::new(Bytes::from(metrics_text(state))));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (&Method::GET, ["v2", "models", name] | ["v2", "models", name, "versions", "1"]) => {
            match model(name) {
                Some(s) => reply(StatusCode::OK, &metadata(s)),
                None => not_found(name),
            }
        }
        (
            &Method::GET,
            ["v2", "models", name, "ready"] | ["v2", "models", name, "versions", "1", "ready"],
        ) => match model(name) {
            Some(_) => reply(StatusCode::OK, &json!({"name": name, "ready": true})),
            None => not_found(name),
        },
        (
            &Method::POST,
            ["v2", "models", name, "infer"] | ["v2", "models", name, "versions", "1", "infer"],
        ) => match model(name) {
            Some(s) => {
                let header = req
                    .headers()
                    .get(HEADER_LENGTH)
                    .map(|v| v.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()));
                match body_bytes(req, state).await {
                    Ok(body) => kserve_infer(s, &body, header).await,
                    Err(r) => r,
                }
            }
            None => not_found(name),
        },
        (&Method::POST, ["v1", "models", name_predict]) => {
            match name_predict.strip_suffix(":predict").and_then(model) {
                Some(s) => match body_json(req, state).await {
                    Ok(body) => tf_predict(s, body).await,
                    Err(r) => r,
                },
                None => not_found(name_predict.trim_end_matches(":predict")),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no route for {method} {path}"),
        ),
    }
}

fn not_found(name: &str) -> Reply {
    error(StatusCode::NOT_FOUND, format!("no model named {name:?}"))
}

/// `d` as whole seconds when it is, else milliseconds.
fn duration_text(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// The request body, at most `--max-body-bytes`, within `--body-timeout-ms`.
async fn body_bytes(req: Request<Incoming>, state: &State) -> std::result::Result<Bytes, Reply> {
    let max = state.max_body;
    let body = Limited::new(req.into_body(), max);
    let collected = match tokio::time::timeout(state.body_timeout, body.collect()).await {
        Ok(c) => c,
        Err(_) => {
            return Err(error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {}",
                    duration_text(state.body_timeout)
                ),
            ));
        }
    };
    match collected {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => {
            let too_big = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            Err(if too_big {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is over {max} bytes"),
                )
            } else {
                error(StatusCode::BAD_REQUEST, format!("reading the body: {e}"))
            })
        }
    }
}

/// The message of a 400 if `bytes` is not JSON.
fn parse_json(bytes: &[u8]) -> std::result::Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("malformed JSON: {e}"))
}

/// The request body as JSON (see [`body_bytes`]).
async fn body_json(req: Request<Incoming>, state: &State) -> std::result::Result<Value, Reply> {
    parse_json(&body_bytes(req, state).await?).map_err(|m| error(StatusCode::BAD_REQUEST, m))
}

/// The header of KServe's binary tensor extension: the body's first `n` bytes are the JSON
/// request, the rest the tensors' raw bytes.
const HEADER_LENGTH: &str = "inference-header-content-length";

fn kserve_type(d: DType) -> &'static str {
    match d {
        DType::F32 => "FP32",
        DType::I32 => "INT32",
        DType::I64 => "INT64",
    }
}

fn metadata(s: &Served) -> Value {
    let plan = s.batcher.plan();
    let tensors = |ts: &[sinter::plan::TensorInfo]| -> Vec<Value> {
        ts.iter()
            .map(|t| {
                let mut shape = vec![-1i64];
                shape.extend(t.shape.iter().map(|&d| d as i64));
                json!({"name": t.name, "datatype": kserve_type(t.dtype), "shape": shape})
            })
            .collect()
    };
    json!({
        "name": s.name,
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
fn flatten(v: &Value, out: &mut Flat, depth: usize) -> std::result::Result<(), String> {
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
) -> std::result::Result<impl Iterator<Item = [u8; N]>, String> {
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
    info: &sinter::plan::TensorInfo,
    datatype: Option<&str>,
    shape: Option<&[Value]>,
    data: Data<'_>,
) -> std::result::Result<(usize, Array), String> {
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
                .collect::<std::result::Result<_, _>>()?,
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
    info: &sinter::plan::TensorInfo,
    values: std::result::Result<(usize, Array), String>,
) -> std::result::Result<(), String> {
    let bad = |m: String| format!("input {:?}: {m}", info.name);
    let (r, a) = values.map_err(bad)?;
    let first = *rows.get_or_insert(r);
    if first != r {
        return Err(bad(format!("{r} rows, the first input has {first}")));
    }
    arrays.push(a);
    Ok(())
}

/// The status for a run's error: the caller's fault (4xx) or the server's (503 when busy,
/// with `Retry-After`).
fn run_error(e: &Error) -> Reply {
    match e {
        Error::Overloaded(_) => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, e);
            r.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from(RETRY_AFTER_SECS),
            );
            r
        }
        _ => error(StatusCode::BAD_REQUEST, e),
    }
}

/// One output tensor: its JSON entry, with the data inline, or with `binary_data_size` and
/// the raw little-endian bytes appended to `binary`.
fn output_json(
    info: &sinter::plan::TensorInfo,
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
) -> std::result::Result<Vec<Option<&'a [u8]>>, String> {
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

/// A KServe v2 infer. `header`: the `Inference-Header-Content-Length` header, if sent
/// (`Some(None)` when it is not a number).
async fn kserve_infer(s: &Served, body: &[u8], header: Option<Option<usize>>) -> Reply {
    let bad = |m: String| error(StatusCode::BAD_REQUEST, m);
    let (json_part, binary) = match header {
        None => (body, &[][..]),
        Some(Some(n)) if n <= body.len() => body.split_at(n),
        Some(_) => {
            return bad(format!(
                "{HEADER_LENGTH} must be a number of bytes up to the body's {}",
                body.len()
            ));
        }
    };
    let body = match parse_json(json_part) {
        Ok(b) => b,
        Err(m) => return bad(m),
    };
    let plan = s.batcher.plan();
    let Some(inputs) = body.get("inputs").and_then(Value::as_array) else {
        return bad("the body needs an \"inputs\" array".into());
    };
    let parts = match binary_inputs(inputs, binary) {
        Ok(p) => p,
        Err(m) => return bad(m),
    };
    let mut arrays = Vec::with_capacity(plan.inputs().len());
    let mut rows = None;
    for info in plan.inputs() {
        let k = inputs
            .iter()
            .position(|t| t.get("name").and_then(Value::as_str) == Some(&info.name))
            .or_else(|| (plan.inputs().len() == 1 && inputs.len() == 1).then_some(0));
        let Some(k) = k else {
            return bad(format!("input {:?} is missing", info.name));
        };
        let t = &inputs[k];
        let datatype = t.get("datatype").and_then(Value::as_str);
        let shape = t.get("shape").and_then(Value::as_array).map(Vec::as_slice);
        let data = match parts[k] {
            Some(b) => Data::Binary(b),
            None => Data::Json(t.get("data").unwrap_or(&Value::Null)),
        };
        let values = tensor_values(info, datatype, shape, data);
        if let Err(m) = add_input(&mut arrays, &mut rows, info, values) {
            return bad(m);
        }
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
                    return bad(format!("the model has no output named {name:?}"));
                };
                wanted.push((k, flag(t, "binary_data").unwrap_or(all_binary)));
            }
        }
        None => wanted.extend((0..plan.outputs().len()).map(|k| (k, all_binary))),
    }
    let rows = rows.unwrap_or(0);
    let outs = match s.batcher.run_async(arrays).await {
        Ok(outs) => outs,
        Err(e) => return run_error(&e),
    };
    let mut binary = Vec::new();
    let outputs: Vec<Value> = wanted
        .iter()
        .map(|&(k, bin)| {
            output_json(
                &plan.outputs()[k],
                rows,
                &outs[k],
                bin.then_some(&mut binary),
            )
        })
        .collect();
    let mut r = json!({"model_name": s.name, "model_version": "1", "outputs": outputs});
    if let Some(id) = body.get("id").filter(|id| !id.is_null()) {
        r["id"] = id.clone();
    }
    if binary.is_empty() && !wanted.iter().any(|w| w.1) {
        return reply(StatusCode::OK, &r);
    }
    let mut out = r.to_string().into_bytes();
    let header_len = out.len();
    out.extend(binary);
    let mut resp = Response::new(Full::new(Bytes::from(out)));
    let headers = resp.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(HEADER_LENGTH, hyper::header::HeaderValue::from(header_len));
    resp
}

/// TensorFlow Serving's REST predict: `{"instances": [...]}` (one entry per sample; an object
/// per sample for several inputs) or `{"inputs": ...}` (columnar).
async fn tf_predict(s: &Served, mut body: Value) -> Reply {
    let plan = s.batcher.plan();
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
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "\"inputs\" must be an object keyed by input name",
                    );
                }
            }
        } else {
            return error(
                StatusCode::BAD_REQUEST,
                "the body needs \"instances\" or \"inputs\"",
            );
        };
    for (info, col) in infos.iter().zip(&columns) {
        if let Err(m) = add_input(
            &mut arrays,
            &mut rows,
            info,
            tensor_values(info, None, None, Data::Json(col)),
        ) {
            return error(StatusCode::BAD_REQUEST, m);
        }
    }
    let rows = rows.unwrap_or(0);
    match s.batcher.run_async(arrays).await {
        Ok(outs) => {
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
            reply(StatusCode::OK, &json!({ "predictions": predictions }))
        }
        Err(e) => run_error(&e),
    }
}

fn metrics_text(state: &State) -> String {
    use std::fmt::Write;
    let m = &state.metrics;
    let mut t = String::new();
    let _ = writeln!(t, "# TYPE sinter_requests_total counter");
    let _ = writeln!(
        t,
        "sinter_requests_total {}",
        m.requests.load(Ordering::Relaxed)
    );
    let _ = writeln!(t, "# TYPE sinter_request_errors_total counter");
    let _ = writeln!(
        t,
        "sinter_request_errors_total {}",
        m.errors.load(Ordering::Relaxed)
    );
    let _ = writeln!(t, "# TYPE sinter_request_duration_seconds histogram");
    let mut cum = 0;
    for (k, bound) in LATENCY.iter().enumerate() {
        cum += m.latency[k].load(Ordering::Relaxed);
        let _ = writeln!(
            t,
            "sinter_request_duration_seconds_bucket{{le=\"{bound}\"}} {cum}"
        );
    }
    cum += m.latency[LATENCY.len()].load(Ordering::Relaxed);
    let _ = writeln!(
        t,
        "sinter_request_duration_seconds_bucket{{le=\"+Inf\"}} {cum}"
    );
    let _ = writeln!(
        t,
        "sinter_request_duration_seconds_sum {}",
        m.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(t, "sinter_request_duration_seconds_count {cum}");
    let _ = writeln!(t, "# TYPE sinter_batch_size histogram");
    for s in state.models.values() {
        let st = s.batcher.stats();
        let mut cum = 0;
        for (k, bound) in sinter::plan::BATCH_BUCKETS.iter().enumerate() {
            cum += st.batch_sizes[k];
            let _ = writeln!(
                t,
                "sinter_batch_size_bucket{{model=\"{}\",le=\"{bound}\"}} {cum}",
                s.name
            );
        }
        cum += st.batch_sizes[sinter::plan::BATCH_BUCKETS.len()];
        let _ = writeln!(
            t,
            "sinter_batch_size_bucket{{model=\"{}\",le=\"+Inf\"}} {cum}",
            s.name
        );
        let _ = writeln!(
            t,
            "sinter_batch_size_sum{{model=\"{}\"}} {}",
            s.name, st.rows
        );
        let _ = writeln!(
            t,
            "sinter_batch_size_count{{model=\"{}\"}} {}",
            s.name, st.runs
        );
    }
    t
}

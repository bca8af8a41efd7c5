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
//!
//! Memory: every byte a request holds (its body, its decoded tensors, its answer until
//! written) is charged to one budget, `--max-inflight-bytes`; past it a request gets 503 with
//! `Retry-After` at once. Decoding and encoding run on a pool of one thread per core
//! ([`on_cpu`]), never on the threads that accept connections and answer `/v2/health/*`,
//! metadata and `/metrics`, so probes answer while large bodies are decoded. Worst case with
//! the defaults: the budget (a quarter of the machine's memory), plus the models and their
//! arenas, plus hyper's buffers for the connections (`--max-connections` x a few KiB).
//!
//! This file routes requests and holds connections; decoding a request into the model's input
//! arrays and encoding its outputs (KServe v2 JSON and binary tensors, TF Serving predict) is
//! `codec.rs` and `decode.rs`, the budget `budget.rs`, bodies in and out `body.rs`.

mod body;
mod budget;
mod codec;
mod decode;
mod grpc;

use body::{Answer, ReadFault};
use budget::{Budget, Held};
use codec::{Encoded, Fault, HEADER_LENGTH};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::{Value, json};
use sinter::{Batcher, BatcherOptions, CompileOptions, Error, Result};
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

/// The default `--max-inflight-bytes`: a quarter of the machine's memory.
pub(crate) fn default_inflight() -> usize {
    budget::default_limit()
}

/// Latency histogram bucket bounds, seconds.
const LATENCY: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

struct Served {
    name: String,
    batcher: Batcher,
}

/// A histogram of durations over [`LATENCY`]'s buckets.
#[derive(Default)]
struct Histogram {
    counts: [AtomicU64; LATENCY.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let bucket = LATENCY
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            d.as_micros().try_into().unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Prometheus text lines of the histogram `name`.
    fn write(&self, t: &mut String, name: &str) {
        use std::fmt::Write;
        let _ = writeln!(t, "# TYPE {name} histogram");
        let mut cum = 0;
        for (k, bound) in LATENCY.iter().enumerate() {
            cum += self.counts[k].load(Ordering::Relaxed);
            let _ = writeln!(t, "{name}_bucket{{le=\"{bound}\"}} {cum}");
        }
        cum += self.counts[LATENCY.len()].load(Ordering::Relaxed);
        let _ = writeln!(t, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(t, "{name}_sum {sum}");
        let _ = writeln!(t, "{name}_count {cum}");
    }
}

#[derive(Default)]
struct Metrics {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: Histogram,
    /// Time to decode a request body into the model's arrays.
    decode: Histogram,
}

struct State {
    models: BTreeMap<String, Served>,
    metrics: Metrics,
    max_body: usize,
    body_timeout: Duration,
    budget: Budget,
    /// Permits for CPU work off the connection threads: one per core.
    cpu: Arc<tokio::sync::Semaphore>,
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
    /// Bytes all requests in flight may hold at once.
    pub(crate) max_inflight: usize,
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
        at_least_one("--max-inflight-bytes", self.max_inflight > 0)?;
        let most = tokio::sync::Semaphore::MAX_PERMITS;
        if self.max_connections > most {
            return Err(Error::Options(format!(
                "--max-connections must be at most {most}"
            )));
        }
        Ok(())
    }
}

/// Loads the models and serves them until SIGTERM / Ctrl-C: REST on `ports.0`, gRPC on
/// `ports.1` if given.
pub(crate) fn run(
    specs: &[String],
    host: &str,
    ports: (u16, Option<u16>),
    limits: Limits,
) -> Result<()> {
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
        max_inflight,
    } = limits;
    let queue_rows =
        queue_rows.unwrap_or_else(|| max_batch.saturating_mul(QUEUE_ROWS_PER_BATCH_ROW));
    let mut models = BTreeMap::new();
    for spec in specs {
        let (name, model_spec) = name_of(spec);
        let model = crate::load_model(&model_spec)?;
        let opts = CompileOptions::new().max_batch(max_batch).threads(threads);
        let plan = Arc::new(model.into_plan(&opts)?);
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
        budget: Budget::new(max_inflight),
        cpu: Arc::new(tokio::sync::Semaphore::new(
            sinter::plan::default_threads().max(1),
        )),
    });
    let addr = |port: u16| -> Result<SocketAddr> {
        format!("{host}:{port}")
            .parse()
            .map_err(|e| Error::Options(format!("address {host}:{port}: {e}")))
    };
    let addrs = (addr(ports.0)?, ports.1.map(addr).transpose()?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Options(format!("cannot start the server runtime: {e}")))?;
    rt.block_on(serve(state, addrs, max_connections, header_timeout))
}

/// A line on stdout; a closed stdout (`sinter serve | head -1`) is not an error of the server.
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line).and_then(|()| out.write_all(b"\n"));
    let _ = out.flush();
}

/// A listening socket and the address it got (the port, when 0 was asked for).
async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let io_err = |e: std::io::Error| Error::Options(format!("{addr}: {e}"));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(io_err)?;
    let local = listener.local_addr().map_err(io_err)?;
    Ok((listener, local))
}

/// The next connection of `listener`, or never when there is none (no `--grpc-port`).
async fn accept(
    listener: Option<&tokio::net::TcpListener>,
) -> std::io::Result<tokio::net::TcpStream> {
    match listener {
        Some(l) => l.accept().await.map(|(s, _)| s),
        None => std::future::pending().await,
    }
}

async fn serve(
    state: Arc<State>,
    (addr, grpc_addr): (SocketAddr, Option<SocketAddr>),
    max_connections: usize,
    header_timeout: Duration,
) -> Result<()> {
    let (listener, local) = bind(addr).await?;
    let grpc = match grpc_addr {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let names: Vec<&str> = state.models.keys().map(String::as_str).collect();
    // The line scripts and tests wait for (it carries the port when 0 was asked for).
    say(format_args!(
        "sinter serve: listening on http://{local} (models: {})",
        names.join(", ")
    ));
    if let Some((_, local)) = &grpc {
        say(format_args!("sinter serve: gRPC on {local}"));
    }
    let grpc = grpc.map(|(l, _)| l);
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
        // e.g. too many open files: try again.
        let (stream, is_grpc) = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => (s, false),
                Err(_) => continue,
            },
            r = accept(grpc.as_ref()) => match r {
                Ok(s) => (s, true),
                Err(_) => continue,
            },
            () = &mut shutdown => break,
        };
        let state = state.clone();
        let io = TokioIo::new(stream);
        if is_grpc {
            // An HTTP/2 connection with no call in flight for `--header-timeout-ms` is closed,
            // as an idle HTTP/1.1 keep-alive connection is: idle clients cannot hold every
            // connection slot.
            let activity = Arc::new(grpc::Activity::new());
            let calls = activity.clone();
            let service = hyper::service::service_fn(move |req| {
                let (state, calls) = (state.clone(), calls.clone());
                async move {
                    let _call = calls.begin();
                    Ok::<_, std::convert::Infallible>(grpc::handle(&state, req).await)
                }
            });
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .serve_connection(io, service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                tokio::select! {
                    _ = conn => {}
                    () = activity.idle_for(header_timeout) => {}
                }
                drop(permit);
            });
        } else {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(io, service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = conn.await;
                drop(permit);
            });
        }
    }
    // Closing the listening sockets refuses new connections (and those still in their accept
    // queues) at once, instead of leaving them waiting until the process exits.
    drop(listener);
    drop(grpc);
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

type Reply = Response<Answer>;

fn reply(status: StatusCode, body: &Value) -> Reply {
    json_reply(status, Answer::new(body.to_string()))
}

fn json_reply(status: StatusCode, body: Answer) -> Reply {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// 503 with `Retry-After`: the server is busy (a full queue, the memory budget).
fn busy(msg: impl std::fmt::Display) -> Reply {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, msg);
    r.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from(RETRY_AFTER_SECS),
    );
    r
}

/// Bytes of a body or an answer below which decoding or encoding it runs where the request
/// is (tens of microseconds at most: a hand-off to the pool would cost more than it saves).
const INLINE_BYTES: usize = 64 << 10;

/// Runs `f` on the CPU pool when it handles `bytes` of at least [`INLINE_BYTES`]: one thread
/// per core, waited for without holding a connection thread (backpressure: requests past the
/// pool wait for a permit, and every one of them already holds its bytes in the budget).
/// `None` if `f` panicked.
async fn on_cpu<T: Send + 'static>(
    state: &State,
    bytes: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if bytes < INLINE_BYTES {
        return Some(f());
    }
    let _permit = state.cpu.acquire().await.ok()?;
    tokio::task::spawn_blocking(f).await.ok()
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
    m.latency.observe(start.elapsed());
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
            let mut r = Response::new(Answer::new(metrics_text(state)));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (&Method::GET, ["v2", "models", name] | ["v2", "models", name, "versions", "1"]) => {
            match model(name) {
                Some(s) => reply(StatusCode::OK, &codec::metadata(&s.name, s.batcher.plan())),
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
                let mut held = state.budget.hold();
                let plan = s.batcher.plan();
                let declared = content_length(&req);
                // A JSON body whose declared shape the model refuses is refused from its
                // first bytes (its binary-extension form is checked whole).
                let early = |prefix: &[u8]| {
                    let len = declared.filter(|_| header.is_none())?;
                    decode::kserve_prefix(plan, prefix, len, &mut state.budget.hold())
                };
                match body_bytes(req, state, &mut held, early).await {
                    Ok(body) => kserve_infer(state, s, body, header, held).await,
                    Err(r) => r,
                }
            }
            None => not_found(name),
        },
        (&Method::POST, ["v1", "models", name_predict]) => {
            match name_predict.strip_suffix(":predict").and_then(model) {
                Some(s) => {
                    let mut held = state.budget.hold();
                    match body_bytes(req, state, &mut held, |_| None).await {
                        Ok(body) => tf_predict(state, s, body, held).await,
                        Err(r) => r,
                    }
                }
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

/// The request body, at most `--max-body-bytes`, within `--body-timeout-ms`, charged to
/// `held`; `early` may refuse it from its first bytes (see [`body::read`]).
async fn body_bytes(
    req: Request<Incoming>,
    state: &State,
    held: &mut Held,
    early: impl FnMut(&[u8]) -> Option<String>,
) -> std::result::Result<Vec<u8>, Reply> {
    let declared = content_length(&req);
    let body = req.into_body();
    body::read(
        body,
        declared,
        state.max_body,
        state.body_timeout,
        held,
        early,
    )
    .await
    .map_err(|f| match f {
        ReadFault::TooLarge(max) => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {max} bytes"),
        ),
        ReadFault::Timeout(t) => error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {}", duration_text(t)),
        ),
        ReadFault::Broken(e) => error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
        ReadFault::Busy(e) => busy(e),
        ReadFault::Refused(m) => error(StatusCode::BAD_REQUEST, m),
    })
}

/// A request's `Content-Length`, when it sends one.
fn content_length(req: &Request<Incoming>) -> Option<usize> {
    req.headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok())
}

/// The answer to a decoding fault.
fn fault(f: Fault) -> Reply {
    match f {
        Fault::Bad(m) => error(StatusCode::BAD_REQUEST, m),
        Fault::Busy(m) => busy(m),
    }
}

/// 500: CPU work panicked (a bug; the server serves on).
fn internal() -> Reply {
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// The status for a run's error: the caller's fault (4xx) or the server's (503 when busy,
/// with `Retry-After`).
fn run_error(e: &Error) -> Reply {
    match e {
        Error::Overloaded(_) => busy(e),
        _ => error(StatusCode::BAD_REQUEST, e),
    }
}

/// What a request has once its model ran: the decoded request, the outputs, its share of the
/// budget (the body's bytes given back, the answer's estimated bytes taken), and that estimate.
struct Ran<R> {
    req: R,
    outs: Vec<Vec<f32>>,
    held: Held,
    estimate: usize,
}

/// Decodes `body` with `decode` (on the CPU pool when large; timed into the decode
/// histogram), gives the body's bytes back to the budget, runs the model on the arrays
/// `arrays` takes out of the request, and takes the answer's estimated bytes.
async fn decode_and_run<R: Send + 'static>(
    state: &State,
    s: &Served,
    body: Vec<u8>,
    mut held: Held,
    decode: impl FnOnce(&sinter::Plan, &[u8], &mut Held) -> std::result::Result<R, Fault>
    + Send
    + 'static,
    arrays: impl FnOnce(&mut R) -> (Vec<sinter::io::npy::Array>, usize),
) -> std::result::Result<Ran<R>, Reply> {
    let plan = s.batcher.plan().clone();
    let decoded = on_cpu(state, body.len(), move || {
        let start = Instant::now();
        let r = decode(&plan, &body, &mut held);
        held.shrink_to(held.bytes().saturating_sub(body.len()));
        (r, held, start.elapsed())
    })
    .await;
    let (decoded, mut held, took) = decoded.ok_or_else(internal)?;
    state.metrics.decode.observe(took);
    let mut req = decoded.map_err(fault)?;
    let (inputs, seq) = arrays(&mut req);
    let outs = s
        .batcher
        .run_seq_async(seq, inputs)
        .await
        .map_err(|e| run_error(&e))?;
    // The answer's bytes: the outputs as text, at most about 16 bytes a value.
    let estimate = outs.iter().map(|o| o.len() * 16).sum::<usize>() + 1024;
    held.grow(estimate).map_err(busy)?;
    Ok(Ran {
        req,
        outs,
        held,
        estimate,
    })
}

/// A KServe v2 infer. `header`: the `Inference-Header-Content-Length` header, if sent
/// (`Some(None)` when it is not a number). `held` holds the body's bytes.
async fn kserve_infer(
    state: &State,
    s: &Served,
    body: Vec<u8>,
    header: Option<Option<usize>>,
    held: Held,
) -> Reply {
    let decode = move |plan: &sinter::Plan, body: &[u8], held: &mut Held| {
        codec::kserve_request(plan, body, header, held)
    };
    let take = |r: &mut codec::KserveRequest| (std::mem::take(&mut r.arrays), r.seq);
    let ran = match decode_and_run(state, s, body, held, decode, take).await {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let Ran {
        req,
        outs,
        mut held,
        estimate,
    } = ran;
    let plan = s.batcher.plan().clone();
    let name = s.name.clone();
    let encoded = on_cpu(state, estimate, move || {
        codec::kserve_response(&plan, &name, &req, &outs)
    })
    .await;
    let Some(encoded) = encoded else {
        return internal();
    };
    held.shrink_to(encoded.len());
    match encoded {
        Encoded::Json(bytes) => json_reply(StatusCode::OK, Answer::held(bytes, held)),
        Encoded::Binary { bytes, header_len } => {
            let mut resp = Response::new(Answer::held(bytes, held));
            let headers = resp.headers_mut();
            headers.insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(HEADER_LENGTH, hyper::header::HeaderValue::from(header_len));
            resp
        }
    }
}

/// TensorFlow Serving's REST predict (see [`codec::tf_request`]).
async fn tf_predict(state: &State, s: &Served, body: Vec<u8>, held: Held) -> Reply {
    // TF Serving's rows carry no shape: the plan's longest sequence.
    let longest = s.batcher.plan().seq_range().map_or(1, |r| *r.end());
    let take =
        move |r: &mut (Vec<sinter::io::npy::Array>, usize)| (std::mem::take(&mut r.0), longest);
    let ran = match decode_and_run(state, s, body, held, codec::tf_request, take).await {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let Ran {
        req: (_, rows),
        outs,
        mut held,
        estimate,
    } = ran;
    let plan = s.batcher.plan().clone();
    let Some(bytes) = on_cpu(state, estimate, move || {
        codec::tf_response(&plan, rows, &outs)
    })
    .await
    else {
        return internal();
    };
    held.shrink_to(bytes.len());
    json_reply(StatusCode::OK, Answer::held(bytes, held))
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
    m.latency.write(&mut t, "sinter_request_duration_seconds");
    m.decode.write(&mut t, "sinter_decode_seconds");
    let b = &state.budget;
    for (name, kind, v) in [
        ("sinter_inflight_bytes", "gauge", b.used() as u64),
        ("sinter_inflight_bytes_peak", "gauge", b.peak() as u64),
        ("sinter_inflight_bytes_limit", "gauge", b.limit() as u64),
        (
            "sinter_requests_refused_memory_total",
            "counter",
            b.refused(),
        ),
    ] {
        let _ = writeln!(t, "# TYPE {name} {kind}");
        let _ = writeln!(t, "{name} {v}");
    }
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

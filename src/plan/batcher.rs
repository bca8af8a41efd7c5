//! Dynamic batching: concurrent requests (from threads or async tasks) are gathered into one
//! plan run of up to `max_batch` rows, or whatever arrived within `max_delay` of the oldest,
//! and each caller gets its own rows back.
//!
//! The promise: a response is bit-identical to running that request alone, whoever else shared
//! its batch. That holds because every sample's arithmetic in a plan is independent of the
//! batch it runs in (the same tiles, the same summation order: see "How the bits stay
//! identical" in the README); `tests/batcher.rs` checks it against runs alone.
//!
//! The queue is bounded by rows: a request that would take it past `queue_rows` is refused at
//! once with [`Error::Overloaded`] (backpressure), so memory never grows without bound. The
//! batching thread is the only one that runs the plan; blocking callers wait on a condition
//! variable, async callers on a future that never blocks its executor's thread.

use super::{Plan, Values};
use crate::error::{Error, Result};
use crate::io::npy::Array;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How a [`Batcher`] gathers requests.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BatcherOptions {
    /// Rows per plan run (at most the plan's `max_batch` is useful; larger requests run alone,
    /// in chunks).
    pub max_batch: usize,
    /// How long the oldest waiting request may wait for others to join its batch.
    pub max_delay: Duration,
    /// Rows that may wait at once; a request beyond is refused with [`Error::Overloaded`]
    /// (a request larger than this is accepted only into an empty queue, so memory stays
    /// bounded by one request or this many rows).
    pub queue_rows: usize,
}

impl Default for BatcherOptions {
    fn default() -> Self {
        BatcherOptions {
            max_batch: 64,
            max_delay: Duration::from_micros(500),
            queue_rows: 4096,
        }
    }
}

impl BatcherOptions {
    /// The defaults: 64 rows, 500 us, 4096 queued rows.
    pub fn new() -> Self {
        Self::default()
    }
    /// See [`BatcherOptions::max_batch`](#structfield.max_batch).
    pub fn max_batch(mut self, rows: usize) -> Self {
        self.max_batch = rows;
        self
    }
    /// See [`BatcherOptions::max_delay`](#structfield.max_delay).
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }
    /// See [`BatcherOptions::queue_rows`](#structfield.queue_rows).
    pub fn queue_rows(mut self, rows: usize) -> Self {
        self.queue_rows = rows;
        self
    }
}

/// Where a request's answer lands; shared by the caller and the batching thread.
#[derive(Default)]
struct Slot {
    result: Option<Result<Vec<Vec<f32>>>>,
    waker: Option<Waker>,
}

type Reply = Arc<(Mutex<Slot>, Condvar)>;

struct Request {
    inputs: Vec<Array>,
    rows: usize,
    /// Its sequence length (the plan's longest without a variable sequence).
    seq: usize,
    arrived: Instant,
    reply: Reply,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Request>,
    rows: usize,
    closed: bool,
}

struct Shared {
    plan: Arc<Plan>,
    opts: BatcherOptions,
    queue: Mutex<Queue>,
    ready: Condvar,
    runs: AtomicU64,
    requests: AtomicU64,
    rows: AtomicU64,
    sizes: [AtomicU64; BATCH_BUCKETS.len() + 1],
}

/// Upper bounds (rows) of the batch-size histogram in [`BatcherStats::batch_sizes`]; the last
/// count is for larger batches.
pub const BATCH_BUCKETS: [usize; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// What a [`Batcher`] has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatcherStats {
    /// Plan runs (batches).
    pub runs: u64,
    /// Requests answered.
    pub requests: u64,
    /// Rows run.
    pub rows: u64,
    /// Plan runs by rows: entry `i` counts batches of at most `BATCH_BUCKETS[i]` rows (and
    /// more than the previous bound); the last entry counts larger ones.
    pub batch_sizes: [u64; BATCH_BUCKETS.len() + 1],
}

/// A dynamic batcher over one plan; cheap to clone (all clones feed one queue). Dropping
/// the last clone finishes the queued requests and stops the batching thread.
#[derive(Clone)]
pub struct Batcher {
    shared: Arc<Shared>,
    _worker: Arc<Worker>,
}

/// Joins the batching thread when the last [`Batcher`] goes.
struct Worker {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.ready.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

/// A poisoned lock only means another thread panicked while holding it; the queue's state is
/// still consistent (every update is a single push or drain).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("opts", &self.shared.opts)
            .finish_non_exhaustive()
    }
}

impl Batcher {
    /// A batcher running `plan`, with its batching thread started.
    pub fn new(plan: Arc<Plan>, opts: BatcherOptions) -> Result<Batcher> {
        if opts.max_batch == 0 || opts.queue_rows == 0 {
            return Err(Error::Options(
                "a batcher needs max_batch and queue_rows of at least 1".into(),
            ));
        }
        let shared = Arc::new(Shared {
            plan,
            opts,
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            runs: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            sizes: Default::default(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sinter-batcher".into())
            .spawn(move || batch_loop(&s))
            .map_err(|e| Error::Options(format!("cannot start the batching thread: {e}")))?;
        let worker = Arc::new(Worker {
            shared: shared.clone(),
            thread: Mutex::new(Some(thread)),
        });
        Ok(Batcher {
            shared,
            _worker: worker,
        })
    }

    /// The plan it runs.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.shared.plan
    }

    /// Batches, requests and rows run so far.
    pub fn stats(&self) -> BatcherStats {
        let s = &self.shared;
        BatcherStats {
            runs: s.runs.load(Ordering::Relaxed),
            requests: s.requests.load(Ordering::Relaxed),
            rows: s.rows.load(Ordering::Relaxed),
            batch_sizes: std::array::from_fn(|i| s.sizes[i].load(Ordering::Relaxed)),
        }
    }

    /// Queues a request (one array per model input, `rows x len` values each) and waits for
    /// its outputs, `rows x len` per output: bit-identical to `plan.run_all` of this request
    /// alone. Blocks the calling thread; async code uses [`run_async`](Self::run_async).
    pub fn run(&self, inputs: Vec<Array>) -> Result<Vec<Vec<f32>>> {
        self.run_seq(self.shared.plan.longest_seq(), inputs)
    }

    /// [`run`](Self::run) for a sequence of `seq` positions (see [`Session::run_seq`]
    /// (super::Session::run_seq)). Requests of other lengths share its run when the plan
    /// [`pads`](Plan::pads), each padded to the longest; the answer is still bit-identical
    /// to the request alone at its own length.
    pub fn run_seq(&self, seq: usize, inputs: Vec<Array>) -> Result<Vec<Vec<f32>>> {
        let reply = self.submit(inputs, seq)?;
        let (slot, cv) = &*reply;
        let mut s = lock(slot);
        loop {
            if let Some(r) = s.result.take() {
                return r;
            }
            s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// [`run`](Self::run) as a future: polling never blocks, so it suits any async runtime.
    /// The request is queued at once (a full queue is an error right away).
    pub fn run_async(&self, inputs: Vec<Array>) -> Response {
        self.run_seq_async(self.shared.plan.longest_seq(), inputs)
    }

    /// [`run_seq`](Self::run_seq) as a future (see [`run_async`](Self::run_async)).
    pub fn run_seq_async(&self, seq: usize, inputs: Vec<Array>) -> Response {
        match self.submit(inputs, seq) {
            Ok(reply) => Response {
                reply: Some(reply),
                error: None,
            },
            Err(e) => Response {
                reply: None,
                error: Some(e),
            },
        }
    }

    /// Checks and queues a request; refused when the queue is full or closed.
    fn submit(&self, inputs: Vec<Array>, seq: usize) -> Result<Reply> {
        let plan = &self.shared.plan;
        let values: Vec<Values<'_>> = inputs.iter().map(Array::values).collect();
        let rows = super::session::check_values(plan, &values, seq)?;
        let reply: Reply = Arc::default();
        let mut q = lock(&self.shared.queue);
        if q.closed {
            return Err(Error::Overloaded("the batcher is shutting down".into()));
        }
        if q.rows + rows > self.shared.opts.queue_rows && !q.waiting.is_empty() {
            return Err(Error::Overloaded(format!(
                "{} rows are queued, {rows} more would pass the limit of {}",
                q.rows, self.shared.opts.queue_rows
            )));
        }
        q.rows += rows;
        q.waiting.push_back(Request {
            inputs,
            rows,
            seq,
            arrived: Instant::now(),
            reply: reply.clone(),
        });
        drop(q);
        self.shared.ready.notify_one();
        Ok(reply)
    }
}

/// The future of [`Batcher::run_async`].
pub struct Response {
    reply: Option<Reply>,
    error: Option<Error>,
}

impl Future for Response {
    type Output = Result<Vec<Vec<f32>>>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(reply) = self.reply.clone() else {
            let e = self.error.take();
            return Poll::Ready(Err(e.unwrap_or_else(|| {
                Error::Options("the response was already taken".into())
            })));
        };
        let mut s = lock(&reply.0);
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The batching thread: waits for requests, gathers a batch, runs it, answers each caller.
fn batch_loop(s: &Shared) {
    loop {
        let batch = {
            let mut q = lock(&s.queue);
            // Wait for a first request.
            while q.waiting.is_empty() && !q.closed {
                q = s.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            if q.waiting.is_empty() {
                return; // closed and drained
            }
            // Wait until the batch is full or the oldest has waited max_delay.
            let deadline = q.waiting[0].arrived + s.opts.max_delay;
            while q.rows < s.opts.max_batch && !q.closed {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                q = s
                    .ready
                    .wait_timeout(q, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            // Take whole requests up to max_batch rows (at least one), in arrival order, while
            // their inputs have the types of the first (float ids join float ids only) and
            // their sequences its length, unless the plan pads them.
            let mut taken: Vec<Request> = Vec::new();
            let mut rows = 0;
            while let Some(r) = q.waiting.front() {
                let joins = taken.first().is_none_or(|t| {
                    let types = t
                        .inputs
                        .iter()
                        .zip(&r.inputs)
                        .all(|(a, b)| a.values().dtype() == b.values().dtype());
                    types && (t.seq == r.seq || s.plan.pads())
                });
                if !taken.is_empty() && (rows + r.rows > s.opts.max_batch || !joins) {
                    break;
                }
                rows += r.rows;
                taken.extend(q.waiting.pop_front());
            }
            q.rows -= rows;
            taken
        };
        s.runs.fetch_add(1, Ordering::Relaxed);
        s.requests.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let rows: usize = batch.iter().map(|r| r.rows).sum();
        s.rows.fetch_add(rows as u64, Ordering::Relaxed);
        let bucket = BATCH_BUCKETS
            .iter()
            .position(|&b| rows <= b)
            .unwrap_or(BATCH_BUCKETS.len());
        s.sizes[bucket].fetch_add(1, Ordering::Relaxed);
        run_batch(&s.plan, batch);
    }
}

/// One plan run over the requests' rows, concatenated (sequences padded to the longest);
/// each gets its rows of every output (its own positions of each).
fn run_batch(plan: &Plan, batch: Vec<Request>) {
    let result = if batch.len() == 1 {
        let values: Vec<Values<'_>> = batch[0].inputs.iter().map(Array::values).collect();
        plan.run_seq(batch[0].seq, &values).map(|o| vec![o])
    } else {
        let seq = batch.iter().map(|r| r.seq).max().unwrap_or(1);
        let joined: Result<Vec<Array>> = plan
            .inputs
            .iter()
            .enumerate()
            .map(|(k, info)| {
                let parts: Vec<(&Array, usize, usize)> = batch
                    .iter()
                    .map(|r| (&r.inputs[k], info.len_at(r.seq), info.len_at(seq)))
                    .collect();
                // Types and lengths were checked when each request was queued.
                Array::join_padded(&parts, info.pad_one).ok_or_else(|| {
                    Error::Options(format!("input {:?}: requests that do not join", info.name))
                })
            })
            .collect();
        joined
            .and_then(|joined| {
                let values: Vec<Values<'_>> = joined.iter().map(Array::values).collect();
                plan.run_seq(seq, &values)
            })
            .map(|outs| {
                let mut first = 0;
                batch
                    .iter()
                    .map(|r| {
                        let mine = outs
                            .iter()
                            .zip(&plan.outputs)
                            .map(|(o, info)| {
                                // Each sample's own positions of the padded run.
                                let (run, own) = (info.len_at(seq), info.len_at(r.seq));
                                o[first * run..(first + r.rows) * run]
                                    .chunks(run.max(1))
                                    .flat_map(|s| &s[..own])
                                    .copied()
                                    .collect()
                            })
                            .collect();
                        first += r.rows;
                        mine
                    })
                    .collect()
            })
    };
    let answers: Vec<Result<Vec<Vec<f32>>>> = match result {
        Ok(per) => per.into_iter().map(Ok).collect(),
        // Inputs were checked when queued: a failure here is the run's (an arena that could
        // not be allocated), the same for every request of the batch.
        Err(e) => {
            let msg = e.to_string();
            batch
                .iter()
                .map(|_| Err(Error::Options(format!("batched run failed: {msg}"))))
                .collect()
        }
    };
    for (r, answer) in batch.into_iter().zip(answers) {
        let (slot, cv) = &*r.reply;
        let mut s = lock(slot);
        s.result = Some(answer);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        cv.notify_all();
    }
}

//! Where a plan's large layers run when it has more than one thread: sinter's own workers
//! (one process-wide pool for the default thread count) or a pool the caller hands in.

mod workers;

use crate::error::{Error, Result};
use std::sync::Arc;
use workers::{Task, Workers};

/// A thread pool of the caller's that a plan runs its large layers on, instead of starting
/// threads of its own: `CompileOptions::new().pool(Arc::new(rayon_pool))`.
///
/// Implemented for `rayon::ThreadPool` with the `rayon` feature. A plan splits a layer into
/// as many parts as [`WorkerPool::threads`] says and calls [`WorkerPool::run_on`], whose calls
/// pull the parts one at a time; whatever they leave, the calling thread runs itself after
/// `run_on` returns. The split never changes a bit of any result, so a pool that runs fewer
/// calls than asked, or runs them one after another, only costs time.
pub trait WorkerPool: Send + Sync {
    /// Threads a call may use, the calling thread included (the parts a layer is split into).
    fn threads(&self) -> usize;
    /// Calls `work` up to `threads` times, on this pool's threads and possibly the calling
    /// one, and returns after every call has returned.
    fn run_on(&self, threads: usize, work: &(dyn Fn() + Sync));
}

impl std::fmt::Debug for dyn WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WorkerPool({} threads)", self.threads())
    }
}

/// rayon's pool: the calling thread runs one part and `threads - 1` jobs are spawned in a
/// scope on the pool (a call from one of the pool's own threads works too: while it waits,
/// it runs queued jobs). Each call allocates rayon's jobs, unlike sinter's own workers.
#[cfg(feature = "rayon")]
impl WorkerPool for rayon::ThreadPool {
    fn threads(&self) -> usize {
        self.current_num_threads()
    }
    fn run_on(&self, threads: usize, work: &(dyn Fn() + Sync)) {
        self.in_place_scope(|s| {
            for _ in 1..threads {
                s.spawn(|_| work());
            }
            work();
        });
    }
}

/// A plan's threads beyond the caller's.
#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Own(Arc<Workers>),
    Caller(Arc<dyn WorkerPool>),
}

impl Pool {
    /// The parts a layer is split into.
    pub(crate) fn threads(&self) -> usize {
        match self {
            Pool::Own(w) => w.threads(),
            Pool::Caller(p) => p.threads().max(1),
        }
    }

    /// Calls `f` on every item, on the pool's threads and the caller's; returns once every
    /// item is done.
    pub(crate) fn for_each<I, F>(&self, items: I, f: F)
    where
        I: Iterator + Send,
        I::Item: Send,
        F: Fn(I::Item) + Sync,
    {
        match self {
            Pool::Own(w) => w.for_each(items, f),
            Pool::Caller(p) => {
                let task = Task::new(items, &f);
                p.run_on(self.threads(), &|| task.drain());
                // Whatever the pool's calls did not take.
                task.drain();
            }
        }
    }
}

/// The plan's threads: the caller's pool if given (its thread count is the plan's), else for
/// `threads > 1` sinter's own workers (the caller is one of the threads).
///
/// With the default thread count (the available cores) every plan of the process shares one
/// pool, started by the first such plan: ten models do not start ten pools. The pool runs one
/// layer at a time; a call that finds it busy runs on its own thread (same bits either way).
/// Another thread count gives the plan a pool of its own.
pub(crate) fn pool_for(
    threads: usize,
    caller: Option<&Arc<dyn WorkerPool>>,
) -> Result<Option<Pool>> {
    static SHARED: std::sync::OnceLock<Arc<Workers>> = std::sync::OnceLock::new();
    if let Some(p) = caller {
        return Ok((p.threads() > 1).then(|| Pool::Caller(p.clone())));
    }
    if threads == 1 {
        return Ok(None);
    }
    let start = || {
        Workers::new(threads)
            .map(Arc::new)
            .map_err(|e| Error::Options(format!("cannot start {threads} threads: {e}")))
    };
    if threads != default_threads() {
        return start().map(|w| Some(Pool::Own(w)));
    }
    if let Some(p) = SHARED.get() {
        return Ok(Some(Pool::Own(p.clone())));
    }
    let pool = start()?;
    Ok(Some(Pool::Own(SHARED.get_or_init(|| pool).clone())))
}

/// The default thread count: the available cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

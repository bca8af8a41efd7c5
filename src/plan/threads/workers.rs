//! A fixed pool of worker threads for splitting one kernel call, that allocates nothing per
//! call.
//!
//! [`Workers::for_each`] hands the items of an iterator (column parts, row blocks, samples) to
//! the calling thread and the workers, pulled one at a time under a lock: no queue, no boxed
//! jobs. (rayon's `install` pushes each call onto a global injector queue, which allocates a
//! block every 63 calls: measured 5 allocations per 100 two-thread runs of mnist-mlp.) The
//! task lives on the caller's stack; once the caller's items are done it withdraws the task
//! and returns, or unwinds, only after every worker that took the task has finished with it. A
//! worker that is asleep or descheduled (a busy service's threads want the cores too) is not
//! waited for: the caller runs the items it would have taken.
//!
//! # Unsafe code
//!
//! The one `unsafe` outside `kernels/`: a call's task lives on the caller's stack and is
//! reached by the worker threads through a type-erased pointer (`TaskRef`); the caller
//! returns (or unwinds) only after every worker has left the task (`WaitForWorkers`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use std::thread::JoinHandle;

/// How long an idle worker spins before it sleeps: a model's layers come microseconds apart,
/// and waking a sleeping thread costs 5-50 us (and may land it on the waker's core).
const SPIN: Duration = Duration::from_micros(200);
/// The first part of [`SPIN`], spent without yielding the core; after it, the worker yields
/// between checks, so that a service's own threads get the core when they want it.
const SPIN_HARD: Duration = Duration::from_micros(20);

/// A type-erased pointer to the current call's [`Task`].
#[derive(Clone, Copy)]
struct TaskRef {
    data: *const (),
    run: unsafe fn(*const ()),
}

// SAFETY: a `TaskRef` is only made from a `Task` that is `Sync` (its iterator behind a mutex,
// its function `Sync`, its items `Send`), and only dereferenced while that task is alive (see
// `Workers::for_each`).
unsafe impl Send for TaskRef {}

#[derive(Default)]
struct State {
    task: Option<TaskRef>,
    /// Incremented for every call; a worker runs each generation's task once.
    generation: u64,
    /// Workers inside the current generation's task: a worker counts itself in when it takes
    /// the task, under the lock. The caller, once its items are done, withdraws the task and
    /// waits only for these: a worker still asleep or descheduled is not waited for.
    active: usize,
    panicked: bool,
    shutdown: bool,
    /// Workers that have started (`Workers::new` waits for all of them, so that no thread's
    /// start-up, which allocates, happens during a later run).
    started: usize,
}

#[derive(Default)]
struct Shared {
    /// `State::generation`, readable without the lock: idle workers spin on it for a while
    /// before they sleep, so that the layers of one run find them awake.
    published: AtomicU64,
    state: Mutex<State>,
    wake: Condvar,
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `threads - 1` parked worker threads; the caller is the last one.
pub(crate) struct Workers {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
    /// Held for a whole call: a second caller meanwhile runs its items on its own thread.
    busy: Mutex<()>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Workers({} threads)", self.handles.len() + 1)
    }
}

/// One call: the items, pulled under the lock, and what to do with each.
pub(crate) struct Task<'f, I, F> {
    items: Mutex<I>,
    f: &'f F,
}

impl<'f, I: Iterator, F: Fn(I::Item)> Task<'f, I, F> {
    pub(crate) fn new(items: I, f: &'f F) -> Self {
        Task {
            items: Mutex::new(items),
            f,
        }
    }

    /// Runs items until none is left (any number of threads at once).
    pub(crate) fn drain(&self) {
        loop {
            let item = self
                .items
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .next();
            match item {
                Some(item) => (self.f)(item),
                None => return,
            }
        }
    }

    /// # Safety
    /// `data` points to a live `Task<I, F>`.
    unsafe fn run(data: *const ()) {
        // SAFETY: the caller's contract.
        unsafe { &*data.cast::<Self>() }.drain();
    }
}

/// Withdraws the current task, so that no worker takes it any more, and waits, also while
/// unwinding, until no worker that took it is still inside it.
struct WaitForWorkers<'a>(&'a Shared);

impl Drop for WaitForWorkers<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.task = None;
        while st.active > 0 {
            st = self.0.done.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Workers {
    /// Starts `threads - 1` workers (none for 1).
    pub(crate) fn new(threads: usize) -> std::io::Result<Workers> {
        let shared = Arc::new(Shared::default());
        let mut handles = Vec::with_capacity(threads.saturating_sub(1));
        for i in 1..threads {
            let s = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("sinter-{i}"))
                .spawn(move || worker(&s));
            match h {
                Ok(h) => handles.push(h),
                Err(e) => {
                    drop(Workers {
                        shared,
                        handles,
                        busy: Mutex::new(()),
                    });
                    return Err(e);
                }
            }
        }
        {
            let mut st = shared.lock();
            while st.started < handles.len() {
                st = shared.done.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
        }
        Ok(Workers {
            shared,
            handles,
            busy: Mutex::new(()),
        })
    }

    /// Threads that share a call, the caller included.
    pub(crate) fn threads(&self) -> usize {
        self.handles.len() + 1
    }

    /// Calls `f` on every item, on the caller's thread and the workers'. Returns once every
    /// item is done. Allocates nothing. If another call is running, runs on this thread alone.
    ///
    /// # Panics
    /// If `f` panicked on any thread (after every thread is done with the task).
    pub(crate) fn for_each<I, F>(&self, items: I, f: F)
    where
        I: Iterator + Send,
        I::Item: Send,
        F: Fn(I::Item) + Sync,
    {
        let busy = match self.busy.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return items.for_each(f),
        };
        if self.handles.is_empty() {
            return items.for_each(f);
        }
        let task = Task::new(items, &f);
        {
            let mut st = self.shared.lock();
            st.task = Some(TaskRef {
                data: (&raw const task).cast(),
                run: Task::<I, F>::run,
            });
            st.generation += 1;
            st.panicked = false;
            self.shared
                .published
                .store(st.generation, Ordering::Release);
        }
        self.shared.wake.notify_all();
        {
            // Declared after `task`, so dropped (waiting for the workers) before it.
            let _wait = WaitForWorkers(&self.shared);
            task.drain();
        }
        let panicked = self.shared.lock().panicked;
        drop(busy);
        assert!(!panicked, "a worker thread panicked");
    }
}

fn worker(shared: &Shared) {
    shared.lock().started += 1;
    shared.done.notify_all();
    let mut seen = 0;
    loop {
        let idle = Instant::now();
        while shared.published.load(Ordering::Acquire) == seen {
            let t = idle.elapsed();
            if t >= SPIN {
                break;
            }
            if t < SPIN_HARD {
                std::hint::spin_loop();
            } else {
                // Spinning on: give the core to any other thread that wants it.
                std::thread::yield_now();
            }
        }
        let task = {
            let mut st = shared.lock();
            while st.generation == seen && !st.shutdown {
                st = shared.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            if st.shutdown {
                return;
            }
            seen = st.generation;
            // Counted in under the same lock that read the task: the caller cannot withdraw
            // it and return between the two.
            st.active += usize::from(st.task.is_some());
            st.task
        };
        let Some(t) = task else { continue };
        // SAFETY: the task stays alive until `active` drops to 0 (`WaitForWorkers`), which
        // needs this worker's decrement below.
        let ok = catch_unwind(AssertUnwindSafe(|| unsafe { (t.run)(t.data) })).is_ok();
        let mut st = shared.lock();
        st.panicked |= !ok;
        st.active -= 1;
        if st.active == 0 {
            shared.done.notify_all();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.published.fetch_add(1, Ordering::Release);
        self.shared.wake.notify_all();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_item_once_on_several_threads() {
        let w = Workers::new(3).unwrap();
        for n in [0usize, 1, 2, 7, 100] {
            let mut out = vec![0usize; n];
            w.for_each(out.iter_mut().enumerate(), |(i, x)| *x = i * i);
            assert!(out.iter().enumerate().all(|(i, &x)| x == i * i), "n={n}");
        }
    }

    #[test]
    fn concurrent_callers_and_panics() {
        let w = Arc::new(Workers::new(2).unwrap());
        let total = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        w.for_each(0..10usize, |i| {
                            total.fetch_add(i, Ordering::Relaxed);
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 50 * 45);
        let r = catch_unwind(AssertUnwindSafe(|| {
            w.for_each(0..64usize, |i| assert!(i != 40, "item 40"));
        }));
        assert!(r.is_err());
        // The pool still works after a panic.
        let mut v = [0u8; 9];
        w.for_each(v.iter_mut(), |x| *x = 1);
        assert_eq!(v, [1; 9]);
    }
}

//! The server's memory budget: one count of the bytes in flight (bodies being received,
//! decoded tensors, answers being written) against `--max-inflight-bytes`. Taking never
//! waits: past the limit a request is refused at once (503 with `Retry-After`), and what was
//! already taken stays until its request is done.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Bytes in flight, shared by every connection.
#[derive(Clone)]
pub(crate) struct Budget {
    inner: Arc<Inner>,
}

struct Inner {
    limit: usize,
    used: AtomicUsize,
    peak: AtomicUsize,
    refused: AtomicU64,
}

/// Bytes taken from a [`Budget`], given back when dropped.
pub(crate) struct Held {
    inner: Arc<Inner>,
    bytes: usize,
}

/// The default limit: a quarter of the machine's memory (`MemTotal` in `/proc/meminfo`), at
/// least 256 MiB; 1 GiB where the total cannot be read.
pub(crate) fn default_limit() -> usize {
    const MIB: usize = 1 << 20;
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    });
    total.map_or(1024 * MIB, |t| (t / 4).max(256 * MIB))
}

impl Budget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Budget {
            inner: Arc::new(Inner {
                limit,
                used: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// Nothing yet, to grow.
    pub(crate) fn hold(&self) -> Held {
        Held {
            inner: self.inner.clone(),
            bytes: 0,
        }
    }

    /// The limit, bytes.
    pub(crate) fn limit(&self) -> usize {
        self.inner.limit
    }
    /// Bytes in flight now.
    pub(crate) fn used(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }
    /// The most bytes in flight at once so far.
    pub(crate) fn peak(&self) -> usize {
        self.inner.peak.load(Ordering::Relaxed)
    }
    /// Requests refused for the budget so far.
    pub(crate) fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }
}

/// The budget would go past its limit.
#[derive(Debug)]
pub(crate) struct OverBudget {
    pub(crate) wanted: usize,
    pub(crate) limit: usize,
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the server is busy: {} more bytes would take the requests in flight past its \
             memory budget of {} bytes (--max-inflight-bytes); retry later",
            self.wanted, self.limit
        )
    }
}

impl Held {
    /// Takes `bytes` more, or refuses (and counts the refusal) without taking any.
    pub(crate) fn grow(&mut self, bytes: usize) -> Result<(), OverBudget> {
        let inner = &self.inner;
        let refuse = || {
            inner.refused.fetch_add(1, Ordering::Relaxed);
            OverBudget {
                wanted: bytes,
                limit: inner.limit,
            }
        };
        let mut used = inner.used.load(Ordering::Relaxed);
        loop {
            let next = used
                .checked_add(bytes)
                .filter(|&n| n <= inner.limit)
                .ok_or_else(refuse)?;
            match inner
                .used
                .compare_exchange_weak(used, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    inner.peak.fetch_max(next, Ordering::Relaxed);
                    self.bytes += bytes;
                    return Ok(());
                }
                Err(now) => used = now,
            }
        }
    }

    /// Gives back all but `bytes` (no-op if it holds no more).
    pub(crate) fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            self.inner
                .used
                .fetch_sub(self.bytes - bytes, Ordering::Relaxed);
            self.bytes = bytes;
        }
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.shrink_to(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_up_to_the_limit_and_gives_back_on_drop() {
        let b = Budget::new(100);
        let mut h = b.hold();
        h.grow(60).unwrap();
        let mut other = b.hold();
        assert!(other.grow(41).is_err());
        assert_eq!(b.refused(), 1);
        other.grow(40).unwrap();
        assert_eq!(b.used(), 100);
        h.shrink_to(10);
        assert_eq!(b.used(), 50);
        drop(h);
        drop(other);
        assert_eq!(b.used(), 0);
        assert_eq!(b.peak(), 100);
        assert!(b.hold().grow(usize::MAX).is_err());
    }
}

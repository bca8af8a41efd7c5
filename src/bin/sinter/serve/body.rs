//! Bodies in and out, charged to the memory budget: a request body is read into one buffer
//! sized by its `Content-Length` (taken from the budget before a byte is read, so a body
//! that does not fit is refused at once) or grown frame by frame; an answer holds its
//! bytes' share of the budget until hyper has written it.

use super::budget::{Held, OverBudget};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::HeaderMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Why a body could not be read.
pub(super) enum ReadFault {
    /// Over `--max-body-bytes` (413).
    TooLarge(usize),
    /// Not whole within `--body-timeout-ms` (408).
    Timeout(Duration),
    /// The connection failed mid-body (400).
    Broken(String),
    /// The budget is spent (503).
    Busy(OverBudget),
    /// What has arrived already shows the request is wrong (400, the rest unread).
    Refused(String),
}

/// Bytes of a body read before its first part is shown to the early check.
const EARLY_BYTES: usize = 16 << 10;

/// Reads a whole body of at most `max` bytes within `timeout`, charging it to `held`. Once
/// the first [`EARLY_BYTES`] of a longer body are in, `early` sees them: a fault it finds there
/// stops the read (a 62 MB body whose header the model refuses is not received at all).
pub(super) async fn read(
    mut body: Incoming,
    declared: Option<usize>,
    max: usize,
    timeout: Duration,
    held: &mut Held,
    mut early: impl FnMut(&[u8]) -> Option<String>,
) -> Result<Vec<u8>, ReadFault> {
    if let Some(n) = declared {
        if n > max {
            return Err(ReadFault::TooLarge(max));
        }
        held.grow(n).map_err(ReadFault::Busy)?;
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(0));
    let frames = async {
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = frame.map_err(|e| ReadFault::Broken(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            let len = buf.len() + data.len();
            if len > max {
                return Err(ReadFault::TooLarge(max));
            }
            if len > held.bytes() {
                held.grow(len - held.bytes()).map_err(ReadFault::Busy)?;
            }
            let before = buf.len();
            buf.extend_from_slice(&data);
            let whole = declared == Some(buf.len());
            if before < EARLY_BYTES
                && buf.len() >= EARLY_BYTES
                && !whole
                && let Some(m) = early(&buf)
            {
                return Err(ReadFault::Refused(m));
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, frames).await {
        Ok(r) => r.map(|()| buf),
        Err(_) => Err(ReadFault::Timeout(timeout)),
    }
}

/// An answer's body: its bytes in one frame, then trailers if any (gRPC's status), holding
/// its share of the budget until written.
pub(crate) struct Answer {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
    _held: Option<Held>,
}

impl Answer {
    /// `data`, holding nothing.
    pub(crate) fn new(data: impl Into<Bytes>) -> Self {
        Answer {
            data: Some(data.into()),
            trailers: None,
            _held: None,
        }
    }

    /// `data`, keeping `held` until it is written.
    pub(crate) fn held(data: impl Into<Bytes>, held: Held) -> Self {
        Answer {
            _held: Some(held),
            ..Answer::new(data)
        }
    }

    /// Ends with `trailers` after the data.
    pub(crate) fn with_trailers(mut self, trailers: HeaderMap) -> Self {
        self.trailers = Some(trailers);
        self
    }
}

impl Body for Answer {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(d) = self.data.take().filter(|d| !d.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if let Some(t) = self.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        self._held = None;
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.as_ref().is_none_or(Bytes::is_empty) && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

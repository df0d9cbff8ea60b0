//! Stream adapters shared by the server and connection layers.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Implements `AsyncRead` for a wrapper by passing reads to its `inner`
/// stream (the wrappers that only change writing, or nothing).
macro_rules! delegate_read {
    ($wrapper:ident $(, $extra:ident)?) => {
        impl<IO: AsyncRead + Unpin $(, $extra: Unpin)?> AsyncRead for $wrapper<IO $(, $extra)?> {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_read(cx, buf)
            }
        }
    };
}

/// Implements `AsyncWrite` for a wrapper by passing every call to its
/// `inner` stream (the wrappers here only change reading, or nothing).
macro_rules! delegate_write {
    ($wrapper:ident $(, $extra:ident)?) => {
        impl<IO: AsyncWrite + Unpin $(, $extra: Unpin)?> AsyncWrite for $wrapper<IO $(, $extra)?> {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_shutdown(cx)
            }
        }
    };
}

/// A stream some of whose first bytes were already read: replays them, then
/// reads from the stream.
///
/// The server reads a connection's first bytes itself, under the header
/// timeout, so that a client that connects and sends nothing is dropped
/// (hyper's own header timer starts only once it has chosen HTTP/1 or
/// HTTP/2 from those bytes); a PROXY protocol layer reads past the header
/// and hands on what followed it.
#[derive(Debug)]
pub struct Rewind<IO> {
    prefix: Bytes,
    inner: IO,
}

impl<IO> Rewind<IO> {
    /// A stream that yields `prefix`, then what `inner` yields.
    pub fn new(prefix: Bytes, inner: IO) -> Self {
        Self { prefix, inner }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &IO {
        &self.inner
    }

    /// The underlying stream, mutably (reading from it directly skips the
    /// bytes not yet replayed).
    pub fn get_mut(&mut self) -> &mut IO {
        &mut self.inner
    }

    /// The bytes not yet replayed, and the underlying stream.
    pub fn into_parts(self) -> (Bytes, IO) {
        (self.prefix, self.inner)
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

delegate_write!(Rewind);

/// A stream that keeps a value alive for as long as the stream lives: a
/// connection limit's permit, say, freed when the connection closes.
/// Reads and writes go straight to the stream.
#[derive(Debug)]
pub struct Holding<IO, T> {
    inner: IO,
    _held: T,
}

impl<IO, T> Holding<IO, T> {
    /// `inner`, holding `held` until dropped.
    pub fn new(inner: IO, held: T) -> Self {
        Self { inner, _held: held }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &IO {
        &self.inner
    }

    /// The underlying stream, mutably.
    pub fn get_mut(&mut self) -> &mut IO {
        &mut self.inner
    }
}

delegate_read!(Holding, T);

delegate_write!(Holding, T);

/// Why a [`WriteTimeout`] stream failed a write: the peer took no bytes for
/// this long. The `io::Error` (kind `TimedOut`) carries it; find it with
/// `error.get_ref().and_then(|e| e.downcast_ref::<WriteStalled>())`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the peer took no bytes for {after:?}")]
#[non_exhaustive]
pub struct WriteStalled {
    /// The write timeout that ran out.
    pub after: Duration,
}

/// Why a [`WriteTimeout`] stream with a [`MinWriteRate`] failed a write:
/// while writes waited for the peer, it took bytes more slowly than the
/// rate. The `io::Error` (kind `TimedOut`) carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the peer took {taken} bytes while writes waited {waited:?}, under {} bytes/s", .min.bytes_per_second)]
#[non_exhaustive]
pub struct WriteTooSlow {
    /// Bytes the peer took in the window.
    pub taken: u64,
    /// How long writes waited for the peer in the window.
    pub waited: Duration,
    /// The rate it fell short of.
    pub min: MinWriteRate,
}

/// The slowest a peer may take bytes while writes to it wait: the defence
/// against slow readers, which ask for a large response and then read it a
/// few bytes at a time, each read resetting a plain write timeout.
///
/// Only time spent waiting for the peer counts (a connection with nothing
/// to send is never judged), in windows of `window`: once writes have
/// waited that long in all, the peer must have taken
/// `bytes_per_second` for each second of it, or the write fails. A peer
/// reading at any real network speed never comes near it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MinWriteRate {
    /// Bytes per second of waiting the peer must take, on average.
    pub bytes_per_second: u64,
    /// How long writes may wait before the rate is checked, and the span
    /// each check covers.
    pub window: Duration,
}

impl MinWriteRate {
    /// At least `bytes_per_second` while writes wait, checked every
    /// `window` of waiting (at least a millisecond).
    pub fn new(bytes_per_second: u64, window: Duration) -> Self {
        Self {
            bytes_per_second,
            window: window.max(Duration::from_millis(1)),
        }
    }

    /// The bytes a peer must have taken after writes waited `waited`.
    fn required(&self, waited: Duration) -> u64 {
        let bytes = u128::from(self.bytes_per_second) * waited.as_millis() / 1000;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }
}

/// A stream whose writes fail with [`io::ErrorKind::TimedOut`] once one has
/// waited `timeout` for the peer to take bytes (carrying a
/// [`WriteStalled`]), or, with a [`MinWriteRate`], once the peer takes
/// bytes more slowly than that while writes wait (carrying a
/// [`WriteTooSlow`]): a client that stops reading, or reads a byte at a
/// time, cannot hold its connection, and what is relayed to it. Reads go
/// straight to the stream, and a stream with no write waiting is never
/// judged, so idle keep-alive connections and quiet WebSockets are left
/// alone. Each failure is counted in `foobar_write_timeouts_total`.
#[derive(Debug)]
pub struct WriteTimeout<IO> {
    inner: IO,
    timeout: Option<Duration>,
    min_rate: Option<MinWriteRate>,
    /// Set while a call cannot go through.
    waiting: Option<Waiting>,
    /// What the minimum rate is judged on.
    window: RateWindow,
}

/// A call that could not go through.
#[derive(Debug)]
struct Waiting {
    /// When it started waiting (or the rate window was last judged).
    since: Instant,
    /// Which kind of call started it; one of that kind (or any write)
    /// going through ends it.
    by: Op,
    /// The write timeout's timer.
    stall: Option<Pin<Box<Sleep>>>,
}

/// The minimum rate's current window.
#[derive(Debug, Default)]
struct RateWindow {
    /// Waiting time counted, not including the current wait.
    waited: Duration,
    /// Bytes written.
    taken: u64,
    /// Fires when the current wait makes the window complete.
    due: Option<Pin<Box<Sleep>>>,
}

/// What kind of call started a [`WriteTimeout`]'s timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Write,
    /// A flush or a shutdown: on plain TCP always ready, so one going
    /// through says nothing of a write still waiting.
    Flush,
}

impl<IO> WriteTimeout<IO> {
    /// `inner` with a write timeout; `None` waits forever.
    pub fn new(inner: IO, timeout: Option<Duration>) -> Self {
        Self {
            inner,
            timeout,
            min_rate: None,
            waiting: None,
            window: RateWindow::default(),
        }
    }

    /// Also fails writes when the peer takes bytes more slowly than `rate`
    /// while they wait; `None` (the default) does not.
    #[must_use]
    pub fn min_rate(mut self, rate: Option<MinWriteRate>) -> Self {
        self.min_rate = rate;
        self
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &IO {
        &self.inner
    }

    /// The underlying stream, mutably.
    pub fn get_mut(&mut self) -> &mut IO {
        &mut self.inner
    }

    /// The underlying stream.
    pub fn into_inner(self) -> IO {
        self.inner
    }

    /// Passes on a call's result (which took `taken` bytes); one that
    /// cannot go through starts (or checks) the timers.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: Op,
        poll: Poll<io::Result<T>>,
        taken: usize,
    ) -> Poll<io::Result<T>> {
        if self.timeout.is_none() && self.min_rate.is_none() {
            return poll;
        }
        self.window.taken = self.window.taken.saturating_add(taken as u64);
        let now = Instant::now();
        if poll.is_ready() {
            // Bytes taken end any wait; a flush only the one it started.
            if op == Op::Write || self.waiting.as_ref().is_some_and(|w| w.by == op) {
                if let Some(waiting) = self.waiting.take() {
                    self.window.waited += now.saturating_duration_since(waiting.since);
                }
            }
            // A window complete and met starts over; one not met is failed
            // at the next wait.
            if let Some(min) = self.min_rate {
                if self.waiting.is_none()
                    && self.window.waited >= min.window
                    && self.window.taken >= min.required(self.window.waited)
                {
                    self.window = RateWindow::default();
                }
            }
            return poll;
        }
        let timeout = self.timeout;
        let waiting = self.waiting.get_or_insert_with(|| Waiting {
            since: now,
            by: op,
            stall: timeout.map(|after| Box::pin(tokio::time::sleep(after))),
        });
        if let (Some(stall), Some(after)) = (waiting.stall.as_mut(), timeout) {
            if stall.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(write_timed_out(WriteStalled { after }, "stalled")));
            }
        }
        let Some(min) = self.min_rate else {
            return Poll::Pending;
        };
        let window = &mut self.window;
        loop {
            let now = Instant::now();
            let waited = window.waited + now.saturating_duration_since(waiting.since);
            if waited >= min.window {
                if window.taken < min.required(waited) {
                    let too_slow = WriteTooSlow {
                        taken: window.taken,
                        waited,
                        min,
                    };
                    return Poll::Ready(Err(write_timed_out(too_slow, "too_slow")));
                }
                // Met: a new window starts now, still waiting.
                *window = RateWindow::default();
                waiting.since = now;
                continue;
            }
            let due = waiting.since + (min.window - window.waited);
            let timer = window
                .due
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

/// The error a [`WriteTimeout`] fails a write with, counted.
fn write_timed_out<E>(cause: E, reason: &'static str) -> io::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    metrics::counter!("foobar_write_timeouts_total", "reason" => reason).increment(1);
    io::Error::new(io::ErrorKind::TimedOut, cause)
}

delegate_read!(WriteTimeout);

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        let taken = written(&poll);
        self.guard(cx, Op::Write, poll, taken)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        let taken = written(&poll);
        self.guard(cx, Op::Write, poll, taken)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.guard(cx, Op::Flush, poll, 0)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.guard(cx, Op::Flush, poll, 0)
    }
}

/// The bytes a write took.
fn written(poll: &Poll<io::Result<usize>>) -> usize {
    match poll {
        Poll::Ready(Ok(n)) => *n,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn replays_the_prefix_then_reads_the_stream() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b" world")
            .await
            .unwrap();
        drop(a);
        let mut s = Rewind::new(Bytes::from_static(b"hello"), b);
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    #[tokio::test]
    async fn a_write_the_peer_does_not_take_times_out_and_reads_do_not() {
        use tokio::io::AsyncWriteExt;
        let (a, mut b) = tokio::io::duplex(16);
        let mut s = WriteTimeout::new(a, Some(Duration::from_millis(50)));
        // Nothing to read and no write waiting: no timeout.
        let idle = tokio::time::timeout(Duration::from_millis(120), s.read_u8()).await;
        assert!(idle.is_err(), "a read is not timed");
        // A write the peer takes goes through; one it does not take fails.
        s.write_all(&[1; 16]).await.unwrap();
        let mut got = [0; 16];
        b.read_exact(&mut got).await.unwrap();
        s.write_all(&[2; 16]).await.unwrap();
        let started = tokio::time::Instant::now();
        let error = s.write_all(&[3; 16]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let stalled = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<WriteStalled>());
        assert_eq!(
            stalled,
            Some(&WriteStalled {
                after: Duration::from_millis(50)
            })
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_flush_going_through_does_not_end_a_writes_stall() {
        use tokio::io::AsyncWriteExt;
        let (a, _b) = tokio::io::duplex(4);
        let mut s = WriteTimeout::new(a, Some(Duration::from_millis(50)));
        s.write_all(&[0; 4]).await.unwrap();
        // A caller that flushes (always ready here) while its write waits.
        let stalled = std::future::poll_fn(|cx| {
            let mut s = Pin::new(&mut s);
            match s.as_mut().poll_write(cx, &[1]) {
                Poll::Pending => {
                    let _ = s.as_mut().poll_flush(cx);
                    Poll::Pending
                }
                ready => ready,
            }
        });
        let result = tokio::time::timeout(Duration::from_secs(5), stalled).await;
        let error = result.expect("timed out by the write timeout").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_peer_taking_a_byte_at_a_time_falls_under_the_minimum_rate() {
        use tokio::io::AsyncWriteExt;
        let (a, mut b) = tokio::io::duplex(8);
        let min = MinWriteRate::new(1_000, Duration::from_millis(200));
        let mut s = WriteTimeout::new(a, Some(Duration::from_secs(5))).min_rate(Some(min));
        // One byte every 20 ms: each read lets a write through, so the
        // write timeout alone would never end this.
        tokio::spawn(async move {
            let mut byte = [0; 1];
            for _ in 0..1_000 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if b.read(&mut byte).await.unwrap_or(0) == 0 {
                    break;
                }
            }
        });
        let started = Instant::now();
        let error = s.write_all(&[7; 4096]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let too_slow = *error
            .get_ref()
            .and_then(|e| e.downcast_ref::<WriteTooSlow>())
            .expect("failed for its rate");
        assert_eq!(too_slow.min, min);
        assert!(too_slow.waited >= min.window, "{too_slow:?}");
        assert!(
            too_slow.taken < min.required(too_slow.waited),
            "{too_slow:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the rate ended it, not the write timeout"
        );
    }

    #[tokio::test]
    async fn a_peer_reading_steadily_passes_window_after_window() {
        use tokio::io::AsyncWriteExt;
        let (a, mut b) = tokio::io::duplex(64);
        let min = MinWriteRate::new(1_000, Duration::from_millis(50));
        let mut s = WriteTimeout::new(a, None).min_rate(Some(min));
        // 64 bytes a millisecond or so: far above the rate, and always
        // behind the writer, so that writes wait through many windows.
        let reader = tokio::spawn(async move {
            let mut buf = [0; 64];
            let mut total = 0;
            while total < 32 * 1024 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                total += b.read(&mut buf).await.unwrap();
            }
            total
        });
        s.write_all(&[1; 32 * 1024]).await.unwrap();
        s.flush().await.unwrap();
        assert_eq!(reader.await.unwrap(), 32 * 1024);
    }

    #[tokio::test]
    async fn time_with_nothing_to_write_is_not_judged() {
        use tokio::io::AsyncWriteExt;
        let (a, mut b) = tokio::io::duplex(4);
        let min = MinWriteRate::new(1_000_000, Duration::from_millis(100));
        let mut s = WriteTimeout::new(a, None).min_rate(Some(min));
        // A short wait, then nothing to send for longer than the window.
        let reader = tokio::spawn(async move {
            let mut buf = [0; 8];
            tokio::time::sleep(Duration::from_millis(20)).await;
            b.read_exact(&mut buf).await.unwrap();
            b
        });
        s.write_all(&[1; 8]).await.unwrap();
        let mut b = reader.await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        s.write_all(&[2; 4]).await.unwrap();
        let mut got = [0; 4];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [2; 4]);
    }
}

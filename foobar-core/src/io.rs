//! Stream adapters shared by the server and connection layers.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

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

/// A stream whose writes fail with [`io::ErrorKind::TimedOut`] (carrying a
/// [`WriteStalled`]) once one has
/// waited `timeout` for the peer to take bytes: a client that stops reading
/// cannot hold its connection, and what is relayed to it, forever. Reads go
/// straight to the stream, and a stream with no write waiting never times
/// out, so idle keep-alive connections and quiet WebSockets are left alone.
#[derive(Debug)]
pub struct WriteTimeout<IO> {
    inner: IO,
    timeout: Option<Duration>,
    /// Started when a write (or flush) first cannot go through, with which
    /// of the two started it; dropped once one of that kind goes through.
    stalled: Option<(Pin<Box<Sleep>>, Op)>,
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
            stalled: None,
        }
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

    /// Passes on a call's result; one that cannot go through starts (or
    /// checks) the timer.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: Op,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let Some(limit) = self.timeout else {
            return poll;
        };
        if poll.is_ready() {
            // Bytes taken end any stall; a flush only the one it started.
            if op == Op::Write || self.stalled.as_ref().is_some_and(|(_, by)| *by == op) {
                self.stalled = None;
            }
            return poll;
        }
        let (stalled, _) = self
            .stalled
            .get_or_insert_with(|| (Box::pin(tokio::time::sleep(limit)), op));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                WriteStalled { after: limit },
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

delegate_read!(WriteTimeout);

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.guard(cx, Op::Write, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.guard(cx, Op::Write, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.guard(cx, Op::Flush, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.guard(cx, Op::Flush, poll)
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
}

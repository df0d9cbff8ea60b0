//! Stream adapters shared by the server and connection layers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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

impl<IO: AsyncRead + Unpin, T: Unpin> AsyncRead for Holding<IO, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

delegate_write!(Holding, T);

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
}

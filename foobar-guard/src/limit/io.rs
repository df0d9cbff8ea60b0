use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::LimitState;

/// A connection's place under the limits; dropping it frees the place.
#[derive(Debug)]
pub struct ConnPermit {
    state: Arc<LimitState>,
    key: Option<IpAddr>,
}

impl ConnPermit {
    pub(super) fn new(state: Arc<LimitState>, key: Option<IpAddr>) -> Self {
        Self { state, key }
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.state.release(self.key);
    }
}

/// A stream admitted by [`ConnLimit`](super::ConnLimit): it holds the
/// connection's permit for as long as the connection lives.
#[derive(Debug)]
pub struct LimitedIo<IO> {
    inner: IO,
    _permit: ConnPermit,
}

impl<IO> LimitedIo<IO> {
    pub(super) fn new(inner: IO, permit: ConnPermit) -> Self {
        Self {
            inner,
            _permit: permit,
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
}

impl<IO: AsyncRead + Unpin> AsyncRead for LimitedIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for LimitedIo<IO> {
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

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

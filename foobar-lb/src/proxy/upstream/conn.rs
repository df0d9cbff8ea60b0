//! One HTTP/1.1 connection to a backend, plain or TLS, with the bytes read
//! from it and not used yet.

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use foobar_core::http1::Deadline;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Room kept free in the read buffer before each read.
const READ_ROOM: usize = 8 * 1024;

/// A backend connection's stream.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Self::Tcp(tcp) => tcp,
            Self::Tls(tls) => tls.get_ref().0,
        }
    }

    /// Whether the connection has nothing to say: no bytes, no close. One
    /// non-blocking peek at the socket, so what came since the runtime
    /// last looked counts too. Over TLS, records that are not data (a
    /// session ticket) are taken in and do not count.
    pub(crate) fn is_quiet(&mut self) -> bool {
        if nothing_to_read(self.tcp()) {
            return true;
        }
        let Self::Tls(tls) = self else {
            return false;
        };
        let (tcp, session) = tls.get_mut();
        let mut socket = SocketReader(socket2::SockRef::from(&*tcp));
        loop {
            match session.read_tls(&mut socket) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
            if session.process_new_packets().is_err() {
                return false;
            }
        }
        // Plaintext, or the peer's close, makes it unusable.
        matches!(
            session.reader().read(&mut [0u8; 1]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }
}

/// Reads a socket directly, without the runtime's readiness (it is only
/// used where the next read through the runtime finds out anew).
struct SocketReader<'a>(socket2::SockRef<'a>);

impl Read for SocketReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

/// Whether a socket has nothing to read right now.
pub(crate) fn nothing_to_read(socket: &impl std::os::fd::AsFd) -> bool {
    let mut byte = [std::mem::MaybeUninit::uninit(); 1];
    let peeked = socket2::SockRef::from(socket).peek(&mut byte);
    matches!(peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A connection and what was read from it but not used yet.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: Stream,
    pub(crate) read_buf: BytesMut,
    /// The peer closed its side.
    pub(crate) eof: bool,
    /// The response timeout of the exchange in progress: one timer for the
    /// connection's life, moved per request rather than made anew.
    pub(crate) deadline: Deadline,
}

impl Conn {
    pub(crate) fn new(stream: Stream) -> Self {
        Self {
            stream,
            read_buf: BytesMut::new(),
            eof: false,
            deadline: Deadline::new(),
        }
    }

    /// Reads more into the read buffer: how many bytes (0 at the end).
    pub(crate) fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read_buf.capacity() - self.read_buf.len() < READ_ROOM {
            self.read_buf.reserve(2 * READ_ROOM);
        }
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.stream),
            cx,
            &mut self.read_buf
        ))?;
        self.eof |= n == 0;
        Poll::Ready(Ok(n))
    }

    /// Writes all of `buf`; how much went when it cannot all go now is in
    /// `written`.
    pub(crate) fn poll_write_all(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        written: &mut usize,
    ) -> Poll<io::Result<()>> {
        while *written < buf.len() {
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &buf[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }
}

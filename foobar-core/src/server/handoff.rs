//! Connection handlers that run before HTTP: a handler gets each connection
//! once its first bytes are in and either serves it to the end or hands it
//! back to the server's HTTP service (hyper) at a request boundary.
//!
//! This is how a purpose-built HTTP/1 relay (such as the load balancer's)
//! takes the common requests on a short path and leaves everything else
//! (HTTP/2, protocol upgrades, malformed requests) to the full HTTP stack.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};

use super::HttpConfig;
use crate::conn::ConnInfo;
use crate::shutdown::Shutdown;

/// A connection given to a handler: the stream (after the connection stage),
/// what is known about it, and the bytes already read from it.
#[derive(Debug)]
#[non_exhaustive]
pub struct RawConnection<IO> {
    /// The stream, TLS already terminated if a TLS layer ran.
    pub io: IO,
    /// Peer, local address, PROXY protocol client, TLS details.
    pub info: ConnInfo,
    /// Bytes read from `io` and not consumed yet (at least one).
    pub buffered: BytesMut,
    /// The server's HTTP settings (header timeout and size limits).
    pub http: Arc<HttpConfig>,
    /// Fires when the server starts draining: finish the request in
    /// progress, then close or hand back.
    pub drain: Shutdown,
}

/// How a handler finished with a connection.
#[derive(Debug)]
pub enum Handled<IO> {
    /// The connection is done (closed or to be dropped).
    Closed,
    /// Serve the rest of the connection with the server's HTTP service,
    /// reading `buffered` first.
    Http {
        /// The stream.
        io: IO,
        /// Bytes read from the stream but not consumed.
        buffered: Bytes,
    },
}

/// The default handler: every connection goes straight to HTTP.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirectToHttp;

impl<IO> tower::Service<RawConnection<IO>> for DirectToHttp {
    type Response = Handled<IO>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Handled<IO>, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, conn: RawConnection<IO>) -> Self::Future {
        std::future::ready(Ok(Handled::Http {
            io: conn.io,
            buffered: conn.buffered.freeze(),
        }))
    }
}

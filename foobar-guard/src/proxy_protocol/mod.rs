//! PROXY protocol v1 and v2 at connection level, from trusted proxies only.
//!
//! A load balancer in front of this server (another foobar LB, HAProxy, a
//! cloud LB) can announce the real client address in a PROXY protocol
//! header at the start of the connection. [`ProxyProtocolLayer`] reads it,
//! records the client in [`ConnInfo::proxied_client`] (so
//! [`ConnInfo::client_addr`] and every later layer see the real client), and
//! hands on the rest of the stream.
//!
//! - A peer in the [trusted proxies](crate::TrustedProxies) **must** send a
//!   header (v1 or v2); a v1 `UNKNOWN` or v2 `LOCAL` header keeps the peer
//!   address (the proxy's own health checks).
//! - Any other peer **must not**: a connection from it that starts with a
//!   PROXY signature is refused, so a client cannot forge its address; its
//!   other bytes are replayed untouched. (The layer waits for an untrusted
//!   peer's first bytes, so it suits protocols whose client speaks first:
//!   HTTP, TLS.)
//! - The header must arrive within the read timeout (default 5 s).
//!
//! Put it first in the connection stage, before the firewall, so the
//! firewall checks the real client:
//!
//! ```
//! use foobar_core::PlainTcp;
//! use foobar_guard::firewall::{FirewallLayer, Rules};
//! use foobar_guard::proxy_protocol::ProxyProtocolLayer;
//! use foobar_guard::TrustedProxies;
//! use tower::ServiceBuilder;
//!
//! let stage = ServiceBuilder::new()
//!     .layer(ProxyProtocolLayer::new(TrustedProxies::parse("10.0.0.0/8")?))
//!     .layer(FirewallLayer::new("deny 192.0.2.0/24".parse()?))
//!     .service(PlainTcp);
//! # let _ = stage;
//! # Ok::<(), foobar_guard::ConfigError>(())
//! ```
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `foobar_proxy_protocol_refused_total` | counter | – |
//!
//! [`ConnInfo::proxied_client`]: foobar_core::ConnInfo::proxied_client
//! [`ConnInfo::client_addr`]: foobar_core::ConnInfo::client_addr

pub(crate) mod header;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use foobar_core::{Accepted, BoxError};
use metrics::Counter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tower_layer::Layer;
use tower_service::Service;

/// The stream handed on: what followed the PROXY header, then the connection.
pub use foobar_core::io::Rewind;

use self::header::Parsed;
use crate::client_addr::TrustedProxies;
use crate::error::{ProxyHeaderError, Refused};

/// The largest header accepted: a v2 header with its TLVs.
const MAX_HEADER: usize = 16 + u16::MAX as usize;

/// Reads PROXY protocol headers from trusted proxies. See the
/// [module docs](self).
#[derive(Clone, Debug)]
pub struct ProxyProtocolLayer {
    config: Arc<Config>,
}

#[derive(Debug)]
struct Config {
    trusted: TrustedProxies,
    read_timeout: Duration,
    refused: Counter,
}

impl ProxyProtocolLayer {
    /// Accepts headers from `trusted` peers (and requires one from them).
    pub fn new(trusted: TrustedProxies) -> Self {
        Self::build(trusted, Duration::from_secs(5))
    }

    fn build(trusted: TrustedProxies, read_timeout: Duration) -> Self {
        crate::metric_help::describe();
        Self {
            config: Arc::new(Config {
                trusted,
                read_timeout,
                refused: metrics::counter!("foobar_proxy_protocol_refused_total"),
            }),
        }
    }

    /// How long a peer has to send the header (or, for an untrusted peer,
    /// its first bytes). Default: 5 s.
    #[must_use]
    pub fn read_timeout(self, timeout: Duration) -> Self {
        Self::build(self.config.trusted.clone(), timeout)
    }
}

impl<S> Layer<S> for ProxyProtocolLayer {
    type Service = ProxyProtocol<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProxyProtocol {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The PROXY protocol service; made by [`ProxyProtocolLayer`].
#[derive(Clone, Debug)]
pub struct ProxyProtocol<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> ProxyProtocol<S> {
    /// Wraps `inner`, accepting headers from `trusted` peers.
    pub fn new(inner: S, trusted: TrustedProxies) -> Self {
        ProxyProtocolLayer::new(trusted).layer(inner)
    }

    /// A layer that wraps services in `ProxyProtocol`.
    pub fn layer(trusted: TrustedProxies) -> ProxyProtocolLayer {
        ProxyProtocolLayer::new(trusted)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Response future of [`ProxyProtocol`]: reads the header, then runs the
/// inner service.
pub struct ResponseFuture<T> {
    inner: Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>,
}

impl<T> std::fmt::Debug for ResponseFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<T> Future for ResponseFuture<T> {
    type Output = Result<T, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S, IO> Service<Accepted<IO>> for ProxyProtocol<S>
where
    S: Service<Accepted<Rewind<IO>>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, accepted: Accepted<IO>) -> Self::Future {
        // The clone is ready only once polled; keep the one that is.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        ResponseFuture {
            inner: Box::pin(async move {
                let Accepted { mut io, mut info } = accepted;
                let peer = info.peer;
                let trusted = config.trusted.contains(peer.ip());
                let read = tokio::time::timeout(config.read_timeout, read_start(&mut io, trusted));
                let outcome = match read.await {
                    Ok(outcome) => outcome,
                    Err(_elapsed) => Err(ProxyHeaderError::Timeout),
                };
                let (client, rest) = match outcome {
                    Ok(found) => found,
                    Err(reason) => {
                        config.refused.increment(1);
                        return Err(Refused::ProxyProtocol { peer, reason }.into());
                    }
                };
                if let Some(client) = client {
                    info.proxied_client = Some(client);
                }
                let accepted = Accepted::new(Rewind::new(rest.freeze(), io), info);
                inner.call(accepted).await.map_err(Into::into)
            }),
        }
    }
}

/// Reads the start of the stream: the header from a trusted peer, or enough
/// bytes from another peer to be sure it sent none. Returns the announced
/// client and the bytes read past the header.
async fn read_start<IO: AsyncRead + Unpin>(
    io: &mut IO,
    trusted: bool,
) -> Result<(Option<std::net::SocketAddr>, BytesMut), ProxyHeaderError> {
    let mut buf = BytesMut::with_capacity(512);
    loop {
        if trusted {
            match header::parse(&buf).map_err(ProxyHeaderError::Malformed)? {
                Parsed::Header { len, client } => {
                    let rest = buf.split_off(len);
                    return Ok((client, rest));
                }
                Parsed::NotProxy => return Err(ProxyHeaderError::Missing),
                Parsed::Incomplete => {}
            }
        } else {
            match header::starts_like_proxy(&buf) {
                Some(true) => return Err(ProxyHeaderError::Untrusted),
                Some(false) => return Ok((None, buf)),
                None => {}
            }
        }
        if buf.len() >= MAX_HEADER {
            return Err(ProxyHeaderError::Malformed("header too long"));
        }
        let n = io.read_buf(&mut buf).await?;
        if n == 0 {
            return if trusted {
                Err(ProxyHeaderError::Missing)
            } else {
                // Closed (or half-closed) early: hand on what there is.
                Ok((None, buf))
            };
        }
    }
}

//! A per-client rate of new connections, and so of TLS handshakes, at the
//! connection stage.
//!
//! A TLS handshake costs the server a key exchange and a signature; a
//! client that opens connections as fast as it can makes the server spend
//! a core on handshakes without sending one request. Placed in front of
//! the [`TlsLayer`](crate::TlsLayer), [`HandshakeRateLimitLayer`] keeps one
//! token bucket per client address (IPv6 grouped by a prefix, /64 by
//! default): a connection that finds its client's bucket empty is closed at
//! once, before any handshake work, and counted. Other clients are not
//! affected, and a client within its rate never notices the layer.
//!
//! It is off unless composed. Size it well above what one legitimate
//! client opens (browsers open a few connections per site; a NAT or a
//! corporate proxy puts many users behind one address) and keep the
//! [`ConnLimitLayer`](crate::ConnLimitLayer) for connections held open.
//!
//! ```
//! use std::time::Duration;
//!
//! use foobar_core::PlainTcp;
//! use foobar_guard::handshake_limit::HandshakeRateLimitLayer;
//! use foobar_guard::tls::{TlsConfig, TlsLayer};
//! use tower::ServiceBuilder;
//!
//! # fn stage(tls: TlsConfig) -> Result<(), foobar_guard::ConfigError> {
//! // 20 new connections per second per client, 100 at once.
//! let stage = ServiceBuilder::new()
//!     .layer(HandshakeRateLimitLayer::per_second(20, 100)?)
//!     .layer(TlsLayer::new(tls).handshake_timeout(Duration::from_secs(5)))
//!     .service(PlainTcp);
//! # let _ = stage;
//! # Ok(())
//! # }
//! ```
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `foobar_connections_refused_total` | counter | `reason="handshake_rate"` |
//! | `foobar_rate_limit_resets_total` | counter (key table reset at `max_keys`) | `limit="handshakes"` |

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};

use foobar_core::{Accepted, BoxError};
use governor::Quota;
use metrics::Counter;
use tower_layer::Layer;
use tower_service::Service;

use crate::accept_future::AcceptFuture;
use crate::client_addr::client_key;
use crate::error::{ConfigError, QuotaError, Refused, Result};
use crate::rate_limit::Buckets;

/// Limits how fast each client may open connections. See the
/// [module docs](self).
#[derive(Clone, Debug)]
pub struct HandshakeRateLimitLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    buckets: Buckets<IpAddr>,
    v6_prefix: u8,
    refused: Counter,
}

impl HandshakeRateLimitLayer {
    /// `rate` new connections per second per client on average, up to
    /// `burst` at once.
    ///
    /// # Errors
    /// [`ConfigError::InvalidQuota`] if `rate` or `burst` is zero.
    pub fn per_second(rate: u32, burst: u32) -> Result<Self> {
        let rate = NonZeroU32::new(rate).ok_or(ConfigError::InvalidQuota(QuotaError::ZeroRate))?;
        let burst =
            NonZeroU32::new(burst).ok_or(ConfigError::InvalidQuota(QuotaError::ZeroBurst))?;
        Ok(Self::new(Quota::per_second(rate).allow_burst(burst)))
    }

    /// Limits with `quota` per client address.
    ///
    /// Install the metrics recorder first: the counters are registered
    /// here, once.
    pub fn new(quota: Quota) -> Self {
        Self::build(quota, 64, 1_000_000)
    }

    fn build(quota: Quota, v6_prefix: u8, max_keys: usize) -> Self {
        crate::metric_help::describe();
        Self {
            shared: Arc::new(Shared {
                buckets: Buckets::new(
                    quota,
                    max_keys,
                    metrics::counter!("foobar_rate_limit_resets_total", "limit" => "handshakes"),
                ),
                v6_prefix: v6_prefix.min(128),
                refused: metrics::counter!("foobar_connections_refused_total", "reason" => "handshake_rate"),
            }),
        }
    }

    /// Counts IPv6 clients by their first `prefix` bits (default 64; 128
    /// counts every address apart).
    #[must_use]
    pub fn ipv6_prefix(self, prefix: u8) -> Self {
        let buckets = &self.shared.buckets;
        Self::build(buckets.quota(), prefix, buckets.max_keys())
    }

    /// The most clients tracked before the table starts over (every client
    /// then gets a full bucket again). Default: 1,000,000.
    #[must_use]
    pub fn max_keys(self, max_keys: usize) -> Self {
        Self::build(self.shared.buckets.quota(), self.shared.v6_prefix, max_keys)
    }

    /// The number of clients tracked now.
    pub fn tracked_clients(&self) -> usize {
        self.shared.buckets.len()
    }
}

impl<S> Layer<S> for HandshakeRateLimitLayer {
    type Service = HandshakeRateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HandshakeRateLimit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The handshake rate-limit service; made by [`HandshakeRateLimitLayer`].
#[derive(Clone, Debug)]
pub struct HandshakeRateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> HandshakeRateLimit<S> {
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

impl<S, IO> Service<Accepted<IO>> for HandshakeRateLimit<S>
where
    S: Service<Accepted<IO>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AcceptFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, accepted: Accepted<IO>) -> Self::Future {
        let addr = accepted.info.client_addr().ip();
        let shared = &self.shared;
        shared.buckets.maintain();
        match shared.buckets.check(&client_key(addr, shared.v6_prefix)) {
            None => AcceptFuture::inner(self.inner.call(accepted)),
            Some(retry_after) => {
                shared.refused.increment(1);
                let error = Refused::TooManyHandshakes { addr, retry_after };
                tracing::debug!(%error, "connection refused by the handshake rate limit");
                AcceptFuture::denied(error)
            }
        }
    }
}

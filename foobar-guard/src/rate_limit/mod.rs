//! Per-client rate limits: token buckets keyed by client address (or any
//! key), answering `429 Too Many Requests` with `Retry-After`.
//!
//! [`RateLimitLayer`] keeps one token bucket (GCRA, via `governor`) per key.
//! The default key is the client address after trusted-proxy resolution
//! ([`ClientIpKey`], which refuses a request with no known client unless
//! [`UnknownClient::Allow`] is chosen: put the request-level
//! [`FirewallLayer`](crate::FirewallLayer) in front so it has resolved
//! [`ClientAddr`](crate::ClientAddr)); any [`KeyExtractor`] can replace it.
//!
//! Memory stays bounded under a flood of distinct keys: idle buckets (full
//! again, so indistinguishable from new ones) are dropped periodically, and
//! if the live keys still exceed [`max_keys`](RateLimitLayer::max_keys) the
//! whole table is reset (clients then start with a full bucket again).
//!
//! Several instances (load balancers behind DNS or anycast) share one
//! limit through Redis with `RateLimitLayer::redis` (feature `redis`):
//! see the `rate_limit::redis` module for its leases, its bound and its
//! fallback when Redis is away.
//!
//! ```
//! use foobar_guard::rate_limit::RateLimitLayer;
//! use foobar_guard::{FirewallLayer, Rules, TrustedProxies};
//! use tower::ServiceBuilder;
//!
//! let app = tower::service_fn(|_req: http::Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
//! });
//! let app = ServiceBuilder::new()
//!     .layer(FirewallLayer::new(Rules::default()).trusted_proxies(TrustedProxies::parse("10.0.0.0/8")?))
//!     .layer(RateLimitLayer::per_second(50, 100)?)
//!     .service(app);
//! # let _ = app;
//! # Ok::<(), foobar_guard::ConfigError>(())
//! ```
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `foobar_rate_limited_requests_total` | counter | – |
//! | `foobar_rate_limit_resets_total` | counter (key table reset at `max_keys`) | `limit="requests"` |
//! | `foobar_unknown_client_requests_total` | counter (refused: no client address) | `layer="rate_limit"` |

mod buckets;
mod key;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

pub use governor::Quota;
use http::{Request, Response, StatusCode};
use metrics::Counter;
use tower_layer::Layer;
use tower_service::Service;

pub(crate) use self::buckets::Buckets;
pub use self::key::{ClientIpKey, KeyExtractor};
#[cfg(feature = "redis")]
pub use self::redis::{
    Fallback, RedisKey, RedisLimits, RedisRateLimit, RedisRateLimitLayer, RedisResponseFuture,
    RedisSetupError,
};
use crate::body::GuardBody;
use crate::error::{ConfigError, QuotaError, Result};
use crate::response_future::Rejection;
pub use crate::response_future::ResponseFuture;
use crate::unknown_client::{UnknownClient, UnknownClientAlarm};

/// Limits the request rate per client. See the [module docs](self).
pub struct RateLimitLayer<K: KeyExtractor = ClientIpKey> {
    shared: Arc<Shared<K>>,
}

impl<K: KeyExtractor> Clone for RateLimitLayer<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K: KeyExtractor> std::fmt::Debug for RateLimitLayer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.fmt(f)
    }
}

struct Shared<K: KeyExtractor> {
    buckets: Buckets<K::Key>,
    extractor: Arc<K>,
    limited: Counter,
    unknown_alarm: UnknownClientAlarm,
}

impl<K: KeyExtractor> std::fmt::Debug for Shared<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("buckets", &self.buckets)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer<ClientIpKey> {
    /// `rate` requests per second per client on average, up to `burst` at
    /// once.
    ///
    /// # Errors
    /// [`ConfigError::InvalidQuota`] if `rate` or `burst` is zero.
    pub fn per_second(rate: u32, burst: u32) -> Result<Self> {
        let rate = NonZeroU32::new(rate).ok_or(ConfigError::InvalidQuota(QuotaError::ZeroRate))?;
        let burst =
            NonZeroU32::new(burst).ok_or(ConfigError::InvalidQuota(QuotaError::ZeroBurst))?;
        Ok(Self::new(Quota::per_second(rate).allow_burst(burst)))
    }

    /// One request per `period` per client on average, up to `burst` at
    /// once.
    ///
    /// # Errors
    /// [`ConfigError::InvalidQuota`] if `period` or `burst` is zero.
    pub fn with_period(period: Duration, burst: u32) -> Result<Self> {
        let burst =
            NonZeroU32::new(burst).ok_or(ConfigError::InvalidQuota(QuotaError::ZeroBurst))?;
        let quota =
            Quota::with_period(period).ok_or(ConfigError::InvalidQuota(QuotaError::ZeroPeriod))?;
        Ok(Self::new(quota.allow_burst(burst)))
    }

    /// Limits with `quota`, keyed by client address (IPv6 by /64).
    ///
    /// Install the metrics recorder first: the counters are registered
    /// here, once.
    pub fn new(quota: Quota) -> Self {
        Self::build(quota, Arc::new(ClientIpKey::default()), 1_000_000)
    }

    /// Groups IPv6 clients by their first `prefix` bits (default 64).
    #[must_use]
    pub fn ipv6_prefix(self, prefix: u8) -> Self {
        let key = self.shared.extractor.with_ipv6_prefix(prefix);
        self.key(key)
    }

    /// What to do with a request whose client address is unknown.
    /// Default: [`UnknownClient::Refuse`] (500, logged and counted).
    #[must_use]
    pub fn unknown_client(self, policy: UnknownClient) -> Self {
        let key = self.shared.extractor.with_unknown_client(policy);
        self.key(key)
    }
}

impl<K: KeyExtractor> RateLimitLayer<K> {
    fn build(quota: Quota, extractor: Arc<K>, max_keys: usize) -> Self {
        crate::metric_help::describe();
        Self {
            shared: Arc::new(Shared {
                buckets: Buckets::new(
                    quota,
                    max_keys,
                    metrics::counter!("foobar_rate_limit_resets_total", "limit" => "requests"),
                ),
                extractor,
                limited: metrics::counter!("foobar_rate_limited_requests_total"),
                unknown_alarm: UnknownClientAlarm::new("rate_limit"),
            }),
        }
    }

    /// Keys requests with `extractor` instead.
    pub fn key<K2: KeyExtractor>(self, extractor: K2) -> RateLimitLayer<K2> {
        RateLimitLayer::build(
            self.shared.buckets.quota(),
            Arc::new(extractor),
            self.shared.buckets.max_keys(),
        )
    }

    /// The most keys kept before the table is reset. Default: 1,000,000.
    #[must_use]
    pub fn max_keys(self, max_keys: usize) -> Self {
        Self::build(
            self.shared.buckets.quota(),
            self.shared.extractor.clone(),
            max_keys,
        )
    }

    /// The number of keys currently tracked.
    pub fn tracked_keys(&self) -> usize {
        self.shared.buckets.len()
    }
}

impl<K: KeyExtractor> Shared<K> {
    /// Takes a token from `key`'s local bucket: `None` when the request may
    /// pass, else the whole seconds (at least one) until it may.
    fn check_local(&self, key: &K::Key) -> Option<u64> {
        self.buckets.check(key).map(retry_after_seconds)
    }

    /// The 429 answer, counted.
    fn limited_rejection(&self, retry_after: u64, headers: &http::HeaderMap) -> Rejection {
        self.limited.increment(1);
        Rejection {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "too many requests\n",
            retry_after: Some(retry_after),
            grpc: false,
        }
        .for_request(headers)
    }

    /// Keeps the key table bounded.
    fn maintain(&self) {
        self.buckets.maintain();
    }
}

/// Whole seconds, rounded up and at least one: `Retry-After: 0` would invite
/// an immediate retry that is refused again.
fn retry_after_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl<S, K: KeyExtractor> Layer<S> for RateLimitLayer<K> {
    type Service = RateLimit<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The rate-limit service; made by [`RateLimitLayer`].
pub struct RateLimit<S, K: KeyExtractor = ClientIpKey> {
    inner: S,
    shared: Arc<Shared<K>>,
}

impl<S: std::fmt::Debug, K: KeyExtractor> std::fmt::Debug for RateLimit<S, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limits", &self.shared)
            .finish()
    }
}

impl<S: Clone, K: KeyExtractor> Clone for RateLimit<S, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S> RateLimit<S> {
    /// A layer that wraps services in `RateLimit`.
    pub fn layer(quota: Quota) -> RateLimitLayer {
        RateLimitLayer::new(quota)
    }
}

impl<S, K: KeyExtractor> RateLimit<S, K> {
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

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    K: KeyExtractor,
{
    type Response = Response<GuardBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let key = self.shared.extractor.extract(&parts);
        let req = Request::from_parts(parts, body);
        let Some(key) = key else {
            if self.shared.extractor.refuses_without_key() {
                self.shared.unknown_alarm.raise();
                return ResponseFuture::rejected(crate::firewall::unknown_client(req.headers()));
            }
            return ResponseFuture::inner(self.inner.call(req));
        };
        self.shared.maintain();
        match self.shared.check_local(&key) {
            None => ResponseFuture::inner(self.inner.call(req)),
            Some(seconds) => {
                ResponseFuture::rejected(self.shared.limited_rejection(seconds, req.headers()))
            }
        }
    }
}

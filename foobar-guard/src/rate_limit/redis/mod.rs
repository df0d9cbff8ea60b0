//! Rate limits shared by several instances through Redis (feature `redis`).
//!
//! [`RateLimitLayer::redis`] turns a local limit into one that every
//! instance pointing at the same Redis shares: a client spread over N load
//! balancers gets the limit once, not N times.
//!
//! - **GCRA in Redis.** Each decision that reaches Redis is one atomic Lua
//!   script on the client's key (the same key as the local limiter's, under
//!   a prefix), timed by Redis's own clock, so instances agree on "now".
//! - **Leases keep Redis off the hot path.** An instance takes a small
//!   allowance (by default 10% of the per-second rate) in one call and
//!   spends it locally; a background call refills it when half is spent.
//!   Only a request that finds its key's lease empty waits for Redis, and
//!   requests that come while a lease call is on its way wait for that one
//!   call rather than each asking Redis (all within the timeout).
//! - **The bound.** Over any window of `W` seconds, the instances together
//!   admit at most `burst + rate × W + N × ⌊1.5 × lease⌋` requests per key:
//!   Redis grants at most `burst + rate × W` tokens in the window (GCRA),
//!   and each of the N instances may enter it holding at most one and a
//!   half leases taken before. Unspent leased tokens are never returned, so
//!   an instance may also admit slightly fewer. See
//!   [`admission_bound`](RedisRateLimitLayer::admission_bound).
//! - **Redis slow or down.** A call that gets no answer within the timeout
//!   (50 ms by default) or fails is decided by the [`Fallback`] (by
//!   default the local limit, per instance), counted, and Redis is then
//!   taken as down: requests stop asking it at once (none waits for a
//!   dead Redis) while a background probe pings it with exponential
//!   back-off. When it answers, shared limits resume; leases still held
//!   are spent first. A restarted, empty Redis starts every client with a
//!   full bucket.
//!
//! The connection is made lazily (the first decision), so the layer can be
//! built before Redis is up; build it inside a Tokio runtime.
//!
//! ```no_run
//! use std::time::Duration;
//! use foobar_guard::rate_limit::{Fallback, RateLimitLayer, RedisLimits};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 100 requests per second per client across every load balancer.
//! let limit = RateLimitLayer::per_second(100, 20)?.redis(
//!     RedisLimits::new("redis://10.0.0.5:6379/")
//!         .timeout(Duration::from_millis(50))
//!         .fallback(Fallback::Local),
//! )?;
//! # let _ = limit;
//! # Ok(()) }
//! ```
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `foobar_rate_limit_decisions_total` | counter | `source` (`redis`, `lease`, `fallback`), `result` (`allowed`, `limited`) |
//! | `foobar_rate_limit_redis_duration_seconds` | histogram (each script call) | – |
//! | `foobar_rate_limit_redis_failures_total` | counter (calls that fell back) | `reason` (`timeout`, `error`) |
//! | `foobar_rate_limit_redis_up` | gauge (1 while Redis is asked) | – |
//! | `foobar_rate_limited_requests_total` | counter | – |

mod lease;
mod store;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderMap, Request, Response, StatusCode};
use metrics::Counter;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use self::lease::{Leases, Take};
use self::store::{Grant, Store, StoreConfig};
use super::{retry_after_seconds, ClientIpKey, KeyExtractor, RateLimitLayer, Shared};
use crate::body::GuardBody;
use crate::response_future::{Rejection, ResponseFuture};

/// A rate-limit key as Redis stores it: its bytes after the key prefix.
/// Implemented for addresses, strings, byte vectors and integers.
pub trait RedisKey {
    /// Appends this key's bytes to `out`. Distinct keys must give distinct
    /// bytes.
    fn write_redis_key(&self, out: &mut Vec<u8>);
}

impl RedisKey for IpAddr {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{self}");
    }
}

impl RedisKey for String {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl RedisKey for &'static str {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl RedisKey for Vec<u8> {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl RedisKey for u64 {
    fn write_redis_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_string().as_bytes());
    }
}

/// How a request is decided when Redis does not answer in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fallback {
    /// The layer's own quota, per instance (N instances then admit up to N
    /// times the limit while Redis is away). The default.
    #[default]
    Local,
    /// Fail open: admit every request.
    Allow,
    /// Fail closed: refuse every request with `503` and `Retry-After: 1`.
    Refuse,
}

/// Where the shared limits live and how Redis failures are handled; given
/// to [`RateLimitLayer::redis`].
#[derive(Clone, Debug)]
pub struct RedisLimits {
    url: String,
    timeout: Duration,
    lease: Option<u32>,
    fallback: Fallback,
    prefix: String,
    backoff_min: Duration,
    backoff_max: Duration,
}

impl RedisLimits {
    /// Limits stored in the Redis at `url` (`redis://host:port/db`, or
    /// `redis+unix:///path`), with the defaults: a 50 ms timeout, leases of
    /// 10% of the per-second rate, [`Fallback::Local`], keys prefixed
    /// `foobar:rl:`, reconnection probes every 50 ms doubling to 5 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: Duration::from_millis(50),
            lease: None,
            fallback: Fallback::Local,
            prefix: String::from("foobar:rl:"),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
        }
    }

    /// The longest a request waits for Redis before the [`Fallback`]
    /// decides it. Default: 50 ms.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Tokens taken from Redis at once and spent locally (1 asks Redis for
    /// every request). Default: 10% of the per-second rate, at least 1, at
    /// most the burst.
    #[must_use]
    pub fn lease(mut self, tokens: u32) -> Self {
        self.lease = Some(tokens);
        self
    }

    /// What decides requests while Redis does not answer. Default:
    /// [`Fallback::Local`].
    #[must_use]
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// The prefix of every key in Redis. Limits with different quotas
    /// must use different prefixes. Default: `foobar:rl:`.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The first and the longest pause between reconnection probes after
    /// Redis failed. Default: 50 ms, doubling up to 5 s.
    #[must_use]
    pub fn reconnect_backoff(mut self, first: Duration, longest: Duration) -> Self {
        self.backoff_min = first;
        self.backoff_max = longest.max(first);
        self
    }
}

/// Why [`RateLimitLayer::redis`] could not build the layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisSetupError {
    /// The Redis URL is not one the client understands.
    #[error("invalid Redis URL: {0}")]
    Url(#[source] redis::RedisError),
    /// The timeout or a reconnection pause is zero.
    #[error("the Redis timeout and reconnection pauses must be longer than zero")]
    ZeroDuration,
    /// The layer was built outside a Tokio runtime (its connection and
    /// probes run as tasks).
    #[error("the Redis rate limit must be built inside a Tokio runtime")]
    NoRuntime,
}

impl<K: KeyExtractor> RateLimitLayer<K>
where
    K::Key: RedisKey,
{
    /// Shares this limit with every instance using the same Redis (and key
    /// prefix); this layer's own quota becomes the local fallback. See
    /// the [`redis` module docs](crate::rate_limit::redis).
    ///
    /// # Errors
    /// [`RedisSetupError`] for a bad URL, a zero duration, or no Tokio
    /// runtime.
    pub fn redis(self, limits: RedisLimits) -> Result<RedisRateLimitLayer<K>, RedisSetupError> {
        if limits.timeout.is_zero() || limits.backoff_min.is_zero() {
            return Err(RedisSetupError::ZeroDuration);
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisSetupError::NoRuntime);
        }
        let quota = self.shared.buckets.quota();
        let interval = quota.replenish_interval();
        let burst = quota.burst_size().get();
        let per_second =
            (1.0 / interval.as_secs_f64().max(f64::MIN_POSITIVE)).min(f64::from(u32::MAX));
        let lease = limits
            .lease
            .unwrap_or((per_second / 10.0).round() as u32)
            .clamp(1, burst);
        let client = redis::Client::open(limits.url.as_str()).map_err(RedisSetupError::Url)?;
        let store = Store::new(
            client,
            StoreConfig {
                timeout: limits.timeout,
                backoff_min: limits.backoff_min,
                backoff_max: limits.backoff_max,
                interval_us: interval.as_secs_f64() * 1e6,
                burst,
            },
        )
        .map_err(RedisSetupError::Url)?;
        crate::metric_help::describe();
        Ok(RedisRateLimitLayer {
            shared: Arc::new(RedisShared {
                leases: Leases::new(lease, self.shared.buckets.max_keys()),
                local: self.shared,
                store: Arc::new(store),
                fallback: limits.fallback,
                prefix: limits.prefix.into_bytes(),
                burst,
                per_second,
                decisions: Decisions::new(),
            }),
        })
    }
}

/// Counters of decisions by source and result.
#[derive(Debug)]
struct Decisions {
    redis_allowed: Counter,
    redis_limited: Counter,
    lease_allowed: Counter,
    lease_limited: Counter,
    fallback_allowed: Counter,
    fallback_limited: Counter,
}

impl Decisions {
    fn new() -> Self {
        let counter = |source: &'static str, result: &'static str| metrics::counter!("foobar_rate_limit_decisions_total", "source" => source, "result" => result);
        Self {
            redis_allowed: counter("redis", "allowed"),
            redis_limited: counter("redis", "limited"),
            lease_allowed: counter("lease", "allowed"),
            lease_limited: counter("lease", "limited"),
            fallback_allowed: counter("fallback", "allowed"),
            fallback_limited: counter("fallback", "limited"),
        }
    }
}

struct RedisShared<K: KeyExtractor> {
    local: Arc<Shared<K>>,
    store: Arc<Store>,
    leases: Leases<K::Key>,
    fallback: Fallback,
    prefix: Vec<u8>,
    burst: u32,
    per_second: f64,
    decisions: Decisions,
}

impl<K: KeyExtractor> std::fmt::Debug for RedisShared<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimit")
            .field("local", &self.local)
            .field("store", &self.store)
            .field("lease", &self.leases.size())
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

/// Why a request waits.
enum Slow {
    /// It asks Redis for `want` tokens.
    Fetch { want: u32, lease_call: bool },
    /// It waits for the lease call on its way.
    Await(tokio::sync::watch::Receiver<()>),
}

/// What the layer answers.
enum Verdict {
    Allow,
    /// 429 after this many seconds.
    Limit(u64),
    /// 503: Redis is away and the fallback refuses.
    Unavailable,
}

impl<K: KeyExtractor> RedisShared<K>
where
    K::Key: RedisKey,
{
    fn redis_key(&self, key: &K::Key) -> Vec<u8> {
        let mut bytes = self.prefix.clone();
        key.write_redis_key(&mut bytes);
        bytes
    }

    /// Decides without Redis.
    fn fall_back(&self, key: &K::Key) -> Verdict {
        let verdict = match self.fallback {
            Fallback::Local => match self.local.check_local(key) {
                None => Verdict::Allow,
                Some(seconds) => Verdict::Limit(seconds),
            },
            Fallback::Allow => Verdict::Allow,
            Fallback::Refuse => Verdict::Unavailable,
        };
        match verdict {
            Verdict::Allow => self.decisions.fallback_allowed.increment(1),
            _ => self.decisions.fallback_limited.increment(1),
        }
        verdict
    }

    /// Asks Redis for `want` tokens on behalf of one request (the first is
    /// its own), settling the lease with the rest.
    async fn fetch(self: Arc<Self>, key: K::Key, want: u32, lease_call: bool) -> Verdict {
        let timeout = self.store.timeout();
        self.fetch_within(key, want, lease_call, timeout).await
    }

    async fn fetch_within(
        self: Arc<Self>,
        key: K::Key,
        want: u32,
        lease_call: bool,
        timeout: Duration,
    ) -> Verdict {
        let grant = self
            .store
            .clone()
            .take_within(self.redis_key(&key), want, timeout)
            .await;
        let now = Instant::now();
        match grant {
            Ok(Grant::Tokens(tokens)) => {
                self.leases.settle(&key, lease_call, tokens - 1, None, now);
                self.decisions.redis_allowed.increment(1);
                Verdict::Allow
            }
            Ok(Grant::Empty(wait)) => {
                self.leases.settle(&key, lease_call, 0, Some(wait), now);
                self.decisions.redis_limited.increment(1);
                Verdict::Limit(retry_after_seconds(wait))
            }
            Err(_) => {
                self.leases.settle(&key, lease_call, 0, None, now);
                self.fall_back(&key)
            }
        }
    }

    /// Waits (at most the timeout in all) for the lease call on its way,
    /// then decides on the lease it brought, or asks Redis for this
    /// request's token alone in the time left.
    async fn after_lease_call(
        self: Arc<Self>,
        key: K::Key,
        mut settled: tokio::sync::watch::Receiver<()>,
    ) -> Verdict {
        let started = Instant::now();
        let timeout = self.store.timeout();
        // The sender is dropped when the call is settled: `changed` then
        // fails at once.
        let waited = tokio::time::timeout(timeout, settled.changed()).await;
        if waited.is_err() || !self.store.is_up() {
            return self.fall_back(&key);
        }
        match self.leases.take_after_wait(&key, Instant::now()) {
            Take::Spent { refill } => {
                if refill {
                    self.refill(key);
                }
                self.decisions.lease_allowed.increment(1);
                Verdict::Allow
            }
            Take::Wait(wait) => {
                self.decisions.lease_limited.increment(1);
                Verdict::Limit(retry_after_seconds(wait))
            }
            Take::Fetch { want, lease_call } => {
                let left = timeout.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return self.fall_back(&key);
                }
                self.fetch_within(key, want, lease_call, left).await
            }
            // Not returned after a wait; decide locally rather than wait
            // again.
            Take::Await(_) => self.fall_back(&key),
        }
    }

    /// Refills `key`'s lease in the background.
    fn refill(self: &Arc<Self>, key: K::Key) {
        let shared = self.clone();
        let want = self.leases.size();
        tokio::spawn(async move {
            let grant = shared
                .store
                .clone()
                .take(shared.redis_key(&key), want)
                .await;
            let now = Instant::now();
            match grant {
                Ok(Grant::Tokens(tokens)) => shared.leases.settle(&key, true, tokens, None, now),
                Ok(Grant::Empty(wait)) => shared.leases.settle(&key, true, 0, Some(wait), now),
                Err(_) => shared.leases.settle(&key, true, 0, None, now),
            }
        });
    }

    fn rejection(&self, verdict: &Verdict, headers: &HeaderMap) -> Option<Rejection> {
        match *verdict {
            Verdict::Allow => None,
            Verdict::Limit(seconds) => Some(self.local.limited_rejection(seconds, headers)),
            Verdict::Unavailable => Some(
                Rejection {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: "rate limit unavailable\n",
                    retry_after: Some(1),
                    grpc: false,
                }
                .for_request(headers),
            ),
        }
    }
}

/// Limits the request rate per client across every instance sharing a
/// Redis; made by [`RateLimitLayer::redis`]. See the
/// [module docs](self).
pub struct RedisRateLimitLayer<K: KeyExtractor = ClientIpKey> {
    shared: Arc<RedisShared<K>>,
}

impl<K: KeyExtractor> Clone for RedisRateLimitLayer<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K: KeyExtractor> std::fmt::Debug for RedisRateLimitLayer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.fmt(f)
    }
}

impl<K: KeyExtractor> RedisRateLimitLayer<K> {
    /// The tokens of one local lease.
    pub fn lease_size(&self) -> u32 {
        self.shared.leases.size()
    }

    /// Whether Redis is asked now (false between a failure and the probe
    /// that finds it back).
    pub fn redis_up(&self) -> bool {
        self.shared.store.is_up()
    }

    /// The keys holding a local lease.
    pub fn leased_keys(&self) -> usize {
        self.shared.leases.len()
    }

    /// The most requests per key that `instances` instances sharing this
    /// limit admit together over any `window`, while Redis answers:
    /// `burst + rate × window + instances × ⌊1.5 × lease⌋`.
    pub fn admission_bound(&self, instances: u32, window: Duration) -> u64 {
        let granted = f64::from(self.shared.burst) + self.shared.per_second * window.as_secs_f64();
        granted.floor() as u64 + u64::from(instances) * u64::from(self.shared.leases.most_held())
    }
}

impl<S, K: KeyExtractor> Layer<S> for RedisRateLimitLayer<K> {
    type Service = RedisRateLimit<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RedisRateLimit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The shared rate-limit service; made by [`RedisRateLimitLayer`].
pub struct RedisRateLimit<S, K: KeyExtractor = ClientIpKey> {
    inner: S,
    shared: Arc<RedisShared<K>>,
}

impl<S: std::fmt::Debug, K: KeyExtractor> std::fmt::Debug for RedisRateLimit<S, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimit")
            .field("inner", &self.inner)
            .field("limits", &self.shared)
            .finish()
    }
}

impl<S: Clone, K: KeyExtractor> Clone for RedisRateLimit<S, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, K: KeyExtractor> RedisRateLimit<S, K> {
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

type BoxedResponse<B, E> = Pin<Box<dyn Future<Output = Result<Response<GuardBody<B>>, E>> + Send>>;

pin_project! {
    /// Response future of [`RedisRateLimit`]: decided at once (a leased
    /// token, a local refusal, the fallback) or after asking Redis.
    pub struct RedisResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Decided { #[pin] future: ResponseFuture<F> },
        AskingRedis { future: BoxedResponse<B, E> },
    }
}

impl<F, B, E> std::fmt::Debug for RedisResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisResponseFuture")
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for RedisResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<GuardBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Decided { future } => future.poll(cx),
            KindProj::AskingRedis { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, B, E> RedisResponseFuture<F, B, E> {
    fn decided(future: ResponseFuture<F>) -> Self {
        Self {
            kind: Kind::Decided { future },
        }
    }
}

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for RedisRateLimit<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    K: KeyExtractor,
    K::Key: RedisKey,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<GuardBody<ResBody>>;
    type Error = S::Error;
    type Future = RedisResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let (parts, body) = req.into_parts();
        let key = shared.local.extractor.extract(&parts);
        let req = Request::from_parts(parts, body);
        let Some(key) = key else {
            if shared.local.extractor.refuses_without_key() {
                shared.local.unknown_alarm.raise();
                return RedisResponseFuture::decided(ResponseFuture::rejected(
                    crate::firewall::unknown_client(req.headers()),
                ));
            }
            return RedisResponseFuture::decided(ResponseFuture::inner(self.inner.call(req)));
        };
        let verdict = if shared.store.is_up() {
            match shared.leases.take(&key, Instant::now()) {
                Take::Spent { refill } => {
                    if refill {
                        shared.refill(key);
                    }
                    shared.decisions.lease_allowed.increment(1);
                    Verdict::Allow
                }
                Take::Wait(wait) => {
                    shared.decisions.lease_limited.increment(1);
                    Verdict::Limit(retry_after_seconds(wait))
                }
                Take::Fetch { want, lease_call } => {
                    return self.ask_redis(key, Slow::Fetch { want, lease_call }, req)
                }
                Take::Await(settled) => return self.ask_redis(key, Slow::Await(settled), req),
            }
        } else {
            shared.local.maintain();
            shared.fall_back(&key)
        };
        match shared.rejection(&verdict, req.headers()) {
            None => RedisResponseFuture::decided(ResponseFuture::inner(self.inner.call(req))),
            Some(rejection) => RedisResponseFuture::decided(ResponseFuture::rejected(rejection)),
        }
    }
}

impl<S, K> RedisRateLimit<S, K>
where
    K: KeyExtractor,
    K::Key: RedisKey,
{
    /// The slow path: the request waits for Redis (at most the timeout),
    /// then runs on the ready service taken from `self`.
    fn ask_redis<ReqBody, ResBody>(
        &mut self,
        key: K::Key,
        slow: Slow,
        req: Request<ReqBody>,
    ) -> RedisResponseFuture<S::Future, ResBody, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Send,
        ReqBody: Send + 'static,
        ResBody: Send + 'static,
    {
        // The service made ready by `poll_ready` goes with the request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let future = async move {
            let verdict = match slow {
                Slow::Fetch { want, lease_call } => {
                    shared.clone().fetch(key, want, lease_call).await
                }
                Slow::Await(settled) => shared.clone().after_lease_call(key, settled).await,
            };
            match shared.rejection(&verdict, req.headers()) {
                None => ResponseFuture::inner(inner.call(req)).await,
                Some(rejection) => Ok(rejection.into_response()),
            }
        };
        RedisResponseFuture {
            kind: Kind::AskingRedis {
                future: Box::pin(future),
            },
        }
    }
}

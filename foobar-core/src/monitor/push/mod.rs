//! Pushes metrics to a collector on an interval.
//!
//! [`Push`] renders the [`PrometheusExporter`]'s text on every tick and sends
//! it to a [`PushTarget`]: a Prometheus Pushgateway group or a generic HTTP
//! source (what log services such as Sumo Logic take). It never blocks the
//! application and never keeps more than two renderings in memory:
//!
//! - the ticker puts each rendering in a one-slot mailbox; a rendering the
//!   sender has not taken yet is replaced (the latest wins) and counted as
//!   dropped;
//! - the sender sends with a timeout and, on failure, retries with
//!   exponential back-off and full jitter, switching to the newest rendering
//!   when one arrives meanwhile;
//! - successes, failures and drops are counted (`metrics_push_total{result}`,
//!   `metrics_push_dropped_total`, and [`PushHandle::stats`]) and failures
//!   logged.
//!
//! HTTPS uses the operating system's roots unless a client configuration
//! is given with [`PushBuilder::tls`], typically from
//! [`ClientTls`](crate::tls::ClientTls) (a private CA, a client
//! certificate).

mod target;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics::Counter;
use rand::Rng as _;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use self::target::PushTarget;
use crate::metrics::PrometheusExporter;
use crate::shutdown::Shutdown;

/// How much of a collector's error response is kept for the log.
const ERROR_BODY_LIMIT: usize = 4096;

/// A push client's configuration mistake, found when it is set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The collector URL cannot be pushed to.
    #[error("invalid push URL {url:?}: {problem}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: UrlProblem,
    },
    /// A header name or value is not valid HTTP.
    #[error("invalid push header {name:?}: {source}")]
    InvalidHeader {
        /// The header name as given.
        name: String,
        /// What is wrong with it.
        #[source]
        source: HeaderProblem,
    },
    /// The operating system's roots could not be loaded for an `https` URL
    /// (and no TLS configuration was given).
    #[error("no TLS roots for {url:?}: {source}")]
    NoRoots {
        /// The URL.
        url: String,
        /// Why the roots could not be loaded.
        #[source]
        source: std::io::Error,
    },
    /// rustls refused the TLS configuration.
    #[error("push TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// What is wrong with a collector URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UrlProblem {
    /// It does not parse as a URL.
    #[error("{0}")]
    Syntax(#[source] http::uri::InvalidUri),
    /// Its scheme is neither `http` nor `https`.
    #[error("unsupported scheme {0:?}")]
    Scheme(String),
    /// It is a path, not an absolute URL.
    #[error("not an absolute URL")]
    NotAbsolute,
    /// It names no host.
    #[error("no host")]
    NoHost,
    /// A Pushgateway job name is empty.
    #[error("the job name is empty")]
    EmptyJob,
}

/// What is wrong with a header.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderProblem {
    /// The name is not a valid header name.
    #[error("{0}")]
    Name(#[from] http::header::InvalidHeaderName),
    /// The value is not a valid header value.
    #[error("{0}")]
    Value(#[from] http::header::InvalidHeaderValue),
}

/// Why one push did not go through. Pushes are retried; the last failure
/// is in [`PushStats::last_error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushFailure {
    /// The request could not be built.
    #[error("cannot build the request: {0}")]
    Request(#[from] http::Error),
    /// The collector could not be reached (connection refused, TLS
    /// failure, connection closed).
    #[error("{0}")]
    Unreachable(#[source] TransportError),
    /// No answer came within the push timeout.
    #[error("no answer within {after:?}")]
    Timeout {
        /// The timeout.
        after: Duration,
    },
    /// The collector answered with an error status.
    #[error("collector answered {status}: {body}")]
    Rejected {
        /// Its status.
        status: http::StatusCode,
        /// The start of its answer (up to 4 KiB), for the log.
        body: String,
    },
}

/// A connection-level failure of the HTTP client; its message names every
/// cause down the chain.
#[derive(Debug)]
pub struct TransportError(hyper_util::client::legacy::Error);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(&self.0);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

/// Entry point: `Push::builder(target)`.
#[derive(Debug)]
pub struct Push;

impl Push {
    /// A push client for `target` with the defaults: every 15 s, 5 s
    /// timeout, back-off from 500 ms to 30 s.
    pub fn builder(target: PushTarget) -> PushBuilder {
        PushBuilder {
            target,
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            tls: None,
            delete_on_shutdown: false,
        }
    }
}

/// Configures and starts a push client.
#[derive(Debug)]
#[must_use]
pub struct PushBuilder {
    target: PushTarget,
    interval: Duration,
    timeout: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
    delete_on_shutdown: bool,
}

impl PushBuilder {
    /// How often to render and push. Default: 15 s. At least 10 ms.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Time limit for one push, connection included. Default: 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Retry delays: the first retry waits up to `initial`, each next one up
    /// to twice as long, never more than `max` (each delay is drawn at
    /// random below its bound, so many servers do not retry in step).
    /// Default: 500 ms to 30 s.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial.max(Duration::from_millis(1));
        self.backoff_max = max.max(self.backoff_initial);
        self
    }

    /// TLS settings for an `https` collector, e.g. from
    /// [`ClientTls::build`](crate::tls::ClientTls::build) (a private CA, a
    /// client certificate). Its ALPN list is replaced: pushes speak
    /// HTTP/1.1. Default: the operating system's roots.
    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// On shutdown, sends one `DELETE` to the target (within the timeout):
    /// a Pushgateway then forgets this instance's group instead of serving
    /// its last values forever. Await [`PushHandle::stopped`] before the
    /// process exits to let it finish. Default: off.
    pub fn delete_on_shutdown(mut self, on: bool) -> Self {
        self.delete_on_shutdown = on;
        self
    }

    /// Starts pushing `exporter`'s metrics; stops when `shutdown` fires.
    ///
    /// # Errors
    /// [`PushError::NoRoots`] if the URL is `https`, no configuration was
    /// given and the system's roots cannot be loaded.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn(
        self,
        exporter: PrometheusExporter,
        shutdown: &Shutdown,
    ) -> Result<PushHandle, PushError> {
        self.spawn_with(move || exporter.render(), shutdown)
    }

    /// Like [`spawn`](Self::spawn), with any source of the body (it runs on
    /// every tick, on a runtime thread: keep it quick).
    ///
    /// # Errors
    /// As [`spawn`](Self::spawn).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn_with<F>(self, render: F, shutdown: &Shutdown) -> Result<PushHandle, PushError>
    where
        F: Fn() -> String + Send + 'static,
    {
        crate::metrics::help::describe();
        let client = self.client()?;
        let shared = Arc::new(Shared::default());
        let handle = PushHandle {
            shared: shared.clone(),
        };
        tokio::spawn(produce(
            shared.clone(),
            render,
            self.interval,
            shutdown.clone(),
        ));
        let sender = Sender {
            shared,
            client,
            target: self.target,
            timeout: self.timeout,
            backoff_initial: self.backoff_initial,
            backoff_max: self.backoff_max,
            delete_on_shutdown: self.delete_on_shutdown,
            pushed: metrics::counter!("metrics_push_total", "result" => "success"),
            failed: metrics::counter!("metrics_push_total", "result" => "failure"),
            dropped: metrics::counter!("metrics_push_dropped_total"),
        };
        tokio::spawn(sender.run(shutdown.clone()));
        Ok(handle)
    }

    fn client(&self) -> Result<Client<HttpsConnector<HttpConnector>, Full<Bytes>>, PushError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let with_tls = match &self.tls {
            Some(config) => {
                let mut config = rustls::ClientConfig::clone(config);
                // The connector sets ALPN itself and refuses a preset one.
                config.alpn_protocols.clear();
                builder.with_tls_config(config)
            }
            None => match builder.with_provider_and_native_roots(provider.clone()) {
                Ok(b) => b,
                Err(source) if self.target.uri().scheme_str() == Some("https") => {
                    return Err(PushError::NoRoots {
                        url: self.target.uri().to_string(),
                        source,
                    });
                }
                // Plain HTTP never uses the roots.
                Err(_) => {
                    let config = rustls::ClientConfig::builder_with_provider(provider)
                        .with_safe_default_protocol_versions()?
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth();
                    hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
                }
            },
        };
        let connector = with_tls.https_or_http().enable_http1().build();
        Ok(Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector))
    }
}

/// Watches a running push client.
#[derive(Clone, Debug)]
pub struct PushHandle {
    shared: Arc<Shared>,
}

impl PushHandle {
    /// Counters and state of this client.
    pub fn stats(&self) -> PushStats {
        let s = &self.shared;
        let last_error = s
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        PushStats {
            pushed_total: s.pushed.load(Ordering::Relaxed),
            failed_total: s.failed.load(Ordering::Relaxed),
            dropped_total: s.dropped.load(Ordering::Relaxed),
            queued: usize::from(s.slot_is_full()),
            sending: s.sending.load(Ordering::Relaxed),
            last_success_unix_ms: s.last_success_unix_ms.load(Ordering::Relaxed),
            last_error,
        }
    }

    /// Whether both tasks have stopped (after shutdown).
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.is_cancelled()
    }

    /// Completes once the sender has stopped.
    pub async fn stopped(&self) {
        self.shared.stopped.cancelled().await;
    }
}

/// A push client's counters.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct PushStats {
    /// Pushes the collector accepted.
    pub pushed_total: u64,
    /// Attempts that failed (connection, timeout, non-2xx answer).
    pub failed_total: u64,
    /// Renderings replaced by a newer one before they could be sent.
    pub dropped_total: u64,
    /// Renderings waiting to be sent: 0 or 1, never more.
    pub queued: usize,
    /// Whether a rendering is being sent or retried now.
    pub sending: bool,
    /// When the last push succeeded, ms since the Unix epoch (0: never).
    pub last_success_unix_ms: u64,
    /// The last failure, if any (in `/status.json`, its message).
    #[serde(serialize_with = "message")]
    pub last_error: Option<Arc<PushFailure>>,
}

fn message<S: serde::Serializer>(
    failure: &Option<Arc<PushFailure>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match failure {
        Some(failure) => serializer.collect_str(failure),
        None => serializer.serialize_none(),
    }
}

#[derive(Debug, Default)]
struct Shared {
    slot: Mutex<Option<Bytes>>,
    ready: Notify,
    pushed: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    sending: AtomicBool,
    last_success_unix_ms: AtomicU64,
    last_error: Mutex<Option<Arc<PushFailure>>>,
    stopped: CancellationToken,
}

impl Shared {
    fn slot_is_full(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn take(&self) -> Option<Bytes> {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

async fn produce<F>(shared: Arc<Shared>, render: F, interval: Duration, shutdown: Shutdown)
where
    F: Fn() -> String,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let dropped = metrics::counter!("metrics_push_dropped_total");
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.wait() => return,
        }
        let body = Bytes::from(render());
        let replaced = shared
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(body);
        if replaced.is_some() {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            dropped.increment(1);
        }
        shared.ready.notify_one();
    }
}

struct Sender {
    shared: Arc<Shared>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    target: PushTarget,
    timeout: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    delete_on_shutdown: bool,
    pushed: Counter,
    failed: Counter,
    dropped: Counter,
}

impl Sender {
    async fn run(self, shutdown: Shutdown) {
        'next: loop {
            tokio::select! {
                () = self.shared.ready.notified() => {}
                () = shutdown.wait() => break,
            }
            let Some(mut body) = self.shared.take() else {
                continue;
            };
            self.shared.sending.store(true, Ordering::Relaxed);
            let mut failures: u32 = 0;
            loop {
                let outcome = tokio::select! {
                    outcome = self.send(body.clone()) => outcome,
                    () = shutdown.wait() => break 'next,
                };
                match outcome {
                    Ok(()) => {
                        self.pushed.increment(1);
                        self.shared.pushed.fetch_add(1, Ordering::Relaxed);
                        self.shared
                            .last_success_unix_ms
                            .store(unix_ms(), Ordering::Relaxed);
                        break;
                    }
                    Err(error) => {
                        self.failed.increment(1);
                        self.shared.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(url = %self.target.uri(), %error, failures, "metrics push failed");
                        *self
                            .shared
                            .last_error
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(error));
                    }
                }
                let delay = self.backoff(failures);
                failures = failures.saturating_add(1);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.wait() => break 'next,
                }
                // A newer rendering replaces the one that failed.
                if let Some(newer) = self.shared.take() {
                    body = newer;
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                    self.dropped.increment(1);
                }
            }
            self.shared.sending.store(false, Ordering::Relaxed);
        }
        self.shared.sending.store(false, Ordering::Relaxed);
        if self.delete_on_shutdown {
            match self.exchange(http::Method::DELETE, Bytes::new()).await {
                Ok(()) => tracing::debug!(url = %self.target.uri(), "metrics group deleted"),
                Err(error) => {
                    tracing::warn!(url = %self.target.uri(), %error, "cannot delete the metrics group");
                }
            }
        }
        self.shared.stopped.cancel();
    }

    fn backoff(&self, failures: u32) -> Duration {
        backoff_delay(
            self.backoff_initial,
            self.backoff_max,
            failures,
            rand::rng().random_range(0.0..=1.0),
        )
    }

    async fn send(&self, body: Bytes) -> Result<(), PushFailure> {
        self.exchange(self.target.method_ref().clone(), body).await
    }

    /// One request to the target with its headers, within the timeout;
    /// `Ok` for a 2xx answer.
    async fn exchange(&self, method: http::Method, body: Bytes) -> Result<(), PushFailure> {
        let mut request = Request::builder()
            .method(method)
            .uri(self.target.uri().clone())
            .body(Full::new(body))?;
        request.headers_mut().extend(
            self.target
                .headers()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| PushFailure::Unreachable(TransportError(error)))?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let body = Limited::new(response.into_body(), ERROR_BODY_LIMIT)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Err(PushFailure::Rejected {
                status,
                body: String::from_utf8_lossy(&body).trim().to_owned(),
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(PushFailure::Timeout {
                after: self.timeout,
            }))
    }
}

/// Full jitter: `random` (0 to 1) times `min(max, initial * 2^failures)`.
fn backoff_delay(initial: Duration, max: Duration, failures: u32, random: f64) -> Duration {
    let factor = 1u32 << failures.min(20);
    initial
        .saturating_mul(factor)
        .min(max)
        .mul_f64(random.clamp(0.0, 1.0))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_below_it() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let bound = |failures| backoff_delay(initial, max, failures, 1.0);
        assert_eq!(bound(0), Duration::from_millis(100));
        assert_eq!(bound(1), Duration::from_millis(200));
        assert_eq!(bound(4), Duration::from_millis(1600));
        assert_eq!(bound(5), max);
        assert_eq!(bound(u32::MAX), max);
        assert_eq!(backoff_delay(initial, max, 3, 0.0), Duration::ZERO);
        assert_eq!(
            backoff_delay(initial, max, 3, 0.5),
            Duration::from_millis(400)
        );
    }
}

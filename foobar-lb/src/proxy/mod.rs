//! The HTTP(S) reverse proxy: the main instance of the load balancer.
//!
//! [`Proxy`] is a `tower::Service<http::Request<B>>` that never fails: every
//! request gets the backend's response or a short error page.
//!
//! | situation | answer |
//! |---|---|
//! | no backend available | `503`, `no healthy backend` |
//! | cannot connect, connection lost before the response | `502` |
//! | no response head within the response timeout, connect timeout | `504` |
//!
//! What it does to each request: removes hop-by-hop headers (except an
//! `Upgrade` being tunnelled), appends `X-Forwarded-For`, RFC 7239
//! `Forwarded` and `Via`, sets `X-Forwarded-Proto` and `X-Forwarded-Host`,
//! adds an `X-Request-Id` when there is none (echoed on the response), and
//! streams bodies both ways. Idempotent requests without a body (GET, HEAD,
//! OPTIONS, TRACE, PUT, DELETE) are retried on another backend after a
//! transport error, within a retry budget; other requests are never
//! replayed once sent. `Upgrade` requests (WebSocket) are tunnelled end to
//! end after the backend's `101`.

mod body;
pub mod headers;
mod relay;
mod upstream;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use foobar_core::tls::ClientTls;
use foobar_core::{ConnInfo, Shutdown, Snapshot as StatusSnapshot, StatusSource, UpstreamName};
use http::header::{HeaderValue, CONTENT_TYPE, VIA};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use metrics::Counter;
use tower::retry::budget::{Budget, TpsBudget};
use tower::Service;

pub use self::body::{IntoProxyBody, ProxyBody};
use self::headers::{Forwarding, X_REQUEST_ID};
pub use self::relay::Relay;
pub use self::upstream::Upstream;
use self::upstream::{Exchange, UpstreamConfig, UpstreamUrl};
use crate::backend::{Backend, BackendConfig};
use crate::backends::{Backends, BackendsBuilder, InFlight};
use crate::error::{Error, UpstreamError};
use crate::health::OutlierDetection;
use crate::key::{NoKey, RequestKey};
use crate::policy::{Policy, RoundRobin};

/// The reverse proxy. Cheap to clone; clones share backends and pools.
///
/// ```no_run
/// use foobar_lb::{Proxy, policy::RoundRobin};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let proxy = Proxy::builder(RoundRobin::new()).build()?;
/// proxy.add_backend("http://127.0.0.1:8081")?;
/// proxy.add_backend("http://127.0.0.1:8082")?;
/// foobar_core::Server::builder().bind("127.0.0.1:8080")?.build()?.serve(proxy).await?;
/// # Ok(()) }
/// ```
pub struct Proxy<P: Policy = RoundRobin, K = NoKey> {
    shared: Arc<Shared<P, K>>,
}

impl<P: Policy, K> Clone for Proxy<P, K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<P: Policy, K> std::fmt::Debug for Proxy<P, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("backends", &self.shared.backends)
            .finish_non_exhaustive()
    }
}

struct Shared<P: Policy, K> {
    backends: Backends<Upstream, P>,
    key: K,
    upstream: UpstreamConfig,
    forwarding: Forwarding,
    response_timeout: Option<Duration>,
    budget: Option<TpsBudget>,
    max_retries: u32,
    retries: Counter,
}

/// Builds a [`Proxy`].
#[derive(Debug)]
#[must_use]
pub struct ProxyBuilder<P, K = NoKey> {
    backends: BackendsBuilder<P>,
    key: K,
    upstream: UpstreamConfig,
    tls: Option<ClientTls>,
    via_name: String,
    trust_forwarded: bool,
    response_timeout: Option<Duration>,
    retry_percent: Option<f32>,
    max_retries: u32,
}

impl<P: Policy> Proxy<P, NoKey> {
    /// A builder for a proxy balancing with `policy`.
    pub fn builder(policy: P) -> ProxyBuilder<P, NoKey> {
        ProxyBuilder {
            backends: Backends::builder(policy),
            key: NoKey,
            upstream: UpstreamConfig::default(),
            tls: None,
            via_name: "foobar".to_owned(),
            trust_forwarded: false,
            response_timeout: Some(Duration::from_secs(60)),
            retry_percent: Some(0.2),
            max_retries: 2,
        }
    }
}

impl<P: Policy, K> ProxyBuilder<P, K> {
    /// The affinity key for [`ConsistentHash`](crate::policy::ConsistentHash)
    /// (e.g. [`HttpKey::ClientIp`](crate::HttpKey::ClientIp)).
    pub fn key<K2>(self, key: K2) -> ProxyBuilder<P, K2> {
        ProxyBuilder {
            backends: self.backends,
            key,
            upstream: self.upstream,
            tls: self.tls,
            via_name: self.via_name,
            trust_forwarded: self.trust_forwarded,
            response_timeout: self.response_timeout,
            retry_percent: self.retry_percent,
            max_retries: self.max_retries,
        }
    }

    /// TLS for `https://` upstreams: the CA to verify backends with and an
    /// optional client certificate (mutual TLS). ALPN is set by the proxy.
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Time to establish a connection to a backend. Default: 3 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.upstream.connect_timeout = timeout;
        self
    }

    /// Time from sending a request to receiving the response head; `None`
    /// waits forever. Default: 60 s.
    pub fn response_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Longest wait for the next bytes of a backend's response body once
    /// its head has come; after it the response is cut off (an HTTP/1
    /// client's connection closed, an HTTP/2 client's stream reset).
    /// `None` waits forever (long polls, event streams with rare events).
    /// Default: 60 s.
    pub fn response_body_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.upstream.body_timeout = timeout;
        self
    }

    /// How long an idle pooled upstream connection is kept. Default: 60 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.upstream.idle_timeout = timeout;
        self
    }

    /// Idle connections kept per backend; keep it above the expected number
    /// of concurrent requests, or connections churn. Default: 1024.
    pub fn max_idle_per_backend(mut self, max: usize) -> Self {
        self.upstream.max_idle_per_backend = max;
        self
    }

    /// Speak HTTP/2 to backends (prior knowledge on `http://`, required
    /// through ALPN on `https://`). Default: HTTP/1.1, or HTTP/2 when an
    /// `https://` backend offers it.
    pub fn http2_only(mut self, on: bool) -> Self {
        self.upstream.http2_only = on;
        self
    }

    /// Retries of idempotent requests as a share of all requests (0.2 = at
    /// most 20% extra load, plus 10 retries a second of reserve); `None`
    /// disables retries. Default: 0.2.
    pub fn retry_budget(mut self, percent: Option<f32>) -> Self {
        self.retry_percent = percent.map(|p| p.clamp(0.0, 10.0));
        self
    }

    /// Most retries of one request. Default: 2.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The name this proxy gives itself in `Via`. Default: `foobar`.
    pub fn via(mut self, name: impl Into<String>) -> Self {
        self.via_name = name.into();
        self
    }

    /// Keep `X-Forwarded-Proto` and `X-Forwarded-Host` sent by clients (set
    /// it only behind a trusted proxy). Default: off, they are replaced.
    pub fn trust_forwarded(mut self, on: bool) -> Self {
        self.trust_forwarded = on;
        self
    }

    /// See [`BackendsBuilder::panic_mode`].
    pub fn panic_mode(mut self, on: bool) -> Self {
        self.backends = self.backends.panic_mode(on);
        self
    }

    /// See [`BackendsBuilder::outlier_detection`].
    pub fn outlier_detection(mut self, config: OutlierDetection) -> Self {
        self.backends = self.backends.outlier_detection(config);
        self
    }

    /// See [`BackendsBuilder::initial_rtt`].
    pub fn initial_rtt(mut self, rtt: Duration) -> Self {
        self.backends = self.backends.initial_rtt(rtt);
        self
    }

    /// The signal that stops health checks, ejection timers and WebSocket
    /// tunnels.
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.backends = self.backends.shutdown(shutdown);
        self
    }

    /// The name on the status page. Default: `"lb"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.backends = self.backends.name(name);
        self
    }

    /// Builds the proxy (with no backends yet).
    ///
    /// # Errors
    /// [`Error::Tls`] if the TLS client configuration cannot be built.
    pub fn build(mut self) -> Result<Proxy<P, K>, Error> {
        if let Some(tls) = &self.tls {
            self.upstream.tls = Some(tls.build()?);
        }
        let budget = self
            .retry_percent
            .map(|percent| TpsBudget::new(Duration::from_secs(10), 10, percent));
        Ok(Proxy {
            shared: Arc::new(Shared {
                backends: self.backends.build(),
                key: self.key,
                upstream: self.upstream,
                forwarding: Forwarding::new(&self.via_name, self.trust_forwarded),
                response_timeout: self.response_timeout,
                budget,
                max_retries: self.max_retries,
                retries: metrics::counter!("foobar_lb_retries_total"),
            }),
        })
    }
}

impl<P: Policy, K> Proxy<P, K> {
    /// Adds a backend, `http://host:port` or `https://host:port`, weight 1.
    ///
    /// # Errors
    /// [`Error::InvalidUpstream`] naming the URL; [`Error::DuplicateBackend`].
    pub fn add_backend(&self, url: &str) -> Result<Arc<Backend>, Error> {
        self.add_weighted_backend(url, 1)
    }

    /// Adds a backend with a weight.
    ///
    /// # Errors
    /// [`Error::InvalidUpstream`] naming the URL; [`Error::DuplicateBackend`].
    pub fn add_weighted_backend(&self, url: &str, weight: u32) -> Result<Arc<Backend>, Error> {
        let parsed = UpstreamUrl::parse(url)?;
        let upstream = Upstream::new(&parsed, &self.shared.upstream)?;
        let mut config = BackendConfig::new(url.trim()).weight(weight);
        if let Some(addr) = parsed.addr {
            config = config.addr(addr);
        }
        self.shared.backends.add(config, upstream)
    }

    /// The backend set: remove, drain, re-weight, inspect.
    pub fn backends(&self) -> &Backends<Upstream, P> {
        &self.shared.backends
    }
}

impl<P, K, B> Service<Request<B>> for Proxy<P, K>
where
    P: Policy,
    K: RequestKey<Request<ProxyBody>>,
    B: IntoProxyBody,
{
    type Response = Response<ProxyBody>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        let req = req.map(IntoProxyBody::into_proxy_body);
        Box::pin(async move { Ok(shared.handle(req).await) })
    }
}

/// What is needed to send an idempotent, bodiless request again.
struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Replay {
    fn request(&self) -> Request<ProxyBody> {
        let mut req = Request::new(ProxyBody::empty());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

enum Failure {
    Timeout,
    Upstream(UpstreamError),
}

/// The proxy's own answers, the same on the hyper path and the relay.
#[derive(Clone, Copy, Debug)]
enum Fault {
    NoBackend,
    ConnectTimeout,
    Connect,
    ResponseTimeout,
    Upstream,
    BadRequestBody,
}

impl Fault {
    fn status(self) -> StatusCode {
        match self {
            Self::NoBackend => StatusCode::SERVICE_UNAVAILABLE,
            Self::ConnectTimeout | Self::ResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Connect | Self::Upstream => StatusCode::BAD_GATEWAY,
            Self::BadRequestBody => StatusCode::BAD_REQUEST,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::NoBackend => "no healthy backend\n",
            Self::ConnectTimeout => "gateway timeout: cannot connect to the backend in time\n",
            Self::Connect => "bad gateway: cannot connect to the backend\n",
            Self::ResponseTimeout => "gateway timeout: the backend did not answer in time\n",
            Self::Upstream => "bad gateway: the backend connection failed\n",
            Self::BadRequestBody => "bad request: malformed chunked body\n",
        }
    }
}

impl<P: Policy, K> Shared<P, K>
where
    K: RequestKey<Request<ProxyBody>>,
{
    async fn handle(&self, mut req: Request<ProxyBody>) -> Response<ProxyBody> {
        let key = self.key.key(&req);
        let info = req.extensions_mut().remove::<ConnInfo>();
        let upgrade = headers::is_upgrade(req.headers());
        headers::remove_hop_by_hop(req.headers_mut(), upgrade);
        let request_id = self.forwarding.apply(&mut req, info.as_ref());
        let downstream = upgrade.then(|| hyper::upgrade::on(&mut req));

        let replay = (self.budget.is_some()
            && !upgrade
            && is_idempotent(req.method())
            && http_body::Body::is_end_stream(req.body()))
        .then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
        });
        if let Some(budget) = &self.budget {
            budget.deposit();
        }

        let mut avoid: Option<Arc<Backend>> = None;
        let mut attempt = 0;
        loop {
            let picked = self
                .backends
                .with_pick(key, avoid.as_ref(), |backend, upstream| {
                    (self.backends.start(backend), upstream.clone())
                });
            let Some((mut in_flight, upstream)) = picked else {
                metrics::counter!("foobar_lb_no_backend_total").increment(1);
                return self.error(Fault::NoBackend, &request_id);
            };
            // Boxed once here rather than moved, large, through the timeout
            // and this future's own state.
            let sent = Box::pin(upstream.send(req));
            let result = match self.response_timeout {
                Some(limit) => match tokio::time::timeout(limit, sent).await {
                    Ok(result) => result.map_err(Failure::Upstream),
                    Err(_) => Err(Failure::Timeout),
                },
                None => sent.await.map_err(Failure::Upstream),
            };
            match result {
                Ok(exchange) => {
                    in_flight.record(exchange.response.status().is_server_error());
                    return self.respond(exchange, in_flight, downstream, request_id);
                }
                Err(Failure::Timeout) => {
                    in_flight.record(true);
                    return self.error(Fault::ResponseTimeout, &request_id);
                }
                Err(Failure::Upstream(error)) => {
                    in_flight.record(true);
                    let backend = in_flight.backend().clone();
                    drop(in_flight);
                    tracing::debug!(backend = backend.id(), %error, "upstream request failed");
                    if let Some(replay) = &replay {
                        if attempt < self.max_retries
                            && self.budget.as_ref().is_some_and(TpsBudget::withdraw)
                        {
                            attempt += 1;
                            self.retries.increment(1);
                            req = replay.request();
                            avoid = Some(backend);
                            continue;
                        }
                    }
                    let fault = if error.is_timeout() {
                        Fault::ConnectTimeout
                    } else if error.is_connect() {
                        Fault::Connect
                    } else {
                        Fault::Upstream
                    };
                    return self.error(fault, &request_id);
                }
            }
        }
    }

    fn respond(
        &self,
        exchange: Exchange,
        in_flight: InFlight,
        downstream: Option<hyper::upgrade::OnUpgrade>,
        request_id: HeaderValue,
    ) -> Response<ProxyBody> {
        let Exchange {
            response: mut resp,
            conn,
        } = exchange;
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        let version = resp.version();
        let headers = resp.headers_mut();
        headers::remove_hop_by_hop(headers, switching);
        headers.append(VIA, self.forwarding.via(version));
        headers.entry(X_REQUEST_ID).or_insert(request_id);
        // For the access log: which backend answered.
        resp.extensions_mut()
            .insert(UpstreamName(in_flight.backend().shared_id()));
        match (switching, downstream) {
            (true, Some(downstream)) => {
                let upstream = hyper::upgrade::on(&mut resp);
                let shutdown = self.backends.shutdown_signal().clone();
                tokio::spawn(tunnel(downstream, upstream, in_flight, shutdown));
                resp.map(|_| ProxyBody::empty())
            }
            _ => resp.map(|body| {
                ProxyBody::upstream(body, Some(in_flight), conn, self.upstream.body_timeout)
            }),
        }
    }

    fn error(&self, fault: Fault, request_id: &HeaderValue) -> Response<ProxyBody> {
        let message = fault.message();
        let mut resp = Response::new(ProxyBody::full(Bytes::from_static(message.as_bytes())));
        *resp.status_mut() = fault.status();
        let headers = resp.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(X_REQUEST_ID, request_id.clone());
        headers.insert(VIA, self.forwarding.via(Version::HTTP_11));
        resp
    }
}

/// Copies bytes both ways between the client's and the backend's upgraded
/// connections until either side closes or shutdown.
async fn tunnel(
    downstream: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    in_flight: InFlight,
    shutdown: Shutdown,
) {
    let (downstream, upstream) = match tokio::try_join!(downstream, upstream) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(%error, "protocol upgrade failed");
            return;
        }
    };
    let mut downstream = TokioIo::new(downstream);
    let mut upstream = TokioIo::new(upstream);
    tokio::select! {
        result = tokio::io::copy_bidirectional(&mut downstream, &mut upstream) => {
            if let Err(error) = result {
                tracing::debug!(%error, backend = in_flight.backend().id(), "tunnel closed with an error");
            }
        }
        () = shutdown.wait() => {}
    }
    drop(in_flight);
}

impl<P: Policy, K> StatusSource for Proxy<P, K>
where
    K: Send + Sync + 'static,
{
    fn name(&self) -> &str {
        self.shared.backends.name()
    }

    fn snapshot(&self) -> StatusSnapshot {
        self.shared.backends.snapshot()
    }

    fn ready(&self) -> bool {
        self.shared.backends.ready()
    }
}

//! The HTTP(S) reverse proxy: the main instance of the load balancer.
//!
//! [`Proxy`] is a `tower::Service<http::Request<B>>` that never fails: every
//! request gets the backend's response or a short error page. Only what the
//! backend is to blame for counts against its passive health.
//!
//! | situation | answer | counts against the backend |
//! |---|---|---|
//! | no backend available | `503`, `no healthy backend` | – |
//! | cannot connect, connection lost before the response | `502` | yes |
//! | a malformed response, or a `101` nobody asked for | `502`, never retried | yes |
//! | no response head within the response timeout, connect timeout | `504` | yes |
//! | the client's body malformed or cut short | `400` | no |
//! | the client's body stopped coming (the server's body read timeout, or the response timeout first) | `408` | no |
//! | no, several or an invalid `Host` in HTTP/1.1 | `400` | no |
//! | `CONNECT` without [`ProxyBuilder::tunnel_connect`] | `405` | no |
//!
//! What it does to each request: checks `Host` (RFC 9112 section 3.2; an
//! absolute-form target's or HTTP/2 `:authority` wins over it), removes
//! hop-by-hop headers (except an `Upgrade` being tunnelled, and `Host`
//! whatever `Connection` names), appends `X-Forwarded-For`, RFC 7239
//! `Forwarded` and `Via`, sets `X-Forwarded-Proto` and `X-Forwarded-Host`,
//! adds an `X-Request-Id` when there is none (echoed on the response), and
//! streams bodies both ways (a body of unknown length goes chunked, a
//! `GET`'s too). Idempotent requests without a body (GET, HEAD, OPTIONS,
//! TRACE, PUT, DELETE) are retried on another backend after a transport
//! error, within a retry budget; other requests are never replayed once
//! sent. `Upgrade` requests (WebSocket) are tunnelled end to end after the
//! backend's `101`; `CONNECT`, when enabled, after its `2xx`.

mod body;
pub mod headers;
mod upstream;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use foobar_core::tls::ClientTls;
use foobar_core::{
    ConnInfo, Interim, Shutdown, Snapshot as StatusSnapshot, StatusSource, UpstreamName,
};
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE, HOST, VIA};
use http::uri::Authority;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use metrics::Counter;
use tower::retry::budget::{Budget, TpsBudget};
use tower::Service;

use self::body::BodyProgress;
pub use self::body::{IntoProxyBody, ProxyBody};
use self::headers::{Forwarding, X_REQUEST_ID};
pub use self::upstream::Upstream;
pub(crate) use self::upstream::UpstreamUrl;
use self::upstream::{Answer, Exchange, UpstreamConfig, UpstreamHead};
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
    tunnel_connect: bool,
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
    tunnel_connect: bool,
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
            tunnel_connect: false,
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
            tunnel_connect: self.tunnel_connect,
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

    /// Idle connections kept per backend (per worker, when the proxy is
    /// shared by [`run_per_core`](foobar_core::runtime::run_per_core)
    /// workers: each reuses only the connections its own runtime opened);
    /// keep it above the expected number of concurrent requests, or
    /// connections churn. Default: 1024.
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

    /// The peers are trusted proxies (set it only when nothing else can
    /// connect, e.g. behind a firewall that admits only them): the
    /// forwarding fields they send are kept, this hop is appended to
    /// `X-Forwarded-For` and `Forwarded`, and their `X-Request-Id` is used.
    ///
    /// Default: off, the edge mode: a client's `Forwarded`, `X-Forwarded-*`,
    /// `X-Real-IP`, `X-Client-IP`, `X-Cluster-Client-IP`, `True-Client-IP`
    /// and `X-Request-Id`, also spelled with underscores
    /// (`X_Forwarded_For`, which CGI, WSGI and PHP read as the dashed
    /// name), are removed and replaced with this proxy's own.
    pub fn trust_forwarded(mut self, on: bool) -> Self {
        self.trust_forwarded = on;
        self
    }

    /// Pass `CONNECT` requests to the backends (forward proxies behind this
    /// one): the request keeps its `host:port` target and, once the backend
    /// answers `2xx`, the connection becomes a tunnel. Default: off,
    /// `CONNECT` is answered `405 Method Not Allowed`.
    pub fn tunnel_connect(mut self, on: bool) -> Self {
        self.tunnel_connect = on;
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
                tunnel_connect: self.tunnel_connect,
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
        let (config, upstream) = self.upstream_for(url, weight)?;
        self.shared.backends.add(config, upstream)
    }

    /// A backend's configuration and client, from its URL.
    fn upstream_for(&self, url: &str, weight: u32) -> Result<(BackendConfig, Upstream), Error> {
        let parsed = UpstreamUrl::parse(url)?;
        let upstream = Upstream::new(&parsed, &self.shared.upstream)?;
        let mut config = BackendConfig::new(url.trim()).weight(weight);
        if let Some(addr) = parsed.addr {
            config = config.addr(addr);
        }
        Ok((config, upstream))
    }

    /// Brings the backend set to `wanted` (see [`discovery`](crate::discovery)):
    /// new backends are added, changed weights applied, and backends not
    /// listed drained, then removed once idle. Nothing changes if any URL
    /// is invalid or listed twice.
    ///
    /// # Errors
    /// [`Error::InvalidUpstream`] naming the URL; [`Error::DuplicateBackend`].
    pub fn sync_backends(
        &self,
        wanted: &[crate::discovery::DiscoveredBackend],
    ) -> Result<crate::discovery::SyncReport, Error> {
        crate::discovery::sync(&self.shared.backends, wanted, |backend| {
            self.upstream_for(backend.url(), backend.weight())
        })
    }

    /// Follows `source` in a background task until the set's shutdown
    /// signal fires (or the source ends): each list it produces is applied
    /// with [`sync_backends`](Self::sync_backends); a list that cannot be
    /// used leaves the set as it was. See [`discovery`](crate::discovery).
    pub fn discover<D: crate::discovery::Discovery>(
        &self,
        source: D,
    ) -> crate::discovery::DiscoveryHandle
    where
        K: Send + Sync + 'static,
    {
        let proxy = self.clone();
        crate::discovery::follow(
            source,
            self.backends().name(),
            self.backends().shutdown_signal().clone(),
            move |wanted| proxy.sync_backends(wanted),
        )
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

/// A request on its way upstream, ready for every attempt.
// One per request, built once and never moved in a loop: the variants'
// sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Outgoing {
    /// To HTTP/1.1 backends: the head, encoded once, and the body.
    Http1 {
        head: UpstreamHead,
        body: ProxyBody,
        interim: Option<Interim>,
    },
    /// To HTTP/2 backends: the request, and what makes it again.
    Http2 {
        req: Option<Request<ProxyBody>>,
        replay: Option<Replay>,
    },
}

impl Outgoing {
    /// One attempt, its response head due within `timeout`.
    async fn send(
        &mut self,
        upstream: &Upstream,
        timeout: Option<Duration>,
    ) -> Result<Exchange, UpstreamError> {
        match self {
            Self::Http1 {
                head,
                body,
                interim,
            } => {
                upstream
                    .send_http1(head, Pin::new(body), interim.as_ref(), timeout)
                    .await
            }
            Self::Http2 { req, replay } => {
                let req = match (req.take(), replay) {
                    (Some(req), _) => req,
                    (None, Some(replay)) => replay.request(),
                    (None, None) => Request::new(ProxyBody::empty()),
                };
                let sent = upstream.send(req);
                match timeout {
                    Some(limit) => tokio::time::timeout(limit, sent)
                        .await
                        .unwrap_or(Err(UpstreamError::ResponseTimeout(limit))),
                    None => sent.await,
                }
            }
        }
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

pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The proxy's own answers.
#[derive(Clone, Copy, Debug)]
enum Fault {
    NoBackend,
    ConnectTimeout,
    Connect,
    ResponseTimeout,
    Upstream,
    /// The backend's response was not valid HTTP.
    BadResponse,
    /// The backend switched protocols without being asked to.
    UnexpectedSwitch,
    /// The client's request body was malformed or cut short.
    BadRequestBody,
    /// The client's request body stopped coming: the server's body read
    /// timeout, or the response timeout first.
    RequestBodyTimeout,
    /// An HTTP/1.1 request without `Host`.
    MissingHost,
    /// More than one `Host`, or an invalid one.
    BadHost,
    /// `CONNECT` while tunnelling is off.
    ConnectRefused,
}

impl Fault {
    fn status(self) -> StatusCode {
        match self {
            Self::NoBackend => StatusCode::SERVICE_UNAVAILABLE,
            Self::ConnectTimeout | Self::ResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Connect | Self::Upstream | Self::BadResponse | Self::UnexpectedSwitch => {
                StatusCode::BAD_GATEWAY
            }
            Self::BadRequestBody | Self::MissingHost | Self::BadHost => StatusCode::BAD_REQUEST,
            Self::RequestBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::ConnectRefused => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::NoBackend => "no healthy backend\n",
            Self::ConnectTimeout => "gateway timeout: cannot connect to the backend in time\n",
            Self::Connect => "bad gateway: cannot connect to the backend\n",
            Self::ResponseTimeout => "gateway timeout: the backend did not answer in time\n",
            Self::Upstream => "bad gateway: the backend connection failed\n",
            Self::BadResponse => "bad gateway: the backend's response was malformed\n",
            Self::UnexpectedSwitch => "bad gateway: the backend switched protocols unasked\n",
            Self::BadRequestBody => "bad request: the request body was malformed or cut short\n",
            Self::RequestBodyTimeout => "request timeout: the request body stopped coming\n",
            Self::MissingHost => "bad request: an HTTP/1.1 request needs a Host header\n",
            Self::BadHost => "bad request: more than one Host header, or an invalid one\n",
            Self::ConnectRefused => "method not allowed: this proxy does not tunnel CONNECT\n",
        }
    }

    /// Whether the backend is to blame (its passive health counts it).
    fn is_backends(self) -> bool {
        !matches!(
            self,
            Self::NoBackend
                | Self::BadRequestBody
                | Self::RequestBodyTimeout
                | Self::MissingHost
                | Self::BadHost
                | Self::ConnectRefused
        )
    }
}

/// Methods listed in `Allow` when `CONNECT` is refused.
const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE";

/// Checks `Host` as RFC 9112 section 3.2 asks: exactly one in an HTTP/1.1
/// request, a valid authority, and replaced by the target's authority
/// when the request has one (absolute form, HTTP/2 `:authority`).
fn check_host<B>(req: &mut Request<B>) -> Result<(), Fault> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Fault::BadHost);
    }
    match host {
        None if req.version() == Version::HTTP_11 => return Err(Fault::MissingHost),
        Some(host) if !host.is_empty() && Authority::try_from(host.as_bytes()).is_err() => {
            return Err(Fault::BadHost)
        }
        _ => {}
    }
    if let Some(authority) = req.uri().authority() {
        let value = HeaderValue::from_str(authority.as_str()).map_err(|_| Fault::BadHost)?;
        req.headers_mut().insert(HOST, value);
    }
    Ok(())
}

impl<P: Policy, K> Shared<P, K>
where
    K: RequestKey<Request<ProxyBody>>,
{
    async fn handle(&self, mut req: Request<ProxyBody>) -> Response<ProxyBody> {
        let connect = req.method() == Method::CONNECT;
        let refused = if connect && !self.tunnel_connect {
            Some(Fault::ConnectRefused)
        } else {
            check_host(&mut req).err()
        };
        if let Some(fault) = refused {
            let id = req
                .headers()
                .get(X_REQUEST_ID)
                .cloned()
                .unwrap_or_else(headers::new_request_id);
            return self.error(fault, &id);
        }
        let key = self.key.key(&req);
        let info = req.extensions_mut().remove::<ConnInfo>();
        let upgrade = connect || headers::is_upgrade(req.headers());
        let downstream = upgrade.then(|| hyper::upgrade::on(&mut req));
        let bodiless = http_body::Body::is_end_stream(req.body());
        // Sent again after a failure where nothing can have been done twice.
        let replayable =
            self.budget.is_some() && !upgrade && is_idempotent(req.method()) && bodiless;
        // What became of the client's upload tells its faults from the
        // backend's.
        let progress = (!bodiless).then(|| Arc::new(BodyProgress::default()));
        if let Some(progress) = &progress {
            req = req.map(|body| body.watched(progress.clone()));
        }
        let (mut outgoing, request_id) = if self.upstream.http2_only {
            let request_id = self.forwarding.apply(&mut req, info.as_ref());
            let replay = replayable.then(|| Replay {
                method: req.method().clone(),
                uri: req.uri().clone(),
                version: req.version(),
                headers: req.headers().clone(),
            });
            let outgoing = Outgoing::Http2 {
                req: Some(req),
                replay,
            };
            (outgoing, request_id)
        } else {
            // Encoded once, with the proxy's header edits, and sent as it is
            // on every attempt.
            let (mut parts, body) = req.into_parts();
            let mut request_id = None;
            let head = UpstreamHead::new(&parts, &body, |out| {
                request_id = Some(self.forwarding.write_request_fields(
                    out,
                    &parts.headers,
                    parts.version,
                    info.as_ref(),
                    upgrade && !connect,
                ));
            });
            let interim = parts.extensions.remove::<Interim>();
            let request_id = request_id.unwrap_or_else(headers::new_request_id);
            let outgoing = Outgoing::Http1 {
                head,
                body,
                interim,
            };
            (outgoing, request_id)
        };
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
            if connect && !upstream.is_http1() {
                // Tunnels go to plain HTTP/1.1 backends only.
                return self.fail(Fault::ConnectRefused, in_flight, &request_id);
            }
            // Boxed once here rather than moved, large, through this
            // future's own state.
            let result = Box::pin(outgoing.send(&upstream, self.response_timeout)).await;
            let error = match result {
                Ok(exchange) => {
                    let status = exchange.status();
                    if status == StatusCode::SWITCHING_PROTOCOLS
                        && (downstream.is_none() || connect)
                    {
                        in_flight.record(true);
                        return self.error(Fault::UnexpectedSwitch, &request_id);
                    }
                    in_flight.record(status.is_server_error());
                    return self.respond(exchange, in_flight, downstream, connect, request_id);
                }
                Err(UpstreamError::ResponseTimeout(_)) => {
                    let fault = if progress.as_ref().is_some_and(|p| p.waiting_on_client()) {
                        Fault::RequestBodyTimeout
                    } else {
                        Fault::ResponseTimeout
                    };
                    return self.fail(fault, in_flight, &request_id);
                }
                Err(error) => error,
            };
            tracing::debug!(backend = in_flight.backend().id(), %error, "upstream request failed");
            if progress.as_ref().is_some_and(|p| p.timed_out()) {
                return self.fail(Fault::RequestBodyTimeout, in_flight, &request_id);
            }
            if progress.as_ref().is_some_and(|p| p.failed()) {
                return self.fail(Fault::BadRequestBody, in_flight, &request_id);
            }
            if error.is_bad_response() {
                return self.fail(Fault::BadResponse, in_flight, &request_id);
            }
            in_flight.record(true);
            if replayable
                && attempt < self.max_retries
                && self.budget.as_ref().is_some_and(TpsBudget::withdraw)
            {
                attempt += 1;
                self.retries.increment(1);
                avoid = Some(in_flight.backend().clone());
                continue;
            }
            let fault = if error.is_timeout() {
                Fault::ConnectTimeout
            } else if error.is_connect() {
                Fault::Connect
            } else {
                Fault::Upstream
            };
            return self.fail(fault, in_flight, &request_id);
        }
    }

    /// Answers a failed exchange, counting it against the backend only
    /// when the backend is to blame.
    fn fail(
        &self,
        fault: Fault,
        mut in_flight: InFlight,
        request_id: &HeaderValue,
    ) -> Response<ProxyBody> {
        if fault.is_backends() {
            in_flight.record(true);
        }
        drop(in_flight);
        self.error(fault, request_id)
    }

    fn respond(
        &self,
        exchange: Exchange,
        in_flight: InFlight,
        downstream: Option<hyper::upgrade::OnUpgrade>,
        connect: bool,
        request_id: HeaderValue,
    ) -> Response<ProxyBody> {
        let status = exchange.status();
        let switching = status == StatusCode::SWITCHING_PROTOCOLS;
        let tunnel = switching || (connect && status.is_success());
        // For the access log: which backend answered.
        let upstream = UpstreamName(in_flight.backend().shared_id());
        let mut resp = match (exchange, downstream) {
            (Exchange::Http1(Answer { head, conn, .. }), Some(downstream)) if tunnel => {
                let shutdown = self.backends.shutdown_signal().clone();
                tokio::spawn(tunnel_bytes(downstream, conn, in_flight, shutdown));
                Response::from_parts(head.parts, ProxyBody::empty())
            }
            (exchange, _) => exchange.into_response(Some(in_flight), self.upstream.body_timeout),
        };
        let version = resp.version();
        let headers = resp.headers_mut();
        headers::remove_hop_by_hop(headers, switching);
        headers::normalize_content_length(headers);
        headers.append(VIA, self.forwarding.via(version));
        headers.entry(X_REQUEST_ID).or_insert(request_id);
        resp.extensions_mut().insert(upstream);
        resp
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
        if matches!(fault, Fault::ConnectRefused) {
            headers.insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        }
        headers.insert(X_REQUEST_ID, request_id.clone());
        headers.insert(VIA, self.forwarding.via(Version::HTTP_11));
        resp
    }
}

/// Copies bytes both ways between the client's upgraded connection and
/// the backend's, after what the backend sent past its answer, until
/// either side closes or shutdown.
async fn tunnel_bytes(
    downstream: hyper::upgrade::OnUpgrade,
    upstream: upstream::PooledConn,
    in_flight: InFlight,
    shutdown: Shutdown,
) {
    let downstream = match downstream.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%error, "protocol upgrade failed");
            return;
        }
    };
    let mut downstream = TokioIo::new(downstream);
    let mut upstream = upstream.into_conn();
    let ahead = std::mem::take(&mut upstream.read_buf);
    let copied = async {
        if !ahead.is_empty() {
            tokio::io::AsyncWriteExt::write_all(&mut downstream, &ahead).await?;
        }
        tokio::io::copy_bidirectional(&mut downstream, &mut upstream.stream).await
    };
    tokio::select! {
        result = copied => {
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

//! The admin listener's service: metrics, probes and the live status page.
//!
//! | path | answers |
//! |---|---|
//! | `GET /metrics` | every metric, Prometheus text format |
//! | `GET /healthz` | `200 ok` while the process serves (liveness) |
//! | `GET /readyz` | `200` when every registered [`StatusSource`] is ready, else `503` naming those that are not |
//! | `GET /status` | the status page: one self-contained HTML file that polls `/status.json` |
//! | `GET /status.json` | every source's [`Snapshot`](crate::status::Snapshot), host and process metrics, request rates, push client state |
//! | `GET /fleet` | with a [`Fleet`]: this listener's status and its peers' side by side, disagreements flagged, unreachable peers shown |
//! | `GET /fleet.json` | with a [`Fleet`]: `this` (this `/status.json`), `peers` (each one's last answer or error), `disagreements` |
//!
//! Serve it on its own address with its own [`Server`](crate::Server), away
//! from public traffic. Two guards stack on it:
//!
//! - an allow-list of client addresses: foobar-guard's firewall layer, as a
//!   connection layer of the admin server (`Server::serve_connections`);
//! - an optional bearer token ([`Admin::bearer_token`]) for `/metrics` and
//!   `/status.json` (and `/fleet.json`). The probes stay open for orchestrators, and `/status`
//!   is a static shell without data: it asks for the token (or reads it from
//!   the page's `#token=` fragment) and sends it with each poll.
//!
//! ```no_run
//! use foobar_core::admin::Admin;
//! use foobar_core::metrics::PrometheusExporter;
//! use foobar_core::monitor::Monitor;
//! use foobar_core::status::{Health, Snapshot, StatusSource};
//! use foobar_core::{Server, Shutdown};
//!
//! struct Edge;
//! impl StatusSource for Edge {
//!     fn name(&self) -> &str { "edge" }
//!     fn snapshot(&self) -> Snapshot { Snapshot::new("edge", &()).health(Health::Up) }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let shutdown = Shutdown::on_signals();
//! let admin = Admin::new(PrometheusExporter::install()?)
//!     .with_monitor(Monitor::start(&shutdown))
//!     .with_source(Edge)
//!     .bearer_token("change-me");
//! Server::builder()
//!     .bind("127.0.0.1:9090")?
//!     .shutdown(shutdown)
//!     .build()?
//!     .serve(admin)
//!     .await?;
//! # Ok(()) }
//! ```

mod auth;
mod fleet;
#[cfg(feature = "monitor")]
mod history;
mod status_json;

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use tower_service::Service;

use self::auth::BearerToken;
pub use self::fleet::{Fleet, FleetError};
use crate::metrics::PrometheusExporter;
#[cfg(feature = "monitor")]
use crate::monitor::Monitor;
#[cfg(feature = "push")]
use crate::monitor::PushHandle;
use crate::status::StatusSource;

/// The status page, served as is.
const STATUS_PAGE: &str = include_str!("status_page.html");
/// The fleet page, served as is.
const FLEET_PAGE: &str = include_str!("fleet_page.html");

/// Routes admin requests; see the [module docs](self) for the paths.
#[derive(Clone)]
pub struct Admin {
    exporter: PrometheusExporter,
    sources: Arc<Vec<Arc<dyn StatusSource>>>,
    #[cfg(feature = "monitor")]
    monitor: Option<Monitor>,
    /// The sources' counter rates, sampled on the monitor's tick.
    #[cfg(feature = "monitor")]
    history: Option<Arc<history::RateHistory>>,
    #[cfg(feature = "push")]
    pushes: Arc<Vec<PushHandle>>,
    token: Option<BearerToken>,
    fleet: Option<Fleet>,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.sources.iter().map(|s| s.name()).collect();
        let mut debug = f.debug_struct("Admin");
        debug.field("sources", &names);
        #[cfg(feature = "monitor")]
        debug.field("monitor", &self.monitor.is_some());
        #[cfg(feature = "push")]
        debug.field("pushes", &self.pushes.len());
        debug
            .field("fleet", &self.fleet.as_ref().map(Fleet::peer_names))
            .field("token", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// An admin service exposing `exporter`'s metrics, with no status
    /// sources, no monitor and no token.
    pub fn new(exporter: PrometheusExporter) -> Self {
        Self {
            exporter,
            sources: Arc::new(Vec::new()),
            #[cfg(feature = "monitor")]
            monitor: None,
            #[cfg(feature = "monitor")]
            history: None,
            #[cfg(feature = "push")]
            pushes: Arc::new(Vec::new()),
            token: None,
            fleet: None,
        }
    }

    /// Registers a status source: it appears on `/status` and
    /// `/status.json`, and gates `/readyz`.
    #[must_use]
    pub fn with_source(self, source: impl StatusSource) -> Self {
        self.with_shared_source(Arc::new(source))
    }

    /// Registers a status source the application also keeps.
    #[must_use]
    pub fn with_shared_source(mut self, source: Arc<dyn StatusSource>) -> Self {
        #[cfg(feature = "monitor")]
        if let Some(history) = &self.history {
            history.add_source(source.clone());
        }
        Arc::make_mut(&mut self.sources).push(source);
        self
    }

    /// Shows the monitor's host, process and request-rate figures. On its
    /// tick, the monitor also samples the counters the sources show as
    /// rates, so the page has their rates and recent history at once.
    #[cfg(feature = "monitor")]
    #[cfg_attr(docsrs, doc(cfg(feature = "monitor")))]
    #[must_use]
    pub fn with_monitor(mut self, monitor: Monitor) -> Self {
        let history = Arc::new(history::RateHistory::default());
        for source in self.sources.iter() {
            history.add_source(source.clone());
        }
        let sampled = history.clone();
        monitor.on_tick(Box::new(move || sampled.sample()));
        self.history = Some(history);
        self.monitor = Some(monitor);
        self
    }

    /// Shows a push client's counters.
    #[cfg(feature = "push")]
    #[cfg_attr(docsrs, doc(cfg(feature = "push")))]
    #[must_use]
    pub fn with_push(mut self, push: PushHandle) -> Self {
        Arc::make_mut(&mut self.pushes).push(push);
        self
    }

    /// Shows `fleet`'s peers beside this listener on `/fleet` and
    /// `/fleet.json` ([`Fleet::start`] it first).
    #[must_use]
    pub fn with_fleet(mut self, fleet: Fleet) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// Requires `Authorization: Bearer <token>` on `/metrics`,
    /// `/status.json` and `/fleet.json` (compared in constant time).
    #[must_use]
    pub fn bearer_token(mut self, token: &str) -> Self {
        self.token = Some(BearerToken::new(token));
        self
    }

    /// Whether every registered source is ready.
    pub fn is_ready(&self) -> bool {
        self.sources.iter().all(|s| s.ready())
    }

    fn route<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let path = req.uri().path();
        let protected = matches!(path, "/metrics" | "/status.json" | "/fleet.json");
        if protected {
            if let Some(token) = &self.token {
                if !token.admits(req.headers()) {
                    let mut response = text(StatusCode::UNAUTHORIZED, "bearer token required\n");
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    return response;
                }
            }
        }
        match path {
            "/metrics" => body(
                StatusCode::OK,
                crate::metrics::CONTENT_TYPE,
                Bytes::from(self.exporter.render()),
            ),
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => self.readyz(),
            "/status" | "/status/" => body(
                StatusCode::OK,
                "text/html; charset=utf-8",
                Bytes::from_static(STATUS_PAGE.as_bytes()),
            ),
            "/status.json" => body(
                StatusCode::OK,
                "application/json",
                status_json::render(self),
            ),
            "/fleet" | "/fleet/" if self.fleet.is_some() => body(
                StatusCode::OK,
                "text/html; charset=utf-8",
                Bytes::from_static(FLEET_PAGE.as_bytes()),
            ),
            "/fleet.json" => match &self.fleet {
                Some(fleet) => body(
                    StatusCode::OK,
                    "application/json",
                    Bytes::from(fleet.document(&status_json::document(self)).to_string()),
                ),
                None => text(StatusCode::NOT_FOUND, "no fleet configured\n"),
            },
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    fn readyz(&self) -> Response<Full<Bytes>> {
        let not_ready: Vec<&str> = self
            .sources
            .iter()
            .filter(|s| !s.ready())
            .map(|s| s.name())
            .collect();
        if not_ready.is_empty() {
            return text(StatusCode::OK, "ready\n");
        }
        let message = format!("not ready: {}\n", not_ready.join(", "));
        body(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            Bytes::from(message),
        )
    }
}

fn body(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(status: StatusCode, message: &'static str) -> Response<Full<Bytes>> {
    body(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(message.as_bytes()),
    )
}

impl<B> Service<Request<B>> for Admin {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        std::future::ready(Ok(self.route(&req)))
    }
}

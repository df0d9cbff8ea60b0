//! The load-balancer role: HTTPS in front, HTTPS with a client certificate
//! to the web servers.
//!
//! - Firewall 1 (connection level, before any TLS work), connection limits
//!   (total and per client), TLS termination with certificates from files
//!   (reloaded on SIGHUP).
//! - Request metrics and a per-client rate limit (429 with `Retry-After`).
//! - Round robin over the web servers, re-encrypting with the load
//!   balancer's client certificate (mTLS); active health checks on
//!   `/healthz` and passive outlier detection; idempotent requests retried
//!   on another server after a connection failure.
//! - An admin listener (`/metrics`, `/status`, `/readyz`) on its own address,
//!   behind its own allow-list.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use foobar_core::admin::Admin;
use foobar_core::metrics::{MetricsLayer, PrometheusExporter};
use foobar_core::monitor::Monitor;
use foobar_core::tls::ClientTls;
use foobar_core::{PlainTcp, Server, Shutdown};
use foobar_guard::rate_limit::RateLimitLayer;
use foobar_guard::tls::{TlsConfig, TlsLayer};
use foobar_guard::{ConnLimitLayer, FirewallLayer, Rules};
use foobar_lb::health::{HealthCheck, OutlierDetection};
use foobar_lb::policy::RoundRobin;
use foobar_lb::Proxy;
use tower::ServiceBuilder;

use crate::AppError;

/// Everything a load balancer needs.
#[derive(Debug)]
pub struct LbConfig {
    /// Where to serve HTTPS.
    pub listen: SocketAddr,
    /// Where to serve the admin endpoints.
    pub admin: SocketAddr,
    /// The served certificate chain (PEM file).
    pub cert: PathBuf,
    /// Its private key (PEM file).
    pub key: PathBuf,
    /// Firewall 1: who may connect.
    pub allow: Rules,
    /// Who may reach the admin listener.
    pub admin_allow: Rules,
    /// Requests per second per client address, and the burst.
    pub rate_limit: (u32, u32),
    /// Most open connections in all, and per client address.
    pub max_connections: (usize, usize),
    /// The web servers, as `https://host:port` URLs.
    pub backends: Vec<String>,
    /// The CA the web servers' certificates are verified with.
    pub upstream_ca: PathBuf,
    /// The load balancer's client certificate and key, for mTLS to the web
    /// servers.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The `lb` role's command-line flags.
pub const FLAGS: &[&str] = &[
    "listen",
    "admin",
    "cert",
    "key",
    "rules",
    "admin-rules",
    "rate",
    "burst",
    "max-connections",
    "max-per-client",
    "backend",
    "upstream-ca",
    "client-cert",
    "client-key",
];

/// The `lb` role's usage text.
pub const USAGE: &str = "\
lb: the HTTPS load balancer of the foobar stack

USAGE:
    lb --cert PEM --key PEM --upstream-ca PEM --backend URL... [OPTIONS]

OPTIONS:
    --listen ADDR           HTTPS address [default: 127.0.0.1:8443]
    --admin ADDR            admin address (/metrics, /status, /readyz) [default: 127.0.0.1:9901]
    --cert PEM, --key PEM   the served certificate chain and key (reloaded on SIGHUP)
    --rules FILE            Firewall 1 rules [default: allow everyone]
    --admin-rules FILE      who may reach the admin address [default: loopback only]
    --rate N, --burst N     requests per second per client address, and the burst [default: 200, 400]
    --max-connections N     open connections in all [default: 10000]
    --max-per-client N      open connections per client address [default: 256]
    --backend URL           a web server, https://host:port (repeatable)
    --upstream-ca PEM       the CA the web servers' certificates are verified with
    --client-cert PEM, --client-key PEM   the load balancer's client certificate (mTLS)
    -h, --help              print this help
";

impl LbConfig {
    /// Reads the configuration from command-line flags ([`FLAGS`]).
    ///
    /// # Errors
    /// A message naming the missing or bad flag, or the bad rules file.
    pub fn from_flags(flags: &crate::cli::Flags) -> Result<Self, String> {
        let rate: u32 = flags.parse_or("rate", 200)?;
        let burst: u32 = flags.parse_or("burst", rate.saturating_mul(2))?;
        let client_cert = match (flags.get("client-cert"), flags.get("client-key")) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            _ => return Err("--client-cert and --client-key go together".to_owned()),
        };
        if flags.all("backend").is_empty() {
            return Err("at least one --backend is required".to_owned());
        }
        Ok(Self {
            listen: flags.parse_or("listen", SocketAddr::from(([127, 0, 0, 1], 8443)))?,
            admin: flags.parse_or("admin", SocketAddr::from(([127, 0, 0, 1], 9901)))?,
            cert: flags.require("cert")?,
            key: flags.require("key")?,
            allow: crate::cli::rules(flags.get("rules"), "default allow\n")?,
            admin_allow: crate::cli::rules(flags.get("admin-rules"), crate::cli::LOOPBACK_ONLY)?,
            rate_limit: (rate.max(1), burst.max(1)),
            max_connections: (
                flags.parse_or("max-connections", 10_000)?,
                flags.parse_or("max-per-client", 256)?,
            ),
            backends: flags.all("backend").to_vec(),
            upstream_ca: flags.require("upstream-ca")?,
            client_cert,
        })
    }
}

/// Runs a load balancer until `shutdown` fires.
///
/// # Errors
/// Bad certificates, URLs or addresses.
pub async fn run(config: LbConfig, shutdown: Shutdown) -> Result<(), AppError> {
    let exporter = PrometheusExporter::install()?;
    let monitor = Monitor::start(&shutdown);

    let tls = TlsConfig::builder()
        .certificate(&config.cert, &config.key)
        .build()?;
    tls.reload_on_sighup(shutdown.clone())?;
    let conn_stage = ServiceBuilder::new()
        .layer(FirewallLayer::new(config.allow))
        .layer(ConnLimitLayer::new(config.max_connections.0).per_client(config.max_connections.1))
        .layer(TlsLayer::new(tls))
        .service(PlainTcp);

    let mut upstream_tls = ClientTls::new().ca_file(&config.upstream_ca);
    if let Some((cert, key)) = &config.client_cert {
        upstream_tls = upstream_tls.identity_files(cert, key);
    }
    let proxy = Proxy::builder(RoundRobin::new())
        .name("lb")
        .tls(upstream_tls)
        .connect_timeout(Duration::from_secs(1))
        // A web server that stops answering is taken out after a few
        // failed requests, long before the next health check notices.
        .outlier_detection(
            OutlierDetection::new()
                .consecutive_failures(3)
                .base_ejection_time(Duration::from_secs(2))
                .max_ejection_time(Duration::from_secs(30)),
        )
        .shutdown(shutdown.clone())
        .build()?;
    for backend in &config.backends {
        proxy.add_backend(backend)?;
    }
    HealthCheck::http("/healthz")
        .interval(Duration::from_millis(500))
        .timeout(Duration::from_millis(400))
        .rise(2)
        .fall(2)
        .spawn_http(proxy.backends());

    let (rate, burst) = config.rate_limit;
    let http = ServiceBuilder::new()
        .layer(MetricsLayer::new("lb").with_rates(monitor.rates()))
        .layer(RateLimitLayer::per_second(rate, burst)?)
        .service(proxy.clone());

    let front = Server::builder()
        .bind_addr(config.listen)
        .shutdown(shutdown.clone())
        .build()?;
    let admin = Server::builder()
        .bind_addr(config.admin)
        .shutdown(shutdown.clone())
        .build()?;
    tracing::info!(listen = %front.local_addr(), admin = %admin.local_addr(), backends = ?config.backends, "load balancer up");
    let admin_service = ServiceBuilder::new()
        .layer(FirewallLayer::new(config.admin_allow))
        .service(
            Admin::new(exporter)
                .with_monitor(monitor)
                .with_source(proxy),
        );
    tokio::try_join!(
        front.serve_connections(conn_stage, http),
        admin.serve(admin_service)
    )?;
    Ok(())
}

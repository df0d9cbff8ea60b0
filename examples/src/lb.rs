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
//! - An access log (JSON or nginx `combined`, reopened on SIGHUP) naming
//!   the web server that answered each request.
//! - An admin listener (`/metrics`, `/status`, `/readyz`) on its own address,
//!   behind its own allow-list.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use foobar_core::access_log::{AccessLogLayer, AccessLogWriter, Format};
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
use serde::Deserialize;
use tower::ServiceBuilder;

use crate::config::{self, ConfigError, Parsed};
use crate::web::LogFormat;
use crate::AppError;

/// The `lb` role's command line. Every option may also be set in the
/// `--config` file (same names, TOML); a flag overrides the file.
#[derive(Debug, clap::Parser)]
#[command(name = "lb", about = "The HTTPS load balancer of the foobar stack")]
pub struct LbArgs {
    /// A TOML file with any of these options (a flag overrides it)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// HTTPS address
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Admin address (/metrics, /status, /readyz)
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    /// The served certificate chain (PEM, reloaded on SIGHUP)
    #[arg(long, value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM)
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// Firewall 1 rules [default: allow everyone]
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Who may reach the admin address [default: loopback only]
    #[arg(long, value_name = "FILE")]
    pub admin_rules: Option<PathBuf>,
    /// Requests per second per client address
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Requests a client may send at once [default: twice the rate]
    #[arg(long)]
    pub burst: Option<u32>,
    /// Open connections in all
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Open connections per client address
    #[arg(long, default_value_t = 256)]
    pub max_per_client: usize,
    /// A web server, https://host:port (repeatable)
    #[arg(long = "backend", value_name = "URL")]
    pub backends: Vec<String>,
    /// Threads serving requests, each with its own single-threaded runtime
    /// and upstream connections [default: one per core]
    #[arg(long)]
    pub workers: Option<NonZeroUsize>,
    /// The CA the web servers' certificates are verified with
    #[arg(long, value_name = "PEM")]
    pub upstream_ca: Option<PathBuf>,
    /// The load balancer's client certificate (mTLS to the web servers)
    #[arg(long, value_name = "PEM", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Its private key
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Write an access log line per request to this file (reopened on SIGHUP)
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,
    /// The access log's format
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub access_log_format: LogFormat,
}

/// The `lb` role's configuration file: the flags' names, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LbFile {
    listen: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    rules: Option<PathBuf>,
    admin_rules: Option<PathBuf>,
    rate: Option<u32>,
    burst: Option<u32>,
    max_connections: Option<usize>,
    max_per_client: Option<usize>,
    backend: Option<Vec<String>>,
    workers: Option<NonZeroUsize>,
    upstream_ca: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    access_log: Option<PathBuf>,
    access_log_format: Option<LogFormat>,
}

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
    /// Threads serving requests.
    pub workers: NonZeroUsize,
    /// The CA the web servers' certificates are verified with.
    pub upstream_ca: PathBuf,
    /// The load balancer's client certificate and key, for mTLS to the web
    /// servers.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Where the access log goes, if anywhere.
    pub access_log: Option<(PathBuf, Format)>,
}

impl LbConfig {
    /// The configuration from a parsed command line and its `--config` file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the flag, or the file and line.
    pub fn from_args(parsed: &Parsed<LbArgs>) -> Result<Self, ConfigError> {
        let file: LbFile = match &parsed.args.config {
            Some(path) => config::load_file(path)?,
            None => LbFile::default(),
        };
        let args = &parsed.args;
        let opt = |id: &str, flag: &Option<PathBuf>, file: Option<PathBuf>| {
            parsed.pick_opt(id, flag.clone(), file)
        };
        let rate = parsed.pick("rate", args.rate, file.rate).max(1);
        let burst = parsed
            .pick_opt("burst", args.burst, file.burst)
            .unwrap_or(rate.saturating_mul(2))
            .max(1);
        let client_cert = match (
            opt("client_cert", &args.client_cert, file.client_cert),
            opt("client_key", &args.client_key, file.client_key),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    flag: "client-cert",
                    reason: "--client-cert and --client-key go together".to_owned(),
                })
            }
        };
        let backends = if args.backends.is_empty() {
            file.backend.unwrap_or_default()
        } else {
            args.backends.clone()
        };
        if backends.is_empty() {
            return Err(ConfigError::Missing { flag: "backend" });
        }
        let access_log = opt("access_log", &args.access_log, file.access_log).map(|path| {
            let format = parsed.pick(
                "access_log_format",
                args.access_log_format,
                file.access_log_format,
            );
            (path, format.into())
        });
        Ok(Self {
            listen: parsed.pick("listen", args.listen, file.listen),
            admin: parsed.pick("admin", args.admin, file.admin),
            cert: opt("cert", &args.cert, file.cert)
                .ok_or(ConfigError::Missing { flag: "cert" })?,
            key: opt("key", &args.key, file.key).ok_or(ConfigError::Missing { flag: "key" })?,
            allow: config::rules(
                opt("rules", &args.rules, file.rules).as_deref(),
                "default allow\n",
            )?,
            admin_allow: config::rules(
                opt("admin_rules", &args.admin_rules, file.admin_rules).as_deref(),
                config::LOOPBACK_ONLY,
            )?,
            rate_limit: (rate, burst),
            max_connections: (
                parsed.pick(
                    "max_connections",
                    args.max_connections,
                    file.max_connections,
                ),
                parsed.pick("max_per_client", args.max_per_client, file.max_per_client),
            ),
            backends,
            workers: parsed
                .pick_opt("workers", args.workers, file.workers)
                .unwrap_or_else(foobar_core::runtime::available_workers),
            upstream_ca: opt("upstream_ca", &args.upstream_ca, file.upstream_ca).ok_or(
                ConfigError::Missing {
                    flag: "upstream-ca",
                },
            )?,
            client_cert,
            access_log,
        })
    }
}

/// Runs a load balancer until `shutdown` fires: the admin listener on the
/// calling runtime, the HTTPS front on `workers` threads, each with its own
/// single-threaded runtime and listener (`SO_REUSEPORT`). The proxy (backends, health checks, ejections), connection
/// limits, the rate limit, the access log, the certificates and the metrics
/// are shared by all of them; only idle upstream connections are per
/// worker.
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
    // One proxy for every worker: backends, health, ejections and
    // counters are shared; each worker reuses only the upstream connections
    // its own runtime opened.
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
    let access_log = match &config.access_log {
        Some((path, format)) => {
            let writer = AccessLogWriter::open(path)?;
            writer.reopen_on_sighup(shutdown.clone())?;
            AccessLogLayer::new(writer, *format)
        }
        None => AccessLogLayer::optional(None, Format::Json),
    };
    let requests = ServiceBuilder::new()
        .layer(MetricsLayer::new("lb").with_rates(monitor.rates()))
        .layer(access_log)
        .layer(RateLimitLayer::per_second(rate, burst)?);

    let admin = Server::builder()
        .bind_addr(config.admin)
        .shutdown(shutdown.clone())
        .build()?;
    // Bound here, once, so that a bad address fails before any worker
    // starts; each worker binds the same port again with SO_REUSEPORT.
    let front = Server::builder()
        .bind_addr(config.listen)
        .reuse_port(true)
        .build()?;
    let listen = front.local_addr();
    drop(front);
    tracing::info!(%listen, admin = %admin.local_addr(), backends = ?config.backends, workers = config.workers.get(), "load balancer up");
    let admin_service = ServiceBuilder::new()
        .layer(FirewallLayer::new(config.admin_allow))
        .service(
            Admin::new(exporter)
                .with_monitor(monitor)
                .with_source(proxy.clone()),
        );

    let worker_shutdown = shutdown.clone();
    let front = tokio::task::spawn_blocking(move || {
        foobar_core::runtime::run_per_core(config.workers, move |_worker| {
            let shutdown = worker_shutdown.clone();
            let conn_stage = conn_stage.clone();
            let http = requests.clone().service(proxy.clone());
            async move {
                Server::builder()
                    .bind_addr(listen)
                    .reuse_port(true)
                    .shutdown(shutdown)
                    .build()?
                    .serve_connections(conn_stage, http)
                    .await?;
                Ok::<(), foobar_core::BoxError>(())
            }
        })
    });
    let (front, admin) = tokio::join!(front, admin.serve(admin_service));
    admin?;
    match front {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string().into()),
        Err(error) => Err(error.into()),
    }
}

//! The web role: a guestbook API behind the load balancer, as an axum app.
//!
//! - Firewall 2 (connection level): only the load balancer's addresses may
//!   connect, and only with a client certificate from the internal CA
//!   (mTLS).
//! - The application ([`router`]): an axum `Router` with `State` holding the
//!   [`RwPool`], and foobar's request layers: metrics, an access log, the
//!   request-level firewall (the client behind the load balancer, from its
//!   `X-Forwarded-For`) and a per-client rate limit. `POST /entries` writes
//!   to the primary, `GET /entries` reads from a replica, with
//!   read-your-writes across web servers: a write answers with its GTID
//!   (header `x-foobar-gtid` and a cookie), and a read carrying it waits
//!   until the chosen replica has applied it, or reads from the primary.
//! - Firewall 3: the pool speaks TLS to the database, verifying the
//!   server's certificate against the internal CA.
//! - Host metrics and an admin listener (`/metrics`, `/status`, `/readyz`)
//!   on a separate address.
//!
//! The same [`router`] runs under `foobar_core::Server` (here) or under
//! `axum::serve` with `into_make_service_with_connect_info::<SocketAddr>()`
//! (the tests do both).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRef, Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use foobar_core::access_log::{AccessLogLayer, AccessLogWriter, Format};
use foobar_core::admin::Admin;
use foobar_core::metrics::{MetricsLayer, PrometheusExporter};
use foobar_core::monitor::{Monitor, RequestRates};
use foobar_core::{PlainTcp, Server, Shutdown};
use foobar_db::{Consistency, DbTls, Executor, FailoverConfig, FailoverMode, RwPool};
use foobar_guard::rate_limit::RateLimitLayer;
use foobar_guard::tls::{TlsConfig, TlsLayer};
use foobar_guard::{FirewallLayer, Rules, TrustedProxies};
use serde::{Deserialize, Serialize};
use tower::ServiceBuilder;

use crate::config::{self, ConfigError, Parsed};
use crate::AppError;

/// The `web` role's command line. Every option may also be set in the
/// `--config` file (same names, TOML); a flag overrides the file.
#[derive(Debug, clap::Parser)]
#[command(
    name = "web",
    about = "The guestbook web server of the foobar stack (HTTPS, mTLS from the load balancer only)",
    after_help = "Database passwords are never taken from the command line: give them in files \
                  (--db-password-file ...) or in FOOBAR_DB_PASSWORD, FOOBAR_DB_MONITOR_PASSWORD, \
                  FOOBAR_DB_FAILOVER_PASSWORD, FOOBAR_DB_REPLICATION_PASSWORD."
)]
pub struct WebArgs {
    /// A TOML file with any of these options (a flag overrides it)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Name in responses and metrics
    #[arg(long, default_value = "web")]
    pub name: String,
    /// HTTPS address
    #[arg(long, default_value = "127.0.0.1:8541")]
    pub listen: SocketAddr,
    /// Admin address (/metrics, /status, /readyz)
    #[arg(long, default_value = "127.0.0.1:9911")]
    pub admin: SocketAddr,
    /// The server certificate chain (PEM)
    #[arg(long, value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM)
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// Accept only clients with a certificate from this CA (the load balancer)
    #[arg(long, value_name = "PEM")]
    pub client_ca: Option<PathBuf>,
    /// Firewall 2 rules, who may connect [default: allow 127.0.0.1, deny the rest]
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Rules for the clients behind the load balancer, per request [default: allow all]
    #[arg(long, value_name = "FILE")]
    pub client_rules: Option<PathBuf>,
    /// Proxies whose X-Forwarded-For names the client
    #[arg(long, value_name = "LIST", default_value = "127.0.0.1")]
    pub trusted_proxies: String,
    /// Requests per second per client
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// Requests a client may send at once [default: twice the rate]
    #[arg(long)]
    pub burst: Option<u32>,
    /// Who may reach the admin address [default: loopback only]
    #[arg(long, value_name = "FILE")]
    pub admin_rules: Option<PathBuf>,
    /// Write an access log line per request to this file (reopened on SIGHUP)
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,
    /// The access log's format
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub access_log_format: LogFormat,
    /// The primary, mysql://user@host:port/db (no password: see below)
    #[arg(long, value_name = "URL")]
    pub db_primary: Option<String>,
    /// A replica, same form (repeatable)
    #[arg(long = "db-replica", value_name = "URL")]
    pub db_replicas: Vec<String>,
    /// Speak TLS to the database, verifying it against this CA
    #[arg(long, value_name = "PEM")]
    pub db_ca: Option<PathBuf>,
    /// File holding the application account's password [env: FOOBAR_DB_PASSWORD]
    #[arg(long, value_name = "FILE")]
    pub db_password_file: Option<PathBuf>,
    /// The monitoring account [default: the application's]
    #[arg(long, value_name = "USER")]
    pub db_monitor_user: Option<String>,
    /// File holding its password [env: FOOBAR_DB_MONITOR_PASSWORD]
    #[arg(long, value_name = "FILE")]
    pub db_monitor_password_file: Option<PathBuf>,
    /// The account that promotes and fences [default: the monitor's]
    #[arg(long, value_name = "USER")]
    pub db_failover_user: Option<String>,
    /// File holding its password [env: FOOBAR_DB_FAILOVER_PASSWORD]
    #[arg(long, value_name = "FILE")]
    pub db_failover_password_file: Option<PathBuf>,
    /// The replication account (to turn a fenced primary into a replica)
    #[arg(long, value_name = "USER")]
    pub db_replication_user: Option<String>,
    /// File holding its password [env: FOOBAR_DB_REPLICATION_PASSWORD]
    #[arg(long, value_name = "FILE")]
    pub db_replication_password_file: Option<PathBuf>,
    /// Follow an external promoter, or promote a replica automatically
    #[arg(long, value_enum, default_value_t = FailoverArg::Follow)]
    pub failover: FailoverArg,
    /// The cluster runs semi-synchronous replication
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub semi_sync: bool,
    /// Another admin listener to show on /fleet, [NAME=]http://host:port
    /// (repeatable)
    #[arg(long = "fleet-peer", value_name = "[NAME=]URL")]
    pub fleet_peers: Vec<String>,
    /// Show every admin listener this stack.json names on /fleet
    #[arg(long, value_name = "FILE")]
    pub fleet_stack: Option<PathBuf>,
}

/// The access log's format, as a flag value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// One JSON object per line, every field.
    Json,
    /// nginx's `combined` format.
    Combined,
}

impl From<LogFormat> for Format {
    fn from(format: LogFormat) -> Self {
        match format {
            LogFormat::Json => Format::Json,
            LogFormat::Combined => Format::Combined,
        }
    }
}

/// The failover mode, as a flag value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailoverArg {
    /// Wait for an external promoter.
    Follow,
    /// Promote the most advanced replica.
    Auto,
}

/// The `web` role's configuration file: the flags' names, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WebFile {
    name: Option<String>,
    listen: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    rules: Option<PathBuf>,
    client_rules: Option<PathBuf>,
    trusted_proxies: Option<String>,
    rate: Option<u32>,
    burst: Option<u32>,
    admin_rules: Option<PathBuf>,
    access_log: Option<PathBuf>,
    access_log_format: Option<LogFormat>,
    db_primary: Option<String>,
    db_replica: Option<Vec<String>>,
    db_ca: Option<PathBuf>,
    db_password_file: Option<PathBuf>,
    db_monitor_user: Option<String>,
    db_monitor_password_file: Option<PathBuf>,
    db_failover_user: Option<String>,
    db_failover_password_file: Option<PathBuf>,
    db_replication_user: Option<String>,
    db_replication_password_file: Option<PathBuf>,
    failover: Option<FailoverArg>,
    semi_sync: Option<bool>,
    fleet_peer: Option<Vec<String>>,
    fleet_stack: Option<PathBuf>,
}

/// Everything a web server needs.
#[derive(Debug)]
pub struct WebConfig {
    /// The server's name, shown in responses and metrics.
    pub name: String,
    /// Where to serve HTTPS.
    pub listen: SocketAddr,
    /// Where to serve the admin endpoints.
    pub admin: SocketAddr,
    /// The server certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA whose client certificates are accepted: the load balancer's.
    pub client_ca: PathBuf,
    /// Who may connect (Firewall 2): the load balancer's addresses.
    pub allow: Rules,
    /// Who may reach the admin listener.
    pub admin_allow: Rules,
    /// What every request goes through.
    pub requests: RequestPolicy,
    /// Where the access log goes, if anywhere.
    pub access_log: Option<(PathBuf, Format)>,
    /// The database hosts: primary first, then replicas (`mysql://` URLs,
    /// passwords included).
    pub db_primary: String,
    /// Replica URLs.
    pub db_replicas: Vec<String>,
    /// The CA the database servers' certificates are checked against; no
    /// TLS to the database without it.
    pub db_ca: Option<PathBuf>,
    /// The monitor's account (`user`, `password`), if not the app's.
    pub db_monitor: Option<(String, String)>,
    /// The account that promotes and fences, if not the monitor's.
    pub db_failover_account: Option<(String, String)>,
    /// The failover policy of this server's pool.
    pub db_failover: FailoverConfig,
    /// The other admin listeners shown on `/fleet`.
    pub fleet: config::FleetPeers,
}

/// What the request layers enforce.
#[derive(Debug, Clone)]
pub struct RequestPolicy {
    /// The name of the request metrics (`service` label).
    pub metrics_name: String,
    /// Which clients may send requests (after trusted-proxy resolution).
    pub client_rules: Rules,
    /// Whose forwarding headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// Requests per second per client, and the burst.
    pub rate: (u32, u32),
}

impl WebConfig {
    /// The configuration from a parsed command line and its `--config` file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the flag, the file and line, or the secret
    /// file.
    pub fn from_args(parsed: &Parsed<WebArgs>) -> Result<Self, ConfigError> {
        let file: WebFile = match &parsed.args.config {
            Some(path) => config::load_file(path)?,
            None => WebFile::default(),
        };
        let args = &parsed.args;
        let fleet = config::FleetPeers::new(
            if args.fleet_peers.is_empty() {
                file.fleet_peer.as_deref().unwrap_or_default()
            } else {
                &args.fleet_peers
            },
            parsed.pick_opt(
                "fleet_stack",
                args.fleet_stack.clone(),
                file.fleet_stack.clone(),
            ),
        )?;
        let opt = |id: &str, flag: &Option<PathBuf>, file: Option<PathBuf>| {
            parsed.pick_opt(id, flag.clone(), file)
        };
        let opt_str = |id: &str, flag: &Option<String>, file: Option<String>| {
            parsed.pick_opt(id, flag.clone(), file)
        };
        let required =
            |flag: &'static str, value: Option<PathBuf>| value.ok_or(ConfigError::Missing { flag });

        let mode = match parsed.pick("failover", args.failover, file.failover) {
            FailoverArg::Follow => FailoverMode::FollowExternal,
            FailoverArg::Auto => FailoverMode::AutoPromote,
        };
        let mut failover = FailoverConfig::new(mode).semi_sync(parsed.pick(
            "semi_sync",
            args.semi_sync,
            file.semi_sync,
        ));
        let account = |user: Option<String>,
                       file: Option<PathBuf>,
                       env: &str|
         -> Result<Option<(String, String)>, ConfigError> {
            let Some(user) = user else { return Ok(None) };
            let password = config::secret(file.as_deref(), env)?.unwrap_or_default();
            Ok(Some((user, password)))
        };
        if let Some((user, password)) = account(
            opt_str(
                "db_replication_user",
                &args.db_replication_user,
                file.db_replication_user,
            ),
            opt(
                "db_replication_password_file",
                &args.db_replication_password_file,
                file.db_replication_password_file,
            ),
            "FOOBAR_DB_REPLICATION_PASSWORD",
        )? {
            failover = failover.replication_credentials(user, password);
        }
        let password = config::secret(
            opt(
                "db_password_file",
                &args.db_password_file,
                file.db_password_file,
            )
            .as_deref(),
            "FOOBAR_DB_PASSWORD",
        )?;
        let url = |flag: &'static str, url: &str| with_password(flag, url, password.as_deref());
        let primary = opt_str("db_primary", &args.db_primary, file.db_primary)
            .ok_or(ConfigError::Missing { flag: "db-primary" })?;
        let replicas = if args.db_replicas.is_empty() {
            file.db_replica.unwrap_or_default()
        } else {
            args.db_replicas.clone()
        };
        let rate = parsed.pick("rate", args.rate, file.rate).max(1);
        let burst = parsed
            .pick_opt("burst", args.burst, file.burst)
            .unwrap_or(rate.saturating_mul(2))
            .max(1);
        let trusted = parsed.pick(
            "trusted_proxies",
            args.trusted_proxies.clone(),
            file.trusted_proxies,
        );
        let name = parsed.pick("name", args.name.clone(), file.name);
        let access_log = opt("access_log", &args.access_log, file.access_log).map(|path| {
            (
                path,
                parsed
                    .pick(
                        "access_log_format",
                        args.access_log_format,
                        file.access_log_format,
                    )
                    .into(),
            )
        });
        Ok(Self {
            listen: parsed.pick("listen", args.listen, file.listen),
            admin: parsed.pick("admin", args.admin, file.admin),
            cert: required("cert", opt("cert", &args.cert, file.cert))?,
            key: required("key", opt("key", &args.key, file.key))?,
            client_ca: required(
                "client-ca",
                opt("client_ca", &args.client_ca, file.client_ca),
            )?,
            allow: config::rules(
                opt("rules", &args.rules, file.rules).as_deref(),
                "allow 127.0.0.1\ndefault deny\n",
            )?,
            admin_allow: config::rules(
                opt("admin_rules", &args.admin_rules, file.admin_rules).as_deref(),
                config::LOOPBACK_ONLY,
            )?,
            requests: RequestPolicy {
                metrics_name: name.clone(),
                client_rules: config::rules(
                    opt("client_rules", &args.client_rules, file.client_rules).as_deref(),
                    "default allow\n",
                )?,
                trusted_proxies: TrustedProxies::parse(&trusted)?,
                rate: (rate, burst),
            },
            access_log,
            db_primary: url("db-primary", &primary)?,
            db_replicas: replicas
                .iter()
                .map(|r| url("db-replica", r))
                .collect::<Result<_, _>>()?,
            db_ca: opt("db_ca", &args.db_ca, file.db_ca),
            db_monitor: account(
                opt_str(
                    "db_monitor_user",
                    &args.db_monitor_user,
                    file.db_monitor_user,
                ),
                opt(
                    "db_monitor_password_file",
                    &args.db_monitor_password_file,
                    file.db_monitor_password_file,
                ),
                "FOOBAR_DB_MONITOR_PASSWORD",
            )?,
            db_failover_account: account(
                opt_str(
                    "db_failover_user",
                    &args.db_failover_user,
                    file.db_failover_user,
                ),
                opt(
                    "db_failover_password_file",
                    &args.db_failover_password_file,
                    file.db_failover_password_file,
                ),
                "FOOBAR_DB_FAILOVER_PASSWORD",
            )?,
            db_failover: failover,
            name,
            fleet,
        })
    }
}

/// `url` with `password` put into its user part. A URL that already holds
/// a password is refused: given on a command line, any local user reads it
/// with `ps`.
fn with_password(
    flag: &'static str,
    url: &str,
    password: Option<&str>,
) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        flag,
        reason: reason.to_owned(),
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("expected mysql://user@host:port/database"))?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return Ok(url.to_owned());
    };
    let user = &rest[..at];
    if user.contains(':') {
        return Err(invalid(
            "the URL holds a password; give it in a file (--db-password-file) or FOOBAR_DB_PASSWORD instead",
        ));
    }
    let Some(password) = password else {
        return Ok(url.to_owned());
    };
    let mut encoded = String::with_capacity(password.len());
    for byte in password.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(format!("{scheme}://{user}:{encoded}{}", &rest[at..]))
}

/// The guestbook schema, created at start-up if missing.
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS guestbook (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    author VARCHAR(64) NOT NULL,
    message VARCHAR(1000) NOT NULL,
    served_by VARCHAR(64) NOT NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
)";

/// What `GET /` answers, after the server's name.
const INDEX: &str = "the foobar guestbook
  POST /entries {\"author\": \"..\", \"message\": \"..\"}
  GET  /entries
  GET  /entries/<id>
";

/// Largest accepted request body.
const MAX_BODY: usize = 16 * 1024;

/// How long a read waits for a replica to catch up with the caller's write
/// before it reads from the primary instead.
const RYW_WAIT: Duration = Duration::from_millis(500);

/// The header (and cookie) carrying the GTID of the caller's last write.
pub const GTID_HEADER: &str = "x-foobar-gtid";
const GTID_COOKIE: &str = "foobar_gtid";

/// The response header naming the web server that answered.
pub const SERVED_BY_HEADER: &str = "x-foobar-served-by";

/// A guestbook entry as the API shows it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, Clone)]
pub struct Entry {
    /// Its id.
    pub id: u64,
    /// Who wrote it.
    pub author: String,
    /// What they wrote.
    pub message: String,
    /// The web server that took the write.
    pub served_by: String,
}

#[derive(Debug, Deserialize)]
struct NewEntry {
    author: String,
    message: String,
}

/// The application state: the server's name and its database pool.
#[derive(Debug, Clone)]
pub struct App {
    /// The server's name, in responses and in the rows it writes.
    pub name: Arc<str>,
    /// The read/write-splitting pool.
    pub pool: RwPool,
}

impl FromRef<App> for RwPool {
    fn from_ref(app: &App) -> RwPool {
        app.pool.clone()
    }
}

/// The guestbook as an axum `Router`, with foobar's request layers
/// (outermost first): metrics, the access log (if given), the
/// request-level firewall (client rules after trusted-proxy resolution) and
/// the per-client rate limit.
///
/// # Errors
/// [`foobar_guard::ConfigError`] for a zero rate.
pub fn router(
    app: App,
    policy: &RequestPolicy,
    access_log: Option<(AccessLogWriter, Format)>,
    rates: Option<&RequestRates>,
) -> Result<Router, foobar_guard::ConfigError> {
    let served_by = HeaderValue::from_str(&app.name).ok();
    let router = Router::new()
        .route("/", get(index))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/entries", get(list).post(create))
        .route("/entries/{id}", get(show))
        .layer(axum::middleware::map_response(
            move |mut response: Response| {
                let served_by = served_by.clone();
                async move {
                    if let Some(name) = served_by {
                        response.headers_mut().insert(SERVED_BY_HEADER, name);
                    }
                    response
                }
            },
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
        .layer(RateLimitLayer::per_second(policy.rate.0, policy.rate.1)?)
        .layer(
            FirewallLayer::new(policy.client_rules.clone())
                .trusted_proxies(policy.trusted_proxies.clone()),
        );
    let router = match access_log {
        Some((writer, format)) => {
            // The client as the firewall will see it, behind the load
            // balancer too.
            let trusted = policy.trusted_proxies.clone();
            router.layer(
                AccessLogLayer::new(writer, format)
                    .client(move |extensions, headers| trusted.client_of(extensions, headers)),
            )
        }
        None => router,
    };
    let metrics = MetricsLayer::new(policy.metrics_name.clone());
    Ok(router.layer(match rates {
        Some(rates) => metrics.with_rates(rates),
        None => metrics,
    }))
}

/// Runs a web server until `shutdown` fires.
///
/// # Errors
/// Bad certificates or rules, an address that cannot be bound, a database
/// that cannot be reached at start-up.
pub async fn run(config: WebConfig, shutdown: Shutdown) -> Result<(), AppError> {
    let exporter = PrometheusExporter::install()?;
    let monitor = Monitor::start(&shutdown);

    let mut pool = RwPool::builder()
        .name(format!("{}-db", config.name))
        .primary(&config.db_primary)
        .consistency(Consistency::gtid(RYW_WAIT))
        .failover(config.db_failover.clone());
    for replica in &config.db_replicas {
        pool = pool.replica(replica);
    }
    if let Some((user, password)) = &config.db_monitor {
        pool = pool.monitor_credentials(user, password);
    }
    if let Some((user, password)) = &config.db_failover_account {
        pool = pool.failover_credentials(user, password);
    }
    if let Some(ca) = &config.db_ca {
        pool = pool.tls(DbTls::new().ca_file(ca));
    }
    let pool = pool.build(&shutdown).await?;
    pool.query_drop(SCHEMA).await?;

    let tls = TlsConfig::builder()
        .certificate(&config.cert, &config.key)
        .client_ca_file(&config.client_ca)
        .build()?;
    let conn_stage = ServiceBuilder::new()
        .layer(FirewallLayer::new(config.allow))
        .layer(TlsLayer::new(tls))
        .service(PlainTcp);

    let access_log = match &config.access_log {
        Some((path, format)) => {
            let writer = AccessLogWriter::open(path)?;
            writer.reopen_on_sighup(shutdown.clone())?;
            Some((writer, *format))
        }
        None => None,
    };
    let app = App {
        name: config.name.as_str().into(),
        pool: pool.clone(),
    };
    let http = router(app, &config.requests, access_log, Some(monitor.rates()))?;

    let web = Server::builder()
        .bind_addr(config.listen)
        .shutdown(shutdown.clone())
        .grace_period(Duration::from_secs(10))
        .build()?;
    let admin = Server::builder()
        .bind_addr(config.admin)
        .shutdown(shutdown.clone())
        .build()?;
    tracing::info!(name = %config.name, listen = %web.local_addr(), admin = %admin.local_addr(), "web server up");

    let admin_page = config.fleet.apply(
        Admin::new(exporter).with_monitor(monitor).with_source(pool),
        admin.local_addr(),
        &shutdown,
    )?;
    let admin_service = ServiceBuilder::new()
        .layer(FirewallLayer::new(config.admin_allow))
        .service(admin_page);
    tokio::try_join!(
        web.serve_connections(conn_stage, http),
        admin.serve(admin_service)
    )?;
    Ok(())
}

async fn index(State(app): State<App>) -> String {
    format!("{}: {INDEX}", app.name)
}

/// Why a request failed, mapped to its status.
#[derive(Debug)]
enum RequestError {
    BadRequest(String),
    Unavailable(foobar_db::Error),
}

impl From<foobar_db::Error> for RequestError {
    fn from(error: foobar_db::Error) -> Self {
        Self::Unavailable(error)
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        match self {
            Self::BadRequest(message) => {
                tracing::debug!(%message, "bad request");
                (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
            }
            Self::Unavailable(error) => {
                tracing::warn!(%error, "request failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "1")],
                    format!("database: {error}\n"),
                )
                    .into_response()
            }
        }
    }
}

async fn create(State(app): State<App>, body: Bytes) -> Result<Response, RequestError> {
    let entry: NewEntry = serde_json::from_slice(&body).map_err(|e| {
        RequestError::BadRequest(format!("expected {{\"author\",\"message\"}}: {e}"))
    })?;
    if entry.author.is_empty()
        || entry.author.chars().count() > 64
        || entry.message.chars().count() > 1000
    {
        return Err(RequestError::BadRequest(
            "author must be 1-64 characters and message at most 1000".to_owned(),
        ));
    }
    let mut conn = app.pool.writer().await?;
    conn.exec_drop(
        "INSERT INTO guestbook (author, message, served_by) VALUES (?, ?, ?)",
        (&entry.author, &entry.message, &*app.name),
    )
    .await?;
    let id = conn.last_insert_id().unwrap_or_default();
    let gtid: Option<String> = conn.query_first("SELECT @@last_gtid").await?;
    drop(conn);
    let created = Entry {
        id,
        author: entry.author,
        message: entry.message,
        served_by: app.name.to_string(),
    };
    let mut response = (StatusCode::CREATED, axum::Json(created)).into_response();
    if let Some(value) = gtid
        .filter(|g| !g.is_empty())
        .and_then(|g| HeaderValue::from_str(&g).ok())
    {
        if let Ok(cookie) = HeaderValue::from_str(&format!(
            "{GTID_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax",
            value.to_str().unwrap_or_default()
        )) {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        response.headers_mut().insert(GTID_HEADER, value);
    }
    Ok(response)
}

async fn list(State(pool): State<RwPool>, headers: HeaderMap) -> Result<Response, RequestError> {
    let mut conn = reader_for(&pool, &headers).await?;
    let rows: Vec<(u64, String, String, String)> = conn
        .query("SELECT id, author, message, served_by FROM guestbook ORDER BY id DESC LIMIT 100")
        .await?;
    let entries: Vec<Entry> = rows
        .into_iter()
        .map(|(id, author, message, served_by)| Entry {
            id,
            author,
            message,
            served_by,
        })
        .collect();
    let host = HeaderValue::from_str(conn.host()).unwrap_or(HeaderValue::from_static("?"));
    Ok(([("x-foobar-db-host", host)], axum::Json(entries)).into_response())
}

async fn show(
    State(pool): State<RwPool>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, RequestError> {
    let Ok(id) = id.parse::<u64>() else {
        return Ok((StatusCode::NOT_FOUND, "no such entry\n").into_response());
    };
    let mut conn = reader_for(&pool, &headers).await?;
    let row: Option<(u64, String, String, String)> = conn
        .exec_first(
            "SELECT id, author, message, served_by FROM guestbook WHERE id = ?",
            (id,),
        )
        .await?;
    Ok(match row {
        Some((id, author, message, served_by)) => axum::Json(Entry {
            id,
            author,
            message,
            served_by,
        })
        .into_response(),
        None => (StatusCode::NOT_FOUND, "no such entry\n").into_response(),
    })
}

/// A reader connection that has seen the caller's last write, if the
/// request names one (header or cookie).
async fn reader_for(
    pool: &RwPool,
    headers: &HeaderMap,
) -> Result<foobar_db::PooledConn, RequestError> {
    match caller_gtid(headers) {
        Some(gtid) => Ok(pool.reader_after(gtid).await?),
        None => Ok(pool.reader().await?),
    }
}

fn caller_gtid(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(GTID_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(value);
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(GTID_COOKIE)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn the_callers_gtid_comes_from_the_header_or_the_cookie() {
        assert_eq!(
            caller_gtid(&headers(&[(GTID_HEADER, "0-1-5")])),
            Some("0-1-5")
        );
        assert_eq!(
            caller_gtid(&headers(&[("cookie", "a=b; foobar_gtid=0-1-9; c=d")])),
            Some("0-1-9")
        );
        assert_eq!(caller_gtid(&headers(&[("cookie", "foobar_gtidx=1")])), None);
    }

    #[test]
    fn passwords_go_into_urls_but_never_come_from_them() {
        assert_eq!(
            with_password(
                "db-primary",
                "mysql://app@127.0.0.1:3306/app",
                Some("p@ss:w/rd")
            )
            .unwrap(),
            "mysql://app:p%40ss%3Aw%2Frd@127.0.0.1:3306/app"
        );
        assert_eq!(
            with_password("db-primary", "mysql://app@h:1/db", None).unwrap(),
            "mysql://app@h:1/db"
        );
        assert!(matches!(
            with_password("db-primary", "mysql://app:secret@h:1/db", Some("x")),
            Err(ConfigError::Invalid {
                flag: "db-primary",
                ..
            })
        ));
    }

    #[test]
    fn a_flag_overrides_the_file_and_the_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:7001\"\nadmin = \"127.0.0.1:7002\"\ncert = \"a.pem\"\nkey = \"a.key\"\nclient-ca = \"ca.pem\"\ndb-primary = \"mysql://app@127.0.0.1:3306/app\"\nrate = 7\n",
        )
        .unwrap();
        let secret = dir.path().join("password");
        std::fs::write(&secret, "hunter2\n").unwrap();
        let parsed = Parsed::<WebArgs>::from_args([
            "web".to_owned(),
            format!("--config={}", file.display()),
            "--listen=127.0.0.1:7100".to_owned(),
            format!("--db-password-file={}", secret.display()),
        ])
        .unwrap();
        let config = WebConfig::from_args(&parsed).unwrap();
        assert_eq!(
            config.listen,
            "127.0.0.1:7100".parse().unwrap(),
            "the flag wins"
        );
        assert_eq!(
            config.admin,
            "127.0.0.1:7002".parse().unwrap(),
            "the file's value"
        );
        assert_eq!(config.requests.rate, (7, 14));
        assert_eq!(config.name, "web", "the default");
        assert_eq!(config.db_primary, "mysql://app:hunter2@127.0.0.1:3306/app");

        std::fs::write(&file, "listen = \"127.0.0.1:7001\"\nrat = 5\n").unwrap();
        let parsed = Parsed::<WebArgs>::from_args([
            "web".to_owned(),
            format!("--config={}", file.display()),
        ])
        .unwrap();
        let error = WebConfig::from_args(&parsed).unwrap_err().to_string();
        assert!(error.contains("web.toml:2: key `rat`"), "{error}");
    }
}

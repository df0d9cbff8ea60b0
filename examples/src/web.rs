//! The web role: a guestbook API behind the load balancer.
//!
//! - Firewall 2: only the load balancer's addresses may connect, and only
//!   with a client certificate from the internal CA (mTLS).
//! - The application: `POST /entries` writes to the primary, `GET /entries`
//!   reads from a replica through [`RwPool`], with read-your-writes across
//!   web servers: a write answers with its GTID (header `x-foobar-gtid` and
//!   a cookie), and a read carrying it waits until the chosen replica has
//!   applied it, or reads from the primary.
//! - Firewall 3: the pool speaks TLS to the database, verifying the
//!   server's certificate against the internal CA.
//! - Request metrics, host metrics and an admin listener (`/metrics`,
//!   `/status`, `/readyz`) on a separate address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use foobar_core::admin::Admin;
use foobar_core::metrics::{MetricsLayer, PrometheusExporter};
use foobar_core::monitor::Monitor;
use foobar_core::RequestBody;
use foobar_core::{PlainTcp, Server, Shutdown};
use foobar_db::{Consistency, DbTls, Executor, FailoverConfig, RwPool};
use foobar_guard::tls::{TlsConfig, TlsLayer};
use foobar_guard::{FirewallLayer, Rules};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::{Deserialize, Serialize};
use tower::ServiceBuilder;

use crate::AppError;

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
    /// The database hosts: primary first, then replicas (`mysql://` URLs).
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
}

/// The `web` role's command-line flags.
pub const FLAGS: &[&str] = &[
    "name",
    "listen",
    "admin",
    "cert",
    "key",
    "client-ca",
    "rules",
    "admin-rules",
    "db-primary",
    "db-replica",
    "db-ca",
    "db-monitor",
    "db-failover",
    "db-replication",
    "failover",
    "semi-sync",
];

/// The `web` role's usage text.
pub const USAGE: &str = "\
web: the guestbook web server of the foobar stack (HTTPS, mTLS from the load balancer only)

USAGE:
    web --cert PEM --key PEM --client-ca PEM --db-primary URL [OPTIONS]

OPTIONS:
    --name NAME             name in responses and metrics [default: web]
    --listen ADDR           HTTPS address [default: 127.0.0.1:8541]
    --admin ADDR            admin address (/metrics, /status, /readyz) [default: 127.0.0.1:9911]
    --cert PEM, --key PEM   the server certificate chain and key
    --client-ca PEM         accept only clients with a certificate from this CA (the load balancer)
    --rules FILE            Firewall 2 rules [default: allow 127.0.0.1, deny the rest]
    --admin-rules FILE      who may reach the admin address [default: loopback only]
    --db-primary URL        mysql://user:pass@host:port/db of the primary
    --db-replica URL        a replica (repeatable)
    --db-ca PEM             speak TLS to the database, verifying it against this CA
    --db-monitor USER:PASS  the monitoring account [default: the URL's]
    --db-failover USER:PASS the account that promotes and fences [default: the monitor's]
    --db-replication USER:PASS  the replication account (to turn a fenced primary into a replica)
    --failover MODE         follow (an external promoter) or auto (promote a replica) [default: follow]
    --semi-sync BOOL        the cluster runs semi-synchronous replication [default: false]
    -h, --help              print this help
";

impl WebConfig {
    /// Reads the configuration from command-line flags ([`FLAGS`]).
    ///
    /// # Errors
    /// A message naming the missing or bad flag, or the bad rules file.
    pub fn from_flags(flags: &crate::cli::Flags) -> Result<Self, String> {
        let account = |name: &str| -> Result<Option<(String, String)>, String> {
            flags
                .get(name)
                .map(|raw| {
                    raw.split_once(':')
                        .map(|(u, p)| (u.to_owned(), p.to_owned()))
                        .ok_or_else(|| format!("--{name} takes USER:PASSWORD"))
                })
                .transpose()
        };
        let mode = match flags.get("failover").unwrap_or("follow") {
            "follow" => foobar_db::FailoverMode::FollowExternal,
            "auto" => foobar_db::FailoverMode::AutoPromote,
            other => return Err(format!("--failover {other:?}: expected follow or auto")),
        };
        let mut failover = FailoverConfig::new(mode).semi_sync(flags.parse_or("semi-sync", false)?);
        if let Some((user, password)) = account("db-replication")? {
            failover = failover.replication_credentials(user, password);
        }
        Ok(Self {
            name: flags.get("name").unwrap_or("web").to_owned(),
            listen: flags.parse_or("listen", SocketAddr::from(([127, 0, 0, 1], 8541)))?,
            admin: flags.parse_or("admin", SocketAddr::from(([127, 0, 0, 1], 9911)))?,
            cert: flags.require("cert")?,
            key: flags.require("key")?,
            client_ca: flags.require("client-ca")?,
            allow: crate::cli::rules(flags.get("rules"), "allow 127.0.0.1\ndefault deny\n")?,
            admin_allow: crate::cli::rules(flags.get("admin-rules"), crate::cli::LOOPBACK_ONLY)?,
            db_primary: flags.require("db-primary")?,
            db_replicas: flags.all("db-replica").to_vec(),
            db_ca: flags.get("db-ca").map(PathBuf::from),
            db_monitor: account("db-monitor")?,
            db_failover_account: account("db-failover")?,
            db_failover: failover,
        })
    }
}

/// The guestbook schema, created at start-up if missing.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS guestbook (
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

/// The application state shared by every request.
#[derive(Debug)]
struct App {
    name: String,
    pool: RwPool,
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

    let app = Arc::new(App {
        name: config.name.clone(),
        pool: pool.clone(),
    });
    let http = ServiceBuilder::new()
        .layer(MetricsLayer::new(config.name.clone()).with_rates(monitor.rates()))
        .service_fn(move |req| handle(app.clone(), req));

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

    let admin_service = ServiceBuilder::new()
        .layer(FirewallLayer::new(config.admin_allow))
        .service(Admin::new(exporter).with_monitor(monitor).with_source(pool));
    tokio::try_join!(
        web.serve_connections(conn_stage, http),
        admin.serve(admin_service)
    )?;
    Ok(())
}

async fn handle(
    app: Arc<App>,
    req: Request<RequestBody>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into()),
        (&Method::GET, "/") => text(StatusCode::OK, format!("{}: {INDEX}", app.name)),
        (&Method::POST, "/entries") => create(&app, req).await,
        (&Method::GET, "/entries") => list(&app, &req).await,
        (&Method::GET, path) if path.starts_with("/entries/") => {
            match path["/entries/".len()..].parse::<u64>() {
                Ok(id) => show(&app, &req, id).await,
                Err(_) => text(StatusCode::NOT_FOUND, "no such entry\n".into()),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    };
    let mut response = response.unwrap_or_else(|error| {
        tracing::warn!(%error, "request failed");
        let status = match error.kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut response = text_response(status, format!("{}\n", error.message));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    });
    if let Ok(name) = HeaderValue::from_str(&app.name) {
        response.headers_mut().insert(SERVED_BY_HEADER, name);
    }
    Ok(response)
}

/// Why a request failed, mapped to its status.
#[derive(Debug)]
struct RequestError {
    kind: ErrorKind,
    message: String,
}

#[derive(Debug)]
enum ErrorKind {
    BadRequest,
    Unavailable,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn bad_request(message: impl Into<String>) -> RequestError {
    RequestError {
        kind: ErrorKind::BadRequest,
        message: message.into(),
    }
}

impl From<foobar_db::Error> for RequestError {
    fn from(error: foobar_db::Error) -> Self {
        Self {
            kind: ErrorKind::Unavailable,
            message: format!("database: {error}"),
        }
    }
}

type Answer = Result<Response<Full<Bytes>>, RequestError>;

async fn create(app: &App, req: Request<RequestBody>) -> Answer {
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| bad_request(format!("cannot read the body: {e}")))?
        .to_bytes();
    let entry: NewEntry = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("expected {{\"author\",\"message\"}}: {e}")))?;
    if entry.author.is_empty()
        || entry.author.chars().count() > 64
        || entry.message.chars().count() > 1000
    {
        return Err(bad_request(
            "author must be 1-64 characters and message at most 1000",
        ));
    }
    let mut conn = app.pool.writer().await?;
    conn.exec_drop(
        "INSERT INTO guestbook (author, message, served_by) VALUES (?, ?, ?)",
        (&entry.author, &entry.message, &app.name),
    )
    .await?;
    let id = conn.last_insert_id().unwrap_or_default();
    let gtid: Option<String> = conn.query_first("SELECT @@last_gtid").await?;
    drop(conn);
    let created = Entry {
        id,
        author: entry.author,
        message: entry.message,
        served_by: app.name.clone(),
    };
    let mut response = json(StatusCode::CREATED, &created);
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

async fn list(app: &App, req: &Request<RequestBody>) -> Answer {
    let mut conn = reader_for(app, req).await?;
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
    let mut response = json(StatusCode::OK, &entries);
    response.headers_mut().insert(
        "x-foobar-db-host",
        HeaderValue::from_str(conn.host()).unwrap_or(HeaderValue::from_static("?")),
    );
    Ok(response)
}

async fn show(app: &App, req: &Request<RequestBody>, id: u64) -> Answer {
    let mut conn = reader_for(app, req).await?;
    let row: Option<(u64, String, String, String)> = conn
        .exec_first(
            "SELECT id, author, message, served_by FROM guestbook WHERE id = ?",
            (id,),
        )
        .await?;
    Ok(match row {
        Some((id, author, message, served_by)) => json(
            StatusCode::OK,
            &Entry {
                id,
                author,
                message,
                served_by,
            },
        ),
        None => text_response(StatusCode::NOT_FOUND, "no such entry\n".into()),
    })
}

/// A reader connection that has seen the caller's last write, if the
/// request names one (header or cookie).
async fn reader_for(
    app: &App,
    req: &Request<RequestBody>,
) -> Result<foobar_db::PooledConn, RequestError> {
    match caller_gtid(req) {
        Some(gtid) => Ok(app.pool.reader_after(gtid).await?),
        None => Ok(app.pool.reader().await?),
    }
}

fn caller_gtid<B>(req: &Request<B>) -> Option<&str> {
    if let Some(value) = req.headers().get(GTID_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(value);
    }
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(GTID_COOKIE)?.strip_prefix('='))
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn text(status: StatusCode, body: String) -> Answer {
    Ok(text_response(status, body))
}

fn text_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_gtid_comes_from_the_header_or_the_cookie() {
        let req = Request::get("/")
            .header(GTID_HEADER, "0-1-5")
            .body(())
            .unwrap();
        assert_eq!(caller_gtid(&req), Some("0-1-5"));
        let req = Request::get("/")
            .header(header::COOKIE, "a=b; foobar_gtid=0-1-9; c=d")
            .body(())
            .unwrap();
        assert_eq!(caller_gtid(&req), Some("0-1-9"));
        let req = Request::get("/")
            .header(header::COOKIE, "foobar_gtidx=1")
            .body(())
            .unwrap();
        assert_eq!(caller_gtid(&req), None);
    }
}

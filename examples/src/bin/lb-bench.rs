//! Run with: `cargo run --release -p foobar-examples --bin lb-bench -- --listen 127.0.0.1:8080 --backend http://127.0.0.1:8081 --backend http://127.0.0.1:8082`
//!
//! The benchmark's load balancer (`foobar-lb/bench/run.sh`), configured
//! like the HAProxy and nginx it is compared with: round robin over the
//! backends given with `--backend`,
//! plain HTTP on `--listen` and, with `--tls-listen`, `--cert` and
//! `--key`, TLS termination too. One single-threaded runtime per worker
//! (`--workers`, default: one per core), the workers sharing the listening
//! ports through `SO_REUSEPORT`, each with its own upstream pools.
//! `--layer` adds the shipped layers one by one (their cost per request is
//! measured by `foobar-lb/bench/layers.sh`), and `--upstream-ca` (with an
//! optional client certificate) verifies `https://` backends.
//! Ctrl-C or SIGTERM stops it gracefully.

use std::io::Write as _;
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::time::Duration;

use foobar_core::access_log::{AccessLogLayer, AccessLogWriter, Format};
use foobar_core::metrics::MetricsLayer;
use foobar_core::tls::ClientTls;
use foobar_core::{runtime, PlainTcp, Server, Shutdown};
use foobar_guard::rate_limit::RateLimitLayer;
use foobar_guard::tls::{TlsConfig, TlsLayer};
use foobar_guard::{ConnLimitLayer, FirewallLayer, Rules};
use foobar_lb::health::HealthCheck;
use foobar_lb::policy::RoundRobin;
use foobar_lb::Proxy;
use tower::{Layer as _, ServiceBuilder};

/// The benchmark's round-robin HTTP load balancer, with optional TLS termination.
#[derive(Debug, clap::Parser)]
#[command(name = "lb-bench")]
struct Options {
    /// A backend, http://host:port (repeatable, at least one)
    #[arg(long = "backend", value_name = "URL", required = true)]
    backends: Vec<String>,
    /// Plain HTTP address
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// HTTPS address
    #[arg(long, value_name = "ADDR", requires_all = ["cert", "key"])]
    tls_listen: Option<String>,
    /// PEM certificate chain for --tls-listen
    #[arg(long, value_name = "FILE")]
    cert: Option<String>,
    /// PEM private key for --tls-listen
    #[arg(long, value_name = "FILE")]
    key: Option<String>,
    /// Single-threaded workers [default: number of cores]
    #[arg(long)]
    workers: Option<NonZeroUsize>,
    /// Check backends with GET PATH every 2 s
    #[arg(long, value_name = "PATH")]
    health_path: Option<String>,
    /// The shipped layers to run: none, one of them (to measure its cost),
    /// or all of them in the lb example's order
    #[arg(long, value_enum, default_value = "none")]
    layers: Layers,
    /// Access log file, for `--layer access-log` [default: /dev/null]
    #[arg(long, value_name = "FILE", default_value = "/dev/null")]
    access_log: String,
    /// The CA `https://` backends are verified with
    #[arg(long, value_name = "PEM")]
    upstream_ca: Option<String>,
    /// A client certificate for `https://` backends (mutual TLS)
    #[arg(long, value_name = "PEM", requires = "client_key")]
    client_cert: Option<String>,
    /// Its private key
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    client_key: Option<String>,
}

/// The layers the `lb` example ships, alone (to measure each one's cost)
/// or all together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Layers {
    /// The proxy alone
    None,
    /// Connection firewall: a rule set allowing loopback, checked per connection
    Firewall,
    /// Connection limits, total and per client
    ConnLimit,
    /// Per-client rate limit (high enough never to refuse the benchmark)
    RateLimit,
    /// Request metrics (with the Prometheus recorder installed)
    Metrics,
    /// Access log, JSON, to --access-log
    AccessLog,
    /// All of the above
    All,
}

impl Layers {
    fn has(self, layer: Self) -> bool {
        self == layer || self == Self::All
    }
}

/// A connection stage over accepted TCP connections, for any stream.
trait ConnStage:
    tower::Service<
        foobar_core::Accepted<tokio::net::TcpStream>,
        Response = foobar_core::Accepted<Self::Io>,
        Error = Self::Failure,
        Future = Self::Fut,
    > + Clone
    + Send
    + Sync
    + 'static
{
    type Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    type Failure: Into<foobar_core::BoxError>;
    type Fut: std::future::Future<Output = Result<foobar_core::Accepted<Self::Io>, Self::Failure>>
        + Send;
}

impl<T, IO> ConnStage for T
where
    T: tower::Service<
            foobar_core::Accepted<tokio::net::TcpStream>,
            Response = foobar_core::Accepted<IO>,
        > + Clone
        + Send
        + Sync
        + 'static,
    T::Error: Into<foobar_core::BoxError>,
    T::Future: Send,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Io = IO;
    type Failure = T::Error;
    type Fut = T::Future;
}

/// Rules like a small production rule set's, allowing loopback.
const FIREWALL_RULES: &str =
    "allow 127.0.0.0/8\nallow ::1/128\ndeny 10.0.0.0/8\ndeny 192.168.0.0/16\ndefault deny\n";

/// Serves `requests` behind the connection layers `connections` (and TLS
/// after them on the TLS address).
async fn serve<L, S, B>(
    options: &Options,
    tls: Option<TlsConfig>,
    shutdown: &Shutdown,
    connections: L,
    requests: S,
) -> Result<(), foobar_core::BoxError>
where
    L: tower::Layer<PlainTcp> + tower::Layer<foobar_guard::tls::Tls<PlainTcp>>,
    <L as tower::Layer<PlainTcp>>::Service: ConnStage,
    <L as tower::Layer<foobar_guard::tls::Tls<PlainTcp>>>::Service: ConnStage,
    S: tower::Service<http::Request<foobar_core::RequestBody>, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Error: Into<foobar_core::BoxError>,
    S::Future: Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<foobar_core::BoxError>,
{
    let plain = Server::builder()
        .bind(&options.listen)?
        .reuse_port(true)
        .shutdown(shutdown.clone())
        .build()?
        .serve_connections(connections.layer(PlainTcp), requests.clone());
    match (&options.tls_listen, tls) {
        (Some(addr), Some(tls)) => {
            let stage = connections.layer(TlsLayer::new(tls).layer(PlainTcp));
            let secure = Server::builder()
                .bind(addr)?
                .reuse_port(true)
                .shutdown(shutdown.clone())
                .build()?
                .serve_connections(stage, requests);
            tokio::try_join!(plain, secure)?;
        }
        _ => plain.await?,
    }
    Ok(())
}

fn build_proxy(options: &Options, shutdown: &Shutdown) -> Result<Proxy, foobar_lb::Error> {
    let mut builder = Proxy::builder(RoundRobin::new()).shutdown(shutdown.clone());
    if let Some(ca) = &options.upstream_ca {
        let mut tls = ClientTls::new().ca_file(ca);
        if let (Some(cert), Some(key)) = (&options.client_cert, &options.client_key) {
            tls = tls.identity_files(cert, key);
        }
        builder = builder.tls(tls);
    }
    let proxy = builder.build()?;
    for url in &options.backends {
        proxy.add_backend(url)?;
    }
    Ok(proxy)
}

/// A thread-caching allocator: a proxy allocates and frees buffers on every
/// request, which the system allocator serves noticeably slower.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let options = <Options as clap::Parser>::parse();
    let shutdown = Shutdown::new();
    // Check the whole configuration once, before starting any worker.
    if let Err(error) = build_proxy(&options, &shutdown) {
        let _ = writeln!(std::io::stderr(), "lb-bench: {error}");
        return ExitCode::FAILURE;
    }
    let tls = match (&options.tls_listen, &options.cert, &options.key) {
        (Some(_), Some(cert), Some(key)) => {
            match TlsConfig::builder().certificate(cert, key).build() {
                Ok(tls) => Some(tls),
                Err(error) => {
                    let _ = writeln!(std::io::stderr(), "lb-bench: {error}");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    let workers = options.workers.unwrap_or_else(runtime::available_workers);
    // Metrics cost what they cost with a recorder: the exporter's.
    let _exporter = if options.layers.has(Layers::Metrics) {
        match foobar_core::metrics::PrometheusExporter::install() {
            Ok(exporter) => Some(exporter),
            Err(error) => {
                let _ = writeln!(std::io::stderr(), "lb-bench: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let access_log = if options.layers.has(Layers::AccessLog) {
        match AccessLogWriter::open(&options.access_log) {
            Ok(writer) => Some(writer),
            Err(error) => {
                let _ = writeln!(std::io::stderr(), "lb-bench: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    // One proxy shared by the workers, as the lb example does.
    let shared_proxy = match build_proxy(&options, &shutdown) {
        Ok(proxy) => proxy,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "lb-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    let options = std::sync::Arc::new(options);

    let result = runtime::run_per_core(workers, move |worker| {
        let options = options.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        let access_log = access_log.clone();
        let proxy = shared_proxy.clone();
        async move {
            if worker == 0 {
                let signals = Shutdown::on_signals();
                let all = shutdown.clone();
                tokio::spawn(async move {
                    signals.wait().await;
                    all.trigger();
                });
                if let Some(path) = &options.health_path {
                    HealthCheck::http(path.clone())
                        .interval(Duration::from_secs(2))
                        .spawn_http(proxy.backends());
                }
            }
            let firewall = || Rules::parse(FIREWALL_RULES).map(FirewallLayer::new);
            let conn_limit = || ConnLimitLayer::new(100_000).per_client(10_000);
            let rate_limit = || RateLimitLayer::per_second(1_000_000_000, 1_000_000_000);
            let metrics = || MetricsLayer::new("lb");
            let logged = || {
                access_log
                    .clone()
                    .map(|writer| AccessLogLayer::new(writer, Format::Json))
                    .ok_or("no access log writer")
            };
            let opts = &options;
            let none = tower::layer::util::Identity::new();
            match options.layers {
                Layers::None => serve(opts, tls, &shutdown, none, proxy).await?,
                Layers::Firewall => serve(opts, tls, &shutdown, firewall()?, proxy).await?,
                Layers::ConnLimit => serve(opts, tls, &shutdown, conn_limit(), proxy).await?,
                Layers::RateLimit => {
                    let r = ServiceBuilder::new().layer(rate_limit()?).service(proxy);
                    serve(opts, tls, &shutdown, none, r).await?;
                }
                Layers::Metrics => {
                    let r = ServiceBuilder::new().layer(metrics()).service(proxy);
                    serve(opts, tls, &shutdown, none, r).await?;
                }
                Layers::AccessLog => {
                    let r = ServiceBuilder::new().layer(logged()?).service(proxy);
                    serve(opts, tls, &shutdown, none, r).await?;
                }
                Layers::All => {
                    // The lb example's order.
                    let c = ServiceBuilder::new()
                        .layer(firewall()?)
                        .layer(conn_limit())
                        .into_inner();
                    let r = ServiceBuilder::new()
                        .layer(metrics())
                        .layer(logged()?)
                        .layer(rate_limit()?)
                        .service(proxy);
                    serve(opts, tls, &shutdown, c, r).await?;
                }
            }
            Ok::<(), foobar_core::BoxError>(())
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "lb-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

//! Run with: `cargo run --release -p foobar-examples --bin lb-bench -- --listen 127.0.0.1:8080 --backend http://127.0.0.1:8081 --backend http://127.0.0.1:8082`
//!
//! The benchmark's load balancer (`foobar-lb/bench/run.sh`), configured
//! like the HAProxy and nginx it is compared with: round robin over the
//! backends given with `--backend`,
//! plain HTTP on `--listen` and, with `--tls-listen`, `--cert` and
//! `--key`, TLS termination too. One single-threaded runtime per worker
//! (`--workers`, default: one per core), the workers sharing the listening
//! ports through `SO_REUSEPORT`, each with its own upstream pools.
//! Ctrl-C or SIGTERM stops it gracefully.

use std::io::Write as _;
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::time::Duration;

use foobar_core::{runtime, PlainTcp, Server, Shutdown};
use foobar_guard::tls::{TlsConfig, TlsLayer};
use foobar_lb::health::HealthCheck;
use foobar_lb::policy::RoundRobin;
use foobar_lb::Proxy;
use tower::ServiceBuilder;

const USAGE: &str = "\
lb-bench: the benchmark's round-robin HTTP load balancer, with optional TLS termination

USAGE:
    lb-bench --backend URL... [--listen ADDR] [--tls-listen ADDR --cert FILE --key FILE]
       [--workers N] [--health-path PATH]

OPTIONS:
    --backend URL      a backend, http://host:port (repeatable, at least one)
    --listen ADDR      plain HTTP address [default: 127.0.0.1:8080]
    --tls-listen ADDR  HTTPS address (needs --cert and --key)
    --cert FILE        PEM certificate chain for --tls-listen
    --key FILE         PEM private key for --tls-listen
    --workers N        single-threaded workers [default: number of cores]
    --health-path PATH check backends with GET PATH every 2 s
    -h, --help         print this help
";

#[derive(Debug, Default)]
struct Options {
    backends: Vec<String>,
    listen: Option<String>,
    tls_listen: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    workers: Option<NonZeroUsize>,
    health_path: Option<String>,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--backend" => options.backends.push(value()?),
            "--listen" => options.listen = Some(value()?),
            "--tls-listen" => options.tls_listen = Some(value()?),
            "--cert" => options.cert = Some(value()?),
            "--key" => options.key = Some(value()?),
            "--health-path" => options.health_path = Some(value()?),
            "--workers" => {
                let n = value()?;
                options.workers = Some(
                    n.parse()
                        .map_err(|_| format!("--workers {n:?}: expected a number > 0"))?,
                );
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if options.backends.is_empty() {
        return Err("at least one --backend is needed".to_owned());
    }
    if options.tls_listen.is_some() && (options.cert.is_none() || options.key.is_none()) {
        return Err("--tls-listen needs --cert and --key".to_owned());
    }
    Ok(Some(options))
}

fn build_proxy(options: &Options, shutdown: &Shutdown) -> Result<Proxy, foobar_lb::Error> {
    let proxy = Proxy::builder(RoundRobin::new())
        .shutdown(shutdown.clone())
        .build()?;
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
    let options = match parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            let _ = write!(std::io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "lb-bench: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
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
    let options = std::sync::Arc::new(options);

    let result = runtime::run_per_core(workers, move |worker| {
        let options = options.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        async move {
            if worker == 0 {
                let signals = Shutdown::on_signals();
                let all = shutdown.clone();
                tokio::spawn(async move {
                    signals.wait().await;
                    all.trigger();
                });
            }
            let proxy = build_proxy(&options, &shutdown)
                .map_err(|e| foobar_core::Error::Runtime(e.to_string()))?;
            if let Some(path) = &options.health_path {
                HealthCheck::http(path.clone())
                    .interval(Duration::from_secs(2))
                    .spawn_http(proxy.backends());
            }
            let plain = Server::builder()
                .bind(options.listen.as_deref().unwrap_or("127.0.0.1:8080"))?
                .reuse_port(true)
                .shutdown(shutdown.clone())
                .build()?
                .serve_connections(PlainTcp, proxy.clone());
            match (&options.tls_listen, tls) {
                (Some(addr), Some(tls)) => {
                    let stage = ServiceBuilder::new()
                        .layer(TlsLayer::new(tls))
                        .service(PlainTcp);
                    let secure = Server::builder()
                        .bind(addr)?
                        .reuse_port(true)
                        .shutdown(shutdown.clone())
                        .build()?
                        .serve_connections(stage, proxy);
                    tokio::try_join!(plain, secure).map(|_| ())
                }
                _ => plain.await,
            }
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

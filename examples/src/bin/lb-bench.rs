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
            let proxy = build_proxy(&options, &shutdown)?;
            if let Some(path) = &options.health_path {
                HealthCheck::http(path.clone())
                    .interval(Duration::from_secs(2))
                    .spawn_http(proxy.backends());
            }
            let plain = Server::builder()
                .bind(&options.listen)?
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
                    tokio::try_join!(plain, secure)?;
                }
                _ => plain.await?,
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

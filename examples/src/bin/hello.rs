//! Run with: `cargo run -p foobar-examples --bin hello -- --listen 127.0.0.1:8080 --admin 127.0.0.1:9901`
//!
//! A hello server with the metrics layer, and an admin listener serving
//! `/metrics` and `/healthz`. Ctrl-C or SIGTERM stops both gracefully.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use foobar_core::admin::Admin;
use foobar_core::metrics::{MetricsLayer, PrometheusExporter};
use foobar_core::RequestBody;
use foobar_core::{ConnInfo, Server, Shutdown};
use http::{Request, Response};
use http_body_util::Full;
use tower::ServiceBuilder;

/// A hello server with request metrics and an admin listener.
#[derive(Debug, clap::Parser)]
#[command(name = "hello")]
struct Args {
    /// Address of the hello server (repeatable)
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: Vec<String>,
    /// Address of the admin listener (/metrics, /healthz)
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: String,
}

async fn hello(req: Request<RequestBody>) -> Result<Response<Full<Bytes>>, Infallible> {
    let peer = req
        .extensions()
        .get::<ConnInfo>()
        .map_or_else(|| "unknown".to_owned(), |info| info.peer.to_string());
    Ok(Response::new(Full::new(Bytes::from(format!(
        "hello from foobar, {peer} ({:?})\n",
        req.version()
    )))))
}

async fn run(args: Args) -> Result<(), foobar_core::Error> {
    let exporter = PrometheusExporter::install()?;
    let shutdown = Shutdown::on_signals();

    let mut web = Server::builder().shutdown(shutdown.clone());
    for addr in &args.listen {
        web = web.bind(addr)?;
    }
    let web = web.build()?;
    let admin = Server::builder()
        .bind(&args.admin)?
        .shutdown(shutdown)
        .build()?;
    announce(&web.local_addrs(), admin.local_addr());

    let app = ServiceBuilder::new()
        .layer(MetricsLayer::new("hello"))
        .service_fn(hello);
    tokio::try_join!(web.serve(app), admin.serve(Admin::new(exporter)))?;
    tracing::info!("stopped");
    Ok(())
}

fn announce(web: &[SocketAddr], admin: SocketAddr) {
    for addr in web {
        tracing::info!("hello server: curl http://{addr}/   (HTTP/2: curl --http2-prior-knowledge http://{addr}/)");
    }
    tracing::info!("metrics:      curl http://{admin}/metrics");
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = <Args as clap::Parser>::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

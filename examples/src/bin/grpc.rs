//! Run with: `cargo run -p foobar-examples --bin grpc -- serve --listen 127.0.0.1:50051 --name a`
//! and `cargo run -p foobar-examples --bin grpc -- call --backend http://127.0.0.1:50051 --count 10`
//!
//! A tonic gRPC server behind foobar-guard's firewall and rate limit, and a
//! client balanced by foobar-lb's `LoadBalancer` over tonic channels.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use foobar_core::Shutdown;
use foobar_examples::grpc::{self, Greeter, GreeterClient, GuardPolicy};
use foobar_examples::{config, AppError};
use foobar_lb::health::OutlierDetection;

/// A gRPC greeter behind foobar's layers, and a balanced client for it.
#[derive(Debug, Parser)]
#[command(name = "grpc")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the greeter (h2c) behind the firewall and the rate limit
    Serve {
        /// Address to serve on
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// Name in replies
        #[arg(long, default_value = "greeter")]
        name: String,
        /// Firewall rules file [default: loopback only]
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// Calls per second per client
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// Milliseconds to wait before each answer (a slow backend)
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
    /// Call the greeter through the load balancer
    Call {
        /// A greeter, http://host:port (repeatable)
        #[arg(long = "backend", value_name = "URL", required = true)]
        backends: Vec<String>,
        /// How many calls
        #[arg(long, default_value_t = 10)]
        count: u32,
    },
}

#[allow(clippy::print_stdout)]
async fn run(cli: Cli) -> Result<(), AppError> {
    let shutdown = Shutdown::on_signals();
    match cli.command {
        Command::Serve {
            listen,
            name,
            rules,
            rate,
            delay_ms,
        } => {
            let policy = GuardPolicy {
                rules: config::rules(rules.as_deref(), config::LOOPBACK_ONLY)?,
                rate: (rate.max(1), rate.max(1).saturating_mul(2)),
            };
            let listener = tokio::net::TcpListener::bind(listen).await?;
            tracing::info!(%listen, %name, "greeter up");
            let greeter = Greeter::new(name, Duration::from_millis(delay_ms));
            grpc::serve(listener, greeter, policy, None, shutdown).await
        }
        Command::Call { backends, count } => {
            let outlier = OutlierDetection::new().consecutive_failures(3);
            let (mut client, set): (GreeterClient<_>, _) =
                grpc::balanced_client(&backends, None, outlier, &shutdown)?;
            for i in 0..count {
                match client.say_hello(&format!("call {i}")).await {
                    Ok(reply) => println!(
                        "{} (from {}, as {})",
                        reply.message, reply.served_by, reply.client
                    ),
                    Err(status) => println!("call {i}: {status}"),
                }
            }
            for backend in set.list() {
                println!(
                    "{}: {} requests, {} errors, rtt {:?}, ejected {}",
                    backend.id(),
                    backend.requests_total(),
                    backend.errors_total(),
                    backend.rtt_estimate(),
                    backend.is_ejected()
                );
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    config::init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

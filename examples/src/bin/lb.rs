//! Run with: `cargo run -p foobar-examples --bin lb -- --help`
//!
//! The stack's HTTPS load balancer, as its own process: Firewall 1,
//! connection limits, TLS termination (SIGHUP reloads the certificate and
//! reopens the access log), per-client rate limit, HTTPS with a client
//! certificate to the web servers, and an admin listener with metrics and
//! the status page.

use foobar_examples::{config, lb};

/// A thread-caching allocator: a proxy allocates and frees buffers on every
/// request, which the system allocator serves noticeably slower.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    config::run_role::<lb::LbArgs, _, _, _, _>(std::env::args(), lb::LbConfig::from_args, lb::run)
}

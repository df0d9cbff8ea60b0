//! Run with: `cargo run -p foobar-examples --bin stack`
//!
//! The whole www.foobar.com topology on one machine: private MariaDB primary
//! and replica, a development CA, two web servers and the HTTPS load
//! balancer, each role its own process. `stack web …` and `stack lb …` run
//! one role, as the stack itself does.

use foobar_examples::{cli, lb, stack, web};

/// A thread-caching allocator: a proxy allocates and frees buffers on every
/// request, which the system allocator serves noticeably slower.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    match args.peek().map(String::as_str) {
        Some("web") => {
            args.next();
            cli::run_role(
                args,
                web::FLAGS,
                web::USAGE,
                web::WebConfig::from_flags,
                web::run,
            )
        }
        Some("lb") => {
            args.next();
            cli::run_role(
                args,
                lb::FLAGS,
                lb::USAGE,
                lb::LbConfig::from_flags,
                lb::run,
            )
        }
        _ => cli::run_role(
            args,
            stack::FLAGS,
            stack::USAGE,
            stack::StackConfig::from_flags,
            stack::run,
        ),
    }
}

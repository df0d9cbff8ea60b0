//! Run with: `cargo run -p foobar-examples --bin stack`
//!
//! The whole www.foobar.com topology on one machine: private MariaDB primary
//! and replica, a development CA, two web servers and the HTTPS load
//! balancer, each role its own process. `stack web …` and `stack lb …` run
//! one role, as the stack itself does.

use foobar_examples::{config, lb, stack, web};

/// A thread-caching allocator: a proxy allocates and frees buffers on every
/// request, which the system allocator serves noticeably slower.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        // `stack web --listen ..` parses as `stack-web --listen ..`.
        Some("web") => config::run_role::<web::WebArgs, _, _, _, _>(
            role_args(&args, "stack web"),
            web::WebConfig::from_args,
            web::run,
        ),
        Some("lb") => config::run_role::<lb::LbArgs, _, _, _, _>(
            role_args(&args, "stack lb"),
            lb::LbConfig::from_args,
            lb::run,
        ),
        _ => config::run_role::<stack::StackArgs, _, _, _, _>(
            args,
            stack::StackConfig::from_args,
            stack::run,
        ),
    }
}

/// The role's command line: its name in place of the program and the role.
fn role_args(args: &[String], name: &str) -> Vec<String> {
    std::iter::once(name.to_owned())
        .chain(args.iter().skip(2).cloned())
        .collect()
}

//! Run with: `cargo run -p foobar-examples --bin web -- --help`
//!
//! One guestbook web server of the foobar stack, as its own process.

use foobar_examples::{config, web};

/// A thread-caching allocator: a proxy allocates and frees buffers on every
/// request, which the system allocator serves noticeably slower.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    config::run_role::<web::WebArgs, _, _, _, _>(
        std::env::args(),
        web::WebConfig::from_args,
        web::run,
    )
}

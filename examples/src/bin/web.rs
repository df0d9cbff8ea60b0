//! Run with: `cargo run -p foobar-examples --bin web -- --help`
//!
//! One guestbook web server of the foobar stack, as its own process.

use foobar_examples::{cli, web};

fn main() -> std::process::ExitCode {
    cli::run_role(
        std::env::args().skip(1),
        web::FLAGS,
        web::USAGE,
        web::WebConfig::from_flags,
        web::run,
    )
}

//! The roles of the www.foobar.com reference stack, as functions shared by
//! the example binaries and the end-to-end tests.
//!
//! | binary | role |
//! |---|---|
//! | `hello` | the smallest server: metrics and an admin listener |
//! | `grpc` | [`grpc`]: a tonic server behind guard's layers, a client balanced by `LoadBalancer` |
//! | `web` | [`web`]: a guestbook API behind the load balancer, on [`foobar_db::RwPool`] |
//! | `lb` | [`lb`]: the HTTPS load balancer in front of the web servers, with certificates from files or an ACME CA |
//! | `lb-bench` | the benchmark's minimal thread-per-core load balancer |
//! | `stack` | the whole topology on one machine (with `--acme-pebble`, a private [`pebble`] ACME CA too) |

pub mod certs;
pub mod config;
pub mod grpc;
pub mod lb;
pub mod pebble;
pub mod stack;
pub mod web;

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
struct Readme;

/// Errors of the example applications. Applications may box their errors;
/// the library crates never do in their public APIs.
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

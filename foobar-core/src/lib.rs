#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod admin;
mod body;
pub mod conn;
mod error;
pub mod http1;
pub mod io;
pub mod metrics;
pub mod monitor;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod tls;

pub use body::{BodyError, Interim, RequestBody};
pub use conn::{Accepted, ConnInfo, TlsInfo};
pub use error::{BoxError, Error, Result};
pub use server::{HttpConfig, PlainTcp, Server, ServerBuilder};
pub use shutdown::Shutdown;
pub use status::{Snapshot, StatusSource};

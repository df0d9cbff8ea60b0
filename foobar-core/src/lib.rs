#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "access-log")]
#[cfg_attr(docsrs, doc(cfg(feature = "access-log")))]
pub mod access_log;
#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
mod body;
pub mod conn;
mod error;
#[cfg(feature = "fuzzing")]
#[cfg_attr(docsrs, doc(cfg(feature = "fuzzing")))]
pub mod fuzzing;
pub mod http1;
pub mod io;
pub mod metrics;
#[cfg(any(feature = "monitor", feature = "push"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "monitor", feature = "push"))))]
pub mod monitor;
pub mod runtime;
pub mod server;
pub mod shutdown;
#[cfg(feature = "status")]
#[cfg_attr(docsrs, doc(cfg(feature = "status")))]
pub mod status;
pub mod tls;

pub use body::{BodyError, Interim, RequestBody};
pub use conn::{Accepted, ConnInfo, TlsInfo, UpstreamName};
pub use error::{BoxError, Error, Result};
pub use server::{HttpConfig, PlainTcp, Server, ServerBuilder};
pub use shutdown::Shutdown;
#[cfg(feature = "status")]
pub use status::{Snapshot, StatusSource};

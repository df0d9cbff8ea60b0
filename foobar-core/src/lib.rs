#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "access-log")]
#[cfg_attr(docsrs, doc(cfg(feature = "access-log")))]
pub mod access_log;
pub mod admin;
pub mod conn;
mod error;
pub mod io;
pub mod metrics;
pub mod monitor;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod tls;

pub use conn::{Accepted, ConnInfo, TlsInfo, UpstreamName};
pub use error::{BoxError, Error, Result};
pub use server::{
    DirectToHttp, Handled, HttpConfig, PlainTcp, RawConnection, Server, ServerBuilder,
};
pub use shutdown::Shutdown;
pub use status::{Snapshot, StatusSource};

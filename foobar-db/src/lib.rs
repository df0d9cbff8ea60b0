#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod classify;
pub mod consistency;
mod error;
pub mod failover;
mod metric_help;
pub mod monitor;
pub mod pool;
pub mod query;
pub mod route;
#[cfg(feature = "sandbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "sandbox")))]
pub mod sandbox;
pub mod status;
pub mod topology;

pub use consistency::Consistency;
pub use error::{ConfigError, Error, Result, TimeoutKind};
pub use failover::{FailoverConfig, FailoverMode};
pub use monitor::MonitorConfig;
pub use pool::{DbTls, PoolConfig, ResetPolicy};
pub use query::Executor;
pub use route::{PooledConn, ReadFallback, RwPool, RwPoolBuilder, Session, Transaction};
pub use topology::{HostConfig, RoleHint, Topology};

/// The MySQL driver the pool is built on, for its row, value and parameter
/// types.
pub use mysql_async;

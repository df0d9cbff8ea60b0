#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod backends;
mod balance;
pub mod discovery;
mod error;
pub mod health;
mod key;
mod latency;
mod metric_help;
pub mod policy;
pub mod proxy;
pub mod status;

pub use backend::{Backend, BackendConfig};
pub use backends::{Backends, BackendsBuilder};
pub use balance::{LoadBalancer, Outcome, ResponseFuture};
pub use error::{Error, NoHealthyBackend, UpstreamError};
pub use key::{hash_bytes, HttpKey, NoKey, RequestKey};
pub use policy::Policy;
pub use proxy::{Proxy, ProxyBuilder, Upstream};

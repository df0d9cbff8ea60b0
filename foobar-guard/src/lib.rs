#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod accept_future;
#[cfg(feature = "acme")]
#[cfg_attr(docsrs, doc(cfg(feature = "acme")))]
pub mod acme;
mod body;
mod client_addr;
#[cfg(any(feature = "acme", feature = "ocsp"))]
mod der;
mod error;
pub mod firewall;
#[cfg(feature = "fuzzing")]
#[cfg_attr(docsrs, doc(cfg(feature = "fuzzing")))]
pub mod fuzzing;
pub mod handshake_limit;
pub mod hygiene;
pub mod limit;
mod metric_help;
pub mod proxy_protocol;
pub mod rate_limit;
mod response_future;
pub mod tls;
mod unknown_client;

pub use accept_future::AcceptFuture;
pub use body::GuardBody;
pub use client_addr::{ClientAddr, TrustedProxies};
pub use error::{
    ConfigError, ProxyHeaderError, QuotaError, Refused, Result, RulesOrigin, SyntaxError,
};
pub use firewall::{FirewallLayer, Rules};
pub use handshake_limit::HandshakeRateLimitLayer;
pub use ipnet::IpNet;
pub use limit::ConnLimitLayer;
pub use proxy_protocol::ProxyProtocolLayer;
pub use rate_limit::RateLimitLayer;
pub use tls::{TlsConfig, TlsError, TlsLayer};
pub use unknown_client::UnknownClient;

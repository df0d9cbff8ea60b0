#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod client_addr;
mod error;
pub mod firewall;
pub mod tls;

pub use body::GuardBody;
pub use client_addr::{ClientAddr, TrustedProxies};
pub use error::{Error, ProxyHeaderError, Result};
pub use firewall::{FirewallLayer, Rules};
pub use ipnet::IpNet;
pub use tls::{TlsConfig, TlsError, TlsLayer};

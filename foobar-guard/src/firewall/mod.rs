//! Firewall: ordered allow/deny CIDR rules, enforced on connections and on
//! requests.
//!
//! [`Rules`] is the rules engine: first match wins, a default for the rest,
//! compiled into disjoint address ranges so a lookup costs the same with ten
//! rules or a million. [`FirewallLayer`] enforces them at two levels with one
//! set of rules:
//!
//! - **connection level** (`Service<Accepted<IO>>`, in the server's
//!   connection stage): a denied peer is refused before any other work,
//!   TLS handshake included; the server closes the connection.
//! - **request level** (`Service<http::Request<B>>`): the client address is
//!   resolved through [trusted proxies](crate::TrustedProxies) (`Forwarded`
//!   / `X-Forwarded-For`), stored as a [`ClientAddr`](crate::ClientAddr)
//!   extension, and a denied client gets `403 Forbidden`. The peer is
//!   found wherever the server recorded it (foobar, axum, tonic: see
//!   [`ClientAddr::connection_peer`](crate::ClientAddr::connection_peer));
//!   a request with no known client is refused with `500`
//!   ([`UnknownClient`](crate::UnknownClient)).
//!
//! The address checked at connection level is [`ConnInfo::client_addr`]:
//! the TCP peer, or the PROXY protocol client when a
//! [`ProxyProtocolLayer`](crate::proxy_protocol::ProxyProtocolLayer) runs
//! before the firewall.
//!
//! Rules are replaced at run time through [`RulesHandle`], without dropping
//! traffic; reads are lock-free.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `foobar_firewall_denied_total` | counter | `level` (`connection`, `request`) |
//! | `foobar_unknown_client_requests_total` | counter (refused: no client address) | `layer="firewall"` |
//!
//! [`ConnInfo::client_addr`]: foobar_core::ConnInfo::client_addr

mod layer;
mod rules;
mod service;
mod table;

pub use self::layer::{FirewallLayer, RulesHandle};
pub use self::rules::{Action, Rule, Rules, RulesBuilder};
pub(crate) use self::service::unknown_client;
pub use self::service::Firewall;
pub use crate::accept_future::AcceptFuture;
pub use crate::response_future::ResponseFuture;

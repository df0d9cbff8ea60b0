//! TLS termination as a connection layer.
//!
//! [`TlsLayer`] sits in the server's connection stage (after the firewall
//! and connection limits, so refused peers cost no handshake): it performs
//! the rustls handshake under a timeout and hands the decrypted stream on,
//! with the negotiated SNI, ALPN protocol, TLS version, cipher suite and
//! client certificate chain recorded in
//! [`ConnInfo::tls`](foobar_core::ConnInfo). The server then speaks HTTP/2
//! or HTTP/1.1 as ALPN decided.
//!
//! [`TlsConfig`] holds the certificates (several, chosen by SNI, wildcards
//! included), ALPN, TLS 1.2/1.3, session resumption and optional client
//! certificate verification, and reloads them from their files on
//! [`TlsConfig::reload`] (or on `SIGHUP` with
//! [`TlsConfig::reload_on_sighup`]): new connections get the new
//! certificates, open ones are untouched, and a broken file leaves the old
//! configuration in place and is reported as a [`TlsError`] naming it.
//!
//! With the `ocsp` feature, OCSP responses are stapled to the
//! certificates (module `ocsp`); with `acme`, certificates come from an
//! ACME CA too (module `acme`).
//!
//! Metrics: `foobar_tls_handshakes_total{result="success|failure|timeout"}`,
//! `foobar_tls_handshake_duration_seconds`,
//! `foobar_tls_reloads_total{result="success|failure"}`.
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use foobar_core::{ConnInfo, PlainTcp, Server, Shutdown};
//! use foobar_guard::tls::{TlsConfig, TlsLayer};
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::ServiceBuilder;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let shutdown = Shutdown::on_signals();
//! let tls = TlsConfig::builder()
//!     .certificate("/etc/foobar/www.crt", "/etc/foobar/www.key")
//!     .build()?;
//! tls.reload_on_sighup(shutdown.clone())?;
//!
//! let conn_stage = ServiceBuilder::new()
//!     .layer(TlsLayer::new(tls).handshake_timeout(Duration::from_secs(5)))
//!     .service(PlainTcp);
//! let app = tower::service_fn(|req: Request<foobar_core::RequestBody>| async move {
//!     let tls = req.extensions().get::<ConnInfo>().and_then(|c| c.tls.clone());
//!     let name = tls.and_then(|t| t.server_name.clone()).unwrap_or_default();
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!("hello {name}\n")))))
//! });
//! Server::builder()
//!     .bind("0.0.0.0:443")?
//!     .shutdown(shutdown)
//!     .build()?
//!     .serve_connections(conn_stage, app)
//!     .await?;
//! # Ok(()) }
//! ```

mod client_auth;
mod config;
mod error;
mod future;
mod layer;
mod metrics;
#[cfg(feature = "ocsp")]
#[cfg_attr(docsrs, doc(cfg(feature = "ocsp")))]
pub mod ocsp;
mod resolver;
mod service;

pub use self::config::{TlsConfig, TlsConfigBuilder};
pub use self::error::{NameOrigin, TlsError};
pub use self::future::ResponseFuture;
pub use self::layer::{TlsLayer, DEFAULT_HANDSHAKE_TIMEOUT};
pub use self::service::Tls;
pub use tokio_rustls::server::TlsStream;

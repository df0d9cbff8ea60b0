//! The crate's error type.

use std::net::{AddrParseError, SocketAddr};

#[cfg(feature = "prometheus")]
use crate::metrics::ExporterError;
use crate::tls::TlsError;

/// Errors from setting up foobar-core's servers, TLS material and exporter:
/// configuration and resources, found before anything is served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An address string could not be parsed as `ip:port`.
    #[error("invalid listen address {input:?} (expected ip:port, e.g. 127.0.0.1:8080 or [::1]:8080): {source}")]
    InvalidAddress {
        /// The string as given.
        input: String,
        /// The parser's complaint.
        #[source]
        source: AddrParseError,
    },
    /// A server was built without any address to listen on.
    #[error("no listen address was given")]
    NoAddress,
    /// A listening socket could not be created, bound or registered.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that failed.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// TLS material could not be loaded or a TLS configuration built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The Prometheus recorder could not be installed.
    #[cfg(feature = "prometheus")]
    #[error(transparent)]
    Exporter(#[from] ExporterError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The boxed error used at service boundaries, as in tower.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

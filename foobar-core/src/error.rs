//! The crate's error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors from setting up or running foobar-core's servers and exporters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An address string could not be parsed as `ip:port`.
    #[error("invalid listen address {input:?}: {reason}")]
    InvalidAddress {
        /// The string as given.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A listening socket could not be created or bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that failed.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A server was built without any address to listen on.
    #[error("no listen address was given")]
    NoAddress,
    /// The Prometheus recorder could not be built or installed.
    #[error("cannot install the Prometheus recorder: {0}")]
    Exporter(String),
    /// A PEM file or buffer could not be read or parsed.
    #[error("{what} {origin}: {reason}")]
    Pem {
        /// What was being read ("certificate", "private key", "CA bundle").
        what: &'static str,
        /// Where it came from (a path, or "(in memory)").
        origin: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A TLS configuration was rejected by rustls.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A worker thread or its runtime could not be started, or it panicked.
    #[error("runtime: {0}")]
    Runtime(String),
    /// An invalid server name was given for TLS.
    #[error("invalid TLS server name {0:?}")]
    InvalidServerName(String),
    /// A file (certificate chain, private key, CA bundle) could not be read.
    #[error("cannot read {what} {path}: {source}")]
    ReadFile {
        /// What was being read ("certificate", "private key", "CA bundle").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A private key does not belong to the certificate it was paired with.
    #[error("private key {key} does not match the certificate {certificate}")]
    KeyMismatch {
        /// Where the certificate came from (a path, or "(in memory)").
        certificate: String,
        /// Where the key came from (a path, or "(in memory)").
        key: String,
    },
    /// A client TLS configuration was built without a CA to trust.
    #[error("client TLS needs a CA bundle to verify servers; none was given")]
    NoTrustAnchors,
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A development certificate could not be made.
    #[error("cannot make a development certificate: {0}")]
    DevCert(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The boxed error used at service boundaries, as in tower.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

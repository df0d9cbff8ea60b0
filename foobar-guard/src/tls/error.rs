//! Errors of the TLS termination layer and its configuration.

use std::net::SocketAddr;
use std::time::Duration;

/// Why a TLS configuration could not be (re)loaded, or a handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate, key or CA file could not be loaded: missing
    /// (`ReadFile`), damaged (`Pem`), or a key that does not match its
    /// certificate (`KeyMismatch`). The inner error names the file.
    #[error(transparent)]
    Load(#[from] foobar_core::tls::TlsError),
    /// The configuration has no certificate at all.
    #[error("TLS configuration has no certificate")]
    NoCertificate,
    /// A server name given for a certificate is not a DNS name or a
    /// `*.`-wildcard DNS name.
    #[error("invalid certificate name {name:?} for {origin}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// The certificate file it was given for (or "(in memory)", or
        /// "allowed client names").
        origin: String,
    },
    /// The client CA bundle cannot be used to verify client certificates.
    #[error("client CA bundle {origin}: {reason}")]
    ClientCa {
        /// The file (or "(in memory)").
        origin: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Allowed client names were given without a client CA to verify
    /// client certificates against.
    #[error("allowed client names need a client CA (client_ca_file or client_ca_pem)")]
    ClientNamesWithoutCa,
    /// rustls rejected the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client did not finish the handshake in time.
    #[error("TLS handshake with {peer} timed out after {timeout:?}")]
    HandshakeTimeout {
        /// The TCP peer.
        peer: SocketAddr,
        /// The configured limit.
        timeout: Duration,
    },
    /// The handshake failed (protocol error, no shared version or cipher,
    /// certificate refused, connection closed).
    #[error("TLS handshake with {peer} failed: {source}")]
    Handshake {
        /// The TCP peer.
        peer: SocketAddr,
        /// The error from the TLS stack; for TLS failures its inner error
        /// is a `rustls::Error`.
        #[source]
        source: std::io::Error,
    },
    /// A reload signal handler could not be installed.
    #[error("cannot listen for the reload signal: {0}")]
    Signal(#[source] std::io::Error),
}

//! Errors of the TLS configuration. Refused handshakes are
//! [`Refused::TlsHandshake`](crate::Refused::TlsHandshake) and
//! [`Refused::TlsHandshakeTimeout`](crate::Refused::TlsHandshakeTimeout).

use std::fmt;

use foobar_core::tls::Origin;

/// What a server name was given for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameOrigin {
    /// A served certificate.
    Certificate(Origin),
    /// The list of client names allowed to connect.
    AllowedClientNames,
}

impl fmt::Display for NameOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificate(origin) => write!(f, "the certificate {origin}"),
            Self::AllowedClientNames => f.write_str("the allowed client names"),
        }
    }
}

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
        /// What it was given for.
        origin: NameOrigin,
    },
    /// The client CA bundle cannot be used to verify client certificates.
    #[error("client CA bundle {origin}: {source}")]
    ClientCa {
        /// Where the bundle came from.
        origin: Origin,
        /// Why rustls rejected it.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// Allowed client names were given without a client CA to verify
    /// client certificates against.
    #[error("allowed client names need a client CA (client_ca_file or client_ca_pem)")]
    ClientNamesWithoutCa,
    /// rustls rejected the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// A reload signal handler could not be installed.
    #[error("cannot listen for the reload signal: {0}")]
    Signal(#[source] std::io::Error),
}

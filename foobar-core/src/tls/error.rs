//! Why TLS material could not be loaded or a TLS configuration built.

use std::fmt;
use std::path::{Path, PathBuf};

/// TLS material could not be loaded, or a TLS configuration could not be
/// built. Every variant about a file names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    ReadFile {
        /// What the file should hold.
        what: Material,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// PEM data could not be used.
    #[error("{what} {origin}: {problem}")]
    Pem {
        /// What the data should hold.
        what: Material,
        /// Where it came from.
        origin: Origin,
        /// What is wrong with it.
        #[source]
        problem: PemProblem,
    },
    /// A private key does not belong to the certificate it was paired with.
    #[error("private key {key} does not match the certificate {certificate}")]
    KeyMismatch {
        /// Where the certificate came from.
        certificate: Origin,
        /// Where the key came from.
        key: Origin,
    },
    /// A client TLS configuration was built without a CA to trust.
    #[error("client TLS needs a CA bundle to verify servers; none was given")]
    NoTrustAnchors,
    /// A string is neither a DNS name nor an IP address.
    #[error("invalid TLS server name {name:?}")]
    InvalidServerName {
        /// The string as given.
        name: String,
        /// The parser's complaint.
        #[source]
        source: rustls_pki_types::InvalidDnsNameError,
    },
    /// rustls rejected the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A development certificate was asked for without any name.
    #[cfg(feature = "dev-certs")]
    #[error("a server certificate needs at least one name")]
    NoCertificateName,
    /// A development certificate or key could not be made (a name that is
    /// neither a DNS name nor an IP address, say).
    #[cfg(feature = "dev-certs")]
    #[error("cannot make a development certificate: {0}")]
    DevCert(#[from] rcgen::Error),
}

/// What a file or buffer was expected to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Material {
    /// A certificate chain.
    Certificate,
    /// A private key.
    PrivateKey,
    /// Trusted CA certificates.
    CaBundle,
}

impl fmt::Display for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Certificate => "certificate",
            Self::PrivateKey => "private key",
            Self::CaBundle => "CA bundle",
        })
    }
}

/// Where TLS material came from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A file.
    File(PathBuf),
    /// A buffer in memory.
    Memory,
}

impl Origin {
    /// The file, if it came from one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            Self::Memory => None,
        }
    }
}

impl From<&Path> for Origin {
    fn from(path: &Path) -> Self {
        Self::File(path.to_path_buf())
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Memory => f.write_str("(in memory)"),
        }
    }
}

/// What is wrong with PEM data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PemProblem {
    /// It is not valid PEM (a missing end marker, broken base64).
    #[error("{0}")]
    Syntax(#[source] rustls_pki_types::pem::Error),
    /// It holds no section of the expected kind.
    #[error("no {expected} section found in the PEM data")]
    NoSection {
        /// The section labels looked for (`CERTIFICATE`, or the private
        /// key forms).
        expected: &'static str,
    },
    /// A certificate chain is empty.
    #[error("the chain is empty")]
    EmptyChain,
    /// The private key cannot be used for signing (damaged, or of an
    /// unsupported kind).
    #[error("unusable key: {0}")]
    UnusableKey(#[source] rustls::Error),
    /// A certificate cannot be parsed.
    #[error("unusable certificate: {0}")]
    UnusableCertificate(#[source] rustls::Error),
    /// A certificate cannot serve as a server's or client's own (it does
    /// not parse as an end-entity certificate).
    #[error("not an end-entity certificate: {0}")]
    NotAnEndEntity(#[source] webpki::Error),
    /// A certificate of a CA bundle cannot be a trust anchor.
    #[error("certificate #{number} is not a usable CA: {source}")]
    NotACa {
        /// Its position in the bundle, from 1.
        number: usize,
        /// rustls's complaint.
        #[source]
        source: rustls::Error,
    },
}

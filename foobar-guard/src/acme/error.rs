//! Errors of certificate management.

use std::path::PathBuf;

/// Why a certificate could not be obtained, stored or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// The configuration names no domain.
    #[error("ACME configuration has no domain name")]
    NoNames,
    /// A wildcard name was given: it can only be validated over DNS-01,
    /// which this client does not do.
    #[error("wildcard name {0:?} needs the DNS-01 challenge, which is not supported; list the names instead")]
    WildcardName(String),
    /// A name is not a valid DNS name (IP addresses are not supported
    /// either).
    #[error("invalid domain name {0:?} for an ACME certificate")]
    InvalidName(String),
    /// No storage directory was given.
    #[error("ACME configuration has no storage directory")]
    NoStorage,
    /// A file or directory of the storage could not be read, written or
    /// locked.
    #[error("ACME storage {path}: {source}")]
    Storage {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A stored file is damaged (not the JSON or PEM it should be).
    #[error("ACME storage {path}: damaged file: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The lock of the storage directory stayed taken by another instance
    /// for longer than the wait allowed.
    #[error("ACME storage lock {path} still held by another instance after {waited:?}")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long this instance waited.
        waited: std::time::Duration,
    },
    /// The system's trust anchors (to reach the CA) could not be loaded.
    #[error("cannot load the system trust anchors: {0}")]
    SystemTrust(#[source] std::io::Error),
    /// The CA sent a challenge token that is not base64url.
    #[error("the CA sent a malformed challenge token {0:?}")]
    BadToken(String),
    /// The CA's TLS trust anchors could not be loaded.
    #[error("ACME CA trust anchors: {0}")]
    Trust(#[source] foobar_core::tls::TlsError),
    /// The ACME server refused a request or could not be reached.
    #[error("ACME protocol: {0}")]
    Protocol(#[from] instant_acme::Error),
    /// The CA offered none of the configured challenge types for a name.
    #[error("the CA offers no {challenge} challenge for {name}")]
    NoChallenge {
        /// The name being validated.
        name: String,
        /// The challenge type wanted.
        challenge: &'static str,
    },
    /// The CA could not validate the order (the challenge failed); the
    /// detail is the CA's.
    #[error("the CA refused the order for {names}: {detail}")]
    Invalid {
        /// The names of the order.
        names: String,
        /// What the CA said, if anything.
        detail: String,
    },
    /// A key or the certificate signing request could not be made.
    #[error("cannot make a key or CSR: {0}")]
    Key(#[from] rcgen::Error),
    /// The certificate the CA returned cannot be used (bad PEM, a key
    /// that does not match, no validity period).
    #[error("unusable certificate for {names}: {reason}")]
    Certificate {
        /// The names of the certificate.
        names: String,
        /// What is wrong with it.
        reason: String,
    },
}

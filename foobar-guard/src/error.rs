//! The crate's error type.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Errors from building or running foobar-guard's layers.
///
/// Connection layers fail with this type to close a connection (the server
/// logs the reason); configuration parsers return it for bad input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A firewall rules text has a syntax error.
    #[error("{origin}:{line}: {reason}: {token:?}")]
    RulesSyntax {
        /// Where the text came from: a file path, or `(in memory)`.
        origin: String,
        /// The 1-based line number.
        line: usize,
        /// The offending token (or the whole line when it is incomplete).
        token: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A firewall rules file could not be read.
    #[error("cannot read firewall rules {path}: {source}")]
    RulesFile {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The firewall denied a connection from this address.
    #[error("connection from {addr} denied by the firewall")]
    Denied {
        /// The client address that was checked.
        addr: IpAddr,
    },
    /// The server's total connection limit was reached.
    #[error("connection from {addr} refused: {limit} connections already open")]
    TooManyConnections {
        /// The client address that was refused.
        addr: IpAddr,
        /// The configured total limit.
        limit: usize,
    },
    /// The per-client connection limit was reached for this address.
    #[error("connection from {addr} refused: it already has {limit} open connections")]
    TooManyConnectionsFromClient {
        /// The client address that was refused.
        addr: IpAddr,
        /// The configured per-client limit.
        limit: usize,
    },
    /// A PROXY protocol header was missing, malformed, late or not allowed.
    #[error("PROXY protocol from {peer}: {reason}")]
    ProxyProtocol {
        /// The TCP peer that sent (or failed to send) the header.
        peer: SocketAddr,
        /// What went wrong.
        reason: ProxyHeaderError,
    },
    /// A rate-limit quota was given a zero rate, burst or period.
    #[error("invalid rate limit: {0}")]
    InvalidQuota(&'static str),
}

/// Why a PROXY protocol header was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// The peer is not a trusted proxy but sent a PROXY header.
    #[error("header sent by a peer that is not a trusted proxy")]
    Untrusted,
    /// A trusted proxy connected without sending a header.
    #[error("a trusted proxy sent no PROXY header")]
    Missing,
    /// The header did not arrive within the read timeout.
    #[error("no complete header within the read timeout")]
    Timeout,
    /// The header is not valid PROXY protocol v1 or v2.
    #[error("malformed header: {0}")]
    Malformed(&'static str),
    /// Reading the header failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

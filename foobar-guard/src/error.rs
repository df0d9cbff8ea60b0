//! The crate's errors: configuration that cannot be used ([`ConfigError`])
//! and connections or requests a layer refused ([`Refused`]).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// A configuration the layers cannot use: firewall rules that do not parse
/// or cannot be read, a rate limit of zero. Returned when building a layer
/// or reloading its configuration, never while serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A firewall rules text (or a trusted-proxy list) has a syntax error.
    #[error("{origin}:{line}: {reason}: {token:?}")]
    RulesSyntax {
        /// Where the text came from.
        origin: RulesOrigin,
        /// The 1-based line number.
        line: usize,
        /// The offending text (or the whole line when it is incomplete).
        token: String,
        /// What is wrong with it.
        reason: SyntaxError,
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
    /// A rate-limit quota was given a zero rate, burst or period.
    #[error("invalid rate limit: {0}")]
    InvalidQuota(QuotaError),
}

/// Where a rules text came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RulesOrigin {
    /// A string given in code.
    InMemory,
    /// A file.
    File(PathBuf),
}

impl fmt::Display for RulesOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InMemory => f.write_str("(in memory)"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What is wrong with a line of firewall rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyntaxError {
    /// A keyword without its operand.
    #[error("incomplete rule")]
    IncompleteRule,
    /// More than a keyword and an operand on one line.
    #[error("unexpected token after the rule")]
    TrailingToken,
    /// The line starts with something other than `allow`, `deny` or
    /// `default`.
    #[error("expected allow, deny or default")]
    UnknownKeyword,
    /// `default` followed by something other than `allow` or `deny`.
    #[error("expected allow or deny")]
    UnknownAction,
    /// The operand is not an IP address or CIDR block.
    #[error("expected an IP address or CIDR block")]
    NotANetwork,
}

/// Which part of a rate-limit quota is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// The rate is zero.
    #[error("the rate is zero")]
    ZeroRate,
    /// The burst is zero.
    #[error("the burst is zero")]
    ZeroBurst,
    /// The period is zero.
    #[error("the period is zero")]
    ZeroPeriod,
}

/// A connection a connection-level layer refused. The layer's future fails
/// with it (boxed); the server closes the connection and logs the reason.
/// Downcast the server's error to match on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
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
    /// The client opened new connections faster than the handshake rate
    /// limit allows.
    #[error("connection from {addr} refused: over its rate of new connections, retry in {retry_after:?}")]
    TooManyHandshakes {
        /// The client address that was refused.
        addr: IpAddr,
        /// How long until the client's next connection would be admitted.
        retry_after: std::time::Duration,
    },
    /// The client did not finish the TLS handshake in time.
    #[error("TLS handshake with {peer} timed out after {timeout:?}")]
    TlsHandshakeTimeout {
        /// The TCP peer.
        peer: SocketAddr,
        /// The configured limit.
        timeout: std::time::Duration,
    },
    /// The TLS handshake failed (protocol error, no shared version or
    /// cipher, certificate refused, connection closed).
    #[error("TLS handshake with {peer} failed: {source}")]
    TlsHandshake {
        /// The TCP peer.
        peer: SocketAddr,
        /// The error from the TLS stack; for TLS failures its inner error
        /// is a `rustls::Error`.
        #[source]
        source: std::io::Error,
    },
    /// An ACME TLS-ALPN-01 validation handshake (ALPN `acme-tls/1`)
    /// completed; such a connection carries no HTTP and is closed.
    #[error("ACME TLS-ALPN-01 validation from {peer} answered")]
    AcmeValidation {
        /// The CA's validation client.
        peer: SocketAddr,
    },
    /// A PROXY protocol header was missing, malformed, late or not allowed.
    #[error("PROXY protocol from {peer}: {reason}")]
    ProxyProtocol {
        /// The TCP peer that sent (or failed to send) the header.
        peer: SocketAddr,
        /// What went wrong.
        reason: ProxyHeaderError,
    },
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

/// `Result` with this crate's [`ConfigError`].
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

//! The crate's error types.
//!
//! [`Error`] is what every query and the builder return. Configuration
//! mistakes are [`ConfigError`]s, found when the pool is built; problems
//! with the servers (bad credentials, a missing privilege, a read-only
//! "primary") get their own variants the moment the pool knows them, not a
//! [`Error::NoWriter`] after a wait.
//!
//! # A write that failed may still have committed
//!
//! A write that fails with a connection error
//! ([`Error::is_connection_error`]) or a [`Error::StatementTimeout`] was
//! sent, and the server may have committed it before the answer was lost:
//! the primary died after the commit, the network broke on the way back, or
//! the statement was still waiting for a semi-synchronous acknowledgement
//! when the timeout fired. The pool never retries a write by itself. An
//! application that retries should make the write idempotent: insert with a
//! key it chose itself (a UUID, a request id) and treat a duplicate-key
//! error (`1062`) on the retry as success, or check for the row before
//! writing again.

use std::time::Duration;

use crate::failover::WriterUnavailable;

/// Everything that can go wrong in foobar-db.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A host URL could not be parsed.
    #[error("invalid database URL `{url}`: {source}")]
    Url {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// The parser's complaint.
        source: mysql_async::UrlError,
    },
    /// The pool's configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A TLS file (CA bundle, client certificate or key) is unusable.
    #[error("database TLS: {0}")]
    Tls(#[source] foobar_core::tls::TlsError),
    /// No writable primary is known, and none appeared within the wait.
    /// Writes are never sent to a replica instead.
    #[error("no writable primary known after waiting {waited:?}: {reason}")]
    NoWriter {
        /// How long the write waited for a primary.
        waited: Duration,
        /// Why there is none.
        reason: WriterUnavailable,
    },
    /// The server refused the account's credentials (error 1045).
    #[error("{host}: access denied for user `{user}` (error 1045): wrong user name or password")]
    AccessDenied {
        /// The host.
        host: String,
        /// The account.
        user: String,
    },
    /// The account lacks a privilege the pool needs (error 1227, 1142 or
    /// 1044); `needed` is the privilege as the server names it.
    #[error(
        "{host}: user `{user}` lacks the {needed} privilege (error {code}) needed to {purpose}"
    )]
    MissingPrivilege {
        /// The host.
        host: String,
        /// The account.
        user: String,
        /// The privilege(s), as the server names them (`SLAVE MONITOR`).
        needed: String,
        /// The server's error code.
        code: u16,
        /// What the pool was doing.
        purpose: &'static str,
    },
    /// The host configured as primary is read-only and no other host is
    /// writable: the cluster has no primary to write to.
    #[error("{host} is configured as primary but is read-only (@@global.read_only = 1), and no other host is writable")]
    ReadOnlyPrimary {
        /// The host.
        host: String,
    },
    /// No replica qualifies for a read and falling back to the primary is
    /// disabled.
    #[error("no healthy replica within the lag limit, and reads may not fall back to the primary")]
    NoReader,
    /// Waiting for a pooled connection, or creating or recycling one, took
    /// too long.
    #[error("pool for {host}: timed out ({kind:?})")]
    PoolTimeout {
        /// The host.
        host: String,
        /// Which step timed out.
        kind: TimeoutKind,
    },
    /// The host's pool has been closed (the `RwPool` is shutting down).
    #[error("pool for {host} is closed")]
    PoolClosed {
        /// The host.
        host: String,
    },
    /// The statement did not finish within its timeout. It was sent: a
    /// write may still have committed (see the module docs). The connection
    /// is closed, never reused.
    #[error(
        "{host}: the statement did not finish within {after:?}; a write may still have committed"
    )]
    StatementTimeout {
        /// The host.
        host: String,
        /// The timeout.
        after: Duration,
    },
    /// The server or the connection to it failed.
    #[error("{host}: {source}")]
    Mysql {
        /// The host.
        host: String,
        /// The driver's error.
        source: mysql_async::Error,
    },
    /// A row did not convert to the type the caller asked for (wrong column
    /// count, a `NULL` into a non-`Option`, text into a number).
    #[error("{host}: a row with columns ({columns}) does not convert to the requested type")]
    Conversion {
        /// The host.
        host: String,
        /// The row's column names, comma-separated.
        columns: String,
    },
}

/// What timed out in a host's pool (deadpool's `TimeoutType`, comparable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// Waiting for a free connection ([`PoolConfig::wait_timeout`](crate::PoolConfig::wait_timeout)).
    Wait,
    /// Creating a connection ([`PoolConfig::create_timeout`](crate::PoolConfig::create_timeout)).
    Create,
    /// Checking a connection before reuse ([`PoolConfig::recycle_timeout`](crate::PoolConfig::recycle_timeout)).
    Recycle,
}

impl From<deadpool::managed::TimeoutType> for TimeoutKind {
    fn from(kind: deadpool::managed::TimeoutType) -> Self {
        match kind {
            deadpool::managed::TimeoutType::Wait => Self::Wait,
            deadpool::managed::TimeoutType::Create => Self::Create,
            deadpool::managed::TimeoutType::Recycle => Self::Recycle,
        }
    }
}

/// A configuration the pool refuses to start with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No host was configured.
    #[error("no database hosts")]
    NoHosts,
    /// A pool of size 0 could never hand out a connection.
    #[error("pool max_size must be at least 1")]
    ZeroPoolSize,
    /// Two hosts have the same address.
    #[error("host {host} is configured twice")]
    DuplicateHost {
        /// `host:port`.
        host: String,
    },
    /// Automatic promotion decides by a majority of the servers: with fewer
    /// than three, losing the primary leaves no majority, so it could never
    /// promote.
    #[error("automatic promotion needs at least three database hosts, {hosts} configured")]
    TooFewHostsForMajority {
        /// Hosts configured.
        hosts: usize,
    },
    /// A failover step could outlast the lease of the built-in coordinator,
    /// which holds for at least half of the lock timeout after a renewal.
    #[error("the failover step timeout ({step:?}) must be under half the lock timeout ({lock:?})")]
    StepOutlastsLease {
        /// [`FailoverConfig::step_timeout`](crate::FailoverConfig::step_timeout).
        step: std::time::Duration,
        /// [`FailoverConfig::lock_timeout`](crate::FailoverConfig::lock_timeout).
        lock: std::time::Duration,
    },
    /// The connection pool could not be built without an async runtime.
    #[error("no async runtime for the pool's timeouts")]
    NoRuntime,
}

impl Error {
    /// The driver's error, named for `host`: bad credentials and missing
    /// privileges become their own variants, a row that does not fit the
    /// requested type a [`Error::Conversion`].
    pub(crate) fn mysql(host: &str, user: &str, source: mysql_async::Error) -> Self {
        match &source {
            mysql_async::Error::Driver(mysql_async::DriverError::FromRow { row }) => {
                let columns: Vec<String> = row
                    .columns_ref()
                    .iter()
                    .map(|c| c.name_str().into_owned())
                    .collect();
                Self::Conversion {
                    host: host.to_owned(),
                    columns: columns.join(", "),
                }
            }
            mysql_async::Error::Server(server) if server.code == 1045 => Self::AccessDenied {
                host: host.to_owned(),
                user: user.to_owned(),
            },
            _ => Self::Mysql {
                host: host.to_owned(),
                source,
            },
        }
    }

    /// The server's error code, when the server rejected the statement
    /// (`1290` for a write on a read-only server).
    pub fn server_code(&self) -> Option<u16> {
        match self {
            Self::Mysql {
                source: mysql_async::Error::Server(server),
                ..
            } => Some(server.code),
            Self::AccessDenied { .. } => Some(1045),
            Self::MissingPrivilege { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the connection (not the statement) failed: the host died,
    /// the network broke, the pool could not deliver a connection. A write
    /// that failed this way may still have committed.
    pub fn is_connection_error(&self) -> bool {
        match self {
            Self::Mysql { source, .. } => is_connection_error(source),
            Self::PoolTimeout { .. } | Self::PoolClosed { .. } | Self::StatementTimeout { .. } => {
                true
            }
            _ => false,
        }
    }
}

/// Whether a driver error means the connection is gone or unusable.
pub(crate) fn is_connection_error(error: &mysql_async::Error) -> bool {
    match error {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(driver) => !matches!(
            driver,
            mysql_async::DriverError::FromRow { .. } | mysql_async::DriverError::FromValue { .. }
        ),
        _ => false,
    }
}

/// The privilege named in a server's "access denied; you need (at least one
/// of) the X privilege(s)" message (error 1227), or the command of a "X
/// command denied" one (1142).
pub(crate) fn needed_privilege(message: &str) -> String {
    if let Some(rest) = message.split("you need (at least one of) the ").nth(1) {
        if let Some(needed) = rest.split(" privilege").next() {
            return needed.trim().to_owned();
        }
    }
    if let Some(command) = message.split(" command denied").next() {
        if command.len() < message.len() {
            return command.trim().to_owned();
        }
    }
    "required".to_owned()
}

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A URL with its password masked, for errors and logs.
pub(crate) fn redact_url(url: &str) -> String {
    // mysql://user:password@host → mysql://user:***@host
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_owned();
    };
    let credentials = &rest[..at];
    match credentials.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &credentials[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{needed_privilege, redact_url};

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact_url("mysql://app:secret@10.0.0.1:3306/app"),
            "mysql://app:***@10.0.0.1:3306/app"
        );
        assert_eq!(redact_url("mysql://10.0.0.1/app"), "mysql://10.0.0.1/app");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn the_missing_privilege_is_read_from_the_servers_message() {
        assert_eq!(
            needed_privilege(
                "Access denied; you need (at least one of) the SLAVE MONITOR privilege(s) for this operation"
            ),
            "SLAVE MONITOR"
        );
        assert_eq!(
            needed_privilege("SELECT command denied to user 'm'@'127.0.0.1' for table `x`.`y`"),
            "SELECT"
        );
        assert_eq!(needed_privilege("something else"), "required");
    }
}

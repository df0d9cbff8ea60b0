//! The crate's error type.

use std::time::Duration;

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
    /// The configuration is inconsistent (no hosts, a zero pool size…).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A TLS file (CA bundle, client certificate or key) is unusable.
    #[error("database TLS: {0}")]
    Tls(#[source] foobar_core::tls::TlsError),
    /// No writable primary is known, and none appeared within the wait.
    /// Writes are never sent to a replica instead.
    #[error("no writable primary known after waiting {waited:?}")]
    NoWriter {
        /// How long the write waited for a primary.
        waited: Duration,
    },
    /// No replica qualifies for a read and falling back to the primary is
    /// disabled.
    #[error("no healthy replica within the lag limit, and reads may not fall back to the primary")]
    NoReader,
    /// Waiting for a pooled connection, or creating or recycling one, took
    /// too long.
    #[error("pool for {host}: timed out ({kind})")]
    PoolTimeout {
        /// The host.
        host: String,
        /// Which step: `wait`, `create` or `recycle`.
        kind: &'static str,
    },
    /// The host's pool has been closed (the `RwPool` is shutting down).
    #[error("pool for {host} is closed")]
    PoolClosed {
        /// The host.
        host: String,
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
    /// A promotion step failed; the cluster may need a look.
    #[error("failover: {0}")]
    Failover(String),
}

impl Error {
    pub(crate) fn mysql(host: &str, source: mysql_async::Error) -> Self {
        if let mysql_async::Error::Driver(mysql_async::DriverError::FromRow { row }) = &source {
            let columns: Vec<String> = row
                .columns_ref()
                .iter()
                .map(|c| c.name_str().into_owned())
                .collect();
            return Self::Conversion {
                host: host.to_owned(),
                columns: columns.join(", "),
            };
        }
        Self::Mysql {
            host: host.to_owned(),
            source,
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
            _ => None,
        }
    }

    /// Whether the connection (not the statement) failed: the host died,
    /// the network broke, the pool could not deliver a connection.
    pub fn is_connection_error(&self) -> bool {
        match self {
            Self::Mysql { source, .. } => match source {
                mysql_async::Error::Io(_) => true,
                mysql_async::Error::Driver(driver) => !matches!(
                    driver,
                    mysql_async::DriverError::FromRow { .. }
                        | mysql_async::DriverError::FromValue { .. }
                ),
                _ => false,
            },
            Self::PoolTimeout { .. } | Self::PoolClosed { .. } => true,
            _ => false,
        }
    }
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
    use super::redact_url;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact_url("mysql://app:secret@10.0.0.1:3306/app"),
            "mysql://app:***@10.0.0.1:3306/app"
        );
        assert_eq!(redact_url("mysql://10.0.0.1/app"), "mysql://10.0.0.1/app");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}

//! The crate's error types.

/// Errors from configuring a load balancer or proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A backend with this id is already in the set.
    #[error("backend {0:?} is already in the set")]
    DuplicateBackend(String),
    /// No backend has this id.
    #[error("no backend {0:?} in the set")]
    UnknownBackend(String),
    /// An upstream URL could not be used.
    #[error("invalid upstream {input:?}: {reason}")]
    InvalidUpstream {
        /// The URL as given.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The TLS client configuration for HTTPS upstreams failed.
    #[error("upstream TLS: {0}")]
    Tls(#[from] foobar_core::tls::TlsError),
}

/// The request was refused because no backend can take it (all down,
/// ejected or drained, or the set is empty). The proxy answers it with
/// `503 Service Unavailable`.
#[derive(Clone, Copy, Debug, Default, thiserror::Error)]
#[error("no healthy backend")]
pub struct NoHealthyBackend;

/// Why a request to a backend failed (the proxy turns it into `502` or
/// `504`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The TCP connection could not be opened.
    #[error("cannot connect to the backend: {0}")]
    Connect(#[source] std::io::Error),
    /// The TCP connection was not opened within the connect timeout.
    #[error("cannot connect to the backend within {0:?}")]
    ConnectTimeout(std::time::Duration),
    /// The HTTP exchange on an open connection failed.
    #[error("backend connection failed: {0}")]
    Http(#[source] hyper::Error),
    /// The pooled HTTPS / HTTP/2 client failed (connecting or exchanging).
    #[error("backend request failed: {0}")]
    Client(#[source] hyper_util::client::legacy::Error),
    /// A response body's next bytes did not come within the body timeout.
    #[error("the backend sent no body bytes for {0:?}")]
    BodyTimeout(std::time::Duration),
}

impl UpstreamError {
    /// Whether no connection could be made (nothing was sent).
    pub fn is_connect(&self) -> bool {
        match self {
            Self::Connect(_) | Self::ConnectTimeout(_) => true,
            Self::Http(_) | Self::BodyTimeout(_) => false,
            Self::Client(error) => error.is_connect(),
        }
    }

    /// Whether a timeout ran out (connecting included).
    pub fn is_timeout(&self) -> bool {
        let mut source: Option<&(dyn std::error::Error + 'static)> = match self {
            Self::ConnectTimeout(_) | Self::BodyTimeout(_) => return true,
            Self::Connect(error) => Some(error),
            Self::Http(error) => Some(error),
            Self::Client(error) => Some(error),
        };
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::TimedOut {
                    return true;
                }
            }
            source = cause.source();
        }
        false
    }
}

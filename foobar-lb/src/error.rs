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
/// `504`, or into `400`/`408` when the client's own request body is at
/// fault).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The TCP connection could not be opened.
    #[error("cannot connect to the backend: {0}")]
    Connect(#[source] std::io::Error),
    /// The TCP connection and TLS handshake did not finish within the
    /// connect timeout.
    #[error("cannot connect to the backend within {0:?}")]
    ConnectTimeout(std::time::Duration),
    /// The TLS handshake with the backend failed (certificate, protocol).
    #[error("TLS handshake with the backend failed: {0}")]
    Tls(#[source] std::io::Error),
    /// The connection failed while the request went or the answer came.
    #[error("backend connection failed: {0}")]
    Connection(#[source] std::io::Error),
    /// The backend closed the connection before answering.
    #[error("the backend closed the connection before answering")]
    Closed,
    /// No response head came within the response timeout.
    #[error("the backend did not answer within {0:?}")]
    ResponseTimeout(std::time::Duration),
    /// The backend's answer was not a valid HTTP/1.1 response.
    #[error("invalid response from the backend: {0}")]
    BadResponse(#[source] foobar_core::http1::BadResponse),
    /// The request's own body failed while it was sent (malformed, or the
    /// client went away): the client's fault, not the backend's.
    #[error("the request body failed: {0}")]
    RequestBody(#[source] foobar_core::BoxError),
    /// The HTTP/2 client failed.
    #[error("backend request failed: {source}")]
    Client {
        /// Whether no connection could be made (nothing was sent).
        connect: bool,
        /// What failed.
        #[source]
        source: foobar_core::BoxError,
    },
    /// A response body's next bytes did not come within the body timeout.
    #[error("the backend sent no body bytes for {0:?}")]
    BodyTimeout(std::time::Duration),
}

impl UpstreamError {
    /// Whether no connection could be made (nothing was sent).
    pub fn is_connect(&self) -> bool {
        match self {
            Self::Connect(_) | Self::ConnectTimeout(_) | Self::Tls(_) => true,
            Self::Client { connect, .. } => *connect,
            _ => false,
        }
    }

    /// Whether a timeout ran out (connecting included).
    pub fn is_timeout(&self) -> bool {
        if matches!(
            self,
            Self::ConnectTimeout(_) | Self::BodyTimeout(_) | Self::ResponseTimeout(_)
        ) {
            return true;
        }
        self.causes().any(|cause| {
            cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        })
    }

    /// Whether the backend answered with something that is not a valid
    /// HTTP response (a malformed head, a bad status line, conflicting
    /// lengths). That is the backend's answer, not a lost connection: it is
    /// never retried.
    pub fn is_bad_response(&self) -> bool {
        matches!(self, Self::BadResponse(_))
            || self
                .causes()
                .find_map(|c| c.downcast_ref::<hyper::Error>())
                .is_some_and(|error| {
                    error.is_parse() || error.is_parse_status() || error.is_parse_too_large()
                })
    }

    /// Whether the client's request body failed: its fault, never the
    /// backend's.
    pub fn is_request_body(&self) -> bool {
        matches!(self, Self::RequestBody(_))
    }

    /// This error's sources, from the first.
    fn causes(&self) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
        let first: Option<&(dyn std::error::Error + 'static)> = match self {
            Self::Connect(error) | Self::Tls(error) | Self::Connection(error) => Some(error),
            Self::BadResponse(error) => Some(error),
            Self::RequestBody(source) | Self::Client { source, .. } => Some(&**source),
            Self::ConnectTimeout(_)
            | Self::Closed
            | Self::BodyTimeout(_)
            | Self::ResponseTimeout(_) => None,
        };
        std::iter::successors(first, |cause| cause.source())
    }
}

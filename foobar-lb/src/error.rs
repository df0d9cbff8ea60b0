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
    Tls(#[from] foobar_core::Error),
}

/// The request was refused because no backend can take it (all down,
/// ejected or drained, or the set is empty). The proxy answers it with
/// `503 Service Unavailable`.
#[derive(Clone, Copy, Debug, Default, thiserror::Error)]
#[error("no healthy backend")]
pub struct NoHealthyBackend;

//! Asking the responder (HTTP POST, RFC 6960 appendix A).

use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long a responder may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Responses are a few KiB; anything larger is refused.
const MAX_RESPONSE: usize = 64 * 1024;

/// Why a response could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The responder URL is not an `http://` URL (responders are plain
    /// HTTP: their answers are signed).
    #[error("unsupported OCSP responder URL {0:?}")]
    Url(String),
    /// The responder could not be reached or did not answer in time.
    #[error("OCSP responder {url}: {reason}")]
    Unreachable {
        /// The responder.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The responder answered with an HTTP error.
    #[error("OCSP responder {url} answered {status}")]
    Status {
        /// The responder.
        url: String,
        /// Its HTTP status.
        status: StatusCode,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Fetcher {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Fetcher {
    pub(crate) fn new() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    pub(crate) async fn fetch(&self, url: &str, request: Vec<u8>) -> Result<Vec<u8>, FetchError> {
        if !url.starts_with("http://") {
            return Err(FetchError::Url(url.to_owned()));
        }
        let unreachable = |reason: String| FetchError::Unreachable {
            url: url.to_owned(),
            reason,
        };
        let request = Request::post(url)
            .header(header::CONTENT_TYPE, "application/ocsp-request")
            .header(header::ACCEPT, "application/ocsp-response")
            .body(Full::new(Bytes::from(request)))
            .map_err(|_| FetchError::Url(url.to_owned()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            if response.status() != StatusCode::OK {
                return Err(FetchError::Status {
                    url: url.to_owned(),
                    status: response.status(),
                });
            }
            let body = Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            Ok(body.to_bytes().to_vec())
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {TIMEOUT:?}")))?
    }
}

//! The HTTPS client instant-acme speaks to the CA through: hyper-rustls
//! over the workspace's rustls (aws-lc-rs), with the system's trust
//! anchors or a given CA file.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use foobar_core::tls::ClientTls;
use http::Request;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

use super::error::AcmeError;

/// How long one request to the CA may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct CaClient {
    client: Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
}

impl CaClient {
    /// Trusts `ca_file` if given, else the system's trust anchors.
    pub(crate) fn new(ca_file: Option<&Path>) -> Result<Self, AcmeError> {
        let builder = match ca_file {
            Some(path) => {
                let config = ClientTls::new()
                    .ca_file(path)
                    .build()
                    .map_err(AcmeError::Trust)?;
                HttpsConnectorBuilder::new().with_tls_config((*config).clone())
            }
            None => HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(foobar_core::tls::provider())
                .map_err(AcmeError::SystemTrust)?,
        };
        let connector = builder.https_only().enable_http1().enable_http2().build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }
}

impl HttpClient for CaClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.client.request(req);
        Box::pin(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, response).await {
                Ok(Ok(response)) => Ok(BytesResponse::from(response)),
                Ok(Err(error)) => Err(instant_acme::Error::Other(Box::new(error))),
                Err(_) => Err(instant_acme::Error::Str("the CA did not answer in time")),
            }
        })
    }
}

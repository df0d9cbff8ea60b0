//! [`Upstream`]: the pooled HTTP/1.1 + HTTP/2 client for one backend,
//! plain or HTTPS (custom CA, optional client certificate).

mod pool;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderValue, TRANSFER_ENCODING};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;
use tower::Service;

use self::pool::SendError;
pub(crate) use self::pool::{Http1Pool, PooledConn};
use super::body::ProxyBody;
use crate::error::{Error, UpstreamError};

/// Connection settings shared by every backend of a proxy.
#[derive(Clone, Debug)]
pub(crate) struct UpstreamConfig {
    pub(crate) connect_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_idle_per_backend: usize,
    pub(crate) http2_only: bool,
    pub(crate) tls: Option<Arc<ClientConfig>>,
    /// Longest wait for the next bytes of a response body.
    pub(crate) body_timeout: Option<Duration>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(60),
            max_idle_per_backend: 1024,
            http2_only: false,
            tls: None,
            body_timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// The client side of one backend: keep-alive connections speaking
/// HTTP/1.1, or HTTP/2 (negotiated by ALPN over TLS, or by prior knowledge
/// when the proxy is set to HTTP/2 only). Requests keep their path and
/// query; scheme and authority become the backend's. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Arc<Pool>,
    scheme: Scheme,
    authority: Authority,
    /// The version the general client is asked for.
    version: Version,
    /// Longest wait for the next bytes of a response body.
    body_timeout: Option<Duration>,
}

/// The backend's connections: plain HTTP/1.1 backends get a lean pool of
/// their own; HTTPS backends (ALPN picks the protocol) and plain HTTP/2
/// (prior knowledge) the general pooled client.
#[derive(Debug)]
enum Pool {
    Http1(Arc<Http1Pool>),
    Http2Plain(Client<HttpConnector, ProxyBody>),
    Https(Client<HttpsConnector<HttpConnector>, ProxyBody>),
}

/// A backend's response head, with the connection to hand back once its
/// body has been read.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) response: Response<Incoming>,
    pub(crate) conn: Option<PooledConn>,
}

/// A parsed upstream URL.
#[derive(Debug)]
pub(crate) struct UpstreamUrl {
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    pub(crate) addr: Option<SocketAddr>,
}

impl UpstreamUrl {
    /// Parses `http://host[:port]` or `https://host[:port]`.
    pub(crate) fn parse(input: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidUpstream {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = input
            .trim()
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| invalid("no scheme (expected http://host:port or https://host:port)"))?;
        let https = if scheme == Scheme::HTTPS {
            true
        } else if scheme == Scheme::HTTP {
            false
        } else {
            return Err(invalid("scheme must be http or https"));
        };
        let authority = uri.authority().cloned().ok_or_else(|| invalid("no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("credentials in the URL are not supported"));
        }
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(invalid(
                "a path is not supported; give scheme, host and port only",
            ));
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let addr = host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port));
        Ok(Self {
            scheme,
            authority,
            addr,
        })
    }
}

impl Upstream {
    pub(crate) fn new(url: &UpstreamUrl, config: &UpstreamConfig) -> Result<Self, Error> {
        if url.scheme == Scheme::HTTPS && config.tls.is_none() {
            return Err(Error::InvalidUpstream {
                input: format!("{}://{}", url.scheme, url.authority),
                reason: "an https upstream needs a TLS client configuration (ProxyBuilder::tls)"
                    .to_owned(),
            });
        }
        let client = if url.scheme == Scheme::HTTP && !config.http2_only {
            Pool::Http1(Arc::new(Http1Pool::new(
                &url.authority,
                url.addr,
                config.connect_timeout,
                config.idle_timeout,
                config.max_idle_per_backend,
            )))
        } else {
            general_client(url, config)
        };
        Ok(Self {
            client: Arc::new(client),
            scheme: url.scheme.clone(),
            authority: url.authority.clone(),
            version: if config.http2_only {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            },
            body_timeout: config.body_timeout,
        })
    }

    /// The pool of a plain HTTP/1.1 backend, which the relay can use.
    pub(crate) fn http1_pool(&self) -> Option<&Arc<Http1Pool>> {
        match &*self.client {
            Pool::Http1(pool) => Some(pool),
            _ => None,
        }
    }

    /// Sends a request to this backend.
    pub(crate) async fn send(
        &self,
        mut req: Request<ProxyBody>,
    ) -> Result<Exchange, UpstreamError> {
        if req.method() != Method::CONNECT && needs_chunked(req.body()) {
            // A body of unknown length, sent chunked whatever the method:
            // hyper's client would send a GET's or HEAD's as empty.
            req.headers_mut()
                .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        }
        if req.method() == Method::CONNECT {
            // The target stays `host:port` (authority form). Only the lean
            // pool, which always dials the backend, carries it: the general
            // client would dial the target itself.
            *req.version_mut() = Version::HTTP_11;
            let Pool::Http1(pool) = &*self.client else {
                return Err(UpstreamError::Connect(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "CONNECT is tunnelled to plain HTTP/1.1 backends only",
                )));
            };
            return send_http1(pool, req).await;
        }
        let path = std::mem::take(req.uri_mut())
            .into_parts()
            .path_and_query
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        match &*self.client {
            Pool::Http1(pool) => {
                // Origin form: the Host header names the site.
                *req.uri_mut() = Uri::from(path);
                *req.version_mut() = Version::HTTP_11;
                send_http1(pool, req).await
            }
            Pool::Http2Plain(client) => {
                self.prepare_absolute(&mut req, path);
                send_general(client, req).await
            }
            Pool::Https(client) => {
                self.prepare_absolute(&mut req, path);
                send_general(client, req).await
            }
        }
    }

    /// The general client takes absolute URIs (its pool key) and picks the
    /// protocol from the request's version and ALPN.
    fn prepare_absolute(&self, req: &mut Request<ProxyBody>, path: PathAndQuery) {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path);
        // Scheme, authority and path are all set, so this cannot fail.
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
        *req.version_mut() = self.version;
    }
}

impl Exchange {
    fn unpooled(response: Response<Incoming>) -> Self {
        Self {
            response,
            conn: None,
        }
    }
}

/// Sends on an idle connection, or on a new one when there is none or the
/// idle one turned out closed before the request left (the request comes
/// back untouched then, so resending it is safe whatever its method).
async fn send_http1(
    pool: &Arc<Http1Pool>,
    mut req: Request<ProxyBody>,
) -> Result<Exchange, UpstreamError> {
    if let Some(mut conn) = pool.checkout() {
        match conn.send(req).await {
            Ok(response) => {
                return Ok(Exchange {
                    response,
                    conn: Some(conn),
                })
            }
            Err(SendError::NotSent(back)) => req = *back,
            Err(SendError::Failed(error)) => return Err(UpstreamError::Http(error)),
        }
    }
    // Boxed: opening a connection is the rare path, and its large future
    // would otherwise be moved with every request's.
    let mut conn = Box::pin(pool.connect()).await?;
    match conn.send(req).await {
        Ok(response) => Ok(Exchange {
            response,
            conn: Some(conn),
        }),
        Err(SendError::Failed(error)) => Err(UpstreamError::Http(error)),
        Err(SendError::NotSent(_)) => Err(UpstreamError::Connect(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "the new connection closed before the request was sent",
        ))),
    }
}

/// Whether a request body has to go chunked: it has bytes, and its
/// length is not known.
fn needs_chunked(body: &ProxyBody) -> bool {
    !body.is_end_stream() && body.size_hint().exact().is_none()
}

/// Sends through the general pooled client.
async fn send_general<C>(
    client: &Client<C, ProxyBody>,
    req: Request<ProxyBody>,
) -> Result<Exchange, UpstreamError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    client
        .request(req)
        .await
        .map(Exchange::unpooled)
        .map_err(|error| UpstreamError::Client {
            connect: error.is_connect(),
            source: error.into(),
        })
}

/// The general pooled client, for HTTPS and HTTP/2 backends.
fn general_client(url: &UpstreamUrl, config: &UpstreamConfig) -> Pool {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(config.idle_timeout)
        .pool_max_idle_per_host(config.max_idle_per_backend)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_only(config.http2_only)
        // Requests that never left a stale pooled connection are resent
        // by the pool; everything else is the proxy's decision.
        .retry_canceled_requests(true)
        .set_host(true);
    match &config.tls {
        Some(tls) if url.scheme == Scheme::HTTPS => {
            let tls = HttpsConnectorBuilder::new()
                .with_tls_config((**tls).clone())
                .https_only();
            let connector = if config.http2_only {
                tls.enable_http2().wrap_connector(http)
            } else {
                tls.enable_http1().enable_http2().wrap_connector(http)
            };
            Pool::Https(builder.build(connector))
        }
        _ => Pool::Http2Plain(builder.build(http)),
    }
}

impl Service<Request<ProxyBody>> for Upstream {
    type Response = Response<ProxyBody>;
    type Error = UpstreamError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, UpstreamError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ProxyBody>) -> Self::Future {
        let upstream = self.clone();
        Box::pin(async move {
            let Exchange { response, conn } = upstream.send(req).await?;
            let stall = upstream.body_timeout;
            Ok(response.map(|body| ProxyBody::upstream(body, None, conn, stall)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_named() {
        let ok = UpstreamUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(ok.addr, Some("127.0.0.1:8080".parse().unwrap()));
        let v6 = UpstreamUrl::parse("https://[::1]").unwrap();
        assert_eq!(v6.addr, Some("[::1]:443".parse().unwrap()));
        assert_eq!(
            UpstreamUrl::parse("https://web1.internal:8443")
                .unwrap()
                .addr,
            None
        );
        for bad in [
            "127.0.0.1:80",
            "ftp://x",
            "http://x/path",
            "http://u:p@x",
            "http://",
        ] {
            let err = UpstreamUrl::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}

//! [`Upstream`]: the client side of one backend. HTTP/1.1 backends,
//! plain or HTTPS (custom CA, optional client certificate, sessions
//! resumed), get foobar's own lean keep-alive pool and HTTP/1 exchange;
//! HTTP/2 backends go through hyper's pooled client.

mod conn;
mod exchange;
mod pool;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;
use tower::Service;

pub(crate) use self::exchange::{Answer, UpstreamHead};
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

/// The client side of one backend: keep-alive HTTP/1.1 connections (plain
/// or TLS), or HTTP/2 when the proxy is set to HTTP/2 only. Requests keep
/// their path and query; the backend's `Host` is the client's. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Arc<Pool>,
    scheme: Scheme,
    authority: Authority,
    /// Longest wait for the next bytes of a response body.
    body_timeout: Option<Duration>,
}

#[derive(Debug)]
enum Pool {
    Http1(Arc<Http1Pool>),
    Http2Plain(Client<HttpConnector, ProxyBody>),
    Http2Tls(Client<HttpsConnector<HttpConnector>, ProxyBody>),
}

/// A backend's answer: an HTTP/1.1 response head with the connection its
/// body comes on, or an HTTP/2 response.
#[derive(Debug)]
pub(crate) enum Exchange {
    Http1(Answer),
    Http2(Response<Incoming>),
}

impl Exchange {
    pub(crate) fn status(&self) -> http::StatusCode {
        match self {
            Self::Http1(answer) => answer.head.parts.status,
            Self::Http2(response) => response.status(),
        }
    }
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
        let https = url.scheme == Scheme::HTTPS;
        if https && config.tls.is_none() {
            return Err(Error::InvalidUpstream {
                input: format!("{}://{}", url.scheme, url.authority),
                reason: "an https upstream needs a TLS client configuration (ProxyBuilder::tls)"
                    .to_owned(),
            });
        }
        let client = if config.http2_only {
            http2_client(url, config)
        } else {
            let tls = if https {
                config.tls.as_ref().map(http1_tls)
            } else {
                None
            };
            Pool::Http1(Arc::new(Http1Pool::new(
                &url.authority,
                url.addr,
                tls,
                config.connect_timeout,
                config.idle_timeout,
                config.max_idle_per_backend,
            )?))
        };
        Ok(Self {
            client: Arc::new(client),
            scheme: url.scheme.clone(),
            authority: url.authority.clone(),
            body_timeout: config.body_timeout,
        })
    }

    /// Whether requests go over HTTP/1.1 (the only way `Upgrade` and
    /// `CONNECT` tunnels go).
    pub(crate) fn is_http1(&self) -> bool {
        matches!(&*self.client, Pool::Http1(_))
    }

    /// Sends a request encoded for HTTP/1.1 (to an HTTP/1.1 backend).
    pub(crate) async fn send_http1(
        &self,
        head: &UpstreamHead,
        body: Pin<&mut ProxyBody>,
        interim: Option<&foobar_core::Interim>,
        response_timeout: Option<Duration>,
    ) -> Result<Exchange, UpstreamError> {
        match &*self.client {
            Pool::Http1(pool) => exchange::send(pool, head, body, interim, response_timeout)
                .await
                .map(Exchange::Http1),
            _ => Err(UpstreamError::Connect(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "an HTTP/2 backend among HTTP/1.1 ones",
            ))),
        }
    }

    /// Sends a request to this backend, its header fields as they are.
    pub(crate) async fn send(
        &self,
        mut req: Request<ProxyBody>,
    ) -> Result<Exchange, UpstreamError> {
        match &*self.client {
            Pool::Http1(pool) => {
                let (parts, mut body) = req.into_parts();
                let interim = parts.extensions.get::<foobar_core::Interim>();
                let head = UpstreamHead::new(&parts, &body, |out| {
                    UpstreamHead::write_plain_fields(out, &parts.headers);
                });
                exchange::send(pool, &head, Pin::new(&mut body), interim, None)
                    .await
                    .map(Exchange::Http1)
            }
            Pool::Http2Plain(client) => {
                self.prepare_absolute(&mut req);
                send_http2(client, req).await
            }
            Pool::Http2Tls(client) => {
                self.prepare_absolute(&mut req);
                send_http2(client, req).await
            }
        }
    }

    /// hyper's client takes absolute URIs (its pool key).
    fn prepare_absolute(&self, req: &mut Request<ProxyBody>) {
        let path = std::mem::take(req.uri_mut())
            .into_parts()
            .path_and_query
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path);
        // Scheme, authority and path are all set, so this cannot fail.
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
        *req.version_mut() = Version::HTTP_2;
    }
}

/// The TLS configuration for HTTP/1.1 connections: ALPN says so.
fn http1_tls(tls: &Arc<ClientConfig>) -> Arc<ClientConfig> {
    let mut config = (**tls).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Sends through hyper's HTTP/2 client.
async fn send_http2<C>(
    client: &Client<C, ProxyBody>,
    req: Request<ProxyBody>,
) -> Result<Exchange, UpstreamError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    client
        .request(req)
        .await
        .map(Exchange::Http2)
        .map_err(|error| UpstreamError::Client {
            connect: error.is_connect(),
            source: error.into(),
        })
}

/// hyper's pooled HTTP/2 client (prior knowledge on `http://`, ALPN `h2`
/// on `https://`).
fn http2_client(url: &UpstreamUrl, config: &UpstreamConfig) -> Pool {
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
        .http2_only(true)
        // Requests that never left a stale pooled connection are resent
        // by the pool; everything else is the proxy's decision.
        .retry_canceled_requests(true)
        .set_host(true);
    match &config.tls {
        Some(tls) if url.scheme == Scheme::HTTPS => {
            let connector = HttpsConnectorBuilder::new()
                .with_tls_config((**tls).clone())
                .https_only()
                .enable_http2()
                .wrap_connector(http);
            Pool::Http2Tls(builder.build(connector))
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
            let stall = upstream.body_timeout;
            Ok(upstream.send(req).await?.into_response(None, stall))
        })
    }
}

impl Exchange {
    /// The response, its body read from the backend as the client takes
    /// it, with `in_flight` kept until its end.
    pub(crate) fn into_response(
        self,
        in_flight: Option<crate::backends::InFlight>,
        stall: Option<Duration>,
    ) -> Response<ProxyBody> {
        match self {
            Self::Http1(Answer {
                head,
                conn,
                request_complete,
            }) => {
                let reusable = head.keep_alive && request_complete;
                let body = ProxyBody::http1(conn, head.body, reusable, in_flight, stall);
                Response::from_parts(head.parts, body)
            }
            Self::Http2(response) => response.map(|body| ProxyBody::http2(body, in_flight, stall)),
        }
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

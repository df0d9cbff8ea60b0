//! Shared test helpers: real backends (foobar_core servers on 127.0.0.x),
//! a proxy server, HTTP clients bound to chosen source addresses.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foobar_core::{BoxError, HttpConfig, Server, Shutdown};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::Service;

pub type TestBody = BoxBody<Bytes, BoxError>;

/// A running server; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    pub task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and waits until the listener is closed.
    pub async fn stop(mut self) {
        self.shutdown.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Serves `svc` over plain HTTP on `addr` (`127.0.0.x:0` for a free port).
pub async fn serve<S, B>(addr: &str, svc: S) -> TestServer
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    serve_with(addr, svc, HttpConfig::default()).await
}

/// Serves `svc` with these HTTP settings.
pub async fn serve_with<S, B>(addr: &str, svc: S, http: HttpConfig) -> TestServer
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let shutdown = Shutdown::new();
    let server = Server::builder()
        .bind(addr)
        .expect("valid address")
        .http(http)
        .shutdown(shutdown.clone())
        .grace_period(Duration::from_millis(200))
        .build()
        .expect("bind test server");
    let addr = server.local_addr();
    let task = tokio::spawn(async move {
        server.serve(svc).await.expect("serve");
    });
    TestServer {
        addr,
        shutdown,
        task,
    }
}

/// A backend answering every request with its `name` as the body.
pub async fn named(name: &'static str) -> TestServer {
    named_at("127.0.0.1:0", name).await
}

pub async fn named_at(addr: &str, name: &'static str) -> TestServer {
    serve(
        addr,
        tower::service_fn(move |_req: Request<Incoming>| async move {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                name.as_bytes(),
            ))))
        }),
    )
    .await
}

/// A backend answering with its name after `delay`.
pub async fn slow(name: &'static str, delay: Duration) -> TestServer {
    serve(
        "127.0.0.1:0",
        tower::service_fn(move |_req: Request<Incoming>| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                name.as_bytes(),
            ))))
        }),
    )
    .await
}

/// A backend answering every request with `status`.
pub async fn status_backend(status: StatusCode) -> TestServer {
    serve(
        "127.0.0.1:0",
        tower::service_fn(move |_req: Request<Incoming>| async move {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"status")));
            *resp.status_mut() = status;
            Ok::<_, Infallible>(resp)
        }),
    )
    .await
}

/// Serves a proxy (or any HTTP service) on a free port.
pub async fn serve_proxy<S, B>(svc: S) -> TestServer
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    serve("127.0.0.1:0", svc).await
}

/// An HTTP client (no pooling surprises: keep-alive on, one pool).
pub fn client() -> Client<HttpConnector, TestBody> {
    client_from(None)
}

/// An HTTP client whose connections come from `source` (127.0.0.x).
pub fn client_from(source: Option<&str>) -> Client<HttpConnector, TestBody> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    if let Some(source) = source {
        http.set_local_address(Some(source.parse().expect("source ip")));
    }
    Client::builder(TokioExecutor::new()).build(http)
}

pub fn empty() -> TestBody {
    http_body_util::Empty::new().map_err(|e| match e {}).boxed()
}

pub fn full(bytes: &'static [u8]) -> TestBody {
    Full::new(Bytes::from_static(bytes))
        .map_err(|e| match e {})
        .boxed()
}

/// Sends `req` and reads the whole (small) response.
pub async fn send(
    client: &Client<HttpConnector, TestBody>,
    req: Request<TestBody>,
) -> (StatusCode, HeaderMap, String) {
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("response within 10 s")
        .expect("request sent");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

pub async fn get(client: &Client<HttpConnector, TestBody>, url: &str) -> (StatusCode, String) {
    let req = Request::get(url).body(empty()).expect("request");
    let (status, _, body) = send(client, req).await;
    (status, body)
}

/// Polls `condition` until it holds, failing after `limit`.
pub async fn wait_until(
    limit: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if condition() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls an async condition.
pub async fn wait_until_async<F, Fut>(limit: Duration, what: &str, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if condition().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A generated body of `len` zero bytes in 64 KiB chunks, never held in
/// memory as a whole.
pub struct Generated {
    remaining: u64,
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl Generated {
    pub fn new(len: u64) -> Self {
        Self { remaining: len }
    }
}

impl Body for Generated {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(ZEROS.len() as u64);
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
            &ZEROS[..n as usize],
        )))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// The process's resident set size in bytes, from /proc/self/status.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS value");
    kb * 1024
}

/// Serves a proxy through its HTTP/1 relay (hyper for what it hands over)
/// on a free port.
pub async fn serve_relay<P, K>(proxy: foobar_lb::Proxy<P, K>) -> TestServer
where
    P: foobar_lb::Policy,
    K: for<'a> foobar_lb::RequestKey<foobar_lb::RequestHead<'a>>
        + foobar_lb::RequestKey<Request<foobar_lb::proxy::ProxyBody>>,
{
    serve_relay_with(proxy, HttpConfig::default()).await
}

/// Serves a proxy through its HTTP/1 relay with these HTTP settings.
pub async fn serve_relay_with<P, K>(proxy: foobar_lb::Proxy<P, K>, http: HttpConfig) -> TestServer
where
    P: foobar_lb::Policy,
    K: for<'a> foobar_lb::RequestKey<foobar_lb::RequestHead<'a>>
        + foobar_lb::RequestKey<Request<foobar_lb::proxy::ProxyBody>>,
{
    let shutdown = Shutdown::new();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .expect("valid address")
        .http(http)
        .shutdown(shutdown.clone())
        .grace_period(Duration::from_millis(200))
        .build()
        .expect("bind test server");
    let addr = server.local_addr();
    let task = tokio::spawn(async move {
        server
            .serve_connections_with(foobar_core::PlainTcp, proxy.relay(), proxy)
            .await
            .expect("serve");
    });
    TestServer {
        addr,
        shutdown,
        task,
    }
}

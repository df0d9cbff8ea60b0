//! Shared test helpers: real backends (foobar_core servers on 127.0.0.x),
//! a proxy server, HTTP clients bound to chosen source addresses.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use foobar_core::RequestBody;
use foobar_core::{BoxError, HttpConfig, Server, Shutdown};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
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
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + Sync + 'static,
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
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + Sync + 'static,
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
        tower::service_fn(move |_req: Request<RequestBody>| async move {
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
        tower::service_fn(move |_req: Request<RequestBody>| async move {
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
        tower::service_fn(move |_req: Request<RequestBody>| async move {
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
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    serve("127.0.0.1:0", svc).await
}

/// Serves `svc` behind foobar-guard's TLS layer on a free loopback port,
/// with a certificate for 127.0.0.1 from a CA made now; returns the server
/// and a client configuration that trusts it.
pub async fn serve_tls<S, B>(svc: S) -> (TestServer, Arc<rustls::ClientConfig>)
where
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    use tower::Layer;
    let ca = foobar_core::tls::DevCa::new().unwrap();
    let identity = ca.server_cert(["127.0.0.1"]).unwrap().identity().unwrap();
    let tls = foobar_guard::TlsConfig::builder()
        .identity(identity)
        .build()
        .unwrap();
    let stage = foobar_guard::TlsLayer::new(tls).layer(foobar_core::PlainTcp);
    let shutdown = Shutdown::new();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .expect("valid address")
        .shutdown(shutdown.clone())
        .grace_period(Duration::from_millis(200))
        .build()
        .expect("bind test server");
    let addr = server.local_addr();
    let task = tokio::spawn(async move {
        let _ = server.serve_connections(stage, svc).await;
    });
    let server = TestServer {
        addr,
        shutdown,
        task,
    };
    (server, ca.client_tls().build().unwrap())
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

/// One request as a [`StrictBackend`] read it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The request's bytes, exactly as they came: its boundaries are the
    /// proxy's.
    pub raw: Vec<u8>,
    /// The head, as text.
    pub head: String,
    pub method: String,
    pub path: String,
    /// The body, decoded.
    pub body: Vec<u8>,
}

impl Seen {
    /// The values of a header, in order.
    pub fn header(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }
}

/// What a [`StrictBackend`] sends for one request: `parts`, each its own
/// write (so a part can arrive on its own), then a close if `close`.
pub struct Answer {
    pub parts: Vec<Vec<u8>>,
    pub close: bool,
}

impl Answer {
    /// One write, connection kept.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            parts: vec![bytes.into()],
            close: false,
        }
    }
}

type Reply = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

/// A backend on a raw socket that parses requests strictly (RFC 9112: one
/// `Content-Length` or `chunked`, CRLF everywhere), logs every request's
/// exact bytes, and answers what its script says. By default it answers
/// `200` with `METHOD PATH BODY-LENGTH` as the body, so a client can tell
/// its own answer. Anything it cannot parse is logged in `refused` and
/// closes the connection.
pub struct StrictBackend {
    pub url: String,
    pub seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    pub refused: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    /// Answers written in full.
    pub answered: Arc<std::sync::atomic::AtomicUsize>,
}

impl StrictBackend {
    pub async fn start() -> Self {
        Self::with(|seen| Answer::bytes(echo_answer(seen))).await
    }

    pub async fn with(reply: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Self {
        let reply: Reply = Arc::new(reply);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = Self {
            url: format!("http://{}", listener.local_addr().unwrap()),
            seen: Arc::default(),
            refused: Arc::default(),
            connections: Arc::default(),
            answered: Arc::default(),
        };
        let (seen, refused) = (backend.seen.clone(), backend.refused.clone());
        let (connections, answered) = (backend.connections.clone(), backend.answered.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(strict_connection(
                    stream,
                    reply.clone(),
                    seen.clone(),
                    refused.clone(),
                    answered.clone(),
                ));
            }
        });
        backend
    }

    /// The paths of the requests seen so far.
    pub fn paths(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.path.clone())
            .collect()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

/// The default answer: `200`, body `METHOD PATH BODY-LENGTH`.
pub fn echo_answer(seen: &Seen) -> Vec<u8> {
    let body = format!("{} {} {}", seen.method, seen.path, seen.body.len());
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn strict_connection(
    mut stream: tokio::net::TcpStream,
    reply: Reply,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    refused: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    answered: Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match parse_strict(&buf) {
            Strict::Partial => match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            Strict::Bad => {
                refused.lock().unwrap().push(buf);
                return;
            }
            Strict::Done(request, len) => {
                buf.drain(..len);
                let answer = reply(&request);
                seen.lock().unwrap().push(request);
                for part in &answer.parts {
                    if stream.write_all(part).await.is_err() || stream.flush().await.is_err() {
                        return;
                    }
                }
                answered.fetch_add(1, Ordering::Relaxed);
                if answer.close {
                    let _ = stream.shutdown().await;
                    return;
                }
            }
        }
    }
}

enum Strict {
    Partial,
    Bad,
    Done(Seen, usize),
}

/// Parses one request strictly from the front of `buf`.
fn parse_strict(buf: &[u8]) -> Strict {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Strict::Partial,
        Err(_) => return Strict::Bad,
    };
    let head = &buf[..head_len];
    // CRLF only: a bare LF in the head is refused.
    if head.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r') || head[0] == b'\n' {
        return Strict::Bad;
    }
    let (mut lengths, mut chunked, mut encodings) = (Vec::new(), false, 0);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
            {
                Some(n) if h.value.iter().all(u8::is_ascii_digit) => lengths.push(n),
                _ => return Strict::Bad,
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            encodings += 1;
            chunked = h.value.eq_ignore_ascii_case(b"chunked");
        }
    }
    let method = req.method.unwrap_or_default().to_owned();
    let path = req.path.unwrap_or_default().to_owned();
    let (body, end) = match (lengths.as_slice(), encodings) {
        ([], 0) => (Vec::new(), head_len),
        ([n], 0) => {
            let end = head_len + *n as usize;
            if buf.len() < end {
                return Strict::Partial;
            }
            (buf[head_len..end].to_vec(), end)
        }
        ([], 1) if chunked => match decode_chunked(&buf[head_len..]) {
            Some(Some((body, n))) => (body, head_len + n),
            Some(None) => return Strict::Partial,
            None => return Strict::Bad,
        },
        _ => return Strict::Bad,
    };
    Strict::Done(
        Seen {
            raw: buf[..end].to_vec(),
            head: String::from_utf8_lossy(head).into_owned(),
            method,
            path,
            body,
        },
        end,
    )
}

/// A strict chunked decoder: `None` malformed, `Some(None)` incomplete,
/// else the body and the bytes it took.
fn decode_chunked(input: &[u8]) -> Option<Option<(Vec<u8>, usize)>> {
    let mut at = 0;
    let mut body = Vec::new();
    let line = |at: usize| -> Option<Option<(&[u8], usize)>> {
        match input[at..].windows(2).position(|w| w == b"\r\n") {
            Some(end) => {
                let line = &input[at..at + end];
                if line.contains(&b'\n') || line.contains(&b'\r') {
                    return None;
                }
                Some(Some((line, at + end + 2)))
            }
            None if input[at..].contains(&b'\n') => None,
            None => Some(None),
        }
    };
    loop {
        let Some((size_line, next)) = line(at)? else {
            return Some(None);
        };
        let digits = size_line.split(|&b| b == b';').next()?;
        let size = usize::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
        at = next;
        if size == 0 {
            loop {
                let Some((trailer, next)) = line(at)? else {
                    return Some(None);
                };
                at = next;
                if trailer.is_empty() {
                    return Some(Some((body, at)));
                }
                if !trailer.contains(&b':') {
                    return None;
                }
            }
        }
        if input.len() < at + size + 2 {
            return Some(None);
        }
        body.extend_from_slice(&input[at..at + size]);
        if &input[at + size..at + size + 2] != b"\r\n" {
            return None;
        }
        at += size + 2;
    }
}

/// A response read from a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads the responses to `count` requests from `stream` (HEAD answers
/// have no body when `head`); fewer if the connection ends first. Fails
/// after 10 s.
pub async fn read_responses<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    count: usize,
    head: bool,
) -> Vec<RawResponse> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut closed = false;
    tokio::time::timeout(Duration::from_secs(10), async {
        while out.len() < count {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(head_len)) = resp.parse(&buf) {
                let status = resp.code.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..head_len]).into_owned();
                let length = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| {
                        std::str::from_utf8(h.value)
                            .ok()?
                            .trim()
                            .parse::<usize>()
                            .ok()
                    });
                let is_chunked = resp.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("transfer-encoding")
                        && h.value.eq_ignore_ascii_case(b"chunked")
                });
                let bodiless = head || status < 200 || status == 204 || status == 304;
                let parsed = if bodiless {
                    Some((Vec::new(), head_len))
                } else if is_chunked {
                    match decode_chunked(&buf[head_len..]) {
                        Some(Some((body, n))) => Some((body, head_len + n)),
                        Some(None) => None,
                        None => panic!("malformed chunked response: {text}"),
                    }
                } else if let Some(n) = length {
                    (buf.len() >= head_len + n)
                        .then(|| (buf[head_len..head_len + n].to_vec(), head_len + n))
                } else if closed {
                    Some((buf[head_len..].to_vec(), buf.len()))
                } else {
                    None
                };
                if let Some((body, end)) = parsed {
                    buf.drain(..end);
                    if status >= 200 {
                        out.push(RawResponse {
                            status,
                            head: text,
                            body,
                        });
                    }
                    continue;
                }
            }
            if closed {
                break;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => closed = true,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("responses within 10 s");
    out
}

/// Sends `request` on a new connection and reads one response (`None` if
/// the connection ended without one).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Option<RawResponse> {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    read_responses(&mut stream, 1, request.starts_with(b"HEAD "))
        .await
        .pop()
}

/// A fresh client's request through the proxy gets its own answer from
/// a [`StrictBackend`] (a canary after each attack).
pub async fn canary(addr: SocketAddr, n: usize) {
    let path = format!("/canary-{n}");
    let request = format!("GET {path} HTTP/1.1\r\nhost: canary\r\n\r\n");
    let resp = raw_exchange(addr, request.as_bytes())
        .await
        .expect("an answer to the canary");
    assert_eq!(resp.status, 200, "canary {n}: {}", resp.head);
    assert_eq!(
        resp.text(),
        format!("GET {path} 0"),
        "canary {n} got another answer"
    );
}

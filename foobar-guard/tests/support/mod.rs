//! Shared helpers for the guard tests: a real `foobar_core::Server` on a
//! random loopback port, a small test application, and a raw HTTP/1.1
//! client that connects from a chosen 127.0.0.x source address.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use foobar_core::RequestBody;
use foobar_core::{Accepted, BoxError, ConnInfo, HttpConfig, Server, Shutdown};
use foobar_guard::ClientAddr;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Upper bound for anything a test waits on.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A running server; shuts down when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Shutdown,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Serves `http` behind the connection stage `stage` on 127.0.0.1:0.
pub fn serve<C, IO, S, B>(stage: C, http: S) -> TestServer
where
    C: tower::Service<Accepted<TcpStream>, Response = Accepted<IO>> + Clone + Send + Sync + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    serve_with(HttpConfig::default(), stage, http)
}

/// [`serve`] with HTTP settings.
pub fn serve_with<C, IO, S, B>(config: HttpConfig, stage: C, http: S) -> TestServer
where
    C: tower::Service<Accepted<TcpStream>, Response = Accepted<IO>> + Clone + Send + Sync + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let shutdown = Shutdown::new();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .expect("a valid address")
        .http(config)
        .shutdown(shutdown.clone())
        .grace_period(Duration::from_secs(1))
        .build()
        .expect("binds a free port");
    let addr = server.local_addr();
    tokio::spawn(server.serve_connections(stage, http));
    TestServer { addr, shutdown }
}

/// The test application, generic over the request body:
/// - `/client`: the request's client address (`ClientAddr`, else the
///   connection's client address);
/// - `/read`: reads the whole body, answers its length (400 if the read
///   failed);
/// - `/slow`: answers after 5 s;
/// - anything else: `ok`.
#[derive(Clone, Copy, Debug, Default)]
pub struct App;

impl<B> tower::Service<Request<B>> for App
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        Box::pin(async move {
            let text = match req.uri().path() {
                "/client" => ClientAddr::of(&req)
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                "/conn" => req
                    .extensions()
                    .get::<ConnInfo>()
                    .map(|i| i.client_addr().to_string())
                    .unwrap_or_default(),
                "/read" => match req.into_body().collect().await {
                    Ok(body) => body.to_bytes().len().to_string(),
                    Err(_) => {
                        let mut response = Response::new(Full::from("read failed"));
                        *response.status_mut() = StatusCode::BAD_REQUEST;
                        return Ok(response);
                    }
                },
                "/slow" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "slow".to_owned()
                }
                _ => "ok".to_owned(),
            };
            Ok(Response::new(Full::from(text)))
        })
    }
}

/// A TCP connection from `source` (an address on 127.0.0.0/8) to `server`.
pub async fn connect_from(source: IpAddr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("binds a loopback source address");
    tokio::time::timeout(DEADLINE, socket.connect(server))
        .await
        .expect("connects in time")
        .expect("connects")
}

/// What came back for a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// A response: status, head, body.
    Response {
        status: u16,
        head: String,
        body: String,
    },
    /// The connection closed (or was reset) before any response byte.
    Closed,
}

impl Reply {
    pub fn status(&self) -> Option<u16> {
        match self {
            Reply::Response { status, .. } => Some(*status),
            Reply::Closed => None,
        }
    }

    pub fn body(&self) -> &str {
        match self {
            Reply::Response { body, .. } => body,
            Reply::Closed => "",
        }
    }

    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        let Reply::Response { head, .. } = self else {
            return None;
        };
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

/// `GET path` with extra header lines, from `source`, on a new connection.
pub async fn get_from(source: IpAddr, server: SocketAddr, path: &str, headers: &str) -> Reply {
    let mut stream = connect_from(source, server).await;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: test\r\n{headers}Connection: close\r\n\r\n");
    send_raw(&mut stream, request.as_bytes()).await
}

/// Writes `bytes` (ignoring a refused write) and reads one response.
pub async fn send_raw<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> Reply {
    if stream.write_all(bytes).await.is_err() {
        return Reply::Closed;
    }
    read_reply(stream).await
}

/// Reads one response (head, then a Content-Length body), or `Closed`.
pub async fn read_reply<S: AsyncRead + Unpin>(stream: &mut S) -> Reply {
    tokio::time::timeout(DEADLINE, read_reply_inner(stream))
        .await
        .expect("a reply or a close within the deadline")
}

async fn read_reply_inner<S: AsyncRead + Unpin>(stream: &mut S) -> Reply {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) if buf.is_empty() => return Reply::Closed,
            Ok(0) | Err(_) => panic!("connection closed inside a response head: {buf:?}"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let reply = Reply::Response {
        status,
        head: head.clone(),
        body: String::new(),
    };
    let length: usize = reply
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Reply::Response {
        status,
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Whether the peer has closed `stream` (EOF or reset) within the deadline.
pub async fn closed_by_peer<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(DEADLINE, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("a valid address")
}

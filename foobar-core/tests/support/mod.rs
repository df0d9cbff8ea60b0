//! Test clients and servers on real loopback sockets.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpSocket, TcpStream};

/// Connects to `server` from the source address `source` (any 127.0.0.x).
pub async fn connect_from(source: IpAddr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind client source");
    socket.connect(server).await.expect("connect")
}

/// One HTTP/1.1 GET on a fresh connection from `source`.
pub async fn get_h1_from(source: IpAddr, server: SocketAddr, path: &str) -> (StatusCode, String) {
    let stream = connect_from(source, server).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await.expect("h1 response");
    read(response).await
}

/// One HTTP/1.1 GET from 127.0.0.1.
pub async fn get_h1(server: SocketAddr, path: &str) -> (StatusCode, String) {
    get_h1_from([127, 0, 0, 1].into(), server, path).await
}

/// One HTTP/2 GET by prior knowledge (h2c) on a fresh connection.
pub async fn get_h2c(server: SocketAddr, path: &str) -> (StatusCode, String) {
    let stream = TcpStream::connect(server).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let req = Request::get(format!("http://{server}{path}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await.expect("h2 response");
    read(response).await
}

pub async fn read(response: Response<hyper::body::Incoming>) -> (StatusCode, String) {
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A plain-text response.
pub fn text(
    status: StatusCode,
    body: impl Into<Bytes>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    Ok(response)
}

/// Polls `check` until it holds or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads the request body whole, then answers `200` with its length; a
/// body that timed out is answered `408`, one that failed otherwise `400`.
pub async fn read_body(
    req: Request<foobar_core::RequestBody>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    match req.into_body().collect().await {
        Ok(body) => text(StatusCode::OK, body.to_bytes().len().to_string()),
        Err(error) if error.downcast_ref() == Some(&foobar_core::BodyError::TimedOut) => {
            text(StatusCode::REQUEST_TIMEOUT, "timed out")
        }
        Err(error) => text(StatusCode::BAD_REQUEST, error.to_string()),
    }
}

//! Request hygiene on real sockets: 413 for large bodies (declared or
//! streamed), 408 for slow clients, 504 for slow handlers, 431 for large
//! heads.

mod support;

use std::time::{Duration, Instant};

use foobar_core::{HttpConfig, PlainTcp};
use foobar_guard::hygiene::{BodyLimitLayer, TimeoutLayer};
use support::{connect_from, ip, read_reply, send_raw, serve, serve_with, App, Reply};
use tokio::io::AsyncWriteExt;
use tower::ServiceBuilder;

const LIMIT: u64 = 1024;
const TIMEOUT: Duration = Duration::from_millis(300);

fn server() -> support::TestServer {
    let http = ServiceBuilder::new()
        .layer(TimeoutLayer::new(TIMEOUT))
        .layer(BodyLimitLayer::new(LIMIT))
        .service(App);
    serve(PlainTcp, http)
}

fn post(length_header: &str) -> String {
    format!("POST /read HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{length_header}\r\n")
}

#[tokio::test]
async fn bodies_within_the_limit_pass() {
    let server = server();
    let mut stream = connect_from(ip("127.0.0.80"), server.addr).await;
    let body = "x".repeat(LIMIT as usize);
    let request = post(&format!("Content-Length: {}\r\n", body.len())) + &body;
    let reply = send_raw(&mut stream, request.as_bytes()).await;
    assert_eq!(reply.status(), Some(200), "{reply:?}");
    assert_eq!(reply.body(), LIMIT.to_string());
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_body() {
    let server = server();
    let mut stream = connect_from(ip("127.0.0.80"), server.addr).await;
    // Only the head is sent: the answer cannot depend on the body.
    let reply = send_raw(&mut stream, post("Content-Length: 1000000\r\n").as_bytes()).await;
    assert_eq!(reply.status(), Some(413), "{reply:?}");
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_gets_413() {
    let server = server();
    let mut stream = connect_from(ip("127.0.0.80"), server.addr).await;
    stream
        .write_all(post("Transfer-Encoding: chunked\r\n").as_bytes())
        .await
        .unwrap();
    // 3 chunks of 600 bytes: the second passes the limit.
    let chunk = format!("258\r\n{}\r\n", "y".repeat(600));
    for _ in 0..3 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let reply = read_reply(&mut stream).await;
    assert_eq!(reply.status(), Some(413), "{reply:?}");
}

#[tokio::test]
async fn a_client_too_slow_with_its_body_gets_408() {
    let server = server();
    let mut stream = connect_from(ip("127.0.0.81"), server.addr).await;
    let started = Instant::now();
    // Promises 100 bytes, sends 10, then nothing.
    let request = post("Content-Length: 100\r\n") + "0123456789";
    let reply = send_raw(&mut stream, request.as_bytes()).await;
    assert_eq!(reply.status(), Some(408), "{reply:?}");
    assert!(started.elapsed() >= TIMEOUT);
}

#[tokio::test]
async fn a_handler_too_slow_gets_504() {
    let server = server();
    let mut stream = connect_from(ip("127.0.0.82"), server.addr).await;
    let started = Instant::now();
    let reply = send_raw(
        &mut stream,
        b"GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status(), Some(504), "{reply:?}");
    // Answered at the timeout, not when the handler would have finished.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_oversized_head_gets_431() {
    let mut config = HttpConfig::default();
    config.max_header_bytes = 8 * 1024;
    let server = serve_with(config, PlainTcp, App);
    let mut stream = connect_from(ip("127.0.0.83"), server.addr).await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
        "p".repeat(32 * 1024)
    );
    let reply = send_raw(&mut stream, big.as_bytes()).await;
    assert_eq!(reply.status(), Some(431), "{reply:?}");
    // A normal head on the same server is fine.
    let mut stream = connect_from(ip("127.0.0.83"), server.addr).await;
    let ok = send_raw(
        &mut stream,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_ne!(ok, Reply::Closed);
    assert_eq!(ok.status(), Some(200));
}

#[tokio::test]
async fn grpc_requests_are_refused_with_grpc_statuses() {
    let server = server();
    let mut stream = connect_from(ip("127.0.0.85"), server.addr).await;
    let request = format!(
        "POST /read HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/grpc\r\nContent-Length: {}\r\n\r\n",
        LIMIT + 1
    );
    let reply = send_raw(&mut stream, request.as_bytes()).await;
    assert_eq!(reply.status(), Some(200), "{reply:?}");
    assert_eq!(
        reply.header("grpc-status").as_deref(),
        Some("8"),
        "RESOURCE_EXHAUSTED: {reply:?}"
    );

    let mut stream = connect_from(ip("127.0.0.85"), server.addr).await;
    let request = "GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/grpc+proto\r\n\r\n";
    let reply = send_raw(&mut stream, request.as_bytes()).await;
    assert_eq!(
        reply.header("grpc-status").as_deref(),
        Some("4"),
        "DEADLINE_EXCEEDED: {reply:?}"
    );
}

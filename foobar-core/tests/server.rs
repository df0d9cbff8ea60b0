//! foobar-core's Server on real loopback sockets: HTTP/1.1 and h2c, the
//! client address, graceful shutdown, slow clients and bad addresses.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foobar_core::RequestBody;
use foobar_core::{ConnInfo, Error, Server, Shutdown};
use http::{Request, StatusCode};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

/// Answers with the peer address the server saw.
fn echo_peer() -> impl tower::Service<
    Request<RequestBody>,
    Response = http::Response<http_body_util::Full<bytes::Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
       + Send
       + Sync
       + 'static {
    tower::service_fn(|req: Request<RequestBody>| async move {
        let info = req
            .extensions()
            .get::<ConnInfo>()
            .expect("ConnInfo in every request");
        text(StatusCode::OK, format!("{} {:?}", info.peer, req.version()))
    })
}

fn start<S, B>(server: Server, service: S) -> tokio::task::JoinHandle<Result<(), Error>>
where
    S: tower::Service<Request<RequestBody>, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Error: Into<foobar_core::BoxError>,
    S::Future: Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<foobar_core::BoxError>,
{
    tokio::spawn(server.serve(service))
}

/// A server on 127.0.0.1 with these HTTP settings, answering with
/// [`echo_peer`]; its address.
fn echo_server_with(config: foobar_core::HttpConfig) -> std::net::SocketAddr {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .http(config)
        .build()
        .unwrap();
    let addr = server.local_addr();
    start(server, echo_peer());
    addr
}

#[tokio::test]
async fn serves_http1_and_h2c_with_the_real_peer_address() {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .build()
        .unwrap();
    let addr = server.local_addr();
    start(server, echo_peer());

    let source: IpAddr = "127.0.0.7".parse().unwrap();
    let (status, body) = get_h1_from(source, addr, "/").await;
    assert_eq!(status, StatusCode::OK);
    let (peer, version) = body.split_once(' ').unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    assert_eq!(
        peer.ip(),
        source,
        "ConnInfo.peer is the client's source address"
    );
    assert_eq!(version, "HTTP/1.1");

    let (status, body) = get_h2c(addr, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.ends_with("HTTP/2.0"), "h2c by prior knowledge: {body}");
}

#[tokio::test]
async fn serves_ipv6_and_several_addresses() {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .bind("[::1]:0")
        .unwrap()
        .build()
        .unwrap();
    let addrs = server.local_addrs();
    assert_eq!(addrs.len(), 2);
    start(server, echo_peer());
    let (status, _) = get_h1(addrs[0], "/").await;
    assert_eq!(status, StatusCode::OK);
    match TcpStream::connect(addrs[1]).await {
        Ok(stream) => {
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let req = Request::get("/")
                .header("host", "v6")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let (status, body) = read(sender.send_request(req).await.unwrap()).await;
            assert_eq!(status, StatusCode::OK);
            assert!(body.starts_with("[::1]:"), "{body}");
        }
        Err(e) => panic!("IPv6 listener not reachable: {e}"),
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_refuses_new_and_closes_idle() {
    let shutdown = Shutdown::new();
    let release = Arc::new(Notify::new());
    let (entered_tx, mut entered_rx) = mpsc::channel::<()>(1);
    let service = {
        let release = release.clone();
        tower::service_fn(move |req: Request<RequestBody>| {
            let release = release.clone();
            let entered = entered_tx.clone();
            async move {
                if req.uri().path() == "/slow" {
                    entered.send(()).await.ok();
                    release.notified().await;
                    return text(StatusCode::OK, "slow done");
                }
                text(StatusCode::OK, "fast")
            }
        })
    };
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .shutdown(shutdown.clone())
        .grace_period(Duration::from_secs(10))
        .build()
        .unwrap();
    let addr = server.local_addr();
    let server_task = start(server, service);

    // An idle keep-alive connection: one request answered, then nothing.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /fast HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));

    // A slow request in flight.
    let slow = tokio::spawn(get_h1(addr, "/slow"));
    entered_rx.recv().await.unwrap();

    let started = Instant::now();
    shutdown.trigger();

    // New connections are refused once the listener is closed.
    let refused = wait_until(Duration::from_secs(5), || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(
        refused,
        "new connections must be refused after shutdown starts"
    );

    // The idle keep-alive connection is closed by the server.
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "idle connection closed: {closed:?}"
    );

    // The in-flight request still completes.
    assert!(
        !server_task.is_finished(),
        "server waits for in-flight requests"
    );
    release.notify_one();
    let (status, body) = slow.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "slow done"));

    let result = tokio::time::timeout(Duration::from_secs(5), server_task).await;
    assert!(
        matches!(result, Ok(Ok(Ok(())))),
        "server returned: {result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "returned before the grace period ran out"
    );
}

#[tokio::test]
async fn grace_period_cuts_off_requests_that_never_finish() {
    let shutdown = Shutdown::new();
    let (entered_tx, mut entered_rx) = mpsc::channel::<()>(1);
    let service = tower::service_fn(move |_req: Request<RequestBody>| {
        let entered = entered_tx.clone();
        async move {
            entered.send(()).await.ok();
            std::future::pending::<()>().await;
            text(StatusCode::OK, "never")
        }
    });
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .shutdown(shutdown.clone())
        .grace_period(Duration::from_millis(300))
        .build()
        .unwrap();
    let addr = server.local_addr();
    let server_task = start(server, service);
    let _stuck = tokio::spawn(get_h1(addr, "/"));
    entered_rx.recv().await.unwrap();
    let started = Instant::now();
    shutdown.trigger();
    let result = tokio::time::timeout(Duration::from_secs(5), server_task).await;
    assert!(
        matches!(result, Ok(Ok(Ok(())))),
        "server returned: {result:?}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "waited for the grace period: {took:?}"
    );
}

#[tokio::test]
async fn slowloris_is_disconnected_while_normal_clients_are_served() {
    let header_timeout = Duration::from_secs(2);
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .header_read_timeout(Some(header_timeout))
        .build()
        .unwrap();
    let addr = server.local_addr();
    start(server, echo_peer());

    // One byte of request head per second.
    let slow = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let head = b"GET / HTTP/1.1\r\nhost: slow\r\nx-padding: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        for byte in head {
            if stream.write_all(&[*byte]).await.is_err() {
                return (started.elapsed(), true);
            }
            let mut buf = [0u8; 256];
            // Sleep one second, but notice at once if the server hangs up.
            match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
                Err(_) => {}
                Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), true),
                Ok(Ok(n)) => panic!(
                    "slow client got an answer: {:?}",
                    String::from_utf8_lossy(&buf[..n])
                ),
            }
        }
        (started.elapsed(), false)
    });

    // Meanwhile a normal client is served, repeatedly.
    for _ in 0..5 {
        let (status, _) = get_h1(addr, "/").await;
        assert_eq!(status, StatusCode::OK);
    }
    let (took, disconnected) = slow.await.unwrap();
    assert!(disconnected, "the slow client was never disconnected");
    assert!(
        took < header_timeout + Duration::from_secs(2),
        "disconnected after {took:?}"
    );
    assert!(
        took >= header_timeout - Duration::from_millis(100),
        "disconnected too early: {took:?}"
    );
}

#[tokio::test]
async fn silent_connections_are_dropped_after_the_header_timeout() {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .header_read_timeout(Some(Duration::from_millis(500)))
        .build()
        .unwrap();
    let addr = server.local_addr();
    start(server, echo_peer());
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let result = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(
        matches!(result, Ok(Ok(0)) | Ok(Err(_))),
        "silent client dropped: {result:?}"
    );
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let mut config = foobar_core::HttpConfig::default();
    config.max_header_bytes = 16 * 1024;
    let addr = echo_server_with(config);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let big = "a".repeat(64 * 1024);
    let request = format!("GET / HTTP/1.1\r\nhost: t\r\nx-big: {big}\r\n\r\n");
    // The server may answer and close before it has read everything.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
}

/// One request with `count` headers on a new connection; the status line.
async fn status_with_headers(addr: std::net::SocketAddr, count: usize) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = String::from("GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n");
    for i in 2..count {
        request.push_str(&format!("x-h{i}: v\r\n"));
    }
    request.push_str("\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    response.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn header_count_limits_hold_at_the_default_and_when_set() {
    for (limit, configured) in [(100, None), (10, Some(10))] {
        let mut config = foobar_core::HttpConfig::default();
        if let Some(max) = configured {
            config.max_headers = max;
        }
        let addr = echo_server_with(config);
        let within = status_with_headers(addr, limit).await;
        assert!(
            within.starts_with("HTTP/1.1 200"),
            "{limit} headers: {within}"
        );
        let over = status_with_headers(addr, limit + 1).await;
        assert!(
            over.starts_with("HTTP/1.1 431"),
            "{} headers: {over}",
            limit + 1
        );
    }
}

#[tokio::test]
async fn binding_an_address_in_use_names_it() {
    let first = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .build()
        .unwrap();
    let taken = first.local_addr();
    let err = Server::builder().bind_addr(taken).build().unwrap_err();
    assert!(
        matches!(&err, Error::Bind { addr, .. } if *addr == taken),
        "{err:?}"
    );
    assert!(err.to_string().contains(&taken.to_string()), "{err}");
}

#[tokio::test]
async fn invalid_addresses_are_named() {
    for bad in [
        "localhost:80",
        "127.0.0.1",
        "127.0.0.1:99999",
        "[::1:80",
        "",
    ] {
        let err = Server::builder().bind(bad).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidAddress { input, .. } if input == bad),
            "{err:?}"
        );
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
    assert!(matches!(Server::builder().build(), Err(Error::NoAddress)));
}

/// A server on 127.0.0.1 with these HTTP settings whose service reads each
/// request body whole ([`read_body`]); its address.
fn body_server_with(config: foobar_core::HttpConfig) -> SocketAddr {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .http(config)
        .build()
        .unwrap();
    let addr = server.local_addr();
    start(server, tower::service_fn(read_body));
    addr
}

#[tokio::test]
async fn an_idle_http1_request_body_times_out_and_the_connection_closes() {
    let timeout = Duration::from_millis(300);
    let mut config = foobar_core::HttpConfig::default();
    config.body_read_timeout = Some(timeout);
    let addr = body_server_with(config);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    // Three bytes of ten, then nothing.
    stream
        .write_all(b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes in time")
        .unwrap();
    assert!(started.elapsed() >= timeout, "answered before the timeout");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert_eq!(get_h1(addr, "/").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_slow_http1_request_body_that_keeps_coming_is_served() {
    let mut config = foobar_core::HttpConfig::default();
    config.body_read_timeout = Some(Duration::from_secs(1));
    let addr = body_server_with(config);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 8\r\n\r\n")
        .await
        .unwrap();
    // A byte every 200 ms, 1.6 s in all: longer than the timeout, but
    // never silent for that long.
    let started = Instant::now();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stream.write_all(b"x").await.unwrap();
    }
    assert!(started.elapsed() > Duration::from_secs(1));
    // The answer: `200` and the body's length, 8.
    let mut answer = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !answer.ends_with(b"\r\n\r\n8") {
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut answer)).await {
            Ok(Ok(n)) if n > 0 => {}
            other => panic!("{other:?} after {:?}", String::from_utf8_lossy(&answer)),
        }
    }
    assert!(answer.starts_with(b"HTTP/1.1 200 "));
}

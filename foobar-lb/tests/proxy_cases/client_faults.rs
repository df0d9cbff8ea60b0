//! What a client sends must never change shared state: malformed or
//! abandoned uploads, bad `Host`s, `CONNECT`, odd framing. Each case uses
//! a strict backend that logs every request's exact bytes, checks what it
//! saw and the backend's passive health, then sends a canary from another
//! client.

use std::net::SocketAddr;
use std::time::Duration;

use foobar_lb::health::OutlierDetection;
use foobar_lb::policy::RoundRobin;
use foobar_lb::{Proxy, ProxyBuilder};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// A proxy in front of one strict backend, ejecting it after three
/// consecutive failures.
async fn guarded(
    builder: impl FnOnce(ProxyBuilder<RoundRobin>) -> ProxyBuilder<RoundRobin>,
) -> (StrictBackend, Proxy, TestServer) {
    let backend = StrictBackend::start().await;
    let proxy = builder(
        Proxy::builder(RoundRobin::new()).outlier_detection(
            OutlierDetection::new()
                .consecutive_failures(3)
                .base_ejection_time(Duration::from_secs(30)),
        ),
    )
    .build()
    .unwrap();
    proxy.add_backend(&backend.url).unwrap();
    let front = crate::serve_front(proxy.clone()).await;
    (backend, proxy, front)
}

/// The backend took no blame: no error counted, not ejected.
fn unblamed(proxy: &Proxy, backend: &StrictBackend) {
    let b = proxy.backends().get(&backend.url).unwrap();
    assert_eq!(b.errors_total(), 0, "errors counted against the backend");
    assert!(!b.is_ejected(), "the backend was ejected");
}

/// Sends raw bytes on a new connection and reads what comes back until
/// the connection ends (at most 10 s).
async fn send_and_read_all(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got))
        .await
        .expect("the connection ends within 10 s");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_aborted_uploads_never_eject_a_backend() {
    let (backend, proxy, front) = guarded(|b| b).await;
    let addr = front.addr;
    // A good client keeps asking the whole time.
    let good = tokio::spawn(async move {
        let client = client();
        let mut served = 0;
        for _ in 0..200 {
            let (status, body) = get(&client, &format!("http://{addr}/good")).await;
            assert_eq!(status, StatusCode::OK, "a good client got {status}: {body}");
            served += 1;
        }
        served
    });
    let attacks = (0..100).map(|i| {
        tokio::spawn(async move {
            if i % 2 == 0 {
                // A malformed chunk size.
                let got = send_and_read_all(
                    addr,
                    b"POST /attack HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
                )
                .await;
                assert!(
                    got.is_empty() || got.starts_with("HTTP/1.1 400 "),
                    "a malformed body is the client's fault: {got}"
                );
            } else {
                // An upload abandoned after 10 of 100 bytes.
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream
                    .write_all(b"POST /attack HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
                    .await
                    .unwrap();
                drop(stream);
            }
        })
    });
    for attack in attacks.collect::<Vec<_>>() {
        attack.await.unwrap();
    }
    // And 100 more of each, one after the other.
    for _ in 0..100 {
        let got = send_and_read_all(
            addr,
            b"POST /attack HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
        )
        .await;
        assert!(got.is_empty() || got.starts_with("HTTP/1.1 400 "), "{got}");
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST /attack HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
            .await
            .unwrap();
        drop(stream);
    }
    assert_eq!(good.await.unwrap(), 200);
    unblamed(&proxy, &backend);
    assert!(
        backend
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|s| s.path != "/attack"),
        "no incomplete upload reached the backend as a whole request"
    );
    canary(addr, 1).await;
}

#[tokio::test]
async fn a_backend_that_really_fails_is_still_ejected() {
    // Closes every connection without an answer.
    let backend = StrictBackend::with(|_| Answer {
        parts: Vec::new(),
        close: true,
    })
    .await;
    let proxy = Proxy::builder(RoundRobin::new())
        .outlier_detection(OutlierDetection::new().consecutive_failures(3))
        .retry_budget(None)
        .build()
        .unwrap();
    proxy.add_backend(&backend.url).unwrap();
    let front = crate::serve_front(proxy.clone()).await;
    for _ in 0..3 {
        let resp = raw_exchange(
            front.addr,
            b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
        )
        .await
        .expect("an answer");
        assert_eq!(resp.status, 502, "{}", resp.head);
    }
    assert!(proxy.backends().get(&backend.url).unwrap().is_ejected());
}

/// An upload that stops after 10 of its 100 bytes gets a 408, the
/// backend is not blamed, and the next client is served.
async fn stalled_upload_is_a_408(backend: &StrictBackend, proxy: &Proxy, front: SocketAddr) {
    let mut stream = TcpStream::connect(front).await.unwrap();
    stream
        .write_all(b"POST /slow HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let resp = read_responses(&mut stream, 1, false).await;
    assert_eq!(resp.first().map(|r| r.status), Some(408), "{resp:?}");
    unblamed(proxy, backend);
    canary(front, 1).await;
}

#[tokio::test]
async fn a_stalled_upload_is_a_408_not_the_backends_fault() {
    let (backend, proxy, front) =
        guarded(|b| b.response_timeout(Some(Duration::from_millis(300)))).await;
    stalled_upload_is_a_408(&backend, &proxy, front.addr).await;
}

#[tokio::test]
async fn an_upload_stalled_past_the_servers_body_read_timeout_is_a_408() {
    let (backend, proxy, _) = guarded(|b| b.response_timeout(Some(Duration::from_secs(30)))).await;
    let mut http = foobar_core::HttpConfig::default();
    http.body_read_timeout = Some(Duration::from_millis(300));
    let front = crate::serve_front_with(proxy.clone(), http).await;
    stalled_upload_is_a_408(&backend, &proxy, front.addr).await;
}

#[tokio::test]
async fn host_is_checked_as_rfc_9112_asks() {
    let (backend, proxy, front) = guarded(|b| b).await;
    for (case, request) in [
        (
            "two Host fields",
            &b"GET /two HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"[..],
        ),
        (
            "no Host in HTTP/1.1",
            b"GET /none HTTP/1.1\r\nAccept: */*\r\n\r\n",
        ),
        ("an invalid Host", b"GET /bad HTTP/1.1\r\nHost: a b\r\n\r\n"),
    ] {
        let resp = raw_exchange(front.addr, request).await.expect("an answer");
        assert_eq!(resp.status, 400, "{case}: {}", resp.head);
    }
    assert!(backend.paths().is_empty(), "{:?}", backend.paths());

    // HTTP/1.0 may leave Host out.
    let resp = raw_exchange(front.addr, b"GET /old HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (200, "GET /old 0"));

    // An absolute-form target's authority wins over Host.
    let resp = raw_exchange(
        front.addr,
        b"GET http://site.example/abs?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.head);
    let seen = backend.last();
    assert_eq!(seen.path, "/abs?q=1");
    assert_eq!(seen.header("host"), ["site.example"]);

    // `Connection: Host` does not strip it.
    let resp = raw_exchange(
        front.addr,
        b"GET /named HTTP/1.1\r\nHost: kept.example\r\nConnection: Host\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(backend.last().header("host"), ["kept.example"]);

    // A fragment is never forwarded.
    let resp = raw_exchange(front.addr, b"GET /page#part HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(backend.last().path, "/page");

    unblamed(&proxy, &backend);
    canary(front.addr, 1).await;
}

#[tokio::test]
async fn http2_authority_wins_over_host() {
    let (backend, _proxy, front) = guarded(|b| b).await;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    let h2: hyper_util::client::legacy::Client<_, TestBody> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(http);
    // The client sends `:authority` from the URI, and a Host of its own.
    let req = http::Request::get(format!("http://{}/h2", front.addr))
        .header("host", "other.example")
        .body(empty())
        .unwrap();
    let (status, _, _) = send(&h2, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(backend.last().header("host"), [front.addr.to_string()]);
}

#[tokio::test]
async fn connect_is_refused_unless_tunnelling_is_on() {
    let (backend, proxy, front) = guarded(|b| b).await;
    let resp = raw_exchange(
        front.addr,
        b"CONNECT target.example:443 HTTP/1.1\r\nHost: target.example:443\r\n\r\n",
    )
    .await
    .expect("an answer");
    assert_eq!(resp.status, 405, "{}", resp.head);
    assert!(!resp.header("allow").is_empty(), "{}", resp.head);
    assert!(backend.paths().is_empty());
    unblamed(&proxy, &backend);
    canary(front.addr, 1).await;
}

#[tokio::test]
async fn connect_tunnels_to_the_backend_with_its_authority() {
    // A forward proxy as the backend: it checks the target, says 200, then
    // echoes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let target = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).await.unwrap(), 1);
            head.push(byte[0]);
        }
        stream
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await.unwrap();
        stream.write_all(&buf[..n]).await.unwrap();
        String::from_utf8_lossy(&head).into_owned()
    });
    let proxy = Proxy::builder(RoundRobin::new())
        .tunnel_connect(true)
        .build()
        .unwrap();
    proxy.add_backend(&url).unwrap();
    let front = crate::serve_front(proxy).await;
    let mut stream = TcpStream::connect(front.addr).await.unwrap();
    stream
        .write_all(b"CONNECT target.example:443 HTTP/1.1\r\nHost: target.example:443\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("an answer in time")
            .unwrap();
        assert_eq!(n, 1, "closed: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream.write_all(b"through").await.unwrap();
    let mut echoed = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&echoed, b"through");
    let seen = target.await.unwrap();
    assert!(
        seen.starts_with("CONNECT target.example:443 HTTP/1.1\r\n"),
        "{seen}"
    );
}

#[tokio::test]
async fn a_half_closed_client_still_gets_its_answer() {
    let (backend, _proxy, front) = guarded(|b| b).await;
    let mut stream = TcpStream::connect(front.addr).await.unwrap();
    stream
        .write_all(b"GET /half HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let resp = read_responses(&mut stream, 1, false).await;
    assert_eq!(
        resp.first().map(|r| r.text()),
        Some("GET /half 0".to_owned())
    );
    assert_eq!(backend.paths(), ["/half"]);
}

#[tokio::test]
async fn a_get_with_a_chunked_body_keeps_its_body() {
    let (backend, _proxy, front) = guarded(|b| b).await;
    let resp = raw_exchange(
        front.addr,
        b"GET /search HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nquery\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (200, "GET /search 5"));
    assert_eq!(backend.last().body, b"query");
}

#[tokio::test]
async fn chunked_framing_outside_the_grammar_is_a_400() {
    let (backend, proxy, front) = guarded(|b| b).await;
    for (case, body) in [
        ("junk after the size", &b"5 junk\r\nhello\r\n0\r\n\r\n"[..]),
        (
            "a trailer without a colon",
            b"5\r\nhello\r\n0\r\nGET /SMUGGLE HTTP/1.\r\n\r\n",
        ),
        (
            "a request in place of the final CRLF",
            b"5\r\nhello\r\n0\r\nx: 1\r\nGET /SMUGGLE HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        (
            "a folded trailer",
            b"5\r\nhello\r\n0\r\nx: 1\r\n folded\r\n\r\n",
        ),
    ] {
        let request = [
            &b"POST /framed HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            body,
        ]
        .concat();
        let got = send_and_read_all(front.addr, &request).await;
        assert!(
            got.is_empty() || got.starts_with("HTTP/1.1 400 "),
            "{case}: {got}"
        );
        assert!(
            !backend.paths().iter().any(|p| p.contains("SMUGGLE")),
            "{case}: {:?}",
            backend.paths()
        );
    }
    // Valid framing passes: leading zeros, extensions, trailers.
    let resp = raw_exchange(
        front.addr,
        b"POST /valid HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
          000000000000000005;a=\"b\"\r\nhello\r\n0\r\nx-sum: 1\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (200, "POST /valid 5"));
    unblamed(&proxy, &backend);
    canary(front.addr, 1).await;
}

#[tokio::test]
async fn a_bare_lf_in_trailers_never_swallows_the_next_request() {
    let (backend, proxy, front) = guarded(|b| b).await;
    let got = send_and_read_all(
        front.addr,
        b"POST /first HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\nx: 1\n\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 400 "), "{got}");
    assert!(!backend.paths().iter().any(|p| p == "/smuggled"));
    unblamed(&proxy, &backend);
    canary(front.addr, 1).await;
}

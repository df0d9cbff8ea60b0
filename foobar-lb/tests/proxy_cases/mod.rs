//! Reverse-proxy semantics: headers, errors, timeouts, retries, streaming,
//! protocol upgrades; the proxy served by `foobar_core::Server`, HTTP/1.1
//! on foobar's own path and HTTP/2 through hyper.

mod backend_faults;
mod client_faults;
mod framing_table;
mod http1;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use bytes::Bytes;
use foobar_core::io::MinWriteRate;
use foobar_core::HttpConfig;
use foobar_core::RequestBody;
use foobar_lb::policy::RoundRobin;
use foobar_lb::Proxy;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that answers with the request headers it received, one
/// `name: value` per line, and sets a few hop-by-hop response headers.
async fn echo_headers() -> TestServer {
    serve(
        "127.0.0.1:0",
        tower::service_fn(|req: Request<RequestBody>| async move {
            let mut text = String::new();
            for (name, value) in req.headers() {
                text.push_str(&format!("{}: {}\n", name, value.to_str().unwrap_or("?")));
            }
            let resp = Response::builder()
                .header("keep-alive", "timeout=5")
                .header("proxy-authenticate", "Basic")
                .header("x-from-backend", "yes")
                .body(Full::new(Bytes::from(text)))
                .unwrap();
            Ok::<_, Infallible>(resp)
        }),
    )
    .await
}

fn header_lines<'a>(body: &'a str, name: &str) -> Vec<&'a str> {
    body.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

async fn proxy_to(
    urls: &[&str],
    builder: impl FnOnce(foobar_lb::ProxyBuilder<RoundRobin>) -> foobar_lb::ProxyBuilder<RoundRobin>,
) -> (Proxy, TestServer) {
    let proxy = builder(Proxy::builder(RoundRobin::new())).build().unwrap();
    for url in urls {
        proxy.add_backend(url).unwrap();
    }
    let front = crate::serve_front(proxy.clone()).await;
    (proxy, front)
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let backend = echo_headers().await;
    let (_proxy, front) = proxy_to(&[&backend.url()], |b| b).await;
    let client = client_from(Some("127.0.0.7"));
    let req = Request::get(front.url())
        .header("connection", "x-secret, keep-alive")
        .header("x-secret", "must not pass")
        .header("keep-alive", "timeout=5")
        .header("te", "gzip")
        .header("trailer", "x-checksum")
        .header("upgrade", "h2c")
        .header("proxy-authorization", "Basic abc")
        .header("proxy-connection", "keep-alive")
        .header("x-end-to-end", "kept")
        .body(empty())
        .unwrap();
    let (status, headers, body) = send(&client, req).await;
    assert_eq!(status, StatusCode::OK);
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "transfer-encoding",
    ] {
        assert!(
            header_lines(&body, gone).is_empty(),
            "{gone} reached the backend:\n{body}"
        );
    }
    assert_eq!(header_lines(&body, "x-end-to-end"), ["kept"]);
    // Response side.
    assert!(!headers.contains_key("keep-alive"));
    assert!(!headers.contains_key("proxy-authenticate"));
    assert_eq!(headers["x-from-backend"], "yes");
    assert_eq!(headers["via"], "1.1 foobar");
}

#[tokio::test]
async fn te_trailers_passes_for_grpc() {
    let backend = echo_headers().await;
    let (_proxy, front) = proxy_to(&[&backend.url()], |b| b).await;
    let req = Request::get(front.url())
        .header("te", "trailers")
        .body(empty())
        .unwrap();
    let (_, _, body) = send(&client(), req).await;
    assert_eq!(header_lines(&body, "te"), ["trailers"]);
}

/// Every spelling of a forwarding field a client may try.
const SPOOFED: &[(&str, &str)] = &[
    ("x-forwarded-for", "6.6.6.6"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-port", "443"),
    ("x-forwarded-prefix", "/admin"),
    ("forwarded", "for=6.6.6.6;proto=https;host=evil"),
    ("x-real-ip", "6.6.6.6"),
    ("x-client-ip", "6.6.6.6"),
    ("true-client-ip", "6.6.6.6"),
    ("x-cluster-client-ip", "6.6.6.6"),
    ("x_forwarded_for", "6.6.6.6"),
    ("x_forwarded_host", "evil.example"),
    ("x_forwarded_proto", "https"),
    ("x_real_ip", "6.6.6.6"),
    ("x-forwarded_for", "6.6.6.6"),
    ("x_request_id", "chosen"),
    ("x-request-id", "chosen-by-the-client"),
];

#[tokio::test]
async fn at_the_edge_a_client_cannot_choose_its_forwarding_fields() {
    let backend = echo_headers().await;
    let (_proxy, front) = proxy_to(&[&backend.url()], |b| b).await;
    let client = client_from(Some("127.0.0.9"));
    let mut req = Request::get(format!("{}/path?q=1", front.url()))
        .header("host", "www.foobar.com")
        .header("via", "1.1 edge")
        .header("x-keep", "1");
    for (name, value) in SPOOFED {
        req = req.header(*name, *value);
    }
    let (_, resp_headers, body) = send(&client, req.body(empty()).unwrap()).await;
    assert!(
        !body.contains("6.6.6.6"),
        "a spoofed address passed:\n{body}"
    );
    assert!(!body.contains("evil"), "a spoofed host passed:\n{body}");
    assert!(
        !body.contains("chosen"),
        "a chosen request id passed:\n{body}"
    );
    for name in [
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-real-ip",
        "x_forwarded_for",
    ] {
        assert_eq!(header_lines(&body, name), Vec::<&str>::new(), "{name}");
    }
    assert_eq!(header_lines(&body, "x-forwarded-for"), ["127.0.0.9"]);
    assert_eq!(header_lines(&body, "x-forwarded-proto"), ["http"]);
    assert_eq!(header_lines(&body, "x-forwarded-host"), ["www.foobar.com"]);
    assert_eq!(header_lines(&body, "host"), ["www.foobar.com"]);
    assert_eq!(
        header_lines(&body, "forwarded"),
        ["for=127.0.0.9;proto=http;host=\"www.foobar.com\""]
    );
    assert_eq!(header_lines(&body, "x-keep"), ["1"]);
    assert_eq!(header_lines(&body, "via"), ["1.1 edge", "1.1 foobar"]);
    let ids = header_lines(&body, "x-request-id");
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].len(), 32);
    assert_eq!(
        resp_headers["x-request-id"], ids[0],
        "the id is echoed to the client"
    );
}

#[tokio::test]
async fn at_the_edge_an_empty_request_id_is_replaced() {
    let backend = echo_headers().await;
    let (_proxy, front) = proxy_to(&[&backend.url()], |b| b).await;
    let req = Request::get(front.url())
        .header("x-request-id", "")
        .body(empty())
        .unwrap();
    let (_, headers, body) = send(&client(), req).await;
    let ids = header_lines(&body, "x-request-id");
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].len(), 32);
    assert_eq!(headers["x-request-id"], ids[0]);
}

#[tokio::test]
async fn behind_trusted_proxies_forwarding_fields_are_appended_to() {
    let backend = echo_headers().await;
    let (_proxy, front) = proxy_to(&[&backend.url()], |b| b.trust_forwarded(true)).await;
    let client = client_from(Some("127.0.0.9"));
    let req = Request::get(format!("{}/path?q=1", front.url()))
        .header("host", "www.foobar.com")
        .header("x-forwarded-for", "203.0.113.5")
        .header("forwarded", "for=203.0.113.5")
        .header("x-real-ip", "203.0.113.5")
        .body(empty())
        .unwrap();
    let (_, _, body) = send(&client, req).await;
    assert_eq!(
        header_lines(&body, "x-forwarded-for"),
        ["203.0.113.5, 127.0.0.9"]
    );
    assert_eq!(
        header_lines(&body, "forwarded"),
        [
            "for=203.0.113.5",
            "for=127.0.0.9;proto=http;host=\"www.foobar.com\""
        ]
    );
    assert_eq!(header_lines(&body, "x-real-ip"), ["203.0.113.5"]);
}

#[tokio::test]
async fn a_trusted_request_id_is_kept_and_trusted_forwarding_is_kept() {
    let backend = echo_headers().await;
    let (_proxy, front) = proxy_to(&[&backend.url()], |b| b.trust_forwarded(true).via("lb1")).await;
    let req = Request::get(front.url())
        .header("x-request-id", "abc-123")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "shop.example")
        .body(empty())
        .unwrap();
    let (_, headers, body) = send(&client(), req).await;
    assert_eq!(header_lines(&body, "x-request-id"), ["abc-123"]);
    assert_eq!(headers["x-request-id"], "abc-123");
    assert_eq!(header_lines(&body, "x-forwarded-proto"), ["https"]);
    assert_eq!(header_lines(&body, "x-forwarded-host"), ["shop.example"]);
    assert_eq!(header_lines(&body, "via"), ["1.1 lb1"]);
}

#[tokio::test]
async fn no_backend_is_a_fast_503_with_a_clear_body() {
    let (_proxy, front) = proxy_to(&[], |b| b).await;
    let start = Instant::now();
    let (status, body) = get(&client(), &front.url()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "no healthy backend\n");
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_closed_port_is_a_502() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (_proxy, front) = proxy_to(&[&url], |b| b).await;
    let (status, body) = get(&client(), &front.url()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("cannot connect"), "{body}");
}

/// Accepts one connection and reads a request head from it.
async fn accept_one_request(listener: &TcpListener) -> TcpStream {
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before a request head");
        got.extend_from_slice(&chunk[..n]);
    }
    stream
}

#[tokio::test]
async fn a_backend_stalling_mid_body_is_cut_off_after_the_body_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut stream = accept_one_request(&listener).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")
            .await
            .unwrap();
        // Half the body, then silence until the proxy hangs up.
        let _ = stream.read(&mut [0u8; 16]).await;
    });
    let (_proxy, front) = proxy_to(&[&url], |b| {
        b.response_body_timeout(Some(Duration::from_millis(300)))
    })
    .await;
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut got)).await;
    assert!(ended.is_ok(), "the client connection ends within 10 s");
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(
        got.ends_with("\r\n\r\nhello"),
        "half the body, then the end: {got}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// A client asks for a body of 1 GiB, takes the status line, then reads
/// `sip` bytes every 10 ms (or nothing, if 0) until the proxy hangs up.
/// Returns how long after the status line the backend's writes failed.
async fn big_download_cut_off(http: HttpConfig, sip: usize) -> Duration {
    const ANNOUNCED: usize = 1 << 30;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (outcome_tx, outcome_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut stream = accept_one_request(&listener).await;
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {ANNOUNCED}\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        // Bounded by the announced length; ends early when the proxy hangs up.
        let outcome = loop {
            if sent >= ANNOUNCED {
                break Ok(sent);
            }
            match stream.write_all(&chunk).await {
                Ok(()) => sent += chunk.len(),
                Err(_) => break Err(sent),
            }
        };
        let _ = outcome_tx.send(outcome);
    });
    let proxy = Proxy::builder(RoundRobin::new()).build().unwrap();
    proxy.add_backend(&url).unwrap();
    let front = crate::serve_front_with(proxy, http).await;
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut status = [0u8; 12];
    client.read_exact(&mut status).await.unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    let started = Instant::now();
    if sip > 0 {
        // Bounded: at most 10 s of sips.
        tokio::spawn(async move {
            let mut buf = vec![0; sip];
            for _ in 0..1_000 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                if matches!(client.read(&mut buf).await, Ok(0) | Err(_)) {
                    break;
                }
            }
        });
    } else {
        tokio::spawn(async move {
            // Holds the connection without reading until the proxy ends it.
            let _held = client;
            tokio::time::sleep(Duration::from_secs(15)).await;
        });
    }
    // The proxy gives up on the client, and on the backend's connection
    // with it.
    let outcome = tokio::time::timeout(Duration::from_secs(10), outcome_rx)
        .await
        .expect("the backend's writes fail within 10 s")
        .unwrap();
    let sent = outcome.expect_err("the backend could not send the whole body");
    assert!(sent < ANNOUNCED);
    started.elapsed()
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_the_write_timeout() {
    let mut http = HttpConfig::default();
    http.write_timeout = Some(Duration::from_millis(300));
    http.min_write_rate = None;
    big_download_cut_off(http, 0).await;
}

#[tokio::test]
async fn a_client_reading_a_few_bytes_at_a_time_is_cut_off_by_the_minimum_rate() {
    let mut http = HttpConfig::default();
    // The write timeout alone would keep this reader for 30 s at least.
    http.write_timeout = Some(Duration::from_secs(30));
    http.min_write_rate = Some(MinWriteRate::new(1_000_000, Duration::from_millis(300)));
    // 64 bytes every 10 ms: 6.4 kB/s, under the rate.
    let after = big_download_cut_off(http, 64).await;
    assert!(after < Duration::from_secs(10), "cut off after {after:?}");
}

#[tokio::test]
async fn a_slow_backend_is_a_504_after_the_response_timeout() {
    let backend = slow("late", Duration::from_secs(5)).await;
    let (_proxy, front) = proxy_to(&[&backend.url()], |b| {
        b.response_timeout(Some(Duration::from_millis(200)))
    })
    .await;
    let start = Instant::now();
    let (status, _) = get(&client(), &front.url()).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(start.elapsed() < Duration::from_secs(2));
}

/// A backend that accepts connections, reads a little and resets them
/// (RST). Counts the connections.
async fn resetting_backend() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                // Linger 0 turns the close into a reset (it never blocks).
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                drop(stream);
            });
        }
    });
    (url, accepted)
}

/// A backend counting the requests of each method it receives.
async fn counting_backend() -> (TestServer, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let gets = Arc::new(AtomicUsize::new(0));
    let posts = Arc::new(AtomicUsize::new(0));
    let (g, p) = (gets.clone(), posts.clone());
    let server = serve(
        "127.0.0.1:0",
        tower::service_fn(move |req: Request<RequestBody>| {
            let (g, p) = (g.clone(), p.clone());
            async move {
                if req.method() == http::Method::POST {
                    p.fetch_add(1, Ordering::Relaxed);
                } else {
                    g.fetch_add(1, Ordering::Relaxed);
                }
                let _ = req.into_body().collect().await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"good"))))
            }
        }),
    )
    .await;
    (server, gets, posts)
}

#[tokio::test]
async fn gets_are_retried_on_the_other_backend_and_posts_are_not_replayed() {
    let (bad, resets) = resetting_backend().await;
    let (good, gets, posts) = counting_backend().await;
    let (proxy, front) = proxy_to(&[&bad, &good.url()], |b| b).await;
    let client = client();

    for _ in 0..20 {
        let (status, body) = get(&client, &front.url()).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "good"));
    }
    assert_eq!(gets.load(Ordering::Relaxed), 20);
    assert!(
        resets.load(Ordering::Relaxed) >= 5,
        "the bad backend was tried"
    );

    let mut failed = 0;
    for _ in 0..10 {
        let req = Request::post(front.url()).body(full(b"order=1")).unwrap();
        let (status, _, _) = send(&client, req).await;
        match status {
            StatusCode::OK => {}
            StatusCode::BAD_GATEWAY => failed += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        failed, 5,
        "round robin sends every other POST to the bad backend"
    );
    assert_eq!(
        posts.load(Ordering::Relaxed),
        5,
        "a failed POST never reached the good backend"
    );
    let bad_backend = proxy.backends().get(&bad).unwrap();
    assert!(bad_backend.errors_total() >= 15);
}

#[tokio::test]
async fn retries_respect_the_budget() {
    let (bad, _) = resetting_backend().await;
    let (good, _, _) = counting_backend().await;
    // No budget: the GET that hits the bad backend fails.
    let (_proxy, front) = proxy_to(&[&bad, &good.url()], |b| b.retry_budget(None)).await;
    let (status, _) = get(&client(), &front.url()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn hundred_megabytes_stream_both_ways_with_bounded_memory() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let backend = serve(
        "127.0.0.1:0",
        tower::service_fn(|req: Request<RequestBody>| async move {
            if req.method() == http::Method::POST {
                // Count the upload without keeping it.
                let mut body = req.into_body();
                let mut total = 0u64;
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame.map(|f| f.into_data()) {
                        total += data.map_or(0, |d| d.len() as u64);
                    }
                }
                let text: TestBody = Full::new(Bytes::from(total.to_string()))
                    .map_err(|e| match e {})
                    .boxed();
                Ok::<_, Infallible>(Response::new(text))
            } else {
                Ok(Response::new(Generated::new(SIZE).boxed()))
            }
        }),
    )
    .await;
    let (_proxy, front) = proxy_to(&[&backend.url()], |b| b).await;
    let client = client();
    // Warm up allocator pools and connections before taking the baseline.
    let _ = get(&client, &format!("{}/warm", backend.url())).await;
    let baseline = rss_bytes();
    let mut peak = baseline;

    // Download.
    let resp = client
        .request(Request::get(front.url()).body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut received = 0u64;
    let mut next_sample = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.unwrap().data_ref() {
            received += data.len() as u64;
        }
        if received >= next_sample {
            peak = peak.max(rss_bytes());
            next_sample += 8 * 1024 * 1024;
        }
    }
    assert_eq!(received, SIZE);

    // Upload.
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            peak = peak.max(rss_bytes());
            tokio::time::sleep(Duration::from_millis(20)).await;
            if peak == u64::MAX {
                return peak;
            }
        }
    });
    let req = Request::post(front.url())
        .body(Generated::new(SIZE).boxed())
        .unwrap();
    let (status, _, body) = send(&client, req).await;
    sampler.abort();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, SIZE.to_string());
    peak = peak.max(rss_bytes());

    let growth = peak.saturating_sub(baseline);
    assert!(
        growth < 40 * 1024 * 1024,
        "RSS grew by {} MiB while streaming 2 × 100 MiB",
        growth / (1024 * 1024)
    );
}

/// A backend that accepts `Upgrade: echo` and then echoes bytes.
async fn upgrade_echo_backend() -> TestServer {
    serve(
        "127.0.0.1:0",
        tower::service_fn(|mut req: Request<RequestBody>| async move {
            let is_upgrade = req.headers().get("upgrade").is_some()
                && req.headers().get("connection").is_some_and(|v| {
                    v.to_str()
                        .unwrap_or("")
                        .to_ascii_lowercase()
                        .contains("upgrade")
                });
            if !is_upgrade {
                let mut resp = Response::new(Full::new(Bytes::from_static(b"upgrade required")));
                *resp.status_mut() = StatusCode::UPGRADE_REQUIRED;
                return Ok::<_, Infallible>(resp);
            }
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let mut io = hyper_util::rt::TokioIo::new(upgraded);
                    let mut buf = [0u8; 1024];
                    loop {
                        match io.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if io.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }
            });
            let resp = Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(Full::new(Bytes::new()))
                .unwrap();
            Ok(resp)
        }),
    )
    .await
}

#[tokio::test]
async fn websocket_upgrades_are_tunnelled_end_to_end() {
    let backend = upgrade_echo_backend().await;
    let (_proxy, front) = proxy_to(&[&backend.url()], |b| b).await;
    let mut stream = TcpStream::connect(front.addr).await.unwrap();
    stream
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: chat.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("response head in time")
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed early: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for message in [&b"hello"[..], b"through the proxy", &[0u8, 255, 1, 2]] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
            .await
            .expect("echo in time")
            .unwrap();
        assert_eq!(echoed, message);
    }
}

#[tokio::test]
async fn http2_upstreams_by_prior_knowledge() {
    let backend = serve(
        "127.0.0.1:0",
        tower::service_fn(|req: Request<RequestBody>| async move {
            let version = format!("{:?}", req.version());
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(version))))
        }),
    )
    .await;
    let (_proxy, front) = proxy_to(&[&backend.url()], |b| b.http2_only(true)).await;
    let client = client();
    for _ in 0..3 {
        assert_eq!(
            get(&client, &front.url()).await,
            (StatusCode::OK, "HTTP/2.0".to_owned())
        );
    }
    // The client side stays HTTP/1.1.
    let resp = client
        .request(Request::get(front.url()).body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_11);
}

#[tokio::test]
async fn at_the_edge_http2_backends_get_no_client_forwarding_fields_either() {
    let backend = echo_headers().await;
    let (_proxy, front) = proxy_to(&[&backend.url()], |b| b.http2_only(true)).await;
    let mut req = Request::get(front.url()).header("host", "www.foobar.com");
    for (name, value) in SPOOFED {
        req = req.header(*name, *value);
    }
    let (_, _, body) = send(&client_from(Some("127.0.0.9")), req.body(empty()).unwrap()).await;
    assert!(
        !body.contains("6.6.6.6"),
        "a spoofed address passed:\n{body}"
    );
    assert!(!body.contains("evil"), "a spoofed host passed:\n{body}");
    assert!(
        !body.contains("chosen"),
        "a chosen request id passed:\n{body}"
    );
    assert_eq!(header_lines(&body, "x-forwarded-for"), ["127.0.0.9"]);
    assert_eq!(header_lines(&body, "x-request-id").len(), 1);
}

#[tokio::test]
async fn http2_clients_are_proxied_to_http1_backends() {
    let backend = echo_headers().await;
    let (_proxy, front) = proxy_to(&[&backend.url()], |b| b).await;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    let h2: hyper_util::client::legacy::Client<_, TestBody> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(http);
    let req = Request::get(format!("{}/h2?x=1", front.url()))
        .header("te", "trailers")
        .body(empty())
        .unwrap();
    let resp = h2.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    // No connection-specific header may reach an HTTP/2 client.
    assert!(!resp.headers().contains_key("keep-alive"));
    assert!(!resp.headers().contains_key("connection"));
    assert_eq!(resp.headers()["via"], "1.1 foobar");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    // The :authority became Host; the hop to the backend is HTTP/1.1.
    assert_eq!(header_lines(&body, "host"), [front.addr.to_string()]);
    assert_eq!(header_lines(&body, "via"), ["2 foobar"]);
    assert_eq!(header_lines(&body, "te"), ["trailers"]);
}

/// A minimal HTTP/1.1 backend on a raw socket: `/empty` answers 204,
/// anything else `hello` (HEAD: the length only). With `close_each`, it
/// closes every connection after one response, without saying so, as a
/// backend's idle timeout does. Counts connections accepted and closed.
async fn raw_backend(close_each: bool) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (a, c) = (accepted.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::Relaxed);
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    let answer: &[u8] = if head.starts_with("GET /empty ") {
                        b"HTTP/1.1 204 No Content\r\n\r\n"
                    } else if head.starts_with("HEAD ") {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
                    };
                    if stream.write_all(answer).await.is_err() || close_each {
                        break;
                    }
                }
                let _ = stream.shutdown().await;
                c.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    (url, accepted, closed)
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let (backend, accepted, _) = raw_backend(false).await;
    let (_proxy, front) = proxy_to(&[&backend], |b| b).await;
    let client = client();
    for i in 0..30 {
        let (method, path, status, body) = match i % 3 {
            0 => ("GET", "/", StatusCode::OK, "hello"),
            1 => ("GET", "/empty", StatusCode::NO_CONTENT, ""),
            _ => ("HEAD", "/", StatusCode::OK, ""),
        };
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", front.url()))
            .body(empty())
            .unwrap();
        let (got, _, text) = send(&client, req).await;
        assert_eq!(
            (got, text.as_str()),
            (status, body),
            "request {i}: {method} {path}"
        );
    }
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        1,
        "one upstream connection served all 30 requests (bodies, no body, HEAD)"
    );
}

#[tokio::test]
async fn a_backend_closing_idle_connections_costs_no_request() {
    let (backend, accepted, closed) = raw_backend(true).await;
    // No proxy retries: only the pool may resend, and only what never left.
    let (_proxy, front) = proxy_to(&[&backend], |b| b.retry_budget(None)).await;
    let client = client();
    for i in 0..10 {
        let (status, body) = get(&client, &front.url()).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "hello"),
            "request {i}"
        );
        // The pooled connection is now closed by the backend.
        wait_until(
            Duration::from_secs(5),
            "the backend closed the connection",
            || closed.load(Ordering::Relaxed) > i,
        )
        .await;
    }
    assert_eq!(accepted.load(Ordering::Relaxed), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_a_bounded_set_of_upstream_connections() {
    const CLIENTS: usize = 32;
    const EACH: usize = 25;
    let (backend, accepted, _) = raw_backend(false).await;
    let (_proxy, front) = proxy_to(&[&backend], |b| b).await;
    let url = front.url();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = client();
                for i in 0..EACH {
                    let (status, body) = get(&client, &url).await;
                    assert_eq!(
                        (status, body.as_str()),
                        (StatusCode::OK, "hello"),
                        "request {i}"
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let opened = accepted.load(Ordering::Relaxed);
    assert!(
        opened <= 2 * CLIENTS,
        "{opened} upstream connections for {CLIENTS} concurrent clients and {} requests",
        CLIENTS * EACH
    );
}

#[tokio::test]
async fn a_connect_timeout_is_a_504() {
    // A listener that never accepts, with its accept queue filled: the
    // kernel then drops further SYNs, so connecting hangs.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        {
            fillers.push(stream);
        }
    }
    let (_proxy, front) = proxy_to(&[&format!("http://{addr}")], |b| {
        b.connect_timeout(Duration::from_millis(150))
            .retry_budget(None)
    })
    .await;
    let start = Instant::now();
    let (status, body) = get(&client(), &front.url()).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(body.contains("cannot connect"), "{body}");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn idle_upstream_connections_expire_after_the_idle_timeout() {
    let (backend, accepted, closed) = raw_backend(false).await;
    let idle = Duration::from_millis(100);
    let (_proxy, front) = proxy_to(&[&backend], |b| b.idle_timeout(idle)).await;
    let client = client();
    assert_eq!(get(&client, &front.url()).await.0, StatusCode::OK);
    assert_eq!(get(&client, &front.url()).await.0, StatusCode::OK);
    assert_eq!(accepted.load(Ordering::Relaxed), 1, "reused while fresh");
    // Let the pooled connection outlive the idle timeout.
    tokio::time::sleep(idle * 2).await;
    assert_eq!(get(&client, &front.url()).await.0, StatusCode::OK);
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        2,
        "the expired one is not reused"
    );
    wait_until(
        Duration::from_secs(5),
        "the expired connection closed",
        || closed.load(Ordering::Relaxed) >= 1,
    )
    .await;
}

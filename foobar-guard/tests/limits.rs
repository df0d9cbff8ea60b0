//! Connection limits, handshake rate limits and per-client rate limits on
//! real sockets.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use foobar_core::tls::DevCa;
use foobar_core::PlainTcp;
use foobar_guard::handshake_limit::HandshakeRateLimitLayer;
use foobar_guard::limit::ConnLimitLayer;
use foobar_guard::rate_limit::RateLimitLayer;
use foobar_guard::tls::{TlsConfig, TlsLayer};
use foobar_guard::{FirewallLayer, Rules, TrustedProxies};
use support::{closed_by_peer, connect_from, get_from, ip, send_raw, serve, App, Reply};
use tower::ServiceBuilder;

type Req = http::Request<http_body_util::Empty<bytes::Bytes>>;

const KEEP_ALIVE: &[u8] = b"GET /conn HTTP/1.1\r\nHost: t\r\n\r\n";

#[tokio::test]
async fn excess_connections_from_one_client_are_closed_at_once() {
    let limit = ConnLimitLayer::new(100).per_client(2);
    let server = serve(
        ServiceBuilder::new().layer(limit.clone()).service(PlainTcp),
        App,
    );
    // Two admitted keep-alive connections (each has had a response).
    let mut first = connect_from(ip("127.0.0.40"), server.addr).await;
    assert_eq!(send_raw(&mut first, KEEP_ALIVE).await.status(), Some(200));
    let mut second = connect_from(ip("127.0.0.40"), server.addr).await;
    assert_eq!(send_raw(&mut second, KEEP_ALIVE).await.status(), Some(200));
    assert_eq!(limit.open_connections(), 2);

    // The third from the same address is closed without a response...
    let mut third = connect_from(ip("127.0.0.40"), server.addr).await;
    assert_eq!(send_raw(&mut third, KEEP_ALIVE).await, Reply::Closed);
    // ...while another client is served.
    assert_eq!(
        get_from(ip("127.0.0.41"), server.addr, "/", "")
            .await
            .status(),
        Some(200)
    );

    // Closing one frees its place.
    drop(first);
    let deadline = Instant::now() + support::DEADLINE;
    while limit.open_connections() > 1 {
        assert!(Instant::now() < deadline, "the permit was never released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        get_from(ip("127.0.0.40"), server.addr, "/", "")
            .await
            .status(),
        Some(200)
    );
    assert_eq!(send_raw(&mut second, KEEP_ALIVE).await.status(), Some(200));
}

#[tokio::test]
async fn the_total_limit_closes_connections_from_anyone() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let limit = metrics::with_local_recorder(&recorder, || ConnLimitLayer::new(1));
    let server = serve(
        ServiceBuilder::new().layer(limit.clone()).service(PlainTcp),
        App,
    );
    let mut held = connect_from(ip("127.0.0.42"), server.addr).await;
    assert_eq!(send_raw(&mut held, KEEP_ALIVE).await.status(), Some(200));
    let mut other = connect_from(ip("127.0.0.43"), server.addr).await;
    assert!(
        closed_by_peer(&mut other).await,
        "the excess connection stayed open"
    );
    let text = metrics.render();
    assert!(
        text.contains("foobar_connections_refused_total{reason=\"total_limit\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_noisy_client_gets_429_while_another_gets_200() {
    // 5 requests at once, then one a minute: refills cannot blur the test.
    let http = ServiceBuilder::new()
        .layer(RateLimitLayer::with_period(Duration::from_secs(60), 5).unwrap())
        .service(App);
    let server = serve(PlainTcp, http);
    let mut noisy_statuses = Vec::new();
    for round in 0..20 {
        noisy_statuses.push(get_from(ip("127.0.0.60"), server.addr, "/", "").await);
        if round % 5 == 0 {
            let quiet = get_from(ip("127.0.0.61"), server.addr, "/", "").await;
            assert_eq!(quiet.status(), Some(200), "quiet client refused: {quiet:?}");
        }
    }
    let ok = noisy_statuses
        .iter()
        .filter(|r| r.status() == Some(200))
        .count();
    assert_eq!(ok, 5, "{noisy_statuses:?}");
    let limited = &noisy_statuses[5];
    assert_eq!(limited.status(), Some(429));
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=60).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    assert!(noisy_statuses[5..].iter().all(|r| r.status() == Some(429)));
}

#[tokio::test]
async fn clients_behind_a_trusted_proxy_have_their_own_buckets() {
    let http = ServiceBuilder::new()
        .layer(
            FirewallLayer::new(Rules::default())
                .trusted_proxies(TrustedProxies::parse("127.0.0.70").unwrap()),
        )
        .layer(RateLimitLayer::with_period(Duration::from_secs(60), 2).unwrap())
        .service(App);
    let server = serve(PlainTcp, http);
    let via = |client: &'static str| async move {
        let header = format!("X-Forwarded-For: {client}\r\n");
        get_from(ip("127.0.0.70"), server.addr, "/", &header)
            .await
            .status()
    };
    assert_eq!(via("198.51.100.1").await, Some(200));
    assert_eq!(via("198.51.100.1").await, Some(200));
    assert_eq!(via("198.51.100.1").await, Some(429));
    assert_eq!(via("198.51.100.2").await, Some(200));
    // IPv6 clients of one /64 share a bucket.
    assert_eq!(via("2001:db8:0:1::1").await, Some(200));
    assert_eq!(via("2001:db8:0:1::2").await, Some(200));
    assert_eq!(via("2001:db8:0:1::3").await, Some(429));
    assert_eq!(via("2001:db8:0:2::1").await, Some(200));
}

#[tokio::test]
async fn the_key_table_stays_bounded_under_a_flood_of_distinct_keys() {
    use tower::{Service, ServiceExt};
    let layer = RateLimitLayer::with_period(Duration::from_secs(60), 1)
        .unwrap()
        .key(|parts: &http::request::Parts| {
            parts.headers.get("x-key").map(|v| v.as_bytes().to_vec())
        })
        .max_keys(1_000);
    let mut service = ServiceBuilder::new().layer(layer.clone()).service(App);
    let mut peak = 0;
    for i in 0..20_000u32 {
        let req = http::Request::builder()
            .header("x-key", i.to_string())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = ServiceExt::<Req>::ready(&mut service)
            .await
            .unwrap()
            .call(req)
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "key {i} is new");
        peak = peak.max(layer.tracked_keys());
    }
    // Checked every 1024 requests: at most max_keys + 1024 at any time.
    assert!(peak <= 1_000 + 1_024, "peak {peak} keys");
    // Requests without a key are not limited.
    for _ in 0..5 {
        let req = http::Request::new(http_body_util::Empty::<bytes::Bytes>::new());
        let response = ServiceExt::<Req>::ready(&mut service)
            .await
            .unwrap()
            .call(req)
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

/// A TLS handshake and one request from `source`: the status, or the
/// error that ended the handshake.
async fn tls_get_from(
    client: Arc<rustls::ClientConfig>,
    source: std::net::IpAddr,
    server: std::net::SocketAddr,
) -> std::io::Result<Option<u16>> {
    let tcp = connect_from(source, server).await;
    let name = foobar_core::tls::server_name("localhost").unwrap();
    let mut tls = tokio::time::timeout(
        support::DEADLINE,
        tokio_rustls::TlsConnector::from(client).connect(name, tcp),
    )
    .await
    .expect("the handshake ends within the deadline")?;
    Ok(send_raw(
        &mut tls,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await
    .status())
}

#[tokio::test]
async fn a_client_over_its_handshake_rate_is_closed_before_the_handshake() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let limit = metrics::with_local_recorder(&recorder, || {
        HandshakeRateLimitLayer::per_second(2, 3).unwrap()
    });
    let ca = DevCa::new().unwrap();
    let identity = ca.server_cert(["localhost"]).unwrap().identity().unwrap();
    let tls = TlsConfig::builder().identity(identity).build().unwrap();
    let server = serve(
        ServiceBuilder::new()
            .layer(limit.clone())
            .layer(TlsLayer::new(tls))
            .service(PlainTcp),
        App,
    );
    let client = ca.client_tls().build().unwrap();
    let flooder = ip("127.0.0.46");

    // The burst is admitted and served...
    for _ in 0..3 {
        let served = tls_get_from(client.clone(), flooder, server.addr).await;
        assert_eq!(served.unwrap(), Some(200));
    }
    // ...the next connection is closed before a handshake...
    let refused = tls_get_from(client.clone(), flooder, server.addr).await;
    assert!(refused.is_err(), "{refused:?}");
    let text = metrics.render();
    assert!(
        text.contains("foobar_connections_refused_total{reason=\"handshake_rate\"} 1"),
        "{text}"
    );
    // ...while another client's handshakes go on...
    let other = tls_get_from(client.clone(), ip("127.0.0.47"), server.addr).await;
    assert_eq!(other.unwrap(), Some(200));
    assert_eq!(limit.tracked_clients(), 2);

    // ...and the flooder is admitted again once its bucket refills (two
    // tokens a second).
    let deadline = Instant::now() + support::DEADLINE;
    loop {
        match tls_get_from(client.clone(), flooder, server.addr).await {
            Ok(status) => {
                assert_eq!(status, Some(200));
                break;
            }
            Err(error) => assert!(Instant::now() < deadline, "never admitted again: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! Finding the client without foobar's server: the request-level layers
//! fail closed when no address is known, take an address the application
//! inserted, and (feature `axum`) find axum's `ConnectInfo`.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use foobar_guard::rate_limit::RateLimitLayer;
use foobar_guard::{ClientAddr, FirewallLayer, Rules, UnknownClient};
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use support::{get_from, ip, App, Reply};
use tokio::net::TcpListener;
use tower::{Layer, ServiceBuilder};

/// Serves `http` with plain hyper, which records no peer address anywhere,
/// until the test's runtime ends.
async fn serve_bare<S, B>(http: S) -> SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = TowerToHyperService::new(http.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn recorder() -> (PrometheusRecorder, PrometheusHandle) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    (recorder, handle)
}

fn unknown_count(metrics: &PrometheusHandle, layer: &str) -> u64 {
    let text = metrics.render();
    let prefix = format!("foobar_unknown_client_requests_total{{layer=\"{layer}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}

const GRPC: &str = "Content-Type: application/grpc\r\n";

#[tokio::test]
async fn the_firewall_refuses_requests_without_a_client_address() {
    let (recorder, metrics) = recorder();
    // Rules that allow everyone: the refusal is for the missing address.
    let firewall = metrics::with_local_recorder(&recorder, || FirewallLayer::new(Rules::default()));
    let addr = serve_bare(firewall.layer(App)).await;

    let reply = get_from(ip("127.0.0.1"), addr, "/client", "").await;
    assert_eq!(reply.status(), Some(500), "{reply:?}");
    let grpc = get_from(ip("127.0.0.1"), addr, "/client", GRPC).await;
    assert_eq!(grpc.status(), Some(200), "{grpc:?}");
    assert_eq!(
        grpc.header("grpc-status").as_deref(),
        Some("13"),
        "{grpc:?}"
    );
    assert_eq!(
        grpc.header("content-type").as_deref(),
        Some("application/grpc")
    );
    assert_eq!(unknown_count(&metrics, "firewall"), 2);

    // Allowing is an explicit choice.
    let open = FirewallLayer::new(Rules::default()).unknown_client(UnknownClient::Allow);
    let addr = serve_bare(open.layer(App)).await;
    let reply = get_from(ip("127.0.0.1"), addr, "/client", "").await;
    assert_eq!(reply.status(), Some(200), "{reply:?}");
}

#[tokio::test]
async fn the_rate_limiter_refuses_requests_without_a_client_address() {
    let (recorder, metrics) = recorder();
    let limit = metrics::with_local_recorder(&recorder, || {
        RateLimitLayer::per_second(1000, 1000).unwrap()
    });
    let addr = serve_bare(limit.layer(App)).await;
    for _ in 0..3 {
        let reply = get_from(ip("127.0.0.1"), addr, "/", "").await;
        assert_eq!(reply.status(), Some(500), "{reply:?}");
    }
    let grpc = get_from(ip("127.0.0.1"), addr, "/", GRPC).await;
    assert_eq!(
        grpc.header("grpc-status").as_deref(),
        Some("13"),
        "{grpc:?}"
    );
    assert_eq!(unknown_count(&metrics, "rate_limit"), 4);

    let open = RateLimitLayer::per_second(1, 1)
        .unwrap()
        .unknown_client(UnknownClient::Allow);
    let addr = serve_bare(open.layer(App)).await;
    for _ in 0..3 {
        let reply = get_from(ip("127.0.0.1"), addr, "/", "").await;
        assert_eq!(reply.status(), Some(200), "unlimited by choice: {reply:?}");
    }

    // A key of the application's own that finds nothing leaves the request
    // unlimited, as documented.
    let by_header = RateLimitLayer::per_second(1, 1)
        .unwrap()
        .key(|parts: &http::request::Parts| parts.headers.get("x-api-key").cloned());
    let addr = serve_bare(by_header.layer(App)).await;
    for _ in 0..3 {
        assert_eq!(
            get_from(ip("127.0.0.1"), addr, "/", "").await.status(),
            Some(200)
        );
    }
}

#[tokio::test]
async fn an_address_the_application_inserted_is_the_client() {
    let rules: Rules = "deny 192.0.2.66\n".parse().unwrap();
    for (client, status) in [("192.0.2.66", 403), ("192.0.2.1", 200)] {
        let addr = ip(client);
        // What an application that knows its client would do.
        let http = ServiceBuilder::new()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ClientAddr(addr));
                req
            })
            .layer(FirewallLayer::new(rules.clone()))
            .layer(RateLimitLayer::with_period(Duration::from_secs(60), 1).unwrap())
            .service(App);
        let addr = serve_bare(http).await;
        let reply = get_from(ip("127.0.0.1"), addr, "/client", "").await;
        assert_eq!(reply.status(), Some(status), "{client}: {reply:?}");
        if status == 200 {
            assert_eq!(reply.body(), client);
            // The limit counts the inserted address: one request a minute.
            let again = get_from(ip("127.0.0.1"), addr, "/client", "").await;
            assert_eq!(again.status(), Some(429), "{again:?}");
        }
    }
}

#[cfg(feature = "axum")]
mod axum_serve {
    use super::*;
    use axum::routing::get;
    use axum::Router;

    async fn client(req: axum::extract::Request) -> String {
        ClientAddr::of(&req)
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    /// The case that let everything through before: axum's own server, a
    /// deny rule and a limit of one request a second.
    #[tokio::test]
    async fn axum_connect_info_is_the_client() {
        let (recorder, metrics) = recorder();
        let (firewall, limit) = metrics::with_local_recorder(&recorder, || {
            (
                FirewallLayer::new("deny 127.0.0.9\ndefault allow\n".parse().unwrap()),
                RateLimitLayer::per_second(1, 1).unwrap(),
            )
        });
        let app = Router::new()
            .route("/client", get(client))
            .layer(limit)
            .layer(firewall);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let with_info = app.clone();
        tokio::spawn(async move {
            axum::serve(
                listener,
                with_info.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });

        let denied = get_from(ip("127.0.0.9"), addr, "/client", "").await;
        assert_eq!(denied.status(), Some(403), "{denied:?}");
        let first = get_from(ip("127.0.0.1"), addr, "/client", "").await;
        assert_eq!(first.status(), Some(200), "{first:?}");
        assert_eq!(first.body(), "127.0.0.1");
        let second = get_from(ip("127.0.0.1"), addr, "/client", "").await;
        assert_eq!(second.status(), Some(429), "{second:?}");
        let other = get_from(ip("127.0.0.2"), addr, "/client", "").await;
        assert_eq!(other.status(), Some(200), "a bucket per client: {other:?}");

        // Served without connect info, the same app refuses everything.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bare = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let reply = get_from(ip("127.0.0.1"), bare, "/client", "").await;
        assert_eq!(reply.status(), Some(500), "{reply:?}");
        assert_eq!(unknown_count(&metrics, "firewall"), 1);
        assert!(matches!(reply, Reply::Response { .. }));
    }
}

//! The admin listener on a real loopback socket: routes, readiness, the
//! bearer token, `/status.json`.

#[path = "monitor_support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use foobar_core::admin::Admin;
use foobar_core::metrics::PrometheusExporter;
use foobar_core::monitor::Monitor;
use foobar_core::status::{Format, Health, Snapshot, StatusSource, Table, View};
use foobar_core::Shutdown;
use http::StatusCode;
use support::{get, serve_admin, try_request, wait_for};

/// A component whose readiness the test switches, with one table.
struct Edge {
    ready: AtomicBool,
}

impl StatusSource for Edge {
    fn name(&self) -> &str {
        "edge"
    }
    fn snapshot(&self) -> Snapshot {
        let health = if self.ready.load(Ordering::Relaxed) {
            Health::Up
        } else {
            Health::Down
        };
        let data = serde_json::json!({
            "links": [{ "id": "127.0.0.1:8081", "health": health }],
        });
        let view = View::new().table(
            Table::new("links", "/links")
                .key("/id")
                .health("/health")
                .column("link", "/id", Format::Text)
                .column("health", "/health", Format::Health),
        );
        Snapshot::new("edge router", &data)
            .health(health)
            .view(view)
    }
    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

#[tokio::test]
async fn routes_readiness_and_status_json() {
    let exporter = PrometheusExporter::install().expect("recorder");
    let shutdown = Shutdown::new();
    let monitor = Monitor::builder()
        .interval(Duration::from_millis(200))
        .start(&shutdown);
    let edge = Arc::new(Edge {
        ready: AtomicBool::new(true),
    });
    let admin = Admin::new(exporter)
        .with_monitor(monitor.clone())
        .with_shared_source(edge.clone());
    let addr = serve_admin(admin, &shutdown);

    let (status, _, body) = get(addr, "/healthz", &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    let (status, _, body) = get(addr, "/readyz", &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));

    edge.ready.store(false, Ordering::Relaxed);
    let (status, _, body) = get(addr, "/readyz", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "not ready: edge\n");

    // Host metrics reach /metrics once the monitor has sampled.
    wait_for(
        "host metrics on /metrics",
        Duration::from_secs(10),
        || async {
            let (_, _, text) = get(addr, "/metrics", &[]).await;
            (text.contains("host_memory_total_bytes") && text.contains("process_open_fds"))
                .then_some(())
        },
    )
    .await;

    let json = wait_for(
        "a sampled host in /status.json",
        Duration::from_secs(10),
        || async {
            let (status, headers, body) = get(addr, "/status.json", &[]).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(headers["content-type"], "application/json");
            let json: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
            (!json["monitor"]["host"].is_null()).then_some(json)
        },
    )
    .await;
    assert_eq!(json["ready"], false);
    assert_eq!(json["sources"][0]["name"], "edge");
    assert_eq!(json["sources"][0]["ready"], false);
    let snapshot = &json["sources"][0]["snapshot"];
    assert_eq!(snapshot["kind"], "edge router");
    assert_eq!(snapshot["health"], "down");
    assert_eq!(snapshot["data"]["links"][0]["health"], "down");
    assert_eq!(snapshot["view"]["tables"][0]["rows"], "/links");
    assert!(
        json["monitor"]["host"]["memory_total_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );

    let (status, headers, body) = get(addr, "/status", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(body.contains("<title>foobar status</title>"));
    assert!(
        !body.contains("http://") && !body.contains("https://"),
        "the page loads nothing from elsewhere"
    );

    let (status, _, _) = get(addr, "/nope", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, headers, _) = try_request(addr, http::Method::POST, "/metrics", &[])
        .await
        .expect("POST");
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, HEAD");
    let (status, headers, body) = try_request(addr, http::Method::HEAD, "/readyz", &[])
        .await
        .expect("HEAD");
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "")
    );
    assert_eq!(headers["cache-control"], "no-store");

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), monitor.stopped())
        .await
        .expect("the monitor stops on shutdown");
}

#[tokio::test]
async fn bearer_token_guards_metrics_and_status_json() {
    let exporter = PrometheusExporter::install().expect("recorder");
    let shutdown = Shutdown::new();
    let admin = Admin::new(exporter).bearer_token("let-me-in");
    let addr = serve_admin(admin, &shutdown);

    for path in ["/metrics", "/status.json"] {
        let (status, headers, _) = get(addr, path, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} without a token");
        assert_eq!(headers["www-authenticate"], "Bearer");
        let (status, _, _) = get(addr, path, &[("authorization", "Bearer let-me-i")]).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} with a wrong token"
        );
        let (status, _, _) = get(addr, path, &[("authorization", "Basic let-me-in")]).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{path} with another scheme"
        );
        let (status, _, _) = get(addr, path, &[("authorization", "Bearer let-me-in")]).await;
        assert_eq!(status, StatusCode::OK, "{path} with the token");
    }
    // Probes and the page shell (it holds no data) stay open.
    for path in ["/healthz", "/readyz", "/status"] {
        let (status, _, _) = get(addr, path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    shutdown.trigger();
}

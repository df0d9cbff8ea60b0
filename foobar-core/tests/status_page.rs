//! The status page in a real headless Chromium: it loads `/status`, polls
//! `/status.json`, and renders the registered sources; a screenshot is
//! saved under `target/test-output/`.

#[path = "monitor_support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foobar_core::admin::Admin;
use foobar_core::metrics::PrometheusExporter;
use foobar_core::monitor::Monitor;
use foobar_core::status::{Format, Health, Snapshot, StatusEvent, StatusSource, Table, View};
use foobar_core::Shutdown;
use serde_json::json;
use support::{chromium, serve_admin, test_output_dir, wait_for};

/// A load balancer in a known state, its counters growing with time so the
/// page has rates to derive.
struct Edge {
    started: Instant,
}

impl StatusSource for Edge {
    fn name(&self) -> &str {
        "edge-lb"
    }
    fn snapshot(&self) -> Snapshot {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let backend = |id: &str, health: Health, rps: u64, err_per_mille: u64, p99: Option<f64>| {
            json!({
                "id": id,
                "health": health,
                "in_flight": rps / 50,
                "requests_total": 10_000 + ms * rps / 1000,
                "errors_total": 20 + ms * rps * err_per_mille / 1_000_000,
                "latency_p99_seconds": p99,
            })
        };
        let data = json!({
            "policy": "p2c_ewma",
            "backends": [
                backend("10.0.0.11:8080", Health::Up, 420, 2, Some(0.0123)),
                backend("10.0.0.12:8080", Health::Up, 380, 1, Some(0.0141)),
                backend("10.0.0.13:8080", Health::Down, 0, 0, None),
                backend("10.0.0.14:8080", Health::Ejected, 0, 0, Some(0.950)),
            ],
        });
        let view = View::new().fact("policy", "/policy", Format::Text).table(
            Table::new("backends", "/backends")
                .key("/id")
                .health("/health")
                .column("backend", "/id", Format::Text)
                .column("health", "/health", Format::Health)
                .column("in flight", "/in_flight", Format::Integer)
                .column("req/s", "/requests_total", Format::PerSecond)
                .column(
                    "errors",
                    "/errors_total",
                    Format::share_of("/requests_total"),
                )
                .column("p99", "/latency_p99_seconds", Format::Seconds)
                .column("requests", "/requests_total", Format::Integer)
                .column("recent req/s", "/requests_total", Format::RateHistory),
        );
        Snapshot::new("load balancer", &data)
            .health(Health::Degraded)
            .events(vec![
                StatusEvent::now("down", "10.0.0.13:8080 failed 3 health checks"),
                StatusEvent::now(
                    "ejected",
                    "10.0.0.14:8080 ejected for 30 s after 5 consecutive 5xx",
                ),
            ])
            .view(view)
    }
}

/// A database pool after a failover; its query counters grow with time.
struct Orders {
    started: Instant,
}

impl StatusSource for Orders {
    fn name(&self) -> &str {
        "orders-db"
    }
    fn snapshot(&self) -> Snapshot {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let host = |id: &str, role: &str, health: Health, lag: Option<f64>, in_use: u64| {
            json!({
                "id": id,
                "writer": id == "127.0.0.1:3307",
                "role": role,
                "health": health,
                "lag_seconds": lag,
                "pool_size": 16,
                "pool_in_use": in_use,
                "queries_total": 123_456 + in_use * ms / 100,
            })
        };
        let data = json!({
            "writer": "127.0.0.1:3307",
            "failovers_total": 1,
            "hosts": [
                host("127.0.0.1:3306", "unknown", Health::Down, None, 0),
                host("127.0.0.1:3307", "primary", Health::Up, None, 9),
                host("127.0.0.1:3308", "replica", Health::Up, Some(0.4), 4),
                host("127.0.0.1:3309", "replica", Health::Shunned, Some(42.0), 0),
            ],
        });
        let view = View::new()
            .fact("writer", "/writer", Format::Text)
            .fact("failovers", "/failovers_total", Format::Integer)
            .table(
                Table::new("hosts", "/hosts")
                    .key("/id")
                    .health("/health")
                    .column("host", "/id", Format::Text)
                    .column("writer", "/writer", Format::Flag)
                    .column("role", "/role", Format::Tag)
                    .column("health", "/health", Format::Health)
                    .column("lag", "/lag_seconds", Format::Seconds)
                    .column("pool in use", "/pool_in_use", Format::fill_of("/pool_size"))
                    .column("queries/s", "/queries_total", Format::PerSecond)
                    .column("recent queries/s", "/queries_total", Format::RateHistory),
            );
        Snapshot::new("database", &data)
            .health(Health::Degraded)
            .events(vec![StatusEvent::now(
                "failover",
                "127.0.0.1:3306 unreachable; promoted 127.0.0.1:3307",
            )])
            .view(view)
    }
}

/// Anything else an application reports, without a view.
struct CertReload;

impl StatusSource for CertReload {
    fn name(&self) -> &str {
        "cert-reload"
    }
    fn snapshot(&self) -> Snapshot {
        Snapshot::new("custom", &json!({ "certificates": 2, "last_reload": "ok" }))
            .health(Health::Up)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_backends_and_db_hosts_in_chromium() {
    let exporter = PrometheusExporter::install().expect("recorder");
    let shutdown = Shutdown::new();
    let monitor = Monitor::builder()
        .interval(Duration::from_millis(250))
        .start(&shutdown);
    // Traffic on a "web" service for the rates table: 40 requests every
    // 100 ms (one in fifty failing), for at most 30 s.
    let web = monitor.rates().service("web");
    let traffic = tokio::spawn(async move {
        for tick in 0..300u32 {
            for i in 0..40u32 {
                web.record((tick * 40 + i) % 50 == 0);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let admin = Admin::new(exporter)
        .with_monitor(monitor.clone())
        .with_shared_source(Arc::new(Edge {
            started: Instant::now(),
        }))
        .with_source(Orders {
            started: Instant::now(),
        })
        .with_source(CertReload);
    let addr = serve_admin(admin, &shutdown);
    // Some history for the sparklines before the page first loads.
    wait_for("six monitor samples", Duration::from_secs(10), || async {
        (monitor.snapshot().samples >= 6).then_some(())
    })
    .await;
    let url = format!("http://{addr}/status");

    // One poll (the page polls every 1.5 s): rates and sparklines come
    // from the server's samples, not from polls the page has yet to make.
    let (dom, stderr) = chromium(&[
        "--dump-dom".into(),
        "--virtual-time-budget=1000".into(),
        url.clone(),
    ])
    .await;
    assert!(
        dom.contains("data-rendered=\"true\""),
        "page never rendered data:\n{dom}\n{stderr}"
    );
    let busy = row(&dom, "10.0.0.11:8080");
    let per_second: f64 = cell(busy, "req/s")
        .parse()
        .unwrap_or_else(|_| panic!("{busy}"));
    assert!((300.0..600.0).contains(&per_second), "{busy}");
    assert!(spark_points(cell(busy, "recent req/s")) >= 5, "{busy}");
    let replica = row(&dom, "127.0.0.1:3308");
    assert!(
        spark_points(cell(replica, "recent queries/s")) >= 5,
        "{replica}"
    );
    let web = dom
        .find(r#"data-service="web""#)
        .map(|start| &dom[start..])
        .unwrap_or_else(|| panic!("no web service row:\n{dom}"));
    assert!(spark_points(web) >= 5, "{web}");

    let (dom, stderr) = chromium(&[
        "--dump-dom".into(),
        "--virtual-time-budget=5000".into(),
        url.clone(),
    ])
    .await;
    assert!(
        dom.contains("data-rendered=\"true\""),
        "page never rendered data:\n{dom}\n{stderr}"
    );
    for expected in [
        r#"data-row="10.0.0.11:8080" data-health="up""#,
        r#"data-row="10.0.0.12:8080" data-health="up""#,
        r#"data-row="10.0.0.13:8080" data-health="down" class="bad""#,
        r#"data-row="10.0.0.14:8080" data-health="ejected" class="bad""#,
        r#"data-row="127.0.0.1:3306" data-health="down""#,
        r#"data-row="127.0.0.1:3307" data-health="up""#,
        r#"data-row="127.0.0.1:3309" data-health="shunned""#,
        r#"data-label="role"><span class="tag">primary</span>"#,
        r#"data-label="lag">42.0 s</td>"#,
        r#"data-label="lag">400.0 ms</td>"#,
        r#"data-label="p99">12.3 ms</td>"#,
        r#"data-label="pool in use"><span class="bar"><span style="width:56%"></span></span>9/16</td>"#,
        r#"data-source="edge-lb" data-kind="load balancer" data-health="degraded""#,
        r#"data-source="cert-reload" data-kind="custom""#,
        r#""last_reload": "ok""#,
        r#"data-event="failover""#,
        r#"data-event="ejected""#,
        r#"data-service="web""#,
        r#"id="host-cpu""#,
        r#"id="host-memory""#,
        "p2c_ewma",
        "<polyline",
    ] {
        assert!(
            dom.contains(expected),
            "{expected} missing from the rendered page:\n{dom}"
        );
    }

    let shot = test_output_dir().join("status_page.png");
    let _ = std::fs::remove_file(&shot);
    let (_, stderr) = chromium(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,900".into(),
        "--virtual-time-budget=5000".into(),
        url,
    ])
    .await;
    assert_png(&shot, &stderr);
    traffic.abort();
    shutdown.trigger();
}

/// The `<tr>` of the table row named `key`.
fn row<'a>(dom: &'a str, key: &str) -> &'a str {
    let start = dom
        .find(&format!(r#"data-row="{key}""#))
        .unwrap_or_else(|| panic!("no row {key}:\n{dom}"));
    let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

/// The inner HTML of the cell labelled `label` in `row`.
fn cell<'a>(row: &'a str, label: &str) -> &'a str {
    let marker = format!(r#"data-label="{label}">"#);
    let start = row
        .find(&marker)
        .unwrap_or_else(|| panic!("no {label} cell in {row}"))
        + marker.len();
    let end = row[start..].find("</td>").map_or(row.len(), |e| start + e);
    &row[start..end]
}

/// How many points the first sparkline in `html` draws.
fn spark_points(html: &str) -> usize {
    let marker = r#"data-points=""#;
    html.find(marker)
        .and_then(|start| {
            let rest = &html[start + marker.len()..];
            rest[..rest.find('"')?].parse().ok()
        })
        .unwrap_or(0)
}

fn assert_png(path: &Path, stderr: &str) {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{stderr}", path.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 20_000,
        "a suspiciously small screenshot ({} bytes)",
        bytes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_polls_with_the_token_from_its_fragment() {
    let exporter = PrometheusExporter::install().expect("recorder");
    let shutdown = Shutdown::new();
    let admin = Admin::new(exporter)
        .with_source(Orders {
            started: Instant::now(),
        })
        .bearer_token("page-token");
    let addr = serve_admin(admin, &shutdown);

    // Without the token the page asks for it and shows no data.
    let (dom, stderr) = chromium(&[
        "--dump-dom".into(),
        "--virtual-time-budget=3000".into(),
        format!("http://{addr}/status"),
    ])
    .await;
    assert!(
        dom.contains("token-form\" class=\"card\" style=\"display: block;\""),
        "{dom}\n{stderr}"
    );
    assert!(!dom.contains("data-rendered=\"true\""), "{dom}");

    // With `#token=` it polls with `Authorization: Bearer` and renders.
    let (dom, stderr) = chromium(&[
        "--dump-dom".into(),
        "--virtual-time-budget=3000".into(),
        format!("http://{addr}/status#token=page-token"),
    ])
    .await;
    assert!(dom.contains("data-rendered=\"true\""), "{dom}\n{stderr}");
    assert!(
        dom.contains(r#"data-row="127.0.0.1:3307" data-health="up""#),
        "{dom}"
    );
    shutdown.trigger();
}

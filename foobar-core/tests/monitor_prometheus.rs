//! A real Prometheus server (Debian `prometheus`) scrapes the admin
//! endpoint, through its bearer token, and a PromQL query through its HTTP
//! API returns the number of requests the application served; every series
//! carries its help text, and the process's CPU time keeps its fractions.

#[path = "monitor_support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use foobar_core::admin::Admin;
use foobar_core::metrics::{MetricsLayer, PrometheusExporter};
use foobar_core::monitor::Monitor;
use foobar_core::{Server, Shutdown};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use support::{
    families_without_help, free_port, get, require_binary, sample_text, serve_admin, temp_dir,
    try_get, wait_for, ChildGuard,
};
use tower::ServiceBuilder;

const TOKEN: &str = "scrape-token-1";

/// The PromQL `query`'s single value, if the result holds one.
async fn query_value(prometheus: SocketAddr, query: &str) -> Option<String> {
    let path = format!("/api/v1/query?query={}", percent_encode(query));
    let (status, _, body) = try_get(prometheus, &path, &[]).await.ok()?;
    if status != StatusCode::OK {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    json["data"]["result"][0]["value"][1]
        .as_str()
        .map(str::to_owned)
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_admin_endpoint() {
    let binary = require_binary("prometheus", "prometheus");
    let exporter = PrometheusExporter::install().expect("recorder");
    let shutdown = Shutdown::new();

    let hello = tower::service_fn(|_req: Request<foobar_core::RequestBody>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello\n"))))
    });
    let web = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .shutdown(shutdown.clone())
        .build()
        .unwrap();
    let web_addr = web.local_addr();
    tokio::spawn(
        web.serve(
            ServiceBuilder::new()
                .layer(MetricsLayer::new("web"))
                .service(hello),
        ),
    );
    let monitor = Monitor::start(&shutdown);
    let admin = Admin::new(exporter)
        .with_monitor(monitor.clone())
        .bearer_token(TOKEN);
    let admin_addr = serve_admin(admin, &shutdown);

    for _ in 0..25 {
        let (status, _, _) = get(web_addr, "/", &[]).await;
        assert_eq!(status, StatusCode::OK);
    }

    let dir = temp_dir("prometheus");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: foobar\n    scrape_interval: 1s\n    scrape_timeout: 1s\n\
             \x20   authorization:\n      credentials: {TOKEN}\n\
             \x20   static_configs:\n      - targets: ['{admin_addr}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let prometheus_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut prometheus = ChildGuard::spawn(
        "prometheus",
        Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prometheus_addr}"))
            .arg("--log.level=warn"),
        &dir.join("prometheus.log"),
    );

    let count = wait_for(
        "Prometheus to report 25 requests",
        Duration::from_secs(60),
        || async {
            let value = query_value(
                prometheus_addr,
                r#"sum(http_server_requests_total{job="foobar",service="web",method="GET",status="2xx"})"#,
            )
            .await?;
            (value == "25").then_some(value)
        },
    )
    .await;
    assert_eq!(count, "25");
    let up = query_value(prometheus_addr, r#"up{job="foobar"}"#).await;
    assert_eq!(
        up.as_deref(),
        Some("1"),
        "the scrape with the bearer token succeeds"
    );
    // Host and process metrics arrive with the same scrape.
    for query in [
        r#"host_memory_total_bytes{job="foobar"} > 0"#,
        r#"process_resident_memory_bytes{job="foobar"} > 0"#,
        r#"count(host_cpu_core_usage_ratio{job="foobar"})"#,
    ] {
        wait_for(query, Duration::from_secs(20), || {
            query_value(prometheus_addr, query)
        })
        .await;
    }

    // Every series on /metrics has a `# HELP`, and Prometheus has the text.
    let auth = format!("Bearer {TOKEN}");
    let (_, _, text) = get(admin_addr, "/metrics", &[("authorization", &auth)]).await;
    assert_eq!(families_without_help(&text), Vec::<String>::new(), "{text}");
    let help = wait_for(
        "Prometheus to know the help text",
        Duration::from_secs(20),
        || async {
            let (_, _, body) = try_get(
                prometheus_addr,
                "/api/v1/metadata?metric=http_server_requests_total",
                &[],
            )
            .await
            .ok()?;
            let json: serde_json::Value = serde_json::from_str(&body).ok()?;
            json["data"]["http_server_requests_total"][0]["help"]
                .as_str()
                .map(str::to_owned)
        },
    )
    .await;
    assert!(help.starts_with("HTTP requests answered"), "{help}");

    // The process's CPU time in seconds with their fractions, as the
    // monitor read it, on /metrics and in Prometheus.
    let (exported, sampled) = wait_for(
        "a fractional process_cpu_seconds_total matching the monitor",
        Duration::from_secs(20),
        || async {
            let (_, _, text) = get(admin_addr, "/metrics", &[("authorization", &auth)]).await;
            let exported = sample_text(&text, "process_cpu_seconds_total")?.to_owned();
            let sampled = monitor.snapshot().process?.cpu_seconds_total;
            let value: f64 = exported.parse().ok()?;
            (exported.contains('.') && (value - sampled).abs() < 1e-9).then_some((value, sampled))
        },
    )
    .await;
    assert!(
        exported > 0.0 && exported.fract() != 0.0,
        "{exported} vs {sampled}"
    );
    let scraped = wait_for(
        "Prometheus to store a fractional CPU time",
        Duration::from_secs(30),
        || async {
            let value = query_value(
                prometheus_addr,
                r#"process_cpu_seconds_total{job="foobar"}"#,
            )
            .await?;
            value.contains('.').then_some(value)
        },
    )
    .await;
    assert!(scraped.parse::<f64>().is_ok_and(|v| v > 0.0), "{scraped}");

    prometheus.stop();
    shutdown.trigger();
    let _ = std::fs::remove_dir_all(&dir);
}

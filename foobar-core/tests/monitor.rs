//! The monitor: host and process sampling, and request rates fed by the
//! metrics layer of a real server.

#[path = "monitor_support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use foobar_core::admin::Admin;
use foobar_core::metrics::{MetricsLayer, PrometheusExporter};
use foobar_core::monitor::Monitor;
use foobar_core::{Server, Shutdown};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use support::{get, serve_admin, wait_for};
use tower::ServiceBuilder;

#[tokio::test]
async fn host_and_process_metrics_are_sampled_and_published() {
    let exporter = PrometheusExporter::install().expect("recorder");
    let shutdown = Shutdown::new();
    let monitor = Monitor::builder()
        .interval(Duration::from_millis(200))
        .start(&shutdown);

    let snapshot = wait_for("two samples", Duration::from_secs(10), || async {
        let s = monitor.snapshot();
        (s.samples >= 2 && s.host.is_some()).then_some(s)
    })
    .await;
    let host = snapshot.host.expect("host sampled");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(host.cpu_core_usage_ratio.len(), cores);
    assert!((0.0..=1.0).contains(&host.cpu_usage_ratio), "{host:?}");
    assert!(host.memory_total_bytes > 0 && host.memory_used_bytes <= host.memory_total_bytes);
    assert!(host.load_average.iter().all(|l| *l >= 0.0));
    let process = snapshot.process.expect("process sampled");
    assert!(process.resident_memory_bytes > 1024 * 1024, "{process:?}");
    assert!(process.open_fds.is_some_and(|n| n >= 3), "{process:?}");
    assert!(process.threads.is_some_and(|n| n >= 1), "{process:?}");
    assert!(process.start_time_seconds > 1_600_000_000, "{process:?}");
    assert!(!snapshot.cpu_history.is_empty() && !snapshot.memory_history.is_empty());

    let text = exporter.render();
    for name in [
        "host_cpu_usage_ratio ",
        "host_cpu_core_usage_ratio{core=\"0\"}",
        "host_memory_available_bytes ",
        "host_load1 ",
        "host_network_receive_bytes_total{interface=\"lo\"}",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_threads ",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), monitor.stopped())
        .await
        .expect("the sampling task stops on shutdown");
    assert!(monitor.is_stopped());
}

#[tokio::test]
async fn request_rates_come_from_the_metrics_layer() {
    let exporter = PrometheusExporter::install().expect("recorder");
    let shutdown = Shutdown::new();
    let monitor = Monitor::builder()
        .interval(Duration::from_millis(200))
        .host_metrics(false)
        .start(&shutdown);

    let app = tower::service_fn(|req: Request<foobar_core::RequestBody>| async move {
        let status = if req.uri().path() == "/fail" {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        };
        let mut response = Response::new(Full::new(Bytes::from_static(b"hi\n")));
        *response.status_mut() = status;
        Ok::<_, Infallible>(response)
    });
    let web = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .shutdown(shutdown.clone())
        .build()
        .unwrap();
    let web_addr = web.local_addr();
    let layer = MetricsLayer::new("web").with_rates(monitor.rates());
    tokio::spawn(web.serve(ServiceBuilder::new().layer(layer).service(app)));
    let admin_addr = serve_admin(
        Admin::new(exporter).with_monitor(monitor.clone()),
        &shutdown,
    );

    // A sample at zero first, so the windows span every request below.
    let samples = monitor.snapshot().samples;
    wait_for(
        "a sample of the idle service",
        Duration::from_secs(10),
        || async { (monitor.snapshot().samples > samples).then_some(()) },
    )
    .await;
    for i in 0..40 {
        let path = if i % 4 == 0 { "/fail" } else { "/" };
        get(web_addr, path, &[]).await;
    }

    let web_rates = wait_for("rates of 40 requests", Duration::from_secs(10), || async {
        let (_, _, body) = get(admin_addr, "/status.json", &[]).await;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let web = json["monitor"]["services"]
            .as_array()?
            .iter()
            .find(|s| s["service"] == "web")?
            .clone();
        // Totals are live; the windows move on the next sample.
        let sampled_all = (web["error_ratio_1m"].as_f64()? - 0.25).abs() < 1e-9;
        (web["requests_total"] == 40 && sampled_all && web["qps_1m"].as_f64()? > 0.0).then_some(web)
    })
    .await;
    assert_eq!(web_rates["errors_total"], 10);
    let ratio = web_rates["error_ratio_1m"].as_f64().unwrap();
    assert!((ratio - 0.25).abs() < 1e-9, "{web_rates}");
    assert!(web_rates["qps_history"]
        .as_array()
        .is_some_and(|h| !h.is_empty()));

    let (_, _, metrics) = get(admin_addr, "/metrics", &[]).await;
    assert!(
        metrics.contains("http_server_requests_per_second{service=\"web\",window=\"1m\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("http_server_error_ratio{service=\"web\",window=\"5m\"} 0.25"),
        "{metrics}"
    );
    shutdown.trigger();
}

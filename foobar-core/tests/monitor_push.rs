//! The push client against a real Pushgateway (Debian
//! `prometheus-pushgateway`): pushes arrive, a dead gateway neither blocks
//! the application nor grows the client's queue, and pushes resume when the
//! gateway comes back.

#[path = "monitor_support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foobar_core::metrics::{MetricsLayer, PrometheusExporter};
use foobar_core::monitor::{Monitor, Push, PushTarget};
use foobar_core::{Server, Shutdown};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use support::{free_port, get, require_binary, temp_dir, try_get, wait_for, ChildGuard};
use tower::ServiceBuilder;

fn start_gateway(binary: &Path, addr: SocketAddr, log: &Path) -> ChildGuard {
    ChildGuard::spawn(
        "prometheus-pushgateway",
        Command::new(binary).arg(format!("--web.listen-address={addr}")),
        log,
    )
}

/// The gateway's exposition line for our marker in the group, if present.
async fn marker_line(gateway: SocketAddr) -> Option<String> {
    let (status, _, body) = try_get(gateway, "/metrics", &[]).await.ok()?;
    if status != StatusCode::OK {
        return None;
    }
    body.lines()
        .find(|l| l.starts_with("push_marker_total{") && l.contains(r#"job="foobar_push_test""#))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_reach_the_gateway_survive_its_outage_and_resume() {
    let binary = require_binary("prometheus-pushgateway", "prometheus-pushgateway");
    let exporter = PrometheusExporter::install().expect("recorder");
    let shutdown = Shutdown::new();
    // Host and process metrics go along: the gateway exports process_*
    // families of its own and refuses pushed ones of another type.
    let monitor = Monitor::builder()
        .interval(Duration::from_millis(200))
        .start(&shutdown);
    wait_for("a host sample", Duration::from_secs(10), || async {
        monitor.snapshot().process.map(|_| ())
    })
    .await;
    let marker = metrics::counter!("push_marker_total");
    marker.increment(7);

    // The application: a web server that must keep answering throughout.
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

    let dir = temp_dir("pushgateway");
    let gateway_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut gateway = start_gateway(&binary, gateway_addr, &dir.join("gateway-1.log"));

    let target = PushTarget::pushgateway(
        &format!("http://{gateway_addr}"),
        "foobar_push_test",
        "node-1",
    )
    .unwrap();
    let push = Push::builder(target)
        .interval(Duration::from_millis(200))
        .timeout(Duration::from_secs(1))
        .backoff(Duration::from_millis(50), Duration::from_millis(400))
        .delete_on_shutdown(true)
        .spawn(exporter, &shutdown)
        .unwrap();

    // 1. Pushes arrive: the gateway exposes our counter in our group, and
    //    its API lists the group with our metric family.
    let line = wait_for("the marker on the gateway", Duration::from_secs(20), || {
        marker_line(gateway_addr)
    })
    .await;
    assert!(
        line.contains(r#"instance="node-1""#) && line.ends_with(" 7"),
        "{line}"
    );
    let (_, _, api) = get(gateway_addr, "/api/v1/metrics", &[]).await;
    let api: serde_json::Value = serde_json::from_str(&api).expect("gateway API JSON");
    let group = api["data"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["labels"]["job"] == "foobar_push_test")
        .expect("our group");
    assert_eq!(group["labels"]["instance"], "node-1");
    for family in [
        "push_marker_total",
        "host_cpu_usage_ratio",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(group.get(family).is_some(), "{family} missing from {group}");
    }
    let before_outage = push.stats();
    assert!(before_outage.pushed_total >= 1);

    // 2. The gateway dies: the application keeps answering promptly, pushes
    //    fail and are counted, and never more than one rendering waits.
    gateway.stop();
    let outage_started = Instant::now();
    let mut max_queued = 0;
    let stats = wait_for(
        "failures and drops while the gateway is down",
        Duration::from_secs(20),
        || {
            let push = push.clone();
            async move {
                let started = Instant::now();
                let (status, _, _) = get(web_addr, "/", &[]).await;
                assert_eq!(status, StatusCode::OK);
                assert!(
                    started.elapsed() < Duration::from_secs(1),
                    "the application stalled"
                );
                let stats = push.stats();
                (stats.failed_total >= before_outage.failed_total + 3 && stats.dropped_total >= 1)
                    .then_some(stats)
            }
        },
    )
    .await;
    // Keep sampling a little longer at the push rate, checking the bound.
    while outage_started.elapsed() < Duration::from_secs(3) {
        let s = push.stats();
        max_queued = max_queued.max(s.queued);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(max_queued <= 1, "queue grew to {max_queued}");
    assert!(stats.last_error.is_some());

    // 3. The gateway comes back (same address, empty): pushes resume with
    //    fresh values.
    marker.increment(2);
    let _gateway = start_gateway(&binary, gateway_addr, &dir.join("gateway-2.log"));
    // (The first push after the restart may still carry the rendering that
    // was being retried; the next one has the new value.)
    let line = wait_for(
        "the new value after the restart",
        Duration::from_secs(20),
        || async {
            marker_line(gateway_addr)
                .await
                .filter(|l| l.ends_with(" 9"))
        },
    )
    .await;
    assert!(line.contains(r#"instance="node-1""#), "{line}");
    assert!(push.stats().pushed_total > before_outage.pushed_total);

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), push.stopped())
        .await
        .expect("the push client stops on shutdown");
    // 4. On shutdown the client deleted its group from the gateway.
    let (status, _, exposition) = get(gateway_addr, "/metrics", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !exposition.contains(r#"job="foobar_push_test""#),
        "the group outlived the client:\n{exposition}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

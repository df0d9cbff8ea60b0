//! MetricsLayer and the Prometheus exporter, scraped over a real admin
//! listener.

mod support;

use std::time::Duration;

use foobar_core::admin::Admin;
use foobar_core::metrics::{MetricsLayer, PrometheusExporter};
use foobar_core::RequestBody;
use foobar_core::Server;
use http::{Request, StatusCode};
use support::*;
use tower::ServiceBuilder;

/// The value of the sample whose name is `name` and whose labels include all
/// of `labels` (`key="value"` strings).
fn sample(exposition: &str, name: &str, labels: &[&str]) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (label_part, value) = match rest.strip_prefix('{') {
            Some(rest) => rest.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let present: Vec<&str> = label_part.split(',').collect();
        labels
            .iter()
            .all(|l| present.contains(l))
            .then(|| value.trim().parse().ok())?
    })
}

#[tokio::test]
async fn admin_metrics_show_exact_counts_and_a_histogram_of_n_observations() {
    let exporter = PrometheusExporter::install().unwrap();
    let service = ServiceBuilder::new()
        .layer(MetricsLayer::new("exact"))
        .service_fn(|req: Request<RequestBody>| async move {
            let status = match req.uri().path() {
                "/missing" => StatusCode::NOT_FOUND,
                "/broken" => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::OK,
            };
            text(status, "x")
        });
    let web = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .build()
        .unwrap();
    let web_addr = web.local_addr();
    tokio::spawn(web.serve(service));
    let admin = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .build()
        .unwrap();
    let admin_addr = admin.local_addr();
    tokio::spawn(admin.serve(Admin::new(exporter)));

    let plan = [("/", 7), ("/missing", 3), ("/broken", 2)];
    for (path, times) in plan {
        for _ in 0..times {
            get_h1(web_addr, path).await;
        }
    }
    // An HTTP/2 request counts the same way.
    let (status, _) = get_h2c(web_addr, "/").await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = get_h1(admin_addr, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let svc = r#"service="exact""#;
    let get = r#"method="GET""#;
    let count = |status: &str| sample(&body, "http_server_requests_total", &[svc, get, status]);
    assert_eq!(count(r#"status="2xx""#), Some(8.0), "{body}");
    assert_eq!(count(r#"status="4xx""#), Some(3.0));
    assert_eq!(count(r#"status="5xx""#), Some(2.0));
    assert_eq!(
        count(r#"status="3xx""#),
        None,
        "series that never occurred are not exported"
    );

    let observations: f64 = ["2xx", "4xx", "5xx"]
        .iter()
        .map(|class| {
            let status = format!("status=\"{class}\"");
            sample(
                &body,
                "http_server_request_duration_seconds_count",
                &[svc, get, &status],
            )
            .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(observations, 13.0, "one latency observation per request");
    let buckets = body
        .lines()
        .filter(|l| {
            l.starts_with("http_server_request_duration_seconds_bucket{") && l.contains(svc)
        })
        .count();
    assert!(buckets > 10, "a real histogram with buckets, not a summary");
    assert_eq!(
        sample(&body, "http_server_requests_in_flight", &[svc]),
        Some(0.0),
        "nothing in flight after all responses"
    );

    let (status, body) = get_h1(admin_addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    let (status, _) = get_h1(admin_addr, "/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn in_flight_gauge_counts_requests_being_served() {
    let exporter = PrometheusExporter::install().unwrap();
    let (entered_tx, mut entered_rx) = tokio::sync::mpsc::channel::<()>(4);
    let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let service = {
        let release = release.clone();
        ServiceBuilder::new()
            .layer(MetricsLayer::new("inflight"))
            .service_fn(move |_req: Request<RequestBody>| {
                let entered = entered_tx.clone();
                let release = release.clone();
                async move {
                    entered.send(()).await.ok();
                    let _permit = release.acquire().await;
                    text(StatusCode::OK, "done")
                }
            })
    };
    let web = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .build()
        .unwrap();
    let addr = web.local_addr();
    tokio::spawn(web.serve(service));

    let clients: Vec<_> = (0..3).map(|_| tokio::spawn(get_h1(addr, "/"))).collect();
    for _ in 0..3 {
        entered_rx.recv().await.unwrap();
    }
    let svc = r#"service="inflight""#;
    assert_eq!(
        sample(&exporter.render(), "http_server_requests_in_flight", &[svc]),
        Some(3.0)
    );
    release.add_permits(3);
    for client in clients {
        assert_eq!(client.await.unwrap().0, StatusCode::OK);
    }
    let settled = wait_until(Duration::from_secs(5), || async {
        sample(&exporter.render(), "http_server_requests_in_flight", &[svc]) == Some(0.0)
    })
    .await;
    assert!(settled, "in-flight gauge back to zero");
}

#[tokio::test]
async fn service_errors_are_counted_apart_from_responses() {
    let exporter = PrometheusExporter::install().unwrap();
    let failing = ServiceBuilder::new()
        .layer(MetricsLayer::new("failing"))
        .service_fn(|_req: Request<RequestBody>| async {
            Err::<http::Response<http_body_util::Full<bytes::Bytes>>, _>(std::io::Error::other(
                "backend gone",
            ))
        });
    let web = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .build()
        .unwrap();
    let addr = web.local_addr();
    tokio::spawn(web.serve(failing));
    for _ in 0..4 {
        // A failed service is a 500, and the connection closes.
        let stream = connect_from([127, 0, 0, 1].into(), addr).await;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/")
            .header("host", "t")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
    }
    let svc = r#"service="failing""#;
    let counted = wait_until(Duration::from_secs(5), || async {
        sample(
            &exporter.render(),
            "http_server_errors_total",
            &[svc, r#"method="GET""#],
        ) == Some(4.0)
    })
    .await;
    assert!(counted, "{}", exporter.render());
    assert_eq!(
        sample(&exporter.render(), "http_server_requests_total", &[svc]),
        None
    );
}

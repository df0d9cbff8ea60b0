//! The push client as a generic HTTP source client over HTTPS (a private
//! CA through `ClientTls`): custom content type and headers arrive, and a
//! collector that fails at first gets retries until it accepts.

#[path = "monitor_support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use foobar_core::metrics::PrometheusExporter;
use foobar_core::monitor::{Push, PushFailure, PushTarget};
use foobar_core::tls::DevCa;
use foobar_core::Shutdown;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use support::wait_for;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What the collector saw of one push.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    path: String,
    content_type: String,
    category: String,
    body: String,
}

/// An HTTPS collector that answers 500 to the first `failures` pushes.
async fn collector(
    ca: &DevCa,
    failures: usize,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<Received>>>) {
    let cert = ca.server_cert(["127.0.0.1"]).expect("server certificate");
    let identity = cert.identity().expect("identity");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            identity.chain().to_vec(),
            identity.private_key().clone_key(),
        )
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let seen = received.clone();
    let count = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        let count = count.clone();
                        async move {
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned()
                            };
                            let entry = Received {
                                method: req.method().to_string(),
                                path: req.uri().path().to_owned(),
                                content_type: header("content-type"),
                                category: header("x-sumo-category"),
                                body: String::new(),
                            };
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let body =
                                String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
                            seen.lock().unwrap().push(Received { body, ..entry });
                            let status = if count.fetch_add(1, Ordering::Relaxed) < failures {
                                StatusCode::INTERNAL_SERVER_ERROR
                            } else {
                                StatusCode::OK
                            };
                            let mut response = Response::new(Full::new(Bytes::from_static(b"")));
                            *response.status_mut() = status;
                            Ok::<_, Infallible>(response)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_http_source_gets_headers_and_retries() {
    let exporter = PrometheusExporter::install().expect("recorder");
    metrics::counter!("https_marker_total").increment(5);
    let shutdown = Shutdown::new();
    let ca = DevCa::new().expect("CA");
    let (addr, received) = collector(&ca, 2).await;

    let target = PushTarget::http(&format!("https://{addr}/receiver/v1/http/abc123"))
        .unwrap()
        .content_type("application/vnd.sumologic.prometheus")
        .unwrap()
        .header("X-Sumo-Category", "prod/web/metrics")
        .unwrap();
    let tls = ca
        .client_tls()
        .alpn(["h2", "http/1.1"])
        .build()
        .expect("client TLS");
    let push = Push::builder(target)
        .interval(Duration::from_millis(300))
        .timeout(Duration::from_secs(2))
        .backoff(Duration::from_millis(20), Duration::from_millis(100))
        .tls(tls)
        .spawn(exporter, &shutdown)
        .unwrap();

    let stats = wait_for(
        "an accepted push after two refusals",
        Duration::from_secs(20),
        || async {
            let stats = push.stats();
            (stats.pushed_total >= 1).then_some(stats)
        },
    )
    .await;
    assert_eq!(stats.failed_total, 2, "{stats:?}");
    assert!(
        matches!(
            stats.last_error.as_deref(),
            Some(PushFailure::Rejected { status, .. }) if *status == 500
        ),
        "{stats:?}"
    );
    let received = received.lock().unwrap().clone();
    assert!(received.len() >= 3, "{received:?}");
    for push in &received {
        assert_eq!(push.method, "POST");
        assert_eq!(push.path, "/receiver/v1/http/abc123");
        assert_eq!(push.content_type, "application/vnd.sumologic.prometheus");
        assert_eq!(push.category, "prod/web/metrics");
        assert!(push.body.contains("https_marker_total 5"), "{}", push.body);
    }
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), push.stopped())
        .await
        .expect("the push client stops on shutdown");
}

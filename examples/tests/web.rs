//! The web role's axum app, served two ways with the same results: by
//! `foobar_core::Server` behind Firewall 2 and mTLS (as the stack runs it),
//! and by `axum::serve` with `into_make_service_with_connect_info`. In both,
//! a denied client is refused, the rate limit holds, metrics count, and the
//! access log names the client. Real sockets, real TLS, a private MariaDB.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foobar_core::access_log::{AccessLogWriter, Format};
use foobar_core::metrics::PrometheusExporter;
use foobar_core::tls::{ClientTls, DevCa};
use foobar_core::{PlainTcp, Server, Shutdown};
use foobar_db::sandbox::{Cluster, MONITOR};
use foobar_db::{Executor, RwPool};
use foobar_examples::web::{self, App, RequestPolicy};
use foobar_guard::tls::{TlsConfig, TlsLayer};
use foobar_guard::{FirewallLayer, Rules, TrustedProxies};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tower::ServiceBuilder;

const DENIED: &str = "127.0.0.13";

/// How a test client reaches one of the two servers.
struct Target {
    addr: SocketAddr,
    tls: Option<TlsConnector>,
}

async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    socket.connect(addr).await.unwrap()
}

/// One request from `source` on a new connection: the status, or `None`
/// when the connection was refused or closed before an answer.
async fn request(
    target: &Target,
    source: &str,
    method: Method,
    path: &str,
    body: &str,
) -> Option<StatusCode> {
    let tcp = connect_from(source, target.addr).await;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    match &target.tls {
        Some(tls) => {
            let name = foobar_core::tls::server_name("localhost").unwrap();
            let stream = tls.connect(name, tcp).await.ok()?;
            send(stream, req).await
        }
        None => send(tcp, req).await,
    }
}

async fn send<IO>(io: IO, req: Request<Full<Bytes>>) -> Option<StatusCode>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .ok()?;
    tokio::spawn(conn);
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("an answer in time")
        .ok()?;
    let status = response.status();
    let _ = response.into_body().collect().await;
    Some(status)
}

/// What a server answered to the same sequence of requests.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    created: Option<StatusCode>,
    listed: Option<StatusCode>,
    denied: Option<StatusCode>,
    /// Whether a burst from one client ran into 429 within the limit.
    limited: bool,
}

async fn exercise(target: &Target) -> Outcome {
    let created = request(
        target,
        "127.0.0.1",
        Method::POST,
        "/entries",
        r#"{"author":"axum","message":"hi"}"#,
    )
    .await;
    let listed = request(target, "127.0.0.1", Method::GET, "/entries", "").await;
    let denied = request(target, DENIED, Method::GET, "/entries", "").await;
    // Burst 3 at 1/s: the fourth quick request is over the limit; allow
    // one more token per second the burst took.
    let started = Instant::now();
    let mut ok = 0;
    let mut limited = false;
    for _ in 0..10 {
        match request(target, "127.0.0.21", Method::GET, "/healthz", "").await {
            Some(StatusCode::OK) => ok += 1,
            Some(StatusCode::TOO_MANY_REQUESTS) => {
                limited = true;
                break;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let refills = started.elapsed().as_secs() as usize + 1;
    assert!(ok >= 3 && ok <= 3 + refills, "{ok} requests passed");
    Outcome {
        created,
        listed,
        denied,
        limited,
    }
}

fn policy(name: &str) -> RequestPolicy {
    RequestPolicy {
        metrics_name: name.to_owned(),
        client_rules: format!("deny {DENIED}\ndefault allow\n").parse().unwrap(),
        trusted_proxies: TrustedProxies::none(),
        rate: (1, 3),
    }
}

fn count(metrics: &str, service: &str, status: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("http_server_requests_total{")
                && line.contains(&format!("service=\"{service}\""))
                && line.contains(&format!("status=\"{status}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn wait_for_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() >= n || Instant::now() >= deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_app_behaves_alike_under_foobar_server_and_axum_serve() {
    let exporter = PrometheusExporter::install().unwrap();
    let shutdown = Shutdown::new();
    let cluster = Cluster::builder().replicas(0).start().await.unwrap();
    let pool = RwPool::builder()
        .primary(cluster.primary().app_url())
        .monitor_credentials(MONITOR.user, MONITOR.password)
        .build(&shutdown)
        .await
        .unwrap();
    pool.query_drop(web::SCHEMA).await.unwrap();
    let app = App {
        name: "web-test".into(),
        pool,
    };
    let dir = tempfile::tempdir().unwrap();

    // foobar's Server: Firewall 2 and mTLS at connection level.
    let ca = DevCa::new().unwrap();
    let server_cert = ca
        .server_cert(["localhost"])
        .unwrap()
        .write_pem(dir.path(), "web")
        .unwrap();
    let ca_file = ca.write_pem(dir.path()).unwrap();
    let client = ca.client_cert("foobar-lb").unwrap();
    let tls = TlsConfig::builder()
        .certificate(&server_cert.cert, &server_cert.key)
        .client_ca_file(&ca_file)
        .build()
        .unwrap();
    let conn_stage = ServiceBuilder::new()
        .layer(FirewallLayer::new(
            Rules::parse("allow 127.0.0.0/8\ndefault deny\n").unwrap(),
        ))
        .layer(TlsLayer::new(tls))
        .service(PlainTcp);
    let foobar_log = dir.path().join("foobar-access.log");
    let router = web::router(
        app.clone(),
        &policy("web-foobar"),
        Some((AccessLogWriter::open(&foobar_log).unwrap(), Format::Json)),
        None,
    )
    .unwrap();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .shutdown(shutdown.clone())
        .build()
        .unwrap();
    let foobar = Target {
        addr: server.local_addr(),
        tls: Some(TlsConnector::from(
            ClientTls::new()
                .ca_der(ca.cert_der().clone())
                .identity(client.identity().unwrap())
                .alpn(["http/1.1"])
                .build()
                .unwrap(),
        )),
    };
    tokio::spawn(server.serve_connections(conn_stage, router));

    // axum's own server, plain HTTP, the client address from ConnectInfo.
    let axum_log = dir.path().join("axum-access.log");
    let router = web::router(
        app,
        &policy("web-axum"),
        Some((AccessLogWriter::open(&axum_log).unwrap(), Format::Json)),
        None,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let axum = Target {
        addr: listener.local_addr().unwrap(),
        tls: None,
    };
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.wait().await })
        .await
    });

    let expected = Outcome {
        created: Some(StatusCode::CREATED),
        listed: Some(StatusCode::OK),
        denied: Some(StatusCode::FORBIDDEN),
        limited: true,
    };
    assert_eq!(exercise(&foobar).await, expected, "foobar_core::Server");
    assert_eq!(exercise(&axum).await, expected, "axum::serve");

    // Without the client certificate, foobar's server refuses at the handshake.
    let bare = TlsConnector::from(
        ClientTls::new()
            .ca_der(ca.cert_der().clone())
            .build()
            .unwrap(),
    );
    let no_cert = Target {
        addr: foobar.addr,
        tls: Some(bare),
    };
    assert_eq!(
        request(&no_cert, "127.0.0.1", Method::GET, "/healthz", "").await,
        None
    );

    let metrics = exporter.render();
    for service in ["web-foobar", "web-axum"] {
        assert!(count(&metrics, service, "2xx") >= 5, "{service}: {metrics}");
        assert_eq!(
            count(&metrics, service, "4xx"),
            2,
            "{service}: 403 and 429\n{metrics}"
        );
    }

    for path in [&foobar_log, &axum_log] {
        let lines = wait_for_lines(path, 6).await;
        let denied = lines
            .iter()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .find(|v| v["status"] == 403)
            .unwrap_or_else(|| panic!("no 403 in {lines:?}"));
        assert_eq!(denied["client"], DENIED, "{denied}");
    }
    // The foobar path logs the TLS details of the connection.
    let first: serde_json::Value =
        serde_json::from_str(&wait_for_lines(&foobar_log, 1).await[0]).unwrap();
    assert_eq!(first["tls_version"], "TLSv1.3", "{first}");
    shutdown.trigger();
}

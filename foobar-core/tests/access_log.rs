//! The access log on a real server with TLS: lines parse back into the
//! fields of the requests sent, and the file reopens after logrotate's
//! rename and a real SIGHUP.
#![cfg(feature = "access-log")]

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use foobar_core::access_log::{AccessLogLayer, AccessLogWriter, Format};
use foobar_core::tls::{provider, ClientTls, DevCa};
use foobar_core::{Accepted, BoxError, Server, Shutdown, TlsInfo, UpstreamName};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use support::wait_until;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tower::ServiceBuilder;

const DEADLINE: Duration = Duration::from_secs(10);

/// A TLS connection stage recording what the handshake learned, as a TLS
/// termination layer does.
#[derive(Clone)]
struct Tls(TlsAcceptor);

impl tower::Service<Accepted<TcpStream>> for Tls {
    type Response = Accepted<TlsStream<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, accepted: Accepted<TcpStream>) -> Self::Future {
        let acceptor = self.0.clone();
        Box::pin(async move {
            let mut info = accepted.info;
            let stream = acceptor.accept(accepted.io).await?;
            let session = stream.get_ref().1;
            let mut tls = TlsInfo::default();
            tls.server_name = session.server_name().map(str::to_owned);
            tls.protocol_version = session.protocol_version();
            info.tls = Some(Arc::new(tls));
            Ok(Accepted::new(stream, info))
        })
    }
}

/// The application: a fixed body, an upstream name and a request id, as a
/// proxy would set them.
async fn app(req: Request<foobar_core::RequestBody>) -> Result<Response<Full<Bytes>>, Infallible> {
    let status = if req.uri().path() == "/missing" {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    let _ = req.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(b"hello, world\n")));
    *response.status_mut() = status;
    response
        .extensions_mut()
        .insert(UpstreamName("http://10.0.0.7:8080".into()));
    response
        .headers_mut()
        .insert("x-request-id", "req-77".parse().unwrap());
    Ok(response)
}

struct Site {
    addr: SocketAddr,
    client: TlsConnector,
    shutdown: Shutdown,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Serves `app` over TLS behind two access logs.
fn serve(outer: (AccessLogWriter, Format), inner: (AccessLogWriter, Format)) -> Site {
    let ca = DevCa::new().unwrap();
    let leaf = ca.server_cert(["localhost"]).unwrap();
    let identity = leaf.identity().unwrap();
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(foobar_core::tls::PROTOCOL_VERSIONS)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            identity.chain().to_vec(),
            identity.private_key().clone_key(),
        )
        .unwrap();
    let stage = Tls(TlsAcceptor::from(Arc::new(config)));
    let shutdown = Shutdown::new();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .shutdown(shutdown.clone())
        .build()
        .unwrap();
    let addr = server.local_addr();
    let http = ServiceBuilder::new()
        .layer(AccessLogLayer::new(outer.0, outer.1))
        .layer(AccessLogLayer::new(inner.0, inner.1))
        .service_fn(app);
    tokio::spawn(server.serve_connections(stage, http));
    let client = ClientTls::new()
        .ca_der(ca.cert_der().clone())
        .alpn(["http/1.1"])
        .build()
        .unwrap();
    Site {
        addr,
        client: TlsConnector::from(client),
        shutdown,
    }
}

/// One HTTP/1.1 request over TLS (SNI `localhost`).
async fn send(site: &Site, req: Request<Full<Bytes>>) -> (StatusCode, usize) {
    let tcp = TcpStream::connect(site.addr).await.unwrap();
    let name = foobar_core::tls::server_name("localhost").unwrap();
    let tls = site.client.connect(name, tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(req).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.len())
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    assert!(
        wait_until(DEADLINE, || async { lines(path).len() >= n }).await,
        "{} did not get {n} lines: {:?}",
        path.display(),
        lines(path)
    );
    lines(path)
}

/// The fields of a `combined` line, unescaped nowhere (the test sends no
/// byte that needs escaping).
#[derive(Debug, PartialEq)]
struct Combined {
    client: String,
    time: String,
    request: String,
    status: u16,
    bytes: u64,
    referer: String,
    user_agent: String,
}

fn parse_combined(line: &str) -> Combined {
    let (client, rest) = line.split_once(" - - [").expect("client");
    let (time, rest) = rest.split_once("] \"").expect("time");
    let (request, rest) = rest.split_once("\" ").expect("request");
    let (numbers, rest) = rest.split_once(" \"").expect("status and bytes");
    let (status, bytes) = numbers.split_once(' ').expect("two numbers");
    let (referer, rest) = rest.split_once("\" \"").expect("referer");
    let user_agent = rest.strip_suffix('"').expect("user agent");
    Combined {
        client: client.to_owned(),
        time: time.to_owned(),
        request: request.to_owned(),
        status: status.parse().unwrap(),
        bytes: bytes.parse().unwrap(),
        referer: referer.to_owned(),
        user_agent: user_agent.to_owned(),
    }
}

#[tokio::test]
async fn lines_parse_back_into_the_requests_fields() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("access.json");
    let combined_path = dir.path().join("access.log");
    let site = serve(
        (AccessLogWriter::open(&json_path).unwrap(), Format::Json),
        (
            AccessLogWriter::open(&combined_path).unwrap(),
            Format::Combined,
        ),
    );

    let get = Request::get("/entries?page=2")
        .header("host", "localhost")
        .header("user-agent", "test-client/1.0")
        .header("referer", "https://www.foobar.test/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(&site, get).await, (StatusCode::OK, 13));
    let post = Request::post("/missing")
        .header("host", "localhost")
        .header("x-request-id", "client-chosen")
        .body(Full::new(Bytes::from_static(b"12345")))
        .unwrap();
    assert_eq!(send(&site, post).await, (StatusCode::NOT_FOUND, 13));

    let json = wait_lines(&json_path, 2).await;
    let first: serde_json::Value = serde_json::from_str(&json[0]).unwrap();
    let second: serde_json::Value = serde_json::from_str(&json[1]).unwrap();
    for (value, method, path, status, bytes_in, request_id) in [
        (&first, "GET", "/entries?page=2", 200, 0, "req-77"),
        (&second, "POST", "/missing", 404, 5, "client-chosen"),
    ] {
        assert_eq!(value["client"], "127.0.0.1", "{value}");
        assert_eq!(value["method"], method, "{value}");
        assert_eq!(value["path"], path, "{value}");
        assert_eq!(value["protocol"], "HTTP/1.1", "{value}");
        assert_eq!(value["status"], status, "{value}");
        assert_eq!(value["bytes_in"], bytes_in, "{value}");
        assert_eq!(value["bytes_out"], 13, "{value}");
        assert_eq!(value["upstream"], "http://10.0.0.7:8080", "{value}");
        assert_eq!(value["request_id"], request_id, "{value}");
        assert_eq!(value["tls_version"], "TLSv1.3", "{value}");
        assert_eq!(value["sni"], "localhost", "{value}");
        let ms = value["duration_ms"].as_f64().unwrap();
        assert!(ms > 0.0 && ms < 10_000.0, "{value}");
        assert!(value["time"].as_str().unwrap().ends_with('Z'), "{value}");
    }
    assert_eq!(first["user_agent"], "test-client/1.0");
    assert_eq!(first["referer"], "https://www.foobar.test/");

    let combined = wait_lines(&combined_path, 2).await;
    let get = parse_combined(&combined[0]);
    assert_eq!(get.client, "127.0.0.1");
    assert_eq!(get.request, "GET /entries?page=2 HTTP/1.1");
    assert_eq!((get.status, get.bytes), (200, 13));
    assert_eq!(get.referer, "https://www.foobar.test/");
    assert_eq!(get.user_agent, "test-client/1.0");
    assert!(get.time.ends_with(" +0000"), "{get:?}");
    let post = parse_combined(&combined[1]);
    assert_eq!(post.request, "POST /missing HTTP/1.1");
    assert_eq!((post.status, post.bytes), (404, 13));
    assert_eq!(
        (post.referer.as_str(), post.user_agent.as_str()),
        ("-", "-")
    );
}

#[tokio::test]
async fn the_file_reopens_after_rename_and_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let writer = AccessLogWriter::open(&path).unwrap();
    let shutdown = Shutdown::new();
    writer.reopen_on_sighup(shutdown.clone()).unwrap();
    let other = AccessLogWriter::open(dir.path().join("other.log")).unwrap();
    let site = serve((writer, Format::Combined), (other, Format::Json));
    let get = |path: &str| {
        Request::get(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };

    send(&site, get("/before")).await;
    wait_lines(&path, 1).await;
    // logrotate: rename, then signal. This test binary holds only tests
    // that listen for SIGHUP, so the signal reaches the handler above.
    std::fs::rename(&path, &rotated).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        wait_until(DEADLINE, || async { path.exists() }).await,
        "the writer did not reopen {}",
        path.display()
    );
    send(&site, get("/after")).await;
    let new = wait_lines(&path, 1).await;
    assert!(new[0].contains("GET /after "), "{new:?}");
    let old = lines(&rotated);
    assert_eq!(old.len(), 1, "{old:?}");
    assert!(old[0].contains("GET /before "), "{old:?}");
    shutdown.trigger();
}

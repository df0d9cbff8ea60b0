//! ACME against Pebble, the ACME test server (Debian package `pebble`),
//! started privately by each test on loopback ports with its own
//! configuration in a temp dir, real challenge validation (no
//! `PEBBLE_VA_ALWAYS_VALID`), and `pebble-challtestsrv` as its DNS server
//! answering 127.0.0.1 for every name. Pebble's validation ports point at
//! the test's own listeners. Pebble is started by the harness the examples
//! use (`examples/src/pebble.rs`, included here as a module).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foobar_core::status::{Health, StatusSource};
use foobar_core::tls::{server_name, ClientTls, DevCa};
use foobar_core::{PlainTcp, Server, Shutdown};
use foobar_guard::acme::{
    AcmeConfig, AcmeError, AcmeManager, CertificatesStatus, Challenge, Outcome, RedirectToHttps,
};
use foobar_guard::tls::{TlsConfig, TlsLayer};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use metrics_exporter_prometheus::PrometheusBuilder;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tower::{Layer, ServiceBuilder};

const DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- Pebble

/// The harness the examples' stack and tests start Pebble with: one source
/// for every crate's tests.
#[path = "../../examples/src/pebble.rs"]
#[allow(dead_code, unreachable_pub)]
mod shared_pebble;

/// A private Pebble and its DNS in a temp dir of their own; killed on drop,
/// then the directory removed.
struct Pebble {
    pebble: shared_pebble::Pebble,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    shared_pebble::free_port().unwrap()
}

impl Pebble {
    /// Starts Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on
    /// `tls_port` of 127.0.0.1, issuing certificates valid for `validity`.
    async fn start(http_port: u16, tls_port: u16, validity: Duration) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("foobar-guard-pebble-")
            .tempdir()
            .unwrap();
        let options = shared_pebble::PebbleOptions::tls_alpn_01(tls_port)
            .http_port(http_port)
            .validity(validity);
        let pebble = shared_pebble::Pebble::start(dir.path(), &options)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Self { pebble, _dir: dir }
    }

    fn log(&self) -> String {
        self.pebble.log()
    }

    /// Pebble's root, made anew at each start.
    async fn root(&self) -> String {
        self.pebble
            .root_pem()
            .await
            .expect("Pebble serves its root")
    }

    fn config(&self, storage: &std::path::Path, names: &[&str]) -> AcmeConfig {
        AcmeConfig::new(self.pebble.directory())
            .names(names)
            .contact("mailto:ops@foobar.test")
            .storage(storage)
            .directory_ca_file(self.pebble.api_ca())
            .retry_backoff(Duration::from_millis(200), Duration::from_secs(2))
            .order_timeout(Duration::from_secs(20))
    }
}

// ---------------------------------------------------------------- servers

struct ShutdownOnDrop(Shutdown);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

fn bind() -> (Server, ShutdownOnDrop) {
    let shutdown = Shutdown::new();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .shutdown(shutdown.clone())
        .grace_period(Duration::from_millis(100))
        .build()
        .unwrap();
    (server, ShutdownOnDrop(shutdown))
}

/// Serves "hello" over TLS with `config`.
fn serve_tls(server: Server, config: TlsConfig) {
    let app = tower::service_fn(|_req: Request<foobar_core::RequestBody>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
    });
    let stage = ServiceBuilder::new()
        .layer(TlsLayer::new(config))
        .service(PlainTcp);
    tokio::spawn(server.serve_connections(stage, app));
}

/// Serves HTTP-01 answers, and redirects everything else to HTTPS.
fn serve_plain(server: Server, manager: &AcmeManager) {
    let http = manager.http01_layer().layer(RedirectToHttps::new());
    tokio::spawn(server.serve_connections(PlainTcp, http));
}

/// One request over a fresh TLS connection that trusts only `root_pem`;
/// the certificate served and the body.
async fn fetch(
    root_pem: &str,
    addr: SocketAddr,
    host: &str,
) -> Result<(CertificateDer<'static>, String), String> {
    let mut config = (*ClientTls::new().ca_pem(root_pem).build().unwrap()).clone();
    config.resumption = rustls::client::Resumption::disabled();
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = tokio::time::timeout(
        DEADLINE,
        TlsConnector::from(Arc::new(config)).connect(server_name(host).unwrap(), tcp),
    )
    .await
    .map_err(|_| "handshake timed out".to_owned())?
    .map_err(|e| format!("handshake: {e}"))?;
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let io = hyper_util::rt::TokioIo::new(tls);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = Request::get("/")
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = tokio::time::timeout(DEADLINE, sender.send_request(request))
        .await
        .map_err(|_| "request timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((cert, String::from_utf8_lossy(&body).into_owned()))
}

fn storage() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("foobar-guard-acme-")
        .tempdir()
        .unwrap()
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn a_fresh_instance_obtains_a_certificate_over_tls_alpn_01_and_a_restart_reuses_it() {
    let (tls_server, _tls) = bind();
    let addr = tls_server.local_addr();
    let pebble = Pebble::start(free_port(), addr.port(), Duration::from_secs(3600)).await;
    let dir = storage();
    let names = ["www.foobar.test", "api.foobar.test"];
    let manager = pebble.config(dir.path(), &names).build().unwrap();
    assert!(manager.certified_key().is_none());
    serve_tls(
        tls_server,
        TlsConfig::builder().acme(&manager).build().unwrap(),
    );

    let outcome = tokio::time::timeout(DEADLINE, manager.ensure())
        .await
        .unwrap();
    assert_eq!(outcome.unwrap(), Outcome::Issued, "{}", pebble.log());
    let root = pebble.root().await;
    let (cert, body) = fetch(&root, addr, "www.foobar.test").await.unwrap();
    assert_eq!(body, "hello");
    let (cert2, _) = fetch(&root, addr, "api.foobar.test").await.unwrap();
    assert_eq!(cert, cert2, "one certificate for both names");
    // A client that trusts only its usual roots refuses it.
    let other = DevCa::new().unwrap();
    assert!(fetch(other.cert_pem(), addr, "www.foobar.test")
        .await
        .is_err());

    // The account key and the certificate are stored 0600.
    let stored: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "pem"))
        .collect();
    assert_eq!(stored.len(), 2, "{stored:?}");
    #[cfg(unix)]
    for path in &stored {
        assert_eq!(mode(path), 0o600, "{}", path.display());
    }

    // A restart serves the stored certificate at once, and does not reissue.
    let restarted = pebble.config(dir.path(), &names).build().unwrap();
    assert!(restarted.certified_key().is_some());
    assert_eq!(restarted.ensure().await.unwrap(), Outcome::Loaded);
    assert_eq!(restarted.certified_key().unwrap().cert[0], cert);
    assert_eq!(restarted.status().issued, 0);
    assert_eq!(manager.status().issued, 1);

    // The status page row.
    let snapshot = CertificatesStatus::new([manager.clone()]).snapshot();
    assert_eq!(snapshot.health, Health::Up);
    let row = &snapshot.data["certificates"][0];
    assert_eq!(row["names"], "www.foobar.test, api.foobar.test");
    assert_eq!(row["health"], "up");
    let days = row["expires_in_days"].as_f64().unwrap();
    assert!(days > 0.0 && days <= 1.0 / 24.0, "{row}");
}

#[tokio::test]
async fn a_fresh_instance_obtains_a_certificate_over_http_01() {
    let (tls_server, _tls) = bind();
    let (plain_server, _plain) = bind();
    let (addr, plain) = (tls_server.local_addr(), plain_server.local_addr());
    let pebble = Pebble::start(plain.port(), free_port(), Duration::from_secs(3600)).await;
    let dir = storage();
    let manager = pebble
        .config(dir.path(), &["www.foobar.test"])
        .challenge(Challenge::Http01)
        .build()
        .unwrap();
    serve_plain(plain_server, &manager);
    serve_tls(
        tls_server,
        TlsConfig::builder().acme(&manager).build().unwrap(),
    );

    let outcome = tokio::time::timeout(DEADLINE, manager.ensure())
        .await
        .unwrap();
    assert_eq!(outcome.unwrap(), Outcome::Issued, "{}", pebble.log());
    let (_, body) = fetch(&pebble.root().await, addr, "www.foobar.test")
        .await
        .unwrap();
    assert_eq!(body, "hello");

    // Everything else on the plain listener goes to HTTPS; an unknown
    // challenge token is a 404.
    let mut tcp = TcpStream::connect(plain).await.unwrap();
    tcp.write_all(b"GET /shop?x=1 HTTP/1.0\r\nHost: www.foobar.test\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 308"), "{reply}");
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("location: https://www.foobar.test/shop?x=1"),
        "{reply}"
    );
    let mut tcp = TcpStream::connect(plain).await.unwrap();
    tcp.write_all(b"GET /.well-known/acme-challenge/unknown HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
}

#[tokio::test]
async fn two_instances_sharing_a_storage_directory_issue_once() {
    // Pebble validates on the first instance's port whichever instance
    // places the order: the other's answer reaches it through the storage.
    let (tls_server, _tls) = bind();
    let addr = tls_server.local_addr();
    let pebble = Pebble::start(free_port(), addr.port(), Duration::from_secs(3600)).await;
    let dir = storage();
    let first = pebble
        .config(dir.path(), &["www.foobar.test"])
        .build()
        .unwrap();
    let second = pebble
        .config(dir.path(), &["www.foobar.test"])
        .build()
        .unwrap();
    serve_tls(
        tls_server,
        TlsConfig::builder().acme(&first).build().unwrap(),
    );

    let (a, b) = tokio::time::timeout(DEADLINE, async {
        tokio::join!(first.ensure(), second.ensure())
    })
    .await
    .unwrap();
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| *o == Outcome::Loaded);
    assert_eq!(
        outcomes,
        [Outcome::Issued, Outcome::Loaded],
        "{}",
        pebble.log()
    );
    assert_eq!(first.status().issued + second.status().issued, 1);
    assert_eq!(
        first.certified_key().unwrap().cert,
        second.certified_key().unwrap().cert
    );
    let (cert, _) = fetch(&pebble.root().await, addr, "www.foobar.test")
        .await
        .unwrap();
    assert_eq!(cert, first.certified_key().unwrap().cert[0]);
}

#[tokio::test]
async fn renewal_under_load_swaps_the_certificate_without_a_failed_request() {
    let (tls_server, _tls) = bind();
    let addr = tls_server.local_addr();
    // 30 s certificates: renewal is due after 20 s.
    let pebble = Pebble::start(free_port(), addr.port(), Duration::from_secs(30)).await;
    let dir = storage();
    let recorder = PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let manager = metrics::with_local_recorder(&recorder, || {
        pebble.config(dir.path(), &["www.foobar.test"]).build()
    })
    .unwrap();
    serve_tls(
        tls_server,
        TlsConfig::builder().acme(&manager).build().unwrap(),
    );
    let shutdown = Shutdown::new();
    let _stop = ShutdownOnDrop(shutdown.clone());
    manager.spawn(shutdown);

    let started = Instant::now();
    while manager.certified_key().is_none() {
        assert!(
            started.elapsed() < DEADLINE,
            "no first certificate: {}",
            pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = manager.certified_key().unwrap().cert[0].clone();
    let root = pebble.root().await;

    // Four clients, each a new TLS connection per request, until one sees
    // the renewed certificate (at most 60 s and 20,000 requests).
    let load_started = Instant::now();
    let load_deadline = load_started + Duration::from_secs(60);
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (root, first) = (root.clone(), first.clone());
        clients.push(tokio::spawn(async move {
            let (mut ok, mut renewed) = (0u32, false);
            while Instant::now() < load_deadline && ok < 5_000 && !renewed {
                let (cert, body) = fetch(&root, addr, "www.foobar.test").await?;
                assert_eq!(body, "hello");
                renewed = cert != first;
                ok += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok::<_, String>((ok, renewed))
        }));
    }
    let mut total = 0;
    let mut renewed = false;
    for client in clients {
        let (ok, saw) = client.await.unwrap().expect("no failed request");
        total += ok;
        renewed |= saw;
    }
    assert!(
        renewed,
        "no renewal seen within 60 s ({total} requests): {}",
        pebble.log()
    );
    eprintln!(
        "renewed after {:?} of load: {total} requests, each on a new TLS connection, none failed",
        load_started.elapsed()
    );
    assert!(manager.status().issued >= 2);
    let text = metrics.render();
    assert!(
        text.lines().any(
            |l| l.starts_with("foobar_acme_renewals_total{result=\"success\"}")
                && !l.ends_with(" 0")
                && !l.ends_with(" 1")
        ),
        "{text}"
    );
    assert!(
        text.contains("foobar_acme_certificate_expiry_days{name=\"www.foobar.test\"}"),
        "{text}"
    );
}

#[test]
fn wildcard_and_invalid_names_are_refused() {
    let dir = storage();
    let config = AcmeConfig::new("https://127.0.0.1:1/dir").storage(dir.path());
    let error = config.clone().names(["*.foobar.test"]).build().unwrap_err();
    assert!(
        matches!(error, AcmeError::WildcardName(ref n) if n == "*.foobar.test"),
        "{error}"
    );
    assert!(error.to_string().contains("DNS-01"), "{error}");
    let error = config.clone().names(["127.0.0.1"]).build().unwrap_err();
    assert!(matches!(error, AcmeError::InvalidName(_)), "{error}");
    let error = config.clone().names(["a b.test"]).build().unwrap_err();
    assert!(matches!(error, AcmeError::InvalidName(_)), "{error}");
    let error = config.names(Vec::<String>::new()).build().unwrap_err();
    assert!(matches!(error, AcmeError::NoNames), "{error}");
    let error = AcmeConfig::new("https://127.0.0.1:1/dir")
        .names(["a.test"])
        .build()
        .unwrap_err();
    assert!(matches!(error, AcmeError::NoStorage), "{error}");
}

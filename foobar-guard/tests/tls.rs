//! TLS termination on real loopback sockets: SNI, ALPN/HTTP/2, reload,
//! mTLS, protocol versions, handshake timeout and bad files. Certificates
//! are made at test time by `DevCa`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foobar_core::tls::{server_name, DevCa, DevCert, DevCertFiles, Material, TlsError as Load};
use foobar_core::{ConnInfo, PlainTcp, Server, Shutdown};
use foobar_guard::tls::{TlsConfig, TlsError, TlsLayer};
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tower::ServiceBuilder;

const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- support

/// A fresh directory under the system temp dir, removed on drop.
fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("foobar-guard-tls-{tag}-"))
        .tempdir()
        .unwrap()
}

/// What the test application reports about the connection it served on.
fn describe(info: Option<&ConnInfo>, version: Version) -> String {
    let Some(tls) = info.and_then(|i| i.tls.as_deref()) else {
        return "plain".to_owned();
    };
    let client_cert = tls
        .peer_certificates
        .first()
        .map(|c| hex(c.as_ref()))
        .unwrap_or_default();
    format!(
        "sni={} alpn={} version={:?} suite={} http={version:?} client_certs={} client_cert={client_cert}",
        tls.server_name.as_deref().unwrap_or("-"),
        tls.alpn_protocol
            .as_deref()
            .map_or("-".into(), String::from_utf8_lossy),
        tls.protocol_version.expect("a version after the handshake"),
        tls.cipher_suite.is_some(),
        tls.peer_certificates.len(),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts a server with `layer` in its connection stage; returns its address
/// and the shutdown handle (fired on drop of the returned guard).
fn start(layer: TlsLayer) -> (SocketAddr, ShutdownOnDrop) {
    let shutdown = Shutdown::new();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .shutdown(shutdown.clone())
        .grace_period(Duration::from_millis(100))
        .build()
        .unwrap();
    let addr = server.local_addr();
    let app = tower::service_fn(|req: Request<foobar_core::RequestBody>| async move {
        let body = describe(req.extensions().get::<ConnInfo>(), req.version());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
    });
    let conn_stage = ServiceBuilder::new().layer(layer).service(PlainTcp);
    tokio::spawn(server.serve_connections(conn_stage, app));
    (addr, ShutdownOnDrop(shutdown))
}

struct ShutdownOnDrop(Shutdown);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

/// A TLS connection from a test client, with the server certificate it saw.
struct Client {
    stream: TlsStream<TcpStream>,
}

impl Client {
    async fn connect(
        config: Arc<rustls::ClientConfig>,
        addr: SocketAddr,
        host: &str,
    ) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        let stream = tokio::time::timeout(
            DEADLINE,
            TlsConnector::from(config).connect(server_name(host).unwrap(), tcp),
        )
        .await
        .expect("handshake within the deadline")?;
        Ok(Self { stream })
    }

    fn server_cert(&self) -> CertificateDer<'static> {
        self.stream.get_ref().1.peer_certificates().unwrap()[0].clone()
    }

    fn alpn(&self) -> Option<Vec<u8>> {
        self.stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
    }

    fn resumed(&self) -> bool {
        self.stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// Speaks HTTP (h2 if negotiated, else HTTP/1.1) and returns a sender
    /// for any number of requests on this one connection.
    async fn http(self) -> Http {
        let h2 = self.alpn().as_deref() == Some(b"h2");
        let io = TokioIo::new(self.stream);
        if h2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            Http::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Http::H1(sender)
        }
    }
}

enum Http {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Http {
    async fn get(&mut self) -> Result<(Version, String), hyper::Error> {
        let request = Request::get("https://test/")
            .header("host", "test")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = match self {
            Self::H1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
            Self::H2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
        };
        let version = response.version();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((version, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// One request on a fresh connection; returns the server certificate and
/// the server's description of the connection.
async fn fetch(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    host: &str,
) -> (CertificateDer<'static>, String) {
    let client = Client::connect(config, addr, host).await.unwrap();
    let cert = client.server_cert();
    let (_, body) = tokio::time::timeout(DEADLINE, async { client.http().await.get().await })
        .await
        .unwrap()
        .unwrap();
    (cert, body)
}

fn client_config(ca: &DevCa) -> Arc<rustls::ClientConfig> {
    ca.client_tls().alpn(["h2", "http/1.1"]).build().unwrap()
}

/// A client that never resumes, so every handshake shows the certificate
/// really served.
fn no_resumption(ca: &DevCa) -> Arc<rustls::ClientConfig> {
    let mut config = (*ca.client_tls().build().unwrap()).clone();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

fn write(cert: &DevCert, dir: &Path, stem: &str) -> DevCertFiles {
    cert.write_pem(dir, stem).unwrap()
}

// ---------------------------------------------------------------- SNI, ALPN

#[tokio::test]
async fn sni_picks_each_hostnames_certificate_and_wildcards() {
    let ca = DevCa::new().unwrap();
    let dir = temp_dir("sni");
    let alpha = ca.server_cert(["www.alpha.test", "127.0.0.1"]).unwrap();
    let beta = ca.server_cert(["www.beta.test"]).unwrap();
    let gamma = ca.server_cert(["*.gamma.test"]).unwrap();
    let (a, b, g) = (
        write(&alpha, dir.path(), "alpha"),
        write(&beta, dir.path(), "beta"),
        write(&gamma, dir.path(), "gamma"),
    );
    let config = TlsConfig::builder()
        .certificate(&a.cert, &a.key)
        .certificate(&b.cert, &b.key)
        .certificate(&g.cert, &g.key)
        .build()
        .unwrap();
    let (addr, _server) = start(TlsLayer::new(config));
    let client = client_config(&ca);

    let (cert, body) = fetch(client.clone(), addr, "www.alpha.test").await;
    assert_eq!(&cert, alpha.cert_der());
    assert!(body.starts_with("sni=www.alpha.test "), "{body}");

    let (cert, body) = fetch(client.clone(), addr, "www.beta.test").await;
    assert_eq!(&cert, beta.cert_der());
    assert!(body.starts_with("sni=www.beta.test "), "{body}");

    let (cert, body) = fetch(client.clone(), addr, "api.gamma.test").await;
    assert_eq!(&cert, gamma.cert_der());
    assert!(body.starts_with("sni=api.gamma.test "), "{body}");

    // An IP address sends no SNI: the first certificate is the default.
    let (cert, body) = fetch(client, addr, "127.0.0.1").await;
    assert_eq!(&cert, alpha.cert_der());
    assert!(body.starts_with("sni=- "), "{body}");
}

#[tokio::test]
async fn strict_sni_refuses_unknown_names_and_explicit_names_override_the_certificates() {
    let ca = DevCa::new().unwrap();
    let dir = temp_dir("strict");
    // A certificate valid for both names, served only for the one given.
    let both = ca.server_cert(["one.test", "two.test"]).unwrap();
    let files = write(&both, dir.path(), "both");
    let config = TlsConfig::builder()
        .certificate_for(["one.test"], &files.cert, &files.key)
        .strict_sni(true)
        .build()
        .unwrap();
    let (addr, _server) = start(TlsLayer::new(config));
    let client = client_config(&ca);

    let (cert, _) = fetch(client.clone(), addr, "one.test").await;
    assert_eq!(&cert, both.cert_der());
    let refused = Client::connect(client, addr, "two.test").await;
    assert!(
        refused.is_err(),
        "no certificate for two.test under strict SNI"
    );
}

#[tokio::test]
async fn h2_is_negotiated_by_alpn_and_an_http2_request_is_answered() {
    let ca = DevCa::new().unwrap();
    let cert = ca.server_cert(["h2.test"]).unwrap();
    let config = TlsConfig::builder()
        .identity(cert.identity().unwrap())
        .build()
        .unwrap();
    let (addr, _server) = start(TlsLayer::new(config));

    let client = Client::connect(client_config(&ca), addr, "h2.test")
        .await
        .unwrap();
    assert_eq!(client.alpn().as_deref(), Some(&b"h2"[..]));
    let (version, body) = client.http().await.get().await.unwrap();
    assert_eq!(version, Version::HTTP_2);
    assert!(
        body.contains("alpn=h2 version=TLSv1_3 suite=true http=HTTP/2.0"),
        "{body}"
    );

    // A client offering only HTTP/1.1 gets HTTP/1.1.
    let h1_only = ca.client_tls().alpn(["http/1.1"]).build().unwrap();
    let client = Client::connect(h1_only, addr, "h2.test").await.unwrap();
    assert_eq!(client.alpn().as_deref(), Some(&b"http/1.1"[..]));
    let (version, body) = client.http().await.get().await.unwrap();
    assert_eq!(version, Version::HTTP_11);
    assert!(body.contains("alpn=http/1.1 "), "{body}");
}

#[tokio::test]
async fn sessions_are_resumed() {
    let ca = DevCa::new().unwrap();
    let cert = ca.server_cert(["resume.test"]).unwrap();
    let config = TlsConfig::builder()
        .identity(cert.identity().unwrap())
        .build()
        .unwrap();
    let (addr, _server) = start(TlsLayer::new(config));
    let client = client_config(&ca);

    // One full exchange, so the client has read the session ticket.
    let first = Client::connect(client.clone(), addr, "resume.test")
        .await
        .unwrap();
    assert!(!first.resumed());
    first.http().await.get().await.unwrap();

    let second = Client::connect(client, addr, "resume.test").await.unwrap();
    assert!(second.resumed(), "the second handshake resumes the session");
    second.http().await.get().await.unwrap();
}

// ---------------------------------------------------------------- reload

#[tokio::test]
async fn reload_serves_the_new_certificate_to_new_connections_while_open_ones_keep_working() {
    let ca = DevCa::new().unwrap();
    let dir = temp_dir("reload");
    let old = ca.server_cert(["www.reload.test"]).unwrap();
    let files = write(&old, dir.path(), "www");
    let config = TlsConfig::builder()
        .certificate(&files.cert, &files.key)
        .build()
        .unwrap();
    let (addr, _server) = start(TlsLayer::new(config.clone()));
    // A client without session resumption, so every handshake shows the
    // certificate really served.
    let client = no_resumption(&ca);

    let open = Client::connect(client.clone(), addr, "www.reload.test")
        .await
        .unwrap();
    assert_eq!(&open.server_cert(), old.cert_der());
    let mut open = open.http().await;
    open.get().await.unwrap();

    let new = ca.server_cert(["www.reload.test"]).unwrap();
    write(&new, dir.path(), "www");
    config.reload().unwrap();

    let (cert, _) = fetch(client.clone(), addr, "www.reload.test").await;
    assert_eq!(
        &cert,
        new.cert_der(),
        "a new connection gets the new certificate"
    );
    let (_, body) = open.get().await.expect("the open connection still works");
    assert!(body.starts_with("sni=www.reload.test"), "{body}");
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_the_certificates_until_shutdown() {
    let ca = DevCa::new().unwrap();
    let dir = temp_dir("sighup");
    let old = ca.server_cert(["www.hup.test"]).unwrap();
    let files = write(&old, dir.path(), "www");
    let config = TlsConfig::builder()
        .certificate(&files.cert, &files.key)
        .build()
        .unwrap();
    let shutdown = Shutdown::new();
    let reloader = config.reload_on_sighup(shutdown.clone()).unwrap();
    let (addr, _server) = start(TlsLayer::new(config));
    let client = no_resumption(&ca);

    let new = ca.server_cert(["www.hup.test"]).unwrap();
    write(&new, dir.path(), "www");
    // This test runs in its own process under nextest; the handler is
    // installed, so the signal reloads instead of terminating.
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let deadline = Instant::now() + DEADLINE;
    loop {
        let (cert, _) = fetch(client.clone(), addr, "www.hup.test").await;
        if &cert == new.cert_der() {
            break;
        }
        assert_eq!(&cert, old.cert_der());
        assert!(Instant::now() < deadline, "SIGHUP did not reload in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    shutdown.trigger();
    tokio::time::timeout(DEADLINE, reloader)
        .await
        .expect("the reload task stops on shutdown")
        .unwrap();
}

#[tokio::test]
async fn a_broken_file_on_reload_keeps_the_old_certificate_and_names_the_file() {
    let ca = DevCa::new().unwrap();
    let dir = temp_dir("broken-reload");
    let old = ca.server_cert(["www.broken.test"]).unwrap();
    let files = write(&old, dir.path(), "www");
    let config = TlsConfig::builder()
        .certificate(&files.cert, &files.key)
        .build()
        .unwrap();
    let (addr, _server) = start(TlsLayer::new(config.clone()));
    let client = client_config(&ca);
    let cert_path = files.cert.display().to_string();
    let key_path = files.key.display().to_string();

    // 1. Corrupt PEM in the certificate file.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\n%%%\n").unwrap();
    match config.reload().unwrap_err() {
        TlsError::Load(Load::Pem { what, origin, .. }) => {
            assert_eq!(
                (what, origin.path()),
                (Material::Certificate, Some(files.cert.as_path()))
            );
        }
        other => panic!("unexpected error: {other}"),
    }
    let (cert, _) = fetch(client.clone(), addr, "www.broken.test").await;
    assert_eq!(&cert, old.cert_der());

    // 2. A new certificate beside the old key: they do not match.
    let other = ca.server_cert(["www.broken.test"]).unwrap();
    std::fs::write(&files.cert, other.cert_pem()).unwrap();
    let error = config.reload().unwrap_err();
    match &error {
        TlsError::Load(Load::KeyMismatch { certificate, key }) => {
            assert_eq!(
                (certificate.to_string(), key.to_string()),
                (cert_path, key_path.clone())
            );
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(error.to_string().contains(&key_path), "{error}");
    let (cert, _) = fetch(client.clone(), addr, "www.broken.test").await;
    assert_eq!(&cert, old.cert_der());

    // 3. The key file is gone.
    std::fs::remove_file(&files.key).unwrap();
    match config.reload().unwrap_err() {
        TlsError::Load(Load::ReadFile { what, path, .. }) => {
            assert_eq!((what, path), (Material::PrivateKey, files.key.clone()));
        }
        other => panic!("unexpected error: {other}"),
    }
    let (cert, _) = fetch(client, addr, "www.broken.test").await;
    assert_eq!(&cert, old.cert_der());
}

#[test]
fn bad_files_at_build_are_typed_errors_naming_the_file() {
    let ca = DevCa::new().unwrap();
    let dir = temp_dir("build-errors");
    let good = write(&ca.server_cert(["a.test"]).unwrap(), dir.path(), "good");
    let other = write(&ca.server_cert(["b.test"]).unwrap(), dir.path(), "other");

    let corrupt = dir.path().join("corrupt.crt");
    std::fs::write(&corrupt, "this is not PEM\n").unwrap();
    let err = TlsConfig::builder()
        .certificate(&corrupt, &good.key)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, TlsError::Load(Load::Pem { origin, .. }) if origin.path() == Some(corrupt.as_path())),
        "{err}"
    );

    let err = TlsConfig::builder()
        .certificate(&good.cert, &other.key)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, TlsError::Load(Load::KeyMismatch { .. })),
        "{err}"
    );

    let missing = dir.path().join("missing.key");
    let err = TlsConfig::builder()
        .certificate(&good.cert, &missing)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, TlsError::Load(Load::ReadFile { path, .. }) if path == &missing),
        "{err}"
    );

    let missing_ca = dir.path().join("missing-ca.pem");
    let err = TlsConfig::builder()
        .certificate(&good.cert, &good.key)
        .client_ca_file(&missing_ca)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, TlsError::Load(Load::ReadFile { what: Material::CaBundle, path, .. }) if path == &missing_ca),
        "{err}"
    );

    let err = TlsConfig::builder()
        .certificate_for(["bad name"], &good.cert, &good.key)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, TlsError::InvalidName { name, .. } if name == "bad name"),
        "{err}"
    );

    assert!(matches!(
        TlsConfig::builder().build().unwrap_err(),
        TlsError::NoCertificate
    ));
}

// ---------------------------------------------------------------- mTLS

#[tokio::test]
async fn mtls_refuses_clients_without_a_certificate_and_records_the_accepted_one() {
    let ca = DevCa::new().unwrap();
    let dir = temp_dir("mtls");
    let server_cert = ca.server_cert(["web1.internal"]).unwrap();
    let ca_file = ca.write_pem(dir.path()).unwrap();
    let config = TlsConfig::builder()
        .identity(server_cert.identity().unwrap())
        .client_ca_file(&ca_file)
        .build()
        .unwrap();
    let (addr, _server) = start(TlsLayer::new(config));

    // The load balancer's certificate from the CA: accepted and recorded.
    let lb = ca.client_cert("lb.internal").unwrap();
    let with_cert = ca
        .client_tls()
        .identity(lb.identity().unwrap())
        .alpn(["h2"])
        .build()
        .unwrap();
    let (_, body) = fetch(with_cert, addr, "web1.internal").await;
    assert!(body.contains("client_certs=1 "), "{body}");
    assert!(
        body.ends_with(&format!("client_cert={}", hex(lb.cert_der().as_ref()))),
        "{body}"
    );

    // No certificate: the TLS 1.3 client finishes its side of the
    // handshake, then learns of the refusal on its first read.
    let without = ca.client_tls().build().unwrap();
    assert_refused(without, addr, "web1.internal").await;

    // A certificate from another CA: refused too.
    let stranger = DevCa::with_name("stranger CA").unwrap();
    let foreign = ca
        .client_tls()
        .identity(stranger.client_cert("mallory").unwrap().identity().unwrap())
        .build()
        .unwrap();
    assert_refused(foreign, addr, "web1.internal").await;
}

#[tokio::test]
async fn allowed_client_names_admit_only_the_named_client_of_a_shared_ca() {
    let ca = DevCa::new().unwrap();
    let server_cert = ca.server_cert(["web2.internal"]).unwrap();
    let config = TlsConfig::builder()
        .identity(server_cert.identity().unwrap())
        .client_ca_pem(ca.cert_pem())
        .allowed_client_names(["LB.internal"])
        .build()
        .unwrap();
    let (addr, _server) = start(TlsLayer::new(config));

    let lb = ca.client_cert("lb.internal").unwrap();
    let lb_client = ca
        .client_tls()
        .identity(lb.identity().unwrap())
        .build()
        .unwrap();
    let (_, body) = fetch(lb_client, addr, "web2.internal").await;
    assert!(body.contains("client_certs=1 "), "{body}");

    // Same CA, another name: refused.
    let other = ca.client_cert("batch.internal").unwrap();
    let other_client = ca
        .client_tls()
        .identity(other.identity().unwrap())
        .build()
        .unwrap();
    assert_refused(other_client, addr, "web2.internal").await;

    // Names without a CA, or names that are not DNS names: typed errors.
    assert!(matches!(
        TlsConfig::builder()
            .identity(server_cert.identity().unwrap())
            .allowed_client_names(["lb.internal"])
            .build(),
        Err(TlsError::ClientNamesWithoutCa)
    ));
    assert!(matches!(
        TlsConfig::builder()
            .identity(server_cert.identity().unwrap())
            .client_ca_pem(ca.cert_pem())
            .allowed_client_names(["not a name"])
            .build(),
        Err(TlsError::InvalidName { name, .. }) if name == "not a name"
    ));
}

async fn assert_refused(config: Arc<rustls::ClientConfig>, addr: SocketAddr, host: &str) {
    let Ok(client) = Client::connect(config, addr, host).await else {
        return;
    };
    let result = tokio::time::timeout(DEADLINE, async {
        let mut http = client.http().await;
        http.get().await
    })
    .await
    .expect("refusal within the deadline");
    assert!(result.is_err(), "the server answered: {result:?}");
}

// ---------------------------------------------------------------- versions

/// A minimal TLS 1.1 ClientHello: no supported_versions extension, TLS 1.1
/// CBC cipher suites. A faithful TLS 1.1 client sends no
/// signature_algorithms either (a TLS 1.2 extension); with
/// `signature_algorithms` the hello gets past that check and reaches the
/// version check proper.
fn tls11_client_hello(signature_algorithms: bool) -> Vec<u8> {
    let mut hello = vec![0x03, 0x02]; // client_version TLS 1.1
    hello.extend_from_slice(&[0x42; 32]); // random
    hello.push(0); // no session id
                   // cipher suites: TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TLS_RSA_WITH_AES_128_CBC_SHA
    hello.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]);
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    if signature_algorithms {
        // ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
        hello.extend_from_slice(&[0x00, 0x0c, 0x00, 0x0d, 0x00, 0x08, 0x00, 0x06]);
        hello.extend_from_slice(&[0x04, 0x03, 0x08, 0x04, 0x04, 0x01]);
    } else {
        hello.extend_from_slice(&[0x00, 0x00]); // no extensions
    }
    let mut handshake = vec![0x01]; // client_hello
    let len = u32::try_from(hello.len()).unwrap().to_be_bytes();
    handshake.extend_from_slice(&len[1..]);
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake record, TLS 1.0 framing
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn a_tls_1_1_client_is_refused_and_a_tls_1_2_client_is_served() {
    let ca = DevCa::new().unwrap();
    let cert = ca.server_cert(["old.test", "127.0.0.1"]).unwrap();
    let config = TlsConfig::builder()
        .identity(cert.identity().unwrap())
        .build()
        .unwrap();
    let (addr, _server) = start(TlsLayer::new(config));

    // A faithful TLS 1.1 ClientHello is refused with a fatal alert
    // (handshake_failure: it lacks the signature_algorithms of TLS 1.2).
    assert_eq!(alert_for(addr, &tls11_client_hello(false)).await, 40);
    // Given that extension, the version check itself refuses it with a
    // fatal protocol_version alert.
    assert_eq!(alert_for(addr, &tls11_client_hello(true)).await, 70);

    // A real TLS 1.1 implementation, when the system has one.
    // It sends a hello without signature_algorithms and the server answers
    // with the handshake_failure alert, as for the faithful hello above.
    if let Some(output) = openssl_tls11(addr).await {
        assert!(
            output.contains("alert handshake failure") || output.contains("alert protocol version"),
            "{output}"
        );
        assert!(output.contains("Cipher is (NONE)"), "{output}");
    }

    // A client capped at TLS 1.2 is served, with TLS 1.2 recorded.
    let tls12 = rustls::ClientConfig::builder_with_provider(foobar_core::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(
            foobar_core::tls::pem::ca_bundle_from_pem(ca.cert_pem().as_bytes()).unwrap(),
        )
        .with_no_client_auth();
    let (_, body) = fetch(Arc::new(tls12), addr, "old.test").await;
    assert!(body.contains("version=TLSv1_2 "), "{body}");
}

/// Sends `hello`, reads until the server closes, and returns the
/// description of the fatal alert that must be all it sent.
async fn alert_for(addr: SocketAddr, hello: &[u8]) -> u8 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut reply))
        .await
        .expect("the server closes the connection")
        .ok();
    assert_eq!(
        reply.len(),
        7,
        "one alert record and nothing else: {reply:02x?}"
    );
    assert_eq!(reply[0], 0x15, "record type alert: {reply:02x?}");
    assert_eq!(reply[5], 2, "a fatal alert: {reply:02x?}");
    reply[6]
}

/// Runs `openssl s_client -tls1_1` against `addr` (security level 0 so
/// OpenSSL 3 really offers TLS 1.1); `None` when openssl is not installed.
async fn openssl_tls11(addr: SocketAddr) -> Option<String> {
    let child = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-tls1_1",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
            "-connect",
        ])
        .arg(addr.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("openssl finishes")
        .ok()?;
    assert!(!output.status.success(), "openssl connected with TLS 1.1");
    Some(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

// ---------------------------------------------------------------- timeout

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout_while_others_are_served() {
    let ca = DevCa::new().unwrap();
    let cert = ca.server_cert(["slow.test"]).unwrap();
    let config = TlsConfig::builder()
        .identity(cert.identity().unwrap())
        .build()
        .unwrap();
    let timeout = Duration::from_millis(300);
    let (addr, _server) = start(TlsLayer::new(config).handshake_timeout(timeout));

    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();

    // Meanwhile a good client is served.
    let (_, body) = fetch(client_config(&ca), addr, "slow.test").await;
    assert!(body.starts_with("sni=slow.test"), "{body}");

    // The silent one is closed by the server: EOF (or a reset), after the
    // timeout and well before the test deadline.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(DEADLINE, silent.read(&mut buf))
        .await
        .expect("the server closes the silent connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        started.elapsed() >= timeout,
        "closed after {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------- metrics

#[tokio::test]
async fn handshakes_are_counted_by_result() {
    let exporter = foobar_core::metrics::PrometheusExporter::install().unwrap();
    let ca = DevCa::new().unwrap();
    let cert = ca.server_cert(["count.test"]).unwrap();
    let config = TlsConfig::builder()
        .identity(cert.identity().unwrap())
        .build()
        .unwrap();
    let (addr, _server) = start(TlsLayer::new(config));

    fetch(client_config(&ca), addr, "count.test").await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&tls11_client_hello(true)).await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut sink)).await;

    let counted = |result: &str| {
        let line = format!("foobar_tls_handshakes_total{{result=\"{result}\"}} ");
        exporter
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str()).map(|v| v.trim().to_owned()))
    };
    let deadline = Instant::now() + DEADLINE;
    while counted("failure").as_deref() != Some("1") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counted("success").as_deref(), Some("1"));
    assert_eq!(counted("failure").as_deref(), Some("1"));
    assert!(exporter
        .render()
        .contains("foobar_tls_handshake_duration_seconds"));
}

/// The TLS 1.2 cipher suite a client that offers `suites`, in that order,
/// gets from the server at `addr`.
async fn negotiated_tls12_suite(
    ca: &DevCa,
    addr: SocketAddr,
    suites: &[rustls::SupportedCipherSuite],
) -> rustls::CipherSuite {
    let mut provider = (*foobar_core::tls::provider()).clone();
    provider.cipher_suites = suites.to_vec();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(
            foobar_core::tls::pem::ca_bundle_from_pem(ca.cert_pem().as_bytes()).unwrap(),
        )
        .with_no_client_auth();
    let client = Client::connect(Arc::new(config), addr, "order.test")
        .await
        .unwrap();
    let conn = client.stream.get_ref().1;
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    conn.negotiated_cipher_suite().unwrap().suite()
}

#[tokio::test]
async fn the_server_order_of_cipher_suites_wins_on_tls_1_2_by_default() {
    use rustls::crypto::aws_lc_rs::cipher_suite::{
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 as AES128,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 as AES256,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 as CHACHA,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 as RSA_AES256,
    };
    let ca = DevCa::new().unwrap();
    let identity = ca.server_cert(["order.test"]).unwrap().identity().unwrap();
    // The client prefers ChaCha20, then AES-128, then AES-256 (and offers
    // an RSA suite the ECDSA certificate cannot use).
    let client_order = [RSA_AES256, CHACHA, AES128, AES256];

    let default = TlsConfig::builder()
        .identity(identity.clone())
        .build()
        .unwrap();
    let (addr, _server) = start(TlsLayer::new(default));
    assert_eq!(
        negotiated_tls12_suite(&ca, addr, &client_order).await,
        AES256.suite(),
        "the server's first choice among the suites the client offers"
    );
    // A client that offers only suites further down the server's list
    // gets the best of them by the server's order.
    assert_eq!(
        negotiated_tls12_suite(&ca, addr, &[CHACHA, AES128]).await,
        AES128.suite()
    );

    // Turned off, the client's order decides.
    let client_decides = TlsConfig::builder()
        .identity(identity)
        .server_cipher_order(false)
        .build()
        .unwrap();
    let (addr, _server) = start(TlsLayer::new(client_decides));
    assert_eq!(
        negotiated_tls12_suite(&ca, addr, &client_order).await,
        CHACHA.suite()
    );
}

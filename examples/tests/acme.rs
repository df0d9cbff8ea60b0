//! The `lb` role with certificates from ACME: a private Pebble (the ACME
//! test server, Debian package `pebble`) validates for real over
//! TLS-ALPN-01 or HTTP-01, its DNS answering 127.0.0.1 for every name; the
//! `lb` binary runs as its own process in front of an HTTPS backend; a
//! client that trusts only Pebble's root goes through it.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use foobar_core::tls::{server_name, ClientTls, DevCa};
use foobar_core::{PlainTcp, Server, Shutdown};
use foobar_examples::pebble::{free_port, Pebble, PebbleOptions};
use foobar_guard::tls::{TlsConfig, TlsLayer};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use support::admin_get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceBuilder;

const DEADLINE: Duration = Duration::from_secs(60);
const NAMES: [&str; 2] = ["www.foobar.test", "api.foobar.test"];

/// Stops a server when dropped.
struct ShutdownOnDrop(Shutdown);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

/// An HTTPS web server on a random loopback port with a certificate for
/// 127.0.0.1 from `ca`: `/healthz` and a greeting.
fn backend(ca: &DevCa) -> (SocketAddr, ShutdownOnDrop) {
    let shutdown = Shutdown::new();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .shutdown(shutdown.clone())
        .grace_period(Duration::from_millis(100))
        .build()
        .unwrap();
    let addr = server.local_addr();
    let identity = ca.server_cert(["127.0.0.1"]).unwrap().identity().unwrap();
    let tls = TlsConfig::builder().identity(identity).build().unwrap();
    let app = tower::service_fn(|_req: Request<foobar_core::RequestBody>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
            b"hello from the backend",
        ))))
    });
    let stage = ServiceBuilder::new()
        .layer(TlsLayer::new(tls))
        .service(PlainTcp);
    tokio::spawn(server.serve_connections(stage, app));
    (addr, ShutdownOnDrop(shutdown))
}

/// The `lb` binary, killed on drop.
struct Lb {
    child: Child,
    log: PathBuf,
}

impl Lb {
    fn start(args: &[String], log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lb"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start the lb binary");
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET over a new TLS connection to `addr` for `host`, trusting only
/// `root_pem`: (status, body).
async fn fetch(
    root_pem: &str,
    addr: SocketAddr,
    host: &str,
) -> Result<(StatusCode, String), String> {
    let config = ClientTls::new().ca_pem(root_pem).build().unwrap();
    let exchange = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(server_name(host).unwrap(), tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let request = Request::get("/")
            .header("host", host)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// A plain-HTTP/1.0 GET: the whole reply.
async fn plain_get(addr: SocketAddr, path: &str, host: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut reply))
        .await
        .unwrap()
        .unwrap();
    reply
}

fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("foobar-lb-acme-{tag}-"))
        .tempdir()
        .unwrap()
}

/// A fresh `lb` with an ACME configuration and no certificate file gets a
/// certificate for both names from Pebble with `challenge`, and proxies
/// for a client that trusts only Pebble's root.
async fn lb_obtains_a_certificate(challenge: &str, extra: &[&str]) {
    let dir = temp_dir(challenge);
    let (listen, http, admin) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    let pebble = Pebble::start(
        &dir.path().join("pebble"),
        &PebbleOptions::tls_alpn_01(listen).http_port(http),
    )
    .await
    .unwrap();
    let ca = DevCa::new().unwrap();
    let upstream_ca = ca.write_pem(dir.path()).unwrap();
    let (backend, _backend) = backend(&ca);
    let args: Vec<String> = [
        format!("--listen=127.0.0.1:{listen}"),
        format!("--admin=127.0.0.1:{admin}"),
        format!("--http-listen=127.0.0.1:{http}"),
        format!("--backend=https://{backend}"),
        format!("--upstream-ca={}", upstream_ca.display()),
        "--workers=2".to_owned(),
        format!("--acme-directory={}", pebble.directory()),
        format!("--acme-ca-file={}", pebble.api_ca().display()),
        format!("--acme-storage={}", dir.path().join("acme").display()),
        format!("--acme-name={}", NAMES[0]),
        format!("--acme-name={}", NAMES[1]),
        "--acme-contact=ops@foobar.test".to_owned(),
        format!("--acme-challenge={challenge}"),
    ]
    .into_iter()
    .chain(extra.iter().map(|a| (*a).to_owned()))
    .collect();
    let lb = Lb::start(&args, dir.path().join("lb.log"));
    let addr = SocketAddr::from(([127, 0, 0, 1], listen));
    let root = pebble.root_pem().await.unwrap();

    // Polled until the certificate is issued, or the deadline.
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        match fetch(&root, addr, NAMES[0]).await {
            Ok((StatusCode::OK, body)) => {
                assert_eq!(body, "hello from the backend");
                break;
            }
            other => assert!(
                std::time::Instant::now() < deadline,
                "no request through the lb with Pebble's certificate ({other:?}):\n{}\n{}",
                lb.log(),
                pebble.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = fetch(&root, addr, NAMES[1]).await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "hello from the backend")
    );
    // A client that trusts some other root refuses it.
    assert!(fetch(DevCa::new().unwrap().cert_pem(), addr, NAMES[0])
        .await
        .is_err());

    // The status page has the certificate's row, up.
    let admin = SocketAddr::from(([127, 0, 0, 1], admin));
    let (status, json) = admin_get(admin, "/status.json").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let source = json["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "certificates"))
        .unwrap_or_else(|| panic!("no certificates on the status page: {json}"));
    let row = &source["snapshot"]["data"]["certificates"][0];
    assert_eq!(row["names"], "www.foobar.test, api.foobar.test", "{row}");
    assert_eq!(
        (&row["health"], &row["issued"]),
        (&"up".into(), &1.into()),
        "{row}"
    );
    let (_, metrics) = admin_get(admin, "/metrics").await.unwrap();
    assert!(
        metrics.contains("foobar_acme_certificate_expiry_days{name=\"api.foobar.test\"}")
            && metrics.contains("foobar_acme_renewals_total{result=\"success\"} 1"),
        "{metrics}"
    );
    // The account key and the certificate are stored.
    let stored = std::fs::read_dir(dir.path().join("acme"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "pem"))
        })
        .count();
    assert_eq!(stored, 1);

    // The plain-HTTP listener redirects everything but ACME to HTTPS.
    let reply = plain_get(
        SocketAddr::from(([127, 0, 0, 1], http)),
        "/shop?x=1",
        NAMES[0],
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 308"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains(&format!(
            "location: https://www.foobar.test:{listen}/shop?x=1"
        )),
        "{reply}"
    );
}

#[tokio::test]
async fn the_lb_obtains_a_certificate_over_tls_alpn_01_and_proxies_with_it() {
    lb_obtains_a_certificate("tls-alpn-01", &[]).await;
}

#[tokio::test]
async fn the_lb_obtains_a_certificate_over_http_01_and_proxies_with_it() {
    // With stapling on: Pebble's certificates name no OCSP responder, so
    // they are served unstapled.
    lb_obtains_a_certificate("http-01", &["--ocsp-stapling"]).await;
}

#[tokio::test]
async fn the_stack_in_pebble_mode_serves_its_site_with_pebbles_certificate() {
    let stack = support::Stack::start_with("acme-pebble", 1, 100_000, &["--acme-pebble"]).await;
    assert_eq!(stack.info.acme_names, ["www.foobar.test"]);
    let root_file = stack
        .info
        .acme_root
        .clone()
        .expect("Pebble's root in stack.json");
    let root = std::fs::read_to_string(&root_file).unwrap();
    // The stack announces itself once the certificate is served.
    let announced = support::wait_until(DEADLINE, || async {
        stack.full_log().contains("foobar stack is up")
    })
    .await;
    assert!(announced, "{}", stack.log());
    assert!(
        stack.full_log().contains(&format!(
            "curl --cacert {} --resolve www.foobar.test:",
            root_file.display()
        )),
        "{}",
        stack.log()
    );
    let (status, _) = fetch(&root, stack.info.lb, "www.foobar.test")
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", stack.log()));
    assert_eq!(status, StatusCode::OK);
    // The development certificate still serves its other names.
    let dev_root = std::fs::read_to_string(&stack.info.ca).unwrap();
    let (status, _) = fetch(&dev_root, stack.info.lb, "localhost").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(fetch(&dev_root, stack.info.lb, "www.foobar.test")
        .await
        .is_err());
}

#[test]
fn acme_configuration_errors_name_the_flag() {
    use foobar_examples::config::Parsed;
    use foobar_examples::lb::{AcmeChallenge, LbArgs, LbConfig};
    let dir = temp_dir("config");
    let ca = dir.path().join("ca.pem");
    let config = |extra: &[&str]| {
        let mut args = vec![
            "lb".to_owned(),
            "--backend=https://127.0.0.1:1".to_owned(),
            format!("--upstream-ca={}", ca.display()),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        LbConfig::from_args(&Parsed::<LbArgs>::from_args(args).unwrap())
    };
    let error = |extra: &[&str]| config(extra).unwrap_err().to_string();
    let acme = "--acme-directory=https://127.0.0.1:14000/dir";
    let storage = format!("--acme-storage={}", dir.path().display());
    assert_eq!(
        error(&[]),
        "missing --cert (or `cert` in the configuration file)"
    );
    assert!(error(&[acme, &storage]).contains("--acme-name"));
    assert!(error(&[acme, "--acme-name=a.test"]).contains("--acme-storage"));
    let message = error(&[acme, &storage, "--acme-name=*.foobar.test"]);
    assert!(
        message.starts_with("--acme-name:") && message.contains("DNS-01"),
        "{message}"
    );
    let message = error(&[
        acme,
        &storage,
        "--acme-name=a.test",
        "--acme-challenge=http-01",
    ]);
    assert!(
        message.starts_with("--acme-challenge:") && message.contains("--http-listen"),
        "{message}"
    );
    let message = error(&[
        "--acme-directory=http://ca.test/dir",
        &storage,
        "--acme-name=a.test",
    ]);
    assert!(message.starts_with("--acme-directory:"), "{message}");
    let message = error(&[
        acme,
        &storage,
        "--acme-name=a.test",
        "--acme-ca-file=/nonexistent.pem",
    ]);
    assert!(
        message.starts_with("--acme-ca-file:") && message.contains("/nonexistent.pem"),
        "{message}"
    );
    let message = error(&["--acme-name=a.test"]);
    assert!(
        message.starts_with("--acme-name: needs --acme-directory"),
        "{message}"
    );

    let ok = config(&[
        acme,
        &storage,
        "--acme-name=a.test",
        "--acme-contact=ops@a.test",
    ])
    .unwrap();
    let acme = ok.acme.unwrap();
    assert_eq!(acme.contacts, ["mailto:ops@a.test"]);
    assert!(ok.cert.is_none());
    // From a file, errors name the file and line.
    let file = dir.path().join("lb.toml");
    std::fs::write(
        &file,
        "backend = [\"https://127.0.0.1:1\"]\nacme-directory = \"https://127.0.0.1:1/dir\"\nacme-challenge = \"dns-01\"\n",
    )
    .unwrap();
    let message = error(&[&format!("--config={}", file.display())]);
    assert!(
        message.contains("lb.toml:3: key `acme-challenge`"),
        "{message}"
    );
    // Every ACME option from a file; a flag overrides the file.
    std::fs::write(
        &file,
        format!(
            "backend = [\"https://127.0.0.1:1\"]\nhttp-listen = \"127.0.0.1:8080\"\nocsp-stapling = true\n\
             acme-directory = \"https://127.0.0.1:1/dir\"\nacme-name = [\"a.test\", \"b.test\"]\n\
             acme-storage = \"{}\"\nacme-contact = [\"mailto:ops@a.test\"]\nacme-challenge = \"http-01\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let from_file = config(&[&format!("--config={}", file.display())]).unwrap();
    let acme = from_file.acme.unwrap();
    assert_eq!(acme.names, ["a.test", "b.test"]);
    assert_eq!(acme.challenge, AcmeChallenge::Http01);
    assert!(from_file.ocsp_stapling);
    assert_eq!(
        from_file.http_listen,
        Some("127.0.0.1:8080".parse().unwrap())
    );
    let overridden = config(&[
        &format!("--config={}", file.display()),
        "--acme-name=c.test",
        "--acme-challenge=tls-alpn-01",
    ])
    .unwrap();
    let acme = overridden.acme.unwrap();
    assert_eq!(
        (acme.names, acme.challenge),
        (vec!["c.test".to_owned()], AcmeChallenge::TlsAlpn01)
    );
}

#[test]
fn stack_acme_options_are_checked() {
    use foobar_examples::config::Parsed;
    use foobar_examples::stack::{AcmeCa, StackArgs, StackConfig};
    let config = |extra: &[&str]| {
        let args = std::iter::once("stack").chain(extra.iter().copied());
        StackConfig::from_args(&Parsed::<StackArgs>::from_args(args).unwrap())
    };
    let pebble = config(&["--acme-pebble"]).unwrap().acme.unwrap();
    assert!(matches!(pebble.ca, AcmeCa::Pebble));
    assert_eq!(pebble.names, ["www.foobar.test"]);
    assert!(config(&[]).unwrap().acme.is_none());
    let error = config(&["--acme-directory=https://ca.test/dir"]).unwrap_err();
    assert!(error.to_string().contains("--acme-name"), "{error}");
    let error = config(&["--acme-name=www.foobar.test"]).unwrap_err();
    assert!(error.to_string().starts_with("--acme-name:"), "{error}");
    let error = config(&["--acme-pebble", "--acme-ca-file=/x.pem"]).unwrap_err();
    assert!(error.to_string().starts_with("--acme-ca-file:"), "{error}");
    // clap refuses both CAs at once.
    assert!(Parsed::<StackArgs>::from_args([
        "stack",
        "--acme-pebble",
        "--acme-directory=https://ca.test/dir"
    ])
    .is_err());
}

//! OCSP stapling against `openssl ocsp` as the responder: a test CA made
//! by the openssl command line, an index of good and revoked
//! certificates, and `openssl ocsp -reqin/-respout` answering the POSTs a
//! small HTTP front on 127.0.0.1 receives (`openssl ocsp -port` would
//! listen on every interface). `openssl s_client -status` is the client
//! that reads the staple.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use foobar_core::{PlainTcp, Server, Shutdown};
use foobar_guard::tls::ocsp::OcspReport;
use foobar_guard::tls::{TlsConfig, TlsLayer};
use http::{Request, Response};
use http_body_util::Full;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceBuilder;

const DEADLINE: Duration = Duration::from_secs(20);

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA and certificates naming `responder` as their OCSP responder.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("foobar-guard-ocsp-")
            .tempdir()
            .unwrap();
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=foobar OCSP test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            ],
        );
        std::fs::write(dir.path().join("index.txt"), "").unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues `name` with this serial (hex) and responder URL; writes
    /// `<name>.chain` (certificate, then the CA) and `<name>.key`, and
    /// records it in the responder's index, revoked or not.
    fn issue(&self, name: &str, serial: &str, responder: &str, revoked: bool) {
        let ext = format!(
            "subjectAltName=DNS:{name}\nauthorityInfoAccess=OCSP;URI:{responder}\n\
             basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        );
        std::fs::write(self.path(&format!("{name}.ext")), ext).unwrap();
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        openssl(
            self.dir.path(),
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            self.dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &format!("0x{serial}"),
                "-days",
                "1",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &crt,
            ],
        );
        let chain = [
            std::fs::read_to_string(self.path(&crt)).unwrap(),
            std::fs::read_to_string(self.path("ca.pem")).unwrap(),
        ]
        .concat();
        std::fs::write(self.path(&format!("{name}.chain")), chain).unwrap();
        let line = if revoked {
            format!("R\t301231235959Z\t261201000000Z\t{serial}\tunknown\t/CN={name}\n")
        } else {
            format!("V\t301231235959Z\t\t{serial}\tunknown\t/CN={name}\n")
        };
        let mut index = std::fs::read_to_string(self.path("index.txt")).unwrap();
        index.push_str(&line);
        std::fs::write(self.path("index.txt"), index).unwrap();
    }
}

/// Answers OCSP POSTs on `listener` with `openssl ocsp` over the index in
/// `dir`; stops when dropped.
struct Responder {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Responder {
    fn start(listener: TcpListener, dir: PathBuf) -> Self {
        let task = tokio::spawn(async move {
            let mut count = 0u32;
            while let Ok((stream, _)) = listener.accept().await {
                count += 1;
                let dir = dir.clone();
                tokio::spawn(async move { answer(stream, &dir, count).await });
            }
        });
        Self { task }
    }
}

async fn answer(mut stream: TcpStream, dir: &Path, count: u32) -> Option<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))?
        .trim()
        .parse()
        .ok()?;
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let (request, response) = (format!("req-{count}.der"), format!("resp-{count}.der"));
    tokio::fs::write(dir.join(&request), &buf[head_end..head_end + length])
        .await
        .ok()?;
    let status = tokio::process::Command::new("openssl")
        .current_dir(dir)
        .args([
            "ocsp",
            "-index",
            "index.txt",
            "-rsigner",
            "ca.pem",
            "-rkey",
            "ca.key",
        ])
        .args([
            "-CA", "ca.pem", "-ndays", "1", "-reqin", &request, "-respout", &response,
        ])
        .output()
        .await
        .ok()?;
    if !status.status.success() {
        return None;
    }
    let body = tokio::fs::read(dir.join(&response)).await.ok()?;
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/ocsp-response\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(&body).await.ok()
}

/// `openssl s_client -status` against `addr` for `name`: its output.
async fn s_client(addr: SocketAddr, name: &str) -> String {
    let output = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-servername",
                name,
                "-status",
            ])
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("s_client finishes")
    .expect("openssl runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn serve(config: TlsConfig) -> (SocketAddr, Shutdown) {
    let shutdown = Shutdown::new();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .shutdown(shutdown.clone())
        .grace_period(Duration::from_millis(100))
        .build()
        .unwrap();
    let addr = server.local_addr();
    let app = tower::service_fn(|_req: Request<foobar_core::RequestBody>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
    });
    let stage = ServiceBuilder::new()
        .layer(TlsLayer::new(config))
        .service(PlainTcp);
    tokio::spawn(server.serve_connections(stage, app));
    (addr, shutdown)
}

#[tokio::test]
async fn good_and_revoked_responses_are_stapled_and_a_dead_responder_leaves_the_handshake_unstapled(
) {
    let pki = Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let responder_url = format!("http://{}/", listener.local_addr().unwrap());
    // Nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/", dead.local_addr().unwrap());
    drop(dead);
    pki.issue("good.test", "1001", &responder_url, false);
    pki.issue("revoked.test", "1002", &responder_url, true);
    pki.issue("down.test", "1003", &dead_url, false);
    let responder = Responder::start(listener, pki.dir.path().to_path_buf());

    let recorder = PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let config = metrics::with_local_recorder(&recorder, || {
        TlsConfig::builder()
            .certificate(pki.path("good.test.chain"), pki.path("good.test.key"))
            .certificate(pki.path("revoked.test.chain"), pki.path("revoked.test.key"))
            .certificate(pki.path("down.test.chain"), pki.path("down.test.key"))
            .ocsp_stapling(true)
            .build()
    })
    .unwrap();
    let (addr, shutdown) = serve(config.clone());

    // Before any fetch, nothing is stapled and handshakes work.
    let before = s_client(addr, "good.test").await;
    assert!(
        before.contains("OCSP response: no response sent"),
        "{before}"
    );

    let report = tokio::time::timeout(DEADLINE, config.refresh_ocsp())
        .await
        .unwrap();
    let mut expected = OcspReport::default();
    (
        expected.stapled,
        expected.unstapled,
        expected.fetched,
        expected.failed,
    ) = (2, 1, 2, 1);
    assert_eq!(report, expected);

    let good = s_client(addr, "good.test").await;
    assert!(good.contains("OCSP Response Status: successful"), "{good}");
    assert!(good.contains("Cert Status: good"), "{good}");
    let revoked = s_client(addr, "revoked.test").await;
    assert!(revoked.contains("Cert Status: revoked"), "{revoked}");
    let down = s_client(addr, "down.test").await;
    assert!(down.contains("OCSP response: no response sent"), "{down}");
    assert!(
        down.contains("Server certificate"),
        "the handshake completed: {down}"
    );

    let text = metrics.render();
    assert!(
        text.contains("foobar_tls_ocsp_fetches_total{result=\"success\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("foobar_tls_ocsp_fetches_total{result=\"failure\"} 1"),
        "{text}"
    );

    // With the responder stopped, the valid staples stay (nothing is due)
    // and a reload keeps them.
    drop(responder);
    config.reload().unwrap();
    let report = config.refresh_ocsp().await;
    assert_eq!((report.stapled, report.fetched), (2, 0));
    let good = s_client(addr, "good.test").await;
    assert!(good.contains("Cert Status: good"), "{good}");
    shutdown.trigger();
}

#[tokio::test]
async fn the_background_task_staples_without_being_asked() {
    let pki = Pki::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let responder_url = format!("http://{}/", listener.local_addr().unwrap());
    pki.issue("www.test", "2001", &responder_url, false);
    let _responder = Responder::start(listener, pki.dir.path().to_path_buf());
    let config = TlsConfig::builder()
        .certificate(pki.path("www.test.chain"), pki.path("www.test.key"))
        .ocsp_stapling(true)
        .build()
        .unwrap();
    let (addr, shutdown) = serve(config.clone());
    let task = config.staple_ocsp(shutdown.clone());

    let started = std::time::Instant::now();
    loop {
        let output = s_client(addr, "www.test").await;
        if output.contains("Cert Status: good") {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "never stapled: {output}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.trigger();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("the task stops on shutdown")
        .unwrap();
}

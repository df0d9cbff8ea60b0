//! Starting the `stack` binary and talking to it as a user would: HTTPS
//! through the load balancer, plain HTTP to the admin listeners.
#![allow(dead_code, unreachable_pub)]

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foobar_examples::stack::StackInfo;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A running stack.
pub struct Stack {
    process: StackProcess,
    pub info: StackInfo,
}

/// The stack's process; stopped gracefully (SIGTERM) when dropped, so its
/// private database servers and role processes go with it.
struct StackProcess {
    child: Child,
    dir: PathBuf,
}

impl StackProcess {
    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("stack.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(80).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// `N` distinct free ports on 127.0.0.1, below the kernel's ephemeral range
/// (32768 and up on Linux): the private MariaDB servers and every client
/// take ports from that range, so none of them can take one of these
/// between this check and the stack's bind. All are held until the last is
/// chosen, so no port is handed out twice.
fn free_ports<const N: usize>() -> [SocketAddr; N] {
    use std::hash::BuildHasher;
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    let start = std::hash::RandomState::new().hash_one(std::process::id()) % u64::from(SPAN);
    let held: Vec<TcpListener> = (0..SPAN)
        .map(|i| FIRST + (u16::try_from(start).unwrap_or(0) + i) % SPAN)
        .filter_map(|port| TcpListener::bind(("127.0.0.1", port)).ok())
        .take(N)
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap())
}

/// The first of `len` consecutive free ports on 127.0.0.1 (below the
/// ephemeral range, as [`free_ports`]), none of them in `avoid`.
fn free_run(len: u16, avoid: &[SocketAddr]) -> SocketAddr {
    use std::hash::BuildHasher;
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    let start = std::hash::RandomState::new().hash_one(std::process::id()) % u64::from(SPAN);
    (0..SPAN)
        .map(|i| FIRST + (u16::try_from(start).unwrap_or(0) + i) % SPAN)
        .filter(|first| {
            first
                .checked_add(len)
                .is_some_and(|end| end <= FIRST + SPAN)
        })
        .find(|first| {
            let ports: Vec<u16> = (*first..*first + len).collect();
            let held: Vec<TcpListener> = ports
                .iter()
                .filter(|port| !avoid.iter().any(|a| a.port() == **port))
                .filter_map(|port| TcpListener::bind(("127.0.0.1", *port)).ok())
                .collect();
            held.len() == ports.len()
        })
        .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        .expect("a run of free ports")
}

impl Stack {
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, 1, 100_000, &[]).await
    }

    /// A stack with `lbs` load balancers, a limit of `rate` requests per
    /// second per client, and these extra flags.
    pub async fn start_with(name: &str, lbs: u16, rate: u32, extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("foobar-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ports: [SocketAddr; 4] = free_ports();
        let [web1, web1_admin, web2, web2_admin] = ports;
        let lb = free_run(lbs, &ports);
        let mut taken = ports.to_vec();
        taken.extend((0..lbs).map(|i| SocketAddr::from(([127, 0, 0, 1], lb.port() + i))));
        let lb_admin = free_run(lbs, &taken);
        let webs = [(web1, web1_admin), (web2, web2_admin)];
        let mut command = Command::new(env!("CARGO_BIN_EXE_stack"));
        command
            .arg(format!("--dir={}", dir.display()))
            .arg(format!("--lb={lb}"))
            .arg(format!("--lb-admin={lb_admin}"))
            .arg(format!("--rate={rate}"))
            .arg(format!("--lbs={lbs}"))
            .args(extra)
            .stdin(Stdio::null());
        let log = std::fs::File::create(dir.join("stack.log")).unwrap();
        command.stdout(log.try_clone().unwrap()).stderr(log);
        for (web, admin) in webs {
            command
                .arg(format!("--web={web}"))
                .arg(format!("--web-admin={admin}"));
        }
        let mut process = StackProcess {
            child: command.spawn().expect("start the stack binary"),
            dir: dir.clone(),
        };
        let json = dir.join("stack.json");
        let started = wait_until(Duration::from_secs(90), || {
            let exited = process.child.try_wait().ok().flatten();
            let exists = json.exists();
            async move {
                assert!(exited.is_none(), "the stack exited with {exited:?}");
                exists
            }
        })
        .await;
        assert!(started, "no stack.json: {}", process.log());
        let info = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let stack = Self { process, info };
        let admins: Vec<SocketAddr> = std::iter::once(stack.info.lb_admin)
            .chain(stack.info.lbs.iter().map(|lb| lb.admin))
            .chain(stack.info.webs.iter().map(|w| w.admin))
            .collect();
        let ready = wait_until(Duration::from_secs(60), || async {
            for admin in &admins {
                if admin_get(*admin, "/readyz").await.map(|(s, _)| s) != Some(StatusCode::OK) {
                    return false;
                }
            }
            true
        })
        .await;
        assert!(ready, "the stack never became ready: {}", stack.log());
        // Every backend up at the load balancer (health checks have run).
        let all_up = wait_until(Duration::from_secs(30), || async {
            stack.backends_up().await == 2
        })
        .await;
        assert!(all_up, "backends not all up: {}", stack.log());
        stack
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn dir(&self) -> &Path {
        &self.process.dir
    }

    /// How many backends the load balancer reports up.
    pub async fn backends_up(&self) -> usize {
        self.backend_health()
            .await
            .iter()
            .filter(|(_, h)| h == "up")
            .count()
    }

    /// (backend id, health) as the load balancer's status reports them.
    pub async fn backend_health(&self) -> Vec<(String, String)> {
        let Some((_, body)) = admin_get(self.info.lb_admin, "/status.json").await else {
            return Vec::new();
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else {
            return Vec::new();
        };
        json["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| {
                s["snapshot"]["data"]["backends"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|b| {
                (
                    b["id"].as_str().unwrap_or_default().to_owned(),
                    b["health"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// The database writer as web server `index` sees it.
    pub async fn db_writer(&self, index: usize) -> Option<String> {
        let (_, body) = admin_get(self.info.webs[index].admin, "/status.json").await?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["sources"]
            .as_array()?
            .iter()
            .find_map(|s| s["snapshot"]["data"]["writer"].as_str().map(str::to_owned))
    }

    /// A client that trusts the stack's CA, from 127.0.0.1.
    pub fn client(&self) -> HttpsClient {
        HttpsClient::new(&[self.info.ca.as_path()], None, None)
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.info.lb)
    }
}

impl Drop for StackProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // Keep the files of a failed test for a look.
                if !std::thread::panicking() {
                    let _ = std::fs::remove_dir_all(&self.dir);
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTPS client trusting the given CA files, optionally from a given
/// source address and with a client certificate.
#[derive(Clone)]
pub struct HttpsClient {
    inner: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpsClient {
    pub fn new(cas: &[&Path], source: Option<IpAddr>, identity: Option<(&Path, &Path)>) -> Self {
        let config = client_tls(cas, identity).build().unwrap();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(3)));
        if let Some(source) = source {
            http.set_local_address(Some(source));
        }
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*config).clone())
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Self {
            inner: Client::builder(TokioExecutor::new()).build(https),
        }
    }

    /// Sends a request; `Err` is a transport failure (refused, reset, TLS).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<(StatusCode, http::HeaderMap, String), String> {
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req = builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(20), self.inner.request(req))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        ))
    }

    pub async fn get(&self, url: &str) -> Result<(StatusCode, http::HeaderMap, String), String> {
        self.send(Method::GET, url, &[], "").await
    }
}

/// TLS settings trusting `cas`, with ALPN for h2 and HTTP/1.1.
pub fn tls_config(cas: &[&Path], identity: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    client_tls(cas, identity)
        .alpn(["h2", "http/1.1"])
        .build()
        .unwrap()
}

fn client_tls(cas: &[&Path], identity: Option<(&Path, &Path)>) -> foobar_core::tls::ClientTls {
    let mut tls = foobar_core::tls::ClientTls::new();
    for ca in cas {
        tls = tls.ca_file(ca);
    }
    if let Some((cert, key)) = identity {
        tls = tls.identity_files(cert, key);
    }
    tls
}

/// A GET on a plain-HTTP admin listener: (status, body).
pub async fn admin_get(admin: SocketAddr, path: &str) -> Option<(StatusCode, String)> {
    let stream = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(admin),
    )
    .await
    .ok()?
    .ok()?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", admin.to_string())
        .body(http_body_util::Empty::<Bytes>::new())
        .ok()?;
    let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .ok()?
        .ok()?;
    let status = response.status();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Polls `check` until it holds or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Process ids whose command line has an argument equal to `arg`.
pub fn pids_with_arg(arg: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

impl Stack {
    /// The stack's whole log (every role's output).
    pub fn full_log(&self) -> String {
        std::fs::read_to_string(self.process.dir.join("stack.log")).unwrap_or_default()
    }
}

/// Where tests leave files to look at (screenshots): `target/test-output/`.
pub fn test_output_dir() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = target
        .parent()
        .map_or_else(|| target.join("test-output"), |t| t.join("test-output"));
    std::fs::create_dir_all(&dir).expect("create test-output dir");
    dir
}

/// Runs headless Chromium (Debian `chromium`, which `./scripts/test`
/// installs) with `args`, within 90 s: (stdout, stderr).
pub async fn chromium(args: &[String]) -> (String, String) {
    let profile = tempfile_dir("chromium-profile");
    let mut command = tokio::process::Command::new("chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("chromium finishes within 90 s")
        .expect("chromium runs (apt-get install chromium)");
    let _ = std::fs::remove_dir_all(&profile);
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn tempfile_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("foobar-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The metric families of a Prometheus text rendering that have samples
/// but no `# HELP` line.
pub fn families_without_help(text: &str) -> Vec<String> {
    let mut helped = std::collections::HashSet::new();
    let mut types = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap_or_default());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                types.insert(name, kind);
            }
        }
    }
    let mut missing = std::collections::BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                matches!(types.get(base), Some(&"histogram" | &"summary")).then_some(base)
            })
            .unwrap_or(name);
        if !helped.contains(family) {
            missing.insert(family.to_owned());
        }
    }
    missing.into_iter().collect()
}

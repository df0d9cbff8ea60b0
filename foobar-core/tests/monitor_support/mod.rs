//! Helpers for the monitoring tests: Debian binaries, child processes, an
//! admin server on a random loopback port, plain HTTP requests.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foobar_core::admin::Admin;
use foobar_core::{Server, Shutdown};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

static APT_UPDATE: Once = Once::new();

/// The path of `binary`, installing Debian `package` when it is missing and
/// this runs as root; panics with what to install otherwise.
pub fn require_binary(binary: &str, package: &str) -> PathBuf {
    if let Some(path) = find_in_path(binary) {
        return path;
    }
    if is_root() {
        let install = || {
            Command::new("apt-get")
                .args([
                    "-o",
                    "DPkg::Lock::Timeout=600",
                    "install",
                    "-y",
                    "--no-install-recommends",
                    package,
                ])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
        };
        let installed = install().is_ok_and(|s| s.success());
        if !installed {
            APT_UPDATE.call_once(|| {
                let _ = Command::new("apt-get")
                    .args(["-o", "DPkg::Lock::Timeout=600", "update"])
                    .status();
            });
            let _ = install();
        }
        if let Some(path) = find_in_path(binary) {
            return path;
        }
    }
    panic!(
        "this test needs `{binary}` from the Debian package `{package}`: \
         run `apt-get install -y {package}` (as root) and try again"
    );
}

fn find_in_path(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A loopback port that was free a moment ago (for programs that cannot be
/// told to pick their own and report it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// A child process killed (and reaped) when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    pub name: &'static str,
}

impl ChildGuard {
    pub fn spawn(name: &'static str, command: &mut Command, log: &Path) -> Self {
        let out = std::fs::File::create(log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            child: Some(child),
            name,
        }
    }

    /// Kills the process and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh temporary directory under the target dir, unique within this
/// process (tests may share a process under `cargo test`).
pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// `target/test-output/`, created if needed.
pub fn test_output_dir() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = target
        .parent()
        .map_or_else(|| target.join("test-output"), |t| t.join("test-output"));
    std::fs::create_dir_all(&dir).expect("create test-output dir");
    dir
}

/// Serves `admin` on a random loopback port until `shutdown` fires.
pub fn serve_admin(admin: Admin, shutdown: &Shutdown) -> SocketAddr {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .expect("address")
        .shutdown(shutdown.clone())
        .grace_period(Duration::from_secs(1))
        .build()
        .expect("bind admin");
    let addr = server.local_addr();
    tokio::spawn(server.serve(admin));
    addr
}

/// One HTTP/1.1 GET with optional extra headers; panics if the server
/// cannot be reached.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    try_get(addr, path, headers)
        .await
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// One HTTP/1.1 GET with optional extra headers, for a server that may not
/// be up (yet, or any more).
pub async fn try_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, http::HeaderMap, String), String> {
    try_request(addr, http::Method::GET, path, headers).await
}

/// One HTTP/1.1 request without a body.
pub async fn try_request(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, http::HeaderMap, String), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after
/// `limit` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

/// The value of the first sample of `name` (without labels) in a
/// Prometheus text rendering, as written.
pub fn sample_text<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
}

/// Runs headless Chromium (Debian `chromium`, installed when missing) with
/// `args` and a throw-away profile; its stdout and stderr.
pub async fn chromium(args: &[String]) -> (String, String) {
    let binary = require_binary("chromium", "chromium");
    let profile = temp_dir("chromium-profile");
    let mut command = tokio::process::Command::new(binary);
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
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

//! Backends discovered from DNS, answered by a private dnsmasq on a random
//! loopback port (its own config, hosts file and TTL of one second): A
//! records and SRV records change under load, and the set follows within
//! the TTL without a failed request.

#![allow(clippy::print_stderr)]

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foobar_lb::discovery::DnsSource;
use foobar_lb::policy::RoundRobin;
use foobar_lb::Proxy;
use http::StatusCode;
use support::*;

const LIMIT: Duration = Duration::from_secs(10);
/// The TTL dnsmasq gives its records.
const TTL: Duration = Duration::from_secs(1);

/// A private dnsmasq answering from a hosts file and SRV records; killed
/// on drop.
struct Dns {
    child: Option<Child>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    srv: Vec<String>,
}

impl Dns {
    fn start(hosts: &str, srv: &[&str]) -> Self {
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|socket| socket.local_addr())
            .expect("a free port")
            .port();
        let mut dns = Self {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir: tempfile::tempdir().expect("a temp dir"),
            srv: srv.iter().map(|s| (*s).to_owned()).collect(),
        };
        dns.set_hosts(hosts);
        dns.run();
        dns
    }

    fn hosts_path(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    fn set_hosts(&self, hosts: &str) {
        std::fs::write(self.hosts_path(), hosts).expect("writes the hosts file");
    }

    fn run(&mut self) {
        let mut command = Command::new("dnsmasq");
        command
            .arg("--keep-in-foreground")
            .arg(format!("--port={}", self.addr.port()))
            .args(["--listen-address=127.0.0.1", "--bind-interfaces"])
            .args(["--no-resolv", "--no-hosts", "--conf-file=/dev/null"])
            .args(["--user=root", "--local-ttl=1"])
            .arg(format!(
                "--pid-file={}",
                self.dir.path().join("pid").display()
            ))
            .arg(format!("--addn-hosts={}", self.hosts_path().display()));
        for record in &self.srv {
            command.arg(format!("--srv-host={record}"));
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq runs (Debian package dnsmasq-base)");
        self.child = Some(child);
        // Ready once it answers a query on its port.
        let deadline = Instant::now() + LIMIT;
        while !self.answers() {
            assert!(Instant::now() < deadline, "dnsmasq did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether a query for `ready.invalid` gets any answer.
    fn answers(&self) -> bool {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("a socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut query = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["ready", "invalid"] {
            query.push(label.len() as u8);
            query.extend_from_slice(label.as_bytes());
        }
        query.extend_from_slice(&[0, 0, 1, 0, 1]);
        let mut reply = [0; 512];
        socket.send_to(&query, self.addr).is_ok() && socket.recv(&mut reply).is_ok()
    }

    /// Re-reads the hosts file (SIGHUP).
    fn reload(&self) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Restarts with other SRV records, on the same port.
    fn restart_with_srv(&mut self, srv: &[&str]) {
        self.stop();
        self.srv = srv.iter().map(|s| (*s).to_owned()).collect();
        self.run();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The backends taking traffic, as `(url, weight)`, sorted.
fn live(proxy: &Proxy<RoundRobin>) -> Vec<(String, u32)> {
    let mut live: Vec<(String, u32)> = proxy
        .backends()
        .list()
        .iter()
        .filter(|b| !b.is_draining())
        .map(|b| (b.id().to_owned(), b.weight()))
        .collect();
    live.sort();
    live
}

/// Steady load on `url` from two clients until `stop`; counts answers.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks = (0..2)
            .map(|_| {
                let (url, stop, ok, failed) =
                    (url.to_owned(), stop.clone(), ok.clone(), failed.clone());
                tokio::spawn(async move {
                    let client = client();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) && n < 50_000 {
                        match get(&client, &url).await.0 {
                            StatusCode::OK => ok.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                        n += 1;
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

async fn applied_list(proxy: &Proxy<RoundRobin>, expected: &[(String, u32)], what: &str) {
    wait_until(LIMIT, what, || live(proxy) == expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_add_and_remove_backends_within_the_ttl_under_load() {
    // Two web servers on one port, on two loopback addresses.
    let a = named_at("127.0.0.2:0", "a").await;
    let port = a.addr.port();
    let b = named_at(&format!("127.0.0.3:{port}"), "b").await;
    let dns = Dns::start("127.0.0.2 web.test\n", &[]);

    let proxy = Proxy::builder(RoundRobin::new()).build().unwrap();
    let source = DnsSource::host("web.test.", port)
        .unwrap()
        .name_server(dns.addr)
        .unwrap()
        .refresh(Duration::from_millis(100), Duration::from_secs(5));
    let discovery = proxy.discover(source);
    applied_list(&proxy, &[(a.url(), 1)], "web.test resolves to a").await;

    let front = serve_proxy(proxy.clone()).await;
    let load = Load::start(&front.url());
    wait_until(LIMIT, "traffic flows", || {
        load.ok.load(Ordering::Relaxed) > 50
    })
    .await;

    // A second record: b joins within the TTL (plus a refresh).
    dns.set_hosts("127.0.0.2 web.test\n127.0.0.3 web.test\n");
    dns.reload();
    let changed = Instant::now();
    let both = [(a.url(), 1), (b.url(), 1)];
    wait_until(LIMIT, "b is discovered", || live(&proxy) == both).await;
    let took = changed.elapsed();
    eprintln!("a new A record was followed after {took:?}");
    assert!(took < TTL * 3, "b was discovered after {took:?}");
    let backend_b = proxy.backends().get(&b.url()).unwrap();
    wait_until(LIMIT, "b takes traffic", || backend_b.requests_total() > 20).await;

    // a's record goes: a is drained, then removed, and nothing fails.
    dns.set_hosts("127.0.0.3 web.test\n");
    dns.reload();
    let changed = Instant::now();
    wait_until(LIMIT, "a is removed", || {
        proxy.backends().get(&a.url()).is_none()
    })
    .await;
    let took = changed.elapsed();
    eprintln!("a removed A record was drained and removed after {took:?}");
    assert!(took < TTL * 3, "a was removed after {took:?}");
    assert_eq!(live(&proxy), [(b.url(), 1)]);

    // The name vanishes: an error, and the set keeps its backend.
    let rejected = discovery.rejected();
    dns.set_hosts("127.0.0.3 other.test\n");
    dns.reload();
    wait_until(LIMIT, "the failed resolution is reported", || {
        discovery.rejected() > rejected
    })
    .await;
    let error = discovery.last_error().expect("an error");
    assert!(error.contains("web.test"), "{error}");
    assert_eq!(live(&proxy), [(b.url(), 1)]);

    let (ok, failed) = load.finish().await;
    eprintln!("{ok} requests succeeded and {failed} failed while the records changed");
    assert_eq!(failed, 0, "{failed} requests failed ({ok} succeeded)");
    assert!(ok > 100, "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_ports_and_weights() {
    let (a, b, c) = (named("a").await, named("b").await, named("c").await);
    let hosts = "127.0.0.1 a.test\n127.0.0.1 b.test\n127.0.0.1 c.test\n";
    let record = |host: &str, server: &TestServer, priority: u16, weight: u16| {
        format!(
            "_http._tcp.web.test,{host},{},{priority},{weight}",
            server.addr.port()
        )
    };
    let first = [
        record("a.test", &a, 0, 3),
        record("b.test", &b, 0, 1),
        record("c.test", &c, 1, 5),
    ];
    let mut dns = Dns::start(hosts, &first.iter().map(String::as_str).collect::<Vec<_>>());

    let proxy = Proxy::builder(RoundRobin::new()).build().unwrap();
    let source = DnsSource::srv("_http._tcp.web.test.")
        .unwrap()
        .name_server(dns.addr)
        .unwrap()
        .refresh(Duration::from_millis(100), Duration::from_secs(5));
    let _discovery = proxy.discover(source);
    // c has a lower priority (a higher number): a backup, not used.
    let mut expected = vec![(a.url(), 3), (b.url(), 1)];
    expected.sort();
    applied_list(&proxy, &expected, "the SRV targets are discovered").await;

    let front = serve_proxy(proxy.clone()).await;
    let load = Load::start(&front.url());
    wait_until(LIMIT, "traffic flows", || {
        load.ok.load(Ordering::Relaxed) > 50
    })
    .await;

    // New records: b's weight changes, a goes, c joins the first priority.
    let second = [record("b.test", &b, 0, 2), record("c.test", &c, 0, 5)];
    dns.restart_with_srv(&second.iter().map(String::as_str).collect::<Vec<_>>());
    let mut expected = vec![(b.url(), 2), (c.url(), 5)];
    expected.sort();
    applied_list(&proxy, &expected, "the new SRV records are followed").await;
    wait_until(LIMIT, "a is removed", || {
        proxy.backends().get(&a.url()).is_none()
    })
    .await;
    let backend_c = proxy.backends().get(&c.url()).unwrap();
    wait_until(LIMIT, "c takes traffic", || backend_c.requests_total() > 20).await;

    let (ok, failed) = load.finish().await;
    assert_eq!(failed, 0, "{failed} requests failed ({ok} succeeded)");
}

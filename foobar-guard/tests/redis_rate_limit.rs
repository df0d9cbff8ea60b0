//! Rate limits shared through a real, private Redis (one `redis-server` per
//! test on a random loopback port, no persistence), between two servers
//! that each run their own limiter.
#![allow(clippy::print_stderr)]

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use foobar_core::PlainTcp;
use foobar_guard::rate_limit::{Fallback, RateLimitLayer, RedisLimits, RedisRateLimitLayer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use support::{connect_from, ip, send_raw, serve, App, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceBuilder;

const KEEP_ALIVE: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

/// A private `redis-server`: its own port and directory, nothing saved,
/// killed on drop.
struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self {
            child: None,
            port,
            dir: tempfile::tempdir().expect("a temp dir"),
        };
        server.run().await;
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts (or restarts) the server on its port and waits for a PONG.
    async fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian package redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + support::DEADLINE;
        while !self.pongs().await {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn pongs(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut reply = [0; 7];
        stream.write_all(b"PING\r\n").await.is_ok()
            && stream.read_exact(&mut reply).await.is_ok()
            && &reply == b"+PONG\r\n"
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// `kill -9`, and waits for the process to be gone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One limiter instance behind its own server.
fn instance(layer: &RedisRateLimitLayer) -> TestServer {
    serve(
        PlainTcp,
        ServiceBuilder::new().layer(layer.clone()).service(App),
    )
}

fn limiter(
    recorder: &metrics_exporter_prometheus::PrometheusRecorder,
    quota: RateLimitLayer,
    limits: RedisLimits,
) -> RedisRateLimitLayer {
    metrics::with_local_recorder(recorder, || quota.redis(limits)).expect("a valid setup")
}

/// The value of one metric line (name with labels) in a Prometheus text.
fn metric(handle: &PrometheusHandle, series: &str) -> f64 {
    handle
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_hold_one_limit_within_the_bound() {
    let redis = RedisServer::start().await;
    let recorders = [
        PrometheusBuilder::new().build_recorder(),
        PrometheusBuilder::new().build_recorder(),
    ];
    let handles = [recorders[0].handle(), recorders[1].handle()];
    // 100 requests per second per client, bursts of 20, leases of 10.
    let layers = [0, 1].map(|i| {
        limiter(
            &recorders[i],
            RateLimitLayer::per_second(100, 20).expect("a valid quota"),
            RedisLimits::new(redis.url()),
        )
    });
    assert_eq!(layers[0].lease_size(), 10);
    let servers = [instance(&layers[0]), instance(&layers[1])];

    // One client spread over both instances, about 330 requests a second
    // (over three times the limit) for ten seconds.
    let client = ip("127.0.0.61");
    let mut streams = [
        connect_from(client, servers[0].addr).await,
        connect_from(client, servers[1].addr).await,
    ];
    let window = Duration::from_secs(10);
    let mut pace = tokio::time::interval(Duration::from_millis(3));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let (mut accepted, mut limited, mut sent) = (0u64, 0u64, 0u64);
    while started.elapsed() < window && sent < 5_000 {
        pace.tick().await;
        let stream = &mut streams[(sent % 2) as usize];
        match send_raw(stream, KEEP_ALIVE).await.status() {
            Some(200) => accepted += 1,
            Some(429) => limited += 1,
            other => panic!("unexpected answer {other:?}"),
        }
        sent += 1;
    }
    let elapsed = started.elapsed();

    let bound = layers[0].admission_bound(2, elapsed);
    let round_trips: f64 = handles
        .iter()
        .map(|h| metric(h, "foobar_rate_limit_redis_duration_seconds_count"))
        .sum();
    let from_leases: f64 = handles
        .iter()
        .map(|h| {
            metric(
                h,
                "foobar_rate_limit_decisions_total{source=\"lease\",result=\"allowed\"}",
            )
        })
        .sum();
    eprintln!(
        "{sent} requests in {elapsed:?}: {accepted} accepted ({from_leases} from leases), \
         {limited} limited; bound {bound}; {round_trips} Redis calls \
         ({:.0} per 1,000 requests)",
        round_trips * 1000.0 / sent as f64
    );
    assert!(
        sent > 2_000,
        "the client was too slow to test the limit: {sent}"
    );
    assert!(
        accepted <= bound,
        "{accepted} accepted, over the bound {bound}"
    );
    // A limit per instance would have let about 2,040 through.
    assert!(
        accepted as f64 >= 0.9 * 100.0 * elapsed.as_secs_f64(),
        "{accepted} accepted: far under the limit"
    );
    assert!(from_leases > 0.0, "no request was decided on a lease");
    assert!(
        round_trips < sent as f64 / 2.0,
        "{round_trips} Redis calls for {sent} requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_falls_back_at_once_and_shared_limits_resume_after_restart() {
    let mut redis = RedisServer::start().await;
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let timeout = Duration::from_millis(50);
    // Five requests per client, then one every ten seconds: a lease of one.
    let quota = || RateLimitLayer::with_period(Duration::from_secs(10), 5).expect("a valid quota");
    let limits = RedisLimits::new(redis.url())
        .timeout(timeout)
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200));
    let layers = [
        limiter(&recorder, quota(), limits.clone()),
        limiter(&PrometheusBuilder::new().build_recorder(), quota(), limits),
    ];
    let servers = [instance(&layers[0]), instance(&layers[1])];
    let client = ip("127.0.0.62");
    let mut a = connect_from(client, servers[0].addr).await;
    let mut b = connect_from(client, servers[1].addr).await;

    // Shared: five through A, and B refuses the sixth.
    for _ in 0..5 {
        assert_eq!(send_raw(&mut a, KEEP_ALIVE).await.status(), Some(200));
    }
    assert_eq!(send_raw(&mut b, KEEP_ALIVE).await.status(), Some(429));

    // Stopped (SIGSTOP): the next request that asks Redis waits for the
    // timeout, no more, and is decided by the local limit; then Redis is
    // taken as down and requests no longer wait at all.
    redis.signal("-STOP");
    let mut c = connect_from(ip("127.0.0.63"), servers[0].addr).await;
    let started = Instant::now();
    assert_eq!(send_raw(&mut c, KEEP_ALIVE).await.status(), Some(200));
    let waited = started.elapsed();
    assert!(waited >= timeout, "decided before the timeout: {waited:?}");
    assert!(waited < timeout * 4, "waited {waited:?}");
    assert!(!layers[0].redis_up());
    let started = Instant::now();
    assert_eq!(send_raw(&mut c, KEEP_ALIVE).await.status(), Some(200));
    assert!(started.elapsed() < timeout, "waited for a Redis known down");
    redis.signal("-CONT");

    // Killed (kill -9): requests keep flowing on the local fallback, none
    // waiting longer than the timeout.
    let deadline = Instant::now() + support::DEADLINE;
    while !layers[0].redis_up() {
        assert!(
            Instant::now() < deadline,
            "Redis never came back after SIGCONT"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    redis.kill();
    let mut d = connect_from(ip("127.0.0.64"), servers[0].addr).await;
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(send_raw(&mut d, KEEP_ALIVE).await.status(), Some(200));
        let waited = started.elapsed();
        assert!(waited < timeout * 2, "a request waited {waited:?}");
    }
    assert!(!layers[0].redis_up());
    assert!(
        metric(
            &handle,
            "foobar_rate_limit_decisions_total{source=\"fallback\",result=\"allowed\"}"
        ) >= 6.0
    );
    assert!(
        metric(
            &handle,
            "foobar_rate_limit_redis_failures_total{reason=\"timeout\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &handle,
            "foobar_rate_limit_redis_failures_total{reason=\"error\"}"
        ) >= 1.0
    );
    // The local fallback limits too: the sixth request of this client.
    assert_eq!(send_raw(&mut d, KEEP_ALIVE).await.status(), Some(429));

    // Restarted (empty): both instances find it again and share the
    // limit once more.
    redis.run().await;
    // B learns of the restart from its first failed call (another client,
    // so that key's buckets stay untouched).
    let mut wake_b = connect_from(ip("127.0.0.66"), servers[1].addr).await;
    send_raw(&mut wake_b, KEEP_ALIVE).await;
    let deadline = Instant::now() + support::DEADLINE;
    while !(layers[0].redis_up() && layers[1].redis_up()) {
        assert!(
            Instant::now() < deadline,
            "the limiters never found Redis again"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let e = ip("127.0.0.65");
    let mut ea = connect_from(e, servers[0].addr).await;
    let mut eb = connect_from(e, servers[1].addr).await;
    let redis_before = metric(
        &handle,
        "foobar_rate_limit_decisions_total{source=\"redis\",result=\"allowed\"}",
    );
    let mut through_a = 0;
    while send_raw(&mut ea, KEEP_ALIVE).await.status() == Some(200) {
        through_a += 1;
        assert!(through_a <= 5, "A admitted more than the burst");
    }
    assert!(
        metric(
            &handle,
            "foobar_rate_limit_decisions_total{source=\"redis\",result=\"allowed\"}"
        ) > redis_before,
        "A's decisions did not come from Redis"
    );
    // B has its own, untouched local bucket: only Redis can refuse this.
    assert_eq!(send_raw(&mut eb, KEEP_ALIVE).await.status(), Some(429));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_fallback_decides_open_or_closed() {
    // Nothing listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let recorder = PrometheusBuilder::new().build_recorder();
    let quota = || RateLimitLayer::per_second(1, 1).expect("a valid quota");
    let open = limiter(
        &recorder,
        quota(),
        RedisLimits::new(url.clone()).fallback(Fallback::Allow),
    );
    let closed = limiter(
        &recorder,
        quota(),
        RedisLimits::new(url).fallback(Fallback::Refuse),
    );
    let (open_server, closed_server) = (instance(&open), instance(&closed));
    let mut to_open = connect_from(ip("127.0.0.67"), open_server.addr).await;
    let mut to_closed = connect_from(ip("127.0.0.67"), closed_server.addr).await;
    for _ in 0..5 {
        // Fail open: past the local quota of one, every request passes.
        assert_eq!(send_raw(&mut to_open, KEEP_ALIVE).await.status(), Some(200));
        // Fail closed: 503 with Retry-After.
        let reply = send_raw(&mut to_closed, KEEP_ALIVE).await;
        assert_eq!(reply.status(), Some(503));
        assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
    }
    assert!(!open.redis_up() && !closed.redis_up());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_wait_for_one_lease_call() {
    let redis = RedisServer::start().await;
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // 1,000 r/s: leases of 100, so a burst of 20 fits in the first one.
    let layer = limiter(
        &recorder,
        RateLimitLayer::per_second(1_000, 1_000).expect("a valid quota"),
        RedisLimits::new(redis.url()),
    );
    assert_eq!(layer.lease_size(), 100);
    let server = instance(&layer);
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(connect_from(ip("127.0.0.68"), server.addr).await);
    }
    let answers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move { send_raw(&mut stream, KEEP_ALIVE).await.status() })
        })
        .collect();
    for answer in answers {
        assert_eq!(answer.await.unwrap(), Some(200));
    }
    // One call took the lease; the requests that came meanwhile waited for
    // it instead of asking Redis themselves.
    let calls = metric(&handle, "foobar_rate_limit_redis_duration_seconds_count");
    assert_eq!(calls, 1.0, "{}", handle.render());
}

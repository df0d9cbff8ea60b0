//! The cost of one rate-limit decision, through the layer's service: the
//! local limiter beside the Redis-shared one (on leases, and with leases of
//! one token, where every request waits for Redis), against a private
//! `redis-server` on a random loopback port. Prints the Redis calls per
//! 1,000 requests of each shared case.
//!
//! Run with `cargo bench -p foobar-guard --features redis --bench rate_limit`.
#![allow(missing_docs, clippy::print_stderr)]

use std::convert::Infallible;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use foobar_guard::rate_limit::{RateLimitLayer, RedisLimits};
use http::{Request, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::{Layer, Service, ServiceExt};

struct Redis(Child, u16);

impl Redis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child, port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn app() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible, Future: Send>
       + Clone
       + Send
       + 'static {
    tower::service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) })
}

/// Requests through `service`, `iters` times, one key.
async fn run<S>(service: &mut S, iters: u64) -> Duration
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    let started = Instant::now();
    for _ in 0..iters {
        let ready = service.ready().await.expect("ready");
        ready.call(Request::new(())).await.expect("answered");
    }
    started.elapsed()
}

fn series(handle: &PrometheusHandle, name: &str) -> f64 {
    handle
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn decisions(c: &mut Criterion) {
    // Requests run on the bench thread; the lease refills and the Redis
    // connection run on a worker, as they would beside a server's tasks.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let redis = Redis::start();
    let url = format!("redis://127.0.0.1:{}/", redis.1);
    // A limit no request reaches (10^9 r/s, far above what one thread
    // sends), so every decision admits: the cost of the decision alone.
    // Leases are 10% of the rate: Redis is asked about once per 10^8.
    let quota = || {
        RateLimitLayer::per_second(1_000_000_000, 1_000_000_000)
            .expect("a valid quota")
            .key(|_: &http::request::Parts| Some(7u64))
    };
    let mut group = c.benchmark_group("rate_limit");

    let mut local = quota().layer(app());
    group.bench_function("local", |b| {
        b.iter_custom(|iters| runtime.block_on(run(&mut local, iters)));
    });

    for (name, lease) in [("redis_lease", None), ("redis_every_request", Some(1))] {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let mut limits = RedisLimits::new(url.clone()).key_prefix(format!("bench:{name}:"));
        if let Some(lease) = lease {
            limits = limits.lease(lease);
        }
        let layer = runtime.block_on(async {
            metrics::with_local_recorder(&recorder, || quota().redis(limits))
                .expect("a valid setup")
        });
        let mut shared = layer.layer(app());
        let mut requests = 0u64;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                requests += iters;
                runtime.block_on(run(&mut shared, iters))
            });
        });
        let per_1000 = |n: f64| n * 1000.0 / requests.max(1) as f64;
        eprintln!(
            "{name}: lease of {}: per 1,000 requests, {:.2} Redis calls, {:.2} decided by the fallback",
            layer.lease_size(),
            per_1000(series(&handle, "foobar_rate_limit_redis_duration_seconds_count")),
            per_1000(series(
                &handle,
                "foobar_rate_limit_decisions_total{source=\"fallback\",result=\"allowed\"}"
            )),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = decisions
}
criterion_main!(benches);

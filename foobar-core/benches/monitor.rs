//! What monitoring costs: per request (the rates hook of the metrics
//! layer), per tick (one host sample, one rendering for a push) and per
//! status poll (`/status.json`).
//!
//! Run with `cargo bench -p foobar-core --bench monitor`.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use foobar_core::admin::Admin;
use foobar_core::metrics::{MetricsLayer, PrometheusExporter};
use foobar_core::monitor::{HostSampler, RequestRates};
use foobar_core::status::{
    BackendStatus, DbHostStatus, DbStatus, Health, LbStatus, Snapshot, StatusSource,
};
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service};

/// Polls a future that is ready at once.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the benchmarked services never wait"),
    }
}

struct Lb;
impl StatusSource for Lb {
    fn name(&self) -> &str {
        "lb"
    }
    fn snapshot(&self) -> Snapshot {
        Snapshot::LoadBalancer(LbStatus {
            policy: "round_robin".into(),
            backends: (0..10)
                .map(|i| BackendStatus {
                    id: format!("10.0.0.{i}:8080"),
                    weight: 1,
                    health: Health::Up,
                    requests_total: 1_000_000,
                    latency_p99_seconds: Some(0.01),
                    ..BackendStatus::default()
                })
                .collect(),
            events: Vec::new(),
        })
    }
}

struct Db;
impl StatusSource for Db {
    fn name(&self) -> &str {
        "db"
    }
    fn snapshot(&self) -> Snapshot {
        Snapshot::Database(DbStatus {
            writer: Some("127.0.0.1:3306".into()),
            hosts: (0..4)
                .map(|i| DbHostStatus {
                    id: format!("127.0.0.1:330{i}"),
                    health: Health::Up,
                    pool_size: 16,
                    ..DbHostStatus::default()
                })
                .collect(),
            ..DbStatus::default()
        })
    }
}

fn benches(c: &mut Criterion) {
    let exporter = PrometheusExporter::install().expect("recorder");
    let app = tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });

    let mut plain = MetricsLayer::new("plain").layer(app);
    c.bench_function("metrics layer, per request", |b| {
        b.iter(|| ready(plain.call(black_box(Request::new(())))).map(|r| r.status()));
    });
    let rates = RequestRates::new();
    let mut fed = MetricsLayer::new("fed").with_rates(&rates).layer(app);
    c.bench_function("metrics layer + rates hook, per request", |b| {
        b.iter(|| ready(fed.call(black_box(Request::new(())))).map(|r| r.status()));
    });

    let mut sampler = HostSampler::new();
    sampler.sample();
    c.bench_function("host and process sample (one tick)", |b| {
        b.iter(|| black_box(sampler.sample()));
    });
    rates.sample();
    c.bench_function("exporter render (one push body)", |b| {
        b.iter(|| black_box(exporter.render().len()));
    });

    let mut admin = Admin::new(exporter).with_source(Lb).with_source(Db);
    c.bench_function("/status.json, 10 backends + 4 DB hosts", |b| {
        b.iter(|| {
            let request = Request::get("/status.json").body(()).unwrap();
            ready(admin.call(request)).map(|r| r.status())
        });
    });
}

criterion_group!(monitor, benches);
criterion_main!(monitor);

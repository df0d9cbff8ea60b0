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
use foobar_core::status::{Format, Health, Snapshot, StatusSource, Table, View};
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

/// A section shaped like a load balancer's: `rows` rows of eight fields,
/// with a view of eight columns.
struct Rows {
    name: &'static str,
    rows: usize,
}

impl StatusSource for Rows {
    fn name(&self) -> &str {
        self.name
    }
    fn snapshot(&self) -> Snapshot {
        let rows: Vec<_> = (0..self.rows)
            .map(|i| {
                serde_json::json!({
                    "id": format!("10.0.0.{i}:8080"),
                    "weight": 1,
                    "health": Health::Up,
                    "in_flight": 3,
                    "requests_total": 1_000_000,
                    "errors_total": 12,
                    "latency_p99_seconds": 0.01,
                    "ejections_total": 0,
                })
            })
            .collect();
        let view = View::new().fact("policy", "/policy", Format::Text).table(
            Table::new("rows", "/rows")
                .key("/id")
                .health("/health")
                .column("id", "/id", Format::Text)
                .column("health", "/health", Format::Health)
                .column("weight", "/weight", Format::Integer)
                .column("in flight", "/in_flight", Format::Integer)
                .column("req/s", "/requests_total", Format::PerSecond)
                .column(
                    "errors",
                    "/errors_total",
                    Format::share_of("/requests_total"),
                )
                .column("p99", "/latency_p99_seconds", Format::Seconds)
                .column("ejections", "/ejections_total", Format::Integer),
        );
        let data = serde_json::json!({ "policy": "round_robin", "rows": rows });
        Snapshot::new("bench", &data).health(Health::Up).view(view)
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

    let mut admin = Admin::new(exporter)
        .with_source(Rows {
            name: "lb",
            rows: 10,
        })
        .with_source(Rows {
            name: "db",
            rows: 4,
        });
    c.bench_function("/status.json, sections of 10 and 4 rows", |b| {
        b.iter(|| {
            let request = Request::get("/status.json").body(()).unwrap();
            ready(admin.call(request)).map(|r| r.status())
        });
    });
}

criterion_group!(monitor, benches);
criterion_main!(monitor);

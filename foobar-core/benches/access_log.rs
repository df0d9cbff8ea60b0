//! What the access log costs a request: the layer's work on the request
//! path (an entry recorded and queued for the writer thread), beside the
//! same service without it and with the metrics layer. The writer thread
//! formats and writes at the same time, on the other core.
//!
//! Run with `cargo bench -p foobar-core --features access-log --bench access_log`.
//! It uses mimalloc, as the example binaries and production builds do: the
//! system allocator serves entries freed on the writer's thread slowly.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use foobar_core::access_log::{AccessLogLayer, AccessLogWriter, Format};
use foobar_core::metrics::MetricsLayer;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower::{Layer, Service};

/// Polls a future (or a body) that is ready at once.
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

/// Sends the body to nowhere, frame by frame, as a server would.
fn drain<B: Body + Unpin>(mut body: B) {
    while let Some(frame) = ready(std::future::poll_fn(|cx| {
        std::pin::Pin::new(&mut body).poll_frame(cx)
    })) {
        black_box(frame.ok());
    }
}

fn app(
    _req: Request<Full<Bytes>>,
) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(
        b"hello, world\n",
    )))))
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One request through `service`, its body sent.
fn once<S, B>(service: &mut S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
    B: Body + Unpin,
{
    let response = ready(service.call(request())).expect("infallible");
    drain(response.into_body());
}

fn request() -> Request<Full<Bytes>> {
    Request::get("/entries?page=2")
        .header("user-agent", "bench/1.0")
        .header("x-request-id", "bench-1")
        .body(Full::new(Bytes::new()))
        .expect("a valid request")
}

fn per_request(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("foobar-access-log-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let mut group = c.benchmark_group("per_request");

    let mut bare = tower::service_fn(app);
    group.bench_function("no layer", |b| {
        b.iter(|| once(&mut bare));
    });

    let mut metrics = MetricsLayer::new("bench").layer(tower::service_fn(app));
    group.bench_function("metrics layer", |b| {
        b.iter(|| once(&mut metrics));
    });

    for (name, format) in [
        ("access log json", Format::Json),
        ("access log combined", Format::Combined),
    ] {
        let writer = AccessLogWriter::open_with_capacity(dir.join(format!("{name}.log")), 1 << 20)
            .expect("opens the log");
        let mut logged = AccessLogLayer::new(writer, format).layer(tower::service_fn(app));
        group.bench_function(name, |b| {
            b.iter(|| once(&mut logged));
        });
    }

    let mut off = AccessLogLayer::optional(None, Format::Json).layer(tower::service_fn(app));
    group.bench_function("access log off", |b| {
        b.iter(|| once(&mut off));
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, per_request);
criterion_main!(benches);

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Method, Request, Response};
use metrics::{Counter, Gauge, Histogram, Label};
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::MetricsLayer;
#[cfg(feature = "monitor")]
use crate::monitor::RequestCounters;

/// Records HTTP request metrics; made by [`MetricsLayer`].
#[derive(Clone, Debug)]
pub struct Metrics<S> {
    inner: S,
    metrics: Arc<RequestMetrics>,
}

impl<S> Metrics<S> {
    /// Wraps `inner`, labelling its metrics `service="<service>"`.
    pub fn new(inner: S, service: impl Into<String>) -> Self {
        Self::from_parts(inner, Arc::new(RequestMetrics::new(service.into())))
    }

    pub(super) fn from_parts(inner: S, metrics: Arc<RequestMetrics>) -> Self {
        Self { inner, metrics }
    }

    /// A layer that wraps services in `Metrics`.
    pub fn layer(service: impl Into<String>) -> MetricsLayer {
        MetricsLayer::new(service)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Metrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let method = MethodIndex::of(req.method());
        let in_flight = InFlight::enter(self.metrics.clone());
        ResponseFuture::new(self.inner.call(req), method, Instant::now(), in_flight)
    }
}

/// The methods that get their own label value; anything else is `OTHER`, so
/// a client cannot grow the label set.
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Clone, Copy, Debug)]
pub(super) struct MethodIndex(usize);

impl MethodIndex {
    fn of(method: &Method) -> Self {
        let index = match *method {
            Method::GET => 0,
            Method::HEAD => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::DELETE => 4,
            Method::PATCH => 5,
            Method::OPTIONS => 6,
            Method::CONNECT => 7,
            Method::TRACE => 8,
            _ => 9,
        };
        Self(index)
    }
}

fn status_class(status: http::StatusCode) -> usize {
    // StatusCode guarantees 100..=999; classes above 5xx fold into 5xx.
    (usize::from(status.as_u16() / 100).clamp(1, 5)) - 1
}

/// The per-(method, status class) handles of one labelled service, each
/// registered on first use: labels are built once, and series that never
/// occur are never exported.
#[derive(Debug)]
pub(super) struct RequestMetrics {
    service: String,
    cells: [[OnceLock<(Counter, Histogram)>; 5]; 10],
    errors: [OnceLock<Counter>; 10],
    in_flight: OnceLock<Gauge>,
    /// Optional feed of the monitor's windowed rates.
    #[cfg(feature = "monitor")]
    rates: Option<Arc<RequestCounters>>,
}

impl RequestMetrics {
    pub(super) fn new(service: String) -> Self {
        Self {
            service,
            cells: Default::default(),
            errors: Default::default(),
            in_flight: OnceLock::new(),
            #[cfg(feature = "monitor")]
            rates: None,
        }
    }

    #[cfg(feature = "monitor")]
    pub(super) fn with_rates(mut self, counters: Arc<RequestCounters>) -> Self {
        self.rates = Some(counters);
        self
    }

    #[cfg(feature = "monitor")]
    pub(super) fn service(&self) -> &str {
        &self.service
    }

    pub(super) fn record_response(
        &self,
        method: MethodIndex,
        status: http::StatusCode,
        started: Instant,
    ) {
        let class = status_class(status);
        let (requests, duration) = self.cells[method.0][class].get_or_init(|| {
            let labels = [
                Label::new("service", self.service.clone()),
                Label::new("method", METHODS[method.0]),
                Label::new("status", STATUS_CLASSES[class]),
            ];
            (
                metrics::counter!("http_server_requests_total", labels.iter()),
                metrics::histogram!("http_server_request_duration_seconds", labels.iter()),
            )
        });
        requests.increment(1);
        duration.record(started.elapsed().as_secs_f64());
        #[cfg(feature = "monitor")]
        if let Some(rates) = &self.rates {
            rates.record(status.is_server_error());
        }
    }

    pub(super) fn record_error(&self, method: MethodIndex) {
        self.errors[method.0]
            .get_or_init(|| {
                let labels = [
                    Label::new("service", self.service.clone()),
                    Label::new("method", METHODS[method.0]),
                ];
                metrics::counter!("http_server_errors_total", labels.iter())
            })
            .increment(1);
        #[cfg(feature = "monitor")]
        if let Some(rates) = &self.rates {
            rates.record(true);
        }
    }

    fn in_flight(&self) -> &Gauge {
        self.in_flight.get_or_init(
            || metrics::gauge!("http_server_requests_in_flight", "service" => self.service.clone()),
        )
    }
}

/// Counts a request as in flight from `call` until its future completes or
/// is dropped (a client that disconnects mid-request is no longer in flight).
#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) metrics: Arc<RequestMetrics>,
}

impl InFlight {
    fn enter(metrics: Arc<RequestMetrics>) -> Self {
        metrics.in_flight().increment(1.0);
        Self { metrics }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.in_flight().decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(STATUS_CLASSES[status_class(http::StatusCode::OK)], "2xx");
        assert_eq!(
            STATUS_CLASSES[status_class(http::StatusCode::CONTINUE)],
            "1xx"
        );
        assert_eq!(
            STATUS_CLASSES[status_class(http::StatusCode::NOT_FOUND)],
            "4xx"
        );
        let odd = http::StatusCode::from_u16(999).unwrap();
        assert_eq!(STATUS_CLASSES[status_class(odd)], "5xx");
    }

    #[test]
    fn unknown_methods_share_one_label() {
        let custom = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(METHODS[MethodIndex::of(&custom).0], "OTHER");
        assert_eq!(METHODS[MethodIndex::of(&Method::PATCH).0], "PATCH");
    }
}

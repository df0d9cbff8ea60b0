//! The admin listener's service: `/metrics` and `/healthz`.
//!
//! Serve it on its own address with its own [`Server`](crate::Server), away
//! from public traffic.

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use tower_service::Service;

use crate::metrics::PrometheusExporter;

/// Routes admin requests: `GET /metrics` (Prometheus text format) and
/// `GET /healthz` (`200 ok` while the process serves); 404 otherwise.
#[derive(Clone, Debug)]
pub struct Admin {
    exporter: PrometheusExporter,
}

impl Admin {
    /// An admin service exposing `exporter`'s metrics.
    pub fn new(exporter: PrometheusExporter) -> Self {
        Self { exporter }
    }

    fn route<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        }
        match req.uri().path() {
            "/metrics" => {
                let mut response = Response::new(Full::new(Bytes::from(self.exporter.render())));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
                );
                response
            }
            "/healthz" => text(StatusCode::OK, "ok\n"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

impl<B> Service<Request<B>> for Admin {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        std::future::ready(Ok(self.route(&req)))
    }
}

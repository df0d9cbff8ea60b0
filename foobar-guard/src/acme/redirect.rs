//! The plain-HTTP listener's answer to everything but ACME: go to HTTPS.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Empty;
use tower_service::Service;

/// Answers every request with `308 Permanent Redirect` to the same host
/// and path over HTTPS (`400` without a usable `Host`). Put
/// [`Http01Layer`](super::Http01Layer) in front of it on port 80.
#[derive(Clone, Copy, Debug, Default)]
pub struct RedirectToHttps {
    port: Option<u16>,
}

impl RedirectToHttps {
    /// Redirects to the default HTTPS port (443).
    pub fn new() -> Self {
        Self::default()
    }

    /// Redirects to this HTTPS port instead.
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port).filter(|&p| p != 443);
        self
    }

    fn location<B>(&self, req: &Request<B>) -> Option<HeaderValue> {
        let host = req.uri().host().map(str::to_owned).or_else(|| {
            let host = req.headers().get(header::HOST)?.to_str().ok()?;
            let uri: http::uri::Authority = host.parse().ok()?;
            Some(uri.host().to_owned())
        })?;
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let location = match self.port {
            Some(port) => format!("https://{host}:{port}{path}"),
            None => format!("https://{host}{path}"),
        };
        HeaderValue::try_from(location).ok()
    }
}

impl<B> Service<Request<B>> for RedirectToHttps {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut response = Response::new(Empty::new());
        match self.location(&req) {
            Some(location) => {
                *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
                response.headers_mut().insert(header::LOCATION, location);
            }
            None => *response.status_mut() = StatusCode::BAD_REQUEST,
        }
        ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(service: RedirectToHttps, req: Request<()>) -> (StatusCode, Option<String>) {
        let mut service = service;
        let response = futures_ready(service.call(req));
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status(), location)
    }

    fn futures_ready<T>(ready: Ready<Result<T, Infallible>>) -> T {
        match ready.into_inner() {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }

    #[test]
    fn redirects_to_the_same_host_and_path_over_https() {
        let req = Request::get("/a/b?c=d")
            .header("host", "www.foobar.com:80")
            .body(())
            .unwrap();
        assert_eq!(
            location(RedirectToHttps::new(), req),
            (
                StatusCode::PERMANENT_REDIRECT,
                Some("https://www.foobar.com/a/b?c=d".to_owned())
            )
        );
        let req = Request::get("/").header("host", "x.test").body(()).unwrap();
        assert_eq!(
            location(RedirectToHttps::new().port(8443), req)
                .1
                .as_deref(),
            Some("https://x.test:8443/")
        );
        let req = Request::get("/")
            .header("host", "bad host")
            .body(())
            .unwrap();
        assert_eq!(
            location(RedirectToHttps::new(), req),
            (StatusCode::BAD_REQUEST, None)
        );
    }
}

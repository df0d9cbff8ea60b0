//! Request hygiene: body size limits and request timeouts.
//!
//! - [`BodyLimitLayer`]: a request body larger than the limit gets
//!   `413 Content Too Large`. A `Content-Length` over the limit is refused
//!   before the handler runs; other bodies are counted as they stream
//!   through (never buffered) and the response is replaced by 413 as soon as
//!   the count passes the limit.
//! - [`TimeoutLayer`]: a request that has no response head within the
//!   timeout gets `408 Request Timeout` when the handler was waiting for the
//!   client to send more of the body (the client is too slow), or
//!   `504 Gateway Timeout` when the handler itself (or its upstream) is too
//!   slow.
//!
//! Oversized request heads are refused by the server itself with
//! `431 Request Header Fields Too Large` (`HttpConfig::max_header_bytes` in
//! `foobar_core`); a client that is too slow to send its head is dropped by
//! `HttpConfig::header_read_timeout`.
//!
//! ```
//! use std::time::Duration;
//! use foobar_guard::hygiene::{BodyLimitLayer, TimeoutLayer};
//! use tower::ServiceBuilder;
//!
//! let app = tower::service_fn(|_req: http::Request<_>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
//! });
//! let app = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_secs(30)))
//!     .layer(BodyLimitLayer::new(1024 * 1024))
//!     .service(app);
//! # fn is_service<S: tower::Service<http::Request<http_body_util::Full<bytes::Bytes>>>>(_: &S) {}
//! # is_service(&app);
//! ```

mod body_limit;
mod timeout;

pub use self::body_limit::{
    BodyLimit, BodyLimitLayer, BodyTooLarge, LimitedBody, ResponseFuture as BodyLimitFuture,
};
pub use self::timeout::{ResponseFuture as TimeoutFuture, TimedBody, Timeout, TimeoutLayer};

//! Access logs: one line per request, as JSON or in nginx's `combined`
//! format, written off the request path (feature `access-log`).
//!
//! [`AccessLogLayer`] records each request when its response body has been
//! sent (or the client went away) and hands the [`Entry`] to an
//! [`AccessLogWriter`]: a thread of its own formats and writes the lines, so
//! the request path never waits on the disk. When the writer falls behind,
//! lines are dropped and counted rather than queued without bound.
//! [`AccessLogWriter::reopen`] (or SIGHUP, with
//! [`reopen_on_sighup`](AccessLogWriter::reopen_on_sighup)) reopens the
//! file by its path, for logrotate's rename-then-signal.
//!
//! | field | JSON key | from |
//! |---|---|---|
//! | time the request arrived | `time` (RFC 3339, UTC) | the system clock |
//! | client | `client` | [`ConnInfo::client_addr`], or what [`AccessLogLayer::client`] finds |
//! | method, path and query, protocol | `method`, `path`, `protocol` | the request |
//! | status | `status` | the response (`499`: the client left before it; `500`: the service failed) |
//! | bytes in | `bytes_in` | the request's `Content-Length` (`null` for a streamed upload of unknown length) |
//! | bytes out | `bytes_out` | the response body bytes sent |
//! | duration | `duration_ms` | from the request to the end of the response body |
//! | upstream | `upstream` | an [`UpstreamName`] a proxy set on the response |
//! | request id | `request_id` | `x-request-id` of the response, else of the request |
//! | TLS version, SNI | `tls_version`, `sni` | [`ConnInfo::tls`] |
//! | referer, user agent | `referer`, `user_agent` | the request |
//!
//! The `combined` format is nginx's, field for field (`$remote_addr -
//! $remote_user [$time_local] "$request" $status $body_bytes_sent
//! "$http_referer" "$http_user_agent"`), so existing log tools read it.
//!
//! ```no_run
//! use foobar_core::access_log::{AccessLogLayer, AccessLogWriter, Format};
//! use foobar_core::Shutdown;
//! use tower::ServiceBuilder;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let shutdown = Shutdown::on_signals();
//! let log = AccessLogWriter::open("/var/log/foobar/access.log")?;
//! log.reopen_on_sighup(shutdown.clone())?;
//! let app = tower::service_fn(|_req: http::Request<foobar_core::RequestBody>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from("hi"))))
//! });
//! let app = ServiceBuilder::new()
//!     .layer(AccessLogLayer::new(log, Format::Json))
//!     .service(app);
//! # let _ = app;
//! # Ok(()) }
//! ```
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `foobar_access_log_lines_total` | counter (lines written) | – |
//! | `foobar_access_log_dropped_total` | counter (lines dropped: the writer fell behind) | – |
//! | `foobar_access_log_errors_total` | counter (failed writes or reopens) | – |
//!
//! [`ConnInfo::client_addr`]: crate::ConnInfo::client_addr
//! [`ConnInfo::tls`]: crate::ConnInfo::tls
//! [`UpstreamName`]: crate::UpstreamName

mod body;
mod entry;
mod layer;
mod time;
mod writer;

pub use self::body::AccessLogBody;
pub use self::entry::{Entry, Format};
pub use self::layer::{AccessLog, AccessLogLayer, ResponseFuture};
pub use self::writer::{AccessLogError, AccessLogWriter};

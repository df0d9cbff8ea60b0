//! HTTP settings of a [`Server`](super::Server).

use std::time::Duration;

use crate::io::MinWriteRate;

/// HTTP protocol settings, with defaults fit for a server facing the
/// internet.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Time a client has to send a complete request head, measured from the
    /// connection's start (HTTP/1). Also bounds the wait for a new
    /// connection's first bytes, for HTTP/1 and HTTP/2. `None` disables it.
    /// Default: 10 s.
    pub header_read_timeout: Option<Duration>,
    /// Longest a request body may keep the service waiting for its next
    /// bytes, HTTP/1 and HTTP/2 alike. The clock runs only while the
    /// service reads the body and nothing has come; each piece that comes
    /// starts it again, so a slow upload that keeps sending is not cut
    /// off. When it passes, the body yields [`BodyError::TimedOut`]: over
    /// HTTP/1 the connection closes after the answer, over HTTP/2 the
    /// stream ends when the service gives up on it (reset, or answered)
    /// and its slot under [`max_concurrent_streams`] is free again.
    /// Without it, a client can hold streams (HTTP/2) or connections
    /// (HTTP/1) for as long as it keeps the connection alive, by starting
    /// requests whose bodies never come. Streams meant to stay quiet for
    /// longer, such as gRPC client or bidirectional streaming calls, need a
    /// longer limit or `None`, which waits forever. Default: 60 s (nginx's
    /// `client_body_timeout`).
    ///
    /// [`BodyError::TimedOut`]: crate::BodyError::TimedOut
    /// [`max_concurrent_streams`]: Self::max_concurrent_streams
    pub body_read_timeout: Option<Duration>,
    /// Keep HTTP/1.1 connections open between requests. Default: on.
    pub keep_alive: bool,
    /// Largest request head, in bytes (HTTP/1 read buffer, HTTP/2 header
    /// list). Larger heads get `431 Request Header Fields Too Large`.
    /// Default: 64 KiB.
    pub max_header_bytes: usize,
    /// Most header fields in one HTTP/1 request. Default: 100.
    pub max_headers: usize,
    /// Longest a write to the client may wait for the client to take bytes
    /// (a response, or a tunnel's data); the connection is closed after it.
    /// A connection with nothing to send is not affected. `None` waits
    /// forever. Default: 60 s.
    pub write_timeout: Option<Duration>,
    /// The slowest a client may take bytes while writes to it wait
    /// (responses, tunnels, HTTP/2 frames); the connection is closed when
    /// it falls behind. This is what ends slow readers, who keep a
    /// connection and the response behind it by reading a few bytes at a
    /// time, so that the write timeout never runs out. `None` disables it.
    /// Default: 240 bytes per second, checked over each 10 s of waiting.
    pub min_write_rate: Option<MinWriteRate>,
    /// Most concurrent HTTP/2 streams per connection. Default: 256.
    pub max_concurrent_streams: u32,
    /// Interval of HTTP/2 keep-alive pings that detect dead peers; `None`
    /// disables them. Default: 20 s.
    pub http2_keep_alive_interval: Option<Duration>,
    /// How long a peer has to answer a keep-alive ping. Default: 20 s.
    pub http2_keep_alive_timeout: Duration,
    /// Most HTTP/2 streams a client may open and reset before the server
    /// has accepted them; one more and the connection is closed with
    /// `GOAWAY` (`ENHANCE_YOUR_CALM`). This is the defence against rapid
    /// reset (CVE-2023-44487), where a client makes the server start work
    /// for streams it cancels at once. Default: 20 (h2's own).
    pub http2_max_pending_accept_reset_streams: usize,
    /// Most HTTP/2 streams the server may reset because of a client's
    /// protocol errors before it closes the connection (RUSTSEC-2024-0003).
    /// Default: 1024 (hyper's own).
    pub http2_max_local_error_reset_streams: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Some(Duration::from_secs(10)),
            body_read_timeout: Some(Duration::from_secs(60)),
            keep_alive: true,
            max_header_bytes: 64 * 1024,
            max_headers: Self::HYPER_MAX_HEADERS,
            write_timeout: Some(Duration::from_secs(60)),
            min_write_rate: Some(MinWriteRate::new(240, Duration::from_secs(10))),
            max_concurrent_streams: 256,
            http2_keep_alive_interval: Some(Duration::from_secs(20)),
            http2_keep_alive_timeout: Duration::from_secs(20),
            http2_max_pending_accept_reset_streams: 20,
            http2_max_local_error_reset_streams: 1024,
        }
    }
}

impl HttpConfig {
    /// hyper's HTTP/1 read buffer cannot be smaller than this.
    const MIN_HTTP1_BUFFER: usize = 8192;
    /// hyper's own header count limit, and so the default here: left
    /// unset, hyper parses into a fixed array instead of filling a vector
    /// of that size per request.
    const HYPER_MAX_HEADERS: usize = 100;

    pub(crate) fn builder(
        &self,
    ) -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
        use hyper_util::rt::{TokioExecutor, TokioTimer};
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let mut http1 = builder.http1();
        http1
            // Without a timer hyper silently ignores (or, since 1.x, panics
            // on) the header read timeout.
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .keep_alive(self.keep_alive)
            // A client may end its side once its request is sent and still
            // read the answer (RFC 9112 section 9.6).
            .half_close(true)
            // One buffer per write: a response head and a small body go out
            // without building an iovec list (about 2 % of a proxied request's
            // instructions, with the client side's own); bodies are copied
            // into that buffer, which hyper keeps near `max_buf_size`.
            .writev(false)
            .max_buf_size(self.max_header_bytes.max(Self::MIN_HTTP1_BUFFER));
        if self.max_headers != Self::HYPER_MAX_HEADERS {
            http1.max_headers(self.max_headers);
        }
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(self.max_concurrent_streams)
            .keep_alive_interval(self.http2_keep_alive_interval)
            .keep_alive_timeout(self.http2_keep_alive_timeout)
            // Set here rather than left to hyper's and h2's defaults, so
            // that they are documented, tested and cannot move unseen.
            .max_pending_accept_reset_streams(self.http2_max_pending_accept_reset_streams)
            .max_local_error_reset_streams(self.http2_max_local_error_reset_streams);
        builder
    }
}

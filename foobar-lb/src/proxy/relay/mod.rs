//! [`Relay`]: the proxy's short path for plain HTTP/1.1.
//!
//! One task per client connection parses each request head in place,
//! writes the edited head to a pooled bare TCP connection to the backend,
//! and relays the response back, bodies streamed as they come, without
//! building `http::Request`s or going through hyper's client and server
//! dispatchers. The proxy's semantics are the same as on the hyper path:
//! header edits, balancing, passive health, retries of idempotent bodiless
//! requests within the retry budget, `502`/`503`/`504` answers, timeouts.
//!
//! What the relay does not handle it hands back to the server, at a request
//! boundary, to be served by the [`Proxy`] service through hyper: HTTP/2,
//! HTTP/1.0, `Upgrade` (WebSocket), `Expect`, `CONNECT`, absolute-form
//! targets, unusual framing, malformed requests (hyper answers `400`/`431`),
//! and backends that are not plain HTTP/1.1 (`https://`, HTTP/2).

mod chunked;
mod deadline;
mod head;

use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use foobar_core::io::WriteTimeout;
use foobar_core::{ConnInfo, Handled, HttpConfig, RawConnection, Shutdown};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::retry::budget::Budget;
use tower::Service;

use self::chunked::{ChunkedDecoder, ChunkedError};
use self::deadline::Deadline;
use self::head::{BadResponse, Parse, RequestBody, RequestPlan, ResponseBody, ResponsePlan};
use super::{Fault, Proxy, Shared};
use crate::backend::Backend;
use crate::key::{NoKey, RequestHead, RequestKey};
use crate::policy::{Policy, RoundRobin};

/// The proxy's HTTP/1 relay, a connection handler for
/// [`Server::serve_connections_with`](foobar_core::Server::serve_connections_with):
/// it serves plain HTTP/1.1 requests itself and hands everything else to
/// the [`Proxy`] service. Get one with [`Proxy::relay`].
///
/// Per-request tower layers stacked around the `Proxy` service do not run
/// for what the relay serves; connection layers (firewall, limits, TLS) do.
///
/// ```no_run
/// use foobar_core::{PlainTcp, Server};
/// use foobar_lb::{policy::RoundRobin, Proxy};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let proxy = Proxy::builder(RoundRobin::new()).build()?;
/// proxy.add_backend("http://127.0.0.1:8081")?;
/// Server::builder()
///     .bind("127.0.0.1:8080")?
///     .build()?
///     .serve_connections_with(PlainTcp, proxy.relay(), proxy)
///     .await?;
/// # Ok(()) }
/// ```
pub struct Relay<P: Policy = RoundRobin, K = NoKey> {
    shared: Arc<Shared<P, K>>,
}

impl<P: Policy, K> Clone for Relay<P, K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<P: Policy, K> std::fmt::Debug for Relay<P, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("backends", &self.shared.backends)
            .finish_non_exhaustive()
    }
}

impl<P: Policy, K> Proxy<P, K> {
    /// The HTTP/1 relay sharing this proxy's backends, pools and settings.
    pub fn relay(&self) -> Relay<P, K> {
        Relay {
            shared: self.shared.clone(),
        }
    }
}

impl<P, K, IO> Service<RawConnection<IO>> for Relay<P, K>
where
    P: Policy,
    K: for<'a> RequestKey<RequestHead<'a>>,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Response = Handled<IO>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Handled<IO>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, conn: RawConnection<IO>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move { Ok(Session::new(&shared, conn).run().await) })
    }
}

/// Room kept free in a read buffer before each read.
const READ_ROOM: usize = 8 * 1024;
/// Chunk extensions and trailers allowed per body.
const CHUNK_METADATA_LIMIT: usize = 16 * 1024;
/// Stale pooled connections tried in a row before opening a new one.
const STALE_RETRIES: u32 = 3;

/// What happens to the client connection after an exchange.
enum Next {
    KeepAlive,
    Close,
    HandOver,
}

/// Why an exchange with a backend failed before its response head.
enum Failure {
    Connect(crate::error::UpstreamError),
    Timeout,
    /// The backend connection failed or closed.
    Upstream(std::io::Error),
    BadResponse(BadResponse),
    /// The client's chunked body was malformed.
    BadBody(ChunkedError),
    /// The client went away while sending its body.
    ClientGone,
    /// The client's body stopped coming until the response timeout.
    ClientTimeout,
}

/// How much of a request body has been read from the client.
enum BodyLeft {
    Length(u64),
    Chunked(ChunkedDecoder),
}

impl BodyLeft {
    fn new(body: RequestBody) -> Self {
        match body {
            RequestBody::None => Self::Length(0),
            RequestBody::Length(n) => Self::Length(n),
            RequestBody::Chunked => Self::Chunked(ChunkedDecoder::new(CHUNK_METADATA_LIMIT)),
        }
    }

    fn is_done(&self) -> bool {
        match self {
            Self::Length(n) => *n == 0,
            Self::Chunked(decoder) => decoder.is_done(),
        }
    }

    /// How many bytes at the front of `input` belong to the body.
    fn claim(&mut self, input: &[u8]) -> Result<usize, ChunkedError> {
        match self {
            Self::Length(n) => {
                let k = usize::try_from(*n).unwrap_or(usize::MAX).min(input.len());
                *n -= k as u64;
                Ok(k)
            }
            Self::Chunked(decoder) => decoder.advance(input),
        }
    }
}

/// How the request body went upstream.
enum BodySent {
    Complete,
    /// The backend answered before the whole body was sent: the rest of it
    /// is never read, so the client connection closes after the response.
    Interrupted,
}

struct Session<'s, P: Policy, K, IO> {
    shared: &'s Shared<P, K>,
    client: WriteTimeout<IO>,
    info: ConnInfo,
    http: Arc<HttpConfig>,
    drain: Shutdown,
    /// Bytes from the client not consumed yet.
    input: BytesMut,
    /// The request head to send upstream.
    request_out: Vec<u8>,
    /// The response head (and first body bytes) to send to the client.
    response_out: Vec<u8>,
    /// Bytes from the backend not relayed yet.
    upstream_in: BytesMut,
    header_deadline: Deadline,
    response_deadline: Deadline,
}

impl<'s, P, K, IO> Session<'s, P, K, IO>
where
    P: Policy,
    K: for<'a> RequestKey<RequestHead<'a>>,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn new(shared: &'s Shared<P, K>, conn: RawConnection<IO>) -> Self {
        Self {
            shared,
            client: WriteTimeout::new(conn.io, conn.http.write_timeout),
            info: conn.info,
            http: conn.http,
            drain: conn.drain,
            input: conn.buffered,
            request_out: Vec::with_capacity(1024),
            response_out: Vec::with_capacity(1024),
            upstream_in: BytesMut::new(),
            header_deadline: Deadline::new(),
            response_deadline: Deadline::new(),
        }
    }

    fn hand_over(self) -> Handled<IO> {
        Handled::Http {
            io: self.client.into_inner(),
            buffered: self.input.freeze(),
        }
    }

    async fn run(mut self) -> Handled<IO> {
        if self.info.tls.as_ref().is_some_and(|tls| tls.is_h2()) {
            return self.hand_over();
        }
        let drain = self.drain.clone();
        let mut drain_signal = DrainSignal {
            wait: pin!(drain.wait()),
            shutdown: &drain,
            registered: false,
        };
        loop {
            if let Some(limit) = self.http.header_read_timeout {
                self.header_deadline.arm(limit);
            }
            let plan = loop {
                let parsed = if self.input.is_empty() {
                    Parse::Partial
                } else {
                    head::prepare_request(
                        &self.input,
                        &mut self.request_out,
                        &self.shared.forwarding,
                        &self.info,
                        &self.shared.key,
                    )
                };
                match parsed {
                    // Over the server's limits: hyper answers `431`.
                    Parse::Done(plan)
                        if plan.head_len > self.http.max_header_bytes
                            || plan.fields > self.http.max_headers =>
                    {
                        return self.hand_over()
                    }
                    Parse::Done(plan) => break plan,
                    Parse::HandOver => return self.hand_over(),
                    Parse::Partial => {}
                }
                if self.input.len() >= self.http.max_header_bytes {
                    return self.hand_over();
                }
                let idle = self.input.is_empty();
                if idle && self.drain.is_triggered() {
                    return Handled::Closed;
                }
                reserve(&mut self.input);
                let timed = self.http.header_read_timeout.is_some();
                tokio::select! {
                    biased;
                    read = self.client.read_buf(&mut self.input) => match read {
                        Ok(0) | Err(_) => return Handled::Closed,
                        Ok(_) => {}
                    },
                    () = &mut drain_signal, if idle => return Handled::Closed,
                    () = self.header_deadline.expired(), if timed => {
                        if !idle {
                            metrics::counter!("foobar_header_timeouts_total").increment(1);
                        }
                        return Handled::Closed;
                    }
                }
            };
            match self.exchange(plan).await {
                Next::KeepAlive => {}
                Next::Close => {
                    let _ = self.client.shutdown().await;
                    return Handled::Closed;
                }
                Next::HandOver => return self.hand_over(),
            }
        }
    }

    /// Sends one request to a backend (retrying where allowed) and relays
    /// the answer.
    async fn exchange(&mut self, plan: RequestPlan) -> Next {
        let shared = self.shared;
        let bodiless = plan.body == RequestBody::None;
        let replayable = shared.budget.is_some() && plan.idempotent && bodiless;
        if let Some(budget) = &shared.budget {
            budget.deposit();
        }
        // A bodiless request's head stays in the input until the exchange
        // is over, so it can still be handed to hyper.
        let mut consumed = false;
        let mut avoid: Option<Arc<Backend>> = None;
        let (mut attempt, mut stale) = (0, 0);
        loop {
            let picked = shared.backends.with_pick(plan.key, avoid.as_ref(), |b, u| {
                (shared.backends.start(b), u.http1_pool().cloned())
            });
            let Some((mut in_flight, pool)) = picked else {
                metrics::counter!("foobar_lb_no_backend_total").increment(1);
                return self.answer(Fault::NoBackend, &plan, consumed).await;
            };
            let Some(pool) = pool else {
                if consumed {
                    return self.answer(Fault::Upstream, &plan, consumed).await;
                }
                return Next::HandOver;
            };
            let (mut upstream, reused) = match pool.checkout_raw() {
                Some(stream) => (stream, true),
                None => match pool.connect_raw().await {
                    Ok(stream) => (stream, false),
                    Err(error) => {
                        if replayable && attempt < shared.max_retries && withdraw(shared) {
                            in_flight.record(true);
                            attempt += 1;
                            avoid = Some(in_flight.backend().clone());
                            continue;
                        }
                        let failure = Failure::Connect(error);
                        return self.fail(failure, &plan, consumed, in_flight).await;
                    }
                },
            };
            if let Some(limit) = shared.response_timeout {
                self.response_deadline.arm(limit);
            }
            self.upstream_in.clear();
            if !bodiless && !consumed {
                self.input.advance(plan.head_len);
                consumed = true;
            }
            let result = match self.send(&mut upstream, &plan).await {
                Ok(sent) => {
                    let interrupted = matches!(sent, BodySent::Interrupted);
                    self.response_head(&mut upstream, &plan, interrupted)
                        .await
                        .map(|head| (sent, head))
                }
                Err(failure) => Err(failure),
            };
            let (sent, response) = match result {
                Ok(ok) => ok,
                Err(failure) => {
                    let nothing_back = self.upstream_in.is_empty();
                    let transport = matches!(failure, Failure::Upstream(_));
                    if transport && nothing_back && reused && bodiless && plan.idempotent {
                        // A pooled connection the backend had closed.
                        if stale < STALE_RETRIES {
                            stale += 1;
                            continue;
                        }
                    }
                    if transport
                        && nothing_back
                        && replayable
                        && attempt < shared.max_retries
                        && withdraw(shared)
                    {
                        in_flight.record(true);
                        attempt += 1;
                        avoid = Some(in_flight.backend().clone());
                        continue;
                    }
                    return self.fail(failure, &plan, consumed, in_flight).await;
                }
            };
            in_flight.record(response.status >= 500);
            let complete = self.relay_body(&mut upstream, &response).await;
            if !consumed {
                self.input.advance(plan.head_len);
            }
            let finished = matches!(sent, BodySent::Complete) && complete;
            if finished && response.reusable && self.upstream_in.is_empty() {
                pool.put_raw(upstream);
            }
            drop(in_flight);
            return if finished && !response.closes_client {
                Next::KeepAlive
            } else {
                Next::Close
            };
        }
    }

    /// Whether the connection closes after this request: the client asked,
    /// keep-alive is off, or the server is draining.
    fn closing(&self, plan: &RequestPlan) -> bool {
        plan.close || !self.http.keep_alive || self.drain.is_triggered()
    }

    /// Answers a failed exchange with its error page.
    async fn fail(
        &mut self,
        failure: Failure,
        plan: &RequestPlan,
        consumed: bool,
        mut in_flight: crate::backends::InFlight,
    ) -> Next {
        let fault = match &failure {
            Failure::Connect(error) if error.is_timeout() => Fault::ConnectTimeout,
            Failure::Connect(_) => Fault::Connect,
            Failure::Timeout => Fault::ResponseTimeout,
            Failure::Upstream(_) => Fault::Upstream,
            Failure::BadResponse(BadResponse::UnexpectedSwitch) => Fault::UnexpectedSwitch,
            Failure::BadResponse(_) => Fault::BadResponse,
            Failure::BadBody(_) => Fault::BadRequestBody,
            Failure::ClientTimeout => Fault::RequestBodyTimeout,
            Failure::ClientGone => return Next::Close,
        };
        let backend = in_flight.backend().id();
        match &failure {
            Failure::Connect(error) => tracing::debug!(backend, %error, "relay: cannot connect"),
            Failure::Upstream(error) => {
                tracing::debug!(backend, %error, "relay: backend connection failed");
            }
            Failure::BadResponse(error) => tracing::debug!(backend, %error, "relay: bad response"),
            Failure::BadBody(error) => tracing::debug!(%error, "relay: bad request body"),
            Failure::Timeout | Failure::ClientGone | Failure::ClientTimeout => {}
        }
        // A client's fault is never the backend's.
        if fault.is_backends() {
            in_flight.record(true);
        }
        drop(in_flight);
        self.answer(fault, plan, consumed).await
    }

    /// Writes an error page. A request with a body closes the connection:
    /// its body was not read to its end, or only partly sent.
    async fn answer(&mut self, fault: Fault, plan: &RequestPlan, consumed: bool) -> Next {
        let close = plan.body != RequestBody::None || self.closing(plan);
        head::write_error(
            &mut self.response_out,
            fault.status(),
            fault.message(),
            Some(&plan.request_id),
            &self.shared.forwarding,
            close,
            plan.is_head,
        );
        if !consumed {
            self.input.advance(plan.head_len.min(self.input.len()));
        }
        if self.client.write_all(&self.response_out).await.is_err()
            || self.client.flush().await.is_err()
        {
            return Next::Close;
        }
        if close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// Sends the request head and body upstream, watching for an early
    /// response while the body goes.
    async fn send(
        &mut self,
        upstream: &mut TcpStream,
        plan: &RequestPlan,
    ) -> Result<BodySent, Failure> {
        let mut left = BodyLeft::new(plan.body);
        let mut pending = 0;
        if plan.body != RequestBody::None {
            // Body bytes read with the head go out with it.
            let claimed = left.claim(&self.input).map_err(Failure::BadBody)?;
            self.request_out.extend_from_slice(&self.input[..claimed]);
            self.input.advance(claimed);
        }
        upstream
            .write_all(&self.request_out)
            .await
            .map_err(Failure::Upstream)?;
        let timed = self.shared.response_timeout.is_some();
        loop {
            if pending == 0 && left.is_done() {
                return Ok(BodySent::Complete);
            }
            let Self {
                client,
                input,
                upstream_in,
                response_deadline,
                ..
            } = self;
            if pending == 0 {
                reserve(input);
            }
            let mut answered = false;
            tokio::select! {
                biased;
                ready = upstream.readable() => {
                    ready.map_err(Failure::Upstream)?;
                    reserve(upstream_in);
                    match upstream.try_read_buf(upstream_in) {
                        Ok(0) => return Err(Failure::Upstream(closed_early())),
                        Ok(_) => answered = true,
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(error) => return Err(Failure::Upstream(error)),
                    }
                }
                ready = upstream.writable(), if pending > 0 => {
                    ready.map_err(Failure::Upstream)?;
                    match upstream.try_write(&input[..pending]) {
                        Ok(n) => {
                            input.advance(n);
                            pending -= n;
                        }
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(error) => return Err(Failure::Upstream(error)),
                    }
                }
                read = client.read_buf(input), if pending == 0 => match read {
                    Ok(0) | Err(_) => return Err(Failure::ClientGone),
                    Ok(_) => pending = left.claim(input).map_err(Failure::BadBody)?,
                },
                () = response_deadline.expired(), if timed => {
                    // Waiting for the client's bytes, or for the backend to
                    // take them.
                    return Err(if pending == 0 { Failure::ClientTimeout } else { Failure::Timeout });
                }
            }
            // A final answer, or a head too long, ends the upload.
            if answered
                && (self.relay_interim(plan, false).await?.is_some()
                    || self.upstream_in.len() >= self.http.max_header_bytes)
            {
                return Ok(BodySent::Interrupted);
            }
        }
    }

    /// Relays the complete `1xx` heads at the front of what the backend
    /// sent; the final response head once it has fully arrived.
    async fn relay_interim(
        &mut self,
        plan: &RequestPlan,
        close: bool,
    ) -> Result<Option<ResponsePlan>, Failure> {
        while !self.upstream_in.is_empty() {
            match head::prepare_response(
                &self.upstream_in,
                &mut self.response_out,
                plan,
                &self.shared.forwarding,
                close,
            ) {
                Ok(Some(response)) if response.informational => {
                    self.upstream_in.advance(response.head_len);
                    self.client
                        .write_all(&self.response_out)
                        .await
                        .map_err(|_| Failure::ClientGone)?;
                }
                Ok(head) => return Ok(head),
                Err(bad) => return Err(Failure::BadResponse(bad)),
            }
        }
        Ok(None)
    }

    /// Reads the final response head, relaying `1xx` heads before it;
    /// `close` when the client connection cannot be kept (its request
    /// body was not read to the end).
    async fn response_head(
        &mut self,
        upstream: &mut TcpStream,
        plan: &RequestPlan,
        close: bool,
    ) -> Result<ResponsePlan, Failure> {
        let timed = self.shared.response_timeout.is_some();
        loop {
            // Checked as late as possible: a drain that started while the
            // request was in flight closes the connection after it.
            let close = close || self.closing(plan);
            // Checked here too: the call costs instructions on every request.
            if !self.upstream_in.is_empty() {
                if let Some(response) = self.relay_interim(plan, close).await? {
                    return Ok(response);
                }
            }
            if self.upstream_in.len() >= self.http.max_header_bytes {
                return Err(Failure::BadResponse(BadResponse::Malformed));
            }
            reserve(&mut self.upstream_in);
            tokio::select! {
                biased;
                read = upstream.read_buf(&mut self.upstream_in) => match read {
                    Ok(0) => return Err(Failure::Upstream(closed_early())),
                    Ok(_) => {}
                    Err(error) => return Err(Failure::Upstream(error)),
                },
                () = self.response_deadline.expired(), if timed => return Err(Failure::Timeout),
            }
        }
    }

    /// Relays the response head and body to the client; whether the body
    /// was relayed to its end (the client connection and the backend
    /// connection can both be kept).
    async fn relay_body(&mut self, upstream: &mut TcpStream, response: &ResponsePlan) -> bool {
        self.upstream_in.advance(response.head_len);
        let mut left = match response.body {
            ResponseBody::None => None,
            ResponseBody::Length(n) => Some(BodyLeft::Length(n)),
            ResponseBody::Chunked => {
                Some(BodyLeft::Chunked(ChunkedDecoder::new(CHUNK_METADATA_LIMIT)))
            }
            ResponseBody::UntilClose => Some(BodyLeft::Length(u64::MAX)),
        };
        // A body that ends when the backend closes goes to the client
        // chunked: its end (or a cut) is then visible, and the client
        // connection can stay open.
        let until_close = response.body == ResponseBody::UntilClose;
        // The head and the body bytes read with it, in one write.
        let first = match &mut left {
            Some(left) => match left.claim(&self.upstream_in) {
                Ok(n) => n,
                Err(_) => return false,
            },
            None => 0,
        };
        if until_close {
            head::push_chunk(&mut self.response_out, &self.upstream_in[..first]);
        } else {
            self.response_out
                .extend_from_slice(&self.upstream_in[..first]);
        }
        self.upstream_in.advance(first);
        if self.client.write_all(&self.response_out).await.is_err() {
            return false;
        }
        let stall = self.shared.upstream.body_timeout;
        if let Some(mut left) = left {
            while !left.is_done() {
                if !self.upstream_in.is_empty() {
                    // More than the body: the backend broke framing.
                    return false;
                }
                reserve(&mut self.upstream_in);
                if let Some(limit) = stall {
                    self.response_deadline.arm(limit);
                }
                let read = tokio::select! {
                    biased;
                    read = upstream.read_buf(&mut self.upstream_in) => read,
                    () = self.response_deadline.expired(), if stall.is_some() => {
                        tracing::debug!("relay: the backend's body stalled past the body timeout");
                        return false;
                    }
                };
                match read {
                    Ok(0) if until_close => {
                        if self.client.write_all(b"0\r\n\r\n").await.is_err() {
                            return false;
                        }
                        break;
                    }
                    Ok(0) | Err(_) => return false,
                    Ok(_) => {}
                }
                let Ok(n) = left.claim(&self.upstream_in) else {
                    return false;
                };
                let written = if until_close {
                    self.response_out.clear();
                    head::push_chunk(&mut self.response_out, &self.upstream_in[..n]);
                    self.client.write_all(&self.response_out).await
                } else {
                    self.client.write_all(&self.upstream_in[..n]).await
                };
                if written.is_err() {
                    return false;
                }
                self.upstream_in.advance(n);
            }
        }
        self.client.flush().await.is_ok()
    }
}

/// The drain signal, polled through its lock only until it has the task's
/// waker: a task's waker does not change, so later polls (one per request)
/// need only the flag.
struct DrainSignal<'a, F> {
    wait: Pin<&'a mut F>,
    shutdown: &'a Shutdown,
    registered: bool,
}

impl<F: Future<Output = ()>> Future for DrainSignal<'_, F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.registered && !self.shutdown.is_triggered() {
            return Poll::Pending;
        }
        self.registered = true;
        self.wait.as_mut().poll(cx)
    }
}

/// Takes a retry from the budget, counting it.
fn withdraw<P: Policy, K>(shared: &Shared<P, K>) -> bool {
    let allowed = shared.budget.as_ref().is_some_and(Budget::withdraw);
    if allowed {
        shared.retries.increment(1);
    }
    allowed
}

/// Keeps room for one more read at the end of a buffer.
fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_ROOM {
        buf.reserve(2 * READ_ROOM);
    }
}

fn closed_early() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the backend closed the connection before its response",
    )
}

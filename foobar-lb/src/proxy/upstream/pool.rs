//! [`Http1Pool`]: keep-alive HTTP/1.1 connections to one plain backend.
//!
//! Leaner than a general client: no pool key to hash, no boxed request
//! future, no task spawned per request. A connection is checked out for one
//! exchange and goes back when the response body has been read to its end;
//! the last one returned is the first reused (warm, and the oldest expire).
//!
//! The HTTP/1 relay keeps bare TCP connections to the same backend in a
//! second list: it speaks HTTP/1.1 on them itself.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::super::body::ProxyBody;
use crate::error::UpstreamError;

/// Idle connections to one backend, with what is needed to open more.
#[derive(Debug)]
pub(crate) struct Http1Pool {
    target: Target,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    idle: Mutex<VecDeque<Idle>>,
    raw: Mutex<VecDeque<RawIdle>>,
    /// A task sweeps `raw` while it holds connections.
    sweeping: AtomicBool,
}

#[derive(Debug)]
struct RawIdle {
    stream: TcpStream,
    since: Instant,
}

/// Whether an idle connection has nothing to read: readiness means the
/// backend closed it (or sent something unasked). The runtime tracks
/// readiness from its last poll, so this costs no system call; a close it
/// has not seen yet shows up as a failed exchange, which the proxy may
/// retry.
fn is_quiet(stream: &TcpStream) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    stream.poll_read_ready(&mut cx).is_pending()
}

/// Closes the bare idle connections the backend has closed, or that have
/// expired, while any are idle: no request looks at them when traffic
/// stops, and a closed one would wait in CLOSE_WAIT until the next. Ends
/// when none are left (the next return starts it again) or the pool is
/// gone.
async fn sweep(pool: Weak<Http1Pool>) {
    loop {
        let Some(period) = pool
            .upgrade()
            .map(|p| (p.idle_timeout / 2).clamp(Duration::from_millis(50), Duration::from_secs(5)))
        else {
            return;
        };
        tokio::time::sleep(period).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut idle = pool.raw();
        idle.retain(|c| !pool.expired(c.since, now) && is_quiet(&c.stream));
        if idle.is_empty() {
            // Under the lock: a connection returned after this starts a
            // new sweep.
            pool.sweeping.store(false, Ordering::Release);
            return;
        }
    }
}

/// Where the backend is: an address, or a host name resolved per connect.
#[derive(Debug)]
enum Target {
    Addr(SocketAddr),
    Host(String, u16),
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

/// A connection checked out of a pool for one exchange. Dropped before
/// [`release`](Self::release) (a body not read to its end, an error, an
/// upgrade), it is closed rather than reused.
#[derive(Debug)]
pub(crate) struct PooledConn {
    sender: Option<SendRequest<ProxyBody>>,
    pool: Arc<Http1Pool>,
    reusable: bool,
}

/// Why [`PooledConn::send`] failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The request never left (the connection was closed): here it is.
    NotSent(Box<Request<ProxyBody>>),
    /// The exchange failed after the request was (perhaps partly) sent.
    Failed(hyper::Error),
}

impl PooledConn {
    /// Sends one request on this connection.
    pub(crate) async fn send(
        &mut self,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let Some(sender) = self.sender.as_mut() else {
            return Err(SendError::NotSent(Box::new(req)));
        };
        sender
            .try_send_request(req)
            .await
            .map_err(|mut error| match error.take_message() {
                Some(req) => SendError::NotSent(Box::new(req)),
                None => SendError::Failed(error.into_error()),
            })
    }

    /// The exchange is complete: the connection may serve another request.
    pub(crate) fn release(mut self) {
        self.reusable = true;
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            if self.reusable && !sender.is_closed() {
                self.pool.put(sender);
            }
        }
    }
}

impl Http1Pool {
    pub(crate) fn new(
        authority: &Authority,
        addr: Option<SocketAddr>,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Self {
        let target = match addr {
            Some(addr) => Target::Addr(addr),
            None => Target::Host(
                authority.host().to_owned(),
                authority.port_u16().unwrap_or(80),
            ),
        };
        Self {
            target,
            connect_timeout,
            idle_timeout,
            max_idle,
            idle: Mutex::new(VecDeque::new()),
            raw: Mutex::new(VecDeque::new()),
            sweeping: AtomicBool::new(false),
        }
    }

    /// Whether a connection idle since `since` has outlived the idle timeout.
    fn expired(&self, since: Instant, now: Instant) -> bool {
        now.duration_since(since) > self.idle_timeout
    }

    fn raw(&self) -> MutexGuard<'_, VecDeque<RawIdle>> {
        self.raw
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An idle bare connection for the relay, if there is one that has not
    /// expired and shows no sign of having been closed.
    pub(crate) fn checkout_raw(&self) -> Option<TcpStream> {
        let now = Instant::now();
        let mut idle = self.raw();
        while idle.front().is_some_and(|c| self.expired(c.since, now)) {
            idle.pop_front();
        }
        while let Some(entry) = idle.pop_back() {
            if is_quiet(&entry.stream) {
                return Some(entry.stream);
            }
        }
        None
    }

    /// Returns a bare connection after a complete exchange.
    pub(crate) fn put_raw(self: &Arc<Self>, stream: TcpStream) {
        if self.max_idle == 0 {
            return;
        }
        let mut idle = self.raw();
        if idle.len() >= self.max_idle {
            idle.pop_front();
        }
        idle.push_back(RawIdle {
            stream,
            since: Instant::now(),
        });
        drop(idle);
        if !self.sweeping.load(Ordering::Relaxed) && !self.sweeping.swap(true, Ordering::AcqRel) {
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
    }

    /// Opens a bare connection for the relay.
    pub(crate) async fn connect_raw(&self) -> Result<TcpStream, UpstreamError> {
        self.open_tcp().await
    }

    /// Opens a TCP connection (TCP_NODELAY, TCP keep-alive) under the
    /// connect timeout.
    async fn open_tcp(&self) -> Result<TcpStream, UpstreamError> {
        let connect = async {
            match &self.target {
                Target::Addr(addr) => TcpStream::connect(addr).await,
                Target::Host(host, port) => TcpStream::connect((host.as_str(), *port)).await,
            }
        };
        let stream = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(UpstreamError::Connect(source)),
            Err(_) => return Err(UpstreamError::ConnectTimeout(self.connect_timeout)),
        };
        // Small requests must not wait for Nagle; keep-alive probes find
        // backends that vanished without a FIN.
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        Ok(stream)
    }

    fn idle(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        // A queue of senders stays consistent even if a holder panicked.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An idle connection ready for a request, if there is one.
    pub(crate) fn checkout(self: &Arc<Self>) -> Option<PooledConn> {
        let now = Instant::now();
        let mut idle = self.idle();
        // The longest idle are at the front: drop those past the timeout.
        while idle.front().is_some_and(|c| self.expired(c.since, now)) {
            idle.pop_front();
        }
        // A connection whose last exchange the connection task has not
        // wound up yet is not ready: look past it, and leave it where it
        // is, so the queue stays ordered by idle time for the expiry above.
        let mut at = idle.len();
        while at > 0 {
            at -= 1;
            if idle[at].sender.is_ready() {
                return idle.remove(at).map(|entry| self.pooled(entry.sender));
            }
            if idle[at].sender.is_closed() {
                idle.remove(at);
            }
        }
        None
    }

    fn put(&self, sender: SendRequest<ProxyBody>) {
        if self.max_idle == 0 {
            return;
        }
        let mut idle = self.idle();
        if idle.len() >= self.max_idle {
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            since: Instant::now(),
        });
    }

    fn pooled(self: &Arc<Self>, sender: SendRequest<ProxyBody>) -> PooledConn {
        PooledConn {
            sender: Some(sender),
            pool: self.clone(),
            reusable: false,
        }
    }

    /// Opens a new connection; its connection task runs until the peer or
    /// the last sender goes away.
    pub(crate) async fn connect(self: &Arc<Self>) -> Result<PooledConn, UpstreamError> {
        let stream = self.open_tcp().await?;
        let (sender, connection) = http1::Builder::new()
            // Head and body copied into one buffer per write, cheaper than an
            // iovec list for the small messages a proxy mostly relays.
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Http)?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(self.pooled(sender))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A keep-alive backend on a real socket: `200 ok` to every request.
    async fn backend() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    /// One complete exchange; the connection goes back to the pool.
    async fn exchange(mut conn: PooledConn) {
        let response = conn.send(Request::new(ProxyBody::empty())).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        conn.release();
    }

    fn ready_count(pool: &Http1Pool) -> usize {
        pool.idle().iter().filter(|c| c.sender.is_ready()).count()
    }

    async fn until_all_ready(pool: &Http1Pool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while ready_count(pool) < pool.idle().len() {
            assert!(
                Instant::now() < deadline,
                "pooled connections never became ready"
            );
            tokio::task::yield_now().await;
        }
    }

    /// A checkout that looks past a connection whose last exchange is not
    /// wound up yet must leave it in place: moved to the front, it would
    /// shield older connections behind it from the idle-timeout expiry,
    /// and a later checkout would hand out one idle for too long.
    #[tokio::test]
    async fn skipping_a_busy_connection_keeps_the_idle_order_for_expiry() {
        let addr = backend().await;
        let authority: Authority = addr.to_string().parse().unwrap();
        let idle_timeout = Duration::from_secs(1);
        let pool = Arc::new(Http1Pool::new(
            &authority,
            Some(addr),
            Duration::from_secs(3),
            idle_timeout,
            16,
        ));

        // Two connections idle from `start`: the oldest in the pool.
        let (first, second) = (pool.connect().await.unwrap(), pool.connect().await.unwrap());
        exchange(first).await;
        exchange(second).await;
        until_all_ready(&pool).await;
        let start = Instant::now();
        tokio::time::sleep(idle_timeout / 2).await;

        // A third, checked in as soon as it is open: its connection task
        // has not run yet, so it is not ready (as one is between the end of
        // an exchange and its task winding it up).
        pool.connect().await.unwrap().release();
        let ready = ready_count(&pool);
        assert_eq!((pool.idle().len(), ready), (3, 2));
        let taken = pool.checkout().expect("a ready connection");
        drop(taken); // not released: closed, not returned
        assert_eq!(pool.idle().len(), 2);

        // Past the older one's timeout, well before the newer one's: the
        // older one goes, the newer one is handed out.
        let expired = start + idle_timeout + Duration::from_millis(100);
        tokio::time::sleep_until(expired.into()).await;
        until_all_ready(&pool).await;
        assert!(
            Instant::now() < start + idle_timeout + idle_timeout / 2,
            "too slow to tell the two connections apart"
        );
        let reused = pool.checkout().expect("the newer connection");
        assert_eq!(
            pool.idle().len(),
            0,
            "the expired connection is still pooled"
        );
        exchange(reused).await;
    }
}

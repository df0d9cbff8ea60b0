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

/// Whether a connection has nothing to read right now. Any byte (stray
/// bytes after a response, which the next request would take for its
/// answer) or the end (the backend closed it) means it must not carry
/// another request. One non-blocking peek: unlike [`is_quiet`], it also
/// sees bytes that came since the runtime last looked.
fn nothing_to_read(socket: &impl std::os::fd::AsFd) -> bool {
    let mut byte = [std::mem::MaybeUninit::uninit(); 1];
    let peeked = socket2::SockRef::from(socket).peek(&mut byte);
    matches!(peeked, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
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
    /// The connection's socket, for [`nothing_to_read`] (a second
    /// descriptor: hyper owns the first).
    probe: Option<socket2::Socket>,
    since: Instant,
}

/// A connection checked out of a pool for one exchange. Dropped before
/// [`release`](Self::release) (a body not read to its end, an error, an
/// upgrade), it is closed rather than reused.
#[derive(Debug)]
pub(crate) struct PooledConn {
    sender: Option<SendRequest<ProxyBody>>,
    probe: Option<socket2::Socket>,
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
                self.pool.put(sender, self.probe.take());
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
            if nothing_to_read(&entry.stream) {
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
            let entry = &idle[at];
            let readable = || {
                entry
                    .probe
                    .as_ref()
                    .is_some_and(|probe| !nothing_to_read(probe))
            };
            if entry.sender.is_closed() || readable() {
                idle.remove(at);
            } else if entry.sender.is_ready() {
                return idle
                    .remove(at)
                    .map(|entry| self.pooled(entry.sender, entry.probe));
            }
        }
        None
    }

    fn put(&self, sender: SendRequest<ProxyBody>, probe: Option<socket2::Socket>) {
        if self.max_idle == 0 {
            return;
        }
        let mut idle = self.idle();
        if idle.len() >= self.max_idle {
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            probe,
            since: Instant::now(),
        });
    }

    fn pooled(
        self: &Arc<Self>,
        sender: SendRequest<ProxyBody>,
        probe: Option<socket2::Socket>,
    ) -> PooledConn {
        PooledConn {
            sender: Some(sender),
            probe,
            pool: self.clone(),
            reusable: false,
        }
    }

    /// Opens a new connection; its connection task runs until the peer or
    /// the last sender goes away.
    pub(crate) async fn connect(self: &Arc<Self>) -> Result<PooledConn, UpstreamError> {
        let stream = self.open_tcp().await?;
        let probe = std::os::fd::AsFd::as_fd(&stream)
            .try_clone_to_owned()
            .ok()
            .map(socket2::Socket::from);
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
        Ok(self.pooled(sender, probe))
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

    /// A std-thread backend: answers one request `200 ok`, then writes
    /// `stray` when told to, and keeps the connection open.
    fn stray_backend() -> (SocketAddr, std::sync::mpsc::Sender<&'static [u8]>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tell, told) = std::sync::mpsc::channel::<&'static [u8]>();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .unwrap();
            while let Ok(stray) = told.recv() {
                stream.write_all(stray).unwrap();
                stream.flush().unwrap();
            }
        });
        (addr, tell)
    }

    fn pool_for(addr: SocketAddr) -> Arc<Http1Pool> {
        let authority: Authority = addr.to_string().parse().unwrap();
        Arc::new(Http1Pool::new(
            &authority,
            Some(addr),
            Duration::from_secs(3),
            Duration::from_secs(60),
            16,
        ))
    }

    /// Bytes that came after a response, before the runtime has looked at
    /// the socket again, keep the connection out of use: it is checked
    /// with the socket itself, not with what the runtime last saw.
    #[tokio::test]
    async fn a_bare_connection_with_stray_bytes_is_never_handed_out() {
        let (addr, stray) = stray_backend();
        let pool = pool_for(addr);
        let mut stream = pool.connect_raw().await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 40];
        let mut got = 0;
        while !answer[..got].ends_with(b"ok") {
            got += stream.read(&mut answer[got..]).await.unwrap();
        }
        pool.put_raw(stream);
        stray
            .send(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nPOISON")
            .unwrap();
        // The bytes are in the socket once the peer's write returns; wait
        // for that without giving the runtime a turn.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pooled = pool.raw();
            let mut byte = [std::mem::MaybeUninit::uninit(); 1];
            if socket2::SockRef::from(&pooled[0].stream)
                .peek(&mut byte)
                .is_ok()
            {
                break;
            }
            drop(pooled);
            assert!(Instant::now() < deadline, "the stray bytes never came");
            std::thread::yield_now();
        }
        assert!(
            pool.checkout_raw().is_none(),
            "a poisoned connection was handed out"
        );
    }

    #[tokio::test]
    async fn a_pooled_connection_with_stray_bytes_is_never_handed_out() {
        let (addr, stray) = stray_backend();
        let pool = pool_for(addr);
        exchange(pool.connect().await.unwrap()).await;
        until_all_ready(&pool).await;
        stray
            .send(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nPOISON")
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let idle = pool.idle();
            let probe = idle[0].probe.as_ref().expect("a probe");
            let mut byte = [std::mem::MaybeUninit::uninit(); 1];
            if socket2::SockRef::from(probe).peek(&mut byte).is_ok() {
                break;
            }
            drop(idle);
            assert!(Instant::now() < deadline, "the stray bytes never came");
            std::thread::yield_now();
        }
        assert!(
            pool.checkout().is_none(),
            "a poisoned connection was handed out"
        );
    }
}

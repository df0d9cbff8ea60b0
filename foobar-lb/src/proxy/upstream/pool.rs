//! [`Http1Pool`]: keep-alive HTTP/1.1 connections to one backend, plain
//! or TLS (sessions resumed through the shared client configuration).
//!
//! A connection is checked out for one exchange and goes back when the
//! response has been read to its end with nothing after it; the last one
//! returned is the first reused (warm, and the oldest expire). One that has
//! anything to read when it would be reused (stray bytes, the backend's
//! close) is closed instead.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use http::uri::Authority;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::conn::{Conn, Stream};
use crate::error::UpstreamError;

/// Idle connections to one backend, with what is needed to open more.
///
/// Idle connections are kept per worker (see
/// [`foobar_core::runtime::current_worker`]): a socket is driven by the
/// runtime that opened it, so a worker reuses only its own, as HAProxy's
/// threads keep their own idle lists. Everything else about a backend
/// (health, ejection, counters) is shared by all workers.
#[derive(Debug)]
pub(crate) struct Http1Pool {
    /// The backend's `host:port`, the `Host` of requests without one.
    pub(crate) authority: http::HeaderValue,
    target: Target,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    /// Per worker (`max_idle` each); slot 0 serves threads that are not
    /// workers.
    slots: Box<[Slot]>,
}

/// One worker's idle connections.
#[derive(Debug, Default)]
struct Slot {
    idle: Mutex<VecDeque<Idle>>,
    /// A task sweeps `idle` while it holds connections.
    sweeping: AtomicBool,
}

impl Slot {
    fn idle(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        // A queue of connections stays consistent even if a holder panicked.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

/// Where the backend is: an address, or a host name resolved per connect.
#[derive(Debug)]
enum Target {
    Addr(SocketAddr),
    Host(String, u16),
}

/// A connection checked out of a pool for one exchange. Dropped before
/// [`release`](Self::release) (a body not read to its end, an error, a
/// tunnel), it is closed rather than reused.
#[derive(Debug)]
pub(crate) struct PooledConn {
    pub(crate) conn: Conn,
    /// Whether it came from the pool (it may have been closed by the
    /// backend meanwhile) rather than being new.
    pub(crate) reused: bool,
    pool: Arc<Http1Pool>,
}

impl PooledConn {
    /// The connection, out of the pool for good (a tunnel).
    pub(crate) fn into_conn(self) -> Conn {
        self.conn
    }

    /// The exchange is complete: the connection may serve another request.
    pub(crate) fn release(self) {
        let pool = self.pool.clone();
        pool.put(self.conn);
    }
}

/// Closes the idle connections the backend has closed, or that have
/// expired, while any are idle: no request looks at them when traffic
/// stops, and a closed one would wait in CLOSE_WAIT until the next. Ends
/// when none are left (the next return starts it again) or the pool is
/// gone.
async fn sweep(pool: Weak<Http1Pool>, slot: usize) {
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
        let slot = &pool.slots[slot];
        let mut idle = slot.idle();
        idle.retain_mut(|c| !pool.expired(c.since, now) && c.conn.stream.is_quiet());
        if idle.is_empty() {
            // Under the lock: a connection returned after this starts a
            // new sweep.
            slot.sweeping.store(false, Ordering::Release);
            return;
        }
    }
}

impl Http1Pool {
    pub(crate) fn new(
        authority: &Authority,
        addr: Option<SocketAddr>,
        tls: Option<Arc<ClientConfig>>,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Result<Self, crate::Error> {
        let target = match addr {
            Some(addr) => Target::Addr(addr),
            None => Target::Host(
                authority.host().to_owned(),
                authority
                    .port_u16()
                    .unwrap_or(if tls.is_some() { 443 } else { 80 }),
            ),
        };
        let tls = match tls {
            Some(config) => {
                let host = authority.host();
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                let name = ServerName::try_from(host.to_owned()).map_err(|_| {
                    crate::Error::InvalidUpstream {
                        input: authority.to_string(),
                        reason: "the host is not a valid TLS server name".to_owned(),
                    }
                })?;
                Some((config, name))
            }
            None => None,
        };
        let authority_value = http::HeaderValue::from_str(authority.as_str()).map_err(|_| {
            crate::Error::InvalidUpstream {
                input: authority.to_string(),
                reason: "the authority is not a valid Host value".to_owned(),
            }
        })?;
        Ok(Self {
            authority: authority_value,
            target,
            tls,
            connect_timeout,
            idle_timeout,
            max_idle,
            slots: (0..=foobar_core::runtime::available_workers().get())
                .map(|_| Slot::default())
                .collect(),
        })
    }

    /// Whether a connection idle since `since` has outlived the idle timeout.
    fn expired(&self, since: Instant, now: Instant) -> bool {
        now.duration_since(since) > self.idle_timeout
    }

    /// The calling worker's slot: slot 0 off the workers, else one of the
    /// others (shared by two workers only when there are more workers than
    /// cores).
    fn slot_index(&self) -> usize {
        match foobar_core::runtime::current_worker() {
            None => 0,
            Some(worker) => 1 + worker % (self.slots.len() - 1),
        }
    }

    fn idle(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        self.slots[self.slot_index()].idle()
    }

    /// An idle connection that has not expired and has nothing to read.
    pub(crate) fn checkout(self: &Arc<Self>) -> Option<PooledConn> {
        let now = Instant::now();
        let mut idle = self.idle();
        // The longest idle are at the front: drop those past the timeout.
        while idle.front().is_some_and(|c| self.expired(c.since, now)) {
            idle.pop_front();
        }
        while let Some(mut entry) = idle.pop_back() {
            if entry.conn.stream.is_quiet() {
                return Some(PooledConn {
                    conn: entry.conn,
                    reused: true,
                    pool: self.clone(),
                });
            }
        }
        None
    }

    /// Returns a connection after a complete exchange.
    fn put(self: &Arc<Self>, conn: Conn) {
        if self.max_idle == 0 || !conn.read_buf.is_empty() || conn.eof {
            return;
        }
        let index = self.slot_index();
        let slot = &self.slots[index];
        let mut idle = slot.idle();
        if idle.len() >= self.max_idle {
            idle.pop_front();
        }
        idle.push_back(Idle {
            conn,
            since: Instant::now(),
        });
        drop(idle);
        if !slot.sweeping.load(Ordering::Relaxed) && !slot.sweeping.swap(true, Ordering::AcqRel) {
            tokio::spawn(sweep(Arc::downgrade(self), index));
        }
    }

    /// Opens a connection (TCP_NODELAY, TCP keep-alive, then TLS if the
    /// backend is `https://`), all under the connect timeout.
    pub(crate) async fn connect(self: &Arc<Self>) -> Result<PooledConn, UpstreamError> {
        let open = async {
            let tcp = match &self.target {
                Target::Addr(addr) => TcpStream::connect(addr).await,
                Target::Host(host, port) => TcpStream::connect((host.as_str(), *port)).await,
            }
            .map_err(UpstreamError::Connect)?;
            // Small requests must not wait for Nagle; keep-alive probes
            // find backends that vanished without a FIN.
            let _ = tcp.set_nodelay(true);
            let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
            let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
            match &self.tls {
                None => Ok(Stream::Tcp(tcp)),
                Some((config, name)) => TlsConnector::from(config.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .map(|tls| Stream::Tls(Box::new(tls)))
                    .map_err(UpstreamError::Tls),
            }
        };
        let stream = tokio::time::timeout(self.connect_timeout, open)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(self.connect_timeout))??;
        Ok(PooledConn {
            conn: Conn::new(stream),
            reused: false,
            pool: self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A std-thread backend: answers one request `200 ok`, then writes
    /// `stray` when told to, and keeps the connection open.
    fn stray_backend() -> (SocketAddr, std::sync::mpsc::Sender<&'static [u8]>) {
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

    fn pool_for(addr: SocketAddr, idle_timeout: Duration) -> Arc<Http1Pool> {
        let authority: Authority = addr.to_string().parse().unwrap();
        Arc::new(
            Http1Pool::new(
                &authority,
                Some(addr),
                None,
                Duration::from_secs(3),
                idle_timeout,
                16,
            )
            .unwrap(),
        )
    }

    async fn one_exchange(pooled: &mut PooledConn) {
        let stream = match &mut pooled.conn.stream {
            Stream::Tcp(tcp) => tcp,
            Stream::Tls(_) => unreachable!("plain backend"),
        };
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 40];
        let mut got = 0;
        while !answer[..got].ends_with(b"ok") {
            got += stream.read(&mut answer[got..]).await.unwrap();
        }
    }

    /// Bytes that came after a response, before the runtime has looked at
    /// the socket again, keep the connection out of use: it is checked
    /// with the socket itself, not with what the runtime last saw.
    #[tokio::test]
    async fn a_connection_with_stray_bytes_is_never_handed_out() {
        let (addr, stray) = stray_backend();
        let pool = pool_for(addr, Duration::from_secs(60));
        let mut pooled = pool.connect().await.unwrap();
        one_exchange(&mut pooled).await;
        pooled.release();
        stray
            .send(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nPOISON")
            .unwrap();
        // The bytes are in the socket once the peer's write returns; wait
        // for that without giving the runtime a turn.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let idle = pool.idle();
            if !super::super::conn::nothing_to_read(idle[0].conn.stream.tcp()) {
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

    #[tokio::test]
    async fn idle_connections_are_reused_until_they_expire() {
        let (addr, _stray) = stray_backend();
        let pool = pool_for(addr, Duration::from_millis(100));
        let mut pooled = pool.connect().await.unwrap();
        one_exchange(&mut pooled).await;
        pooled.release();
        let again = pool.checkout().expect("the fresh connection");
        assert!(again.reused);
        again.release();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            pool.checkout().is_none(),
            "an expired connection was handed out"
        );
    }

    /// A connection opened on one worker's runtime is driven by that
    /// runtime: another worker never gets it from the pool.
    #[test]
    fn workers_reuse_only_their_own_connections() {
        let (addr, _stray) = stray_backend();
        let pool = pool_for(addr, Duration::from_secs(60));
        let (opened, wait_opened) = std::sync::mpsc::channel::<()>();
        let wait_opened = Mutex::new(wait_opened);
        let result = foobar_core::runtime::run_per_core(
            std::num::NonZeroUsize::new(2).unwrap(),
            move |worker| {
                let pool = pool.clone();
                let opened = opened.clone();
                let waited = (worker == 1).then(|| wait_opened.lock().unwrap().recv());
                async move {
                    if worker == 0 {
                        let mut pooled = pool.connect().await.map_err(|e| e.to_string())?;
                        one_exchange(&mut pooled).await;
                        pooled.release();
                        let again = pool.checkout().ok_or("worker 0 lost its connection")?;
                        again.release();
                        opened.send(()).map_err(|e| e.to_string())?;
                    } else if waited.is_some_and(|w| w.is_ok()) && pool.checkout().is_some() {
                        return Err("worker 1 got worker 0's connection".to_owned());
                    }
                    Ok::<(), String>(())
                }
            },
        );
        result.unwrap();
    }
}

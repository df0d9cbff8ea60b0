//! The server: listening sockets, the accept loop, the connection stage, HTTP
//! and graceful shutdown.
//!
//! [`Server`] is the only code in foobar that owns listening sockets. It
//! binds one or more addresses, accepts with a back-off on resource errors,
//! runs each connection through a *connection stage* (a `tower::Service`
//! over [`Accepted`], where firewall, limit and TLS layers stack), then
//! serves HTTP on it: HTTP/1.1 with foobar's own codec
//! ([`http1`](crate::http1)), HTTP/2 (chosen by ALPN or by its preface)
//! and protocol switches with hyper. Every request reaches the service as
//! an `http::Request<`[`RequestBody`]`>` with
//! [`ConnInfo`] in its extensions, whichever protocol carried it: one
//! composition model, one path for every request.
//!
//! ```no_run
//! use std::convert::Infallible;
//! use foobar_core::{Server, Shutdown};
//! use foobar_core::RequestBody;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use bytes::Bytes;
//!
//! # async fn run() -> Result<(), foobar_core::Error> {
//! let hello = tower::service_fn(|_req: Request<RequestBody>| async {
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello\n"))))
//! });
//! Server::builder()
//!     .bind("127.0.0.1:8080")?
//!     .bind("[::1]:8080")?
//!     .shutdown(Shutdown::on_signals())
//!     .build()?
//!     .serve(hello)
//!     .await
//! # }
//! ```

mod config;
mod connection;
mod listener;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

pub use self::config::HttpConfig;
pub use self::connection::PlainTcp;
use self::connection::Shared;
use self::listener::{AcceptBackoff, ListenOptions};
use crate::body::RequestBody;
use crate::conn::{Accepted, ConnInfo};
use crate::error::{BoxError, Error, Result};
use crate::shutdown::Shutdown;

/// Builds a [`Server`]: addresses, socket options, HTTP settings, shutdown.
#[derive(Debug)]
#[must_use]
pub struct ServerBuilder {
    addrs: Vec<SocketAddr>,
    listen: ListenOptions,
    http: HttpConfig,
    shutdown: Shutdown,
    grace: Duration,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            addrs: Vec::new(),
            listen: ListenOptions {
                backlog: 1024,
                reuse_port: false,
            },
            http: HttpConfig::default(),
            shutdown: Shutdown::new(),
            grace: Duration::from_secs(30),
        }
    }
}

impl ServerBuilder {
    /// Adds an address to listen on, as `ip:port` (`0.0.0.0:443`,
    /// `[::]:443`, `127.0.0.1:0` for a free port).
    ///
    /// # Errors
    /// [`Error::InvalidAddress`], naming the string, if it is not `ip:port`.
    pub fn bind(mut self, addr: &str) -> Result<Self> {
        self.addrs.push(listener::parse_addr(addr)?);
        Ok(self)
    }

    /// Adds an address to listen on.
    pub fn bind_addr(mut self, addr: SocketAddr) -> Self {
        self.addrs.push(addr);
        self
    }

    /// The HTTP settings (timeouts, sizes, keep-alive).
    pub fn http(mut self, config: HttpConfig) -> Self {
        self.http = config;
        self
    }

    /// Shorthand for the HTTP header read timeout; `None` disables it.
    pub fn header_read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.http.header_read_timeout = timeout;
        self
    }

    /// Shorthand for the write timeout to clients that stop reading; `None`
    /// disables it.
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.http.write_timeout = timeout;
        self
    }

    /// The signal that starts a graceful shutdown. Default: none (serve
    /// until the future is dropped).
    pub fn shutdown(mut self, signal: Shutdown) -> Self {
        self.shutdown = signal;
        self
    }

    /// How long in-flight requests may run after shutdown starts before
    /// their connections are cut. Default: 30 s.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The listen backlog. Default: 1024.
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.listen.backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        self
    }

    /// Sets `SO_REUSEPORT`, so several servers (one per core, each on its own
    /// single-threaded runtime) can share an address and let the kernel
    /// spread connections. Default: off.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.listen.reuse_port = on;
        self
    }

    /// Binds every address.
    ///
    /// # Errors
    /// [`Error::NoAddress`] without addresses; [`Error::Bind`], naming the
    /// address, when one cannot be bound (in use, not local, no permission).
    pub fn build(self) -> Result<Server> {
        crate::metrics::help::describe();
        if self.addrs.is_empty() {
            return Err(Error::NoAddress);
        }
        let listeners = self
            .addrs
            .iter()
            .map(|&addr| {
                let listener = listener::bind(addr, self.listen)?;
                let local = listener
                    .local_addr()
                    .map_err(|source| Error::Bind { addr, source })?;
                Ok((listener, local))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Server {
            listeners,
            http: self.http,
            shutdown: self.shutdown,
            grace: self.grace,
        })
    }
}

/// A bound server, ready to serve. See the [module docs](self).
#[derive(Debug)]
pub struct Server {
    listeners: Vec<(StdListener, SocketAddr)>,
    http: HttpConfig,
    shutdown: Shutdown,
    grace: Duration,
}

impl Server {
    /// A builder with the default settings.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The addresses actually bound (with the real port where `:0` was asked).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|(_, addr)| *addr).collect()
    }

    /// The first bound address.
    pub fn local_addr(&self) -> SocketAddr {
        // `build` refuses an empty address list.
        self.listeners[0].1
    }

    /// The shutdown signal this server obeys.
    pub fn shutdown_signal(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Serves HTTP on plain TCP until the shutdown signal has fired and every
    /// connection has finished (or the grace period has run out).
    ///
    /// # Errors
    /// [`Error::Bind`] if a listener cannot be registered with the runtime.
    pub async fn serve<S, B>(self, http: S) -> Result<()>
    where
        S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.serve_connections(PlainTcp, http).await
    }

    /// Serves HTTP behind a connection stage: `conn_stage` receives every
    /// accepted TCP connection and returns the stream to speak HTTP on (or
    /// an error, which closes the connection). Stack connection layers
    /// (firewall, limits, TLS) with `tower::ServiceBuilder` over [`PlainTcp`].
    ///
    /// # Errors
    /// [`Error::Bind`] if a listener cannot be registered with the runtime.
    pub async fn serve_connections<C, IO, S, B>(self, conn_stage: C, http: S) -> Result<()>
    where
        C: Service<Accepted<TcpStream>, Response = Accepted<IO>> + Clone + Send + Sync + 'static,
        C::Error: Into<BoxError>,
        C::Future: Send,
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let listeners = self
            .listeners
            .into_iter()
            .map(|(std, addr)| {
                TcpListener::from_std(std).map_err(|source| Error::Bind { addr, source })
            })
            .collect::<Result<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            conn_stage,
            http,
            http_config: Arc::new(self.http.clone()),
            builder: self.http.builder(),
            first_bytes_timeout: self.http.header_read_timeout,
            drain: self.shutdown.clone(),
            force: CancellationToken::new(),
        });
        let tracker = TaskTracker::new();
        for listener in listeners {
            tracker.spawn(accept_loop(listener, shared.clone(), tracker.clone()));
        }

        self.shutdown.wait().await;
        tracing::info!(grace = ?self.grace, "shutting down: no new connections, draining in-flight requests");
        tracker.close();
        if tokio::time::timeout(self.grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("grace period over: closing the remaining connections");
            shared.force.cancel();
            tracker.wait().await;
        }
        Ok(())
    }
}

async fn accept_loop<C, IO, S, B>(
    listener: TcpListener,
    shared: Arc<Shared<C, S>>,
    tracker: TaskTracker,
) where
    C: Service<Accepted<TcpStream>, Response = Accepted<IO>> + Clone + Send + Sync + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(error) => {
            tracing::error!(%error, "listener has no local address; not accepting on it");
            return;
        }
    };
    tracing::info!(%local, "listening");
    let mut backoff = AcceptBackoff::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener::accept(&listener, &mut backoff) => accepted,
            // Dropping the listener here closes the socket: new connections
            // are refused from now on.
            () = shared.drain.wait() => return,
        };
        tracker.spawn(connection::serve(
            stream,
            ConnInfo::new(peer, local),
            shared.clone(),
        ));
    }
}

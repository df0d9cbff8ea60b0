//! Connection limits: total and per client, at connection level.
//!
//! [`ConnLimitLayer`] counts open connections in total and per client
//! address (IPv6 grouped by a prefix, /64 by default). A connection over
//! either limit is refused at once (the server closes it) and counted. An
//! admitted connection's stream is wrapped in [`LimitedIo`], which holds the
//! connection's permit: the count goes down when the connection is dropped,
//! whichever layer or task drops it.
//!
//! The client address is [`ConnInfo::client_addr`] (the PROXY protocol
//! client when a [`ProxyProtocolLayer`](crate::proxy_protocol::ProxyProtocolLayer)
//! runs before this layer).
//!
//! ```
//! use foobar_core::PlainTcp;
//! use foobar_guard::limit::ConnLimitLayer;
//! use tower::ServiceBuilder;
//!
//! let stage = ServiceBuilder::new()
//!     .layer(ConnLimitLayer::new(10_000).per_client(64))
//!     .service(PlainTcp);
//! # let _ = stage;
//! ```
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `foobar_connections_refused_total` | counter | `reason` (`total_limit`, `client_limit`) |
//! | `foobar_connections_limited_open` | gauge (connections holding a permit) | – |
//!
//! [`ConnInfo::client_addr`]: foobar_core::ConnInfo::client_addr

mod io;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use foobar_core::{Accepted, BoxError};
use metrics::{Counter, Gauge};
use tower_layer::Layer;
use tower_service::Service;

pub use self::io::{ConnPermit, LimitedIo};
use crate::accept_future::AcceptFuture;
use crate::client_addr::client_key;
use crate::error::Refused;

/// Shards of the per-client counts: connections from different clients
/// rarely wait on the same lock.
const SHARDS: usize = 64;

/// Limits open connections in total and per client. See the
/// [module docs](self).
#[derive(Clone, Debug)]
pub struct ConnLimitLayer {
    state: Arc<LimitState>,
}

/// The counts shared by every service (and permit) of one layer.
#[derive(Debug)]
pub(crate) struct LimitState {
    total_limit: usize,
    per_client_limit: usize,
    v6_prefix: u8,
    open: AtomicUsize,
    per_client: Box<[Mutex<HashMap<IpAddr, usize>>]>,
    hasher: RandomState,
    refused_total: Counter,
    refused_client: Counter,
    open_gauge: Gauge,
}

impl ConnLimitLayer {
    /// At most `total` connections open at once; no per-client limit.
    ///
    /// Install the metrics recorder first: the counters are registered
    /// here, once.
    pub fn new(total: usize) -> Self {
        Self::build(total, usize::MAX, 64)
    }

    fn build(total: usize, per_client: usize, v6_prefix: u8) -> Self {
        crate::metric_help::describe();
        Self {
            state: Arc::new(LimitState {
                total_limit: total,
                per_client_limit: per_client,
                v6_prefix: v6_prefix.min(128),
                open: AtomicUsize::new(0),
                per_client: (0..SHARDS).map(|_| Mutex::default()).collect(),
                hasher: RandomState::new(),
                refused_total: metrics::counter!("foobar_connections_refused_total", "reason" => "total_limit"),
                refused_client: metrics::counter!("foobar_connections_refused_total", "reason" => "client_limit"),
                open_gauge: metrics::gauge!("foobar_connections_limited_open"),
            }),
        }
    }

    /// At most `limit` connections open at once from one client.
    #[must_use]
    pub fn per_client(self, limit: usize) -> Self {
        Self::build(self.state.total_limit, limit, self.state.v6_prefix)
    }

    /// Counts IPv6 clients by their first `prefix` bits (default 64; 128
    /// counts every address apart).
    #[must_use]
    pub fn ipv6_prefix(self, prefix: u8) -> Self {
        Self::build(self.state.total_limit, self.state.per_client_limit, prefix)
    }

    /// Connections currently open (holding a permit).
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::Relaxed)
    }
}

impl<S> Layer<S> for ConnLimitLayer {
    type Service = ConnLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConnLimit {
            inner,
            state: self.state.clone(),
        }
    }
}

impl LimitState {
    fn shard(&self, key: &IpAddr) -> &Mutex<HashMap<IpAddr, usize>> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        &self.per_client[index]
    }

    /// Takes a permit for `addr`, or says which limit refuses it.
    fn acquire(self: &Arc<Self>, addr: IpAddr) -> Result<ConnPermit, Refused> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |open| {
                (open < self.total_limit).then_some(open + 1)
            });
        if admitted.is_err() {
            self.refused_total.increment(1);
            return Err(Refused::TooManyConnections {
                addr,
                limit: self.total_limit,
            });
        }
        let key = (self.per_client_limit != usize::MAX).then(|| client_key(addr, self.v6_prefix));
        if let Some(key) = key {
            let mut counts = self.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
            let count = counts.entry(key).or_insert(0);
            if *count >= self.per_client_limit {
                if *count == 0 {
                    counts.remove(&key);
                }
                drop(counts);
                self.open.fetch_sub(1, Ordering::AcqRel);
                self.refused_client.increment(1);
                return Err(Refused::TooManyConnectionsFromClient {
                    addr,
                    limit: self.per_client_limit,
                });
            }
            *count += 1;
        }
        self.open_gauge.increment(1.0);
        Ok(ConnPermit::new(self.clone(), key))
    }

    pub(crate) fn release(&self, key: Option<IpAddr>) {
        if let Some(key) = key {
            let mut counts = self.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = counts.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    // Memory follows open connections, not clients ever seen.
                    counts.remove(&key);
                }
            }
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.open_gauge.decrement(1.0);
    }
}

/// The connection-limit service; made by [`ConnLimitLayer`].
#[derive(Clone, Debug)]
pub struct ConnLimit<S> {
    inner: S,
    state: Arc<LimitState>,
}

impl<S> ConnLimit<S> {
    /// Wraps `inner`, allowing `total` connections at once.
    pub fn new(inner: S, total: usize) -> Self {
        ConnLimitLayer::new(total).layer(inner)
    }

    /// A layer that wraps services in `ConnLimit`.
    pub fn layer(total: usize) -> ConnLimitLayer {
        ConnLimitLayer::new(total)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, IO> Service<Accepted<IO>> for ConnLimit<S>
where
    S: Service<Accepted<LimitedIo<IO>>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AcceptFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, accepted: Accepted<IO>) -> Self::Future {
        let addr = accepted.info.client_addr().ip();
        match self.state.acquire(addr) {
            Ok(permit) => AcceptFuture::inner(
                self.inner
                    .call(accepted.map_io(|io| LimitedIo::new(io, permit))),
            ),
            Err(error) => {
                tracing::debug!(%error, "connection refused by the connection limit");
                AcceptFuture::denied(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_count_and_release() {
        let layer = ConnLimitLayer::new(3).per_client(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let b_neighbour: IpAddr = "2001:db8::2".parse().unwrap();
        let p1 = layer.state.acquire(a).unwrap();
        let p2 = layer.state.acquire(a).unwrap();
        assert!(matches!(
            layer.state.acquire(a),
            Err(Refused::TooManyConnectionsFromClient { .. })
        ));
        let p3 = layer.state.acquire(b).unwrap();
        assert!(matches!(
            layer.state.acquire(b_neighbour),
            Err(Refused::TooManyConnections { .. })
        ));
        assert_eq!(layer.open_connections(), 3);
        drop(p1);
        let p4 = layer.state.acquire(b_neighbour).unwrap();
        // Same /64: the per-client limit now binds b.
        drop(p2);
        assert!(matches!(
            layer.state.acquire(b),
            Err(Refused::TooManyConnectionsFromClient { .. })
        ));
        drop((p3, p4));
        assert_eq!(layer.open_connections(), 0);
        assert!(layer
            .state
            .per_client
            .iter()
            .all(|s| s.lock().unwrap().is_empty()));
    }
}

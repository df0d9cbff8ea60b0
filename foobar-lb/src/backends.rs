//! The backend set: add, remove, drain and re-weight backends while
//! requests flow, without losing any backend's state.
//!
//! Writers (configuration changes, health verdicts, ejections) take a mutex,
//! rebuild an immutable snapshot of the available backends (with the
//! policy's precomputed state) and swap it in; the request path only loads
//! the current snapshot (`arc-swap`), so it never waits for a writer.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use foobar_core::status::StatusEvent;
use foobar_core::Shutdown;

use crate::backend::{now_ms, Backend, BackendConfig};
use crate::error::Error;
use crate::health::OutlierDetection;
use crate::policy::Policy;
use crate::status::LbStatus;

/// Most recent events kept for the status page.
const MAX_EVENTS: usize = 64;

/// A live set of backends, each with its service `S` (the client that talks
/// to it), balanced by policy `P`. Cheap to clone; clones share the set.
///
/// ```
/// use foobar_lb::{BackendConfig, Backends, policy::RoundRobin};
///
/// let backends = Backends::builder(RoundRobin::new()).build();
/// backends.add(BackendConfig::new("a"), "service for a").unwrap();
/// backends.add(BackendConfig::new("b").weight(2), "service for b").unwrap();
/// backends.set_weight("b", 3).unwrap();
/// backends.remove("a").unwrap();
/// assert_eq!(backends.len(), 1);
/// ```
pub struct Backends<S, P: Policy> {
    inner: Arc<Inner<S, P>>,
}

impl<S, P: Policy> Clone for Backends<S, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S, P: Policy> std::fmt::Debug for Backends<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("policy", &self.inner.policy.name())
            .field("len", &self.inner.lock().len())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner<S, P: Policy> {
    policy: P,
    members: Mutex<Vec<Member<S>>>,
    current: ArcSwap<Snapshot<S, P::Prepared>>,
    panic_mode: bool,
    outlier: Option<OutlierDetection>,
    initial_rtt: Duration,
    shutdown: Shutdown,
    events: Mutex<VecDeque<StatusEvent>>,
    name: String,
}

struct Member<S> {
    backend: Arc<Backend>,
    service: S,
}

/// What requests read: the backends that take traffic, and (in panic mode)
/// every backend not being drained, for when none is available.
pub(crate) struct Snapshot<S, X> {
    live: Pool<S, X>,
    panic: Option<Pool<S, X>>,
}

pub(crate) struct Pool<S, X> {
    backends: Vec<Arc<Backend>>,
    services: Vec<S>,
    prepared: X,
}

/// Builds a [`Backends`] set.
#[derive(Debug)]
#[must_use]
pub struct BackendsBuilder<P> {
    policy: P,
    panic_mode: bool,
    outlier: Option<OutlierDetection>,
    initial_rtt: Duration,
    shutdown: Shutdown,
    name: String,
}

impl<P: Policy> BackendsBuilder<P> {
    /// When no backend is available, try all of them (except those being
    /// drained) rather than failing fast (Envoy's panic mode). Default: off,
    /// requests fail at once with "no healthy backend".
    pub fn panic_mode(mut self, on: bool) -> Self {
        self.panic_mode = on;
        self
    }

    /// Ejects backends that fail repeatedly. Default: off.
    pub fn outlier_detection(mut self, config: OutlierDetection) -> Self {
        self.outlier = Some(config);
        self
    }

    /// The latency estimate a new backend starts with (P2C). Default: 10 ms.
    pub fn initial_rtt(mut self, rtt: Duration) -> Self {
        self.initial_rtt = rtt;
        self
    }

    /// The shutdown signal that stops the set's background timers (and the
    /// health checks started on it). Default: a signal that never fires.
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// The name the set reports on the status page. Default: `"lb"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// An empty set.
    pub fn build<S>(self) -> Backends<S, P>
    where
        S: Clone + Send + Sync + 'static,
    {
        crate::metric_help::describe();
        let prepared = self.policy.prepare(&[]);
        let inner = Inner {
            members: Mutex::new(Vec::new()),
            current: ArcSwap::from_pointee(Snapshot {
                live: Pool {
                    backends: Vec::new(),
                    services: Vec::new(),
                    prepared,
                },
                panic: None,
            }),
            policy: self.policy,
            panic_mode: self.panic_mode,
            outlier: self.outlier,
            initial_rtt: self.initial_rtt,
            shutdown: self.shutdown,
            events: Mutex::new(VecDeque::new()),
            name: self.name,
        };
        Backends {
            inner: Arc::new(inner),
        }
    }
}

impl<P: Policy> Backends<(), P> {
    /// A builder for a set balanced by `policy`; the service type is chosen
    /// by [`BackendsBuilder::build`].
    pub fn builder(policy: P) -> BackendsBuilder<P> {
        BackendsBuilder {
            policy,
            panic_mode: false,
            outlier: None,
            initial_rtt: Duration::from_millis(10),
            shutdown: Shutdown::new(),
            name: "lb".to_owned(),
        }
    }
}

impl<S, P: Policy> Backends<S, P>
where
    S: Clone + Send + Sync + 'static,
{
    /// Adds a backend that talks through `service`; it takes traffic at once.
    ///
    /// # Errors
    /// [`Error::DuplicateBackend`] if a backend with this id exists.
    pub fn add(&self, config: BackendConfig, service: S) -> Result<Arc<Backend>, Error> {
        let mut members = self.inner.lock();
        if members.iter().any(|m| m.backend.id() == config.id()) {
            return Err(Error::DuplicateBackend(config.id().to_owned()));
        }
        let backend = Arc::new(Backend::new(config, self.inner.initial_rtt));
        members.push(Member {
            backend: backend.clone(),
            service,
        });
        self.inner.event(&backend, "added", "added to the set");
        self.inner.rebuild(&members);
        Ok(backend)
    }

    /// Removes a backend at once; requests already sent to it finish.
    ///
    /// # Errors
    /// [`Error::UnknownBackend`] if no backend has this id.
    pub fn remove(&self, id: &str) -> Result<Arc<Backend>, Error> {
        let mut members = self.inner.lock();
        let index = position(&members, id)?;
        let member = members.remove(index);
        self.inner
            .event(&member.backend, "removed", "removed from the set");
        self.inner.rebuild(&members);
        Ok(member.backend)
    }

    /// Stops sending new requests to a backend; the returned future
    /// completes once its in-flight requests (including response bodies)
    /// have finished. The backend stays in the set, shown as draining, until
    /// [`remove`](Self::remove)d.
    ///
    /// # Errors
    /// [`Error::UnknownBackend`] if no backend has this id.
    pub fn drain(&self, id: &str) -> Result<impl Future<Output = ()> + Send + 'static, Error> {
        let members = self.inner.lock();
        let backend = members[position(&members, id)?].backend.clone();
        backend.set_draining();
        self.inner
            .event(&backend, "draining", "draining: no new requests");
        self.inner.rebuild(&members);
        Ok(async move { backend.wait_idle().await })
    }

    /// Removes `backend` if it is still the one in the set under its id (not
    /// a newer backend added under the same id since); whether it was.
    pub(crate) fn remove_if_same(&self, backend: &Arc<Backend>) -> bool {
        let mut members = self.inner.lock();
        let Some(index) = members
            .iter()
            .position(|m| Arc::ptr_eq(&m.backend, backend))
        else {
            return false;
        };
        let member = members.remove(index);
        self.inner.event(
            &member.backend,
            "removed",
            "drained and removed from the set",
        );
        self.inner.rebuild(&members);
        true
    }

    /// Changes a backend's weight (0: no new requests).
    ///
    /// # Errors
    /// [`Error::UnknownBackend`] if no backend has this id.
    pub fn set_weight(&self, id: &str, weight: u32) -> Result<(), Error> {
        let members = self.inner.lock();
        members[position(&members, id)?].backend.set_weight(weight);
        self.inner.rebuild(&members);
        Ok(())
    }

    /// The backend with this id.
    pub fn get(&self, id: &str) -> Option<Arc<Backend>> {
        let members = self.inner.lock();
        members
            .iter()
            .find(|m| m.backend.id() == id)
            .map(|m| m.backend.clone())
    }

    /// Every backend, in the order they were added.
    pub fn list(&self) -> Vec<Arc<Backend>> {
        self.inner
            .lock()
            .iter()
            .map(|m| m.backend.clone())
            .collect()
    }

    /// Every backend with its service, in the order they were added.
    pub fn members(&self) -> Vec<(Arc<Backend>, S)> {
        self.inner
            .lock()
            .iter()
            .map(|m| (m.backend.clone(), m.service.clone()))
            .collect()
    }

    /// The backend the policy picks now for a request whose key hashes to
    /// `key` (see [`hash_bytes`](crate::hash_bytes)), among those taking
    /// traffic. With [`ConsistentHash`](crate::policy::ConsistentHash) this
    /// depends only on the backends' ids and weights: sets with the same
    /// members answer alike, in any process.
    pub fn pick_for_key(&self, key: u64) -> Option<Arc<Backend>> {
        self.with_pick(Some(key), None, |backend, _| backend.clone())
    }

    /// Number of backends in the set (whatever their health).
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// Whether the set has no backend.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of backends taking traffic now.
    pub fn available(&self) -> usize {
        self.inner.current.load().live.backends.len()
    }

    /// The set's name (the status page's and the metrics' label).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The policy's name.
    pub fn policy_name(&self) -> &str {
        self.inner.policy.name()
    }

    /// The shutdown signal background work on this set obeys.
    pub fn shutdown_signal(&self) -> &Shutdown {
        &self.inner.shutdown
    }

    /// The set's state for the status page.
    pub fn status(&self) -> LbStatus {
        LbStatus {
            policy: self.inner.policy.name().to_owned(),
            backends: self.list().iter().map(|b| b.status()).collect(),
        }
    }

    /// Recent events (backends added, removed, down, ejected…), oldest
    /// first.
    pub fn events(&self) -> Vec<StatusEvent> {
        self.inner.events().iter().cloned().collect()
    }

    /// Re-reads every backend's state (health, ejection expiry) into the
    /// snapshot requests see.
    pub(crate) fn refresh(&self) {
        let members = self.inner.lock();
        self.inner.rebuild(&members);
    }

    pub(crate) fn record_event(&self, backend: &Backend, kind: &'static str, message: &str) {
        self.inner.event(backend, kind, message);
    }

    /// Runs `f` on the backend the policy picks for a request with `key`,
    /// avoiding `avoid` when another backend is available.
    pub(crate) fn with_pick<R>(
        &self,
        key: Option<u64>,
        avoid: Option<&Arc<Backend>>,
        f: impl FnOnce(&Arc<Backend>, &S) -> R,
    ) -> Option<R> {
        let snapshot = self.inner.current.load();
        let pool = if snapshot.live.backends.is_empty() {
            snapshot.panic.as_ref()?
        } else {
            &snapshot.live
        };
        let n = pool.backends.len();
        if n == 0 {
            return None;
        }
        let policy = &self.inner.policy;
        let mut index = policy.pick(&pool.prepared, &pool.backends, key)?.min(n - 1);
        if let Some(avoid) = avoid {
            if n > 1 && Arc::ptr_eq(&pool.backends[index], avoid) {
                index = policy
                    .pick(&pool.prepared, &pool.backends, None)
                    .unwrap_or(index)
                    .min(n - 1);
                if Arc::ptr_eq(&pool.backends[index], avoid) {
                    index = (index + 1) % n;
                }
            }
        }
        Some(f(&pool.backends[index], &pool.services[index]))
    }

    /// Starts tracking a request to `backend`.
    pub(crate) fn start(&self, backend: &Arc<Backend>) -> InFlight {
        backend.start_request();
        InFlight {
            backend: backend.clone(),
            set: self.inner.clone(),
            started: Instant::now(),
            recorded: false,
        }
    }
}

fn position<S>(members: &[Member<S>], id: &str) -> Result<usize, Error> {
    members
        .iter()
        .position(|m| m.backend.id() == id)
        .ok_or_else(|| Error::UnknownBackend(id.to_owned()))
}

impl<S, P: Policy> Inner<S, P> {
    fn lock(&self) -> MutexGuard<'_, Vec<Member<S>>> {
        // The members list stays consistent even if a holder panicked.
        self.members
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn events(&self) -> MutexGuard<'_, VecDeque<StatusEvent>> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn event(&self, backend: &Backend, kind: &'static str, message: &str) {
        tracing::info!(set = %self.name, backend = backend.id(), kind, "{message}");
        let mut events = self.events();
        if events.len() == MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(StatusEvent::now(
            kind,
            format!("{}: {message}", backend.id()),
        ));
    }
}

impl<S: Clone, P: Policy> Inner<S, P> {
    fn rebuild(&self, members: &[Member<S>]) {
        let now = now_ms();
        for member in members {
            if member.backend.end_ejection_if_due(now) {
                self.event(
                    &member.backend,
                    "returned",
                    "ejection over, taking traffic again",
                );
            }
        }
        let live = self.pool(members.iter().filter(|m| m.backend.available_at(now)));
        let panic = self.panic_mode.then(|| {
            self.pool(
                members
                    .iter()
                    .filter(|m| !m.backend.is_draining() && m.backend.weight() > 0),
            )
        });
        self.current.store(Arc::new(Snapshot { live, panic }));
    }

    fn pool<'a>(&self, members: impl Iterator<Item = &'a Member<S>>) -> Pool<S, P::Prepared>
    where
        S: 'a,
    {
        let (backends, services): (Vec<_>, Vec<_>) = members
            .map(|m| (m.backend.clone(), m.service.clone()))
            .unzip();
        let prepared = self.policy.prepare(&backends);
        Pool {
            backends,
            services,
            prepared,
        }
    }
}

/// What a finished request reports back to its set.
pub(crate) trait SetControl: Send + Sync + 'static {
    fn on_failures(self: Arc<Self>, backend: &Arc<Backend>, consecutive: u32);
}

impl<S, P> SetControl for Inner<S, P>
where
    S: Clone + Send + Sync + 'static,
    P: Policy,
{
    fn on_failures(self: Arc<Self>, backend: &Arc<Backend>, consecutive: u32) {
        let Some(outlier) = &self.outlier else {
            return;
        };
        if consecutive < outlier.consecutive_failures {
            return;
        }
        let members = self.lock();
        if backend.is_ejected() || !members.iter().any(|m| Arc::ptr_eq(&m.backend, backend)) {
            return;
        }
        let ejected = members.iter().filter(|m| m.backend.is_ejected()).count();
        // Like Envoy, one ejection is always allowed, whatever the cap.
        let cap = (members.len() * usize::from(outlier.max_ejection_percent) / 100).max(1);
        if ejected >= cap {
            tracing::warn!(
                backend = backend.id(),
                ejected,
                cap,
                "not ejecting: too many backends ejected already"
            );
            return;
        }
        let period = backend.eject(outlier.base_ejection_time, outlier.max_ejection_time);
        self.event(
            backend,
            "ejected",
            &format!("ejected for {period:?} after {consecutive} consecutive failures"),
        );
        self.rebuild(&members);
        drop(members);
        // Bring it back when the period is over.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let set = self.clone();
            runtime.spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(period) => {
                        let members = set.lock();
                        set.rebuild(&members);
                    }
                    () = set.shutdown.wait() => {}
                }
            });
        }
    }
}

/// One request in flight to one backend: counts it, records its latency and
/// outcome, and releases it when dropped (after the response body, for the
/// proxy).
pub(crate) struct InFlight {
    backend: Arc<Backend>,
    set: Arc<dyn SetControl>,
    started: Instant,
    recorded: bool,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("backend", &self.backend.id())
            .finish_non_exhaustive()
    }
}

impl InFlight {
    pub(crate) fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// Records the outcome of the response head (or of a failure).
    pub(crate) fn record(&mut self, failed: bool) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let consecutive = self.backend.record(self.started.elapsed(), failed);
        if consecutive > 0 {
            self.set.clone().on_failures(&self.backend, consecutive);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.end_request();
    }
}

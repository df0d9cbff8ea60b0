//! Hosts and who is writer: the shared view the router reads on every query
//! and the failover control loop updates.
//!
//! Hosts are configured with a role *hint* ([`RoleHint`]); the monitor
//! decides the truth from `@@global.read_only` and replication status. Every
//! per-host field the router reads is an atomic; the writer and its epoch
//! travel together in one `tokio::sync::watch`, so a reader never sees a
//! writer with another writer's epoch. The router, which needs only the
//! writer, reads it from an atomic copy set under the watch's lock before
//! any waiter wakes: no lock on the query path.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Histogram};
use mysql_async::Opts;
use serde::Serialize;
use tokio::sync::watch;

use crate::failover::{FailoverStatus, WriterUnavailable};
use crate::pool::Pool;

/// How a host is expected to start out. Only a hint: the monitor reads the
/// real role from the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RoleHint {
    /// Expected to be the writable primary.
    Primary,
    /// Expected to be a read-only replica.
    #[default]
    Replica,
}

/// One host as configured.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HostConfig {
    /// `mysql://user:password@host:port/db?options` for the application's
    /// connections.
    pub url: String,
    /// The expected role.
    pub role: RoleHint,
    /// Share of reads relative to the other replicas (default 1). A replica
    /// of weight 0 takes reads only when no replica of positive weight
    /// qualifies (before the primary does, under
    /// [`ReadFallback::Primary`](crate::ReadFallback::Primary)).
    pub weight: u32,
    /// Where the other servers reach this one for replication
    /// (`CHANGE MASTER TO MASTER_HOST`, `MASTER_PORT`), when that differs
    /// from the URL's address (NAT, a proxy, another network). Default: the
    /// URL's host and port.
    pub replication_address: Option<(String, u16)>,
}

impl HostConfig {
    /// A host with the given URL and role hint, weight 1.
    pub fn new(url: impl Into<String>, role: RoleHint) -> Self {
        Self {
            url: url.into(),
            role,
            weight: 1,
            replication_address: None,
        }
    }

    /// Sets the read weight.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets [`HostConfig::replication_address`].
    pub fn replication_address(mut self, host: impl Into<String>, port: u16) -> Self {
        self.replication_address = Some((host.into(), port));
        self
    }
}

/// What a host is, as the monitor last saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// Writable (`read_only = 0`) and replicating from nothing.
    Primary,
    /// Read-only, or replicating.
    Replica,
    /// Not known yet, or unreachable.
    #[default]
    Unknown,
}

/// Whether a host takes traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Health {
    /// Passing checks, taking traffic.
    Up,
    /// Failing checks.
    Down,
    /// Reachable but avoided: a replica lagging too far, with broken
    /// replication, or a fenced former primary.
    Shunned,
    /// A second writable host: never used.
    Ejected,
    /// Not checked yet.
    #[default]
    Unknown,
}

const LAG_UNKNOWN: u64 = u64::MAX;

/// Per-host metric handles, registered once (no label formatting per query).
#[derive(Debug)]
pub(crate) struct HostMetrics {
    pub(crate) writer_queries: Counter,
    pub(crate) reader_queries: Counter,
    pub(crate) writer_latency: Histogram,
    pub(crate) reader_latency: Histogram,
    pub(crate) errors: Counter,
    pub(crate) retries: Counter,
    pub(crate) timeouts: Counter,
}

impl HostMetrics {
    fn new(host: &str) -> Self {
        let labels = |role: &'static str| [("host", host.to_owned()), ("role", role.to_owned())];
        Self {
            writer_queries: metrics::counter!("foobar_db_queries_total", &labels("writer")),
            reader_queries: metrics::counter!("foobar_db_queries_total", &labels("reader")),
            writer_latency: metrics::histogram!(
                "foobar_db_query_duration_seconds",
                &labels("writer")
            ),
            reader_latency: metrics::histogram!(
                "foobar_db_query_duration_seconds",
                &labels("reader")
            ),
            errors: metrics::counter!("foobar_db_query_errors_total", "host" => host.to_owned()),
            retries: metrics::counter!("foobar_db_read_retries_total", "host" => host.to_owned()),
            timeouts: metrics::counter!("foobar_db_statement_timeouts_total", "host" => host.to_owned()),
        }
    }
}

/// One database host: its pool, its connection options and what the
/// monitor last saw.
#[derive(Debug)]
pub(crate) struct Host {
    pub(crate) index: usize,
    /// `host:port`, never credentials.
    pub(crate) id: String,
    pub(crate) hint: RoleHint,
    pub(crate) weight: u32,
    pub(crate) pool: Pool,
    /// The application's account, for errors naming it.
    pub(crate) app_user: String,
    pub(crate) monitor_opts: Opts,
    pub(crate) admin_opts: Opts,
    /// Where other servers replicate from this one.
    pub(crate) replication_address: (String, u16),
    /// The pool's default statement timeout.
    pub(crate) statement_timeout: Option<Duration>,
    pub(crate) metrics: HostMetrics,
    role: AtomicU8,
    health: AtomicU8,
    lag_ms: AtomicU64,
    pub(crate) queries: AtomicU64,
    pub(crate) server_questions: AtomicU64,
}

impl Host {
    pub(crate) fn new(
        index: usize,
        id: String,
        config: &HostConfig,
        pool: Pool,
        monitor_opts: Opts,
        admin_opts: Opts,
        statement_timeout: Option<Duration>,
    ) -> Self {
        let metrics = HostMetrics::new(&id);
        let app_user = pool.manager().opts().user().unwrap_or_default().to_owned();
        let replication_address = config.replication_address.clone().unwrap_or_else(|| {
            let opts = pool.manager().opts();
            (opts.ip_or_hostname().to_owned(), opts.tcp_port())
        });
        Self {
            index,
            id,
            hint: config.role,
            weight: config.weight,
            pool,
            app_user,
            monitor_opts,
            admin_opts,
            replication_address,
            statement_timeout,
            metrics,
            role: AtomicU8::new(Role::Unknown as u8),
            health: AtomicU8::new(Health::Unknown as u8),
            lag_ms: AtomicU64::new(LAG_UNKNOWN),
            queries: AtomicU64::new(0),
            server_questions: AtomicU64::new(0),
        }
    }

    pub(crate) fn role(&self) -> Role {
        match self.role.load(Ordering::Acquire) {
            x if x == Role::Primary as u8 => Role::Primary,
            x if x == Role::Replica as u8 => Role::Replica,
            _ => Role::Unknown,
        }
    }

    pub(crate) fn health(&self) -> Health {
        match self.health.load(Ordering::Acquire) {
            x if x == Health::Up as u8 => Health::Up,
            x if x == Health::Down as u8 => Health::Down,
            x if x == Health::Shunned as u8 => Health::Shunned,
            x if x == Health::Ejected as u8 => Health::Ejected,
            _ => Health::Unknown,
        }
    }

    pub(crate) fn lag(&self) -> Option<Duration> {
        match self.lag_ms.load(Ordering::Acquire) {
            LAG_UNKNOWN => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Stores what the control loop decided about this host.
    pub(crate) fn set_view(&self, role: Role, health: Health, lag: Option<Duration>) {
        let ms = lag.map_or(LAG_UNKNOWN, |lag| {
            u64::try_from(lag.as_millis()).unwrap_or(LAG_UNKNOWN - 1)
        });
        self.lag_ms.store(ms, Ordering::Release);
        self.role.store(role as u8, Ordering::Release);
        self.health.store(health as u8, Ordering::Release);
    }
}

/// The writer and its epoch, published together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WriterState {
    /// The host taking writes.
    pub(crate) writer: Option<usize>,
    /// The failover epoch the writer was promoted in (0 before any
    /// promotion by a pool).
    pub(crate) epoch: u64,
    /// Why there is no writer (meaningless while there is one).
    pub(crate) unavailable: WriterUnavailable,
}

const MAX_EVENTS: usize = 64;

/// One entry of the event history: identical events (same kind and message)
/// are folded into one with a count, so that a repeating failure cannot
/// flush the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When it happened last, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// When it happened first.
    pub first_unix_ms: u64,
    /// A short machine-readable kind (`failover`, `fenced`, `down`).
    pub kind: &'static str,
    /// What happened, for people.
    pub message: String,
    /// How many times it happened.
    pub count: u32,
}

#[derive(Debug, Default)]
struct EventLog {
    entries: VecDeque<Event>,
}

impl EventLog {
    /// Records an event; whether it is new (not a repeat).
    fn record(&mut self, kind: &'static str, message: String) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if let Some(position) = self
            .entries
            .iter()
            .position(|e| e.kind == kind && e.message == message)
        {
            if let Some(mut entry) = self.entries.remove(position) {
                entry.count = entry.count.saturating_add(1);
                entry.at_unix_ms = now;
                self.entries.push_back(entry);
            }
            return false;
        }
        if self.entries.len() == MAX_EVENTS {
            self.entries.pop_front();
        }
        self.entries.push_back(Event {
            at_unix_ms: now,
            first_unix_ms: now,
            kind,
            message,
            count: 1,
        });
        true
    }
}

/// The hosts and the current writer.
///
/// Read through [`RwPool::topology`](crate::RwPool::topology).
#[derive(Debug)]
pub struct Topology {
    pub(crate) hosts: Vec<Arc<Host>>,
    writer: watch::Sender<WriterState>,
    /// The watch's writer, for the query path (`usize::MAX`: none).
    writer_index: AtomicUsize,
    next_reader: AtomicUsize,
    failovers: AtomicU64,
    /// The last writer known (`usize::MAX`: none yet): a different one
    /// after it is a failover.
    last_writer: AtomicUsize,
    transitions: Counter,
    failover_counter: Counter,
    events: Mutex<EventLog>,
    failover: Mutex<FailoverStatus>,
}

impl Topology {
    pub(crate) fn new(hosts: Vec<Arc<Host>>) -> Self {
        let (writer, _) = watch::channel(WriterState {
            writer: None,
            epoch: 0,
            unavailable: WriterUnavailable::Starting,
        });
        Self {
            hosts,
            writer,
            writer_index: AtomicUsize::new(usize::MAX),
            next_reader: AtomicUsize::new(0),
            failovers: AtomicU64::new(0),
            last_writer: AtomicUsize::new(usize::MAX),
            transitions: metrics::counter!("foobar_db_topology_changes_total"),
            failover_counter: metrics::counter!("foobar_db_failovers_total"),
            events: Mutex::new(EventLog::default()),
            failover: Mutex::new(FailoverStatus::default()),
        }
    }

    /// The failover side: mode, lease, what stands in the way of a
    /// promotion.
    pub fn failover_status(&self) -> FailoverStatus {
        self.failover
            .lock()
            .map(|status| status.clone())
            .unwrap_or_default()
    }

    pub(crate) fn update_failover_status(&self, update: impl FnOnce(&mut FailoverStatus)) {
        if let Ok(mut status) = self.failover.lock() {
            update(&mut status);
        }
    }

    /// The current writer's `host:port`, if one is known.
    pub fn writer(&self) -> Option<&str> {
        self.writer_host().map(|host| host.id.as_str())
    }

    /// The current writer with its failover epoch (0 until a pool promoted
    /// a host; the epoch is kept on the servers, see
    /// [`failover`](crate::failover)).
    pub fn writer_epoch(&self) -> Option<(&str, u64)> {
        let state = self.writer.borrow();
        let host = self.hosts.get(state.writer?)?;
        Some((host.id.as_str(), state.epoch))
    }

    /// Why no writer is known (`None` while one is).
    pub fn unavailable(&self) -> Option<WriterUnavailable> {
        let state = self.writer.borrow();
        state.writer.is_none().then(|| state.unavailable.clone())
    }

    /// Every host's `host:port`, in configuration order.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(|host| host.id.as_str())
    }

    /// Writer changes after the first writer (failovers, seen or made by
    /// this pool) since start.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// Recent events, oldest first; repeats are folded into one entry with
    /// a count.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .map(|log| log.entries.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn writer_state(&self) -> WriterState {
        self.writer.borrow().clone()
    }

    pub(crate) fn writer_host(&self) -> Option<&Arc<Host>> {
        self.hosts.get(self.writer_index()?)
    }

    pub(crate) fn writer_index(&self) -> Option<usize> {
        match self.writer_index.load(Ordering::Acquire) {
            usize::MAX => None,
            index => Some(index),
        }
    }

    /// Whether a writer was ever published.
    pub(crate) fn had_writer(&self) -> bool {
        self.last_writer.load(Ordering::Acquire) != usize::MAX
    }

    /// Publishes a new writer state; whether it changed.
    pub(crate) fn publish(&self, state: &WriterState) -> bool {
        let changed = self.writer.send_if_modified(|current| {
            if *current == *state {
                return false;
            }
            *current = state.clone();
            self.writer_index
                .store(state.writer.unwrap_or(usize::MAX), Ordering::Release);
            true
        });
        if let Some(writer) = state.writer.filter(|_| changed) {
            let last = self.last_writer.swap(writer, Ordering::AcqRel);
            if last != usize::MAX && last != writer {
                self.failovers.fetch_add(1, Ordering::Relaxed);
                self.failover_counter.increment(1);
            }
        }
        changed
    }

    /// Logs and counts a transition; whether it is new (not a repeat of
    /// one in the history).
    pub(crate) fn record(&self, kind: &'static str, message: String) -> bool {
        self.transitions.increment(1);
        self.events
            .lock()
            .map(|mut log| log.record(kind, message))
            .unwrap_or(true)
    }

    /// Waits up to `timeout` for a writer; the state at the end.
    pub(crate) async fn wait_writer(&self, timeout: Duration) -> WriterState {
        let mut receiver = self.writer.subscribe();
        let waited = tokio::time::timeout(timeout, receiver.wait_for(|s| s.writer.is_some())).await;
        match waited {
            Ok(Ok(state)) => state.clone(),
            _ => self.writer_state(),
        }
    }

    /// Waits up to `timeout` for the writer to differ from `from`; whether
    /// it did.
    pub(crate) async fn wait_change(&self, from: Option<usize>, timeout: Duration) -> bool {
        let mut receiver = self.writer.subscribe();
        let changed = receiver.wait_for(|s| s.writer.is_some() && s.writer != from);
        let changed = tokio::time::timeout(timeout, changed).await;
        matches!(changed, Ok(Ok(_)))
    }

    /// A replica for a read: up, replicating, lag within `max_lag`,
    /// weighted round robin; replicas of weight 0 only when no other
    /// qualifies; `exclude` is skipped (a host that just failed).
    pub(crate) fn pick_reader(
        &self,
        max_lag: Duration,
        exclude: Option<usize>,
    ) -> Option<&Arc<Host>> {
        let writer = self.writer_index();
        let eligible = |host: &&Arc<Host>| {
            Some(host.index) != writer
                && Some(host.index) != exclude
                && host.role() == Role::Replica
                && host.health() == Health::Up
                && host.lag().is_some_and(|lag| lag <= max_lag)
        };
        let ticket = self.next_reader.fetch_add(1, Ordering::Relaxed) as u64;
        let position = choose(self.hosts.iter().filter(eligible).map(|h| h.weight), ticket)?;
        self.hosts.iter().filter(eligible).nth(position)
    }
}

/// Weighted round robin: the position (among `weights`) that `ticket`
/// picks. Positive weights share the tickets in proportion; weight-0
/// entries take turns only when every weight is 0.
pub(crate) fn choose<I>(weights: I, ticket: u64) -> Option<usize>
where
    I: Iterator<Item = u32> + Clone,
{
    let total: u64 = weights.clone().map(u64::from).sum();
    if total == 0 {
        let count = weights.count() as u64;
        return (count > 0).then(|| usize::try_from(ticket % count).unwrap_or(0));
    }
    let ticket = ticket % total;
    let mut seen = 0;
    for (position, weight) in weights.enumerate() {
        seen += u64::from(weight);
        if ticket < seen {
            return Some(position);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{choose, EventLog};

    #[test]
    fn weighted_round_robin_shares_by_weight() {
        let weights = [3u32, 1];
        let picks: Vec<usize> = (0..8)
            .filter_map(|t| choose(weights.iter().copied(), t))
            .collect();
        assert_eq!(picks, [0, 0, 0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn weight_zero_takes_reads_only_when_nothing_else_qualifies() {
        // A zero-weight replica next to a weighted one never serves.
        let weights = [0u32, 2];
        assert!((0..10).all(|t| choose(weights.iter().copied(), t) == Some(1)));
        // Alone (or with other zero-weight replicas), it does.
        let only_zero = [0u32, 0];
        let picks: Vec<Option<usize>> = (0..4)
            .map(|t| choose(only_zero.iter().copied(), t))
            .collect();
        assert_eq!(picks, [Some(0), Some(1), Some(0), Some(1)]);
        assert_eq!(choose(std::iter::empty(), 3), None);
    }

    #[test]
    fn identical_events_are_folded_with_a_count() {
        let mut log = EventLog::default();
        assert!(log.record("fence_failed", "a: denied".into()));
        assert!(log.record("down", "b down".into()));
        for _ in 0..30 {
            assert!(!log.record("fence_failed", "a: denied".into()));
        }
        assert_eq!(log.entries.len(), 2);
        let last = log.entries.back().unwrap();
        assert_eq!((last.kind, last.count), ("fence_failed", 31));
        for i in 0..100 {
            log.record("other", format!("event {i}"));
        }
        assert_eq!(log.entries.len(), super::MAX_EVENTS);
    }
}

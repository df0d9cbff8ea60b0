//! Hosts and who is writer: the shared, lock-free view the router reads on
//! every query and the monitor updates.
//!
//! Hosts are configured with a role *hint* ([`RoleHint`]); the monitor
//! decides the truth from `@@global.read_only` and replication status. Every
//! field the router reads is an atomic, so choosing a host takes no lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foobar_core::status::{Health, StatusEvent};
use metrics::{Counter, Histogram};
use mysql_async::Opts;
use tokio::sync::Notify;

use crate::pool::Pool;
use crate::status::DbRole;

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
pub struct HostConfig {
    /// `mysql://user:password@host:port/db?options` for the application's
    /// connections.
    pub url: String,
    /// The expected role.
    pub role: RoleHint,
    /// Share of reads relative to the other replicas (default 1; 0 takes
    /// reads only when nothing else qualifies).
    pub weight: u32,
}

impl HostConfig {
    /// A host with the given URL and role hint, weight 1.
    pub fn new(url: impl Into<String>, role: RoleHint) -> Self {
        Self {
            url: url.into(),
            role,
            weight: 1,
        }
    }

    /// Sets the read weight.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
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
        }
    }
}

/// One database host: its pool, its monitoring options and what the
/// monitor last saw.
#[derive(Debug)]
pub(crate) struct Host {
    pub(crate) index: usize,
    /// `host:port`, never credentials.
    pub(crate) id: String,
    pub(crate) hint: RoleHint,
    pub(crate) weight: u32,
    pub(crate) pool: Pool,
    pub(crate) monitor_opts: Opts,
    pub(crate) admin_opts: Opts,
    pub(crate) metrics: HostMetrics,
    role: AtomicU8,
    health: AtomicU8,
    lag_ms: AtomicU64,
    /// Set when this host was writer and was declared dead: if it comes
    /// back writable next to a new writer, it is fenced.
    pub(crate) deposed: AtomicBool,
    pub(crate) queries: AtomicU64,
    pub(crate) server_questions: AtomicU64,
    pub(crate) consecutive_failures: AtomicU32,
}

impl Host {
    pub(crate) fn new(
        index: usize,
        id: String,
        config: &HostConfig,
        pool: Pool,
        monitor_opts: Opts,
        admin_opts: Opts,
    ) -> Self {
        let metrics = HostMetrics::new(&id);
        Self {
            index,
            id,
            hint: config.role,
            weight: config.weight,
            pool,
            monitor_opts,
            admin_opts,
            metrics,
            role: AtomicU8::new(role_to_u8(DbRole::Unknown)),
            health: AtomicU8::new(health_to_u8(Health::Unknown)),
            lag_ms: AtomicU64::new(LAG_UNKNOWN),
            deposed: AtomicBool::new(false),
            queries: AtomicU64::new(0),
            server_questions: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
        }
    }

    pub(crate) fn role(&self) -> DbRole {
        role_from_u8(self.role.load(Ordering::Acquire))
    }

    pub(crate) fn set_role(&self, role: DbRole) {
        self.role.store(role_to_u8(role), Ordering::Release);
    }

    pub(crate) fn health(&self) -> Health {
        health_from_u8(self.health.load(Ordering::Acquire))
    }

    pub(crate) fn set_health(&self, health: Health) -> Health {
        health_from_u8(self.health.swap(health_to_u8(health), Ordering::AcqRel))
    }

    pub(crate) fn lag(&self) -> Option<Duration> {
        match self.lag_ms.load(Ordering::Acquire) {
            LAG_UNKNOWN => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    pub(crate) fn set_lag(&self, lag: Option<Duration>) {
        let ms = lag.map_or(LAG_UNKNOWN, |lag| {
            u64::try_from(lag.as_millis()).unwrap_or(LAG_UNKNOWN - 1)
        });
        self.lag_ms.store(ms, Ordering::Release);
    }
}

fn role_to_u8(role: DbRole) -> u8 {
    match role {
        DbRole::Primary => 1,
        DbRole::Replica => 2,
        _ => 0,
    }
}

fn role_from_u8(value: u8) -> DbRole {
    match value {
        1 => DbRole::Primary,
        2 => DbRole::Replica,
        _ => DbRole::Unknown,
    }
}

fn health_to_u8(health: Health) -> u8 {
    match health {
        Health::Up => 1,
        Health::Down => 2,
        Health::Shunned => 3,
        Health::Draining => 4,
        Health::Ejected => 5,
        _ => 0,
    }
}

fn health_from_u8(value: u8) -> Health {
    match value {
        1 => Health::Up,
        2 => Health::Down,
        3 => Health::Shunned,
        4 => Health::Draining,
        5 => Health::Ejected,
        _ => Health::Unknown,
    }
}

const NO_WRITER: usize = usize::MAX;
const MAX_EVENTS: usize = 64;

/// The hosts and the current writer.
///
/// Read through [`RwPool::topology`](crate::RwPool::topology).
#[derive(Debug)]
pub struct Topology {
    pub(crate) hosts: Vec<Arc<Host>>,
    writer: AtomicUsize,
    writer_changed: Notify,
    next_reader: AtomicUsize,
    failovers: AtomicU64,
    /// Bumped on every writer change, so that a check that started before
    /// a change is not mistaken for news after it.
    epoch: AtomicU64,
    /// Whether a writer was ever known: a new writer after that is a failover.
    had_writer: AtomicBool,
    transitions: Counter,
    failover_counter: Counter,
    events: Mutex<VecDeque<StatusEvent>>,
}

impl Topology {
    pub(crate) fn new(hosts: Vec<Arc<Host>>) -> Self {
        Self {
            hosts,
            writer: AtomicUsize::new(NO_WRITER),
            writer_changed: Notify::new(),
            next_reader: AtomicUsize::new(0),
            failovers: AtomicU64::new(0),
            had_writer: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            transitions: metrics::counter!("foobar_db_topology_changes_total"),
            failover_counter: metrics::counter!("foobar_db_failovers_total"),
            events: Mutex::new(VecDeque::new()),
        }
    }

    /// The current writer's `host:port`, if one is known.
    pub fn writer(&self) -> Option<&str> {
        self.writer_host().map(|host| host.id.as_str())
    }

    /// Every host's `host:port`, in configuration order.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(|host| host.id.as_str())
    }

    /// Failovers (a new writer after the old one was lost) since start.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// Recent transitions, oldest first.
    pub fn events(&self) -> Vec<StatusEvent> {
        self.events
            .lock()
            .map(|events| events.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn writer_host(&self) -> Option<&Arc<Host>> {
        self.hosts.get(self.writer.load(Ordering::Acquire))
    }

    /// Changes with every writer change.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn writer_index(&self) -> Option<usize> {
        match self.writer.load(Ordering::Acquire) {
            NO_WRITER => None,
            index => Some(index),
        }
    }

    /// Makes `index` the writer (or none), waking writes that wait for one.
    pub(crate) fn set_writer(&self, index: Option<usize>, reason: &str) {
        let new = index.unwrap_or(NO_WRITER);
        let old = self.writer.swap(new, Ordering::AcqRel);
        if old == new {
            return;
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let name = |i: usize| self.hosts.get(i).map_or("none", |h| h.id.as_str());
        let failover = new != NO_WRITER && self.had_writer.swap(true, Ordering::AcqRel);
        let message = match (old, new) {
            (_, NO_WRITER) => format!("no writer: {} lost ({reason})", name(old)),
            (NO_WRITER, _) => format!("{} is the writer ({reason})", name(new)),
            _ => format!("writer {} replaced by {} ({reason})", name(old), name(new)),
        };
        if old == NO_WRITER && !failover {
            // Finding the first writer is the normal start, not a warning.
            tracing::info!(writer = name(new), reason, "database writer found");
        } else {
            tracing::warn!(
                old = name(old),
                new = name(new),
                reason,
                "database writer changed"
            );
        }
        if failover {
            self.failovers.fetch_add(1, Ordering::Relaxed);
            self.failover_counter.increment(1);
            self.record("failover", message);
        } else {
            self.record("writer", message);
        }
        self.writer_changed.notify_waiters();
    }

    /// Logs and counts a transition.
    pub(crate) fn record(&self, kind: &'static str, message: String) {
        self.transitions.increment(1);
        if let Ok(mut events) = self.events.lock() {
            if events.len() == MAX_EVENTS {
                events.pop_front();
            }
            events.push_back(StatusEvent::now(kind, message));
        }
    }

    /// Waits up to `timeout` for a writer.
    pub(crate) async fn wait_writer(&self, timeout: Duration) -> Option<&Arc<Host>> {
        if let Some(host) = self.writer_host() {
            return Some(host);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.writer_changed.notified();
            tokio::pin!(notified);
            // Register before re-checking, so a change in between is not lost.
            notified.as_mut().enable();
            if let Some(host) = self.writer_host() {
                return Some(host);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.writer_host();
            }
        }
    }

    /// Waits up to `timeout` for the writer to change from what it was at
    /// `epoch`; whether it did.
    pub(crate) async fn wait_change(&self, epoch: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.writer_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.epoch() != epoch {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.epoch() != epoch;
            }
        }
    }

    /// A replica for a read: up, replicating, lag within `max_lag`,
    /// weighted round robin; `exclude` is skipped (a host that just failed).
    pub(crate) fn pick_reader(
        &self,
        max_lag: Duration,
        exclude: Option<usize>,
    ) -> Option<&Arc<Host>> {
        let writer = self.writer.load(Ordering::Acquire);
        let eligible = |host: &&Arc<Host>| {
            host.index != writer
                && Some(host.index) != exclude
                && host.weight > 0
                && host.role() == DbRole::Replica
                && host.health() == Health::Up
                && host.lag().is_some_and(|lag| lag <= max_lag)
        };
        let total: u64 = self
            .hosts
            .iter()
            .filter(eligible)
            .map(|h| u64::from(h.weight))
            .sum();
        if total == 0 {
            return None;
        }
        let ticket = self.next_reader.fetch_add(1, Ordering::Relaxed) as u64 % total;
        let mut seen = 0;
        for host in self.hosts.iter().filter(eligible) {
            seen += u64::from(host.weight);
            if ticket < seen {
                return Some(host);
            }
        }
        None
    }
}

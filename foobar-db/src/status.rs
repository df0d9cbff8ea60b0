//! What a pool reports about itself: its own status types, and the section
//! it adds to the admin status page.

use std::sync::atomic::Ordering;

use foobar_core::status::{Snapshot, StatusSource};
use serde::Serialize;

use crate::failover::{FailoverStatus, WriterUnavailable};
use crate::topology::{Event, Health, Role};
use crate::RwPool;

/// A pool's state.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct DbStatus {
    /// The host taking writes, if one is known.
    pub writer: Option<String>,
    /// Its failover epoch (0 before any promotion by a pool).
    pub epoch: u64,
    /// Why no host takes writes (while none does).
    pub unavailable: Option<WriterUnavailable>,
    /// The failover side: mode, lease, what would stand in the way of a
    /// promotion.
    pub failover: FailoverStatus,
    /// Every host, in configuration order.
    pub hosts: Vec<HostStatus>,
    /// Writer changes after the first writer since start.
    pub failovers_total: u64,
    /// Recent events, oldest first, repeats folded with a count.
    pub events: Vec<Event>,
}

/// One host.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct HostStatus {
    /// `host:port` (never credentials).
    pub id: String,
    /// What the host is.
    pub role: Role,
    /// Whether it takes traffic.
    pub health: Health,
    /// Replication lag in seconds (`None` on the primary, or when unknown).
    pub lag_seconds: Option<f64>,
    /// Connections in the pool.
    pub pool_size: u64,
    /// Connections checked out.
    pub pool_in_use: u64,
    /// Callers waiting for a connection.
    pub pool_waiting: u64,
    /// Queries this application sent to the host since start.
    pub queries_total: u64,
    /// Statements the server executed since it started (`Questions`), from
    /// all clients.
    pub server_questions_total: u64,
}

impl RwPool {
    /// The pool's state, as the status page shows it.
    pub fn status(&self) -> DbStatus {
        let topology = self.topology();
        let hosts = topology
            .hosts
            .iter()
            .map(|host| {
                let pool = host.pool.status();
                HostStatus {
                    id: host.id.clone(),
                    role: host.role(),
                    health: host.health(),
                    lag_seconds: host.lag().map(|lag| lag.as_secs_f64()),
                    pool_size: pool.size as u64,
                    pool_in_use: pool.size.saturating_sub(pool.available) as u64,
                    pool_waiting: pool.waiting as u64,
                    queries_total: host.queries.load(Ordering::Relaxed),
                    server_questions_total: host.server_questions.load(Ordering::Relaxed),
                }
            })
            .collect();
        let state = topology.writer_state();
        DbStatus {
            writer: topology.writer().map(str::to_owned),
            epoch: state.epoch,
            unavailable: state.writer.is_none().then_some(state.unavailable),
            failover: topology.failover_status(),
            hosts,
            failovers_total: topology.failovers(),
            events: topology.events(),
        }
    }
}

impl StatusSource for RwPool {
    fn name(&self) -> &str {
        self.name()
    }

    fn snapshot(&self) -> Snapshot {
        use foobar_core::status as core;
        let status = self.status();
        let health = |health: Health| match health {
            Health::Up => core::Health::Up,
            Health::Down => core::Health::Down,
            Health::Shunned => core::Health::Shunned,
            Health::Ejected => core::Health::Ejected,
            Health::Unknown => core::Health::Unknown,
        };
        let role = |role: Role| match role {
            Role::Primary => core::DbRole::Primary,
            Role::Replica => core::DbRole::Replica,
            Role::Unknown => core::DbRole::Unknown,
        };
        Snapshot::Database(core::DbStatus {
            writer: status.writer,
            hosts: status
                .hosts
                .into_iter()
                .map(|h| core::DbHostStatus {
                    id: h.id,
                    role: role(h.role),
                    health: health(h.health),
                    lag_seconds: h.lag_seconds,
                    pool_size: h.pool_size,
                    pool_in_use: h.pool_in_use,
                    pool_waiting: h.pool_waiting,
                    queries_total: h.queries_total,
                    server_questions_total: h.server_questions_total,
                })
                .collect(),
            failovers_total: status.failovers_total,
            events: status
                .events
                .into_iter()
                .map(|e| core::StatusEvent {
                    at_unix_ms: e.at_unix_ms,
                    kind: e.kind.to_owned(),
                    message: if e.count > 1 {
                        format!("{} ({} times)", e.message, e.count)
                    } else {
                        e.message
                    },
                })
                .collect(),
        })
    }

    fn ready(&self) -> bool {
        self.topology().writer_index().is_some()
    }
}

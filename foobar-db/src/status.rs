//! The database pool's section of the status page: its data
//! ([`DbStatus`]) and how the page shows it. [`RwPool`] is the
//! [`StatusSource`].

use std::sync::atomic::Ordering;
use std::sync::LazyLock;

use foobar_core::status::{self as core, Format, Snapshot, StatusEvent, StatusSource, Table, View};
use serde::Serialize;

use crate::failover::{FailoverStatus, WriterUnavailable};
use crate::route::RwPool;
use crate::topology::{Health, Role, Topology};

/// The kind the status page shows under the pool's name.
pub const KIND: &str = "database";

/// A database pool's state, as `/status.json` carries it in the snapshot's
/// `data`.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct DbStatus {
    /// The host currently taking writes, if one is known.
    pub writer: Option<String>,
    /// Its failover epoch (0 before any promotion by a pool).
    pub epoch: u64,
    /// Why no host takes writes, while none does.
    pub unavailable: Option<WriterUnavailable>,
    /// The same, for people.
    pub unavailable_text: Option<String>,
    /// The failover side: mode, lease, what would stand in the way of a
    /// promotion.
    pub failover: FailoverStatus,
    /// What would stand in the way of a promotion, for people.
    pub promotion_blocked_text: Option<String>,
    /// Every host, in configuration order.
    pub hosts: Vec<HostStatus>,
    /// Writer changes after the first writer since start.
    pub failovers_total: u64,
}

/// One database host.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct HostStatus {
    /// The host's name (address; never credentials).
    pub id: String,
    /// Whether it is the pool's writer now.
    pub writer: bool,
    /// What the host is, as the monitor last saw it.
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

impl DbStatus {
    /// The pool's health as a whole: down without a writer, up when every
    /// host is, degraded otherwise.
    pub fn health(&self) -> core::Health {
        if self.hosts.iter().all(|h| h.health == Health::Unknown) {
            core::Health::Unknown
        } else if self.writer.is_none() {
            core::Health::Down
        } else if self.hosts.iter().all(|h| h.health == Health::Up) {
            core::Health::Up
        } else {
            core::Health::Degraded
        }
    }
}

/// How the page shows a [`DbStatus`].
static VIEW: LazyLock<View> = LazyLock::new(|| {
    View::new()
        .fact("writer", "/writer", Format::Text)
        .fact("epoch", "/epoch", Format::Integer)
        .fact("no writer", "/unavailable_text", Format::Text)
        .fact("failover", "/failover/mode", Format::Tag)
        .fact("lease", "/failover/leader", Format::Flag)
        .fact("promotion blocked", "/promotion_blocked_text", Format::Text)
        .fact("failovers", "/failovers_total", Format::Integer)
        .table(
            Table::new("hosts", "/hosts")
                .key("/id")
                .health("/health")
                .column("host", "/id", Format::Text)
                .column("writer", "/writer", Format::Flag)
                .column("role", "/role", Format::Tag)
                .column("health", "/health", Format::Health)
                .column("lag", "/lag_seconds", Format::Seconds)
                .column("pool in use", "/pool_in_use", Format::fill_of("/pool_size"))
                .column("waiting", "/pool_waiting", Format::Integer)
                .column("queries/s", "/queries_total", Format::PerSecond)
                .column("server q/s", "/server_questions_total", Format::PerSecond)
                .column("queries", "/queries_total", Format::Integer)
                .column("recent queries/s", "/queries_total", Format::RateHistory),
        )
});

impl RwPool {
    /// The pool's state for the status page: writer and epoch, why there
    /// is none, the failover side, hosts, failovers.
    pub fn status(&self) -> DbStatus {
        status(self.topology())
    }
}

fn status(topology: &Topology) -> DbStatus {
    let state = topology.writer_state();
    let hosts = topology
        .hosts
        .iter()
        .map(|host| {
            let pool = host.pool.status();
            HostStatus {
                id: host.id.clone(),
                writer: state.writer == Some(host.index),
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
    let unavailable = state.writer.is_none().then_some(state.unavailable);
    let failover = topology.failover_status();
    DbStatus {
        writer: state
            .writer
            .and_then(|w| topology.hosts.get(w))
            .map(|h| h.id.clone()),
        epoch: state.epoch,
        unavailable_text: unavailable.as_ref().map(ToString::to_string),
        unavailable,
        promotion_blocked_text: failover.blocked.as_ref().map(ToString::to_string),
        failover,
        hosts,
        failovers_total: topology.failovers(),
    }
}

/// The events for the envelope: repeats say how often they happened.
fn events(topology: &Topology) -> Vec<StatusEvent> {
    topology
        .events()
        .into_iter()
        .map(|event| {
            let message = if event.count > 1 {
                format!("{} ({} times)", event.message, event.count)
            } else {
                event.message
            };
            let mut status = StatusEvent::now(event.kind, message);
            status.at_unix_ms = event.at_unix_ms;
            status
        })
        .collect()
}

impl StatusSource for RwPool {
    fn name(&self) -> &str {
        self.name()
    }

    fn snapshot(&self) -> Snapshot {
        let topology = self.topology();
        let status = status(topology);
        // Every web server's pool should see the same writer: the fleet
        // view flags the ones that do not.
        let writer = status.writer.clone().unwrap_or_else(|| "none".to_owned());
        Snapshot::new(KIND, &status)
            .health(status.health())
            .events(events(topology))
            .view(VIEW.clone())
            .agreed("writer", writer)
    }

    fn ready(&self) -> bool {
        self.topology().writer_index().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, health: Health) -> HostStatus {
        HostStatus {
            id: id.into(),
            writer: false,
            role: Role::Unknown,
            health,
            lag_seconds: None,
            pool_size: 0,
            pool_in_use: 0,
            pool_waiting: 0,
            queries_total: 0,
            server_questions_total: 0,
        }
    }

    fn status(writer: Option<&str>, hosts: Vec<HostStatus>) -> DbStatus {
        DbStatus {
            writer: writer.map(str::to_owned),
            epoch: 0,
            unavailable: None,
            unavailable_text: None,
            failover: FailoverStatus::default(),
            promotion_blocked_text: None,
            hosts,
            failovers_total: 0,
        }
    }

    #[test]
    fn pool_health_follows_writer_and_hosts() {
        let mut status = status(
            Some("a"),
            vec![host("a", Health::Up), host("b", Health::Up)],
        );
        assert_eq!(status.health(), core::Health::Up);
        status.hosts[1].health = Health::Shunned;
        assert_eq!(status.health(), core::Health::Degraded);
        status.writer = None;
        assert_eq!(status.health(), core::Health::Down);
        status.hosts = vec![host("a", Health::Unknown)];
        assert_eq!(status.health(), core::Health::Unknown);
    }

    #[test]
    fn view_points_into_the_data() {
        let status = status(Some("a"), vec![host("a", Health::Up)]);
        let json = serde_json::to_value(&status).unwrap();
        for field in &VIEW.facts {
            assert!(json.pointer(&field.pointer).is_some(), "{field:?}");
        }
        for table in &VIEW.tables {
            let row = &json.pointer(&table.rows).unwrap()[0];
            for column in &table.columns {
                assert!(row.pointer(&column.pointer).is_some(), "{column:?}");
            }
        }
        // Health badges use the page's words.
        assert_eq!(json["hosts"][0]["health"], "up");
    }
}

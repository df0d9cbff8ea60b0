//! The database pool's section of the status page: its data
//! ([`DbStatus`]) and how the page shows it. [`RwPool`] is the
//! [`StatusSource`](foobar_core::StatusSource).

use std::sync::atomic::Ordering;
use std::sync::LazyLock;
use std::time::Duration;

use foobar_core::status::{Format, Health, Snapshot, Table, View};
use serde::{Deserialize, Serialize};

use crate::route::RwPool;
use crate::topology::Topology;

/// The kind the status page shows under the pool's name.
pub const KIND: &str = "database";

/// A database pool's state, as `/status.json` carries it in the snapshot's
/// `data`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DbStatus {
    /// The host currently taking writes, if one is known.
    pub writer: Option<String>,
    /// Every host, in configuration order.
    pub hosts: Vec<DbHostStatus>,
    /// Failovers since start.
    pub failovers_total: u64,
}

/// Role of a database host, as the monitor last saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DbRole {
    /// Writable (`read_only = 0`).
    Primary,
    /// Read-only, replicating.
    Replica,
    /// Not known yet, or unreachable.
    #[default]
    Unknown,
}

/// One database host.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DbHostStatus {
    /// The host's name (address; never credentials).
    pub id: String,
    /// Whether it is the pool's writer now.
    pub writer: bool,
    /// Its role.
    pub role: DbRole,
    /// Its health.
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
    pub fn health(&self) -> Health {
        if self.hosts.iter().all(|h| h.health == Health::Unknown) {
            Health::Unknown
        } else if self.writer.is_none() {
            Health::Down
        } else if self.hosts.iter().all(|h| h.health == Health::Up) {
            Health::Up
        } else {
            Health::Degraded
        }
    }
}

/// How the page shows a [`DbStatus`].
static VIEW: LazyLock<View> = LazyLock::new(|| {
    View::new()
        .fact("writer", "/writer", Format::Text)
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
    /// The pool's state for the status page: writer, hosts, failovers.
    pub fn status(&self) -> DbStatus {
        status(self.topology())
    }
}

fn status(topology: &Topology) -> DbStatus {
    let writer = topology.writer_index();
    let hosts = topology
        .hosts
        .iter()
        .map(|host| {
            let pool = host.pool.status();
            DbHostStatus {
                id: host.id.clone(),
                writer: writer == Some(host.index),
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
    DbStatus {
        writer: topology.writer().map(str::to_owned),
        hosts,
        failovers_total: topology.failovers(),
    }
}

/// A health change of a replica, for people: `10.0.0.3:3306 is up, 0.4 s
/// behind`.
pub(crate) fn health_message(host: &str, health: Health, lag: Option<Duration>) -> String {
    match lag {
        Some(lag) => format!("{host} is {health}, {:.1} s behind", lag.as_secs_f64()),
        None => format!("{host} is {health}, lag unknown"),
    }
}

/// The snapshot of a pool over `topology`.
pub(crate) fn snapshot(topology: &Topology) -> Snapshot {
    let status = status(topology);
    Snapshot::new(KIND, &status)
        .health(status.health())
        .events(topology.events())
        .view(VIEW.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, health: Health) -> DbHostStatus {
        DbHostStatus {
            id: id.into(),
            health,
            ..DbHostStatus::default()
        }
    }

    #[test]
    fn pool_health_follows_writer_and_hosts() {
        let mut status = DbStatus {
            writer: Some("a".into()),
            hosts: vec![host("a", Health::Up), host("b", Health::Up)],
            failovers_total: 0,
        };
        assert_eq!(status.health(), Health::Up);
        status.hosts[1].health = Health::Shunned;
        assert_eq!(status.health(), Health::Degraded);
        status.writer = None;
        assert_eq!(status.health(), Health::Down);
        status.hosts = vec![host("a", Health::Unknown)];
        assert_eq!(status.health(), Health::Unknown);
    }

    #[test]
    fn health_changes_read_as_sentences() {
        assert_eq!(
            health_message(
                "10.0.0.3:3306",
                Health::Up,
                Some(Duration::from_millis(400))
            ),
            "10.0.0.3:3306 is up, 0.4 s behind"
        );
        assert_eq!(
            health_message("10.0.0.3:3306", Health::Shunned, None),
            "10.0.0.3:3306 is shunned, lag unknown"
        );
    }

    #[test]
    fn view_points_into_the_data() {
        let status = DbStatus {
            writer: Some("a".into()),
            hosts: vec![host("a", Health::Up)],
            failovers_total: 1,
        };
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
    }
}

//! Status snapshots: what the load balancer and the database pool report
//! about themselves, for `/status.json` and the status page.
//!
//! A component implements [`StatusSource`]; the admin listener renders every
//! source the application registers. The snapshot types are plain data with
//! public fields and `Default`, so implementors fill in what they know and
//! leave the rest.

use serde::{Deserialize, Serialize};

/// Something that can describe its current state.
pub trait StatusSource: Send + Sync + 'static {
    /// A short name, unique within the application (`"lb"`, `"db"`).
    fn name(&self) -> &str;

    /// The current state. Called on every `/status.json` request: keep it
    /// cheap (read atomics and swapped state, no I/O).
    fn snapshot(&self) -> Snapshot;

    /// Whether this component can do its job (`/readyz`): e.g. at least one
    /// healthy backend, a known database writer.
    fn ready(&self) -> bool {
        true
    }
}

/// One component's state.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Snapshot {
    /// A load balancer and its backends.
    LoadBalancer(LbStatus),
    /// A database pool and its hosts.
    Database(DbStatus),
    /// Anything else, as free-form JSON.
    Custom {
        /// The component's own data.
        data: serde_json::Value,
    },
}

/// Health of a backend or database host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Passing checks, taking traffic.
    Up,
    /// Failing checks, taking no traffic.
    Down,
    /// Finishing in-flight work, taking no new traffic.
    Draining,
    /// Taken out for a while after errors (outlier detection).
    Ejected,
    /// Reachable but avoided (e.g. a replica lagging too far behind).
    Shunned,
    /// Not checked yet.
    #[default]
    Unknown,
}

/// A notable transition: a failover, an ejection, a backend going down.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StatusEvent {
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// A short machine-readable kind (`"failover"`, `"ejected"`, `"down"`).
    pub kind: String,
    /// What happened, for humans.
    pub message: String,
}

impl StatusEvent {
    /// An event that happens now.
    pub fn now(kind: impl Into<String>, message: impl Into<String>) -> Self {
        let at_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            at_unix_ms,
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// A load balancer's state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LbStatus {
    /// The balancing policy's name (`"round_robin"`, `"p2c_ewma"`…).
    pub policy: String,
    /// Every backend, in configuration order.
    pub backends: Vec<BackendStatus>,
    /// Recent events, oldest first.
    pub events: Vec<StatusEvent>,
}

/// One backend of a load balancer. Counters are totals since start; the
/// status page derives rates from successive snapshots.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BackendStatus {
    /// How the backend is named (usually its address or URL).
    pub id: String,
    /// Its balancing weight.
    pub weight: u32,
    /// Its health.
    pub health: Health,
    /// Requests in flight now.
    pub in_flight: u64,
    /// Requests sent since start.
    pub requests_total: u64,
    /// Failed requests (connect errors, timeouts, 5xx) since start.
    pub errors_total: u64,
    /// 99th percentile latency over a recent window, in seconds.
    pub latency_p99_seconds: Option<f64>,
    /// Times outlier detection has ejected it.
    pub ejections_total: u64,
}

/// A database pool's state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DbStatus {
    /// The host currently taking writes, if one is known.
    pub writer: Option<String>,
    /// Every host, in configuration order.
    pub hosts: Vec<DbHostStatus>,
    /// Failovers since start.
    pub failovers_total: u64,
    /// Recent events, oldest first.
    pub events: Vec<StatusEvent>,
}

/// Role of a database host, as the monitor last saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
pub struct DbHostStatus {
    /// The host's name (address; never credentials).
    pub id: String,
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

//! The background monitor: one task per host, stopped by the shared
//! [`Shutdown`] or when the last handle of the pool is dropped.
//!
//! Every [`MonitorConfig::interval`] each task, on its own monitoring
//! connection (separate credentials: replication status needs
//! `SLAVE MONITOR` / `REPLICATION CLIENT`), reads `@@global.read_only` and
//! the replication status (`SHOW REPLICA STATUS`, falling back to
//! `SHOW SLAVE STATUS`; both column spellings are read). A check that fails
//! or exceeds [`MonitorConfig::check_timeout`] counts as a failure; after
//! [`MonitorConfig::failure_threshold`] in a row the host is down, and if it
//! was the writer, the writer is lost (see [`failover`](crate::failover)).
//! With the defaults a dead primary is declared after about 0.75–1.5 s.
//!
//! Replicas whose replication is broken (lag `NULL` because a thread
//! stopped) or whose lag exceeds the configured maximum are shunned; the
//! writer is never shunned for lag. Every few checks the task also reads
//! `SHOW GLOBAL STATUS` (`Questions`, `Com_select`, `Com_insert`, …) and
//! exports them as counters, as mysqld_exporter does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use foobar_core::status::Health;
use foobar_core::Shutdown;
use metrics::{Counter, Gauge};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::failover::Control;
use crate::topology::Host;

/// How hosts are checked.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MonitorConfig {
    /// Time between checks of a host (default 250 ms).
    pub interval: Duration,
    /// How long one check (connect if needed, role, replication) may take
    /// (default 500 ms).
    pub check_timeout: Duration,
    /// Failed checks in a row before a host is declared down (default 3).
    pub failure_threshold: u32,
    /// Replicas lagging more than this are shunned (default 10 s).
    pub max_lag: Duration,
    /// Read `SHOW GLOBAL STATUS` every this many checks (default 4).
    pub server_status_every: u32,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(250),
            check_timeout: Duration::from_millis(500),
            failure_threshold: 3,
            max_lag: Duration::from_secs(10),
            server_status_every: 4,
        }
    }
}

impl MonitorConfig {
    /// Sets [`MonitorConfig::interval`].
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets [`MonitorConfig::check_timeout`].
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout;
        self
    }

    /// Sets [`MonitorConfig::failure_threshold`] (at least 1).
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures.max(1);
        self
    }

    /// Sets [`MonitorConfig::max_lag`].
    pub fn max_lag(mut self, lag: Duration) -> Self {
        self.max_lag = lag;
        self
    }
}

/// A replica's replication threads and position, as `SHOW REPLICA STATUS`
/// reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReplicaStatus {
    /// `Slave_IO_Running` / `Replica_IO_Running`: `Yes`, `No`, `Connecting`.
    pub(crate) io_running: String,
    /// `Slave_SQL_Running` / `Replica_SQL_Running`.
    pub(crate) sql_running: bool,
    /// `Seconds_Behind_Master` / `Seconds_Behind_Source`; `None` is `NULL`.
    pub(crate) lag_seconds: Option<u64>,
    /// `Gtid_IO_Pos` (MariaDB) or `Retrieved_Gtid_Set` (MySQL): what the
    /// replica has received.
    pub(crate) received: String,
}

impl ReplicaStatus {
    fn from_row(row: &Row) -> Self {
        let io_running =
            column(row, &["Slave_IO_Running", "Replica_IO_Running"]).unwrap_or_default();
        let sql_running =
            column(row, &["Slave_SQL_Running", "Replica_SQL_Running"]).as_deref() == Some("Yes");
        let lag_seconds = column(row, &["Seconds_Behind_Master", "Seconds_Behind_Source"])
            .and_then(|lag| lag.parse().ok());
        let received = column(row, &["Gtid_IO_Pos", "Retrieved_Gtid_Set"]).unwrap_or_default();
        Self {
            io_running,
            sql_running,
            lag_seconds,
            received,
        }
    }
}

/// The first of `names` that the row has, as text; `None` for `NULL` or
/// absent.
fn column(row: &Row, names: &[&str]) -> Option<String> {
    let columns = row.columns_ref();
    for name in names {
        if let Some(index) = columns.iter().position(|c| c.name_str() == *name) {
            return match row.as_ref(index)? {
                mysql_async::Value::NULL => None,
                mysql_async::Value::Bytes(bytes) => {
                    Some(String::from_utf8_lossy(bytes).into_owned())
                }
                other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
            };
        }
    }
    None
}

/// What one successful check saw.
#[derive(Clone, Debug)]
pub(crate) struct Observation {
    pub(crate) read_only: bool,
    pub(crate) replica: Option<ReplicaStatus>,
    /// The monitor account may not read replication status (error 1227):
    /// a read-only host then counts as not replicating.
    pub(crate) replication_hidden: bool,
}

/// Reads the replication status; `None` on a server that replicates from
/// nothing (an empty result).
pub(crate) async fn replica_status(
    conn: &mut Conn,
) -> Result<Option<ReplicaStatus>, mysql_async::Error> {
    let rows: Vec<Row> = match conn.query("SHOW REPLICA STATUS").await {
        Ok(rows) => rows,
        // MariaDB < 10.5 and MySQL < 8.0.22 only know the old spelling.
        Err(mysql_async::Error::Server(e)) if e.code == 1064 => {
            conn.query("SHOW SLAVE STATUS").await?
        }
        Err(e) => return Err(e),
    };
    Ok(rows.first().map(ReplicaStatus::from_row))
}

async fn observe(conn: &mut Conn) -> Result<Observation, mysql_async::Error> {
    let read_only: Option<i64> = conn.query_first("SELECT @@global.read_only").await?;
    let (replica, replication_hidden) = match replica_status(conn).await {
        Ok(replica) => (replica, false),
        Err(mysql_async::Error::Server(e)) if e.code == 1227 => (None, true),
        Err(e) => return Err(e),
    };
    Ok(Observation {
        read_only: read_only.unwrap_or(1) != 0,
        replica,
        replication_hidden,
    })
}

/// Server-wide counters from `SHOW GLOBAL STATUS`, exported like
/// mysqld_exporter's `mysql_global_status_*`.
struct ServerCounters {
    questions: Counter,
    commands: Vec<(&'static str, Counter)>,
    threads_connected: Gauge,
}

const COMMANDS: &[&str] = &[
    "select", "insert", "update", "delete", "replace", "commit", "rollback", "begin",
];

impl ServerCounters {
    fn new(host: &str) -> Self {
        Self {
            questions: metrics::counter!("foobar_db_server_questions_total", "host" => host.to_owned()),
            commands: COMMANDS
                .iter()
                .map(|command| {
                    (
                        *command,
                        metrics::counter!(
                            "foobar_db_server_commands_total",
                            "host" => host.to_owned(),
                            "command" => *command
                        ),
                    )
                })
                .collect(),
            threads_connected: metrics::gauge!("foobar_db_server_threads_connected", "host" => host.to_owned()),
        }
    }

    async fn poll(&self, host: &Host, conn: &mut Conn) -> Result<(), mysql_async::Error> {
        let rows: Vec<(String, String)> = conn
            .query(
                "SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Threads_connected', \
                 'Com_select', 'Com_insert', 'Com_update', 'Com_delete', 'Com_replace', \
                 'Com_commit', 'Com_rollback', 'Com_begin')",
            )
            .await?;
        for (name, value) in rows {
            let Ok(value) = value.parse::<u64>() else {
                continue;
            };
            let name = name.to_ascii_lowercase();
            if name == "questions" {
                self.questions.absolute(value);
                host.server_questions.store(value, Ordering::Relaxed);
            } else if name == "threads_connected" {
                #[allow(clippy::cast_precision_loss)]
                self.threads_connected.set(value as f64);
            } else if let Some(command) = name.strip_prefix("com_") {
                if let Some((_, counter)) = self.commands.iter().find(|(c, _)| *c == command) {
                    counter.absolute(value);
                }
            }
        }
        Ok(())
    }
}

/// Pool and lag gauges of one host.
struct HostGauges {
    size: Gauge,
    in_use: Gauge,
    waiting: Gauge,
    lag: Gauge,
    up: Gauge,
}

impl HostGauges {
    fn new(host: &str) -> Self {
        let labelled = |name: &'static str| metrics::gauge!(name, "host" => host.to_owned());
        Self {
            size: labelled("foobar_db_pool_connections"),
            in_use: labelled("foobar_db_pool_connections_in_use"),
            waiting: labelled("foobar_db_pool_waiting"),
            lag: labelled("foobar_db_replication_lag_seconds"),
            up: labelled("foobar_db_host_up"),
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn update(&self, host: &Host) {
        let status = host.pool.status();
        self.size.set(status.size as f64);
        self.in_use
            .set(status.size.saturating_sub(status.available) as f64);
        self.waiting.set(status.waiting as f64);
        self.lag
            .set(host.lag().map_or(f64::NAN, |lag| lag.as_secs_f64()));
        self.up.set(if host.health() == Health::Up {
            1.0
        } else {
            0.0
        });
    }
}

/// One check: connect if needed, observe, with the check timeout.
pub(crate) async fn check(
    host: &Host,
    conn: &mut Option<Conn>,
    timeout: Duration,
) -> Result<Observation, String> {
    let attempt = async {
        if conn.is_none() {
            *conn = Some(Conn::new(host.monitor_opts.clone()).await?);
        }
        match conn.as_mut() {
            Some(c) => observe(c).await,
            None => Err(mysql_async::Error::Driver(
                mysql_async::DriverError::ConnectionClosed,
            )),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(observation)) => Ok(observation),
        Ok(Err(error)) => {
            *conn = None;
            Err(error.to_string())
        }
        Err(_) => {
            *conn = None;
            Err(format!("no answer within {timeout:?}"))
        }
    }
}

/// Runs the monitor loop for one host until shutdown.
pub(crate) async fn run(
    control: Arc<Control>,
    host: Arc<Host>,
    mut conn: Option<Conn>,
    shutdown: Shutdown,
) {
    let config = control.monitor.clone();
    let counters = ServerCounters::new(&host.id);
    let gauges = HostGauges::new(&host.id);
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round: u32 = 0;
    loop {
        tokio::select! {
            () = shutdown.wait() => break,
            _ = ticker.tick() => {}
        }
        let epoch = control.topology.epoch();
        let result = check(&host, &mut conn, config.check_timeout).await;
        control.observed(&host, result, epoch).await;
        round = round.wrapping_add(1);
        if round % config.server_status_every.max(1) == 0 {
            if let Some(c) = conn.as_mut() {
                if let Err(error) = counters.poll(&host, c).await {
                    tracing::debug!(host = %host.id, %error, "SHOW GLOBAL STATUS failed");
                }
            }
        }
        gauges.update(&host);
    }
    if let Some(c) = conn {
        let _ = c.disconnect().await;
    }
    tracing::debug!(host = %host.id, "monitor stopped");
}

/// The health a reachable read-only host deserves.
pub(crate) fn replica_health(
    replica: Option<&ReplicaStatus>,
    max_lag: Duration,
    writer_suspect: bool,
    previous_lag: Option<Duration>,
) -> (Health, Option<Duration>) {
    let Some(status) = replica else {
        // Read-only but replicating from nothing: its data may be anything.
        return (Health::Shunned, None);
    };
    match status.lag_seconds {
        Some(seconds) if status.sql_running && status.io_running == "Yes" => {
            let lag = Duration::from_secs(seconds);
            let health = if lag > max_lag {
                Health::Shunned
            } else {
                Health::Up
            };
            (health, Some(lag))
        }
        // The primary is failing or gone and the replica is trying to
        // reconnect: until a new writer is settled it holds the freshest
        // data there is, so it keeps serving reads at its last known lag.
        _ if status.sql_running && status.io_running != "No" && writer_suspect => {
            let health = if previous_lag.is_some() {
                Health::Up
            } else {
                Health::Shunned
            };
            (health, previous_lag)
        }
        _ => (Health::Shunned, None),
    }
}

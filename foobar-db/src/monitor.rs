//! The background monitor: one task per host, stopped by the shared
//! [`Shutdown`] or when the last handle of the pool is dropped.
//!
//! Every [`MonitorConfig::interval`] each task, on its own monitoring
//! connection (separate credentials: replication status needs
//! `SLAVE MONITOR` / `REPLICATION CLIENT`), reads `@@global.read_only`,
//! `@@server_id`, the replication status (`SHOW REPLICA STATUS`, falling
//! back to `SHOW SLAVE STATUS`; both column spellings are read) and the
//! failover epoch the servers hold (see [`failover`](crate::failover)). It
//! hands what it saw to the failover control loop, which decides; the
//! monitor itself decides nothing.
//!
//! A check that fails or exceeds [`MonitorConfig::check_timeout`] counts as
//! a failure; after [`MonitorConfig::failure_threshold`] in a row the host
//! is down. With the defaults a dead primary is declared after about
//! 0.75–1.5 s. Every few checks the task also reads `SHOW GLOBAL STATUS`
//! (`Questions`, `Com_select`, `Com_insert`, …) and exports them as
//! counters, as mysqld_exporter does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foobar_core::Shutdown;
use metrics::{Counter, Gauge};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use tokio::sync::mpsc;

use crate::failover::control::Input;
use crate::topology::{Health, Host};

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

/// The replica's IO thread (`Slave_IO_Running`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IoThread {
    /// Connected to its source (`Yes`).
    Running,
    /// Trying to (re)connect (`Connecting`): the source is gone or
    /// unreachable from the replica.
    Connecting,
    /// Stopped (`No`).
    Stopped,
}

/// A replica's replication threads and position, as `SHOW REPLICA STATUS`
/// reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReplicaStatus {
    /// `Slave_IO_Running` / `Replica_IO_Running`.
    pub(crate) io: IoThread,
    /// `Slave_SQL_Running` / `Replica_SQL_Running`.
    pub(crate) sql_running: bool,
    /// `Seconds_Behind_Master` / `Seconds_Behind_Source`; `None` is `NULL`.
    pub(crate) lag_seconds: Option<u64>,
    /// `Gtid_IO_Pos` (MariaDB) or `Retrieved_Gtid_Set` (MySQL): what the
    /// replica has received.
    pub(crate) received: String,
    /// `Master_Host`, `Master_Port`: where it replicates from.
    pub(crate) source: (String, u16),
    /// `Last_IO_Errno` (1236: the source lacks what the replica asks for).
    pub(crate) last_io_errno: u16,
    /// `Last_IO_Error`.
    pub(crate) last_io_error: String,
}

impl ReplicaStatus {
    fn from_row(row: &Row) -> Self {
        let io = match column(row, &["Slave_IO_Running", "Replica_IO_Running"]).as_deref() {
            Some("Yes") => IoThread::Running,
            Some("Connecting") => IoThread::Connecting,
            _ => IoThread::Stopped,
        };
        let sql_running =
            column(row, &["Slave_SQL_Running", "Replica_SQL_Running"]).as_deref() == Some("Yes");
        let lag_seconds = column(row, &["Seconds_Behind_Master", "Seconds_Behind_Source"])
            .and_then(|lag| lag.parse().ok());
        let received = column(row, &["Gtid_IO_Pos", "Retrieved_Gtid_Set"]).unwrap_or_default();
        let host = column(row, &["Master_Host", "Source_Host"]).unwrap_or_default();
        let port = column(row, &["Master_Port", "Source_Port"])
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let last_io_errno = column(row, &["Last_IO_Errno"])
            .and_then(|e| e.parse().ok())
            .unwrap_or(0);
        let last_io_error = column(row, &["Last_IO_Error"]).unwrap_or_default();
        Self {
            io,
            sql_running,
            lag_seconds,
            received,
            source: (host, port),
            last_io_errno,
            last_io_error,
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

/// A statement the account may not run: the server's code and the
/// privilege it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Denied {
    pub(crate) code: u16,
    pub(crate) needed: String,
}

impl Denied {
    /// The denial in a server error, if it is one (1227: a privilege; 1142:
    /// a table privilege; 1044: a database).
    pub(crate) fn of(error: &mysql_async::Error) -> Option<Self> {
        match error {
            mysql_async::Error::Server(e) if matches!(e.code, 1227 | 1142 | 1044) => Some(Self {
                code: e.code,
                needed: crate::error::needed_privilege(&e.message),
            }),
            _ => None,
        }
    }
}

/// Whether and from where a host replicates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Replication {
    /// It replicates from nothing (an empty `SHOW REPLICA STATUS`).
    None,
    /// The monitor account may not read replication status.
    Hidden(Denied),
    /// It is a replica.
    Replica(ReplicaStatus),
}

/// The failover epoch a server holds: the newest promotion it knows of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Epoch {
    /// Bumped by every promotion.
    pub(crate) number: u64,
    /// The `@@server_id` of the host promoted then.
    pub(crate) server_id: u32,
}

/// What the epoch table says on one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EpochRead {
    /// No table or no row: no pool has promoted a host in this cluster.
    Absent,
    /// The monitor account may not read it.
    Hidden(Denied),
    /// The newest promotion this server knows of.
    Known(Epoch),
}

/// What one successful check saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostCheck {
    pub(crate) read_only: bool,
    pub(crate) server_id: u32,
    pub(crate) replication: Replication,
    pub(crate) epoch: EpochRead,
}

/// Why a check failed.
#[derive(Clone, Debug)]
pub(crate) enum CheckError {
    /// The server refused the monitor's credentials (1045).
    AccessDenied,
    /// No answer within the check timeout.
    Timeout(Duration),
    /// The connection or a statement failed.
    Failed(Arc<mysql_async::Error>),
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AccessDenied => f.write_str("access denied for the monitor account (error 1045)"),
            Self::Timeout(after) => write!(f, "no answer within {} ms", after.as_millis()),
            Self::Failed(error) => write!(f, "{error}"),
        }
    }
}

/// One check's outcome.
pub(crate) type Observation = Result<HostCheck, CheckError>;

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

/// Reads the epoch table (`epoch_query` selects `epoch, server_id`).
pub(crate) async fn read_epoch(
    conn: &mut Conn,
    epoch_query: &str,
) -> Result<EpochRead, mysql_async::Error> {
    match conn.query_first::<(u64, u32), _>(epoch_query).await {
        Ok(Some((number, server_id))) => Ok(EpochRead::Known(Epoch { number, server_id })),
        Ok(None) => Ok(EpochRead::Absent),
        // No such table (1146) or database (1049): nobody promoted yet.
        Err(mysql_async::Error::Server(e)) if matches!(e.code, 1146 | 1049) => {
            Ok(EpochRead::Absent)
        }
        Err(e) => match Denied::of(&e) {
            Some(denied) => Ok(EpochRead::Hidden(denied)),
            None => Err(e),
        },
    }
}

async fn observe(conn: &mut Conn, epoch_query: &str) -> Result<HostCheck, mysql_async::Error> {
    let (read_only, server_id): (i64, u32) = conn
        .query_first("SELECT @@global.read_only, @@server_id")
        .await?
        .unwrap_or((1, 0));
    let replication = match replica_status(conn).await {
        Ok(Some(status)) => Replication::Replica(status),
        Ok(None) => Replication::None,
        Err(e) => match Denied::of(&e) {
            Some(denied) => Replication::Hidden(denied),
            None => return Err(e),
        },
    };
    let epoch = read_epoch(conn, epoch_query).await?;
    Ok(HostCheck {
        read_only: read_only != 0,
        server_id,
        replication,
        epoch,
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
    epoch_query: &str,
) -> Observation {
    let attempt = async {
        if conn.is_none() {
            *conn = Some(Conn::new(host.monitor_opts.clone()).await?);
        }
        match conn.as_mut() {
            Some(c) => observe(c, epoch_query).await,
            None => Err(mysql_async::Error::Driver(
                mysql_async::DriverError::ConnectionClosed,
            )),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(check)) => Ok(check),
        Ok(Err(error)) => {
            *conn = None;
            Err(match error {
                mysql_async::Error::Server(e) if e.code == 1045 => CheckError::AccessDenied,
                other => CheckError::Failed(Arc::new(other)),
            })
        }
        Err(_) => {
            *conn = None;
            Err(CheckError::Timeout(timeout))
        }
    }
}

/// What a monitor task needs.
#[derive(Debug)]
pub(crate) struct MonitorTask {
    pub(crate) host: Arc<Host>,
    pub(crate) config: MonitorConfig,
    pub(crate) epoch_query: Arc<str>,
    pub(crate) inputs: mpsc::UnboundedSender<Input>,
    pub(crate) shutdown: Shutdown,
}

impl MonitorTask {
    /// Checks the host every interval until shutdown, sending what it saw
    /// to the control loop.
    pub(crate) async fn run(self, mut conn: Option<Conn>) {
        let Self {
            host,
            config,
            epoch_query,
            inputs,
            shutdown,
        } = self;
        let counters = ServerCounters::new(&host.id);
        let gauges = HostGauges::new(&host.id);
        let mut ticker = tokio::time::interval(config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick fires at once; the builder has just checked.
        ticker.tick().await;
        let mut round: u32 = 0;
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                _ = ticker.tick() => {}
            }
            let started = Instant::now();
            let observation = check(&host, &mut conn, config.check_timeout, &epoch_query).await;
            let input = Input::Checked {
                host: host.index,
                started,
                observation,
            };
            if inputs.send(input).is_err() {
                break;
            }
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
}

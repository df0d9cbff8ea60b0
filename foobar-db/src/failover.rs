//! Who is writer, and what happens when the writer is lost.
//!
//! Every monitor check ends here; decisions about
//! roles are taken one at a time (an async mutex, off the query path).
//!
//! - A host seen writable (`read_only = 0`) while no writer is known becomes
//!   the writer. That is all [`FailoverMode::FollowExternal`] needs: an
//!   external promoter (orchestrator, MaxScale, a person) turns a replica
//!   writable and the pool follows, as ProxySQL does.
//! - The writer failing [`MonitorConfig::failure_threshold`] checks in a row
//!   is declared dead: writes wait (up to the configured timeout, then fail
//!   with [`Error::NoWriter`]), never go to a
//!   replica.
//! - [`FailoverMode::AutoPromote`] then promotes the replica that has
//!   *received* the most (`Gtid_IO_Pos`, not the applied position): stop
//!   its IO thread, wait until everything received is applied
//!   (`MASTER_GTID_WAIT`), `STOP SLAVE; RESET SLAVE ALL`, move the
//!   semi-sync primary role to it, repoint the other replicas
//!   (`CHANGE MASTER TO … MASTER_USE_GTID=slave_pos`; on MySQL
//!   `CHANGE REPLICATION SOURCE TO … SOURCE_AUTO_POSITION=1`) and finally
//!   `SET GLOBAL read_only = 0`.
//! - Fencing: a former writer that comes back writable while another writer
//!   is known is set read-only (and, in auto mode with replication
//!   credentials, made a replica of the new writer). It is never used as a
//!   second writer.
//!
//! Promotion and fencing use the failover credentials (see
//! [`RwPoolBuilder::failover_credentials`](crate::RwPoolBuilder::failover_credentials)).
//!
//! [`MonitorConfig::failure_threshold`]: crate::MonitorConfig::failure_threshold

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foobar_core::status::Health;
use foobar_core::Shutdown;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tokio::sync::Mutex;

use crate::monitor::{self, MonitorConfig, Observation};
use crate::status::DbRole;
use crate::topology::{Host, RoleHint, Topology};
use crate::Error;

/// What to do when the writer is lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailoverMode {
    /// Wait for something else to promote a replica; the first host seen
    /// writable becomes the writer.
    #[default]
    FollowExternal,
    /// Promote the most advanced replica ourselves.
    AutoPromote,
}

/// Failover settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FailoverConfig {
    /// The mode (default [`FailoverMode::FollowExternal`]).
    pub mode: FailoverMode,
    /// How long the new primary may take to apply what it received before
    /// promotion goes ahead anyway (default 10 s).
    pub drain_timeout: Duration,
    /// Whether the cluster runs semi-synchronous replication: promotion
    /// moves the primary side to the new writer and the replica side off it
    /// (default false).
    pub semi_sync: bool,
    /// The account other servers replicate with, used to make a fenced
    /// former primary a replica (`CHANGE MASTER TO … MASTER_USER`). Without
    /// it a fenced host is only set read-only.
    pub replication_credentials: Option<(String, String)>,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            mode: FailoverMode::FollowExternal,
            drain_timeout: Duration::from_secs(10),
            semi_sync: false,
            replication_credentials: None,
        }
    }
}

impl FailoverConfig {
    /// A configuration for `mode`, other settings at their defaults.
    pub fn new(mode: FailoverMode) -> Self {
        Self {
            mode,
            ..Self::default()
        }
    }

    /// Sets [`FailoverConfig::drain_timeout`].
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Sets [`FailoverConfig::semi_sync`].
    pub fn semi_sync(mut self, enabled: bool) -> Self {
        self.semi_sync = enabled;
        self
    }

    /// Sets [`FailoverConfig::replication_credentials`].
    pub fn replication_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.replication_credentials = Some((user.into(), password.into()));
        self
    }
}

/// The decision maker shared by the monitor tasks.
#[derive(Debug)]
pub(crate) struct Control {
    pub(crate) topology: Arc<Topology>,
    pub(crate) monitor: MonitorConfig,
    pub(crate) failover: FailoverConfig,
    decide: Mutex<()>,
    promoting: AtomicBool,
    last_promotion_attempt: std::sync::Mutex<Option<Instant>>,
    shutdown: Shutdown,
}

impl Control {
    pub(crate) fn new(
        topology: Arc<Topology>,
        monitor: MonitorConfig,
        failover: FailoverConfig,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            topology,
            monitor,
            failover,
            decide: Mutex::new(()),
            promoting: AtomicBool::new(false),
            last_promotion_attempt: std::sync::Mutex::new(None),
            shutdown,
        }
    }

    /// Decides the first writer from the first round of checks: writable
    /// hosts, the one hinted primary first.
    pub(crate) async fn initial(
        self: &Arc<Self>,
        results: &[(Arc<Host>, Result<Observation, String>)],
    ) {
        let _guard = self.decide.lock().await;
        let mut writable: Vec<&Arc<Host>> = results
            .iter()
            .filter(|(_, r)| r.as_ref().is_ok_and(|o| !o.read_only))
            .map(|(h, _)| h)
            .collect();
        writable.sort_by_key(|h| (h.hint != RoleHint::Primary, h.index));
        if let Some(writer) = writable.first() {
            writer.set_role(DbRole::Primary);
            writer.set_health(Health::Up);
            self.topology.set_writer(Some(writer.index), "initial");
        }
        drop(_guard);
        for (host, result) in results {
            if self.topology.writer_index() == Some(host.index) {
                continue;
            }
            self.observed(host, result.clone(), self.topology.epoch())
                .await;
        }
    }

    /// Takes in one check's result; `epoch` is the topology's epoch when the
    /// check started.
    pub(crate) async fn observed(
        self: &Arc<Self>,
        host: &Arc<Host>,
        result: Result<Observation, String>,
        epoch: u64,
    ) {
        match result {
            // The writer changed while this check ran (a promotion, say):
            // what it saw may predate the change. The next check decides.
            Ok(_) if epoch != self.topology.epoch() => {}
            Ok(observation) => {
                let previous = host.consecutive_failures.swap(0, Ordering::Relaxed);
                if previous >= self.monitor.failure_threshold {
                    self.topology
                        .record("up", format!("{} reachable again", host.id));
                    tracing::info!(host = %host.id, "database host reachable again");
                }
                self.reachable(host, &observation, epoch).await;
            }
            Err(error) => {
                let failures = host.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::debug!(host = %host.id, failures, %error, "database check failed");
                if failures == self.monitor.failure_threshold {
                    self.down(host, &error).await;
                }
            }
        }
        if self.failover.mode == FailoverMode::AutoPromote && self.topology.writer_index().is_none()
        {
            self.maybe_promote();
        }
    }

    async fn reachable(self: &Arc<Self>, host: &Arc<Host>, observation: &Observation, epoch: u64) {
        let writer = self.topology.writer_index();
        if observation.read_only {
            if writer == Some(host.index) {
                let _guard = self.decide.lock().await;
                // Re-checked under the lock: a promotion may have just
                // made this host writer.
                if self.topology.epoch() == epoch
                    && self.topology.writer_index() == Some(host.index)
                {
                    self.topology.set_writer(None, "writer turned read-only");
                }
            }
            host.set_role(DbRole::Replica);
            let (health, lag) = monitor::replica_health(
                observation.replica.as_ref(),
                self.monitor.max_lag,
                self.writer_suspect(),
                host.lag(),
            );
            host.set_lag(lag);
            let old = host.set_health(health);
            if old != health && observation.replication_hidden {
                tracing::warn!(
                    host = %host.id,
                    "the monitor account may not read replication status (needs SLAVE MONITOR \
                     or REPLICATION CLIENT); the replica takes no reads"
                );
            }
            if old != health {
                let message = crate::status::health_message(&host.id, health, lag);
                tracing::info!(host = %host.id, ?health, ?lag, "replica health changed");
                self.topology.record("health", message);
            }
            return;
        }

        // Writable.
        if writer == Some(host.index) {
            host.set_role(DbRole::Primary);
            host.set_lag(None);
            host.set_health(Health::Up);
            return;
        }
        let _guard = self.decide.lock().await;
        if self.topology.epoch() != epoch {
            return;
        }
        match self.topology.writer_index() {
            None if !self.promoting.load(Ordering::Acquire) => {
                host.deposed.store(false, Ordering::Release);
                host.set_role(DbRole::Primary);
                host.set_lag(None);
                host.set_health(Health::Up);
                self.topology
                    .set_writer(Some(host.index), "host is writable");
            }
            None => {}
            Some(current) if current == host.index => {}
            Some(current) => {
                // Never two writers: keep the current one.
                host.set_role(DbRole::Primary);
                host.set_health(Health::Ejected);
                if host.deposed.load(Ordering::Acquire) {
                    let new_writer = Arc::clone(&self.topology.hosts[current]);
                    if let Err(error) = self.fence(host, &new_writer).await {
                        tracing::error!(host = %host.id, %error, "fencing failed");
                        self.topology
                            .record("fence_failed", format!("{}: {error}", host.id));
                    }
                } else {
                    tracing::warn!(host = %host.id, "a second host is writable; it takes no traffic");
                }
            }
        }
    }

    /// No writer, or the writer's last check failed.
    fn writer_suspect(&self) -> bool {
        self.topology
            .writer_host()
            .is_none_or(|writer| writer.consecutive_failures.load(Ordering::Relaxed) > 0)
    }

    async fn down(self: &Arc<Self>, host: &Arc<Host>, error: &str) {
        host.set_health(Health::Down);
        host.set_lag(None);
        // Idle connections to a dead host are useless; drop them.
        host.pool.retain(|_, _| false);
        tracing::warn!(host = %host.id, %error, "database host down");
        self.topology
            .record("down", format!("{} down: {error}", host.id));
        if self.topology.writer_index() == Some(host.index) {
            let _guard = self.decide.lock().await;
            if self.topology.writer_index() == Some(host.index) {
                host.deposed.store(true, Ordering::Release);
                self.topology.set_writer(None, "writer down");
            }
        }
    }

    /// Starts a promotion unless one runs or one was tried within the last
    /// second.
    fn maybe_promote(self: &Arc<Self>) {
        if self.shutdown.is_triggered() {
            return;
        }
        {
            let Ok(mut last) = self.last_promotion_attempt.lock() else {
                return;
            };
            if last.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
                return;
            }
            if self.promoting.swap(true, Ordering::AcqRel) {
                return;
            }
            *last = Some(Instant::now());
        }
        let control = Arc::clone(self);
        tokio::spawn(async move {
            let started = Instant::now();
            let result = {
                let _guard = control.decide.lock().await;
                if control.topology.writer_index().is_some() {
                    Ok(None)
                } else {
                    control.promote().await.map(Some)
                }
            };
            control.promoting.store(false, Ordering::Release);
            match result {
                Ok(Some(index)) => {
                    let host = &control.topology.hosts[index];
                    tracing::warn!(host = %host.id, elapsed = ?started.elapsed(), "promoted new primary");
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(%error, "promotion failed");
                    control
                        .topology
                        .record("promotion_failed", error.to_string());
                }
            }
        });
    }

    /// Promotes the most advanced reachable replica; returns its index.
    async fn promote(&self) -> Result<usize, Error> {
        let timeout = self.monitor.check_timeout.max(Duration::from_secs(1));
        // What every reachable replica has received.
        let mut best: Option<(u64, Arc<Host>, Conn)> = None;
        let mut others: Vec<(Arc<Host>, Conn)> = Vec::new();
        for host in &self.topology.hosts {
            if host.deposed.load(Ordering::Acquire) || host.health() == Health::Down {
                continue;
            }
            let Ok(Ok(mut conn)) =
                tokio::time::timeout(timeout, Conn::new(host.admin_opts.clone())).await
            else {
                continue;
            };
            let Ok(Some(status)) = monitor::replica_status(&mut conn).await else {
                continue;
            };
            let progress = gtid_progress(&status.received);
            match &best {
                Some((best_progress, _, _)) if *best_progress >= progress => {
                    others.push((Arc::clone(host), conn));
                }
                _ => {
                    if let Some((_, host, conn)) = best.take() {
                        others.push((host, conn));
                    }
                    best = Some((progress, Arc::clone(host), conn));
                }
            }
        }
        let Some((_, chosen, mut conn)) = best else {
            return Err(Error::Failover("no reachable replica to promote".into()));
        };
        let dialect = Dialect::of(&conn);
        tracing::warn!(host = %chosen.id, "promoting");
        // Drain: apply everything received before replication is thrown away.
        step(&chosen, &mut conn, dialect.stop_io()).await?;
        let received = monitor::replica_status(&mut conn)
            .await
            .map_err(|e| Error::Failover(format!("{}: {e}", chosen.id)))?
            .map(|s| s.received)
            .unwrap_or_default();
        if !received.is_empty() {
            let drained: Option<Option<i64>> = conn
                .exec_first(
                    dialect.drain(),
                    (
                        received.replace(char::is_whitespace, ""),
                        self.failover.drain_timeout.as_secs_f64(),
                    ),
                )
                .await
                .map_err(|e| Error::Failover(format!("{}: drain: {e}", chosen.id)))?;
            if drained != Some(Some(0)) {
                tracing::warn!(host = %chosen.id, %received, "drain timed out; promoting anyway");
            }
        }
        step(&chosen, &mut conn, dialect.stop()).await?;
        step(&chosen, &mut conn, dialect.reset_all()).await?;
        // Semi-sync on the new primary only when a replica will acknowledge:
        // with none left, every commit would wait out the semi-sync timeout
        // and then go asynchronous anyway. It comes on again when a fenced
        // former primary rejoins as a replica.
        if self.failover.semi_sync {
            if others.is_empty() {
                tracing::warn!(host = %chosen.id, "no replica left: semi-sync stays off until one joins");
                self.topology.record(
                    "semi_sync_off",
                    format!("{}: no replica left to acknowledge writes", chosen.id),
                );
            } else {
                for sql in dialect.semi_sync(true) {
                    step(&chosen, &mut conn, sql).await?;
                }
            }
        }
        // Repoint the others before writes start, so semi-sync has its
        // acknowledgers.
        let (writer_host, writer_port) = address_of(&chosen);
        for (other, mut other_conn) in others {
            let change = dialect.change_source(&writer_host, writer_port, None, false);
            for sql in [dialect.stop(), change.as_str(), dialect.start()] {
                if let Err(error) = other_conn.query_drop(sql).await {
                    tracing::error!(host = %other.id, %error, sql, "repointing replica failed");
                    self.topology
                        .record("repoint_failed", format!("{}: {error}", other.id));
                    break;
                }
            }
            let _ = other_conn.disconnect().await;
        }
        for sql in dialect.writable() {
            step(&chosen, &mut conn, sql).await?;
        }
        let _ = conn.disconnect().await;
        chosen.set_role(DbRole::Primary);
        chosen.set_health(Health::Up);
        chosen.set_lag(None);
        self.topology.set_writer(Some(chosen.index), "promoted");
        Ok(chosen.index)
    }

    /// Makes a returning former writer harmless: read-only, and a replica of
    /// the current writer when we may manage replication.
    async fn fence(&self, host: &Arc<Host>, writer: &Arc<Host>) -> Result<(), Error> {
        let mut conn = Conn::new(host.admin_opts.clone())
            .await
            .map_err(|e| Error::Failover(format!("{}: connect to fence: {e}", host.id)))?;
        let dialect = Dialect::of(&conn);
        let mut statements: Vec<String> = dialect
            .read_only()
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        if self.failover.semi_sync {
            statements.extend(dialect.semi_sync(false).iter().map(|s| (*s).to_owned()));
        }
        // In auto mode, with replication credentials, it rejoins as a replica.
        let rejoin_as = match self.failover.mode {
            FailoverMode::AutoPromote => self.failover.replication_credentials.as_ref(),
            FailoverMode::FollowExternal => None,
        };
        if let Some(credentials) = rejoin_as {
            let (writer_host, writer_port) = address_of(writer);
            statements.push(dialect.stop().to_owned());
            // The former primary's own writes are in its binlog, not in
            // gtid_slave_pos: it resumes from its current position.
            statements.push(dialect.change_source(
                &writer_host,
                writer_port,
                Some(credentials),
                true,
            ));
            statements.push(dialect.start().to_owned());
        }
        for sql in &statements {
            conn.query_drop(sql)
                .await
                .map_err(|e| Error::Failover(format!("{}: `{}`: {e}", host.id, redact_sql(sql))))?;
        }
        let _ = conn.disconnect().await;
        if self.failover.semi_sync && rejoin_as.is_some() {
            // The fenced host now replicates: the writer has an acknowledger
            // again.
            self.enable_semi_sync_source(writer).await;
        }
        host.deposed.store(false, Ordering::Release);
        host.set_role(DbRole::Replica);
        host.set_health(Health::Shunned);
        tracing::warn!(host = %host.id, writer = %writer.id, "fenced former primary: read-only");
        self.topology.record(
            "fenced",
            format!("{} set read-only; writer stays {}", host.id, writer.id),
        );
        Ok(())
    }
}

impl Control {
    /// Turns the semi-sync primary side on at `writer` (best effort: a
    /// failure leaves replication asynchronous, which is logged).
    async fn enable_semi_sync_source(&self, writer: &Arc<Host>) {
        let result = async {
            let mut conn = Conn::new(writer.admin_opts.clone()).await?;
            for sql in Dialect::of(&conn).semi_sync(true) {
                conn.query_drop(*sql).await?;
            }
            conn.disconnect().await
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(host = %writer.id, %error, "cannot turn semi-sync back on");
        }
    }
}

/// One promotion statement; its failure names the host and the statement.
async fn step(host: &Host, conn: &mut Conn, sql: &str) -> Result<(), Error> {
    conn.query_drop(sql)
        .await
        .map_err(|e| Error::Failover(format!("{}: `{sql}`: {e}", host.id)))
}

fn redact_sql(sql: &str) -> &str {
    if sql.contains("MASTER_PASSWORD") || sql.contains("SOURCE_PASSWORD") {
        "CHANGE MASTER TO …"
    } else {
        sql
    }
}

/// Replication statements in the server's dialect: MariaDB, or MySQL 8.0.26
/// and later (`REPLICA`/`SOURCE` spellings; MySQL 8.4 rejects the old ones).
///
/// The MySQL forms are written from its manual; the tests run MariaDB only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    MariaDb,
    MySql,
}

impl Dialect {
    fn of(conn: &Conn) -> Self {
        if crate::consistency::is_mariadb(conn.server_version()) {
            Self::MariaDb
        } else {
            Self::MySql
        }
    }

    fn stop_io(self) -> &'static str {
        match self {
            Self::MariaDb => "STOP SLAVE IO_THREAD",
            Self::MySql => "STOP REPLICA IO_THREAD",
        }
    }

    /// Waits until the received position is applied; returns 0 when it is.
    fn drain(self) -> &'static str {
        match self {
            Self::MariaDb => "SELECT MASTER_GTID_WAIT(?, ?)",
            Self::MySql => "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)",
        }
    }

    fn stop(self) -> &'static str {
        match self {
            Self::MariaDb => "STOP SLAVE",
            Self::MySql => "STOP REPLICA",
        }
    }

    fn start(self) -> &'static str {
        match self {
            Self::MariaDb => "START SLAVE",
            Self::MySql => "START REPLICA",
        }
    }

    fn reset_all(self) -> &'static str {
        match self {
            Self::MariaDb => "RESET SLAVE ALL",
            Self::MySql => "RESET REPLICA ALL",
        }
    }

    fn writable(self) -> &'static [&'static str] {
        match self {
            Self::MariaDb => &["SET GLOBAL read_only = 0"],
            Self::MySql => &["SET GLOBAL super_read_only = 0", "SET GLOBAL read_only = 0"],
        }
    }

    fn read_only(self) -> &'static [&'static str] {
        match self {
            Self::MariaDb => &["SET GLOBAL read_only = 1"],
            // super_read_only = 1 implies read_only = 1.
            Self::MySql => &["SET GLOBAL super_read_only = 1"],
        }
    }

    /// The semi-sync sides for a new primary (`true`) or a replica.
    fn semi_sync(self, primary: bool) -> &'static [&'static str] {
        match (self, primary) {
            (Self::MariaDb, true) => &[
                "SET GLOBAL rpl_semi_sync_slave_enabled = OFF",
                "SET GLOBAL rpl_semi_sync_master_enabled = ON",
            ],
            (Self::MariaDb, false) => &[
                "SET GLOBAL rpl_semi_sync_master_enabled = OFF",
                "SET GLOBAL rpl_semi_sync_slave_enabled = ON",
            ],
            (Self::MySql, true) => &[
                "SET GLOBAL rpl_semi_sync_replica_enabled = OFF",
                "SET GLOBAL rpl_semi_sync_source_enabled = ON",
            ],
            (Self::MySql, false) => &[
                "SET GLOBAL rpl_semi_sync_source_enabled = OFF",
                "SET GLOBAL rpl_semi_sync_replica_enabled = ON",
            ],
        }
    }

    /// Points replication at `host:port` by GTID. `from_own_binlog`: the
    /// server resumes from everything it has (MariaDB `current_pos`), not
    /// only what it replicated (`slave_pos`); MySQL's auto-position always
    /// does.
    fn change_source(
        self,
        host: &str,
        port: u16,
        credentials: Option<&(String, String)>,
        from_own_binlog: bool,
    ) -> String {
        let quote = |s: &str| s.replace('\'', "''");
        let host = quote(host);
        match self {
            Self::MariaDb => {
                let account = credentials.map_or_else(String::new, |(user, password)| {
                    format!(
                        "MASTER_USER='{}', MASTER_PASSWORD='{}', ",
                        quote(user),
                        quote(password)
                    )
                });
                let position = if from_own_binlog {
                    "current_pos"
                } else {
                    "slave_pos"
                };
                format!(
                    "CHANGE MASTER TO MASTER_HOST='{host}', MASTER_PORT={port}, {account}\
                     MASTER_USE_GTID={position}, MASTER_CONNECT_RETRY=1"
                )
            }
            Self::MySql => {
                let account = credentials.map_or_else(String::new, |(user, password)| {
                    format!(
                        "SOURCE_USER='{}', SOURCE_PASSWORD='{}', ",
                        quote(user),
                        quote(password)
                    )
                });
                format!(
                    "CHANGE REPLICATION SOURCE TO SOURCE_HOST='{host}', SOURCE_PORT={port}, \
                     {account}SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1"
                )
            }
        }
    }
}

fn address_of(host: &Host) -> (String, u16) {
    let opts = host.admin_opts.clone();
    (opts.ip_or_hostname().to_owned(), opts.tcp_port())
}

/// How far a GTID position is: the sum of sequence numbers over its
/// domains (`0-1-17,1-2-5` → 22). MariaDB form; MySQL's `uuid:1-17` sets
/// count their transactions.
pub(crate) fn gtid_progress(position: &str) -> u64 {
    position
        .split(',')
        .map(str::trim)
        .filter(|gtid| !gtid.is_empty())
        .map(|gtid| {
            if let Some((_, ranges)) = gtid.split_once(':') {
                // MySQL: uuid:1-17:20-25
                ranges
                    .split(':')
                    .map(|range| match range.split_once('-') {
                        Some((a, b)) => {
                            b.parse::<u64>()
                                .unwrap_or(0)
                                .saturating_sub(a.parse().unwrap_or(0))
                                + 1
                        }
                        None => u64::from(range.parse::<u64>().is_ok()),
                    })
                    .sum()
            } else {
                gtid.rsplit('-')
                    .next()
                    .and_then(|seq| seq.parse().ok())
                    .unwrap_or(0)
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::{gtid_progress, redact_sql, Dialect};

    #[test]
    fn replication_statements_in_both_dialects() {
        let account = ("repl".to_owned(), "it's".to_owned());
        assert_eq!(
            Dialect::MariaDb.change_source("10.0.0.2", 3306, Some(&account), true),
            "CHANGE MASTER TO MASTER_HOST='10.0.0.2', MASTER_PORT=3306, MASTER_USER='repl', \
             MASTER_PASSWORD='it''s', MASTER_USE_GTID=current_pos, MASTER_CONNECT_RETRY=1"
        );
        assert_eq!(
            Dialect::MySql.change_source("10.0.0.2", 3306, None, false),
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='10.0.0.2', SOURCE_PORT=3306, \
             SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1"
        );
        assert_eq!(Dialect::MySql.reset_all(), "RESET REPLICA ALL");
        assert_eq!(
            redact_sql(&Dialect::MariaDb.change_source("h", 1, Some(&account), false)),
            "CHANGE MASTER TO …"
        );
    }

    #[test]
    fn gtid_positions_compare_by_sequence() {
        assert_eq!(gtid_progress(""), 0);
        assert_eq!(gtid_progress("0-1-17"), 17);
        assert_eq!(gtid_progress("0-1-17,1-2-5"), 22);
        assert!(gtid_progress("0-2-120") > gtid_progress("0-1-119"));
        assert_eq!(
            gtid_progress("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:11-18"),
            13
        );
        assert_eq!(gtid_progress("garbage"), 0);
    }
}

//! The SQL of failover: promoting a replica, fencing a host, reporting a
//! diverged one, checking the failover account at start. Each runs in a
//! task of its own; what it decides was decided before (`decide.rs`), and
//! its result goes back to the control loop.

use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::control::Shared;
use super::decide::Promoted;
use super::gtid;
use super::sql::{self, Dialect};
use super::{Cause, FailoverError, Step};
use crate::monitor::{self, Denied, EpochRead, ReplicaStatus};
use crate::topology::Host;

/// Connects with the failover account.
async fn connect(host: &Host, timeout: Duration) -> Result<Conn, FailoverError> {
    match tokio::time::timeout(timeout, Conn::new(host.admin_opts.clone())).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(error)) => Err(failed(host, Step::Connect, &error)),
        Err(_) => Err(FailoverError::new(
            &host.id,
            Step::Connect,
            Cause::Timeout { after: timeout },
        )),
    }
}

fn failed(host: &Host, step: Step, error: &mysql_async::Error) -> FailoverError {
    let user = host.admin_opts.user().unwrap_or_default();
    FailoverError::new(&host.id, step, Cause::of(error, user))
}

/// Runs one statement of `step`, with the step timeout.
async fn exec(
    host: &Host,
    conn: &mut Conn,
    step: Step,
    sql: &str,
    timeout: Duration,
) -> Result<(), FailoverError> {
    match tokio::time::timeout(timeout, conn.query_drop(sql)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            tracing::debug!(host = %host.id, %step, sql = sql::redact(sql), %error, "failover statement failed");
            Err(failed(host, step, &error))
        }
        Err(_) => Err(FailoverError::new(
            &host.id,
            step,
            Cause::Timeout { after: timeout },
        )),
    }
}

/// Runs a query returning one value of `step`, with the timeout.
async fn value<T, P>(
    host: &Host,
    conn: &mut Conn,
    step: Step,
    sql: &str,
    params: P,
    timeout: Duration,
) -> Result<Option<T>, FailoverError>
where
    T: mysql_async::prelude::FromRow + Send + 'static,
    P: Into<mysql_async::Params> + Send,
{
    match tokio::time::timeout(timeout, conn.exec_first::<T, _, _>(sql, params)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(failed(host, step, &error)),
        Err(_) => Err(FailoverError::new(
            &host.id,
            step,
            Cause::Timeout { after: timeout },
        )),
    }
}

/// A host as the promoter found it.
struct Surveyed {
    host: Arc<Host>,
    conn: Conn,
    dialect: Dialect,
    read_only: bool,
    server_id: u32,
    replica: Option<ReplicaStatus>,
    /// Everything it applied.
    applied: String,
    epoch: Option<u64>,
}

impl Surveyed {
    /// How much it has: received (a replica), or applied (standalone).
    fn progress(&self) -> u64 {
        match &self.replica {
            Some(status) => gtid::progress(&status.received).max(gtid::progress(&self.applied)),
            None => gtid::progress(&self.applied),
        }
    }
}

async fn survey_one(
    host: Arc<Host>,
    timeout: Duration,
    epoch_query: Arc<str>,
) -> Result<Option<Surveyed>, FailoverError> {
    let mut conn = match connect(&host, timeout).await {
        Ok(conn) => conn,
        // Unreachable: not a candidate. Refused: everyone must know.
        Err(error) if matches!(error.cause, Cause::AccessDenied { .. }) => return Err(error),
        Err(_) => return Ok(None),
    };
    let dialect = Dialect::of(&conn);
    let replica = match tokio::time::timeout(timeout, monitor::replica_status(&mut conn)).await {
        Ok(Ok(status)) => status,
        // Gone meanwhile: not a candidate. Refused: everyone must know.
        Ok(Err(error)) if crate::error::is_connection_error(&error) => return Ok(None),
        Ok(Err(error)) => return Err(failed(&host, Step::Survey, &error)),
        Err(_) => return Ok(None),
    };
    let Some((read_only, server_id)) = value::<(i64, u32), _>(
        &host,
        &mut conn,
        Step::Survey,
        "SELECT @@global.read_only, @@server_id",
        (),
        timeout,
    )
    .await
    .ok()
    .flatten()
    .map(|(ro, id)| (ro != 0, id)) else {
        return Ok(None);
    };
    let applied: String = value(
        &host,
        &mut conn,
        Step::Survey,
        dialect.applied(),
        (),
        timeout,
    )
    .await?
    .unwrap_or_default();
    let epoch =
        match tokio::time::timeout(timeout, monitor::read_epoch(&mut conn, &epoch_query)).await {
            Ok(Ok(EpochRead::Known(epoch))) => Some(epoch.number),
            Ok(Ok(EpochRead::Absent)) => None,
            Ok(Ok(EpochRead::Hidden(Denied { code, needed }))) => {
                let user = host.admin_opts.user().unwrap_or_default().to_owned();
                return Err(FailoverError::new(
                    &host.id,
                    Step::Survey,
                    Cause::MissingPrivilege { user, needed, code },
                ));
            }
            Ok(Err(error)) => return Err(failed(&host, Step::Survey, &error)),
            Err(_) => return Ok(None),
        };
    Ok(Some(Surveyed {
        host,
        conn,
        dialect,
        read_only,
        server_id,
        replica,
        applied,
        epoch,
    }))
}

/// Every reachable host but `lost`, with an open failover connection.
async fn survey(shared: &Shared, lost: Option<usize>) -> Result<Vec<Surveyed>, FailoverError> {
    let mut tasks = tokio::task::JoinSet::new();
    for host in &shared.topology.hosts {
        if Some(host.index) == lost {
            continue;
        }
        tasks.spawn(survey_one(
            Arc::clone(host),
            shared.config.step_timeout,
            Arc::clone(&shared.epoch_query),
        ));
    }
    let mut found = Vec::new();
    let mut problem = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(Some(surveyed))) => found.push(surveyed),
            Ok(Err(error)) => problem = Some(error),
            _ => {}
        }
    }
    if let Some(error) = problem {
        return Err(error);
    }
    found.sort_by_key(|s| s.host.index);
    Ok(found)
}

/// Fails with [`Cause::LeaseLost`] unless the lease holds for one more step.
fn lease_held(shared: &Shared, host: &Host, step: Step) -> Result<(), FailoverError> {
    if shared.acts_freely() || shared.lease.borrow().holds_for(shared.config.step_timeout) {
        Ok(())
    } else {
        Err(FailoverError::new(&host.id, step, Cause::LeaseLost))
    }
}

/// The test hook: stop before `step` if asked to.
async fn checkpoint(shared: &Shared, step: Step) {
    #[cfg(feature = "sandbox")]
    if let Some((pause, reached)) = &shared.config.pause_before {
        if *pause == step {
            tracing::warn!(%step, "promotion paused by the test hook");
            reached.notify_one();
            std::future::pending::<()>().await;
        }
    }
    let _ = (shared, step);
}

/// Runs a step on the new primary: lease, hook, statement.
async fn step(
    shared: &Shared,
    chosen: &mut Surveyed,
    step: Step,
    sql: &str,
) -> Result<(), FailoverError> {
    lease_held(shared, &chosen.host, step)?;
    checkpoint(shared, step).await;
    exec(
        &chosen.host,
        &mut chosen.conn,
        step,
        sql,
        shared.config.step_timeout,
    )
    .await
}

/// Promotes the host that has the most, as `epoch`; see the module docs of
/// [`failover`](crate::failover) for the steps.
pub(crate) async fn promote(
    shared: Arc<Shared>,
    lost: Option<usize>,
    epoch: u64,
) -> Result<Promoted, FailoverError> {
    let lost_id = lost
        .and_then(|l| shared.topology.hosts.get(l))
        .map_or_else(|| "the cluster".to_owned(), |h| h.id.clone());
    checkpoint(&shared, Step::Survey).await;
    let mut surveyed = survey(&shared, lost).await?;
    // The newest epoch on the surveyed hosts: a writable host holding it is
    // the writer already (someone finished, or it came back).
    let newest = surveyed.iter().filter_map(|s| s.epoch).max();
    if let Some(writer) = surveyed
        .iter()
        .find(|s| !s.read_only && s.replica.is_none() && s.epoch == newest)
    {
        return Err(FailoverError::new(
            &writer.host.id,
            Step::Survey,
            Cause::WriterExists,
        ));
    }
    // A writable host with an older epoch is a former primary: neither a
    // candidate nor a replica to repoint; fencing takes care of it.
    surveyed.retain(|s| s.read_only || s.replica.is_some());
    let best = surveyed
        .iter()
        .enumerate()
        .max_by_key(|(_, s)| {
            (
                s.progress(),
                // Of two that received as much, the one that applied more
                // has less to drain.
                gtid::progress(&s.applied),
                s.replica.is_none(),
                s.epoch,
                std::cmp::Reverse(s.host.index),
            )
        })
        .map(|(i, _)| i);
    let Some(best) = best else {
        return Err(FailoverError::new(
            &lost_id,
            Step::Survey,
            Cause::NoCandidate,
        ));
    };
    let mut chosen = surveyed.swap_remove(best);
    let mut others = surveyed;
    tracing::warn!(host = %chosen.host.id, lost = %lost_id, epoch, "promoting");
    let dialect = chosen.dialect;
    let timeout = shared.config.step_timeout;

    // Drain: everything received is applied before replication is thrown
    // away.
    let mut lost_transactions = 0;
    if chosen.replica.is_some() {
        step(&shared, &mut chosen, Step::StopIoThread, dialect.stop_io()).await?;
        let received = match monitor::replica_status(&mut chosen.conn).await {
            Ok(status) => status.map(|s| s.received).unwrap_or_default(),
            Err(error) => return Err(failed(&chosen.host, Step::Drain, &error)),
        };
        let received = received.replace(char::is_whitespace, "");
        if !received.is_empty() {
            lease_held(&shared, &chosen.host, Step::Drain)?;
            checkpoint(&shared, Step::Drain).await;
            let drain = shared.config.drain_timeout;
            let drained: Option<Option<i64>> = value(
                &chosen.host,
                &mut chosen.conn,
                Step::Drain,
                dialect.wait_applied(),
                (received.clone(), drain.as_secs_f64()),
                drain + timeout,
            )
            .await?;
            if drained != Some(Some(0)) {
                let applied: String = value(
                    &chosen.host,
                    &mut chosen.conn,
                    Step::Drain,
                    dialect.applied(),
                    (),
                    timeout,
                )
                .await?
                .unwrap_or_default();
                let missing = gtid::missing(&received, &applied);
                if !shared.config.promote_after_drain_timeout {
                    // Leave it replicating as it was.
                    let _ = exec(
                        &chosen.host,
                        &mut chosen.conn,
                        Step::Drain,
                        dialect.start_io(),
                        timeout,
                    )
                    .await;
                    return Err(FailoverError::new(
                        &chosen.host.id,
                        Step::Drain,
                        Cause::DrainTimedOut {
                            received,
                            applied,
                            missing,
                        },
                    ));
                }
                lost_transactions = missing;
            }
        }
        step(&shared, &mut chosen, Step::StopReplication, dialect.stop()).await?;
        step(
            &shared,
            &mut chosen,
            Step::ResetReplication,
            dialect.reset_all(),
        )
        .await?;
    }

    // Semi-sync on the new primary only when a replica will acknowledge:
    // with none left, every commit would wait out the semi-sync timeout.
    // It comes on again when a fenced former primary rejoins as a replica.
    if shared.config.semi_sync && !others.is_empty() {
        for sql in dialect.semi_sync(true) {
            step(&shared, &mut chosen, Step::SemiSync, sql).await?;
        }
    }

    // Repoint the others first, so that the epoch write below has its
    // semi-sync acknowledgers.
    lease_held(&shared, &chosen.host, Step::Repoint)?;
    checkpoint(&shared, Step::Repoint).await;
    let (source_host, source_port) = chosen.host.replication_address.clone();
    let mut repointed = Vec::with_capacity(others.len());
    for mut other in others.drain(..) {
        let standalone = other.replica.is_none();
        let credentials = if standalone {
            shared.config.replication_credentials.as_ref()
        } else {
            None
        };
        let change =
            other
                .dialect
                .change_source(&source_host, source_port, credentials, standalone);
        let mut result = Ok(());
        for sql in [other.dialect.stop(), change.as_str(), other.dialect.start()] {
            result = exec(&other.host, &mut other.conn, Step::Repoint, sql, timeout).await;
            if result.is_err() {
                break;
            }
        }
        match result {
            Ok(()) => repointed.push(other),
            Err(error) => {
                tracing::error!(%error, "repointing a replica failed");
                shared.topology.record("repoint_failed", error.to_string());
            }
        }
    }

    // The epoch, on the new primary (the failover account writes through
    // read_only), then on a majority of the servers.
    for sql in dialect.admin_writes() {
        step(&shared, &mut chosen, Step::WriteEpoch, sql).await?;
    }
    for sql in sql::write_epoch(&shared.config.epoch_schema, epoch, chosen.server_id) {
        step(&shared, &mut chosen, Step::WriteEpoch, &sql).await?;
    }
    let epoch_gtid: String = value(
        &chosen.host,
        &mut chosen.conn,
        Step::WriteEpoch,
        dialect.last_gtid(),
        (),
        timeout,
    )
    .await?
    .unwrap_or_default();
    let needed = shared.topology.hosts.len() / 2 + 1;
    lease_held(&shared, &chosen.host, Step::ReplicateEpoch)?;
    checkpoint(&shared, Step::ReplicateEpoch).await;
    let mut holding = 1;
    if !epoch_gtid.is_empty() {
        let mut waits = tokio::task::JoinSet::new();
        for mut other in repointed {
            let gtid = epoch_gtid.clone();
            waits.spawn(async move {
                let waited: Option<Option<i64>> = value(
                    &other.host,
                    &mut other.conn,
                    Step::ReplicateEpoch,
                    other.dialect.wait_applied(),
                    (gtid, timeout.as_secs_f64()),
                    timeout + Duration::from_secs(1),
                )
                .await
                .ok()
                .flatten();
                let _ = other.conn.disconnect().await;
                waited == Some(Some(0))
            });
        }
        while let Some(joined) = waits.join_next().await {
            if matches!(joined, Ok(true)) {
                holding += 1;
            }
        }
    }
    if holding < needed {
        return Err(FailoverError::new(
            &chosen.host.id,
            Step::ReplicateEpoch,
            Cause::EpochNotReplicated { holding, needed },
        ));
    }
    for sql in dialect.writable() {
        step(&shared, &mut chosen, Step::SetWritable, sql).await?;
    }
    let _ = chosen.conn.disconnect().await;
    Ok(Promoted {
        host: chosen.host.index,
        epoch,
        server_id: chosen.server_id,
        lost_transactions,
    })
}

/// Makes `host` harmless: read-only first, then with `rejoin` a replica of
/// `writer`.
pub(crate) async fn fence(
    shared: Arc<Shared>,
    host: usize,
    writer: usize,
    rejoin: bool,
) -> Result<(), FailoverError> {
    let host = Arc::clone(&shared.topology.hosts[host]);
    let writer = Arc::clone(&shared.topology.hosts[writer]);
    lease_held(&shared, &host, Step::SetReadOnly)?;
    let timeout = shared.config.step_timeout;
    let mut conn = connect(&host, timeout).await?;
    let dialect = Dialect::of(&conn);
    // `SET GLOBAL read_only = 1` waits for commits in progress, and a
    // commit on a primary cut off from its replicas waits for a semi-sync
    // acknowledgement that cannot come. End the application's sessions
    // first: their commits are then never acknowledged to anyone.
    let sessions: Vec<u64> = match tokio::time::timeout(
        timeout,
        conn.exec(
            "SELECT id FROM information_schema.PROCESSLIST WHERE user = ? AND id <> CONNECTION_ID()",
            (host.app_user.as_str(),),
        ),
    )
    .await
    {
        Ok(Ok(ids)) => ids,
        Ok(Err(error)) => return Err(failed(&host, Step::SetReadOnly, &error)),
        Err(_) => {
            return Err(FailoverError::new(
                &host.id,
                Step::SetReadOnly,
                Cause::Timeout { after: timeout },
            ))
        }
    };
    for id in sessions {
        match tokio::time::timeout(timeout, conn.query_drop(format!("KILL CONNECTION {id}"))).await
        {
            // Gone meanwhile (1094: unknown thread): fine.
            Ok(Ok(())) | Ok(Err(mysql_async::Error::Server(_))) => {}
            Ok(Err(error)) => return Err(failed(&host, Step::SetReadOnly, &error)),
            Err(_) => {
                return Err(FailoverError::new(
                    &host.id,
                    Step::SetReadOnly,
                    Cause::Timeout { after: timeout },
                ))
            }
        }
    }
    for sql in dialect.read_only() {
        exec(&host, &mut conn, Step::SetReadOnly, sql, timeout).await?;
    }
    if shared.config.semi_sync {
        for sql in dialect.semi_sync(false) {
            exec(&host, &mut conn, Step::SemiSync, sql, timeout).await?;
        }
    }
    let credentials = shared.config.replication_credentials.as_ref();
    if let (true, Some(credentials)) = (rejoin, credentials) {
        let (source_host, source_port) = &writer.replication_address;
        // The former primary's own writes are in its binlog, not in
        // gtid_slave_pos: it resumes from its current position.
        let change = dialect.change_source(source_host, *source_port, Some(credentials), true);
        for sql in [dialect.stop(), change.as_str(), dialect.start()] {
            exec(&host, &mut conn, Step::Rejoin, sql, timeout).await?;
        }
    }
    let _ = conn.disconnect().await;
    if shared.config.semi_sync && rejoin {
        // The writer has an acknowledger again (best effort: a failure
        // leaves replication asynchronous, which is logged).
        let result = async {
            let mut conn = connect(&writer, timeout).await?;
            for sql in Dialect::of(&conn).semi_sync(true) {
                exec(&writer, &mut conn, Step::SemiSync, sql, timeout).await?;
            }
            let _ = conn.disconnect().await;
            Ok::<(), FailoverError>(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, "cannot turn semi-sync back on at the writer");
        }
    }
    Ok(())
}

/// What a diverged host holds that the writer lacks: the transactions, and
/// how they read.
pub(crate) async fn diverged(
    shared: Arc<Shared>,
    host: usize,
    writer: usize,
) -> Result<(u64, String), FailoverError> {
    let host = Arc::clone(&shared.topology.hosts[host]);
    let writer = Arc::clone(&shared.topology.hosts[writer]);
    let timeout = shared.config.step_timeout;
    let mut conn = connect(&host, timeout).await?;
    let dialect = Dialect::of(&conn);
    let host_state: String = value(
        &host,
        &mut conn,
        Step::CompareGtids,
        dialect.binlog_state(),
        (),
        timeout,
    )
    .await?
    .unwrap_or_default();
    let io_error = monitor::replica_status(&mut conn)
        .await
        .ok()
        .flatten()
        .map(|s| s.last_io_error)
        .unwrap_or_default();
    let _ = conn.disconnect().await;
    let mut conn = connect(&writer, timeout).await?;
    let writer_state: String = value(
        &writer,
        &mut conn,
        Step::CompareGtids,
        dialect.binlog_state(),
        (),
        timeout,
    )
    .await?
    .unwrap_or_default();
    let (count, list) = match dialect {
        Dialect::MariaDb => {
            let extra = gtid::beyond(&host_state, &writer_state);
            let list: Vec<String> = extra.iter().map(ToString::to_string).collect();
            (extra.iter().map(gtid::Extra::count).sum(), list.join(", "))
        }
        Dialect::MySql => {
            let set: String = value(
                &writer,
                &mut conn,
                Step::CompareGtids,
                "SELECT GTID_SUBTRACT(?, ?)",
                (host_state, writer_state),
                timeout,
            )
            .await?
            .unwrap_or_default();
            (gtid::progress(&set), set)
        }
    };
    let _ = conn.disconnect().await;
    Ok((
        count,
        format!(
            "{} holds {count} transaction(s) that the writer {} lacks ({list}); its replication \
             stopped: {io_error}. It stays read-only and takes no reads.",
            host.id, writer.id
        ),
    ))
}

/// Checks once, at start, that the failover account may read replication
/// status and the epoch table: a missing privilege shows now, not at the
/// first failover.
pub(crate) async fn preflight(shared: Arc<Shared>) -> Option<FailoverError> {
    let timeout = shared.config.step_timeout;
    for host in &shared.topology.hosts {
        let mut conn = match connect(host, timeout).await {
            Ok(conn) => conn,
            Err(error) if matches!(error.cause, Cause::AccessDenied { .. }) => return Some(error),
            Err(_) => continue,
        };
        let status = tokio::time::timeout(timeout, monitor::replica_status(&mut conn)).await;
        if let Ok(Err(error)) = status {
            return Some(failed(host, Step::Survey, &error));
        }
        let epoch =
            tokio::time::timeout(timeout, monitor::read_epoch(&mut conn, &shared.epoch_query))
                .await;
        if let Ok(Ok(EpochRead::Hidden(Denied { code, needed }))) = epoch {
            let user = host.admin_opts.user().unwrap_or_default().to_owned();
            return Some(FailoverError::new(
                &host.id,
                Step::WriteEpoch,
                Cause::MissingPrivilege { user, needed, code },
            ));
        }
        let _ = conn.disconnect().await;
        return None;
    }
    None
}

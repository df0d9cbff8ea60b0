//! [`RwPool`]: routing by statement, with consistency and read retry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use foobar_core::Shutdown;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::{
    needs_held_connection, run_on, PooledConn, ReadFallback, RwPoolBuilder, Session, Target,
    Transaction,
};
use crate::classify::{classify, Route};
use crate::consistency::{self, Consistency, WriteMark};
use crate::pool;
use crate::query::{Executor, Statement};
use crate::topology::{Host, Topology};
use crate::{Error, Result};

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) topology: Arc<Topology>,
    pub(super) consistency: Consistency,
    pub(super) read_fallback: ReadFallback,
    pub(super) no_writer_timeout: Duration,
    pub(super) max_lag: Duration,
    /// The pool's own one-shot writes, for read-your-writes across
    /// `RwPool::query` calls.
    pub(super) mark: WriteMark,
    pub(super) name: String,
    /// Stops the monitors and the control loop.
    pub(super) stop: Shutdown,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.trigger();
    }
}

/// A read/write-splitting pool over one primary and its replicas; queried
/// through [`Executor`], statement by statement.
///
/// Cheap to clone (an `Arc`).
#[derive(Clone, Debug)]
pub struct RwPool {
    pub(super) inner: Arc<Inner>,
}

impl Executor for &RwPool {
    async fn run<'q, S>(self, statement: S, timeout: Option<Duration>) -> Result<S::Output>
    where
        Self: 'q,
        S: Statement + 'q,
    {
        self.one_shot(&statement, timeout).await
    }
}

impl RwPool {
    /// A builder.
    pub fn builder() -> RwPoolBuilder {
        RwPoolBuilder::default()
    }

    /// The hosts and the current writer.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// The name the pool reports its status under.
    pub(crate) fn name(&self) -> &str {
        &self.inner.name
    }

    /// A connection to the primary, for anything. Its session state is
    /// reset when it goes back to the pool.
    pub async fn writer(&self) -> Result<PooledConn> {
        let mut conn = self.checkout(Target::Writer, None).await?;
        conn.conn.mark_state_changed();
        Ok(conn)
    }

    /// A connection to a replica (or the primary, under
    /// [`ReadFallback::Primary`], when none qualifies). Its session state is
    /// reset when it goes back to the pool.
    pub async fn reader(&self) -> Result<PooledConn> {
        let mut conn = self.checkout(Target::Reader, None).await?;
        conn.conn.mark_state_changed();
        Ok(conn)
    }

    /// A transaction on the primary.
    pub async fn transaction(&self) -> Result<Transaction> {
        let conn = self.checkout(Target::Writer, None).await?;
        Transaction::start(self.clone(), conn, "START TRANSACTION").await
    }

    /// A `READ ONLY` transaction, on a replica when one qualifies.
    pub async fn read_only_transaction(&self) -> Result<Transaction> {
        let conn = self.checkout(Target::Reader, None).await?;
        Transaction::start(self.clone(), conn, "START TRANSACTION READ ONLY").await
    }

    /// A logical session: statements keep session state and open
    /// transactions on one primary connection.
    pub fn session(&self) -> Session {
        Session::new(self.clone())
    }

    /// A reader connection that has applied `gtid`: the GTID of a write the
    /// caller made, possibly through another process (a web server hands it
    /// to the client in a header or cookie, and the client's next request
    /// brings it back). Waits up to the [`Consistency::Gtid`] timeout (1 s
    /// under other modes) on the chosen replica, then falls back to the
    /// writer. A malformed GTID also falls back to the writer: the answer is
    /// then fresh, never stale.
    ///
    /// # Errors
    /// As [`RwPool::reader`] and [`RwPool::writer`].
    pub async fn reader_after(&self, gtid: &str) -> Result<PooledConn> {
        let timeout = match self.inner.consistency {
            Consistency::Gtid { wait_timeout } => wait_timeout,
            _ => Duration::from_secs(1),
        };
        let mut conn = self.checkout(Target::Reader, None).await?;
        if self.is_writer(&conn) || self.replica_caught_up(&mut conn, gtid, timeout).await {
            return Ok(conn);
        }
        drop(conn);
        self.checkout(Target::Writer, None).await
    }

    async fn one_shot<S: Statement>(
        &self,
        statement: &S,
        timeout: Option<Duration>,
    ) -> Result<S::Output> {
        let plan = classify(statement.sql());
        if needs_held_connection(&plan) {
            // Session state on a one-shot call: run it on the primary and
            // let the reset on return clean up after it.
            let mut conn = self.checkout(Target::Writer, None).await?;
            conn.conn.mark_state_changed();
            return self
                .run_write(&mut conn, statement, &self.inner.mark, timeout)
                .await;
        }
        self.routed(statement, plan.route, &self.inner.mark, timeout)
            .await
    }

    /// Runs `statement` where `route` says, with consistency and read retry.
    pub(super) async fn routed<S: Statement>(
        &self,
        statement: &S,
        route: Route,
        mark: &WriteMark,
        timeout: Option<Duration>,
    ) -> Result<S::Output> {
        if route == Route::Primary {
            let mut conn = self.checkout(Target::Writer, None).await?;
            return self.run_write(&mut conn, statement, mark, timeout).await;
        }
        if let Consistency::PrimaryAfterWrite(window) = self.inner.consistency {
            if mark.wrote_within(window) {
                let mut conn = self.checkout(Target::Writer, None).await?;
                return run_on(&mut conn, statement, Target::Writer, timeout).await;
            }
        }
        let host = self.pick(Target::Reader, None).await?;
        match self.read_on(&host, statement, mark, timeout).await {
            Err(error) if !self.is_writer_host(&host) && error.is_connection_error() => {
                // The replica broke (or refused) before returning anything:
                // an autocommit read, safe to retry once elsewhere.
                host.metrics.retries.increment(1);
                tracing::debug!(host = %host.id, %error, "read failed on replica; retrying elsewhere");
                let again = self.pick(Target::Reader, Some(host.index)).await?;
                self.read_on(&again, statement, mark, timeout).await
            }
            result => result,
        }
    }

    /// A read on `host`, waiting for the session's last write there first
    /// under GTID consistency.
    async fn read_on<S: Statement>(
        &self,
        host: &Arc<Host>,
        statement: &S,
        mark: &WriteMark,
        timeout: Option<Duration>,
    ) -> Result<S::Output> {
        let mut conn = self.connect(host).await?;
        let on_writer = self.is_writer_host(host);
        if let (Consistency::Gtid { wait_timeout }, false) = (self.inner.consistency, on_writer) {
            if let Some(gtid) = mark.gtid() {
                if !self.replica_caught_up(&mut conn, &gtid, wait_timeout).await {
                    drop(conn);
                    let mut primary = self.checkout(Target::Writer, None).await?;
                    return run_on(&mut primary, statement, Target::Writer, timeout).await;
                }
            }
        }
        let role = if on_writer {
            Target::Writer
        } else {
            Target::Reader
        };
        run_on(&mut conn, statement, role, timeout).await
    }

    fn is_writer_host(&self, host: &Host) -> bool {
        self.inner.topology.writer_index() == Some(host.index)
    }

    pub(super) fn is_writer(&self, conn: &PooledConn) -> bool {
        self.is_writer_host(&conn.host)
    }

    pub(super) async fn run_write<S: Statement>(
        &self,
        conn: &mut PooledConn,
        statement: &S,
        mark: &WriteMark,
        timeout: Option<Duration>,
    ) -> Result<S::Output> {
        let output = run_on(conn, statement, Target::Writer, timeout).await?;
        self.wrote(conn, mark).await;
        Ok(output)
    }

    /// Records a write for read-your-writes.
    pub(super) async fn wrote(&self, conn: &mut PooledConn, mark: &WriteMark) {
        match self.inner.consistency {
            Consistency::Eventual => {}
            Consistency::PrimaryAfterWrite(_) => mark.wrote(None),
            Consistency::Gtid { .. } => {
                let query = consistency::last_gtid_query(conn.server_version());
                // Bookkeeping, not the caller's query: on the raw connection.
                let raw: &mut Conn = conn;
                let gtid: Option<String> = raw.query_first(query).await.ok().flatten();
                mark.wrote(gtid);
            }
        }
    }

    /// Waits on a replica for a GTID; false if it did not catch up in time.
    async fn replica_caught_up(
        &self,
        conn: &mut PooledConn,
        gtid: &str,
        timeout: Duration,
    ) -> bool {
        let query = consistency::wait_query(conn.server_version());
        let raw: &mut Conn = conn;
        let waited: std::result::Result<Option<Option<i64>>, _> =
            raw.exec_first(query, (gtid, timeout.as_secs_f64())).await;
        matches!(waited, Ok(Some(Some(0))))
    }

    /// A connection to the writer, or to a qualifying replica.
    pub(super) async fn checkout(
        &self,
        target: Target,
        exclude: Option<usize>,
    ) -> Result<PooledConn> {
        let host = self.pick(target, exclude).await?;
        match self.connect(&host).await {
            // No connection to the writer could be made, so nothing was
            // sent: the writer may be dying. Wait for the monitor to settle
            // on another writer, then try once more.
            Err(error)
                if target == Target::Writer
                    && error.is_connection_error()
                    && self.is_writer_host(&host) =>
            {
                let topology = &self.inner.topology;
                if !topology
                    .wait_change(Some(host.index), self.inner.no_writer_timeout)
                    .await
                {
                    return Err(error);
                }
                tracing::debug!(host = %host.id, %error, "writer unreachable; retrying on the new writer");
                let host = self.pick(Target::Writer, None).await?;
                self.connect(&host).await
            }
            result => result,
        }
    }

    /// The writer, or a qualifying replica (`exclude` skipped).
    async fn pick(&self, target: Target, exclude: Option<usize>) -> Result<Arc<Host>> {
        match target {
            Target::Writer => self.writer_host().await,
            Target::Reader => match self.inner.topology.pick_reader(self.inner.max_lag, exclude) {
                Some(host) => Ok(Arc::clone(host)),
                None => match self.inner.read_fallback {
                    ReadFallback::Primary => self.writer_host().await,
                    ReadFallback::Fail => Err(Error::NoReader),
                },
            },
        }
    }

    /// A pooled connection to `host`.
    async fn connect(&self, host: &Arc<Host>) -> Result<PooledConn> {
        let conn = host
            .pool
            .get()
            .await
            .map_err(|e| pool::map_error(&host.id, &host.app_user, e))?;
        Ok(PooledConn::new(conn, Arc::clone(host)))
    }

    /// The writer; while there is none, waits for one, unless the reason
    /// will not go away by waiting.
    async fn writer_host(&self) -> Result<Arc<Host>> {
        let topology = &self.inner.topology;
        if let Some(host) = topology.writer_host() {
            return Ok(Arc::clone(host));
        }
        let state = topology.writer_state();
        if let Some(host) = state.writer.and_then(|w| topology.hosts.get(w)) {
            return Ok(Arc::clone(host));
        }
        if state.unavailable.is_permanent() {
            return Err(state.unavailable.into_error(Duration::ZERO));
        }
        let started = Instant::now();
        let state = topology.wait_writer(self.inner.no_writer_timeout).await;
        match state.writer.and_then(|w| topology.hosts.get(w)) {
            Some(host) => Ok(Arc::clone(host)),
            None => Err(state.unavailable.into_error(started.elapsed())),
        }
    }
}

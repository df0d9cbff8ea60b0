//! The read/write-splitting pool: [`RwPool`], [`Session`], [`Transaction`].
//!
//! Routing is explicit ([`RwPool::writer`], [`RwPool::reader`],
//! [`RwPool::transaction`], [`RwPool::read_only_transaction`]) or automatic
//! (`query`/`exec`): each statement is classified by
//! [`classify`] and sent
//!
//! - to a replica for a plain read (healthy, lag within the limit, weighted
//!   round robin; if none qualifies, to the primary or an error, see
//!   [`ReadFallback`]), subject to [`Consistency`];
//! - to the primary for everything else. While no primary is known, a write
//!   waits up to [`RwPoolBuilder::no_writer_timeout`] for one, then fails
//!   with [`Error::NoWriter`]. It is never sent to a replica.
//!
//! A [`Session`] is one logical connection: once a statement changes
//! session state (`SET`, temporary tables, user variables, `LOCK TABLES`) or
//! opens a transaction, the session keeps that primary connection until the
//! session ends (state) or the transaction ends, so nothing the caller set
//! is lost on another connection.
//!
//! A read that fails on a replica because the connection broke (the replica
//! died) before any row was returned is retried once on another host: it is
//! an autocommit read, so running it twice is harmless.

use std::future::Future;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foobar_core::status::{Snapshot, StatusSource};
use foobar_core::Shutdown;
use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::{Conn, DriverError, Opts, OptsBuilder, Params, Row};

use crate::classify::{classify, Classification, Route};
use crate::consistency::{self, Consistency, WriteMark};
use crate::failover::{Control, FailoverConfig};
use crate::monitor::{self, MonitorConfig};
use crate::pool::DbTls;
use crate::pool::{self, Manager, Object, PoolConfig};
use crate::status::DbRole;
use crate::topology::{Host, HostConfig, RoleHint, Topology};
use crate::{Error, Result};

/// Where reads go when no replica qualifies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadFallback {
    /// To the primary (default).
    #[default]
    Primary,
    /// Nowhere: the read fails with [`Error::NoReader`].
    Fail,
}

/// Configures and starts an [`RwPool`].
#[derive(Debug)]
#[must_use]
pub struct RwPoolBuilder {
    hosts: Vec<HostConfig>,
    monitor_credentials: Option<(String, String)>,
    failover_credentials: Option<(String, String)>,
    pool: PoolConfig,
    monitor: MonitorConfig,
    failover: FailoverConfig,
    consistency: Consistency,
    read_fallback: ReadFallback,
    no_writer_timeout: Duration,
    tls: Option<DbTls>,
    name: String,
}

impl Default for RwPoolBuilder {
    fn default() -> Self {
        Self {
            hosts: Vec::new(),
            monitor_credentials: None,
            failover_credentials: None,
            pool: PoolConfig::default(),
            monitor: MonitorConfig::default(),
            failover: FailoverConfig::default(),
            consistency: Consistency::Eventual,
            read_fallback: ReadFallback::Primary,
            no_writer_timeout: Duration::from_secs(2),
            tls: None,
            name: "db".to_owned(),
        }
    }
}

impl RwPoolBuilder {
    /// Adds a host expected to be the primary.
    pub fn primary(self, url: impl Into<String>) -> Self {
        self.host(HostConfig::new(url, RoleHint::Primary))
    }

    /// Adds a host expected to be a replica.
    pub fn replica(self, url: impl Into<String>) -> Self {
        self.host(HostConfig::new(url, RoleHint::Replica))
    }

    /// Adds a host.
    pub fn host(mut self, host: HostConfig) -> Self {
        self.hosts.push(host);
        self
    }

    /// The account the monitor connects with (needs `SLAVE MONITOR` on
    /// MariaDB, `REPLICATION CLIENT` on MySQL). Default: the URL's account.
    pub fn monitor_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.monitor_credentials = Some((user.into(), password.into()));
        self
    }

    /// The account promotion and fencing use (`READ_ONLY ADMIN`,
    /// `REPLICATION SLAVE ADMIN`, `BINLOG ADMIN`, `RELOAD`, and `SUPER` or
    /// `REPLICATION MASTER ADMIN` for semi-sync). Default: the monitor's.
    pub fn failover_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.failover_credentials = Some((user.into(), password.into()));
        self
    }

    /// Per-host pool sizes and timeouts.
    pub fn pool_config(mut self, config: PoolConfig) -> Self {
        self.pool = config;
        self
    }

    /// Monitoring intervals, timeouts and thresholds.
    pub fn monitor_config(mut self, config: MonitorConfig) -> Self {
        self.monitor = config;
        self
    }

    /// What happens when the primary is lost.
    pub fn failover(mut self, config: FailoverConfig) -> Self {
        self.failover = config;
        self
    }

    /// The read-after-write guarantee (default eventual).
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// Replicas lagging more than this take no reads (default 10 s).
    pub fn max_replica_lag(mut self, lag: Duration) -> Self {
        self.monitor.max_lag = lag;
        self
    }

    /// Where reads go when no replica qualifies (default the primary).
    pub fn read_fallback(mut self, fallback: ReadFallback) -> Self {
        self.read_fallback = fallback;
        self
    }

    /// How long a write waits for a primary when none is known (default 2 s).
    pub fn no_writer_timeout(mut self, timeout: Duration) -> Self {
        self.no_writer_timeout = timeout;
        self
    }

    /// TLS to every host: verified server certificate, optional client
    /// certificate.
    pub fn tls(mut self, tls: DbTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The name under which the pool reports its status (default `"db"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Checks every host once, decides the writer, and starts the monitor
    /// tasks (they stop when `shutdown` fires). Succeeds even if hosts are
    /// down: writes then wait for a writer, reads fall back.
    pub async fn build(self, shutdown: &Shutdown) -> Result<RwPool> {
        crate::metric_help::describe();
        if self.hosts.is_empty() {
            return Err(Error::Config("no database hosts".into()));
        }
        if self.pool.max_size == 0 {
            return Err(Error::Config("pool max_size must be at least 1".into()));
        }
        let ssl = match &self.tls {
            Some(tls) => Some(tls.ssl_opts()?),
            None => None,
        };
        let mut hosts = Vec::with_capacity(self.hosts.len());
        for (index, config) in self.hosts.iter().enumerate() {
            let opts = Opts::from_url(&config.url).map_err(|source| Error::Url {
                url: crate::error::redact_url(&config.url),
                source,
            })?;
            let mut app = OptsBuilder::from_opts(opts);
            if let Some(ssl) = &ssl {
                app = app.ssl_opts(ssl.clone());
            }
            let app: Opts = app.into();
            let id = format!("{}:{}", app.ip_or_hostname(), app.tcp_port());
            let with_account = |account: &Option<(String, String)>| -> Opts {
                let builder = OptsBuilder::from_opts(app.clone()).db_name(None::<String>);
                match account {
                    Some((user, password)) => builder.user(Some(user)).pass(Some(password)).into(),
                    None => builder.into(),
                }
            };
            let monitor_opts = with_account(&self.monitor_credentials);
            let admin_opts = with_account(if self.failover_credentials.is_some() {
                &self.failover_credentials
            } else {
                &self.monitor_credentials
            });
            let manager = Manager::new(app, self.pool.reset, self.pool.ping_idle_after);
            let pool = pool::build(manager, &self.pool)?;
            hosts.push(Arc::new(Host::new(
                index,
                id,
                config,
                pool,
                monitor_opts,
                admin_opts,
            )));
        }
        let topology = Arc::new(Topology::new(hosts));
        let control = Arc::new(Control::new(
            Arc::clone(&topology),
            self.monitor.clone(),
            self.failover.clone(),
            shutdown.clone(),
        ));
        // Stops the monitors on the shared signal, or when the last clone
        // of the pool is dropped.
        let stop = shutdown.child();

        // First round, all hosts at once, so the pool starts knowing its writer.
        let mut first = tokio::task::JoinSet::new();
        for host in &topology.hosts {
            let host = Arc::clone(host);
            let timeout = self.monitor.check_timeout.max(Duration::from_secs(1));
            first.spawn(async move {
                let mut conn = None;
                let result = monitor::check(&host, &mut conn, timeout).await;
                (host, result, conn)
            });
        }
        let mut results = Vec::with_capacity(topology.hosts.len());
        let mut conns = Vec::with_capacity(topology.hosts.len());
        while let Some(joined) = first.join_next().await {
            if let Ok((host, result, conn)) = joined {
                conns.push((host.index, conn));
                results.push((host, result));
            }
        }
        results.sort_by_key(|(host, _)| host.index);
        control.initial(&results).await;
        for host in &topology.hosts {
            let conn = conns
                .iter_mut()
                .find(|(index, _)| *index == host.index)
                .and_then(|(_, conn)| conn.take());
            tokio::spawn(monitor::run(
                Arc::clone(&control),
                Arc::clone(host),
                conn,
                stop.clone(),
            ));
        }
        for host in &topology.hosts {
            tracing::info!(host = %host.id, role = ?host.role(), health = ?host.health(), "database host");
        }

        Ok(RwPool {
            inner: Arc::new(Inner {
                topology,
                consistency: self.consistency,
                read_fallback: self.read_fallback,
                no_writer_timeout: self.no_writer_timeout,
                max_lag: self.monitor.max_lag,
                mark: WriteMark::default(),
                name: self.name,
                stop,
                _control: control,
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    topology: Arc<Topology>,
    consistency: Consistency,
    read_fallback: ReadFallback,
    no_writer_timeout: Duration,
    max_lag: Duration,
    /// The pool's own one-shot writes, for read-your-writes across
    /// `RwPool::query` calls.
    mark: WriteMark,
    name: String,
    stop: Shutdown,
    _control: Arc<Control>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.trigger();
    }
}

/// A read/write-splitting pool over one primary and its replicas.
///
/// Cheap to clone (an `Arc`).
#[derive(Clone, Debug)]
pub struct RwPool {
    inner: Arc<Inner>,
}

/// A connection checked out of one host's pool; returns to it when dropped.
/// Dereferences to [`mysql_async::Conn`].
#[derive(Debug)]
pub struct PooledConn {
    conn: Object,
    host: Arc<Host>,
}

impl PooledConn {
    /// The host's `host:port`.
    pub fn host(&self) -> &str {
        &self.host.id
    }

    /// The host's role as last seen, for the query metrics.
    fn target(&self) -> Target {
        if self.host.role() == DbRole::Primary {
            Target::Writer
        } else {
            Target::Reader
        }
    }

    // The statement methods below shadow `Queryable`'s (reached through
    // `Deref`) so that queries on explicit connections count in the
    // per-host metrics and the status snapshot like routed ones.

    /// Runs a text query and collects the rows.
    pub async fn query<T>(&mut self, sql: &str) -> Result<Vec<T>>
    where
        T: FromRow + Send + 'static,
    {
        let role = self.target();
        run_on(self, &QueryAll::<T>::new(sql), role).await
    }

    /// Runs a text query; the first row.
    pub async fn query_first<T>(&mut self, sql: &str) -> Result<Option<T>>
    where
        T: FromRow + Send + 'static,
    {
        let role = self.target();
        run_on(self, &QueryFirst::<T>::new(sql), role).await
    }

    /// Runs a text query; drops the result.
    pub async fn query_drop(&mut self, sql: &str) -> Result<()> {
        let role = self.target();
        run_on(self, &QueryDrop(sql), role).await
    }

    /// Runs a prepared statement and collects the rows.
    pub async fn exec<T, P>(&mut self, sql: &str, params: P) -> Result<Vec<T>>
    where
        T: FromRow + Send + 'static,
        P: Into<Params>,
    {
        let role = self.target();
        run_on(self, &ExecAll::<T>::new(sql, params.into()), role).await
    }

    /// Runs a prepared statement; the first row.
    pub async fn exec_first<T, P>(&mut self, sql: &str, params: P) -> Result<Option<T>>
    where
        T: FromRow + Send + 'static,
        P: Into<Params>,
    {
        let role = self.target();
        run_on(self, &ExecFirst::<T>::new(sql, params.into()), role).await
    }

    /// Runs a prepared statement; drops the result.
    pub async fn exec_drop<P>(&mut self, sql: &str, params: P) -> Result<()>
    where
        P: Into<Params>,
    {
        let role = self.target();
        run_on(self, &ExecDrop(sql, params.into()), role).await
    }
}

impl Deref for PooledConn {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

/// Which way a statement goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Writer,
    Reader,
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
        Session {
            pool: self.clone(),
            held: None,
            mark: WriteMark::default(),
        }
    }

    /// Runs a text query, routed by its statement, and collects the rows.
    pub async fn query<T>(&self, sql: &str) -> Result<Vec<T>>
    where
        T: FromRow + Send + 'static,
    {
        self.one_shot(&QueryAll::<T>::new(sql)).await
    }

    /// Runs a text query, routed by its statement; the first row.
    pub async fn query_first<T>(&self, sql: &str) -> Result<Option<T>>
    where
        T: FromRow + Send + 'static,
    {
        self.one_shot(&QueryFirst::<T>::new(sql)).await
    }

    /// Runs a text query, routed by its statement; drops the result.
    pub async fn query_drop(&self, sql: &str) -> Result<()> {
        self.one_shot(&QueryDrop(sql)).await
    }

    /// Runs a prepared statement, routed by its statement, and collects the
    /// rows.
    pub async fn exec<T, P>(&self, sql: &str, params: P) -> Result<Vec<T>>
    where
        T: FromRow + Send + 'static,
        P: Into<Params>,
    {
        self.one_shot(&ExecAll::<T>::new(sql, params.into())).await
    }

    /// Runs a prepared statement, routed by its statement; the first row.
    pub async fn exec_first<T, P>(&self, sql: &str, params: P) -> Result<Option<T>>
    where
        T: FromRow + Send + 'static,
        P: Into<Params>,
    {
        self.one_shot(&ExecFirst::<T>::new(sql, params.into()))
            .await
    }

    /// Runs a prepared statement, routed by its statement; drops the result.
    pub async fn exec_drop<P>(&self, sql: &str, params: P) -> Result<()>
    where
        P: Into<Params>,
    {
        self.one_shot(&ExecDrop(sql, params.into())).await
    }

    async fn one_shot<O: Operation>(&self, op: &O) -> Result<O::Output> {
        let plan = classify(op.sql());
        if needs_held_connection(&plan) {
            // Session state on a one-shot call: run it on the primary and
            // let the reset on return clean up after it.
            let mut conn = self.checkout(Target::Writer, None).await?;
            conn.conn.mark_state_changed();
            return self.run_write(&mut conn, op, &self.inner.mark).await;
        }
        self.routed(op, plan.route, &self.inner.mark).await
    }

    /// Runs `op` where `route` says, with consistency and read retry.
    async fn routed<O: Operation>(
        &self,
        op: &O,
        route: Route,
        mark: &WriteMark,
    ) -> Result<O::Output> {
        if route == Route::Primary {
            let mut conn = self.checkout(Target::Writer, None).await?;
            return self.run_write(&mut conn, op, mark).await;
        }
        if let Consistency::PrimaryAfterWrite(window) = self.inner.consistency {
            if mark.wrote_within(window) {
                let mut conn = self.checkout(Target::Writer, None).await?;
                return run_on(&mut conn, op, Target::Writer).await;
            }
        }
        let host = self.pick(Target::Reader, None).await?;
        match self.read_on(&host, op, mark).await {
            Err(error) if !self.is_writer_host(&host) && error.is_connection_error() => {
                // The replica broke (or refused) before returning anything:
                // an autocommit read, safe to retry once elsewhere.
                host.metrics.retries.increment(1);
                tracing::debug!(host = %host.id, %error, "read failed on replica; retrying elsewhere");
                let again = self.pick(Target::Reader, Some(host.index)).await?;
                self.read_on(&again, op, mark).await
            }
            result => result,
        }
    }

    /// A read on `host`, waiting for the session's last write there first
    /// under GTID consistency.
    async fn read_on<O: Operation>(
        &self,
        host: &Arc<Host>,
        op: &O,
        mark: &WriteMark,
    ) -> Result<O::Output> {
        let mut conn = self.connect(host).await?;
        let on_writer = self.is_writer_host(host);
        if let (Consistency::Gtid { wait_timeout }, false) = (self.inner.consistency, on_writer) {
            if let Some(gtid) = mark.gtid() {
                if !self.replica_caught_up(&mut conn, &gtid, wait_timeout).await {
                    drop(conn);
                    let mut primary = self.checkout(Target::Writer, None).await?;
                    return run_on(&mut primary, op, Target::Writer).await;
                }
            }
        }
        let role = if on_writer {
            Target::Writer
        } else {
            Target::Reader
        };
        run_on(&mut conn, op, role).await
    }

    fn is_writer_host(&self, host: &Host) -> bool {
        self.inner.topology.writer_index() == Some(host.index)
    }

    fn is_writer(&self, conn: &PooledConn) -> bool {
        self.inner.topology.writer_index() == Some(conn.host.index)
    }

    async fn run_write<O: Operation>(
        &self,
        conn: &mut PooledConn,
        op: &O,
        mark: &WriteMark,
    ) -> Result<O::Output> {
        let output = run_on(conn, op, Target::Writer).await?;
        self.wrote(conn, mark).await;
        Ok(output)
    }

    /// Records a write for read-your-writes.
    async fn wrote(&self, conn: &mut PooledConn, mark: &WriteMark) {
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
    async fn checkout(&self, target: Target, exclude: Option<usize>) -> Result<PooledConn> {
        let epoch = self.inner.topology.epoch();
        let host = self.pick(target, exclude).await?;
        match self.connect(&host).await {
            // No connection to the writer could be made, so nothing was
            // sent: the writer may be dying. Wait for the monitor to settle
            // on a writer, then try once more.
            Err(error @ Error::Mysql { .. })
                if target == Target::Writer
                    && error.is_connection_error()
                    && self.is_writer_host(&host) =>
            {
                let topology = &self.inner.topology;
                if !topology
                    .wait_change(epoch, self.inner.no_writer_timeout)
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
            .map_err(|e| pool::map_error(&host.id, e))?;
        Ok(PooledConn {
            conn,
            host: Arc::clone(host),
        })
    }

    async fn writer_host(&self) -> Result<Arc<Host>> {
        let topology = &self.inner.topology;
        if let Some(host) = topology.writer_host() {
            return Ok(Arc::clone(host));
        }
        let started = Instant::now();
        match topology.wait_writer(self.inner.no_writer_timeout).await {
            Some(host) => Ok(Arc::clone(host)),
            None => Err(Error::NoWriter {
                waited: started.elapsed(),
            }),
        }
    }
}

impl StatusSource for RwPool {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn snapshot(&self) -> Snapshot {
        crate::status::snapshot(&self.inner.topology)
    }

    fn ready(&self) -> bool {
        self.inner.topology.writer_index().is_some()
    }
}

/// Whether a statement must keep its connection beyond itself.
fn needs_held_connection(plan: &Classification) -> bool {
    plan.pins_session || plan.starts_transaction || plan.sets_next_transaction
}

/// Runs an operation on a connection, with metrics.
async fn run_on<O: Operation>(conn: &mut PooledConn, op: &O, role: Target) -> Result<O::Output> {
    let PooledConn { conn, host } = conn;
    let started = Instant::now();
    let result = op.run(conn).await;
    let elapsed = started.elapsed().as_secs_f64();
    host.queries
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match role {
        Target::Writer => {
            host.metrics.writer_queries.increment(1);
            host.metrics.writer_latency.record(elapsed);
        }
        Target::Reader => {
            host.metrics.reader_queries.increment(1);
            host.metrics.reader_latency.record(elapsed);
        }
    }
    result.map_err(|e| {
        host.metrics.errors.increment(1);
        Error::mysql(&host.id, e)
    })
}

/// One logical connection: routed statements, with session state and open
/// transactions kept on one primary connection.
///
/// A `SET`, a temporary table, a user variable, `LOCK TABLES` (anything the
/// classifier says pins the session) pins the session to the primary
/// connection it ran on until the session is dropped. `BEGIN`/`START
/// TRANSACTION` keep the connection until `COMMIT`/`ROLLBACK`. The held
/// connection's state is reset when it goes back to the pool.
#[derive(Debug)]
pub struct Session {
    pool: RwPool,
    held: Option<Held>,
    mark: WriteMark,
}

#[derive(Debug)]
struct Held {
    conn: PooledConn,
    /// Session state lives on this connection: keep it to the end.
    pinned: bool,
    /// A transaction is open (or `SET TRANSACTION` awaits one).
    in_transaction: bool,
}

impl Session {
    /// Whether the session is pinned to a primary connection.
    pub fn is_pinned(&self) -> bool {
        self.held.as_ref().is_some_and(|held| held.pinned)
    }

    /// The host of the connection the session holds, if any.
    pub fn held_host(&self) -> Option<&str> {
        self.held.as_ref().map(|held| held.conn.host())
    }

    /// Runs a text query and collects the rows.
    pub async fn query<T>(&mut self, sql: &str) -> Result<Vec<T>>
    where
        T: FromRow + Send + 'static,
    {
        self.run(&QueryAll::<T>::new(sql)).await
    }

    /// Runs a text query; the first row.
    pub async fn query_first<T>(&mut self, sql: &str) -> Result<Option<T>>
    where
        T: FromRow + Send + 'static,
    {
        self.run(&QueryFirst::<T>::new(sql)).await
    }

    /// Runs a text query; drops the result.
    pub async fn query_drop(&mut self, sql: &str) -> Result<()> {
        self.run(&QueryDrop(sql)).await
    }

    /// Runs a prepared statement and collects the rows.
    pub async fn exec<T, P>(&mut self, sql: &str, params: P) -> Result<Vec<T>>
    where
        T: FromRow + Send + 'static,
        P: Into<Params>,
    {
        self.run(&ExecAll::<T>::new(sql, params.into())).await
    }

    /// Runs a prepared statement; the first row.
    pub async fn exec_first<T, P>(&mut self, sql: &str, params: P) -> Result<Option<T>>
    where
        T: FromRow + Send + 'static,
        P: Into<Params>,
    {
        self.run(&ExecFirst::<T>::new(sql, params.into())).await
    }

    /// Runs a prepared statement; drops the result.
    pub async fn exec_drop<P>(&mut self, sql: &str, params: P) -> Result<()>
    where
        P: Into<Params>,
    {
        self.run(&ExecDrop(sql, params.into())).await
    }

    async fn run<O: Operation>(&mut self, op: &O) -> Result<O::Output> {
        let plan = classify(op.sql());
        if self.held.is_none() && needs_held_connection(&plan) {
            let read_only =
                plan.starts_transaction && plan.read_only_transaction && !plan.pins_session;
            let target = if read_only {
                Target::Reader
            } else {
                Target::Writer
            };
            let mut conn = self.pool.checkout(target, None).await?;
            conn.conn.mark_state_changed();
            self.held = Some(Held {
                conn,
                pinned: false,
                in_transaction: false,
            });
        }
        let Some(held) = self.held.as_mut() else {
            return self.pool.routed(op, plan.route, &self.mark).await;
        };
        let on_writer = self.pool.is_writer(&held.conn);
        let role = if on_writer {
            Target::Writer
        } else {
            Target::Reader
        };
        let result = run_on(&mut held.conn, op, role).await;
        if plan.pins_session {
            held.pinned = true;
        }
        if plan.ends_transaction {
            held.in_transaction = false;
        }
        if plan.starts_transaction || plan.sets_next_transaction {
            held.in_transaction = true;
        }
        if plan.autocommit == Some(false) {
            held.pinned = true;
        }
        let output = result?;
        let wrote = on_writer && (plan.route == Route::Primary) && !held.in_transaction;
        if wrote {
            self.pool.wrote(&mut held.conn, &self.mark).await;
        }
        if let Some(held) = &self.held {
            if !held.pinned && !held.in_transaction {
                self.held = None;
            }
        }
        Ok(output)
    }
}

/// A transaction on one connection: the primary, or a replica for
/// [`RwPool::read_only_transaction`]. Dropped without [`commit`](Self::commit)
/// it is rolled back (the connection is reset before reuse).
#[derive(Debug)]
pub struct Transaction {
    pool: RwPool,
    conn: PooledConn,
    role: Target,
}

impl Transaction {
    async fn start(pool: RwPool, mut conn: PooledConn, statement: &str) -> Result<Self> {
        let role = if pool.is_writer(&conn) {
            Target::Writer
        } else {
            Target::Reader
        };
        // Until COMMIT, a drop must roll back: the reset on reuse does.
        conn.conn.mark_state_changed();
        run_on(&mut conn, &QueryDrop(statement), role).await?;
        Ok(Self { pool, conn, role })
    }

    /// The host the transaction runs on.
    pub fn host(&self) -> &str {
        self.conn.host()
    }

    /// The underlying connection, for anything the methods here lack.
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Runs a text query and collects the rows.
    pub async fn query<T>(&mut self, sql: &str) -> Result<Vec<T>>
    where
        T: FromRow + Send + 'static,
    {
        run_on(&mut self.conn, &QueryAll::<T>::new(sql), self.role).await
    }

    /// Runs a text query; the first row.
    pub async fn query_first<T>(&mut self, sql: &str) -> Result<Option<T>>
    where
        T: FromRow + Send + 'static,
    {
        run_on(&mut self.conn, &QueryFirst::<T>::new(sql), self.role).await
    }

    /// Runs a text query; drops the result.
    pub async fn query_drop(&mut self, sql: &str) -> Result<()> {
        run_on(&mut self.conn, &QueryDrop(sql), self.role).await
    }

    /// Runs a prepared statement and collects the rows.
    pub async fn exec<T, P>(&mut self, sql: &str, params: P) -> Result<Vec<T>>
    where
        T: FromRow + Send + 'static,
        P: Into<Params>,
    {
        run_on(
            &mut self.conn,
            &ExecAll::<T>::new(sql, params.into()),
            self.role,
        )
        .await
    }

    /// Runs a prepared statement; drops the result.
    pub async fn exec_drop<P>(&mut self, sql: &str, params: P) -> Result<()>
    where
        P: Into<Params>,
    {
        run_on(&mut self.conn, &ExecDrop(sql, params.into()), self.role).await
    }

    /// Commits.
    pub async fn commit(mut self) -> Result<()> {
        run_on(&mut self.conn, &QueryDrop("COMMIT"), self.role).await?;
        if self.role == Target::Writer {
            let pool = self.pool.clone();
            pool.wrote(&mut self.conn, &pool.inner.mark).await;
        }
        Ok(())
    }

    /// Rolls back.
    pub async fn rollback(mut self) -> Result<()> {
        run_on(&mut self.conn, &QueryDrop("ROLLBACK"), self.role).await
    }
}

/// A row as `T`; a mismatch is an error (`DriverError::FromRow`), never a
/// panic.
fn convert<T: FromRow>(row: Row) -> std::result::Result<T, mysql_async::Error> {
    T::from_row_opt(row).map_err(|e| mysql_async::Error::Driver(DriverError::FromRow { row: e.0 }))
}

fn convert_all<T: FromRow>(rows: Vec<Row>) -> std::result::Result<Vec<T>, mysql_async::Error> {
    rows.into_iter().map(convert).collect()
}

/// One statement execution, generic over what it returns.
trait Operation: Sync {
    type Output: Send;
    fn sql(&self) -> &str;
    fn run<'a>(
        &'a self,
        conn: &'a mut Conn,
    ) -> impl Future<Output = std::result::Result<Self::Output, mysql_async::Error>> + Send + 'a;
}

struct QueryAll<'q, T>(&'q str, PhantomData<fn() -> T>);
impl<'q, T> QueryAll<'q, T> {
    fn new(sql: &'q str) -> Self {
        Self(sql, PhantomData)
    }
}
impl<T: FromRow + Send + 'static> Operation for QueryAll<'_, T> {
    type Output = Vec<T>;
    fn sql(&self) -> &str {
        self.0
    }
    async fn run(&self, conn: &mut Conn) -> std::result::Result<Vec<T>, mysql_async::Error> {
        convert_all(conn.query::<Row, _>(self.0).await?)
    }
}

struct QueryFirst<'q, T>(&'q str, PhantomData<fn() -> T>);
impl<'q, T> QueryFirst<'q, T> {
    fn new(sql: &'q str) -> Self {
        Self(sql, PhantomData)
    }
}
impl<T: FromRow + Send + 'static> Operation for QueryFirst<'_, T> {
    type Output = Option<T>;
    fn sql(&self) -> &str {
        self.0
    }
    async fn run(&self, conn: &mut Conn) -> std::result::Result<Option<T>, mysql_async::Error> {
        conn.query_first::<Row, _>(self.0)
            .await?
            .map(convert)
            .transpose()
    }
}

struct QueryDrop<'q>(&'q str);
impl Operation for QueryDrop<'_> {
    type Output = ();
    fn sql(&self) -> &str {
        self.0
    }
    fn run<'a>(
        &'a self,
        conn: &'a mut Conn,
    ) -> impl Future<Output = std::result::Result<(), mysql_async::Error>> + Send + 'a {
        conn.query_drop(self.0)
    }
}

struct ExecAll<'q, T>(&'q str, Params, PhantomData<fn() -> T>);
impl<'q, T> ExecAll<'q, T> {
    fn new(sql: &'q str, params: Params) -> Self {
        Self(sql, params, PhantomData)
    }
}
impl<T: FromRow + Send + 'static> Operation for ExecAll<'_, T> {
    type Output = Vec<T>;
    fn sql(&self) -> &str {
        self.0
    }
    async fn run(&self, conn: &mut Conn) -> std::result::Result<Vec<T>, mysql_async::Error> {
        convert_all(conn.exec::<Row, _, _>(self.0, self.1.clone()).await?)
    }
}

struct ExecFirst<'q, T>(&'q str, Params, PhantomData<fn() -> T>);
impl<'q, T> ExecFirst<'q, T> {
    fn new(sql: &'q str, params: Params) -> Self {
        Self(sql, params, PhantomData)
    }
}
impl<T: FromRow + Send + 'static> Operation for ExecFirst<'_, T> {
    type Output = Option<T>;
    fn sql(&self) -> &str {
        self.0
    }
    async fn run(&self, conn: &mut Conn) -> std::result::Result<Option<T>, mysql_async::Error> {
        conn.exec_first::<Row, _, _>(self.0, self.1.clone())
            .await?
            .map(convert)
            .transpose()
    }
}

struct ExecDrop<'q>(&'q str, Params);
impl Operation for ExecDrop<'_> {
    type Output = ();
    fn sql(&self) -> &str {
        self.0
    }
    fn run<'a>(
        &'a self,
        conn: &'a mut Conn,
    ) -> impl Future<Output = std::result::Result<(), mysql_async::Error>> + Send + 'a {
        conn.exec_drop(self.0, self.1.clone())
    }
}

impl RwPool {
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
}

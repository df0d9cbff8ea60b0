//! Several pool instances over one cluster, each in its own runtime and
//! each reaching every server through its own fault proxies; a write load
//! per instance; a checker that samples who writes where.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foobar_core::Shutdown;
use foobar_db::failover::Step;
use foobar_db::mysql_async::prelude::Queryable;
use foobar_db::mysql_async::Conn;
use foobar_db::sandbox::{
    replicate_from, wait_for, Cluster, ADMIN, APP, APP_DATABASE, MONITOR, REPLICATION,
};
use foobar_db::{
    Executor, FailoverConfig, FailoverMode, HostConfig, MonitorConfig, PoolConfig, RoleHint,
    RwPool, RwPoolBuilder,
};

use super::proxy::{FaultProxy, Link};

/// The statement timeout of the instances: well under the sandbox's
/// semi-sync timeout (60 s), so a write stuck on an isolated primary fails
/// instead of being acknowledged after the server gives up waiting.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The fault proxies: one per (instance, server) for the pools, one per
/// server for replication between the servers.
pub struct Net {
    pools: Vec<Vec<FaultProxy>>,
    replication: Vec<FaultProxy>,
}

impl Net {
    /// Proxies for `instances` pools over every node of `cluster`, and
    /// replication rewired through the replication proxies.
    pub async fn start(cluster: &Cluster, instances: usize) -> Self {
        let target = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let mut pools = Vec::with_capacity(instances);
        for _ in 0..instances {
            let mut links = Vec::new();
            for node in cluster.nodes() {
                links.push(FaultProxy::start(target(node.port())).await);
            }
            pools.push(links);
        }
        let mut replication = Vec::new();
        for node in cluster.nodes() {
            replication.push(FaultProxy::start(target(node.port())).await);
        }
        for replica in cluster.replicas() {
            replicate_from(replica, replication[0].port())
                .await
                .expect("replication through the proxy");
        }
        cluster
            .wait_replicated(0, Duration::from_secs(10))
            .await
            .expect("replicas caught up");
        Self { pools, replication }
    }

    /// The link from pool `instance` to server `server`.
    pub fn link(&self, instance: usize, server: usize) -> &FaultProxy {
        &self.pools[instance][server]
    }

    /// The link every server uses to replicate from `server`.
    pub fn replication(&self, server: usize) -> &FaultProxy {
        &self.replication[server]
    }

    /// Sets every link of the network back to passing.
    pub fn heal(&self) {
        for proxy in self.pools.iter().flatten().chain(&self.replication) {
            proxy.set(Link::Pass);
        }
    }

    /// A builder for pool `instance`: every server through its proxies,
    /// auto failover with short test timings, semi-sync.
    pub fn builder(&self, cluster: &Cluster, instance: usize) -> RwPoolBuilder {
        self.builder_with(
            instance,
            MonitorConfig::default()
                .interval(Duration::from_millis(100))
                .check_timeout(Duration::from_millis(300))
                .failure_threshold(3),
            auto_failover(cluster)
                .lock_timeout(Duration::from_secs(4))
                .step_timeout(Duration::from_secs(1))
                .drain_timeout(Duration::from_secs(5)),
        )
    }

    /// A builder for pool `instance` with these timings.
    pub fn builder_with(
        &self,
        instance: usize,
        monitor: MonitorConfig,
        failover: FailoverConfig,
    ) -> RwPoolBuilder {
        let mut builder = RwPool::builder()
            .name(format!("pool{instance}"))
            .monitor_credentials(MONITOR.user, MONITOR.password)
            .failover_credentials(ADMIN.user, ADMIN.password)
            .monitor_config(monitor)
            .failover(failover)
            .pool_config(
                PoolConfig::default()
                    .statement_timeout(Some(STATEMENT_TIMEOUT))
                    .create_timeout(Some(Duration::from_secs(1)))
                    .wait_timeout(Some(Duration::from_secs(2))),
            )
            .no_writer_timeout(Duration::from_secs(3));
        for (server, proxy) in self.pools[instance].iter().enumerate() {
            let url = format!(
                "mysql://{}:{}@127.0.0.1:{}/{APP_DATABASE}?prefer_socket=false",
                APP.user,
                APP.password,
                proxy.port()
            );
            let hint = if server == 0 {
                RoleHint::Primary
            } else {
                RoleHint::Replica
            };
            builder = builder.host(
                HostConfig::new(url, hint)
                    .replication_address("127.0.0.1", self.replication[server].port()),
            );
        }
        builder
    }
}

/// Auto failover over `cluster` with the default timings.
pub fn auto_failover(cluster: &Cluster) -> FailoverConfig {
    FailoverConfig::new(FailoverMode::AutoPromote)
        .semi_sync(cluster.is_semi_sync())
        .replication_credentials(REPLICATION.user, REPLICATION.password)
}

/// What a load acknowledged.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Ids the server acknowledged.
    pub acked: Vec<i64>,
    /// Writes that failed.
    pub failed: usize,
    /// When each acknowledged write was sent and answered.
    pub successes: Vec<(Instant, Instant)>,
}

/// A pool in its own runtime, as an application instance would be.
pub struct Instance {
    pub index: usize,
    runtime: Option<tokio::runtime::Runtime>,
    pool: Arc<Mutex<Option<RwPool>>>,
    shutdown: Shutdown,
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
}

impl Instance {
    /// Builds the pool in a runtime of its own.
    pub async fn start(index: usize, builder: RwPoolBuilder) -> Self {
        let mut instance = Self {
            index,
            runtime: None,
            pool: Arc::new(Mutex::new(None)),
            shutdown: Shutdown::new(),
            stop: Arc::new(AtomicBool::new(false)),
            report: Arc::new(Mutex::new(LoadReport::default())),
        };
        instance.restart(builder).await;
        instance
    }

    /// Kills the instance if it lives, and starts it again from scratch
    /// (a new process would), keeping what its loads acknowledged.
    pub async fn restart(&mut self, builder: RwPoolBuilder) {
        self.kill();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("pool{}", self.index))
            .enable_all()
            .build()
            .expect("instance runtime");
        self.shutdown = Shutdown::new();
        let signal = self.shutdown.clone();
        let pool = runtime
            .spawn(async move { builder.build(&signal).await })
            .await
            .expect("build task")
            .expect("pool builds");
        *self.pool.lock().expect("not poisoned") = Some(pool);
        self.stop = Arc::new(AtomicBool::new(false));
        self.runtime = Some(runtime);
    }

    /// The pool, while the instance lives.
    pub fn pool(&self) -> Option<RwPool> {
        self.pool.lock().expect("not poisoned").clone()
    }

    /// The server (index) this instance writes to now.
    pub fn writer(&self) -> Option<usize> {
        writer_of(&self.pool)
    }

    /// Whether it holds the failover lease.
    pub fn is_leader(&self) -> bool {
        self.pool()
            .is_some_and(|p| p.topology().failover_status().leader)
    }

    /// Inserts ids `first..first + count` into `writes`, one every
    /// `pace`, for at most `limit`.
    pub fn start_load(&self, first: i64, count: i64, pace: Duration, limit: Duration) {
        let Some(pool) = self.pool() else {
            return;
        };
        let (stop, report, index) = (self.stop.clone(), self.report.clone(), self.index);
        self.spawn(async move {
            let started = Instant::now();
            for id in first..first + count {
                if stop.load(Ordering::Relaxed) || started.elapsed() > limit {
                    break;
                }
                let sent = Instant::now();
                let result = pool
                    .exec_drop(
                        "INSERT INTO writes (id, pool, server, at) \
                         VALUES (?, ?, @@server_id, NOW(6))",
                        (id, index),
                    )
                    .await;
                {
                    let mut report = report.lock().expect("not poisoned");
                    match result {
                        Ok(()) => {
                            report.acked.push(id);
                            report.successes.push((sent, Instant::now()));
                        }
                        Err(_) => report.failed += 1,
                    }
                }
                tokio::time::sleep(pace).await;
            }
        });
    }

    /// Stops the load (the instance goes on).
    pub fn stop_load(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// What the load acknowledged so far.
    pub fn acked(&self) -> Vec<i64> {
        self.report.lock().expect("not poisoned").acked.clone()
    }

    /// When the latest acknowledged write was sent.
    pub fn last_ok_sent(&self) -> Option<Instant> {
        let report = self.report.lock().expect("not poisoned");
        report.successes.last().map(|(sent, _)| *sent)
    }

    /// When the first write sent after `at` was acknowledged.
    pub fn first_ok_after(&self, at: Instant) -> Option<Instant> {
        let report = self.report.lock().expect("not poisoned");
        report
            .successes
            .iter()
            .find(|(sent, _)| *sent > at)
            .map(|(_, done)| *done)
    }

    /// Runs a future on the instance's runtime.
    pub fn spawn<F>(&self, future: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if let Some(runtime) = &self.runtime {
            runtime.spawn(future);
        }
    }

    /// Kills the instance: its runtime stops at once, every task and
    /// connection with it, as when the process dies.
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let pool = self.pool.lock().expect("not poisoned").take();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        drop(pool);
    }

    /// Whether it was killed.
    pub fn is_dead(&self) -> bool {
        self.runtime.is_none()
    }

    /// The sampled view the checker uses.
    fn view(&self) -> Arc<Mutex<Option<RwPool>>> {
        Arc::clone(&self.pool)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.trigger();
        self.kill();
    }
}

fn writer_of(pool: &Mutex<Option<RwPool>>) -> Option<usize> {
    let pool = pool.lock().ok()?.clone()?;
    let writer = pool.topology().writer()?.to_owned();
    let position = pool.topology().hosts().position(|h| h == writer);
    position
}

/// Creates the `writes` table through `pool` and waits until every server
/// has it.
pub async fn create_writes_table(cluster: &Cluster, pool: &RwPool) {
    pool.query_drop(
        "CREATE TABLE writes (id BIGINT PRIMARY KEY, pool INT NOT NULL, \
         server INT NOT NULL, at DATETIME(6) NOT NULL)",
    )
    .await
    .expect("create table");
    cluster
        .wait_replicated(0, Duration::from_secs(10))
        .await
        .expect("table replicated");
}

/// What the checker saw.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Samples taken.
    pub samples: usize,
    /// Samples in which two pools wrote to two servers.
    pub violations: Vec<String>,
    /// Every set of writable servers seen.
    pub writable: BTreeSet<Vec<usize>>,
    /// Every writer seen per instance, in order, without repeats.
    pub writers: Vec<Vec<Option<usize>>>,
}

/// Samples every 50 ms which servers are writable and where each pool
/// writes.
pub struct Checker {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<CheckReport>>,
    task: tokio::task::JoinHandle<()>,
}

impl Checker {
    pub fn start(cluster: &Cluster, instances: &[Instance]) -> Self {
        let roots: Vec<_> = cluster.nodes().iter().map(|n| n.root_opts()).collect();
        let views: Vec<_> = instances.iter().map(Instance::view).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(CheckReport {
            writers: vec![Vec::new(); views.len()],
            ..CheckReport::default()
        }));
        let (flag, shared) = (stop.clone(), report.clone());
        let task = tokio::spawn(async move {
            let mut conns: Vec<Option<Conn>> = roots.iter().map(|_| None).collect();
            let started = Instant::now();
            // Bounded: at most 30 minutes of samples.
            while !flag.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(1800) {
                let mut writable = Vec::new();
                for (server, slot) in conns.iter_mut().enumerate() {
                    if let Some(true) = read_write_state(slot, &roots[server]).await {
                        writable.push(server);
                    }
                }
                let writers: Vec<Option<usize>> = views.iter().map(|v| writer_of(v)).collect();
                let distinct: BTreeSet<usize> = writers.iter().flatten().copied().collect();
                {
                    let mut report = shared.lock().expect("not poisoned");
                    report.writable.insert(writable);
                    if distinct.len() > 1 {
                        report.violations.push(format!(
                            "at {:?}: pools write to {writers:?}",
                            started.elapsed()
                        ));
                    }
                    for (seen, now) in report.writers.iter_mut().zip(&writers) {
                        if seen.last() != Some(now) {
                            seen.push(*now);
                        }
                    }
                    report.samples += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self { stop, report, task }
    }

    /// Samples in which two pools wrote to two servers, so far.
    pub fn violations(&self) -> usize {
        self.report.lock().expect("not poisoned").violations.len()
    }

    /// Stops sampling; what it saw.
    pub async fn stop(self) -> CheckReport {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        std::mem::take(&mut *self.report.lock().expect("not poisoned"))
    }
}

/// Whether a server is writable now (`None`: no answer within 200 ms).
async fn read_write_state(
    slot: &mut Option<Conn>,
    opts: &foobar_db::mysql_async::Opts,
) -> Option<bool> {
    let limit = Duration::from_millis(200);
    let answer = tokio::time::timeout(limit, async {
        if slot.is_none() {
            *slot = Some(Conn::new(opts.clone()).await.ok()?);
        }
        let conn = slot.as_mut()?;
        conn.query_first::<i64, _>("SELECT @@global.read_only")
            .await
            .ok()
            .flatten()
    })
    .await;
    match answer {
        Ok(Some(read_only)) => Some(read_only == 0),
        _ => {
            *slot = None;
            None
        }
    }
}

/// Waits until every live instance writes to the same server, other than
/// `not`, and returns it.
pub async fn wait_common_writer(
    instances: &[Instance],
    not: Option<usize>,
    limit: Duration,
) -> usize {
    let views: Vec<_> = instances
        .iter()
        .filter(|i| !i.is_dead())
        .map(Instance::view)
        .collect();
    wait_for("one writer for every pool", limit, || {
        let views = views.clone();
        async move {
            let writers: Vec<Option<usize>> = views.iter().map(|v| writer_of(v)).collect();
            writers.iter().all(|w| w.is_some() && *w != not)
                && writers.windows(2).all(|w| w[0] == w[1])
        }
    })
    .await
    .unwrap_or_else(|e| {
        let writers: Vec<_> = views.iter().map(|v| writer_of(v)).collect();
        let why: Vec<_> = views
            .iter()
            .filter_map(|v| v.lock().ok()?.clone())
            .map(|p| {
                let status = p.status();
                (
                    status.unavailable_text,
                    status.failover.leader,
                    status.promotion_blocked_text,
                )
            })
            .collect();
        panic!("{e}: {writers:?} {why:#?}")
    });
    writer_of(&views[0]).expect("a writer")
}

/// Waits until one instance holds the failover lease; which.
pub async fn wait_leader(instances: &[Instance], limit: Duration) -> usize {
    wait_for("a failover leader", limit, || async {
        instances.iter().any(Instance::is_leader)
    })
    .await
    .expect("a leader");
    instances
        .iter()
        .position(Instance::is_leader)
        .expect("a leader")
}

/// Waits until every live instance has an acknowledged write sent after
/// `at`.
pub async fn wait_writes_after(instances: &[Instance], at: Instant, limit: Duration) {
    wait_for("every pool writes again", limit, || async {
        instances
            .iter()
            .filter(|i| !i.is_dead())
            .all(|i| i.last_ok_sent().is_some_and(|sent| sent > at))
    })
    .await
    .unwrap_or_else(|e| {
        let last: Vec<_> = instances
            .iter()
            .map(|i| (i.index, i.last_ok_sent().map(|s| s > at), i.writer()))
            .collect();
        panic!("{e}: {last:?}")
    });
}

/// Checks that every acknowledged id is on `server`; and that, ordered by
/// commit time, the rows there switch servers at most `switches` times.
pub async fn verify_writes(cluster: &Cluster, server: usize, acked: &[i64], switches: usize) {
    let mut conn = cluster.node(server).root().await.expect("connect");
    let rows: Vec<(i64, u32)> = conn
        .query("SELECT id, server FROM app.writes ORDER BY at, id")
        .await
        .expect("read writes");
    let present: std::collections::HashSet<i64> = rows.iter().map(|(id, _)| *id).collect();
    let missing: Vec<&i64> = acked.iter().filter(|id| !present.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes missing on {}: {:?}",
        missing.len(),
        acked.len(),
        cluster.node(server).name(),
        &missing[..missing.len().min(10)]
    );
    let mut servers: Vec<u32> = rows.iter().map(|(_, s)| *s).collect();
    servers.dedup();
    assert!(
        servers.len() <= switches + 1,
        "writes alternated between servers: {servers:?}"
    );
}

/// The failover epoch on `server`.
pub async fn epoch_on(cluster: &Cluster, server: usize) -> Option<u64> {
    let mut conn = cluster.node(server).root().await.ok()?;
    conn.query_first("SELECT epoch FROM foobar_db.failover_epoch WHERE id = 1")
        .await
        .ok()
        .flatten()
}

/// How many promotions the instances made (their `promoted` events).
pub fn promotions(instances: &[Instance]) -> usize {
    instances
        .iter()
        .filter_map(Instance::pool)
        .flat_map(|p| p.topology().events())
        .filter(|e| e.kind == "promoted")
        .map(|e| e.count as usize)
        .sum()
}

/// A failover configuration that stops its promotions before `step`.
pub fn pausing(
    builder: RwPoolBuilder,
    cluster: &Cluster,
    step: Step,
    reached: Arc<tokio::sync::Notify>,
) -> RwPoolBuilder {
    builder.failover(
        FailoverConfig::new(FailoverMode::AutoPromote)
            .semi_sync(cluster.is_semi_sync())
            .replication_credentials(REPLICATION.user, REPLICATION.password)
            .lock_timeout(Duration::from_secs(4))
            .step_timeout(Duration::from_secs(1))
            .drain_timeout(Duration::from_secs(5))
            .pause_promotion_before(step, reached),
    )
}

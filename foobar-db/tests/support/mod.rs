//! Shared set-up: a private cluster and a pool over it.
#![allow(dead_code, unreachable_pub)]

pub mod fleet;
pub mod proxy;

use std::time::Duration;

use foobar_core::Shutdown;
use foobar_db::sandbox::{Cluster, REPLICATION};
use foobar_db::{Executor, FailoverConfig, MonitorConfig, RwPool, RwPoolBuilder};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "foobar_db=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A builder over every node of `cluster`: node 0 hinted primary, fast
/// monitoring.
pub fn builder(cluster: &Cluster) -> RwPoolBuilder {
    cluster
        .rw_pool_builder()
        .failover(FailoverConfig::default())
        .monitor_config(
            MonitorConfig::default()
                .interval(Duration::from_millis(100))
                .check_timeout(Duration::from_millis(400))
                .failure_threshold(3),
        )
}

pub fn auto_failover(semi_sync: bool) -> FailoverConfig {
    FailoverConfig::new(foobar_db::FailoverMode::AutoPromote)
        .semi_sync(semi_sync)
        .replication_credentials(REPLICATION.user, REPLICATION.password)
}

/// Starts a cluster, and a pool over it whose replicas are all up.
pub async fn cluster_and_pool(
    replicas: usize,
    tweak: impl FnOnce(RwPoolBuilder) -> RwPoolBuilder,
) -> (Cluster, RwPool, Shutdown) {
    init_tracing();
    let cluster = Cluster::builder()
        .replicas(replicas)
        .start()
        .await
        .expect("cluster starts");
    let shutdown = Shutdown::new();
    let pool = tweak(builder(&cluster))
        .build(&shutdown)
        .await
        .expect("pool builds");
    wait_replicas_up(&pool, replicas).await;
    (cluster, pool, shutdown)
}

/// Waits until `count` replicas are up (replicating, lag known).
pub async fn wait_replicas_up(pool: &RwPool, count: usize) {
    use foobar_db::topology::{Health, Role};
    let pool = pool.clone();
    foobar_db::sandbox::wait_for("replicas up", Duration::from_secs(15), move || {
        let pool = pool.clone();
        async move {
            pool.status()
                .hosts
                .iter()
                .filter(|h| h.role == Role::Replica && h.health == Health::Up)
                .count()
                >= count
        }
    })
    .await
    .expect("replicas come up");
}

/// The host serving a plain read, by its port.
pub async fn port_of_read(pool: &RwPool) -> u16 {
    pool.query_first::<u16>("SELECT @@port")
        .await
        .expect("read")
        .expect("a row")
}

/// A steady, bounded write load: sequential inserts into `load`, recording
/// which ids the server acknowledged and when writes failed and recovered.
pub struct WriteLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// When the latest acknowledged write was sent.
    latest_ok_sent: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    task: tokio::task::JoinHandle<LoadReport>,
}

#[derive(Debug, Default)]
pub struct LoadReport {
    pub acked: Vec<i64>,
    pub errors: usize,
    /// Each success, with when it was sent.
    pub successes: Vec<(i64, std::time::Instant, std::time::Instant)>,
}

impl LoadReport {
    /// How long after `at` the first write sent after `at` succeeded.
    pub fn recovery_after(&self, at: std::time::Instant) -> Option<Duration> {
        self.successes
            .iter()
            .find(|(_, sent, _)| *sent > at)
            .map(|(_, _, done)| *done - at)
    }
}

impl WriteLoad {
    /// At most `max_writes` writes, for at most `max_time`.
    pub fn start(pool: RwPool, max_writes: i64, max_time: Duration) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let latest_ok_sent = std::sync::Arc::new(std::sync::Mutex::new(None));
        let latest = latest_ok_sent.clone();
        let task = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut report = LoadReport::default();
            for id in 0..max_writes {
                if flag.load(std::sync::atomic::Ordering::Relaxed) || started.elapsed() > max_time {
                    break;
                }
                let sent = std::time::Instant::now();
                match pool
                    .exec_drop("INSERT INTO writes (id) VALUES (?)", (id,))
                    .await
                {
                    Ok(()) => {
                        report.acked.push(id);
                        report.successes.push((id, sent, std::time::Instant::now()));
                        *latest.lock().expect("not poisoned") = Some(sent);
                    }
                    Err(_) => {
                        report.errors += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            report
        });
        Self {
            stop,
            latest_ok_sent,
            task,
        }
    }

    /// Waits until a write sent after `at` was acknowledged.
    pub async fn wait_success_sent_after(&self, at: std::time::Instant, limit: Duration) {
        let latest = self.latest_ok_sent.clone();
        foobar_db::sandbox::wait_for("a write sent after the kill succeeds", limit, move || {
            let latest = latest.clone();
            async move {
                latest
                    .lock()
                    .expect("not poisoned")
                    .is_some_and(|sent| sent > at)
            }
        })
        .await
        .expect("writes resumed");
    }

    /// Stops the load and reports.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.expect("load task")
    }
}

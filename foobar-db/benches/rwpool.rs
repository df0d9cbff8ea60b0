//! Benchmarks against private MariaDB servers (feature `sandbox`):
//!
//! 1. point-select throughput through `RwPool` and through mysql_async's
//!    own pool, on the same replica, side by side in one run;
//! 2. failover time, from `kill -9` of the primary to the first successful
//!    write sent after it, in both failover modes.
//!
//! Run with `cargo bench -p foobar-db --features sandbox`
//! (`BENCH_SECONDS`, `BENCH_TASKS`, `BENCH_FAILOVERS` tune it).
#![allow(clippy::print_stdout, missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foobar_core::Shutdown;
use foobar_db::mysql_async::prelude::Queryable;
use foobar_db::mysql_async::{self, OptsBuilder, PoolConstraints, PoolOpts};
use foobar_db::sandbox::{replicate_from, wait_for, Cluster, ADMIN, MONITOR, REPLICATION};
use foobar_db::{FailoverConfig, FailoverMode, MonitorConfig, PoolConfig, RwPool};

const ROWS: u32 = 10_000;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        throughput().await;
        failover().await;
    });
}

/// Runs `tasks` loops of point selects for `seconds`; returns queries/s.
async fn measure<F, Fut>(tasks: u64, seconds: u64, query: F) -> f64
where
    F: Fn(u32) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let query = Arc::new(query);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for task in 0..tasks {
        let (query, done, stop) = (query.clone(), done.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut id = u32::try_from(task).unwrap_or(0) * 7919;
            while !stop.load(Ordering::Relaxed) {
                id = (id + 1) % ROWS;
                query(id + 1).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        let _ = handle.await;
    }
    #[allow(clippy::cast_precision_loss)]
    let qps = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    qps
}

async fn throughput() {
    let seconds = env("BENCH_SECONDS", 3);
    let tasks = env("BENCH_TASKS", 16);
    let size = usize::try_from(tasks).unwrap_or(16);
    let cluster = Cluster::builder()
        .replicas(1)
        .start()
        .await
        .expect("cluster");
    let shutdown = Shutdown::new();
    let pool = RwPool::builder()
        .primary(cluster.primary().app_url())
        .replica(cluster.replicas()[0].app_url())
        .monitor_credentials(MONITOR.user, MONITOR.password)
        .pool_config(PoolConfig::default().max_size(size))
        .build(&shutdown)
        .await
        .expect("pool");
    pool.query_drop("CREATE TABLE kv (id INT PRIMARY KEY, v VARCHAR(64))")
        .await
        .expect("create");
    for chunk in 0..(ROWS / 1000) {
        let values: Vec<String> = (chunk * 1000 + 1..=(chunk + 1) * 1000)
            .map(|id| format!("({id}, 'value-{id}')"))
            .collect();
        pool.query_drop(&format!("INSERT INTO kv VALUES {}", values.join(",")))
            .await
            .expect("insert");
    }
    cluster
        .wait_replicated(0, Duration::from_secs(30))
        .await
        .expect("replicated");
    let replica_port = cluster.replicas()[0].port();
    let served: Option<u16> = pool.query_first("SELECT @@port").await.expect("read");
    assert_eq!(served, Some(replica_port), "RwPool reads from the replica");

    let plain = |reset: bool| {
        let opts = OptsBuilder::from_opts(
            mysql_async::Opts::from_url(&cluster.replicas()[0].app_url()).expect("url"),
        )
        .pool_opts(
            PoolOpts::default()
                .with_constraints(PoolConstraints::new(1, size).expect("constraints"))
                .with_reset_connection(reset),
        );
        mysql_async::Pool::new(opts)
    };

    let mut rows: Vec<(&str, Vec<f64>)> = vec![
        (
            "mysql_async::Pool (reset_connection=true, its default)",
            Vec::new(),
        ),
        ("mysql_async::Pool (reset_connection=false)", Vec::new()),
        (
            "foobar_db::RwPool::exec_first (routed to the replica)",
            Vec::new(),
        ),
    ];
    for _round in 0..2 {
        for (index, reset) in [(0, true), (1, false)] {
            let baseline = plain(reset);
            let qps = measure(tasks, seconds, move |id| {
                let baseline = baseline.clone();
                async move {
                    let mut conn = baseline.get_conn().await.expect("conn");
                    let v: Option<String> = conn
                        .exec_first("SELECT v FROM kv WHERE id = ?", (id,))
                        .await
                        .expect("select");
                    assert!(v.is_some());
                }
            })
            .await;
            rows[index].1.push(qps);
        }
        let routed = pool.clone();
        let qps = measure(tasks, seconds, move |id| {
            let routed = routed.clone();
            async move {
                let v: Option<String> = routed
                    .exec_first("SELECT v FROM kv WHERE id = ?", (id,))
                    .await
                    .expect("select");
                assert!(v.is_some());
            }
        })
        .await;
        rows[2].1.push(qps);
    }
    shutdown.trigger();

    println!();
    println!("point select, {tasks} tasks, pool size {size}, {seconds} s x 2 rounds, same MariaDB replica");
    println!("| pool | round 1 q/s | round 2 q/s | mean q/s | vs mysql_async (no reset) |");
    println!("|---|---:|---:|---:|---:|");
    #[allow(clippy::cast_precision_loss)]
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let reference = mean(&rows[1].1);
    for (name, values) in &rows {
        let m = mean(values);
        println!(
            "| {name} | {:.0} | {:.0} | {m:.0} | {:+.1}% |",
            values[0],
            values[1],
            (m / reference - 1.0) * 100.0
        );
    }
}

/// One failover: a write loop, kill -9, time to the first write sent after
/// the kill that succeeds.
async fn one_failover(mode: FailoverMode) -> (Duration, Duration) {
    let semi_sync = mode == FailoverMode::AutoPromote;
    let mut cluster = Cluster::builder()
        .replicas(2)
        .semi_sync(semi_sync)
        .start()
        .await
        .expect("cluster");
    let shutdown = Shutdown::new();
    let failover = FailoverConfig::new(mode)
        .semi_sync(semi_sync)
        .replication_credentials(REPLICATION.user, REPLICATION.password);
    let mut builder = RwPool::builder()
        .monitor_credentials(MONITOR.user, MONITOR.password)
        .failover_credentials(ADMIN.user, ADMIN.password)
        .monitor_config(MonitorConfig::default())
        .failover(failover)
        .no_writer_timeout(Duration::from_secs(5));
    builder = builder.primary(cluster.primary().app_url());
    for replica in cluster.replicas() {
        builder = builder.replica(replica.app_url());
    }
    let pool = builder.build(&shutdown).await.expect("pool");
    pool.query_drop("CREATE TABLE w (id BIGINT PRIMARY KEY)")
        .await
        .expect("create");
    let stop = Arc::new(AtomicBool::new(false));
    let (writer_pool, writer_stop) = (pool.clone(), stop.clone());
    let load = tokio::spawn(async move {
        let mut successes = Vec::new();
        let started = Instant::now();
        for id in 0..1_000_000_i64 {
            if writer_stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(30) {
                break;
            }
            let sent = Instant::now();
            if writer_pool
                .exec_drop("INSERT INTO w VALUES (?)", (id,))
                .await
                .is_ok()
            {
                successes.push((sent, Instant::now()));
            } else {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        successes
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    cluster.primary_mut().kill().await;
    if mode == FailoverMode::FollowExternal {
        // The external promoter, as fast as a script would be.
        let new_primary = cluster.node(1);
        new_primary
            .run(&["STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = 0"])
            .await
            .expect("promote");
        replicate_from(cluster.node(2), new_primary.port())
            .await
            .expect("repoint");
    }
    let old = cluster.primary().address();
    let p = pool.clone();
    wait_for("new writer", Duration::from_secs(20), move || {
        let p = p.clone();
        let old = old.clone();
        async move { p.topology().writer().is_some_and(|w| w != old) }
    })
    .await
    .expect("failover");
    let detected = killed.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let successes = load.await.expect("load");
    shutdown.trigger();
    let recovered = successes
        .iter()
        .find(|(sent, _)| *sent > killed)
        .map(|(_, done)| *done - killed)
        .expect("a write succeeded after the kill");
    (detected, recovered)
}

async fn failover() {
    let runs = env("BENCH_FAILOVERS", 3);
    println!();
    println!("failover: kill -9 of the primary under a sequential write loop, default monitor settings (250 ms x 3)");
    println!(
        "| mode | runs | new writer known (median) | first write after kill: min | median | max |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, mode) in [
        ("follow external promoter", FailoverMode::FollowExternal),
        ("auto-promote (semi-sync)", FailoverMode::AutoPromote),
    ] {
        let mut known = Vec::new();
        let mut recovered = Vec::new();
        for _ in 0..runs {
            let (k, r) = one_failover(mode).await;
            known.push(k);
            recovered.push(r);
        }
        known.sort();
        recovered.sort();
        let median = |v: &[Duration]| v[v.len() / 2];
        println!(
            "| {name} | {runs} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
            median(&known).as_secs_f64() * 1e3,
            recovered[0].as_secs_f64() * 1e3,
            median(&recovered).as_secs_f64() * 1e3,
            recovered[recovered.len() - 1].as_secs_f64() * 1e3,
        );
    }
}

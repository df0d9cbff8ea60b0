//! Benchmarks against private MariaDB servers (feature `sandbox`):
//!
//! 1. point-select throughput through `RwPool` and through mysql_async's
//!    own pool, on the same replica, side by side in one run;
//! 2. failover time, from `kill -9` of the primary to the first successful
//!    write sent after it, in both failover modes.
//!
//! Run with `cargo bench -p foobar-db --features sandbox`
//! (`BENCH_SECONDS`, `BENCH_ROUNDS`, `BENCH_TASKS`, `BENCH_FAILOVERS` tune
//! it).
#![allow(clippy::print_stdout, missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foobar_core::Shutdown;
use foobar_db::mysql_async::prelude::Queryable;
use foobar_db::mysql_async::{self, OptsBuilder, PoolConstraints, PoolOpts};
use foobar_db::sandbox::{replicate_from, wait_for, Cluster, ADMIN, MONITOR, REPLICATION};
use foobar_db::{Executor, FailoverConfig, FailoverMode, MonitorConfig, PoolConfig, RwPool};

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
    let seconds = env("BENCH_SECONDS", 2);
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
    let p = pool.clone();
    wait_for(
        "the replica takes reads",
        Duration::from_secs(10),
        move || {
            let p = p.clone();
            async move {
                p.status()
                    .hosts
                    .iter()
                    .any(|h| h.health == foobar_db::topology::Health::Up && !h.writer)
            }
        },
    )
    .await
    .expect("replica up");
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

    let rounds = env("BENCH_ROUNDS", 6);
    let baseline_pool = |reset: bool| {
        let baseline = plain(reset);
        move |id: u32| {
            let baseline = baseline.clone();
            async move {
                let mut conn = baseline.get_conn().await.expect("conn");
                let v: Option<String> = conn
                    .exec_first("SELECT v FROM kv WHERE id = ?", (id,))
                    .await
                    .expect("select");
                assert!(v.is_some());
            }
        }
    };
    let routed_pool = || {
        let routed = pool.clone();
        move |id: u32| {
            let routed = routed.clone();
            async move {
                let v: Option<String> = routed
                    .exec_first("SELECT v FROM kv WHERE id = ?", (id,))
                    .await
                    .expect("select");
                assert!(v.is_some());
            }
        }
    };
    // The baseline with its default reset, once: it is far behind anyway.
    let with_reset = measure(tasks, seconds, baseline_pool(true)).await;
    // The two contenders back to back, order alternating, so that the load
    // of a shared machine hits both alike; compared round by round.
    let mut baseline = Vec::new();
    let mut routed = Vec::new();
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let (b, r) = if round % 2 == 0 {
            let b = measure(tasks, seconds, baseline_pool(false)).await;
            (b, measure(tasks, seconds, routed_pool()).await)
        } else {
            let r = measure(tasks, seconds, routed_pool()).await;
            (measure(tasks, seconds, baseline_pool(false)).await, r)
        };
        baseline.push(b);
        routed.push(r);
        ratios.push(r / b);
    }
    shutdown.trigger();

    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratio = median(&mut ratios);
    println!();
    println!(
        "point select, {tasks} tasks, pool size {size}, same MariaDB replica, \
         {rounds} paired rounds of {seconds} s"
    );
    println!("| pool | median q/s | min | max |");
    println!("|---|---:|---:|---:|");
    println!(
        "| mysql_async::Pool, reset_connection=true (its default), 1 round | {with_reset:.0} | | |"
    );
    for (name, values) in [
        ("mysql_async::Pool, reset_connection=false", &mut baseline),
        (
            "foobar_db::RwPool::exec_first, routed to the replica",
            &mut routed,
        ),
    ] {
        let m = median(values);
        println!(
            "| {name} | {m:.0} | {:.0} | {:.0} |",
            values[0],
            values[values.len() - 1]
        );
    }
    println!(
        "RwPool / mysql_async (no reset), median of per-round ratios: {:+.1}%",
        (ratio - 1.0) * 100.0
    );
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

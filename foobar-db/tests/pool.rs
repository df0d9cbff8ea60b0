//! The per-host pool: recycling, session reset, timeouts; status and
//! shutdown of the monitor.

mod support;

use std::time::Duration;

use foobar_core::status::StatusSource;
use foobar_db::mysql_async::prelude::Queryable;
use foobar_db::mysql_async::Opts;
use foobar_db::pool::Manager;
use foobar_db::sandbox::{wait_for, MONITOR};
use foobar_db::topology::{Health, Role};
use foobar_db::{Error, Executor, PoolConfig, ResetPolicy};
use support::cluster_and_pool;

#[tokio::test]
async fn a_connection_killed_by_the_server_is_replaced_on_checkout() {
    let (cluster, pool, shutdown) = cluster_and_pool(0, |b| {
        b.pool_config(
            PoolConfig::default()
                .max_size(1)
                .ping_idle_after(Duration::ZERO),
        )
    })
    .await;
    let mut conn = pool.writer().await.unwrap();
    let first: Option<u64> = conn.query_first("SELECT CONNECTION_ID()").await.unwrap();
    drop(conn);
    cluster
        .primary()
        .run(&[&format!("KILL {}", first.unwrap())])
        .await
        .unwrap();

    let mut conn = pool.writer().await.unwrap();
    let second: Option<u64> = conn.query_first("SELECT CONNECTION_ID()").await.unwrap();
    assert_ne!(
        first, second,
        "the dead connection failed its ping and was replaced"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn session_state_is_reset_on_reuse_without_reconnecting() {
    let (_cluster, pool, shutdown) =
        cluster_and_pool(0, |b| b.pool_config(PoolConfig::default().max_size(1))).await;
    let mut conn = pool.writer().await.unwrap();
    conn.query_drop("SET @secret = 'from the last user'")
        .await
        .unwrap();
    conn.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'")
        .await
        .unwrap();
    conn.query_drop("CREATE TEMPORARY TABLE app.leftover (x INT)")
        .await
        .unwrap();
    let id: Option<u64> = conn.query_first("SELECT CONNECTION_ID()").await.unwrap();
    drop(conn);

    let mut conn = pool.writer().await.unwrap();
    let row: Option<(u64, Option<String>, String)> = conn
        .query_first("SELECT CONNECTION_ID(), @secret, @@session.sql_mode")
        .await
        .unwrap();
    let (again, secret, sql_mode) = row.unwrap();
    assert_eq!(Some(again), id, "same connection, reset in place");
    assert_eq!(secret, None);
    assert!(!sql_mode.contains("ANSI_QUOTES"), "{sql_mode}");
    let err = conn
        .query_drop("SELECT * FROM app.leftover")
        .await
        .expect_err("temporary table dropped");
    assert!(err.to_string().contains("leftover"), "{err}");
    shutdown.trigger();
}

#[tokio::test]
async fn waiting_for_a_busy_pool_times_out_with_a_typed_error() {
    let (cluster, pool, shutdown) = cluster_and_pool(0, |b| {
        b.pool_config(
            PoolConfig::default()
                .max_size(1)
                .wait_timeout(Some(Duration::from_millis(100))),
        )
    })
    .await;
    let held = pool.writer().await.unwrap();
    let err = pool
        .writer()
        .await
        .expect_err("the only connection is held");
    match &err {
        Error::PoolTimeout { host, kind } => {
            assert_eq!(*kind, foobar_db::TimeoutKind::Wait);
            assert_eq!(host, &cluster.primary().address());
        }
        other => panic!("unexpected {other}"),
    }
    drop(held);
    pool.writer().await.unwrap();
    shutdown.trigger();
}

#[tokio::test]
async fn creating_a_connection_to_a_silent_server_times_out() {
    // Accepts TCP but never sends the MySQL greeting.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let opts = Opts::from_url(&format!("mysql://app:x@127.0.0.1:{port}/app")).unwrap();
    let pool = Manager::new(opts, ResetPolicy::default(), Duration::from_secs(1))
        .into_pool(&PoolConfig::default().create_timeout(Some(Duration::from_millis(200))))
        .unwrap();
    let started = std::time::Instant::now();
    let err = pool.get().await.expect_err("no greeting");
    assert!(
        matches!(
            err,
            foobar_db::pool::PoolError::Timeout(foobar_db::pool::TimeoutType::Create)
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn status_snapshot_and_monitor_shutdown() {
    let (cluster, pool, shutdown) = cluster_and_pool(2, |b| b.name("orders-db")).await;
    assert!(pool.ready());
    assert_eq!(pool.name(), "orders-db");
    for _ in 0..10 {
        support::port_of_read(&pool).await;
    }
    let p = pool.clone();
    wait_for("server counters", Duration::from_secs(5), move || {
        let p = p.clone();
        async move {
            p.status()
                .hosts
                .iter()
                .all(|h| h.server_questions_total > 0)
        }
    })
    .await
    .unwrap();
    let status = pool.status();
    assert_eq!(
        status.writer.as_deref(),
        Some(cluster.primary().address().as_str())
    );
    assert_eq!(status.hosts.len(), 3);
    assert_eq!(status.hosts[0].role, Role::Primary);
    assert!(status.hosts[0].writer && !status.hosts[1].writer);
    assert_eq!(status.epoch, 0);
    assert_eq!(status.unavailable, None);
    assert!(status.hosts[1..]
        .iter()
        .all(|h| h.role == Role::Replica && h.health == Health::Up));
    assert_eq!(status.hosts[0].lag_seconds, None);
    assert!(status.hosts[1].lag_seconds.is_some());
    let reads: u64 = status.hosts[1..].iter().map(|h| h.queries_total).sum();
    assert!(reads >= 10, "{reads}");
    assert!(status
        .hosts
        .iter()
        .all(|h| h.pool_in_use == 0 && h.pool_size >= 1 || h.queries_total == 0));
    let snapshot = pool.snapshot();
    assert_eq!(snapshot.kind, foobar_db::status::KIND);
    assert_eq!(snapshot.health, foobar_core::status::Health::Up);
    assert!(snapshot.events.iter().any(|e| e.kind == "writer"));
    let json = serde_json::to_string(&snapshot).unwrap();
    assert!(json.contains("\"writer\""));
    assert!(
        !json.contains("sandbox-app"),
        "no credentials in the status"
    );

    // Shutdown stops every monitor task: their connections go away.
    shutdown.trigger();
    wait_monitor_connections(&cluster, 0).await;

    // So does dropping the last handle of a pool.
    let pool = support::builder(&cluster)
        .build(&foobar_core::Shutdown::new())
        .await
        .unwrap();
    wait_monitor_connections(&cluster, 3).await;
    drop(pool);
    wait_monitor_connections(&cluster, 0).await;
}

/// Waits until the monitor account has `count` connections on the cluster.
async fn wait_monitor_connections(cluster: &foobar_db::sandbox::Cluster, count: i64) {
    wait_for("monitor connections", Duration::from_secs(5), || async {
        let mut total = 0;
        for node in cluster.nodes() {
            let Ok(mut conn) = node.root().await else {
                return false;
            };
            let n: Option<i64> = conn
                .exec_first(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?",
                    (MONITOR.user,),
                )
                .await
                .ok()
                .flatten();
            total += n.unwrap_or(-100);
        }
        total == count
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn statements_time_out_by_default_or_per_call() {
    let (cluster, pool, shutdown) = cluster_and_pool(0, |b| {
        b.pool_config(
            PoolConfig::default()
                .max_size(1)
                .statement_timeout(Some(Duration::from_millis(300))),
        )
    })
    .await;
    let mut conn = pool.writer().await.unwrap();
    let first: Option<u64> = conn.query_first("SELECT CONNECTION_ID()").await.unwrap();
    drop(conn);
    let started = std::time::Instant::now();
    let err = pool
        .query_drop("/* foobar:primary */ SELECT SLEEP(3)")
        .await
        .expect_err("too slow");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    match &err {
        Error::StatementTimeout { host, after } => {
            assert_eq!(host, &cluster.primary().address());
            assert_eq!(*after, Duration::from_millis(300));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.is_connection_error());
    // A longer timeout for one call.
    let slept: Option<i64> = pool
        .with_timeout(Duration::from_secs(5))
        .query_first("/* foobar:primary */ SELECT SLEEP(1)")
        .await
        .unwrap();
    assert_eq!(slept, Some(0));
    // The timed-out connection was closed, not reused.
    let mut conn = pool.writer().await.unwrap();
    let now: Option<u64> = conn.query_first("SELECT CONNECTION_ID()").await.unwrap();
    assert_ne!(first, now);
    // And the same on a connection, a session, a transaction.
    let err = (&mut conn)
        .with_timeout(Duration::from_millis(100))
        .query_drop("SELECT SLEEP(1)")
        .await
        .expect_err("too slow");
    assert!(matches!(err, Error::StatementTimeout { .. }), "{err}");
    drop(conn);
    let mut session = pool.session();
    let err = (&mut session)
        .with_timeout(Duration::from_millis(100))
        .query_drop("SELECT SLEEP(1)")
        .await
        .expect_err("too slow");
    assert!(matches!(err, Error::StatementTimeout { .. }), "{err}");
    shutdown.trigger();
}

#[tokio::test]
async fn a_write_stuck_on_semi_sync_fails_at_its_timeout() {
    support::init_tracing();
    let cluster = foobar_db::sandbox::Cluster::builder()
        .replicas(1)
        .semi_sync(true)
        .start()
        .await
        .unwrap();
    let shutdown = foobar_core::Shutdown::new();
    let pool = support::builder(&cluster)
        .pool_config(PoolConfig::default().statement_timeout(Some(Duration::from_millis(500))))
        .build(&shutdown)
        .await
        .unwrap();
    pool.query_drop("CREATE TABLE t (id INT)").await.unwrap();
    // The only replica stops acknowledging: every commit now waits.
    cluster.replicas()[0]
        .run(&["STOP SLAVE IO_THREAD"])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = pool
        .query_drop("INSERT INTO t VALUES (1)")
        .await
        .expect_err("no acknowledgement");
    assert!(matches!(err, Error::StatementTimeout { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.to_string().contains("may still have committed"),
        "{err}"
    );
    shutdown.trigger();
}

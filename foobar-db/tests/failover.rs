//! Failover against real MariaDB: kill -9 the primary under a steady write
//! load, in both modes.

mod support;

use std::time::{Duration, Instant};

use foobar_db::mysql_async::prelude::Queryable;
use foobar_db::sandbox::{replicate_from, wait_for, Cluster, Node};
use foobar_db::{Error, Executor, FailoverConfig, FailoverMode, RwPool};
use support::{builder, init_tracing, WriteLoad};

async fn read_only(node: &Node) -> Option<i64> {
    let mut conn = node.root().await.ok()?;
    conn.query_first("SELECT @@global.read_only").await.ok()?
}

async fn wait_writer(pool: &RwPool, address: &str) {
    let p = pool.clone();
    let address = address.to_owned();
    wait_for("writer", Duration::from_secs(10), move || {
        let p = p.clone();
        let address = address.clone();
        async move { p.topology().writer() == Some(address.as_str()) }
    })
    .await
    .unwrap();
}

/// Waits for some acknowledged writes so the load is steady before the kill.
async fn wait_acked(cluster: &Cluster, primary: usize, count: i64) {
    wait_for("load running", Duration::from_secs(10), || async {
        let Ok(mut conn) = cluster.node(primary).root().await else {
            return false;
        };
        let n: Option<i64> = conn
            .query_first("SELECT COUNT(*) FROM app.writes")
            .await
            .ok()
            .flatten();
        n.unwrap_or(0) >= count
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn follows_an_external_promotion_and_fences_the_old_primary() {
    init_tracing();
    let mut cluster = Cluster::builder().replicas(2).start().await.unwrap();
    let shutdown = foobar_core::Shutdown::new();
    let pool = builder(&cluster)
        .failover(FailoverConfig::new(FailoverMode::FollowExternal))
        .no_writer_timeout(Duration::from_secs(3))
        .build(&shutdown)
        .await
        .unwrap();
    support::wait_replicas_up(&pool, 2).await;
    pool.query_drop("CREATE TABLE writes (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();

    let load = WriteLoad::start(pool.clone(), 50_000, Duration::from_secs(30));
    wait_acked(&cluster, 0, 100).await;
    let killed_at = Instant::now();
    cluster.primary_mut().kill().await;

    // The external promoter: replica1 becomes primary, replica2 follows it.
    let new_primary = cluster.node(1);
    new_primary
        .run(&["STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = 0"])
        .await
        .unwrap();
    replicate_from(cluster.node(2), new_primary.port())
        .await
        .unwrap();
    wait_writer(&pool, &new_primary.address()).await;

    // Writes resume on the new primary.
    load.wait_success_sent_after(killed_at, Duration::from_secs(10))
        .await;
    let report = load.stop().await;
    let recovered = report
        .recovery_after(killed_at)
        .expect("a write sent after the kill succeeded");
    eprintln!(
        "follow mode: {} acked, {} errors, kill → first write {:?}",
        report.acked.len(),
        report.errors,
        recovered
    );
    assert!(recovered < Duration::from_secs(5));
    // Only writes already sent to the dying primary fail; later ones wait
    // for the new writer.
    assert!(report.errors <= 5, "{} failed writes", report.errors);
    assert_eq!(pool.topology().failovers(), 1);

    // The old primary comes back writable (as it was started): fenced.
    cluster.primary_mut().start().await.unwrap();
    wait_for("old primary fenced", Duration::from_secs(10), || async {
        read_only(cluster.primary()).await == Some(1)
    })
    .await
    .unwrap();
    assert_eq!(
        pool.topology().writer(),
        Some(cluster.node(1).address().as_str())
    );
    let port: Option<u16> = pool.query_first("SELECT @@port FOR UPDATE").await.unwrap();
    assert_eq!(port, Some(cluster.node(1).port()));
    shutdown.trigger();
}

#[tokio::test]
async fn auto_promotes_the_most_advanced_replica_without_losing_acknowledged_writes() {
    init_tracing();
    let mut cluster = Cluster::builder()
        .replicas(2)
        .semi_sync(true)
        .start()
        .await
        .unwrap();
    let shutdown = foobar_core::Shutdown::new();
    let pool = builder(&cluster)
        .failover(support::auto_failover(true))
        .no_writer_timeout(Duration::from_secs(3))
        .build(&shutdown)
        .await
        .unwrap();
    support::wait_replicas_up(&pool, 2).await;
    pool.query_drop("CREATE TABLE writes (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();

    let load = WriteLoad::start(pool.clone(), 50_000, Duration::from_secs(30));
    wait_acked(&cluster, 0, 300).await;
    let killed_at = Instant::now();
    cluster.primary_mut().kill().await;

    let p = pool.clone();
    let primary = cluster.primary().address();
    wait_for("promotion", Duration::from_secs(10), move || {
        let p = p.clone();
        let primary = primary.clone();
        async move { p.topology().writer().is_some_and(|w| w != primary) }
    })
    .await
    .unwrap();
    let writer = pool.topology().writer().unwrap().to_owned();
    let new_index = cluster
        .nodes()
        .iter()
        .position(|n| n.address() == writer)
        .unwrap();
    load.wait_success_sent_after(killed_at, Duration::from_secs(10))
        .await;
    let report = load.stop().await;
    let recovered = report
        .recovery_after(killed_at)
        .expect("a write sent after the kill succeeded");
    eprintln!(
        "auto mode: {} acked, {} errors, kill → first write {:?}",
        report.acked.len(),
        report.errors,
        recovered
    );
    assert!(recovered < Duration::from_secs(5));
    // Only writes already sent to the dying primary fail; later ones wait
    // for the new writer.
    assert!(report.errors <= 5, "{} failed writes", report.errors);

    // Every acknowledged write is on the new primary.
    let mut conn = cluster.node(new_index).root().await.unwrap();
    let present: Vec<i64> = conn
        .query("SELECT id FROM app.writes ORDER BY id")
        .await
        .unwrap();
    let present: std::collections::HashSet<i64> = present.into_iter().collect();
    let missing: Vec<&i64> = report
        .acked
        .iter()
        .filter(|id| !present.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let roles: Option<(i64, i64, i64)> = conn
        .query_first(
            "SELECT @@global.read_only, @@global.rpl_semi_sync_master_enabled, \
             @@global.rpl_semi_sync_slave_enabled",
        )
        .await
        .unwrap();
    assert_eq!(
        roles,
        Some((0, 1, 0)),
        "writable, semi-sync primary side on, replica side off"
    );

    // The other replica follows the new primary.
    let other = (1..3).find(|i| *i != new_index).unwrap();
    cluster
        .wait_replicated(new_index, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| {
            panic!("{e}\n{}", cluster.node(other).log_tail());
        });

    // The old primary, restarted, is fenced: read-only.
    cluster.primary_mut().start().await.unwrap();
    wait_for("old primary fenced", Duration::from_secs(10), || async {
        read_only(cluster.primary()).await == Some(1)
    })
    .await
    .unwrap();
    assert_eq!(pool.topology().writer(), Some(writer.as_str()));
    assert_eq!(pool.topology().failovers(), 1);
    let p = pool.clone();
    wait_for("fencing done", Duration::from_secs(10), move || {
        let p = p.clone();
        async move {
            p.topology()
                .events()
                .iter()
                .any(|e| e.kind.starts_with("fence"))
        }
    })
    .await
    .unwrap();
    let events = pool.topology().events();
    assert!(events.iter().any(|e| e.kind == "fenced"), "{events:#?}");
    let mut old = cluster.primary().root().await.unwrap();
    let old_roles: Option<(i64, i64)> = old
        .query_first("SELECT @@global.read_only, @@global.rpl_semi_sync_master_enabled")
        .await
        .unwrap();
    assert_eq!(
        old_roles,
        Some((1, 0)),
        "fenced: read-only, no semi-sync primary side"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn writes_fail_with_no_writer_and_never_reach_a_replica() {
    init_tracing();
    let mut cluster = Cluster::builder().replicas(1).start().await.unwrap();
    let shutdown = foobar_core::Shutdown::new();
    let pool = builder(&cluster)
        .no_writer_timeout(Duration::from_millis(500))
        .build(&shutdown)
        .await
        .unwrap();
    support::wait_replicas_up(&pool, 1).await;
    pool.query_drop("CREATE TABLE t (id INT)").await.unwrap();
    cluster
        .wait_replicated(0, Duration::from_secs(5))
        .await
        .unwrap();
    cluster.primary_mut().kill().await;
    let p = pool.clone();
    wait_for("writer lost", Duration::from_secs(5), move || {
        let p = p.clone();
        async move { p.topology().writer().is_none() }
    })
    .await
    .unwrap();

    assert!(
        !foobar_core::status::StatusSource::ready(&pool),
        "not ready without a writer"
    );
    let started = Instant::now();
    let err = pool
        .query_drop("INSERT INTO t VALUES (1)")
        .await
        .expect_err("no writer");
    assert!(matches!(err, Error::NoWriter { .. }), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(450));
    // Reads still work, from the replica.
    let port = support::port_of_read(&pool).await;
    assert_eq!(port, cluster.replicas()[0].port());
    let mut conn = cluster.replicas()[0].root().await.unwrap();
    let rows: Option<i64> = conn
        .query_first("SELECT COUNT(*) FROM app.t")
        .await
        .unwrap();
    assert_eq!(rows, Some(0));
    shutdown.trigger();
}

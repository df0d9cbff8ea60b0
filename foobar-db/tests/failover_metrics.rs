//! What a failover could not save is counted: transactions thrown away by
//! a promotion forced past its drain timeout, and transactions a fenced
//! former primary holds that the writer lacks. The recorder is global:
//! this file holds one test, so its process has it to itself.

mod support;

use std::time::Duration;

use foobar_db::mysql_async::prelude::Queryable;
use foobar_db::sandbox::{wait_for, Cluster};
use foobar_db::{Executor, RwPool};
use metrics_exporter_prometheus::PrometheusBuilder;
use support::{auto_failover, builder, init_tracing};

async fn wait_new_writer(pool: &RwPool, old: &str) -> String {
    let p = pool.clone();
    let old = old.to_owned();
    wait_for("a new writer", Duration::from_secs(15), move || {
        let p = p.clone();
        let old = old.clone();
        async move { p.topology().writer().is_some_and(|w| w != old) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", pool.status()));
    pool.topology().writer().unwrap().to_owned()
}

#[tokio::test]
async fn lost_and_diverged_transactions_are_counted_and_named() {
    let prometheus = PrometheusBuilder::new().install_recorder().unwrap();
    init_tracing();

    // A diverged former primary: it committed two transactions that no
    // replica received, then died.
    let mut cluster = Cluster::builder().replicas(2).start().await.unwrap();
    let shutdown = foobar_core::Shutdown::new();
    let pool = builder(&cluster)
        .failover(auto_failover(false))
        .build(&shutdown)
        .await
        .unwrap();
    support::wait_replicas_up(&pool, 2).await;
    pool.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    cluster
        .wait_replicated(0, Duration::from_secs(5))
        .await
        .unwrap();
    for replica in cluster.replicas() {
        replica.run(&["STOP SLAVE IO_THREAD"]).await.unwrap();
    }
    cluster
        .primary()
        .run(&[
            "INSERT INTO app.t VALUES (1)",
            "INSERT INTO app.t VALUES (2)",
        ])
        .await
        .unwrap();
    let old = cluster.primary().address();
    cluster.primary_mut().kill().await;
    let writer = wait_new_writer(&pool, &old).await;
    cluster.primary_mut().start().await.unwrap();
    let p = pool.clone();
    wait_for("diverged", Duration::from_secs(15), move || {
        let p = p.clone();
        async move { p.topology().events().iter().any(|e| e.kind == "diverged") }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:#?}", pool.topology().events()));
    let events = pool.topology().events();
    let diverged = events.iter().find(|e| e.kind == "diverged").unwrap();
    assert!(
        diverged.message.contains(&old)
            && diverged.message.contains("holds 2 transaction(s)")
            && diverged.message.contains(&writer),
        "{}",
        diverged.message
    );
    let server_id = cluster.primary().server_id();
    assert!(
        diverged.message.contains(&format!("0-{server_id}-")),
        "names the GTIDs: {}",
        diverged.message
    );
    let mut old_conn = cluster.primary().root().await.unwrap();
    let read_only: Option<i64> = old_conn
        .query_first("SELECT @@global.read_only")
        .await
        .unwrap();
    assert_eq!(read_only, Some(1), "it stays fenced");
    let text = prometheus.render();
    let line = format!("foobar_db_diverged_transactions{{host=\"{old}\"}} 2");
    assert!(text.contains(&line), "no {line} in:\n{text}");
    shutdown.trigger();
    drop(cluster);

    // A promotion forced past its drain timeout: one replica received five
    // transactions it will apply only a minute later, the other none.
    let mut cluster = Cluster::builder().replicas(2).start().await.unwrap();
    let shutdown = foobar_core::Shutdown::new();
    let pool = builder(&cluster)
        .failover(
            auto_failover(false)
                .drain_timeout(Duration::from_millis(500))
                .promote_after_drain_timeout(true),
        )
        .build(&shutdown)
        .await
        .unwrap();
    support::wait_replicas_up(&pool, 2).await;
    pool.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    cluster
        .wait_replicated(0, Duration::from_secs(5))
        .await
        .unwrap();
    cluster
        .node(1)
        .run(&[
            "STOP SLAVE",
            "CHANGE MASTER TO MASTER_DELAY = 60",
            "START SLAVE",
        ])
        .await
        .unwrap();
    cluster
        .node(2)
        .run(&["STOP SLAVE IO_THREAD"])
        .await
        .unwrap();
    for id in 0..5 {
        pool.exec_drop("INSERT INTO t VALUES (?)", (id,))
            .await
            .unwrap();
    }
    let mut primary = cluster.primary().root().await.unwrap();
    let position: Option<String> = primary
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap();
    wait_for("received", Duration::from_secs(5), || async {
        let mut conn = cluster.node(1).root().await.unwrap();
        let row: Option<foobar_db::mysql_async::Row> =
            conn.query_first("SHOW SLAVE STATUS").await.unwrap();
        row.and_then(|r| r.get::<String, _>("Gtid_IO_Pos")) == position
    })
    .await
    .unwrap();
    drop(primary);
    let old = cluster.primary().address();
    cluster.primary_mut().kill().await;
    let writer = wait_new_writer(&pool, &old).await;
    assert_eq!(
        writer,
        cluster.node(1).address(),
        "the one that received the most"
    );
    let events = pool.topology().events();
    let lost = events
        .iter()
        .find(|e| e.kind == "lost_transactions")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert!(
        lost.message.contains("5 received transaction(s)"),
        "{}",
        lost.message
    );
    let text = prometheus.render();
    assert!(
        text.contains("foobar_db_failover_lost_transactions_total 5"),
        "{text}"
    );
    shutdown.trigger();
}

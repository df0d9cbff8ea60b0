//! The test harness itself: replication works, nodes stop, restart and
//! rejoin.

mod support;

use std::time::Duration;

use foobar_db::mysql_async::prelude::Queryable;
use foobar_db::sandbox::{wait_for, Cluster, APP};

#[tokio::test]
async fn nodes_replicate_stop_restart_and_rejoin() {
    support::init_tracing();
    let mut cluster = Cluster::builder().replicas(2).start().await.unwrap();
    let ports: std::collections::HashSet<u16> = cluster.nodes().iter().map(|n| n.port()).collect();
    assert_eq!(ports.len(), 3);

    let primary = cluster.primary();
    primary
        .run(&[
            "CREATE TABLE app.t (id INT PRIMARY KEY)",
            "INSERT INTO app.t VALUES (1)",
        ])
        .await
        .unwrap();
    cluster
        .wait_replicated(0, Duration::from_secs(5))
        .await
        .unwrap();

    // The application account is read-only on a replica.
    let mut app = foobar_db::mysql_async::Conn::from_url(cluster.replicas()[0].app_url())
        .await
        .unwrap();
    let err = app
        .query_drop("INSERT INTO t VALUES (2)")
        .await
        .expect_err("read-only");
    assert!(
        err.to_string().contains("read-only") || err.to_string().contains("1290"),
        "{err} ({})",
        APP.user
    );
    drop(app);

    // A clean stop and a start: replication resumes on its own.
    cluster.node_mut(1).stop().await;
    assert!(!cluster.node_mut(1).is_running());
    cluster
        .primary()
        .run(&["INSERT INTO app.t VALUES (2)"])
        .await
        .unwrap();
    cluster.node_mut(1).start().await.unwrap();
    cluster
        .wait_replicated(0, Duration::from_secs(10))
        .await
        .unwrap();

    // The primary killed and restarted: replicas reconnect within seconds
    // (MASTER_CONNECT_RETRY = 1).
    cluster.primary_mut().restart().await.unwrap();
    cluster
        .primary()
        .run(&["INSERT INTO app.t VALUES (3)"])
        .await
        .unwrap();
    cluster
        .wait_replicated(0, Duration::from_secs(10))
        .await
        .unwrap();
    for replica in cluster.replicas() {
        let mut conn = replica.root().await.unwrap();
        let n: Option<i64> = conn
            .query_first("SELECT COUNT(*) FROM app.t")
            .await
            .unwrap();
        assert_eq!(n, Some(3), "{}", replica.name());
    }

    // Processes die with the cluster.
    let dir = cluster.primary().dir().to_owned();
    let port = cluster.primary().port();
    drop(cluster);
    assert!(!dir.exists());
    wait_for("port closed", Duration::from_secs(5), || async move {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    })
    .await
    .unwrap();
}

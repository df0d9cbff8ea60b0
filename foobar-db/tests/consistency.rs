//! Read-your-writes under a deliberately delayed replica.

mod support;

use std::time::{Duration, Instant};

use foobar_db::Consistency;
use support::cluster_and_pool;

/// Makes the only replica apply everything `seconds` late.
async fn delay_replica(cluster: &foobar_db::sandbox::Cluster, seconds: u32) {
    let delay = format!("CHANGE MASTER TO MASTER_DELAY = {seconds}");
    cluster.replicas()[0]
        .run(&["STOP SLAVE", &delay, "START SLAVE"])
        .await
        .unwrap();
}

#[tokio::test]
async fn eventual_reads_miss_a_fresh_write_on_a_delayed_replica() {
    let (cluster, pool, shutdown) =
        cluster_and_pool(1, |b| b.max_replica_lag(Duration::from_secs(60))).await;
    pool.query_drop("CREATE TABLE notes (id INT PRIMARY KEY)")
        .await
        .unwrap();
    cluster
        .wait_replicated(0, Duration::from_secs(5))
        .await
        .unwrap();
    delay_replica(&cluster, 3).await;
    support::wait_replicas_up(&pool, 1).await;

    pool.query_drop("INSERT INTO notes VALUES (1)")
        .await
        .unwrap();
    let row: Option<(u16, Option<i32>)> = pool
        .query_first("SELECT @@port, (SELECT id FROM notes WHERE id = 1)")
        .await
        .unwrap();
    assert_eq!(
        row,
        Some((cluster.replicas()[0].port(), None)),
        "the replica is behind"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn gtid_mode_falls_back_to_the_primary_when_the_replica_is_behind() {
    let (cluster, pool, shutdown) = cluster_and_pool(1, |b| {
        b.max_replica_lag(Duration::from_secs(60))
            .consistency(Consistency::gtid(Duration::from_millis(200)))
    })
    .await;
    pool.query_drop("CREATE TABLE notes (id INT PRIMARY KEY)")
        .await
        .unwrap();
    cluster
        .wait_replicated(0, Duration::from_secs(5))
        .await
        .unwrap();
    delay_replica(&cluster, 5).await;
    support::wait_replicas_up(&pool, 1).await;

    pool.query_drop("INSERT INTO notes VALUES (1)")
        .await
        .unwrap();
    let row: Option<(u16, Option<i32>)> = pool
        .query_first("SELECT @@port, (SELECT id FROM notes WHERE id = 1)")
        .await
        .unwrap();
    assert_eq!(
        row,
        Some((cluster.primary().port(), Some(1))),
        "read-your-writes via the primary"
    );

    // Same within a session.
    let mut session = pool.session();
    session
        .exec_drop("INSERT INTO notes VALUES (?)", (2,))
        .await
        .unwrap();
    let id: Option<i32> = session
        .query_first("SELECT id FROM notes WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(id, Some(2));
    shutdown.trigger();
}

#[tokio::test]
async fn gtid_mode_waits_on_the_replica_when_it_catches_up_in_time() {
    let (cluster, pool, shutdown) = cluster_and_pool(1, |b| {
        b.max_replica_lag(Duration::from_secs(60))
            .consistency(Consistency::gtid(Duration::from_secs(10)))
    })
    .await;
    pool.query_drop("CREATE TABLE notes (id INT PRIMARY KEY)")
        .await
        .unwrap();
    cluster
        .wait_replicated(0, Duration::from_secs(5))
        .await
        .unwrap();
    delay_replica(&cluster, 1).await;
    support::wait_replicas_up(&pool, 1).await;

    pool.query_drop("INSERT INTO notes VALUES (1)")
        .await
        .unwrap();
    let started = Instant::now();
    let row: Option<(u16, Option<i32>)> = pool
        .query_first("SELECT @@port, (SELECT id FROM notes WHERE id = 1)")
        .await
        .unwrap();
    assert_eq!(
        row,
        Some((cluster.replicas()[0].port(), Some(1))),
        "served by the replica, after waiting"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the replica really was behind"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn primary_after_write_window() {
    let (cluster, pool, shutdown) = cluster_and_pool(1, |b| {
        b.max_replica_lag(Duration::from_secs(60))
            .consistency(Consistency::PrimaryAfterWrite(Duration::from_millis(500)))
    })
    .await;
    pool.query_drop("CREATE TABLE notes (id INT PRIMARY KEY)")
        .await
        .unwrap();
    cluster
        .wait_replicated(0, Duration::from_secs(5))
        .await
        .unwrap();
    delay_replica(&cluster, 5).await;
    support::wait_replicas_up(&pool, 1).await;
    tokio::time::sleep(Duration::from_millis(600)).await; // let the CREATE's window pass

    assert_eq!(
        support::port_of_read(&pool).await,
        cluster.replicas()[0].port()
    );
    pool.query_drop("INSERT INTO notes VALUES (1)")
        .await
        .unwrap();
    let row: Option<(u16, Option<i32>)> = pool
        .query_first("SELECT @@port, (SELECT id FROM notes WHERE id = 1)")
        .await
        .unwrap();
    assert_eq!(row, Some((cluster.primary().port(), Some(1))));
    tokio::time::sleep(Duration::from_millis(600)).await; // the window closes
    assert_eq!(
        support::port_of_read(&pool).await,
        cluster.replicas()[0].port()
    );
    shutdown.trigger();
}

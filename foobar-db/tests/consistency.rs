//! Read-your-writes under a deliberately delayed replica.

mod support;

use std::time::{Duration, Instant};

use foobar_db::{Consistency, Executor};
use support::cluster_and_pool;

/// Makes the only replica apply everything `seconds` late, and waits until
/// the pool reads from it again.
async fn delay_replica(
    cluster: &foobar_db::sandbox::Cluster,
    pool: &foobar_db::RwPool,
    seconds: u32,
) {
    let delay = format!("CHANGE MASTER TO MASTER_DELAY = {seconds}");
    cluster.replicas()[0]
        .run(&["STOP SLAVE", &delay, "START SLAVE"])
        .await
        .unwrap();
    wait_reads_on_replica(cluster, pool).await;
}

/// Waits until five reads in a row are served by the replica.
async fn wait_reads_on_replica(cluster: &foobar_db::sandbox::Cluster, pool: &foobar_db::RwPool) {
    let replica = cluster.replicas()[0].port();
    let in_a_row = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    foobar_db::sandbox::wait_for("reads on the replica", Duration::from_secs(10), || {
        let pool = pool.clone();
        let in_a_row = in_a_row.clone();
        async move {
            use std::sync::atomic::Ordering;
            if support::port_of_read(&pool).await == replica {
                in_a_row.fetch_add(1, Ordering::Relaxed) + 1 >= 5
            } else {
                in_a_row.store(0, Ordering::Relaxed);
                false
            }
        }
    })
    .await
    .unwrap();
}

/// A primary and one replica delayed by `seconds`, a `notes` table on
/// both, and a pool with `consistency` that reads from the replica again.
async fn delayed_notes(
    consistency: Consistency,
    seconds: u32,
) -> (
    foobar_db::sandbox::Cluster,
    foobar_db::RwPool,
    foobar_core::Shutdown,
) {
    let (cluster, pool, shutdown) = cluster_and_pool(1, |b| {
        b.max_replica_lag(Duration::from_secs(60))
            .consistency(consistency)
    })
    .await;
    pool.query_drop("CREATE TABLE notes (id INT PRIMARY KEY)")
        .await
        .unwrap();
    cluster
        .wait_replicated(0, Duration::from_secs(5))
        .await
        .unwrap();
    delay_replica(&cluster, &pool, seconds).await;
    (cluster, pool, shutdown)
}

/// Which server answered a routed read, and whether it had note 1.
async fn read_note_1(pool: &foobar_db::RwPool) -> Option<(u16, Option<i32>)> {
    pool.query_first("SELECT @@port, (SELECT id FROM notes WHERE id = 1)")
        .await
        .unwrap()
}

#[tokio::test]
async fn eventual_reads_miss_a_fresh_write_on_a_delayed_replica() {
    let (cluster, pool, shutdown) = delayed_notes(Consistency::Eventual, 3).await;

    pool.query_drop("INSERT INTO notes VALUES (1)")
        .await
        .unwrap();
    let row = read_note_1(&pool).await;
    assert_eq!(
        row,
        Some((cluster.replicas()[0].port(), None)),
        "the replica is behind"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn gtid_mode_falls_back_to_the_primary_when_the_replica_is_behind() {
    let (cluster, pool, shutdown) =
        delayed_notes(Consistency::gtid(Duration::from_millis(200)), 5).await;

    pool.query_drop("INSERT INTO notes VALUES (1)")
        .await
        .unwrap();
    let row = read_note_1(&pool).await;
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
    // The replica's delay counts from the event's timestamp in whole
    // seconds: 1 s could hold the row back for only a few milliseconds,
    // 2 s holds it back for more than one.
    let (cluster, pool, shutdown) =
        delayed_notes(Consistency::gtid(Duration::from_secs(10)), 2).await;

    pool.query_drop("INSERT INTO notes VALUES (1)")
        .await
        .unwrap();
    let started = Instant::now();
    let row = read_note_1(&pool).await;
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
    let (cluster, pool, shutdown) = delayed_notes(
        Consistency::PrimaryAfterWrite(Duration::from_millis(500)),
        5,
    )
    .await;
    pool.query_drop("INSERT INTO notes VALUES (1)")
        .await
        .unwrap();
    let row = read_note_1(&pool).await;
    assert_eq!(row, Some((cluster.primary().port(), Some(1))));
    // Once the window has passed, reads go back to the replica.
    let closed = Instant::now();
    wait_reads_on_replica(&cluster, &pool).await;
    assert!(
        closed.elapsed() >= Duration::from_millis(300),
        "not before the window ends"
    );
    shutdown.trigger();
}

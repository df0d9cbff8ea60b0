//! What a failover drill with a user-style program found, each fixed:
//! typed errors at once for bad credentials, a read-only primary and a
//! missing privilege; hosts verified whatever the hint says; fencing that
//! backs off and folds its events; no promotion past a drain timeout.

mod support;

use std::time::{Duration, Instant};

use foobar_db::failover::{Cause, PromotionBlocked, WriterUnavailable};
use foobar_db::mysql_async::prelude::Queryable;
use foobar_db::sandbox::{replicate_from, wait_for, Cluster, Node, APP, MONITOR};
use foobar_db::{ConfigError, Error, Executor, FailoverConfig, FailoverMode, RwPool};
use support::{auto_failover, builder, init_tracing};

fn app_url_with_password(node: &Node, password: &str) -> String {
    node.app_url().replace(APP.password, password)
}

async fn read_only(node: &Node) -> Option<i64> {
    let mut conn = node.root().await.ok()?;
    conn.query_first("SELECT @@global.read_only").await.ok()?
}

#[tokio::test]
async fn bad_credentials_fail_at_once_with_their_own_error() {
    init_tracing();
    let cluster = Cluster::builder().replicas(1).start().await.unwrap();
    let shutdown = foobar_core::Shutdown::new();

    // The monitor account is refused: nothing can be known.
    let pool = RwPool::builder()
        .primary(cluster.primary().app_url())
        .replica(cluster.replicas()[0].app_url())
        .monitor_credentials(MONITOR.user, "wrong")
        .build(&shutdown)
        .await
        .unwrap();
    for read in [false, true] {
        let started = Instant::now();
        let sql = if read {
            "SELECT 1"
        } else {
            "CREATE TABLE x (id INT)"
        };
        let err = pool.query_drop(sql).await.expect_err("refused");
        assert!(started.elapsed() < Duration::from_millis(200), "at once");
        match &err {
            Error::AccessDenied { user, .. } => assert_eq!(user, MONITOR.user),
            other => panic!("unexpected {other}"),
        }
        assert_eq!(err.server_code(), Some(1045));
    }
    assert!(matches!(
        pool.status().unavailable,
        Some(WriterUnavailable::AccessDenied { .. })
    ));

    // The application's account is refused: its first query says so.
    let twice = builder(&cluster)
        .primary(app_url_with_password(cluster.primary(), "wrong"))
        .build(&shutdown)
        .await;
    assert!(
        matches!(twice, Err(Error::Config(ConfigError::DuplicateHost { .. }))),
        "the same host twice is a configuration error"
    );
    let pool = RwPool::builder()
        .primary(app_url_with_password(cluster.primary(), "wrong"))
        .replica(app_url_with_password(&cluster.replicas()[0], "wrong"))
        .monitor_credentials(MONITOR.user, MONITOR.password)
        .build(&shutdown)
        .await
        .unwrap();
    support::wait_replicas_up(&pool, 1).await;
    let started = Instant::now();
    let err = pool
        .query_drop("CREATE TABLE x (id INT)")
        .await
        .expect_err("refused");
    assert!(started.elapsed() < Duration::from_millis(500), "at once");
    match &err {
        Error::AccessDenied { host, user } => {
            assert_eq!(host, &cluster.primary().address());
            assert_eq!(user, APP.user);
        }
        other => panic!("unexpected {other}"),
    }
    let err = pool.query_drop("SELECT 1").await.expect_err("refused");
    assert!(matches!(err, Error::AccessDenied { .. }), "{err}");
    shutdown.trigger();
}

#[tokio::test]
async fn a_read_only_primary_is_named_at_once() {
    init_tracing();
    let cluster = Cluster::builder().replicas(1).start().await.unwrap();
    cluster
        .primary()
        .run(&["SET GLOBAL read_only = 1"])
        .await
        .unwrap();
    let shutdown = foobar_core::Shutdown::new();
    let pool = builder(&cluster).build(&shutdown).await.unwrap();
    let started = Instant::now();
    let err = pool
        .query_drop("CREATE TABLE x (id INT)")
        .await
        .expect_err("nothing writable");
    assert!(started.elapsed() < Duration::from_millis(200), "at once");
    match &err {
        Error::ReadOnlyPrimary { host } => assert_eq!(host, &cluster.primary().address()),
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("read-only"), "{err}");
    // Set writable, it is taken.
    cluster
        .primary()
        .run(&["SET GLOBAL read_only = 0"])
        .await
        .unwrap();
    let p = pool.clone();
    wait_for("writer", Duration::from_secs(5), move || {
        let p = p.clone();
        async move { p.topology().writer().is_some() }
    })
    .await
    .unwrap();
    pool.query_drop("CREATE TABLE x (id INT)").await.unwrap();
    shutdown.trigger();
}

#[tokio::test]
async fn a_replica_set_writable_by_mistake_never_takes_writes_whatever_the_hint() {
    init_tracing();
    let cluster = Cluster::builder().replicas(1).start().await.unwrap();
    let replica = &cluster.replicas()[0];
    replica.run(&["SET GLOBAL read_only = 0"]).await.unwrap();
    let shutdown = foobar_core::Shutdown::new();
    // Hinted the wrong way round, too.
    let pool = RwPool::builder()
        .monitor_credentials(MONITOR.user, MONITOR.password)
        .primary(replica.app_url())
        .replica(cluster.primary().app_url())
        .build(&shutdown)
        .await
        .unwrap();
    assert_eq!(
        pool.topology().writer(),
        Some(cluster.primary().address().as_str())
    );
    pool.query_drop("CREATE TABLE w (id INT)").await.unwrap();
    pool.query_drop("INSERT INTO w VALUES (7)").await.unwrap();
    let mut direct = cluster.primary().root().await.unwrap();
    let on_primary: Option<i64> = direct
        .query_first("SELECT COUNT(*) FROM app.w")
        .await
        .unwrap();
    assert_eq!(on_primary, Some(1), "the write went to the primary");
    let events = pool.topology().events();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "writable_replica" && e.message.contains(&replica.address())),
        "{events:#?}"
    );
    shutdown.trigger();
}

#[tokio::test]
async fn fencing_without_usable_credentials_backs_off_and_folds_its_events() {
    init_tracing();
    let mut cluster = Cluster::builder().replicas(2).start().await.unwrap();
    let shutdown = foobar_core::Shutdown::new();
    let pool = builder(&cluster)
        .failover_credentials("nobody", "wrong")
        .failover(FailoverConfig::new(FailoverMode::FollowExternal))
        .build(&shutdown)
        .await
        .unwrap();
    support::wait_replicas_up(&pool, 2).await;
    cluster.primary_mut().kill().await;
    let new_address = cluster.node(1).address();
    let new_primary = cluster.node(1);
    new_primary
        .run(&["STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = 0"])
        .await
        .unwrap();
    replicate_from(cluster.node(2), new_primary.port())
        .await
        .unwrap();
    let p = pool.clone();
    let address = new_address.clone();
    wait_for("the pool follows", Duration::from_secs(10), move || {
        let p = p.clone();
        let address = address.clone();
        async move { p.topology().writer() == Some(address.as_str()) }
    })
    .await
    .unwrap();

    // The old primary comes back writable; the pool may not fence it.
    cluster.primary_mut().start().await.unwrap();
    let started = Instant::now();
    let p = pool.clone();
    wait_for("a fence failed", Duration::from_secs(10), move || {
        let p = p.clone();
        async move {
            p.topology()
                .events()
                .iter()
                .any(|e| e.kind == "fence_failed")
        }
    })
    .await
    .unwrap();
    // 4 s of retries: after 250 ms, 500 ms, 1 s, 2 s.
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(started.elapsed())).await;
    let events = pool.topology().events();
    let failures: Vec<_> = events.iter().filter(|e| e.kind == "fence_failed").collect();
    assert_eq!(failures.len(), 1, "identical failures fold: {events:#?}");
    let failure = failures[0];
    assert!(
        (3..=6).contains(&failure.count),
        "{} attempts in 4 s",
        failure.count
    );
    assert!(
        failure.message.contains("nobody") && failure.message.contains("1045"),
        "{}",
        failure.message
    );
    assert!(events.len() < 30, "{} events", events.len());
    // It takes no traffic meanwhile.
    assert_eq!(pool.topology().writer(), Some(new_address.as_str()));
    assert_eq!(read_only(cluster.primary()).await, Some(0));
    shutdown.trigger();
}

#[tokio::test]
async fn a_failover_account_without_slave_monitor_is_named_before_any_failover() {
    init_tracing();
    let mut cluster = Cluster::builder().replicas(2).start().await.unwrap();
    // Everything promotion needs but reading replica status.
    cluster
        .primary()
        .run(&[
            "CREATE USER 'weak'@'127.0.0.1' IDENTIFIED BY 'weak'",
            "GRANT RELOAD, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, BINLOG ADMIN, \
             CONNECTION ADMIN, PROCESS ON *.* TO 'weak'@'127.0.0.1'",
            "GRANT CREATE, INSERT, DELETE, SELECT ON foobar_db.* TO 'weak'@'127.0.0.1'",
        ])
        .await
        .unwrap();
    cluster
        .wait_replicated(0, Duration::from_secs(5))
        .await
        .unwrap();
    let shutdown = foobar_core::Shutdown::new();
    let pool = builder(&cluster)
        .failover_credentials("weak", "weak")
        .failover(auto_failover(false))
        .build(&shutdown)
        .await
        .unwrap();
    support::wait_replicas_up(&pool, 2).await;
    let p = pool.clone();
    wait_for("the preflight", Duration::from_secs(10), move || {
        let p = p.clone();
        async move { p.topology().failover_status().blocked.is_some() }
    })
    .await
    .unwrap();
    let check = |blocked: Option<PromotionBlocked>| match blocked {
        Some(PromotionBlocked::MissingPrivilege {
            user, needed, code, ..
        }) => {
            assert_eq!(user, "weak");
            assert_eq!(code, 1227);
            assert!(needed.contains("SLAVE MONITOR"), "{needed}");
        }
        other => panic!("unexpected {other:?}"),
    };
    check(pool.topology().failover_status().blocked);
    let status = pool.status();
    assert!(
        status
            .promotion_blocked_text
            .as_deref()
            .is_some_and(|t| t.contains("SLAVE MONITOR") && t.contains("1227")),
        "{status:?}"
    );
    assert!(pool
        .topology()
        .events()
        .iter()
        .any(|e| e.kind == "failover_preflight" && e.message.contains("SLAVE MONITOR")));

    // The primary dies: no promotion, and the status says why.
    cluster.primary_mut().kill().await;
    let p = pool.clone();
    wait_for("the writer is lost", Duration::from_secs(5), move || {
        let p = p.clone();
        async move { p.topology().writer().is_none() }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    check(pool.topology().failover_status().blocked);
    assert!(pool.topology().writer().is_none());
    let err = pool
        .query_drop("CREATE TABLE x (id INT)")
        .await
        .expect_err("no writer");
    assert!(matches!(err, Error::NoWriter { .. }), "{err}");
    shutdown.trigger();
}

#[tokio::test]
async fn a_drain_that_times_out_stops_the_promotion_and_says_so() {
    init_tracing();
    let mut cluster = Cluster::builder().replicas(2).start().await.unwrap();
    let shutdown = foobar_core::Shutdown::new();
    let pool = builder(&cluster)
        .failover(auto_failover(false).drain_timeout(Duration::from_millis(500)))
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
    // The replicas receive but apply only after 60 s.
    for replica in cluster.replicas() {
        replica
            .run(&[
                "STOP SLAVE",
                "CHANGE MASTER TO MASTER_DELAY = 60",
                "START SLAVE",
            ])
            .await
            .unwrap();
    }
    for id in 0..5 {
        pool.exec_drop("INSERT INTO t VALUES (?)", (id,))
            .await
            .unwrap();
    }
    // Received by both replicas.
    let mut primary = cluster.primary().root().await.unwrap();
    let position: Option<String> = primary
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap();
    wait_for("received", Duration::from_secs(5), || async {
        let mut received = 0;
        for replica in cluster.replicas() {
            let mut conn = replica.root().await.unwrap();
            let row: Option<foobar_db::mysql_async::Row> =
                conn.query_first("SHOW SLAVE STATUS").await.unwrap();
            let io: Option<String> = row.and_then(|r| r.get("Gtid_IO_Pos"));
            if io == position {
                received += 1;
            }
        }
        received == 2
    })
    .await
    .unwrap();
    drop(primary);
    cluster.primary_mut().kill().await;

    let p = pool.clone();
    wait_for(
        "the promotion is called off",
        Duration::from_secs(10),
        move || {
            let p = p.clone();
            async move {
                matches!(
                    p.topology().failover_status().blocked,
                    Some(PromotionBlocked::Failed { ref error })
                        if matches!(error.cause, Cause::DrainTimedOut { missing: 5, .. })
                )
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", pool.topology().failover_status()));
    let events = pool.topology().events();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "promotion_failed" && e.message.contains("not promoting")),
        "{events:#?}"
    );
    assert!(pool.topology().writer().is_none());
    // Nothing was thrown away: both replicas still replicate, read-only.
    for replica in cluster.replicas() {
        assert_eq!(read_only(replica).await, Some(1));
    }
    shutdown.trigger();
}

#[tokio::test]
async fn configurations_that_cannot_work_are_refused_at_build() {
    let shutdown = foobar_core::Shutdown::new();
    let auto = |hosts: usize| {
        (0..hosts)
            .fold(RwPool::builder(), |b, i| {
                b.replica(format!("mysql://app:x@127.0.0.1:{}/app", 1 + i))
            })
            .failover(FailoverConfig::new(FailoverMode::AutoPromote))
    };
    let err = auto(2).build(&shutdown).await.expect_err("two hosts");
    assert!(
        matches!(
            err,
            Error::Config(ConfigError::TooFewHostsForMajority { hosts: 2 })
        ),
        "{err}"
    );
    let err = auto(3)
        .failover(
            FailoverConfig::new(FailoverMode::AutoPromote)
                .lock_timeout(Duration::from_secs(4))
                .step_timeout(Duration::from_secs(2)),
        )
        .build(&shutdown)
        .await
        .expect_err("steps as long as half the lock");
    assert!(
        matches!(err, Error::Config(ConfigError::StepOutlastsLease { .. })),
        "{err}"
    );
    let err = RwPool::builder()
        .build(&shutdown)
        .await
        .expect_err("no hosts");
    assert!(matches!(err, Error::Config(ConfigError::NoHosts)), "{err}");
}

#[test]
fn the_accounts_in_the_docs_list_the_same_privileges() {
    let readme = include_str!("../README.md");
    let builder_doc = include_str!("../src/route/builder.rs");
    let failover_doc = include_str!("../src/failover/mod.rs");
    for privilege in [
        "SLAVE MONITOR",
        "READ_ONLY ADMIN",
        "REPLICATION SLAVE ADMIN",
        "BINLOG ADMIN",
        "RELOAD",
        "CONNECTION ADMIN",
        "PROCESS",
        "CREATE, INSERT, DELETE, SELECT ON foobar_db.*",
        "SELECT ON foobar_db.*",
    ] {
        for (name, text) in [
            ("README", readme),
            ("builder", builder_doc),
            ("failover", failover_doc),
        ] {
            assert!(text.contains(privilege), "{name} does not list {privilege}");
        }
    }
}

//! Statement routing against a real primary and replicas.

mod support;

use std::time::Duration;

use foobar_db::mysql_async::prelude::Queryable;
use foobar_db::sandbox::wait_for;
use foobar_db::{Error, Executor, ReadFallback};
use support::{cluster_and_pool, port_of_read};

#[tokio::test]
async fn plain_selects_go_to_replicas_and_writes_to_the_primary() {
    let (cluster, pool, shutdown) = cluster_and_pool(2, |b| b).await;
    let primary = cluster.primary().port();
    let replicas: Vec<u16> = cluster.replicas().iter().map(|n| n.port()).collect();
    assert_eq!(
        pool.topology().writer(),
        Some(cluster.primary().address().as_str())
    );

    // Reads: both replicas serve, never the primary.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let port = port_of_read(&pool).await;
        assert_ne!(port, primary, "a plain SELECT reached the primary");
        seen.insert(port);
    }
    assert_eq!(
        seen.len(),
        2,
        "weighted round robin uses both replicas: {seen:?}"
    );
    assert!(seen.iter().all(|p| replicas.contains(p)));

    // A write through the routed API lands on the primary.
    pool.query_drop("CREATE TABLE items (id INT PRIMARY KEY, name TEXT)")
        .await
        .unwrap();
    pool.exec_drop("INSERT INTO items VALUES (?, ?)", (1, "one"))
        .await
        .unwrap();
    let mut direct = cluster.primary().root().await.unwrap();
    let name: Option<String> = direct
        .query_first("SELECT name FROM app.items WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("one"));

    // Statements the classifier sends to the primary, proven by @@port.
    for sql in [
        "SELECT @@port FOR UPDATE",
        "SELECT @@port LOCK IN SHARE MODE",
        "SELECT @@port + 0 * LAST_INSERT_ID()",
        "/* foobar:primary */ SELECT @@port",
    ] {
        let port: Option<(u16,)> = pool.query_first(sql).await.unwrap();
        assert_eq!(port.map(|p| p.0), Some(primary), "{sql}");
    }
    let hinted: Option<u16> = pool
        .query_first("SELECT /* foobar:replica */ @@port")
        .await
        .unwrap();
    assert_ne!(hinted, Some(primary));
    shutdown.trigger();
}

#[tokio::test]
async fn select_for_update_holds_a_lock_on_the_primary() {
    let (cluster, pool, shutdown) = cluster_and_pool(1, |b| b).await;
    pool.query_drop("CREATE TABLE accounts (id INT PRIMARY KEY, balance INT)")
        .await
        .unwrap();
    pool.query_drop("INSERT INTO accounts VALUES (1, 100)")
        .await
        .unwrap();

    let mut session = pool.session();
    session.query_drop("BEGIN").await.unwrap();
    let balance: Option<i32> = session
        .query_first("SELECT balance FROM accounts WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    assert_eq!(balance, Some(100));
    assert_eq!(
        session.held_host(),
        Some(cluster.primary().address().as_str())
    );

    // Another connection on the primary cannot take the row lock meanwhile.
    let mut other = cluster.primary().root().await.unwrap();
    other
        .query_drop("SET SESSION innodb_lock_wait_timeout = 1")
        .await
        .unwrap();
    let blocked = other
        .query_drop("SELECT balance FROM app.accounts WHERE id = 1 FOR UPDATE")
        .await
        .expect_err("the row is locked");
    assert!(
        blocked.to_string().contains("Lock wait timeout"),
        "{blocked}"
    );

    session
        .query_drop("UPDATE accounts SET balance = 50 WHERE id = 1")
        .await
        .unwrap();
    session.query_drop("COMMIT").await.unwrap();
    assert_eq!(
        session.held_host(),
        None,
        "the connection goes back after COMMIT"
    );
    let after: Option<i32> = other
        .query_first("SELECT balance FROM app.accounts WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    assert_eq!(after, Some(50));
    shutdown.trigger();
}

#[tokio::test]
async fn session_state_pins_the_session_to_the_primary() {
    let (cluster, pool, shutdown) = cluster_and_pool(2, |b| b).await;
    let primary = cluster.primary().port();
    let mut session = pool.session();
    assert_ne!(
        session.query_first::<u16>("SELECT @@port").await.unwrap(),
        Some(primary)
    );

    session.query_drop("SET @cart = 42").await.unwrap();
    assert!(session.is_pinned());
    // Every later read runs on the same primary connection and sees the variable.
    for _ in 0..5 {
        let row: Option<(u16, i64)> = session.query_first("SELECT @@port, @cart").await.unwrap();
        assert_eq!(row, Some((primary, 42)));
    }
    session
        .query_drop("CREATE TEMPORARY TABLE scratch (x INT)")
        .await
        .unwrap();
    session
        .query_drop("INSERT INTO scratch VALUES (7)")
        .await
        .unwrap();
    let x: Option<i32> = session.query_first("SELECT x FROM scratch").await.unwrap();
    assert_eq!(x, Some(7));
    drop(session);

    // The pinned connection's state was reset before anyone reuses it.
    for _ in 0..3 {
        let mut conn = pool.writer().await.unwrap();
        let cart: Option<Option<i64>> = conn.query_first("SELECT @cart").await.unwrap();
        assert_eq!(cart, Some(None));
    }
    shutdown.trigger();
}

#[tokio::test]
async fn explicit_connections_and_transactions() {
    let (cluster, pool, shutdown) = cluster_and_pool(1, |b| b).await;
    let primary = cluster.primary().port();
    let replica = cluster.replicas()[0].port();

    let queries_on = |port: u16| {
        let status = pool.status();
        let id = format!("127.0.0.1:{port}");
        status
            .hosts
            .iter()
            .find(|h| h.id == id)
            .map_or(0, |h| h.queries_total)
    };
    let (primary_before, replica_before) = (queries_on(primary), queries_on(replica));
    let mut writer = pool.writer().await.unwrap();
    let port: Option<u16> = writer.query_first("SELECT @@port").await.unwrap();
    assert_eq!(port, Some(primary));
    drop(writer);
    let mut reader = pool.reader().await.unwrap();
    let port: Option<u16> = reader.query_first("SELECT @@port").await.unwrap();
    assert_eq!(port, Some(replica));
    drop(reader);
    // Queries on explicit connections count like routed ones.
    assert_eq!(queries_on(primary), primary_before + 1);
    assert_eq!(queries_on(replica), replica_before + 1);

    pool.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let mut tx = pool.transaction().await.unwrap();
    assert_eq!(tx.host(), cluster.primary().address());
    tx.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    tx.commit().await.unwrap();

    // Rolled back when dropped without commit.
    let mut tx = pool.transaction().await.unwrap();
    tx.query_drop("INSERT INTO t VALUES (2)").await.unwrap();
    drop(tx);
    let mut direct = cluster.primary().root().await.unwrap();
    let ids: Vec<i32> = direct
        .query("SELECT id FROM app.t ORDER BY id")
        .await
        .unwrap();
    assert_eq!(ids, vec![1]);

    let mut ro = pool.read_only_transaction().await.unwrap();
    assert_eq!(ro.host(), cluster.replicas()[0].address());
    let port: Option<u16> = ro.query_first("SELECT @@port").await.unwrap();
    assert_eq!(port, Some(replica));
    let err = ro
        .query_drop("INSERT INTO t VALUES (3)")
        .await
        .expect_err("read-only transaction");
    assert!(err.server_code().is_some(), "{err}");
    ro.rollback().await.unwrap();
    shutdown.trigger();
}

#[tokio::test]
async fn a_replica_with_stopped_replication_is_shunned() {
    let (cluster, pool, shutdown) = cluster_and_pool(2, |b| b).await;
    let broken = cluster.replicas()[0].port();
    let healthy = cluster.replicas()[1].port();
    cluster.replicas()[0].run(&["STOP SLAVE"]).await.unwrap();

    let p = pool.clone();
    wait_for(
        "broken replica shunned",
        Duration::from_secs(5),
        move || {
            let p = p.clone();
            async move {
                p.status()
                    .hosts
                    .iter()
                    .any(|h| h.health == foobar_db::topology::Health::Shunned)
            }
        },
    )
    .await
    .unwrap();
    for _ in 0..20 {
        assert_eq!(
            port_of_read(&pool).await,
            healthy,
            "reads avoid the replica at {broken}"
        );
    }

    // Restarted, it takes reads again.
    cluster.replicas()[0].run(&["START SLAVE"]).await.unwrap();
    support::wait_replicas_up(&pool, 2).await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        seen.insert(port_of_read(&pool).await);
    }
    assert!(seen.contains(&broken));
    shutdown.trigger();
}

#[tokio::test]
async fn reads_fall_back_to_the_primary_or_fail_as_configured() {
    let (cluster, pool, shutdown) = cluster_and_pool(1, |b| b).await;
    cluster.replicas()[0].run(&["STOP SLAVE"]).await.unwrap();
    let p = pool.clone();
    let primary = cluster.primary().port();
    wait_for("reads on the primary", Duration::from_secs(5), move || {
        let p = p.clone();
        async move { port_of_read(&p).await == primary }
    })
    .await
    .unwrap();
    shutdown.trigger();

    let strict_shutdown = foobar_core::Shutdown::new();
    let strict = support::builder(&cluster)
        .read_fallback(ReadFallback::Fail)
        .build(&strict_shutdown)
        .await
        .unwrap();
    let err = strict
        .query_first::<u16>("SELECT @@port")
        .await
        .expect_err("no replica qualifies");
    assert!(matches!(err, Error::NoReader), "{err}");
    // Writes are unaffected.
    strict.query_drop("CREATE TABLE w (id INT)").await.unwrap();
    strict_shutdown.trigger();
}

#[tokio::test]
async fn reads_survive_a_replica_killed_mid_way() {
    let (mut cluster, pool, shutdown) = cluster_and_pool(2, |b| b).await;
    let survivor = cluster.replicas()[1].port();
    // Warm both replicas' pools so the dead one has connections to break.
    for _ in 0..10 {
        port_of_read(&pool).await;
    }
    cluster.node_mut(1).kill().await;
    // Every read succeeds: the ones routed to the dead replica before the
    // monitor notices are retried on the other one.
    let started = std::time::Instant::now();
    let mut reads = 0;
    while started.elapsed() < Duration::from_millis(800) && reads < 2_000 {
        let port = pool
            .query_first::<u16>("SELECT @@port")
            .await
            .expect("read retried on another host")
            .expect("a row");
        assert_eq!(port, survivor);
        reads += 1;
    }
    assert!(reads > 10);
    shutdown.trigger();
}

#[tokio::test]
async fn a_row_of_the_wrong_shape_is_an_error_not_a_panic() {
    let (_cluster, pool, shutdown) = cluster_and_pool(1, |b| b).await;
    let err = pool
        .query_first::<(u16,)>("SELECT @@port, 'two columns'")
        .await
        .expect_err("two columns do not fit one");
    assert!(matches!(err, foobar_db::Error::Conversion { .. }), "{err}");
    assert!(err.to_string().contains("@@port, two columns"), "{err}");
    let err = pool
        .query::<u32>("SELECT 'not a number'")
        .await
        .expect_err("text is not a number");
    assert!(!err.is_connection_error(), "{err}");
    assert!(err.to_string().contains("not a number"), "{err}");
    shutdown.trigger();
}

#[tokio::test]
async fn replica_weights_share_the_reads() {
    support::init_tracing();
    let cluster = foobar_db::sandbox::Cluster::builder()
        .replicas(2)
        .start()
        .await
        .unwrap();
    let shutdown = foobar_core::Shutdown::new();
    let pool = foobar_db::RwPool::builder()
        .monitor_credentials(
            foobar_db::sandbox::MONITOR.user,
            foobar_db::sandbox::MONITOR.password,
        )
        .primary(cluster.primary().app_url())
        .host(
            foobar_db::HostConfig::new(cluster.node(1).app_url(), foobar_db::RoleHint::Replica)
                .weight(3),
        )
        .host(
            foobar_db::HostConfig::new(cluster.node(2).app_url(), foobar_db::RoleHint::Replica)
                .weight(1),
        )
        .build(&shutdown)
        .await
        .unwrap();
    support::wait_replicas_up(&pool, 2).await;
    let mut heavy = 0;
    for _ in 0..40 {
        if port_of_read(&pool).await == cluster.node(1).port() {
            heavy += 1;
        }
    }
    assert_eq!(heavy, 30, "3:1 weighted round robin");
    shutdown.trigger();
}

#[tokio::test]
async fn a_monitor_without_replication_privileges_is_named_at_once() {
    support::init_tracing();
    let cluster = foobar_db::sandbox::Cluster::builder()
        .replicas(1)
        .start()
        .await
        .unwrap();
    let shutdown = foobar_core::Shutdown::new();
    // No monitor credentials: the application account monitors, and it may
    // not run SHOW REPLICA STATUS, so the pool cannot tell the primary from
    // a replica made writable by mistake.
    let pool = foobar_db::RwPool::builder()
        .primary(cluster.primary().app_url())
        .replica(cluster.replicas()[0].app_url())
        .build(&shutdown)
        .await
        .unwrap();
    let status = pool.status();
    assert_eq!(status.hosts[1].role, foobar_db::topology::Role::Replica);
    assert_eq!(status.hosts[1].health, foobar_db::topology::Health::Shunned);
    // The server names what it wants ("SUPER, SLAVE MONITOR").
    match &status.unavailable {
        Some(foobar_db::failover::WriterUnavailable::MissingPrivilege {
            host,
            user,
            needed,
            code: 1227,
        }) => {
            assert_eq!(host, &cluster.primary().address());
            assert_eq!(user, foobar_db::sandbox::APP.user);
            assert!(needed.contains("SLAVE MONITOR"), "{needed}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let json = serde_json::to_string(&status).unwrap();
    assert!(
        json.contains("SLAVE MONITOR") && json.contains("1227"),
        "{json}"
    );

    let started = std::time::Instant::now();
    let err = pool
        .query_drop("CREATE TABLE ok (id INT)")
        .await
        .expect_err("no verified primary");
    assert!(started.elapsed() < Duration::from_millis(200), "at once");
    match &err {
        Error::MissingPrivilege {
            host,
            user,
            needed,
            code,
            ..
        } => {
            assert_eq!(host, &cluster.primary().address());
            assert_eq!(user, foobar_db::sandbox::APP.user);
            assert!(needed.contains("SLAVE MONITOR"), "{needed}");
            assert_eq!(*code, 1227);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("SLAVE MONITOR"), "{err}");
    shutdown.trigger();
}

#[tokio::test]
async fn role_hints_are_only_hints() {
    support::init_tracing();
    let cluster = foobar_db::sandbox::Cluster::builder()
        .replicas(1)
        .start()
        .await
        .unwrap();
    let shutdown = foobar_core::Shutdown::new();
    // Hinted the wrong way round: the monitor reads the truth.
    let pool = foobar_db::RwPool::builder()
        .monitor_credentials(
            foobar_db::sandbox::MONITOR.user,
            foobar_db::sandbox::MONITOR.password,
        )
        .primary(cluster.replicas()[0].app_url())
        .replica(cluster.primary().app_url())
        .build(&shutdown)
        .await
        .unwrap();
    assert_eq!(
        pool.topology().writer(),
        Some(cluster.primary().address().as_str())
    );
    support::wait_replicas_up(&pool, 1).await;
    assert_eq!(port_of_read(&pool).await, cluster.replicas()[0].port());
    let port: Option<u16> = pool.query_first("SELECT @@port FOR UPDATE").await.unwrap();
    assert_eq!(port, Some(cluster.primary().port()));
    shutdown.trigger();
}

#[tokio::test]
async fn a_failed_begin_or_commit_leaves_the_session_routing_again() {
    let (cluster, pool, shutdown) = cluster_and_pool(1, |b| b).await;
    let replica = cluster.replicas()[0].port();
    pool.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    cluster
        .wait_replicated(0, Duration::from_secs(5))
        .await
        .unwrap();
    let mut session = pool.session();

    // A BEGIN the server rejects opens no transaction.
    let err = session
        .query_drop("START TRANSACTION WITH")
        .await
        .expect_err("syntax error");
    assert_eq!(err.server_code(), Some(1064), "{err}");
    assert!(!session.in_transaction());
    assert_eq!(session.held_host(), None);
    let port: Option<u16> = session.query_first("SELECT @@port").await.unwrap();
    assert_eq!(port, Some(replica), "reads are routed again");

    // A COMMIT whose connection died ends the transaction too.
    session.query_drop("BEGIN").await.unwrap();
    session
        .query_drop("INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    assert!(session.in_transaction());
    let id: Option<u64> = session.query_first("SELECT CONNECTION_ID()").await.unwrap();
    cluster
        .primary()
        .run(&[&format!("KILL {}", id.unwrap())])
        .await
        .unwrap();
    let err = session.query_drop("COMMIT").await.expect_err("killed");
    assert!(err.is_connection_error(), "{err}");
    assert!(!session.in_transaction());
    assert_eq!(session.held_host(), None, "the dead connection is let go");
    let port: Option<u16> = session.query_first("SELECT @@port").await.unwrap();
    assert_eq!(port, Some(replica), "reads are routed again");
    session
        .query_drop("INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    let mut direct = cluster.primary().root().await.unwrap();
    let ids: Vec<i32> = direct.query("SELECT id FROM app.t").await.unwrap();
    assert_eq!(ids, vec![2], "the killed transaction rolled back");
    shutdown.trigger();
}

#[tokio::test]
async fn a_replica_of_weight_zero_reads_only_when_no_other_replica_qualifies() {
    support::init_tracing();
    let cluster = foobar_db::sandbox::Cluster::builder()
        .replicas(2)
        .start()
        .await
        .unwrap();
    let shutdown = foobar_core::Shutdown::new();
    let pool = foobar_db::RwPool::builder()
        .monitor_credentials(
            foobar_db::sandbox::MONITOR.user,
            foobar_db::sandbox::MONITOR.password,
        )
        .primary(cluster.primary().app_url())
        .host(
            foobar_db::HostConfig::new(cluster.node(1).app_url(), foobar_db::RoleHint::Replica)
                .weight(0),
        )
        .replica(cluster.node(2).app_url())
        .build(&shutdown)
        .await
        .unwrap();
    support::wait_replicas_up(&pool, 2).await;
    for _ in 0..10 {
        assert_eq!(port_of_read(&pool).await, cluster.node(2).port());
    }
    // The weighted replica breaks: the zero-weight one serves, not the
    // primary.
    cluster.node(2).run(&["STOP SLAVE"]).await.unwrap();
    let p = pool.clone();
    let spare = cluster.node(1).port();
    wait_for(
        "reads on the spare replica",
        Duration::from_secs(5),
        move || {
            let p = p.clone();
            async move { port_of_read(&p).await == spare }
        },
    )
    .await
    .unwrap();
    for _ in 0..10 {
        assert_eq!(port_of_read(&pool).await, spare);
    }
    shutdown.trigger();
}

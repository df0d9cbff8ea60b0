//! Cooperative failover: three pool instances (each in its own runtime,
//! each reaching every server through its own fault proxies) over a
//! private semi-synchronous primary and two replicas. A checker samples
//! every 50 ms where each pool writes: never two servers at once. Every
//! acknowledged write must be on the final primary.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use foobar_db::failover::{PromotionBlocked, Step};
use foobar_db::mysql_async::prelude::Queryable;
use foobar_db::sandbox::{wait_for, Cluster};
use support::fleet::{
    create_writes_table, epoch_on, pausing, promotions, verify_writes, wait_common_writer,
    wait_leader, wait_writes_after, CheckReport, Checker, Instance, Net,
};
use support::proxy::Link;

const INSTANCES: usize = 3;
const PACE: Duration = Duration::from_millis(10);
const LOAD_LIMIT: Duration = Duration::from_secs(90);

/// A cluster, its network, and three instances; `leader` starts first so
/// that it holds the failover lease. `tweak` may change an instance's
/// builder.
async fn setup(
    leader: usize,
    tweak: impl Fn(usize, foobar_db::RwPoolBuilder, &Cluster) -> foobar_db::RwPoolBuilder,
) -> (Cluster, Net, Vec<Instance>) {
    support::init_tracing();
    let cluster = Cluster::builder()
        .replicas(2)
        .semi_sync(true)
        .start()
        .await
        .expect("cluster starts");
    let net = Net::start(&cluster, INSTANCES).await;
    let build = |i: usize| tweak(i, net.builder(&cluster, i), &cluster);
    let first = Instance::start(leader, build(leader)).await;
    wait_leader(std::slice::from_ref(&first), Duration::from_secs(10)).await;
    let mut instances = Vec::with_capacity(INSTANCES);
    let mut first = Some(first);
    for i in 0..INSTANCES {
        if i == leader {
            instances.push(first.take().expect("the leader"));
        } else {
            instances.push(Instance::start(i, build(i)).await);
        }
    }
    let pool = instances[0].pool().expect("alive");
    create_writes_table(&cluster, &pool).await;
    assert_eq!(
        wait_common_writer(&instances, None, Duration::from_secs(10)).await,
        0
    );
    (cluster, net, instances)
}

fn start_loads(instances: &[Instance]) {
    for instance in instances {
        let first = i64::try_from(instance.index).unwrap() * 1_000_000;
        instance.start_load(first, 100_000, PACE, LOAD_LIMIT);
    }
}

async fn wait_acked(instances: &[Instance], count: usize) {
    wait_for("load running", Duration::from_secs(15), || async {
        instances
            .iter()
            .filter(|i| !i.is_dead())
            .all(|i| i.acked().len() >= count)
    })
    .await
    .expect("every pool writes");
}

fn all_acked(instances: &[Instance]) -> Vec<i64> {
    instances.iter().flat_map(Instance::acked).collect()
}

fn stop_loads(instances: &[Instance]) {
    for instance in instances {
        instance.stop_load();
    }
}

fn assert_one_writer(report: &CheckReport) {
    assert!(report.samples > 10, "{} samples", report.samples);
    assert!(
        report.violations.is_empty(),
        "two pools wrote to two servers: {:#?}",
        report.violations
    );
}

fn blocked(instance: &Instance) -> Option<PromotionBlocked> {
    instance
        .pool()
        .and_then(|p| p.topology().failover_status().blocked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_replaced_once_and_every_pool_writes_to_the_new_one() {
    let (mut cluster, _net, instances) = setup(0, |_, b, _| b).await;
    let checker = Checker::start(&cluster, &instances);
    start_loads(&instances);
    wait_acked(&instances, 30).await;

    let killed = Instant::now();
    cluster.primary_mut().kill().await;
    let writer = wait_common_writer(&instances, Some(0), Duration::from_secs(15)).await;
    wait_writes_after(&instances, killed, Duration::from_secs(15)).await;
    let recovered = instances
        .iter()
        .filter_map(Instance::last_ok_sent)
        .min()
        .map(|sent| sent - killed);
    stop_loads(&instances);
    let report = checker.stop().await;
    eprintln!("kill -9: every pool writes to server {writer} again ({recovered:?} after the kill)");

    assert_one_writer(&report);
    assert_eq!(promotions(&instances), 1, "exactly one promotion");
    assert_eq!(epoch_on(&cluster, writer).await, Some(1));
    for instance in &instances {
        let pool = instance.pool().expect("alive");
        assert_eq!(pool.topology().writer_epoch().map(|(_, e)| e), Some(1));
    }
    verify_writes(&cluster, writer, &all_acked(&instances), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_cut_off_from_the_primary_alone_does_not_promote() {
    // The cut-off pool holds the lease: it is the one that could promote.
    let (cluster, net, instances) = setup(2, |_, b, _| b).await;
    let checker = Checker::start(&cluster, &instances);
    start_loads(&instances);
    wait_acked(&instances, 20).await;

    net.link(2, 0).set(Link::Cut);
    let cut = Instant::now();
    wait_for(
        "the cut-off pool sees why it may not promote",
        Duration::from_secs(10),
        || async {
            matches!(
                blocked(&instances[2]),
                Some(PromotionBlocked::ReplicaSeesWriter { .. })
            )
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", blocked(&instances[2])));
    assert!(instances[2].is_leader());
    // The others keep writing to the primary meanwhile: a second's worth.
    let others = &instances[..2];
    let target = others
        .iter()
        .map(|i| i.acked().len() + 50)
        .collect::<Vec<_>>();
    wait_for(
        "the others keep writing",
        Duration::from_secs(10),
        || async {
            others
                .iter()
                .zip(&target)
                .all(|(i, n)| i.acked().len() >= *n)
        },
    )
    .await
    .expect("writes go on");
    assert_eq!(instances[2].writer(), None, "it cannot reach the writer");
    assert!(others.iter().all(|i| i.writer() == Some(0)));

    net.heal();
    let writer = wait_common_writer(&instances, None, Duration::from_secs(10)).await;
    wait_writes_after(&instances, cut, Duration::from_secs(10)).await;
    stop_loads(&instances);
    let report = checker.stop().await;
    assert_one_writer(&report);
    assert_eq!(writer, 0);
    assert_eq!(promotions(&instances), 0);
    assert_eq!(
        epoch_on(&cluster, 0).await,
        None,
        "no epoch was ever written"
    );
    assert_eq!(report.writable.iter().flatten().max(), Some(&0));
    verify_writes(&cluster, 0, &all_acked(&instances), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_majority_side_of_a_partition_promotes_and_the_isolated_primary_acknowledges_nothing() {
    let recovered = partition(Link::Cut).await;
    eprintln!("cut partition: the majority side wrote again after {recovered:?}");
}

/// The same partition, silent: the pool on the minority side sees its
/// lock sessions hang instead of close, so the servers keep its locks
/// until their `wait_timeout`; it must stop acting before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_partition_fails_over_once_the_cut_off_leader_has_let_go() {
    let recovered = partition(Link::Blackhole).await;
    eprintln!("silent partition: the majority side wrote again after {recovered:?}");
}

/// `{primary, pool 2} | {replica1, replica2, pool 0, pool 1}`: the links
/// between the sides are cut, or silently drop everything (`link`). How
/// long until the majority side wrote again.
async fn partition(link: Link) -> Duration {
    // The pool on the primary's side holds the lease when the network
    // splits: the majority side must take over from it.
    let (cluster, net, instances) = setup(2, |_, b, _| b).await;
    let checker = Checker::start(&cluster, &instances);
    start_loads(&instances);
    wait_acked(&instances, 20).await;

    let split = Instant::now();
    net.replication(0).set(link);
    net.link(0, 0).set(link);
    net.link(1, 0).set(link);
    net.link(2, 1).set(link);
    net.link(2, 2).set(link);
    let majority = &instances[..2];
    let writer = wait_common_writer(majority, Some(0), Duration::from_secs(20)).await;
    wait_writes_after(majority, split, Duration::from_secs(20)).await;
    let recovered = split.elapsed();
    assert_eq!(
        instances[2].writer(),
        None,
        "the minority pool stopped writing"
    );
    let minority_acked = instances[2].acked().len();
    // The majority writes on; the isolated side acknowledges nothing more.
    let target: Vec<usize> = majority.iter().map(|i| i.acked().len() + 50).collect();
    wait_for(
        "the majority side writes on",
        Duration::from_secs(10),
        || async {
            majority
                .iter()
                .zip(&target)
                .all(|(i, n)| i.acked().len() >= *n)
        },
    )
    .await
    .expect("writes go on");
    assert_eq!(instances[2].acked().len(), minority_acked);

    net.heal();
    wait_common_writer(&instances, Some(0), Duration::from_secs(15)).await;
    // The former primary is fenced once it is reachable again.
    wait_for(
        "the former primary is read-only",
        Duration::from_secs(15),
        || async {
            let Ok(mut conn) = cluster.node(0).root().await else {
                return false;
            };
            conn.query_first::<i64, _>("SELECT @@global.read_only")
                .await
                .ok()
                .flatten()
                == Some(1)
        },
    )
    .await
    .expect("fenced");
    stop_loads(&instances);
    let report = checker.stop().await;
    assert_one_writer(&report);
    assert_eq!(promotions(&instances), 1);
    assert_eq!(epoch_on(&cluster, writer).await, Some(1));
    verify_writes(&cluster, writer, &all_acked(&instances), 1).await;
    recovered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_whose_leader_dies_half_way_is_finished_by_another_pool() {
    let reached = Arc::new(tokio::sync::Notify::new());
    let hook = Arc::clone(&reached);
    let (mut cluster, _net, mut instances) = setup(0, move |i, builder, cluster| {
        if i == 0 {
            pausing(builder, cluster, Step::SetWritable, Arc::clone(&hook))
        } else {
            builder
        }
    })
    .await;
    let checker = Checker::start(&cluster, &instances);
    start_loads(&instances);
    wait_acked(&instances, 20).await;

    let killed = Instant::now();
    cluster.primary_mut().kill().await;
    tokio::time::timeout(Duration::from_secs(15), reached.notified())
        .await
        .expect("the leader reaches the last step");
    // Half-way: the new primary is chosen, reset and holds the new epoch,
    // but is not writable. The leader dies there.
    let mut chosen = None;
    for server in 1..3 {
        let mut conn = cluster.node(server).root().await.expect("connect");
        let replicating: Vec<foobar_db::mysql_async::Row> =
            conn.query("SHOW SLAVE STATUS").await.expect("status");
        if replicating.is_empty() && epoch_on(&cluster, server).await.is_some() {
            chosen = Some(server);
        }
    }
    let chosen = chosen.expect("a reset replica holding the new epoch");
    instances[0].kill();
    let writer = wait_common_writer(&instances[1..], Some(0), Duration::from_secs(20)).await;
    wait_writes_after(&instances[1..], killed, Duration::from_secs(15)).await;
    stop_loads(&instances);
    let report = checker.stop().await;
    assert_one_writer(&report);
    assert_eq!(
        writer, chosen,
        "the next leader finished the same promotion"
    );
    assert_eq!(promotions(&instances[1..]), 1);
    assert_eq!(epoch_on(&cluster, writer).await, Some(2));
    verify_writes(&cluster, writer, &all_acked(&instances), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_primary_is_fenced_before_any_write_reaches_it() {
    let (mut cluster, _net, instances) = setup(0, |_, b, _| b).await;
    let checker = Checker::start(&cluster, &instances);
    start_loads(&instances);
    wait_acked(&instances, 20).await;
    let killed = Instant::now();
    cluster.primary_mut().kill().await;
    let writer = wait_common_writer(&instances, Some(0), Duration::from_secs(15)).await;
    wait_writes_after(&instances, killed, Duration::from_secs(15)).await;

    // It comes back as it was started: writable, with no epoch of its own.
    let mut new = cluster.node(writer).root().await.expect("connect");
    let restart_at: Option<String> = new.query_first("SELECT NOW(6)").await.expect("time");
    let restart = Instant::now();
    cluster.primary_mut().start().await.expect("restarts");
    let mut old = cluster.node(0).root().await.expect("connect");
    let server_id = cluster.node(0).server_id();
    wait_for(
        "the former primary is fenced",
        Duration::from_secs(15),
        || async {
            let Ok(mut conn) = cluster.node(0).root().await else {
                return false;
            };
            conn.query_first::<i64, _>("SELECT @@global.read_only")
                .await
                .ok()
                .flatten()
                == Some(1)
        },
    )
    .await
    .expect("fenced");
    wait_writes_after(&instances, restart, Duration::from_secs(15)).await;
    stop_loads(&instances);
    let report = checker.stop().await;
    assert_one_writer(&report);
    assert!(
        report
            .writers
            .iter()
            .all(|w| !w.contains(&Some(0)) || w[0] == Some(0)),
        "no pool took the former primary back: {:?}",
        report.writers
    );
    // No write reached it after it came back: all it holds from its own
    // server id predates the restart.
    let late: Option<i64> = old
        .exec_first(
            "SELECT COUNT(*) FROM app.writes WHERE server = ? AND at > ?",
            (server_id, restart_at),
        )
        .await
        .expect("count");
    assert_eq!(
        late,
        Some(0),
        "writes reached the former primary after its restart"
    );
    assert_eq!(promotions(&instances), 1);
    verify_writes(&cluster, writer, &all_acked(&instances), 1).await;
    // The fence (read-only, then rejoining as a replica of the writer)
    // completes and is recorded.
    let events = || -> Vec<_> {
        instances
            .iter()
            .filter_map(Instance::pool)
            .flat_map(|p| p.topology().events())
            .collect()
    };
    wait_for("the fence is recorded", Duration::from_secs(10), || async {
        events().iter().any(|e| e.kind == "fenced")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:#?}", events()));
}

#[tokio::test]
async fn the_fault_proxy_passes_delays_blackholes_and_cuts() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An echo server behind the proxy.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 64];
                while let Ok(n) = stream.read(&mut buffer).await {
                    if n == 0 || stream.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let proxy = support::proxy::FaultProxy::start(target).await;
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port()))
        .await
        .unwrap();
    async fn round_trip(
        client: &mut tokio::net::TcpStream,
    ) -> Result<std::io::Result<[u8; 4]>, tokio::time::error::Elapsed> {
        let mut answer = [0u8; 4];
        let exchange = async {
            client.write_all(b"ping").await?;
            client.read_exact(&mut answer).await?;
            Ok(answer)
        };
        tokio::time::timeout(Duration::from_millis(800), exchange).await
    }
    assert_eq!(&round_trip(&mut client).await.unwrap().unwrap(), b"ping");

    proxy.set(Link::Delay(Duration::from_millis(150)));
    let started = Instant::now();
    assert_eq!(&round_trip(&mut client).await.unwrap().unwrap(), b"ping");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "both ways delayed"
    );

    proxy.set(Link::Blackhole);
    assert!(
        round_trip(&mut client).await.is_err(),
        "nothing gets through"
    );
    proxy.set(Link::Pass);
    // What was held is delivered once the link passes again.
    let mut held = [0u8; 4];
    client.read_exact(&mut held).await.unwrap();
    assert_eq!(&held, b"ping");

    proxy.set(Link::Cut);
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut rest))
        .await
        .expect("the proxy closes the connection")
        .ok();
    assert!(rest.is_empty());
    assert_eq!(proxy.link(), Link::Cut);
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port())).await;
    if let Ok(mut again) = refused {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), again.read(&mut byte))
            .await
            .expect("closed at once");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "a new connection is dropped"
        );
    }
}

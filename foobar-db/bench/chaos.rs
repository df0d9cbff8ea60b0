//! A bounded chaos run against private MariaDB servers (a semi-synchronous
//! primary and two replicas) and three pool instances in auto failover mode
//! with the default monitor and failover settings, each in its own runtime
//! and reaching every server through its own fault proxies.
//!
//! Run with `cargo bench -p foobar-db --features sandbox --bench chaos --profile dev`
//! (`CHAOS_ROUNDS`, default 30; `CHAOS_SEED` to replay a run).
//!
//! Every round starts from a healthy cluster (every pool writes, one holds
//! the failover lease), applies one random fault, waits until every pool
//! writes again, undoes it, and checks the invariants: as many promotions as the
//! fault calls for, never two pools writing to two servers (sampled every
//! 50 ms), every acknowledged write on the current primary. It prints one
//! table row per kind of fault.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs,
    unreachable_pub
)]

#[path = "../tests/support/fleet.rs"]
#[allow(dead_code)]
mod fleet;
#[path = "../tests/support/proxy.rs"]
#[allow(dead_code)]
mod proxy;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use fleet::{auto_failover, create_writes_table, epoch_on, Checker, Instance, Net};
use foobar_db::mysql_async::prelude::Queryable;
use foobar_db::sandbox::{replicate_from, wait_for, Cluster};
use foobar_db::MonitorConfig;
use proxy::Link;

const INSTANCES: usize = 3;
const PACE: Duration = Duration::from_millis(10);
/// How long one round may take to recover before it counts as stuck.
const RECOVERY_LIMIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// `kill -9` the primary; it is restarted after the failover.
    KillPrimary,
    /// `kill -9` a replica; restarted.
    KillReplica,
    /// Cut one pool's link to the primary for 3 s.
    CutPoolLink,
    /// Kill one pool instance (its runtime stops, its sessions close);
    /// started again.
    KillPool,
}

impl Fault {
    const ALL: [Fault; 4] = [
        Fault::KillPrimary,
        Fault::KillReplica,
        Fault::CutPoolLink,
        Fault::KillPool,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::KillPrimary => "kill -9 the primary, restart it",
            Self::KillReplica => "kill -9 a replica, restart it",
            Self::CutPoolLink => "cut a pool's link to the primary",
            Self::KillPool => "kill a pool instance, restart it",
        }
    }

    fn promotions(self) -> u64 {
        u64::from(self == Self::KillPrimary)
    }
}

struct Round {
    fault: Fault,
    promotions: u64,
    first_write: Option<Duration>,
    lost: usize,
    two_writers: usize,
    diverged: bool,
}

/// A small deterministic generator (xorshift64*), seeded per run.
struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x % n as u64) as usize
    }
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .try_init();
    let rounds = env("CHAOS_ROUNDS").unwrap_or(30);
    let seed = env("CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1
    });
    let mut random = Random(seed);
    eprintln!("chaos: {rounds} rounds, seed {seed}");

    let mut cluster = Cluster::builder()
        .replicas(2)
        .semi_sync(true)
        .start()
        .await
        .expect("cluster");
    let net = Net::start(&cluster, INSTANCES).await;
    let failover = auto_failover(&cluster);
    let builder = |i: usize| net.builder_with(i, MonitorConfig::default(), failover.clone());
    let mut instances = Vec::new();
    for i in 0..INSTANCES {
        instances.push(Instance::start(i, builder(i)).await);
    }
    create_writes_table(&cluster, &instances[0].pool().expect("alive")).await;
    let mut generation = [0i64; INSTANCES];
    for instance in &instances {
        start_load(instance, 0);
    }
    let checker = Checker::start(&cluster, &instances);
    let mut writer = common_writer(&instances, None).await;
    let mut results = Vec::new();

    for round in 0..rounds {
        let fault = Fault::ALL[random.below(Fault::ALL.len())];
        // Each fault hits a healthy cluster: every pool writes, one leads.
        wait_all_writing(&instances, Instant::now()).await;
        fleet::wait_leader(&instances, RECOVERY_LIMIT).await;
        let before = epoch_on(&cluster, writer).await.unwrap_or(0);
        let violations = checker.violations();
        let at = Instant::now();
        let mut diverged = false;
        match fault {
            Fault::KillPrimary => {
                cluster.node_mut(writer).kill().await;
                let old = writer;
                writer = common_writer(&instances, Some(old)).await;
                wait_all_writing(&instances, at).await;
                cluster.node_mut(old).start().await.expect("restart");
                diverged = rejoin(&cluster, old, net.replication(writer).port()).await;
            }
            Fault::KillReplica => {
                let replica = (0..3)
                    .filter(|s| *s != writer)
                    .nth(random.below(2))
                    .unwrap_or(0);
                cluster.node_mut(replica).kill().await;
                wait_all_writing(&instances, at).await;
                cluster.node_mut(replica).start().await.expect("restart");
                wait_replicating(&cluster, replica).await;
            }
            Fault::CutPoolLink => {
                let pool = random.below(INSTANCES);
                net.link(pool, writer).set(Link::Cut);
                let others: Vec<&Instance> = instances.iter().filter(|i| i.index != pool).collect();
                wait_for("the others write", RECOVERY_LIMIT, || async {
                    others
                        .iter()
                        .all(|i| i.last_ok_sent().is_some_and(|s| s > at))
                })
                .await
                .expect("writes go on");
                tokio::time::sleep(Duration::from_secs(3)).await;
                net.link(pool, writer).set(Link::Pass);
            }
            Fault::KillPool => {
                let pool = random.below(INSTANCES);
                instances[pool].kill();
                let others: Vec<&Instance> = instances.iter().filter(|i| i.index != pool).collect();
                wait_for("the others write", RECOVERY_LIMIT, || async {
                    others
                        .iter()
                        .all(|i| i.last_ok_sent().is_some_and(|s| s > at))
                })
                .await
                .expect("writes go on");
                instances[pool].restart(builder(pool)).await;
                generation[pool] += 1;
                start_load(&instances[pool], generation[pool]);
            }
        }
        writer = common_writer(&instances, None).await;
        wait_all_writing(&instances, Instant::now()).await;
        let first_write = instances
            .iter()
            .filter_map(|i| i.first_ok_after(at))
            .min()
            .map(|done| done - at);
        let after = epoch_on(&cluster, writer).await.unwrap_or(0);
        let lost = missing(&cluster, writer, &instances).await;
        let result = Round {
            fault,
            promotions: after - before,
            first_write,
            lost,
            two_writers: checker.violations() - violations,
            diverged,
        };
        eprintln!(
            "round {:2}: {:<36} promotions {} first write {:>8} lost {} two writers {}{}",
            round + 1,
            fault.name(),
            result.promotions,
            result
                .first_write
                .map_or("-".into(), |d| format!("{} ms", d.as_millis())),
            result.lost,
            result.two_writers,
            if diverged {
                " (former primary diverged, repaired)"
            } else {
                ""
            }
        );
        results.push(result);
    }
    for instance in &instances {
        instance.stop_load();
    }
    let report = checker.stop().await;
    print_table(&results, report.samples, seed);
}

fn start_load(instance: &Instance, generation: i64) {
    let first = i64::try_from(instance.index).unwrap_or(0) * 100_000_000 + generation * 1_000_000;
    instance.start_load(first, 900_000, PACE, Duration::from_secs(3600));
}

/// Waits until every pool writes to the same server (not `not`).
async fn common_writer(instances: &[Instance], not: Option<usize>) -> usize {
    fleet::wait_common_writer(instances, not, RECOVERY_LIMIT).await
}

/// Waits until every pool has a write sent after `at` acknowledged.
async fn wait_all_writing(instances: &[Instance], at: Instant) {
    fleet::wait_writes_after(instances, at, RECOVERY_LIMIT).await;
}

async fn read_only(cluster: &Cluster, server: usize) -> Option<i64> {
    let mut conn = cluster.node(server).root().await.ok()?;
    conn.query_first("SELECT @@global.read_only").await.ok()?
}

/// The replication state of `server`: IO thread, SQL thread, last IO error.
async fn replication(cluster: &Cluster, server: usize) -> Option<(String, String, u16)> {
    let mut conn = cluster.node(server).root().await.ok()?;
    let row: foobar_db::mysql_async::Row = conn.query_first("SHOW SLAVE STATUS").await.ok()??;
    Some((
        row.get("Slave_IO_Running")?,
        row.get("Slave_SQL_Running")?,
        row.get::<u16, _>("Last_IO_Errno")?,
    ))
}

async fn wait_replicating(cluster: &Cluster, server: usize) {
    wait_for("replicating", RECOVERY_LIMIT, || async {
        matches!(replication(cluster, server).await, Some((io, sql, _)) if io == "Yes" && sql == "Yes")
    })
    .await
    .expect("replica back");
}

/// Waits until the restarted former primary is fenced; if it diverged
/// (it holds a commit no replica received), repairs it as an operator
/// would: its binlog goes, it resumes from the fork point. Whether it had
/// diverged.
async fn rejoin(cluster: &Cluster, old: usize, writer_port: u16) -> bool {
    wait_for("fenced", RECOVERY_LIMIT, || async {
        read_only(cluster, old).await == Some(1) && replication(cluster, old).await.is_some()
    })
    .await
    .expect("the former primary is fenced");
    let mut diverged = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match replication(cluster, old).await {
            Some((io, sql, _)) if io == "Yes" && sql == "Yes" => return diverged,
            Some((_, _, 1236)) if !diverged => {
                diverged = true;
                repair(cluster, old, writer_port).await;
            }
            _ if Instant::now() > deadline => {
                panic!(
                    "{} does not replicate after fencing",
                    cluster.node(old).name()
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn repair(cluster: &Cluster, old: usize, writer_port: u16) {
    let server_id = cluster.node(old).server_id();
    let mut conn = foobar_db::mysql_async::Conn::new(
        foobar_db::mysql_async::OptsBuilder::from_opts(cluster.node(old).root_opts())
            .tcp_port(writer_port),
    )
    .await
    .expect("writer");
    let state: String = conn
        .query_first("SELECT @@global.gtid_binlog_state")
        .await
        .expect("state")
        .unwrap_or_default();
    // The fork: the last of the old primary's own transactions the writer has.
    let fork: Vec<String> = state
        .split(',')
        .filter(|g| g.split('-').nth(1) == Some(&server_id.to_string()))
        .map(str::to_owned)
        .collect();
    let node = cluster.node(old);
    node.run(&[
        "STOP SLAVE",
        "RESET MASTER",
        &format!("SET GLOBAL gtid_slave_pos = '{}'", fork.join(",")),
    ])
    .await
    .expect("repair");
    replicate_from(node, writer_port).await.expect("replicate");
}

/// Acknowledged ids missing on `server`.
async fn missing(cluster: &Cluster, server: usize, instances: &[Instance]) -> usize {
    // What was acknowledged before the table is read.
    let acked: Vec<i64> = instances.iter().flat_map(Instance::acked).collect();
    let mut conn = cluster.node(server).root().await.expect("connect");
    let present: Vec<i64> = conn.query("SELECT id FROM app.writes").await.expect("read");
    let present: HashSet<i64> = present.into_iter().collect();
    acked.iter().filter(|id| !present.contains(id)).count()
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn print_table(results: &[Round], samples: usize, seed: u64) {
    let mut by_fault: BTreeMap<Fault, Vec<&Round>> = BTreeMap::new();
    for round in results {
        by_fault.entry(round.fault).or_default().push(round);
    }
    let ms = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{}", d.as_millis()));
    println!(
        "\nchaos run: {} rounds, seed {seed}, {samples} samples of who writes where\n",
        results.len()
    );
    println!("| fault | rounds | promotions per fault (expected) | first write after the fault p50 / p99 (ms) | acknowledged writes lost | samples with two writers | former primary diverged |");
    println!("|---|---:|---|---:|---:|---:|---:|");
    let mut all = Vec::new();
    for (fault, rounds) in &by_fault {
        let mut times: Vec<Duration> = rounds.iter().filter_map(|r| r.first_write).collect();
        times.sort();
        all.extend(times.iter().copied());
        let promotions: Vec<u64> = rounds.iter().map(|r| r.promotions).collect();
        let (min, max) = (
            promotions.iter().min().copied().unwrap_or(0),
            promotions.iter().max().copied().unwrap_or(0),
        );
        let promotions = if min == max {
            format!("{min} ({})", fault.promotions())
        } else {
            format!("{min}–{max} ({})", fault.promotions())
        };
        println!(
            "| {} | {} | {} | {} / {} | {} | {} | {} |",
            fault.name(),
            rounds.len(),
            promotions,
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            rounds.iter().map(|r| r.lost).sum::<usize>(),
            rounds.iter().map(|r| r.two_writers).sum::<usize>(),
            rounds.iter().filter(|r| r.diverged).count(),
        );
    }
    all.sort();
    let wrong = results
        .iter()
        .filter(|r| r.promotions != r.fault.promotions())
        .count();
    println!(
        "| all | {} | {} round(s) off | {} / {} | {} | {} | {} |",
        results.len(),
        wrong,
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
        results.iter().map(|r| r.lost).sum::<usize>(),
        results.iter().map(|r| r.two_writers).sum::<usize>(),
        results.iter().filter(|r| r.diverged).count(),
    );
}

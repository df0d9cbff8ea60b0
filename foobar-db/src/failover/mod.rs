//! Who is writer, and what happens when the writer is lost.
//!
//! Deciding and doing are apart. Every monitor check and every finished
//! action goes to one control loop per pool, which hands it to a pure state
//! machine (`decide.rs`: observations in, actions out, no I/O, unit-tested
//! transition by transition); the loop then runs the actions (SQL in
//! `promote.rs`) in tasks of their own, whose results come back as
//! observations. Nothing holds a lock across a drain or any other wait.
//!
//! # Which host is the writer
//!
//! A host becomes the writer only when the pool's own check shows it
//! writable (`read_only = 0`) **and** replicating from nothing, whatever the
//! configured hint says: a replica that was set writable by mistake is never
//! taken for the primary. After a promotion by any pool, the servers hold
//! the *failover epoch* (below); the writer is then the host the newest
//! epoch names. A writable host that the newest epoch does not name is a
//! former primary: it takes no traffic and is fenced. A pool that starts,
//! or rejoins after a partition, therefore learns the current writer and its
//! epoch from the servers before it writes anything.
//!
//! The writer and its epoch are published together in one
//! `tokio::sync::watch`. While there is none, writes wait for one up to
//! [`RwPoolBuilder::no_writer_timeout`](crate::RwPoolBuilder::no_writer_timeout),
//! then fail with [`Error::NoWriter`](crate::Error::NoWriter) naming the
//! reason ([`WriterUnavailable`]); they are never sent to a replica. Causes
//! that waiting cannot cure fail at once with their own error: bad
//! credentials ([`Error::AccessDenied`](crate::Error::AccessDenied)), a
//! missing privilege ([`Error::MissingPrivilege`](crate::Error::MissingPrivilege)),
//! a read-only configured primary
//! ([`Error::ReadOnlyPrimary`](crate::Error::ReadOnlyPrimary)).
//!
//! # Modes
//!
//! - [`FailoverMode::FollowExternal`]: something else promotes (orchestrator,
//!   MaxScale, a person); the pool follows the host that turns writable, as
//!   ProxySQL does, and sets a former writer that comes back writable
//!   read-only. Once pools of a cluster have promoted (the epoch table
//!   exists), every pool follows only the host the newest epoch names: an
//!   external promoter must then write the epoch too, or drop the table.
//! - [`FailoverMode::AutoPromote`]: the pools promote a replica themselves.
//!   Every application instance may run it; they decide together. It needs
//!   at least three servers (a primary and two replicas): with two, losing
//!   the primary leaves no majority to decide with.
//!
//! # Deciding together
//!
//! In auto mode a pool may promote or fence only while it holds the
//! failover lease of its [`Coordinator`]. The built-in one needs nothing
//! but the database servers (MariaDB MaxScale's cooperative monitoring,
//! `majority_of_all`): each pool holds one session per server with a short
//! `wait_timeout` and takes the named lock `GET_LOCK('foobar_db_failover',
//! 0)` on every server it can reach; the pool holding it on a strict
//! majority of the *configured* servers (down ones included) leads. A
//! pool that gets only a minority gives its locks back and tries again
//! after a random pause, so two pools cannot block each other forever. The
//! leader pings its lock sessions every quarter of
//! [`FailoverConfig::lock_timeout`] and acts only while the pings of the
//! latest round reached a majority and that round is less than
//! `lock_timeout` minus one renewal interval old: a leader cut off by a
//! partition stops acting before the servers drop its sessions and release
//! its locks to another pool. A leader that dies releases them at once (its
//! sessions close). Deployments that already run etcd or Consul can plug a
//! lease from there into [`FailoverConfig::coordinator`].
//!
//! The leader declares the writer dead only when both hold:
//! - its own checks of the writer failed
//!   [`MonitorConfig::failure_threshold`](crate::MonitorConfig::failure_threshold)
//!   times in a row, for at least one check interval plus one check timeout
//!   (long enough for a pool on the minority side of a partition to have
//!   stopped writing, see below);
//! - every reachable replica agrees: none still has its IO thread connected
//!   to the writer (`Slave_IO_Running` is `Connecting` or `No`). A writer
//!   that only this pool cannot reach is not dead. A replica notices a
//!   writer that vanished without closing its connections (a silent
//!   partition) only after `slave_net_timeout` (60 s by default, with
//!   heartbeats every half of it): set it to a few seconds, or such a
//!   failover waits that long.
//!
//! A pool that never saw the cluster healthy since it started (a writer it
//! could reach, with a majority of the servers answering) never promotes;
//! neither does one that cannot reach a majority. Each reports why on its
//! status page and in `foobar_db_failover_blocked{reason}`
//! ([`PromotionBlocked`]).
//!
//! # Promotion
//!
//! The leader promotes the replica that has *received* the most
//! (`Gtid_IO_Pos`, not the applied position): `STOP SLAVE IO_THREAD`, wait
//! until everything received is applied (`MASTER_GTID_WAIT`, up to
//! [`FailoverConfig::drain_timeout`]), `STOP SLAVE; RESET SLAVE ALL`, move
//! the semi-sync primary side to it, write the new epoch into the epoch
//! table on it, repoint the other replicas
//! (`CHANGE MASTER TO … MASTER_USE_GTID=slave_pos`; on MySQL `CHANGE
//! REPLICATION SOURCE TO … SOURCE_AUTO_POSITION=1`), wait until a majority
//! of the servers hold the new epoch, and only then `SET GLOBAL read_only =
//! 0`. The leader checks its lease before every step. A promotion
//! interrupted half-way (the leader died) is finished by the next leader:
//! the half-promoted host (read-only, replicating from nothing, holding the
//! most) is the best candidate again, and the steps are safe to repeat.
//!
//! If the drain times out, **the default is not to promote**: `RESET SLAVE
//! ALL` would delete received but unapplied transactions, which may be
//! acknowledged writes. The pool reports
//! [`PromotionBlocked::Failed`] with [`Cause::DrainTimedOut`] and tries
//! again later. [`FailoverConfig::promote_after_drain_timeout`] opts in to
//! promoting anyway; the transactions thrown away are then counted in
//! `foobar_db_failover_lost_transactions_total` and named in an event.
//!
//! # The epoch on the servers
//!
//! Every promotion writes `(epoch, server_id)` into
//! `foobar_db.failover_epoch` (schema [`FailoverConfig::epoch_schema`]) on
//! the new primary before it turns writable, and waits until a majority of
//! the servers hold it. Every check reads it back from every host. Since
//! any majority of servers holds the newest epoch, a pool that sees a
//! majority always sees it, and can tell a returning former primary (an
//! older epoch) from the current one. The failover account creates the
//! table on the first promotion and writes it even while the host is
//! read-only (`READ_ONLY ADMIN`).
//!
//! # Fencing
//!
//! A writable host that is not the writer (a former primary that comes
//! back, a second standalone writable host) takes no traffic from any pool,
//! whatever its own data says, and is fenced by the leader: the
//! application's sessions on it are ended (a commit stuck waiting for a
//! semi-sync acknowledgement would hold `read_only` back, and must never be
//! acknowledged), then `SET GLOBAL read_only = 1`, then, with
//! [`FailoverConfig::replication_credentials`], it is made a replica of the
//! writer (`MASTER_USE_GTID=current_pos`). A fence that fails is retried
//! with exponential back-off (250 ms doubling to 30 s); repeated identical
//! events are folded into one with a count. A fenced host whose replication
//! then stops with error 1236 holds transactions the writer lacks: it is
//! reported as diverged, with those GTIDs, in an event and in
//! `foobar_db_diverged_transactions{host}`. It stays read-only and takes no
//! reads; an operator decides what to do with its extra transactions.
//!
//! # Zero acknowledged writes lost, and when it holds
//!
//! A write is acknowledged when the server answered OK. After a failover
//! the new primary holds every acknowledged write when:
//!
//! - **semi-synchronous replication** is on (`rpl_semi_sync_master_enabled`
//!   on the primary, `rpl_semi_sync_slave_enabled` on the replicas): a
//!   commit is acknowledged only after a replica received it, and the
//!   promotion takes the replica that received the most and applies all of
//!   it before it writes;
//! - `rpl_semi_sync_master_wait_point = AFTER_SYNC` (MariaDB's default is
//!   `AFTER_COMMIT`, which is also safe for acknowledged writes, but lets
//!   other sessions read a commit that a crash can still lose);
//! - **the semi-sync timeout never lets the primary fall back to
//!   asynchronous replication while it still acknowledges writes**: set
//!   `rpl_semi_sync_master_timeout` longer than the pool's statement
//!   timeout ([`PoolConfig::statement_timeout`](crate::PoolConfig::statement_timeout)).
//!   Then a write on a primary cut off from its replicas waits for an
//!   acknowledgement that cannot come, and its statement timeout fails it
//!   before the server would fall back and acknowledge it;
//! - the drain is not skipped (the default).
//!
//! And in a partition: **a pool that cannot see a majority of the
//! configured servers stops writing** (its writer is withdrawn after one
//! failed check of a majority, and the leader on the majority side waits at
//! least one check interval plus one check timeout of failures before it
//! promotes), so two pools never write to two servers. The primary on the
//! minority side, cut off from its replicas, acknowledges nothing under the
//! settings above.
//!
//! With asynchronous replication, or a semi-sync timeout shorter than an
//! outage, acknowledged writes can be lost in a failover. The pool then
//! only reports it: transactions thrown away by a forced promotion in
//! `foobar_db_failover_lost_transactions_total`, and transactions left on
//! a former primary in the diverged report above.
//!
//! # Accounts
//!
//! The failover account ([`RwPoolBuilder::failover_credentials`](crate::RwPoolBuilder::failover_credentials))
//! needs, on MariaDB: `SLAVE MONITOR` (read replica status while
//! promoting), `READ_ONLY ADMIN` (set `read_only`, write the epoch while
//! read-only), `REPLICATION SLAVE ADMIN` (stop, reset, repoint
//! replication), `BINLOG ADMIN`, `RELOAD`, `CONNECTION ADMIN` and
//! `PROCESS` (fencing ends the application's sessions on the fenced host,
//! whose commits may hang on a semi-sync acknowledgement), `SUPER` or
//! `REPLICATION MASTER ADMIN` for the semi-sync variables, and
//! `CREATE, INSERT, DELETE, SELECT ON foobar_db.*` for the epoch table. The
//! monitor account needs `SLAVE MONITOR` and `SELECT ON foobar_db.*`. A
//! missing privilege is named, with the server's error code, in
//! [`Error::MissingPrivilege`](crate::Error::MissingPrivilege) and on the
//! status page; in auto mode the failover account's privileges are checked
//! once at start, not first at the moment of a failover.

pub(crate) mod control;
mod coordinator;
pub(crate) mod decide;
mod error;
pub(crate) mod gtid;
pub(crate) mod promote;
pub(crate) mod sql;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub(crate) use self::coordinator::MajorityLocks;
pub use self::coordinator::{Coordinator, CoordinatorFuture, Lease};
pub use self::error::{Cause, FailoverError, Step};

/// What to do when the writer is lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailoverMode {
    /// Wait for something else to promote a replica; the host seen
    /// writable (and replicating from nothing) becomes the writer.
    #[default]
    FollowExternal,
    /// The pools promote the most advanced replica themselves, decided
    /// together through the [`Coordinator`].
    AutoPromote,
}

/// Failover settings.
#[derive(Clone)]
#[non_exhaustive]
pub struct FailoverConfig {
    /// The mode (default [`FailoverMode::FollowExternal`]).
    pub mode: FailoverMode,
    /// How long the new primary may take to apply what it received
    /// (default 10 s). When it does not make it, the promotion is called
    /// off, unless [`FailoverConfig::promote_after_drain_timeout`].
    pub drain_timeout: Duration,
    /// Promote even when the drain timed out, throwing away what the new
    /// primary received but did not apply (default false). The lost
    /// transactions are counted and reported.
    pub promote_after_drain_timeout: bool,
    /// Whether the cluster runs semi-synchronous replication: promotion
    /// moves the primary side to the new writer and the replica side off it
    /// (default false).
    pub semi_sync: bool,
    /// The account other servers replicate with, used to make a fenced
    /// former primary a replica (`CHANGE MASTER TO … MASTER_USER`). Without
    /// it a fenced host is only set read-only.
    pub replication_credentials: Option<(String, String)>,
    /// The `wait_timeout` of the lock sessions of the built-in coordinator
    /// (default 8 s, at least 2 s): how long a server keeps the locks of a
    /// pool that vanished without closing its sessions (a partition), so at
    /// most how long a takeover waits in that case. The holder renews every
    /// quarter of it.
    pub lock_timeout: Duration,
    /// How long one promotion or fencing statement may take (default 3 s).
    pub step_timeout: Duration,
    /// The schema of the epoch table (default `foobar_db`).
    pub epoch_schema: String,
    /// How long after a failed promotion the next attempt waits (default
    /// 1 s).
    pub retry_after: Duration,
    /// The coordinator deciding which pool acts; `None` is the built-in
    /// majority of `GET_LOCK`s on the database servers.
    pub coordinator: Option<Arc<dyn Coordinator>>,
    #[cfg(feature = "sandbox")]
    pub(crate) pause_before: Option<(Step, Arc<tokio::sync::Notify>)>,
}

impl fmt::Debug for FailoverConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverConfig")
            .field("mode", &self.mode)
            .field("drain_timeout", &self.drain_timeout)
            .field(
                "promote_after_drain_timeout",
                &self.promote_after_drain_timeout,
            )
            .field("semi_sync", &self.semi_sync)
            .field(
                "replication_credentials",
                &self.replication_credentials.as_ref().map(|(user, _)| user),
            )
            .field("lock_timeout", &self.lock_timeout)
            .field("step_timeout", &self.step_timeout)
            .field("epoch_schema", &self.epoch_schema)
            .field("retry_after", &self.retry_after)
            .field("coordinator", &self.coordinator)
            .finish_non_exhaustive()
    }
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            mode: FailoverMode::FollowExternal,
            drain_timeout: Duration::from_secs(10),
            promote_after_drain_timeout: false,
            semi_sync: false,
            replication_credentials: None,
            lock_timeout: Duration::from_secs(8),
            step_timeout: Duration::from_secs(3),
            epoch_schema: "foobar_db".to_owned(),
            retry_after: Duration::from_secs(1),
            coordinator: None,
            #[cfg(feature = "sandbox")]
            pause_before: None,
        }
    }
}

impl FailoverConfig {
    /// A configuration for `mode`, other settings at their defaults.
    pub fn new(mode: FailoverMode) -> Self {
        Self {
            mode,
            ..Self::default()
        }
    }

    /// Sets [`FailoverConfig::drain_timeout`].
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Sets [`FailoverConfig::promote_after_drain_timeout`].
    pub fn promote_after_drain_timeout(mut self, promote: bool) -> Self {
        self.promote_after_drain_timeout = promote;
        self
    }

    /// Sets [`FailoverConfig::semi_sync`].
    pub fn semi_sync(mut self, enabled: bool) -> Self {
        self.semi_sync = enabled;
        self
    }

    /// Sets [`FailoverConfig::replication_credentials`].
    pub fn replication_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.replication_credentials = Some((user.into(), password.into()));
        self
    }

    /// Sets [`FailoverConfig::lock_timeout`] (at least 2 s; whole seconds,
    /// as the server counts it).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = Duration::from_secs(timeout.as_secs().max(2));
        self
    }

    /// Sets [`FailoverConfig::step_timeout`].
    pub fn step_timeout(mut self, timeout: Duration) -> Self {
        self.step_timeout = timeout;
        self
    }

    /// Sets [`FailoverConfig::epoch_schema`].
    pub fn epoch_schema(mut self, schema: impl Into<String>) -> Self {
        self.epoch_schema = schema.into();
        self
    }

    /// Sets [`FailoverConfig::retry_after`].
    pub fn retry_after(mut self, pause: Duration) -> Self {
        self.retry_after = pause;
        self
    }

    /// Uses `coordinator` instead of the built-in majority of `GET_LOCK`s.
    pub fn coordinator(mut self, coordinator: Arc<dyn Coordinator>) -> Self {
        self.coordinator = Some(coordinator);
        self
    }

    /// Test hook: a promotion run by this pool stops before `step` and
    /// waits until `gate` is notified (it may never be: a test kills the
    /// pool there). `reached` is notified when it gets there.
    #[cfg(feature = "sandbox")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sandbox")))]
    pub fn pause_promotion_before(mut self, step: Step, reached: Arc<tokio::sync::Notify>) -> Self {
        self.pause_before = Some((step, reached));
        self
    }

    /// The `SELECT` the monitor reads the epoch with.
    pub(crate) fn epoch_query(&self) -> String {
        format!(
            "SELECT epoch, server_id FROM `{}`.failover_epoch WHERE id = 1",
            self.epoch_schema.replace('`', "``")
        )
    }
}

/// The failover side of a pool, for the status page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FailoverStatus {
    /// The mode.
    pub mode: FailoverMode,
    /// Whether this pool holds the failover lease (auto mode).
    pub leader: bool,
    /// What would stand in the way of a promotion now (auto mode).
    pub blocked: Option<PromotionBlocked>,
}

/// Why a pool has no writer to send writes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WriterUnavailable {
    /// The pool is starting and has not seen a writable primary yet.
    Starting,
    /// The writer failed its checks; a new one is awaited.
    WriterDown {
        /// The lost writer.
        host: String,
    },
    /// Fewer than a majority of the configured servers answer this pool's
    /// checks: it might be on the minority side of a partition, so it does
    /// not write (auto mode).
    NoQuorum {
        /// Servers answering.
        reachable: usize,
        /// Servers needed.
        needed: usize,
    },
    /// The newest epoch names a host that is not writable yet: a promotion
    /// is under way.
    Promoting {
        /// The host being promoted.
        host: String,
    },
    /// The newest epoch names a server this pool is not configured with.
    UnknownWriter {
        /// Its `@@server_id`.
        server_id: u32,
    },
    /// Several hosts are writable and replicate from nothing, and nothing
    /// tells which one is the primary.
    SeveralWritable {
        /// Their addresses.
        hosts: Vec<String>,
    },
    /// The server refused the monitor account's credentials.
    AccessDenied {
        /// The host.
        host: String,
        /// The account.
        user: String,
    },
    /// The monitor account lacks a privilege it needs to tell the writer
    /// apart (replication status, the epoch table).
    MissingPrivilege {
        /// The host.
        host: String,
        /// The account.
        user: String,
        /// The privilege, as the server names it.
        needed: String,
        /// The server's error code.
        code: u16,
    },
    /// The host configured as primary is read-only and no host is
    /// writable.
    ReadOnlyPrimary {
        /// The host.
        host: String,
    },
    /// No host is writable.
    NoneWritable,
}

impl WriterUnavailable {
    /// The error a write gets: causes that waiting cannot cure get their
    /// own variant at once, the others wait first (`waited`).
    pub(crate) fn into_error(self, waited: Duration) -> crate::Error {
        match self {
            Self::AccessDenied { host, user } => crate::Error::AccessDenied { host, user },
            Self::MissingPrivilege {
                host,
                user,
                needed,
                code,
            } => crate::Error::MissingPrivilege {
                host,
                user,
                needed,
                code,
                purpose: "tell the primary from the replicas",
            },
            Self::ReadOnlyPrimary { host } => crate::Error::ReadOnlyPrimary { host },
            reason => crate::Error::NoWriter { waited, reason },
        }
    }

    /// Whether waiting cannot cure it (the write fails at once).
    pub(crate) fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::AccessDenied { .. }
                | Self::MissingPrivilege { .. }
                | Self::ReadOnlyPrimary { .. }
        )
    }
}

impl fmt::Display for WriterUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Starting => f.write_str("no writable primary seen yet"),
            Self::WriterDown { host } => write!(f, "the writer {host} is down"),
            Self::NoQuorum { reachable, needed } => write!(
                f,
                "only {reachable} server(s) answer, {needed} needed: this pool does not write"
            ),
            Self::Promoting { host } => write!(f, "{host} is being promoted"),
            Self::UnknownWriter { server_id } => write!(
                f,
                "the newest failover epoch names server_id {server_id}, which is not configured"
            ),
            Self::SeveralWritable { hosts } => write!(
                f,
                "several hosts are writable and replicate from nothing: {}",
                hosts.join(", ")
            ),
            Self::AccessDenied { host, user } => {
                write!(f, "{host}: access denied for the monitor account `{user}`")
            }
            Self::MissingPrivilege {
                host,
                user,
                needed,
                code,
            } => write!(
                f,
                "{host}: the monitor account `{user}` lacks {needed} (error {code})"
            ),
            Self::ReadOnlyPrimary { host } => {
                write!(f, "the configured primary {host} is read-only")
            }
            Self::NoneWritable => f.write_str("no host is writable"),
        }
    }
}

/// Why a pool in auto mode does not promote a replica (while the cluster
/// has no writer, or would not be able to).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PromotionBlocked {
    /// This pool never saw the cluster healthy since it started: it has no
    /// earlier view to compare with, so it leaves the decision to pools
    /// that have.
    NeverSawHealthy,
    /// Fewer than a majority of the servers answer this pool.
    NoQuorum {
        /// Servers answering.
        reachable: usize,
        /// Servers needed.
        needed: usize,
    },
    /// Another pool holds the failover lease and decides.
    NotLeader,
    /// The writer is failing checks, not yet long enough to be declared
    /// dead.
    Confirming {
        /// The writer.
        host: String,
    },
    /// A replica still replicates from the writer: only this pool lost it.
    ReplicaSeesWriter {
        /// The replica.
        replica: String,
        /// The writer.
        writer: String,
    },
    /// An account lacks a privilege promotion needs.
    MissingPrivilege {
        /// The host.
        host: String,
        /// The account.
        user: String,
        /// The privilege, as the server names it.
        needed: String,
        /// The server's error code.
        code: u16,
    },
    /// A promotion is running.
    Promoting,
    /// The last promotion attempt failed; the next one waits a little.
    Failed {
        /// What failed.
        error: FailoverError,
    },
    /// The writer is lost but no replica can be seen to take over.
    NoCandidate,
}

impl PromotionBlocked {
    /// Every reason's label in `foobar_db_failover_blocked{reason}`.
    pub(crate) const REASONS: &'static [&'static str] = &[
        "never_saw_healthy",
        "no_quorum",
        "not_leader",
        "confirming",
        "replica_sees_writer",
        "missing_privilege",
        "promoting",
        "failed",
        "no_candidate",
    ];

    /// The reason's label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NeverSawHealthy => "never_saw_healthy",
            Self::NoQuorum { .. } => "no_quorum",
            Self::NotLeader => "not_leader",
            Self::Confirming { .. } => "confirming",
            Self::ReplicaSeesWriter { .. } => "replica_sees_writer",
            Self::MissingPrivilege { .. } => "missing_privilege",
            Self::Promoting => "promoting",
            Self::Failed { .. } => "failed",
            Self::NoCandidate => "no_candidate",
        }
    }
}

impl fmt::Display for PromotionBlocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NeverSawHealthy => f.write_str(
                "this pool never saw the cluster healthy since it started; pools that did decide",
            ),
            Self::NoQuorum { reachable, needed } => {
                write!(f, "only {reachable} server(s) answer, {needed} needed")
            }
            Self::NotLeader => f.write_str("another pool holds the failover lease"),
            Self::Confirming { host } => write!(f, "confirming that {host} is down"),
            Self::ReplicaSeesWriter { replica, writer } => write!(
                f,
                "{replica} still replicates from {writer}: the writer is only unreachable from here"
            ),
            Self::MissingPrivilege {
                host,
                user,
                needed,
                code,
            } => write!(f, "{host}: `{user}` lacks {needed} (error {code})"),
            Self::Promoting => f.write_str("a promotion is running"),
            Self::Failed { error } => write!(f, "the last promotion failed: {error}"),
            Self::NoCandidate => f.write_str("no replica can be seen to take over"),
        }
    }
}

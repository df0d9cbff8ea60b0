//! The cluster state machine: what a pool concludes from what it saw.
//!
//! Plain code, no I/O and no clock of its own: every input comes with the
//! time it happened, and the output is a list of [`Action`]s for the control
//! loop to carry out. The rules are documented on the
//! [`failover`](crate::failover) module; the tests below walk through every
//! transition.

use std::time::{Duration, Instant};

use super::{FailoverError, PromotionBlocked, WriterUnavailable};
use crate::monitor::{CheckError, Epoch, EpochRead, HostCheck, IoThread, Observation, Replication};
use crate::topology::{Health, Role, RoleHint, WriterState};

/// The decision rules.
#[derive(Clone, Debug)]
pub(crate) struct Rules {
    /// Auto mode: the pools promote (and a minority does not write).
    pub(crate) auto: bool,
    /// Failed checks in a row before a host is down.
    pub(crate) failure_threshold: u32,
    /// How long the writer must have been failing before a promotion: a
    /// check interval plus a check timeout, the longest a pool on the
    /// minority side of a partition takes to see one failed check of a
    /// majority and withdraw its writer.
    pub(crate) settle: Duration,
    /// Replicas lagging more are shunned.
    pub(crate) max_lag: Duration,
    /// After a failed promotion, the pause before the next.
    pub(crate) retry_after: Duration,
    /// Whether fencing may make a former primary a replica (replication
    /// credentials are configured).
    pub(crate) rejoin: bool,
}

impl Rules {
    const FENCE_FIRST_RETRY: Duration = Duration::from_millis(250);
    const FENCE_LAST_RETRY: Duration = Duration::from_secs(30);
    /// After a fence went through, how long its effect has to show.
    const FENCE_SETTLE: Duration = Duration::from_secs(2);
}

/// What the machine knows of a host besides what it sees.
#[derive(Clone, Debug)]
pub(crate) struct HostFacts {
    /// `host:port`.
    pub(crate) id: String,
    pub(crate) hint: RoleHint,
    /// Where replicas reach it.
    pub(crate) replication_address: (String, u16),
    /// The monitor account, for errors naming it.
    pub(crate) monitor_user: String,
}

/// What the control loop must do.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Action {
    /// Publish the writer and its epoch (or why there is none).
    Publish(WriterState),
    /// Store a host's role, health and lag for the router.
    Host {
        host: usize,
        role: Role,
        health: Health,
        lag: Option<Duration>,
    },
    /// Promote a replica in place of `lost` (`None`: finish a promotion
    /// another pool started), as epoch `epoch`.
    Promote { lost: Option<usize>, epoch: u64 },
    /// Make `host` harmless: read-only, and with `rejoin` a replica of
    /// `writer`.
    Fence {
        host: usize,
        writer: usize,
        rejoin: bool,
    },
    /// `host`'s replication from `writer` failed with error 1236: find the
    /// GTIDs it holds that the writer lacks, and report them.
    Diverged { host: usize, writer: usize },
    /// Record an event.
    Event { kind: &'static str, message: String },
    /// Why the pool would not promote now (`None`: nothing in the way).
    Blocked(Option<PromotionBlocked>),
}

/// A promotion that went through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Promoted {
    pub(crate) host: usize,
    pub(crate) epoch: u64,
    pub(crate) server_id: u32,
    /// Received transactions thrown away by a promotion forced past a
    /// drain timeout.
    pub(crate) lost_transactions: u64,
}

#[derive(Clone, Debug, Default)]
struct FenceState {
    in_flight: bool,
    attempts: u32,
    next_at: Option<Instant>,
}

#[derive(Clone, Debug)]
struct View {
    facts: HostFacts,
    failures: u32,
    /// When the current run of failures started (the first failure's
    /// arrival).
    failing_since: Option<Instant>,
    error: Option<CheckError>,
    /// The last successful check, and when it started.
    last: Option<(Instant, HostCheck)>,
    /// Checks that started before this are older than something the pool
    /// did to the host, and are ignored.
    acted_at: Option<Instant>,
    role: Role,
    health: Health,
    lag: Option<Duration>,
    /// A former writer: if it comes back writable, it is fenced.
    deposed: bool,
    fence: FenceState,
    diverged_reported: bool,
    writable_replica_reported: bool,
}

impl View {
    fn check(&self) -> Option<&HostCheck> {
        self.last.as_ref().map(|(_, check)| check)
    }
}

/// The state machine of one pool.
#[derive(Debug)]
pub(crate) struct Decider {
    rules: Rules,
    hosts: Vec<View>,
    published: WriterState,
    /// The writer this pool last had and lost to failed checks.
    lost: Option<usize>,
    /// A writer was published (with a majority answering, in auto mode).
    seen_healthy: bool,
    lease: bool,
    promoting: bool,
    retry_at: Option<Instant>,
    last_failure: Option<FailoverError>,
    /// A privilege problem found before it mattered (auto mode start-up).
    preflight: Option<PromotionBlocked>,
    blocked: Option<PromotionBlocked>,
}

impl Decider {
    pub(crate) fn new(rules: Rules, hosts: Vec<HostFacts>) -> Self {
        Self {
            rules,
            hosts: hosts
                .into_iter()
                .map(|facts| View {
                    facts,
                    failures: 0,
                    failing_since: None,
                    error: None,
                    last: None,
                    acted_at: None,
                    role: Role::Unknown,
                    health: Health::Unknown,
                    lag: None,
                    deposed: false,
                    fence: FenceState::default(),
                    diverged_reported: false,
                    writable_replica_reported: false,
                })
                .collect(),
            published: WriterState {
                writer: None,
                epoch: 0,
                unavailable: WriterUnavailable::Starting,
            },
            lost: None,
            seen_healthy: false,
            lease: false,
            promoting: false,
            retry_at: None,
            last_failure: None,
            preflight: None,
            blocked: None,
        }
    }

    /// The writer state last published.
    #[cfg(test)]
    pub(crate) fn published(&self) -> &WriterState {
        &self.published
    }

    /// A strict majority of the configured servers.
    fn majority(&self) -> usize {
        self.hosts.len() / 2 + 1
    }

    /// One check of `host`, started at `started`, arrived at `now`.
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        host: usize,
        started: Instant,
        observation: Observation,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let threshold = self.rules.failure_threshold;
        let Some(view) = self.hosts.get_mut(host) else {
            return out;
        };
        match observation {
            Ok(check) => {
                if view.acted_at.is_some_and(|at| started < at) {
                    // Started before the pool changed this host: stale.
                    return out;
                }
                if view.failures >= threshold {
                    out.push(Action::Event {
                        kind: "up",
                        message: format!("{} answers again", view.facts.id),
                    });
                }
                if !check.read_only && matches!(check.replication, Replication::Replica(_)) {
                    if !view.writable_replica_reported {
                        view.writable_replica_reported = true;
                        out.push(Action::Event {
                            kind: "writable_replica",
                            message: format!(
                                "{} replicates but is writable (read_only = 0): it is never \
                                 taken as the writer",
                                view.facts.id
                            ),
                        });
                    }
                } else {
                    view.writable_replica_reported = false;
                }
                view.failures = 0;
                view.failing_since = None;
                view.error = None;
                view.last = Some((started, check));
            }
            Err(error) => {
                view.failures = view.failures.saturating_add(1);
                if view.failures == 1 {
                    view.failing_since = Some(now);
                }
                if view.failures == threshold {
                    out.push(Action::Event {
                        kind: "down",
                        message: format!(
                            "{} is down: {} failed checks, the last: {error}",
                            view.facts.id, view.failures
                        ),
                    });
                }
                view.error = Some(error);
            }
        }
        self.evaluate(now, &mut out);
        out
    }

    /// The coordinator granted (`true`) or withdrew the lease.
    pub(crate) fn lease(&mut self, now: Instant, held: bool) -> Vec<Action> {
        let mut out = Vec::new();
        if held != self.lease {
            self.lease = held;
            out.push(Action::Event {
                kind: if held { "leader" } else { "follower" },
                message: if held {
                    "this pool holds the failover lease: it decides promotions and fencing".into()
                } else {
                    "this pool no longer holds the failover lease".into()
                },
            });
        }
        self.evaluate(now, &mut out);
        out
    }

    /// The failover account's privileges were checked at start.
    pub(crate) fn preflight(
        &mut self,
        now: Instant,
        problem: Option<FailoverError>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        // Only what will not go away by itself: privileges, credentials.
        self.preflight = problem.and_then(|error| match error.cause {
            super::Cause::MissingPrivilege { user, needed, code } => {
                Some(PromotionBlocked::MissingPrivilege {
                    host: error.host,
                    user,
                    needed,
                    code,
                })
            }
            super::Cause::AccessDenied { .. } => Some(PromotionBlocked::Failed { error }),
            _ => None,
        });
        if let Some(problem) = &self.preflight {
            out.push(Action::Event {
                kind: "failover_preflight",
                message: format!("promotion would fail: {problem}"),
            });
        }
        self.evaluate(now, &mut out);
        out
    }

    /// A promotion finished.
    pub(crate) fn promoted(
        &mut self,
        now: Instant,
        result: Result<Promoted, FailoverError>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        self.promoting = false;
        match result {
            Ok(promoted) => {
                self.last_failure = None;
                self.retry_at = None;
                if let Some(view) = self.hosts.get_mut(promoted.host) {
                    // What the host is now, before the next check says so.
                    view.acted_at = Some(now);
                    view.failures = 0;
                    view.failing_since = None;
                    view.last = Some((
                        now,
                        HostCheck {
                            read_only: false,
                            server_id: promoted.server_id,
                            replication: Replication::None,
                            epoch: EpochRead::Known(Epoch {
                                number: promoted.epoch,
                                server_id: promoted.server_id,
                            }),
                        },
                    ));
                    out.push(Action::Event {
                        kind: "promoted",
                        message: format!(
                            "this pool promoted {} (epoch {})",
                            view.facts.id, promoted.epoch
                        ),
                    });
                }
            }
            Err(error) => {
                self.retry_at = Some(now + self.rules.retry_after);
                out.push(Action::Event {
                    kind: "promotion_failed",
                    message: error.to_string(),
                });
                self.last_failure = Some(error);
            }
        }
        self.evaluate(now, &mut out);
        out
    }

    /// Fencing `host` finished.
    pub(crate) fn fenced(
        &mut self,
        now: Instant,
        host: usize,
        result: Result<(), FailoverError>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(view) = self.hosts.get_mut(host) else {
            return out;
        };
        view.fence.in_flight = false;
        match result {
            Ok(()) => {
                // The next checks show it replicating; until then, no
                // second fence.
                view.fence = FenceState {
                    next_at: Some(now + Rules::FENCE_SETTLE),
                    ..FenceState::default()
                };
                view.deposed = false;
                view.acted_at = Some(now);
                if let Some((_, check)) = view.last.as_mut() {
                    check.read_only = true;
                }
                out.push(Action::Event {
                    kind: "fenced",
                    message: format!("{} was set read-only", view.facts.id),
                });
            }
            Err(error) => {
                view.fence.attempts = view.fence.attempts.saturating_add(1);
                let shift = view.fence.attempts.saturating_sub(1).min(16);
                let pause = Rules::FENCE_FIRST_RETRY
                    .saturating_mul(1 << shift)
                    .min(Rules::FENCE_LAST_RETRY);
                view.fence.next_at = Some(now + pause);
                out.push(Action::Event {
                    kind: "fence_failed",
                    message: error.to_string(),
                });
            }
        }
        self.evaluate(now, &mut out);
        out
    }

    fn evaluate(&mut self, now: Instant, out: &mut Vec<Action>) {
        let derived = self.derive_writer();
        self.publish(derived, out);
        self.update_hosts(out);
        self.fence(now, out);
        self.consider_promotion(now, out);
    }

    /// Hosts whose last check succeeded.
    fn answering(&self) -> usize {
        self.hosts
            .iter()
            .filter(|v| v.failures == 0 && v.last.is_some())
            .count()
    }

    /// A host that answered, and has not failed enough checks to be down.
    fn alive(&self, host: usize) -> bool {
        self.hosts
            .get(host)
            .is_some_and(|v| v.last.is_some() && v.failures < self.rules.failure_threshold)
    }

    /// Writable and replicating from nothing: a primary.
    fn standalone_writable(check: &HostCheck) -> bool {
        !check.read_only && check.replication == Replication::None
    }

    /// The writer the servers point to, or why there is none.
    fn derive_writer(&self) -> Result<(usize, u64), WriterUnavailable> {
        let derived = self.derive_from_checks();
        let Err(reason) = derived else {
            return derived;
        };
        // A refused monitor account explains more than what follows from it.
        for view in &self.hosts {
            if matches!(view.error, Some(CheckError::AccessDenied)) {
                return Err(WriterUnavailable::AccessDenied {
                    host: view.facts.id.clone(),
                    user: view.facts.monitor_user.clone(),
                });
            }
        }
        Err(reason)
    }

    fn derive_from_checks(&self) -> Result<(usize, u64), WriterUnavailable> {
        if self
            .hosts
            .iter()
            .any(|v| v.last.is_none() && v.failures == 0)
        {
            // Decide on the whole first round, not on the first answer.
            return Err(WriterUnavailable::Starting);
        }
        let needed = self.majority();
        let answering = self.answering();
        if self.rules.auto && answering < needed {
            return Err(WriterUnavailable::NoQuorum {
                reachable: answering,
                needed,
            });
        }
        let alive: Vec<(usize, &HostCheck)> = self
            .hosts
            .iter()
            .enumerate()
            .filter(|(i, _)| self.alive(*i))
            .filter_map(|(i, v)| Some((i, v.check()?)))
            .collect();
        // A writable host whose replication is hidden cannot be told apart
        // from a replica set writable by mistake.
        for (index, check) in &alive {
            if let (false, Replication::Hidden(denied)) = (check.read_only, &check.replication) {
                let view = &self.hosts[*index];
                return Err(WriterUnavailable::MissingPrivilege {
                    host: view.facts.id.clone(),
                    user: view.facts.monitor_user.clone(),
                    needed: denied.needed.clone(),
                    code: denied.code,
                });
            }
        }
        let mut newest: Option<Epoch> = None;
        for (index, check) in &alive {
            match &check.epoch {
                EpochRead::Known(epoch) => newest = newest.max(Some(*epoch)),
                EpochRead::Hidden(denied) if self.rules.auto => {
                    let view = &self.hosts[*index];
                    return Err(WriterUnavailable::MissingPrivilege {
                        host: view.facts.id.clone(),
                        user: view.facts.monitor_user.clone(),
                        needed: denied.needed.clone(),
                        code: denied.code,
                    });
                }
                _ => {}
            }
        }
        if let Some(epoch) = newest {
            let named = self.hosts.iter().position(|v| {
                v.check()
                    .is_some_and(|check| check.server_id == epoch.server_id)
            });
            return match named {
                Some(index) if !self.alive(index) => Err(WriterUnavailable::WriterDown {
                    host: self.hosts[index].facts.id.clone(),
                }),
                Some(index) => {
                    let check = self.hosts[index].check();
                    if check.is_some_and(Self::standalone_writable) {
                        Ok((index, epoch.number))
                    } else {
                        Err(WriterUnavailable::Promoting {
                            host: self.hosts[index].facts.id.clone(),
                        })
                    }
                }
                None => Err(WriterUnavailable::UnknownWriter {
                    server_id: epoch.server_id,
                }),
            };
        }
        // No pool promoted anything yet: the one standalone writable host.
        let candidates: Vec<usize> = alive
            .iter()
            .filter(|(_, check)| Self::standalone_writable(check))
            .map(|(i, _)| *i)
            .collect();
        match candidates.as_slice() {
            [one] => Ok((*one, 0)),
            [] => {
                if let Some(lost) = self.lost.filter(|l| !self.alive(*l)) {
                    return Err(WriterUnavailable::WriterDown {
                        host: self.hosts[lost].facts.id.clone(),
                    });
                }
                if let Some(current) = self.published.writer.filter(|w| !self.alive(*w)) {
                    return Err(WriterUnavailable::WriterDown {
                        host: self.hosts[current].facts.id.clone(),
                    });
                }
                if !self.seen_healthy {
                    let read_only_primary = alive.iter().find(|(i, check)| {
                        self.hosts[*i].facts.hint == RoleHint::Primary
                            && check.read_only
                            && check.replication == Replication::None
                    });
                    if let Some((index, _)) = read_only_primary {
                        return Err(WriterUnavailable::ReadOnlyPrimary {
                            host: self.hosts[*index].facts.id.clone(),
                        });
                    }
                    if alive.is_empty() {
                        return Err(WriterUnavailable::Starting);
                    }
                }
                Err(WriterUnavailable::NoneWritable)
            }
            several => match self.published.writer.filter(|w| several.contains(w)) {
                // Keep the writer; the others are fenced or ignored.
                Some(current) => Ok((current, 0)),
                None => Err(WriterUnavailable::SeveralWritable {
                    hosts: several
                        .iter()
                        .map(|i| self.hosts[*i].facts.id.clone())
                        .collect(),
                }),
            },
        }
    }

    fn publish(&mut self, derived: Result<(usize, u64), WriterUnavailable>, out: &mut Vec<Action>) {
        let old = self.published.writer;
        let next = match derived {
            Ok((writer, epoch)) => WriterState {
                writer: Some(writer),
                epoch,
                unavailable: WriterUnavailable::Starting,
            },
            Err(unavailable) => WriterState {
                writer: None,
                epoch: self.published.epoch,
                unavailable,
            },
        };
        let unchanged = next.writer == old
            && (next.writer.is_some() || next.unavailable == self.published.unavailable)
            && next.epoch == self.published.epoch;
        if unchanged {
            return;
        }
        let names: Vec<String> = self.hosts.iter().map(|v| v.facts.id.clone()).collect();
        let name = |i: usize| names[i].clone();
        match (old, next.writer) {
            (Some(o), None) => {
                if let WriterUnavailable::WriterDown { .. } = next.unavailable {
                    self.lost = Some(o);
                    self.hosts[o].deposed = true;
                }
                out.push(Action::Event {
                    kind: "no_writer",
                    message: format!("{} no longer takes writes: {}", name(o), next.unavailable),
                });
            }
            (Some(o), Some(n)) if o != n => {
                self.hosts[o].deposed = true;
                out.push(Action::Event {
                    kind: "failover",
                    message: format!("writer {} -> {} (epoch {})", name(o), name(n), next.epoch),
                });
            }
            (None, Some(n)) if !self.seen_healthy => {
                out.push(Action::Event {
                    kind: "writer",
                    message: format!("{} is the writer (initial)", name(n)),
                });
            }
            (None, Some(n)) => {
                let kind = match self.lost {
                    Some(lost) if lost != n => "failover",
                    _ => "writer",
                };
                out.push(Action::Event {
                    kind,
                    message: format!("{} takes writes (epoch {})", name(n), next.epoch),
                });
            }
            (None, None) if next.unavailable != self.published.unavailable => {
                out.push(Action::Event {
                    kind: "no_writer",
                    message: format!("no writer: {}", next.unavailable),
                });
            }
            _ => {}
        }
        if let Some(writer) = next.writer {
            self.seen_healthy = true;
            self.hosts[writer].deposed = false;
            if self.lost.is_some_and(|lost| lost != writer) {
                if let Some(lost) = self.lost {
                    self.hosts[lost].deposed = true;
                }
            }
            self.lost = None;
        }
        self.published = next.clone();
        out.push(Action::Publish(next));
    }

    /// Role, health and lag of every host, for the router.
    fn update_hosts(&mut self, out: &mut Vec<Action>) {
        let writer = self.published.writer;
        let writer_suspect = writer.is_none_or(|w| self.hosts[w].failures > 0);
        for index in 0..self.hosts.len() {
            let (role, health, lag) = self.host_view(index, writer, writer_suspect);
            let view = &mut self.hosts[index];
            if (role, health, lag) == (view.role, view.health, view.lag) {
                continue;
            }
            if health != view.health && health != Health::Down {
                let lag_text = lag.map_or_else(String::new, |l| format!(", lag {} s", l.as_secs()));
                out.push(Action::Event {
                    kind: "health",
                    message: format!(
                        "{} is {} ({}{lag_text})",
                        view.facts.id,
                        health_word(health),
                        role_word(role)
                    ),
                });
            }
            view.role = role;
            view.health = health;
            view.lag = lag;
            out.push(Action::Host {
                host: index,
                role,
                health,
                lag,
            });
        }
    }

    fn host_view(
        &self,
        index: usize,
        writer: Option<usize>,
        writer_suspect: bool,
    ) -> (Role, Health, Option<Duration>) {
        let view = &self.hosts[index];
        let Some(check) = view.check() else {
            let health = if view.failures >= self.rules.failure_threshold {
                Health::Down
            } else {
                Health::Unknown
            };
            return (Role::Unknown, health, None);
        };
        if view.failures >= self.rules.failure_threshold {
            return (Role::Unknown, Health::Down, None);
        }
        if Self::standalone_writable(check) {
            // Ejected next to another writer; while none is settled, not
            // known yet.
            let health = match writer {
                Some(w) if w == index => Health::Up,
                Some(_) => Health::Ejected,
                None => Health::Unknown,
            };
            return (Role::Primary, health, None);
        }
        let (health, lag) = replica_health(
            &check.replication,
            self.rules.max_lag,
            writer_suspect,
            view.lag,
        );
        (Role::Replica, health, lag)
    }

    /// Fence writable hosts that are not the writer; report diverged ones.
    fn fence(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(writer) = self.published.writer else {
            return;
        };
        let may_act = !self.rules.auto || self.lease;
        for index in 0..self.hosts.len() {
            if index == writer || !self.alive(index) {
                continue;
            }
            let Some(check) = self.hosts[index].check().cloned() else {
                continue;
            };
            if let Replication::Replica(status) = &check.replication {
                let view = &mut self.hosts[index];
                if status.last_io_errno == 1236 && !view.diverged_reported {
                    view.diverged_reported = true;
                    out.push(Action::Diverged {
                        host: index,
                        writer,
                    });
                } else if status.last_io_errno != 1236 {
                    view.diverged_reported = false;
                }
            }
            let standalone = check.replication == Replication::None;
            let view = &self.hosts[index];
            // Auto mode fences every writable host but the writer, and
            // makes a read-only host that replicates from nothing (a former
            // primary restarted read-only) a replica again; follow mode
            // fences only a former writer (it cannot tell an intruder from
            // an external promoter at work).
            let wanted = match (self.rules.auto, check.read_only) {
                (true, false) => true,
                (true, true) => self.rules.rejoin && standalone,
                (false, false) => view.deposed && standalone,
                (false, true) => false,
            };
            if !wanted || !may_act || view.fence.in_flight {
                continue;
            }
            if view.fence.next_at.is_some_and(|at| now < at) {
                continue;
            }
            let rejoin = self.rules.auto && self.rules.rejoin && standalone;
            self.hosts[index].fence.in_flight = true;
            out.push(Action::Fence {
                host: index,
                writer,
                rejoin,
            });
        }
    }

    fn consider_promotion(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.rules.auto {
            return;
        }
        let blocked = if self.published.writer.is_some() {
            // Nothing to promote; say only what would stand in the way.
            self.preflight.clone()
        } else if let Some(blocked) = self.promotion_blocker(now) {
            Some(blocked)
        } else {
            let newest = self
                .hosts
                .iter()
                .filter_map(|v| match v.check()?.epoch {
                    EpochRead::Known(epoch) => Some(epoch.number),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            self.promoting = true;
            out.push(Action::Promote {
                lost: self.lost,
                epoch: newest + 1,
            });
            Some(PromotionBlocked::Promoting)
        };
        if blocked != self.blocked {
            self.blocked = blocked.clone();
            out.push(Action::Blocked(blocked));
        }
    }

    /// What stands in the way of promoting now, if anything (no writer
    /// known).
    fn promotion_blocker(&self, now: Instant) -> Option<PromotionBlocked> {
        if !self.seen_healthy {
            return Some(PromotionBlocked::NeverSawHealthy);
        }
        let needed = self.majority();
        let answering = self.answering();
        if answering < needed {
            return Some(PromotionBlocked::NoQuorum {
                reachable: answering,
                needed,
            });
        }
        if self.promoting {
            return Some(PromotionBlocked::Promoting);
        }
        let Some(lost) = self.lost else {
            // No writer, but none was lost here: a promotion by another
            // pool under way, a partition healing. Nothing to decide.
            return match &self.published.unavailable {
                WriterUnavailable::Promoting { .. } if !self.lease => {
                    Some(PromotionBlocked::NotLeader)
                }
                WriterUnavailable::Promoting { .. } => self.finish_blocker(now),
                _ => Some(PromotionBlocked::NoCandidate),
            };
        };
        let lost_view = &self.hosts[lost];
        if self.alive(lost) {
            return Some(PromotionBlocked::Confirming {
                host: lost_view.facts.id.clone(),
            });
        }
        let failing_since = lost_view.failing_since.unwrap_or(now);
        if now < failing_since + self.rules.settle {
            return Some(PromotionBlocked::Confirming {
                host: lost_view.facts.id.clone(),
            });
        }
        // Every reachable replica must agree that the writer is gone.
        for (index, view) in self.hosts.iter().enumerate() {
            if index == lost || view.failures > 0 {
                continue;
            }
            let Some((seen_at, check)) = &view.last else {
                continue;
            };
            match &check.replication {
                Replication::Hidden(denied) => {
                    return Some(PromotionBlocked::MissingPrivilege {
                        host: view.facts.id.clone(),
                        user: view.facts.monitor_user.clone(),
                        needed: denied.needed.clone(),
                        code: denied.code,
                    });
                }
                Replication::Replica(status) => {
                    let from_other = self.hosts.iter().enumerate().any(|(other, v)| {
                        other != lost && v.facts.replication_address == status.source
                    });
                    if status.io == IoThread::Running && !from_other {
                        return Some(PromotionBlocked::ReplicaSeesWriter {
                            replica: view.facts.id.clone(),
                            writer: lost_view.facts.id.clone(),
                        });
                    }
                    if *seen_at < failing_since && !from_other {
                        // Its view predates the writer's trouble.
                        return Some(PromotionBlocked::Confirming {
                            host: lost_view.facts.id.clone(),
                        });
                    }
                }
                Replication::None => {}
            }
        }
        self.finish_blocker(now)
    }

    /// The last checks before acting: privileges, the lease, a pause after
    /// a failure.
    fn finish_blocker(&self, now: Instant) -> Option<PromotionBlocked> {
        if let Some(problem) = &self.preflight {
            return Some(problem.clone());
        }
        if !self.lease {
            return Some(PromotionBlocked::NotLeader);
        }
        if self.retry_at.is_some_and(|at| now < at) {
            if let Some(error) = &self.last_failure {
                return Some(PromotionBlocked::Failed {
                    error: error.clone(),
                });
            }
        }
        None
    }
}

/// The health a reachable read-only (or replicating) host deserves.
fn replica_health(
    replication: &Replication,
    max_lag: Duration,
    writer_suspect: bool,
    previous_lag: Option<Duration>,
) -> (Health, Option<Duration>) {
    let Replication::Replica(status) = replication else {
        // Read-only but replicating from nothing (or hidden): its data may
        // be anything.
        return (Health::Shunned, None);
    };
    match status.lag_seconds {
        Some(seconds) if status.sql_running && status.io == IoThread::Running => {
            let lag = Duration::from_secs(seconds);
            let health = if lag > max_lag {
                Health::Shunned
            } else {
                Health::Up
            };
            (health, Some(lag))
        }
        // The primary is failing or gone and the replica is trying to
        // reconnect: until a new writer is settled it holds the freshest
        // data there is, so it keeps serving reads at its last known lag.
        _ if status.sql_running && status.io == IoThread::Connecting && writer_suspect => {
            let health = if previous_lag.is_some() {
                Health::Up
            } else {
                Health::Shunned
            };
            (health, previous_lag)
        }
        _ => (Health::Shunned, None),
    }
}

fn health_word(health: Health) -> &'static str {
    match health {
        Health::Up => "up",
        Health::Down => "down",
        Health::Shunned => "shunned",
        Health::Ejected => "ejected",
        Health::Unknown => "unknown",
    }
}

fn role_word(role: Role) -> &'static str {
    match role {
        Role::Primary => "writable",
        Role::Replica => "replica",
        Role::Unknown => "unknown role",
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Action, Decider, HostFacts, Promoted, Rules};
    use crate::failover::{Cause, FailoverError, PromotionBlocked, Step, WriterUnavailable};
    use crate::monitor::{
        CheckError, Denied, Epoch, EpochRead, HostCheck, IoThread, Observation, ReplicaStatus,
        Replication,
    };
    use crate::topology::{Health, Role, RoleHint};

    const INTERVAL: Duration = Duration::from_millis(100);

    fn rules(auto: bool) -> Rules {
        Rules {
            auto,
            failure_threshold: 3,
            settle: Duration::from_millis(350),
            max_lag: Duration::from_secs(10),
            retry_after: Duration::from_secs(1),
            rejoin: true,
        }
    }

    fn address(host: usize) -> (String, u16) {
        (format!("10.0.0.{host}"), 3306)
    }

    fn server_id(host: usize) -> u32 {
        u32::try_from(host).unwrap() + 1
    }

    fn epoch(number: u64, host: usize) -> EpochRead {
        EpochRead::Known(Epoch {
            number,
            server_id: server_id(host),
        })
    }

    /// A writable host replicating from nothing.
    fn primary(host: usize, epoch: EpochRead) -> Observation {
        Ok(HostCheck {
            read_only: false,
            server_id: server_id(host),
            replication: Replication::None,
            epoch,
        })
    }

    fn replica_of(host: usize, source: usize, io: IoThread, epoch: EpochRead) -> HostCheck {
        HostCheck {
            read_only: true,
            server_id: server_id(host),
            replication: Replication::Replica(ReplicaStatus {
                io,
                sql_running: true,
                lag_seconds: (io == IoThread::Running).then_some(0),
                received: "0-1-100".into(),
                source: address(source),
                last_io_errno: 0,
                last_io_error: String::new(),
            }),
            epoch,
        }
    }

    fn replica(host: usize, source: usize, io: IoThread) -> Observation {
        Ok(replica_of(host, source, io, EpochRead::Absent))
    }

    fn failed() -> Observation {
        Err(CheckError::Timeout(Duration::from_millis(400)))
    }

    /// A pool's state machine with a clock that moves one check interval
    /// per observation.
    struct Pool {
        decider: Decider,
        now: Instant,
    }

    impl Pool {
        fn new(auto: bool, hosts: usize) -> Self {
            let facts = (0..hosts)
                .map(|i| HostFacts {
                    id: format!("h{i}"),
                    hint: if i == 0 {
                        RoleHint::Primary
                    } else {
                        RoleHint::Replica
                    },
                    replication_address: address(i),
                    monitor_user: "monitor".into(),
                })
                .collect();
            Self {
                decider: Decider::new(rules(auto), facts),
                now: Instant::now(),
            }
        }

        fn see(&mut self, host: usize, observation: Observation) -> Vec<Action> {
            self.now += INTERVAL;
            self.decider
                .observe(self.now, host, self.now - INTERVAL / 2, observation)
        }

        /// One round of checks, host by host; the actions of the round.
        fn round(&mut self, observations: Vec<Observation>) -> Vec<Action> {
            observations
                .into_iter()
                .enumerate()
                .flat_map(|(host, observation)| self.see(host, observation))
                .collect()
        }

        /// A healthy cluster: h0 primary, the others its replicas.
        fn healthy(&mut self) {
            let hosts = self.decider.hosts.len();
            let round = (0..hosts)
                .map(|h| {
                    if h == 0 {
                        primary(0, EpochRead::Absent)
                    } else {
                        replica(h, 0, IoThread::Running)
                    }
                })
                .collect();
            self.round(round);
            assert_eq!(self.writer(), Some(0));
        }

        fn lease(&mut self, held: bool) -> Vec<Action> {
            self.decider.lease(self.now, held)
        }

        fn writer(&self) -> Option<usize> {
            self.decider.published().writer
        }

        fn unavailable(&self) -> WriterUnavailable {
            self.decider.published().unavailable.clone()
        }

        fn blocked(&self) -> Option<PromotionBlocked> {
            self.decider.blocked.clone()
        }

        /// The primary h0 dies: it fails `failures` checks while the
        /// replicas report their IO thread reconnecting.
        fn primary_dies(&mut self, failures: u32) -> Vec<Action> {
            let hosts = self.decider.hosts.len();
            let mut actions = Vec::new();
            for _ in 0..failures {
                let mut round = vec![failed()];
                round.extend((1..hosts).map(|h| replica(h, 0, IoThread::Connecting)));
                actions.extend(self.round(round));
            }
            actions
        }
    }

    fn promotions(actions: &[Action]) -> Vec<(Option<usize>, u64)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Promote { lost, epoch } => Some((*lost, *epoch)),
                _ => None,
            })
            .collect()
    }

    fn fences(actions: &[Action]) -> Vec<(usize, usize, bool)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Fence {
                    host,
                    writer,
                    rejoin,
                } => Some((*host, *writer, *rejoin)),
                _ => None,
            })
            .collect()
    }

    fn has_event(actions: &[Action], kind: &str) -> bool {
        actions
            .iter()
            .any(|a| matches!(a, Action::Event { kind: k, .. } if *k == kind))
    }

    #[test]
    fn startup_takes_the_host_that_is_a_primary_whatever_the_hint_says() {
        let mut pool = Pool::new(false, 3);
        // h0 is hinted primary, but replicates from h1 and was set writable
        // by mistake; h1 is the real primary.
        let mistaken = Ok(HostCheck {
            read_only: false,
            ..replica_of(0, 1, IoThread::Running, EpochRead::Absent)
        });
        let actions = pool.round(vec![
            mistaken,
            primary(1, EpochRead::Absent),
            replica(2, 1, IoThread::Running),
        ]);
        assert_eq!(pool.writer(), Some(1));
        assert!(has_event(&actions, "writable_replica"), "{actions:#?}");
        assert!(actions.contains(&Action::Host {
            host: 0,
            role: Role::Replica,
            health: Health::Up,
            lag: Some(Duration::ZERO),
        }));
    }

    #[test]
    fn startup_names_a_read_only_primary_and_refused_credentials() {
        let mut pool = Pool::new(false, 2);
        let read_only = Ok(HostCheck {
            read_only: true,
            server_id: 1,
            replication: Replication::None,
            epoch: EpochRead::Absent,
        });
        pool.round(vec![read_only, replica(1, 0, IoThread::Running)]);
        assert_eq!(pool.writer(), None);
        assert_eq!(
            pool.unavailable(),
            WriterUnavailable::ReadOnlyPrimary { host: "h0".into() }
        );
        assert!(pool.unavailable().is_permanent());

        let mut pool = Pool::new(false, 2);
        pool.round(vec![
            Err(CheckError::AccessDenied),
            Err(CheckError::AccessDenied),
        ]);
        assert_eq!(
            pool.unavailable(),
            WriterUnavailable::AccessDenied {
                host: "h0".into(),
                user: "monitor".into()
            }
        );
    }

    #[test]
    fn a_writable_host_whose_replication_is_hidden_is_not_taken() {
        let mut pool = Pool::new(false, 2);
        let hidden = Ok(HostCheck {
            read_only: false,
            server_id: 1,
            replication: Replication::Hidden(Denied {
                code: 1227,
                needed: "SLAVE MONITOR".into(),
            }),
            epoch: EpochRead::Absent,
        });
        pool.round(vec![hidden, replica(1, 0, IoThread::Running)]);
        assert_eq!(pool.writer(), None);
        assert!(matches!(
            pool.unavailable(),
            WriterUnavailable::MissingPrivilege { code: 1227, ref needed, .. } if needed == "SLAVE MONITOR"
        ));
    }

    #[test]
    fn two_standalone_writable_hosts_without_an_epoch_are_refused() {
        let mut pool = Pool::new(false, 2);
        pool.round(vec![
            primary(0, EpochRead::Absent),
            primary(1, EpochRead::Absent),
        ]);
        assert_eq!(pool.writer(), None);
        assert!(matches!(
            pool.unavailable(),
            WriterUnavailable::SeveralWritable { .. }
        ));
    }

    #[test]
    fn a_starting_pool_learns_the_writer_from_the_newest_epoch() {
        // A former primary came back writable next to the promoted one: the
        // epoch on the servers tells them apart.
        let mut pool = Pool::new(true, 3);
        pool.round(vec![
            primary(0, epoch(1, 0)),
            primary(1, epoch(2, 1)),
            Ok(replica_of(2, 1, IoThread::Running, epoch(2, 1))),
        ]);
        assert_eq!(pool.writer(), Some(1));
        assert_eq!(pool.decider.published().epoch, 2);
        // Only the lease holder fences it.
        let actions = pool.see(0, primary(0, epoch(1, 0)));
        assert!(fences(&actions).is_empty());
        let actions = pool.lease(true);
        assert_eq!(fences(&actions), [(0, 1, true)]);
    }

    #[test]
    fn a_newer_epoch_on_another_host_moves_the_writer() {
        let mut pool = Pool::new(true, 3);
        pool.healthy();
        // Another pool promoted h1 while this one was away.
        let actions = pool.round(vec![
            primary(0, EpochRead::Absent),
            primary(1, epoch(1, 1)),
            Ok(replica_of(2, 1, IoThread::Running, epoch(1, 1))),
        ]);
        assert_eq!(pool.writer(), Some(1));
        assert!(has_event(&actions, "failover"), "{actions:#?}");
        assert!(pool.decider.hosts[0].deposed);
    }

    #[test]
    fn a_flapping_writer_is_not_declared_down() {
        let mut pool = Pool::new(true, 3);
        pool.healthy();
        pool.lease(true);
        let mut actions = Vec::new();
        for _ in 0..3 {
            actions.extend(pool.primary_dies(2));
            actions.extend(pool.round(vec![
                primary(0, EpochRead::Absent),
                replica(1, 0, IoThread::Running),
                replica(2, 0, IoThread::Running),
            ]));
        }
        assert_eq!(pool.writer(), Some(0));
        assert!(promotions(&actions).is_empty());
        assert!(!has_event(&actions, "down"));
    }

    #[test]
    fn a_dead_writer_is_replaced_by_the_leader_once_the_replicas_agree() {
        let mut pool = Pool::new(true, 3);
        pool.healthy();
        pool.lease(true);
        let actions = pool.primary_dies(2);
        assert!(promotions(&actions).is_empty());
        assert_eq!(pool.writer(), Some(0), "still the writer after 2 failures");
        let actions = pool.primary_dies(1);
        assert_eq!(pool.writer(), None);
        assert_eq!(
            pool.unavailable(),
            WriterUnavailable::WriterDown { host: "h0".into() }
        );
        assert!(has_event(&actions, "down"));
        // The settle time (350 ms) passed during the failures.
        assert_eq!(promotions(&actions), [(Some(0), 1)]);
        assert_eq!(pool.blocked(), Some(PromotionBlocked::Promoting));
        // While it runs, no second one.
        assert!(promotions(&pool.primary_dies(3)).is_empty());

        let actions = pool.decider.promoted(
            pool.now,
            Ok(Promoted {
                host: 1,
                epoch: 1,
                server_id: server_id(1),
                lost_transactions: 0,
            }),
        );
        assert_eq!(pool.writer(), Some(1));
        assert_eq!(pool.decider.published().epoch, 1);
        assert!(has_event(&actions, "promoted"));
        assert!(has_event(&actions, "failover"));
        assert_eq!(pool.blocked(), None);
        // A check of h1 that started before the promotion is stale.
        let stale = pool.now - Duration::from_millis(10);
        pool.decider.observe(
            pool.now,
            1,
            stale,
            Ok(replica_of(1, 0, IoThread::Connecting, EpochRead::Absent)),
        );
        assert_eq!(pool.writer(), Some(1));
    }

    #[test]
    fn a_writer_only_this_pool_cannot_reach_is_not_replaced() {
        let mut pool = Pool::new(true, 3);
        pool.healthy();
        pool.lease(true);
        let mut actions = Vec::new();
        for _ in 0..6 {
            actions.extend(pool.round(vec![
                failed(),
                replica(1, 0, IoThread::Running),
                replica(2, 0, IoThread::Running),
            ]));
        }
        assert!(promotions(&actions).is_empty());
        assert_eq!(pool.writer(), None, "it cannot write there itself");
        assert_eq!(
            pool.blocked(),
            Some(PromotionBlocked::ReplicaSeesWriter {
                replica: "h1".into(),
                writer: "h0".into()
            })
        );
    }

    #[test]
    fn only_the_lease_holder_promotes() {
        let mut pool = Pool::new(true, 3);
        pool.healthy();
        let actions = pool.primary_dies(5);
        assert!(promotions(&actions).is_empty());
        assert_eq!(pool.blocked(), Some(PromotionBlocked::NotLeader));
        let actions = pool.lease(true);
        assert_eq!(promotions(&actions), [(Some(0), 1)]);
    }

    #[test]
    fn a_pool_that_never_saw_the_cluster_healthy_never_promotes() {
        let mut pool = Pool::new(true, 3);
        pool.lease(true);
        let actions = pool.primary_dies(6);
        assert!(promotions(&actions).is_empty());
        assert_eq!(pool.blocked(), Some(PromotionBlocked::NeverSawHealthy));
        assert_eq!(pool.writer(), None);
    }

    #[test]
    fn a_pool_on_the_minority_side_stops_writing_at_once() {
        let mut pool = Pool::new(true, 3);
        pool.healthy();
        pool.lease(true);
        // Cut off from both replicas: one failed check of each is enough.
        pool.round(vec![primary(0, EpochRead::Absent), failed(), failed()]);
        assert_eq!(pool.writer(), None);
        assert_eq!(
            pool.unavailable(),
            WriterUnavailable::NoQuorum {
                reachable: 1,
                needed: 2
            }
        );
        let actions = pool.round(vec![primary(0, EpochRead::Absent), failed(), failed()]);
        assert!(promotions(&actions).is_empty());
        // The partition heals: back to the same writer.
        pool.healthy();
    }

    #[test]
    fn a_promotion_cut_short_by_a_lost_lease_is_retried_when_it_is_back() {
        let mut pool = Pool::new(true, 3);
        pool.healthy();
        pool.lease(true);
        let actions = pool.primary_dies(4);
        assert_eq!(promotions(&actions).len(), 1);
        pool.lease(false);
        let failure = FailoverError::new("h1", Step::ResetReplication, Cause::LeaseLost);
        let actions = pool.decider.promoted(pool.now, Err(failure.clone()));
        assert!(has_event(&actions, "promotion_failed"));
        assert_eq!(pool.writer(), None);
        assert_eq!(pool.blocked(), Some(PromotionBlocked::NotLeader));
        assert!(promotions(&pool.primary_dies(2)).is_empty());
        // Regained within the retry pause: it waits, then goes.
        let actions = pool.lease(true);
        assert!(promotions(&actions).is_empty());
        assert_eq!(
            pool.blocked(),
            Some(PromotionBlocked::Failed { error: failure })
        );
        let actions = pool.primary_dies(10);
        assert_eq!(promotions(&actions), [(Some(0), 1)]);
    }

    #[test]
    fn a_half_done_promotion_is_finished_by_the_next_leader() {
        let mut pool = Pool::new(true, 3);
        pool.healthy();
        pool.primary_dies(4);
        // The leader wrote epoch 1 naming h1 and repointed h2, then died
        // before h1 turned writable.
        let half = Ok(HostCheck {
            read_only: true,
            server_id: server_id(1),
            replication: Replication::None,
            epoch: epoch(1, 1),
        });
        pool.round(vec![
            failed(),
            half,
            Ok(replica_of(2, 1, IoThread::Running, epoch(1, 1))),
        ]);
        assert_eq!(pool.writer(), None);
        assert_eq!(
            pool.unavailable(),
            WriterUnavailable::Promoting { host: "h1".into() }
        );
        // h2 replicating from h1 is no sign that h0 lives.
        let actions = pool.lease(true);
        assert_eq!(promotions(&actions), [(Some(0), 2)]);
    }

    #[test]
    fn a_returning_former_primary_is_fenced_with_back_off() {
        let mut pool = Pool::new(true, 3);
        pool.healthy();
        pool.lease(true);
        pool.primary_dies(4);
        pool.decider.promoted(
            pool.now,
            Ok(Promoted {
                host: 1,
                epoch: 1,
                server_id: server_id(1),
                lost_transactions: 0,
            }),
        );
        // h0 restarts writable, with no epoch of its own.
        let actions = pool.see(0, primary(0, EpochRead::Absent));
        assert_eq!(fences(&actions), [(0, 1, true)]);
        assert!(actions.contains(&Action::Host {
            host: 0,
            role: Role::Primary,
            health: Health::Ejected,
            lag: None
        }));
        // While the fence runs, and after it failed, until the back-off
        // passed: no new attempt.
        assert!(fences(&pool.see(0, primary(0, EpochRead::Absent))).is_empty());
        let failure = FailoverError::new(
            "h0",
            Step::Connect,
            Cause::AccessDenied {
                user: "failover".into(),
            },
        );
        let mut attempts = 1;
        let mut at = Vec::new();
        for _ in 0..60 {
            let actions = pool.see(0, primary(0, EpochRead::Absent));
            if !fences(&actions).is_empty() {
                attempts += 1;
                at.push(pool.now);
            }
            if pool.decider.hosts[0].fence.in_flight {
                pool.decider.fenced(pool.now, 0, Err(failure.clone()));
            }
        }
        // 6 s of checks: retries after 250 ms, 500 ms, 1 s, 2 s.
        assert!((4..=6).contains(&attempts), "{attempts} attempts");
        let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
        let actions = pool.decider.fenced(pool.now, 0, Ok(()));
        assert!(has_event(&actions, "fenced"));
        assert_eq!(pool.writer(), Some(1));
    }

    #[test]
    fn a_former_primary_back_read_only_and_standalone_is_made_a_replica() {
        let mut pool = Pool::new(true, 3);
        pool.round(vec![
            Ok(HostCheck {
                read_only: true,
                server_id: server_id(0),
                replication: Replication::None,
                epoch: EpochRead::Absent,
            }),
            primary(1, epoch(1, 1)),
            Ok(replica_of(2, 1, IoThread::Running, epoch(1, 1))),
        ]);
        assert_eq!(pool.writer(), Some(1));
        let actions = pool.lease(true);
        assert_eq!(fences(&actions), [(0, 1, true)]);
        // Once done, not again before a check shows it replicating.
        pool.decider.fenced(pool.now, 0, Ok(()));
        let standalone = Ok(HostCheck {
            read_only: true,
            server_id: server_id(0),
            replication: Replication::None,
            epoch: EpochRead::Absent,
        });
        assert!(fences(&pool.see(0, standalone)).is_empty());
        assert!(
            fences(&pool.see(0, Ok(replica_of(0, 1, IoThread::Running, epoch(1, 1))))).is_empty()
        );
    }

    #[test]
    fn follow_mode_fences_only_a_former_writer() {
        let mut pool = Pool::new(false, 3);
        pool.healthy();
        pool.primary_dies(3);
        assert_eq!(
            pool.unavailable(),
            WriterUnavailable::WriterDown { host: "h0".into() }
        );
        // An external promoter made h1 the primary.
        let actions = pool.round(vec![
            failed(),
            primary(1, EpochRead::Absent),
            replica(2, 1, IoThread::Running),
        ]);
        assert_eq!(pool.writer(), Some(1));
        assert!(promotions(&actions).is_empty());
        let actions = pool.see(0, primary(0, EpochRead::Absent));
        assert_eq!(fences(&actions), [(0, 1, false)]);
        // A writable host that never was the writer is not touched.
        let mut other = Pool::new(false, 3);
        other.healthy();
        let actions = other.see(2, primary(2, EpochRead::Absent));
        assert!(fences(&actions).is_empty());
        assert_eq!(other.writer(), Some(0));
    }

    #[test]
    fn a_fenced_host_that_cannot_replicate_is_reported_as_diverged_once() {
        let mut pool = Pool::new(true, 3);
        pool.healthy();
        let mut status = replica_of(1, 0, IoThread::Stopped, EpochRead::Absent);
        if let Replication::Replica(replica) = &mut status.replication {
            replica.last_io_errno = 1236;
            replica.last_io_error = "could not find GTID".into();
        }
        let actions = pool.see(1, Ok(status.clone()));
        assert!(actions.contains(&Action::Diverged { host: 1, writer: 0 }));
        assert!(actions.contains(&Action::Host {
            host: 1,
            role: Role::Replica,
            health: Health::Shunned,
            lag: None
        }));
        let actions = pool.see(1, Ok(status));
        assert!(!actions.iter().any(|a| matches!(a, Action::Diverged { .. })));
    }

    #[test]
    fn a_missing_privilege_found_at_start_blocks_promotion_and_is_shown() {
        let mut pool = Pool::new(true, 3);
        pool.healthy();
        pool.lease(true);
        let problem = FailoverError::new(
            "h1",
            Step::Survey,
            Cause::MissingPrivilege {
                user: "failover".into(),
                needed: "SLAVE MONITOR".into(),
                code: 1227,
            },
        );
        let actions = pool.decider.preflight(pool.now, Some(problem));
        assert!(has_event(&actions, "failover_preflight"));
        let expected = PromotionBlocked::MissingPrivilege {
            host: "h1".into(),
            user: "failover".into(),
            needed: "SLAVE MONITOR".into(),
            code: 1227,
        };
        assert_eq!(pool.blocked(), Some(expected.clone()));
        let actions = pool.primary_dies(6);
        assert!(promotions(&actions).is_empty());
        assert_eq!(pool.blocked(), Some(expected));
        // A connection problem at start is not remembered.
        let timeout = FailoverError::new(
            "h1",
            Step::Connect,
            Cause::Timeout {
                after: Duration::from_secs(1),
            },
        );
        let actions = pool.decider.preflight(pool.now, Some(timeout));
        assert_eq!(promotions(&actions), [(Some(0), 1)]);
    }

    #[test]
    fn replicas_at_their_lag_limit_are_shunned_and_come_back() {
        let mut pool = Pool::new(false, 2);
        pool.healthy();
        let mut lagging = replica_of(1, 0, IoThread::Running, EpochRead::Absent);
        if let Replication::Replica(status) = &mut lagging.replication {
            status.lag_seconds = Some(60);
        }
        let actions = pool.see(1, Ok(lagging));
        assert!(actions.contains(&Action::Host {
            host: 1,
            role: Role::Replica,
            health: Health::Shunned,
            lag: Some(Duration::from_secs(60))
        }));
        let actions = pool.see(1, replica(1, 0, IoThread::Running));
        assert!(has_event(&actions, "health"));
    }
}

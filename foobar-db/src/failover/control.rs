//! The control loop: feeds what the monitors saw and what the actions did
//! to the state machine, one input at a time, and carries out what it
//! decides. Long actions (promotion, fencing) run in tasks of their own and
//! report back as inputs, so the loop never waits on a server.

use std::sync::Arc;
use std::time::Instant;

use foobar_core::Shutdown;
use metrics::{Counter, Gauge};
use tokio::sync::{mpsc, watch};

use super::decide::{Action, Decider, Promoted};
use super::{promote, Coordinator, FailoverConfig, FailoverError, FailoverMode, Lease};
use crate::monitor::Observation;
use crate::topology::Topology;

/// What the control loop takes in.
#[derive(Debug)]
pub(crate) enum Input {
    /// A monitor check of `host`, started at `started`.
    Checked {
        host: usize,
        started: Instant,
        observation: Observation,
    },
    /// The coordinator granted or withdrew the lease.
    Lease(bool),
    /// The start-up check of the failover account.
    Preflight(Option<FailoverError>),
    /// A promotion finished.
    Promoted(Result<Promoted, FailoverError>),
    /// Fencing `host` finished.
    Fenced {
        host: usize,
        result: Result<(), FailoverError>,
    },
}

/// Failover metrics of one pool.
#[derive(Debug)]
struct FailoverMetrics {
    blocked: Vec<(&'static str, Gauge)>,
    leader: Gauge,
    epoch: Gauge,
    promotions: Counter,
    lost_transactions: Counter,
    diverged: Vec<Gauge>,
}

impl FailoverMetrics {
    fn new(topology: &Topology) -> Self {
        Self {
            blocked: super::PromotionBlocked::REASONS
                .iter()
                .map(|reason| {
                    (
                        *reason,
                        metrics::gauge!("foobar_db_failover_blocked", "reason" => *reason),
                    )
                })
                .collect(),
            leader: metrics::gauge!("foobar_db_failover_leader"),
            epoch: metrics::gauge!("foobar_db_writer_epoch"),
            promotions: metrics::counter!("foobar_db_promotions_total"),
            lost_transactions: metrics::counter!("foobar_db_failover_lost_transactions_total"),
            diverged: topology
                .hosts
                .iter()
                .map(|h| metrics::gauge!("foobar_db_diverged_transactions", "host" => h.id.clone()))
                .collect(),
        }
    }
}

/// What the failover actions share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) topology: Arc<Topology>,
    pub(crate) config: FailoverConfig,
    /// The monitor's epoch `SELECT`.
    pub(crate) epoch_query: Arc<str>,
    /// The coordinator's latest answer.
    pub(crate) lease: watch::Receiver<Lease>,
    metrics: FailoverMetrics,
}

impl Shared {
    pub(crate) fn new(
        topology: Arc<Topology>,
        config: FailoverConfig,
        lease: watch::Receiver<Lease>,
    ) -> Self {
        Self {
            metrics: FailoverMetrics::new(&topology),
            epoch_query: Arc::from(config.epoch_query()),
            topology,
            config,
            lease,
        }
    }

    /// Follow mode has no lease: a pool fences a returning former writer
    /// on its own.
    pub(crate) fn acts_freely(&self) -> bool {
        self.config.mode == FailoverMode::FollowExternal
    }
}

/// The loop's state.
#[derive(Debug)]
pub(crate) struct Control {
    decider: Decider,
    shared: Arc<Shared>,
    sender: mpsc::UnboundedSender<Input>,
    shutdown: Shutdown,
}

impl Control {
    pub(crate) fn new(
        decider: Decider,
        shared: Arc<Shared>,
        sender: mpsc::UnboundedSender<Input>,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            decider,
            shared,
            sender,
            shutdown,
        }
    }

    /// Decides on one input and carries out the actions.
    pub(crate) fn handle(&mut self, input: Input) {
        let now = Instant::now();
        let actions = match input {
            Input::Checked {
                host,
                started,
                observation,
            } => self.decider.observe(now, host, started, observation),
            Input::Lease(held) => {
                self.shared.metrics.leader.set(if held { 1.0 } else { 0.0 });
                self.shared
                    .topology
                    .update_failover_status(|s| s.leader = held);
                self.decider.lease(now, held)
            }
            Input::Preflight(problem) => self.decider.preflight(now, problem),
            Input::Promoted(result) => {
                if let Ok(promoted) = &result {
                    self.shared.metrics.promotions.increment(1);
                    if promoted.lost_transactions > 0 {
                        self.shared
                            .metrics
                            .lost_transactions
                            .increment(promoted.lost_transactions);
                        let host = &self.shared.topology.hosts[promoted.host].id;
                        self.record(
                            "lost_transactions",
                            &format!(
                                "{host} was promoted past its drain timeout: {} received \
                                 transaction(s) were thrown away",
                                promoted.lost_transactions
                            ),
                        );
                    }
                }
                self.decider.promoted(now, result)
            }
            Input::Fenced { host, result } => self.decider.fenced(now, host, result),
        };
        for action in actions {
            self.apply(action);
        }
    }

    fn record(&self, kind: &'static str, message: &str) {
        let new = self.shared.topology.record(kind, message.to_owned());
        let loud = matches!(
            kind,
            "failover"
                | "down"
                | "no_writer"
                | "fence_failed"
                | "promotion_failed"
                | "diverged"
                | "writable_replica"
                | "lost_transactions"
                | "failover_preflight"
        );
        match (new, loud) {
            (true, true) => tracing::warn!(kind, "{message}"),
            (true, false) => tracing::info!(kind, "{message}"),
            // A repeat: counted in the event history, not logged again.
            (false, _) => tracing::debug!(kind, "{message}"),
        }
    }

    fn apply(&self, action: Action) {
        let shared = &self.shared;
        match action {
            Action::Publish(state) => {
                #[allow(clippy::cast_precision_loss)]
                shared.metrics.epoch.set(state.epoch as f64);
                if let (false, Some(writer)) = (shared.topology.had_writer(), state.writer) {
                    // Finding the first writer is the normal start, not a
                    // warning.
                    let host = &shared.topology.hosts[writer].id;
                    tracing::info!(writer = %host, epoch = state.epoch, "database writer found");
                }
                shared.topology.publish(&state);
            }
            Action::Host {
                host,
                role,
                health,
                lag,
            } => shared.topology.hosts[host].set_view(role, health, lag),
            Action::Event { kind, message } => self.record(kind, &message),
            Action::Blocked(blocked) => {
                let label = blocked.as_ref().map(super::PromotionBlocked::label);
                for (reason, gauge) in &shared.metrics.blocked {
                    gauge.set(if Some(*reason) == label { 1.0 } else { 0.0 });
                }
                shared
                    .topology
                    .update_failover_status(|s| s.blocked = blocked.clone());
            }
            Action::Promote { lost, epoch } => {
                let shared = Arc::clone(shared);
                self.spawn(async move {
                    Some(Input::Promoted(promote::promote(shared, lost, epoch).await))
                });
            }
            Action::Fence {
                host,
                writer,
                rejoin,
            } => {
                let shared = Arc::clone(shared);
                self.spawn(async move {
                    let result = promote::fence(shared, host, writer, rejoin).await;
                    Some(Input::Fenced { host, result })
                });
            }
            Action::Diverged { host, writer } => {
                let shared = Arc::clone(shared);
                self.spawn(async move {
                    match promote::diverged(Arc::clone(&shared), host, writer).await {
                        Ok((count, message)) => {
                            #[allow(clippy::cast_precision_loss)]
                            shared.metrics.diverged[host].set(count as f64);
                            if shared.topology.record("diverged", message.clone()) {
                                tracing::error!("{message}");
                            }
                        }
                        Err(error) => {
                            let host = &shared.topology.hosts[host].id;
                            shared.topology.record(
                                "diverged",
                                format!(
                                    "{host}: replication failed with error 1236; what it \
                                     holds beyond the writer could not be read: {error}"
                                ),
                            );
                        }
                    }
                    None
                });
            }
        }
    }

    /// Runs an action in a task; its result comes back as an input. The
    /// task ends with the pool.
    fn spawn<F>(&self, action: F)
    where
        F: std::future::Future<Output = Option<Input>> + Send + 'static,
    {
        let sender = self.sender.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.wait() => {}
                input = action => {
                    if let Some(input) = input {
                        let _ = sender.send(input);
                    }
                }
            }
        });
    }

    /// Takes inputs until shutdown.
    pub(crate) async fn run(mut self, mut inputs: mpsc::UnboundedReceiver<Input>) {
        loop {
            let input = tokio::select! {
                () = self.shutdown.wait() => break,
                input = inputs.recv() => input,
            };
            match input {
                Some(input) => self.handle(input),
                None => break,
            }
        }
        tracing::debug!("failover control loop stopped");
    }
}

/// Renews the lease every interval until shutdown, telling the control
/// loop when it is won or lost, and gives it up at the end.
pub(crate) async fn drive_lease(
    coordinator: Arc<dyn Coordinator>,
    lease: watch::Sender<Lease>,
    inputs: mpsc::UnboundedSender<Input>,
    shutdown: Shutdown,
) {
    let interval = coordinator.renew_interval();
    let mut held = false;
    loop {
        let renewed = tokio::select! {
            () = shutdown.wait() => break,
            renewed = coordinator.renew() => renewed,
        };
        lease.send_replace(renewed);
        let now_held = matches!(renewed, Lease::Held { .. });
        if now_held != held {
            held = now_held;
            if inputs.send(Input::Lease(held)).is_err() {
                break;
            }
        }
        tokio::select! {
            () = shutdown.wait() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    lease.send_replace(Lease::NotHeld);
    coordinator.release().await;
}

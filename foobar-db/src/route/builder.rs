//! [`RwPoolBuilder`]: hosts, accounts, settings; starts the monitors and
//! the failover control loop.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foobar_core::Shutdown;
use mysql_async::{Opts, OptsBuilder};
use tokio::sync::{mpsc, watch};

use super::pool::Inner;
use super::{ReadFallback, RwPool};
use crate::consistency::{Consistency, WriteMark};
use crate::failover::control::{self, Control, Input, Shared};
use crate::failover::decide::{Decider, HostFacts, Rules};
use crate::failover::{FailoverConfig, FailoverMode, Lease};
use crate::monitor::{self, MonitorConfig, MonitorTask};
use crate::pool::{self, DbTls, Manager, PoolConfig};
use crate::topology::{Host, HostConfig, RoleHint, Topology};
use crate::{ConfigError, Error, Result};

/// Configures and starts an [`RwPool`].
#[derive(Debug)]
#[must_use]
pub struct RwPoolBuilder {
    hosts: Vec<HostConfig>,
    monitor_credentials: Option<(String, String)>,
    failover_credentials: Option<(String, String)>,
    pool: PoolConfig,
    monitor: MonitorConfig,
    failover: FailoverConfig,
    consistency: Consistency,
    read_fallback: ReadFallback,
    no_writer_timeout: Duration,
    tls: Option<DbTls>,
    name: String,
}

impl Default for RwPoolBuilder {
    fn default() -> Self {
        Self {
            hosts: Vec::new(),
            monitor_credentials: None,
            failover_credentials: None,
            pool: PoolConfig::default(),
            monitor: MonitorConfig::default(),
            failover: FailoverConfig::default(),
            consistency: Consistency::Eventual,
            read_fallback: ReadFallback::Primary,
            no_writer_timeout: Duration::from_secs(2),
            tls: None,
            name: "db".to_owned(),
        }
    }
}

impl RwPoolBuilder {
    /// Adds a host expected to be the primary.
    pub fn primary(self, url: impl Into<String>) -> Self {
        self.host(HostConfig::new(url, RoleHint::Primary))
    }

    /// Adds a host expected to be a replica.
    pub fn replica(self, url: impl Into<String>) -> Self {
        self.host(HostConfig::new(url, RoleHint::Replica))
    }

    /// Adds a host.
    pub fn host(mut self, host: HostConfig) -> Self {
        self.hosts.push(host);
        self
    }

    /// The account the monitor connects with. Default: the URL's account.
    ///
    /// It needs `SLAVE MONITOR` on MariaDB (`REPLICATION CLIENT` on MySQL)
    /// to read replication status, and `SELECT ON foobar_db.*` to read the
    /// failover epoch. Without the first, the pool cannot tell a primary
    /// from a replica that was made writable by mistake: it takes no writer
    /// and writes fail at once with
    /// [`Error::MissingPrivilege`](crate::Error::MissingPrivilege).
    pub fn monitor_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.monitor_credentials = Some((user.into(), password.into()));
        self
    }

    /// The account promotion and fencing use. Default: the monitor's.
    ///
    /// On MariaDB it needs `SLAVE MONITOR`, `READ_ONLY ADMIN`,
    /// `REPLICATION SLAVE ADMIN`, `BINLOG ADMIN`, `RELOAD`,
    /// `CONNECTION ADMIN` and `PROCESS` (fencing ends the application's
    /// sessions), `SUPER` (or `REPLICATION MASTER ADMIN`) for the semi-sync
    /// variables, and `CREATE, INSERT, DELETE, SELECT ON foobar_db.*` for
    /// the epoch table (see [`failover`](crate::failover)). In auto mode
    /// they are checked at start: a missing one shows on the status page.
    pub fn failover_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.failover_credentials = Some((user.into(), password.into()));
        self
    }

    /// Per-host pool sizes and timeouts, and the statement timeout.
    pub fn pool_config(mut self, config: PoolConfig) -> Self {
        self.pool = config;
        self
    }

    /// Monitoring intervals, timeouts and thresholds.
    pub fn monitor_config(mut self, config: MonitorConfig) -> Self {
        self.monitor = config;
        self
    }

    /// What happens when the primary is lost.
    pub fn failover(mut self, config: FailoverConfig) -> Self {
        self.failover = config;
        self
    }

    /// The read-after-write guarantee (default eventual).
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// Replicas lagging more than this take no reads (default 10 s).
    pub fn max_replica_lag(mut self, lag: Duration) -> Self {
        self.monitor.max_lag = lag;
        self
    }

    /// Where reads go when no replica qualifies (default the primary).
    pub fn read_fallback(mut self, fallback: ReadFallback) -> Self {
        self.read_fallback = fallback;
        self
    }

    /// How long a write waits for a primary when none is known (default
    /// 2 s). Causes that waiting cannot cure (bad credentials, a missing
    /// privilege, a read-only configured primary) fail at once.
    pub fn no_writer_timeout(mut self, timeout: Duration) -> Self {
        self.no_writer_timeout = timeout;
        self
    }

    /// TLS to every host: verified server certificate, optional client
    /// certificate.
    pub fn tls(mut self, tls: DbTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The name under which the pool reports its status (default `"db"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Checks every host once, decides the writer, and starts the monitor
    /// tasks and the failover control loop (they stop when `shutdown`
    /// fires or the last clone of the pool is dropped). Succeeds even if
    /// hosts are down: writes then wait for a writer, reads fall back.
    ///
    /// # Errors
    /// [`Error::Config`] for an inconsistent configuration, [`Error::Url`]
    /// for a URL that does not parse, [`Error::Tls`] for unusable TLS files.
    pub async fn build(self, shutdown: &Shutdown) -> Result<RwPool> {
        if self.hosts.is_empty() {
            return Err(ConfigError::NoHosts.into());
        }
        if self.pool.max_size == 0 {
            return Err(ConfigError::ZeroPoolSize.into());
        }
        if self.failover.mode == FailoverMode::AutoPromote && self.hosts.len() < 3 {
            return Err(ConfigError::TooFewHostsForMajority {
                hosts: self.hosts.len(),
            }
            .into());
        }
        let (step, lock) = (self.failover.step_timeout, self.failover.lock_timeout);
        if self.failover.mode == FailoverMode::AutoPromote
            && self.failover.coordinator.is_none()
            && step * 2 >= lock
        {
            return Err(ConfigError::StepOutlastsLease { step, lock }.into());
        }
        crate::metric_help::describe();
        let ssl = match &self.tls {
            Some(tls) => Some(tls.ssl_opts()?),
            None => None,
        };
        let mut hosts = Vec::with_capacity(self.hosts.len());
        let mut seen = HashSet::new();
        for (index, config) in self.hosts.iter().enumerate() {
            let opts = Opts::from_url(&config.url).map_err(|source| Error::Url {
                url: crate::error::redact_url(&config.url),
                source,
            })?;
            let mut app = OptsBuilder::from_opts(opts);
            if let Some(ssl) = &ssl {
                app = app.ssl_opts(ssl.clone());
            }
            let app: Opts = app.into();
            let id = format!("{}:{}", app.ip_or_hostname(), app.tcp_port());
            if !seen.insert(id.clone()) {
                return Err(ConfigError::DuplicateHost { host: id }.into());
            }
            let with_account = |account: &Option<(String, String)>| -> Opts {
                let builder = OptsBuilder::from_opts(app.clone()).db_name(None::<String>);
                match account {
                    Some((user, password)) => builder.user(Some(user)).pass(Some(password)).into(),
                    None => builder.into(),
                }
            };
            let monitor_opts = with_account(&self.monitor_credentials);
            let admin_opts = with_account(if self.failover_credentials.is_some() {
                &self.failover_credentials
            } else {
                &self.monitor_credentials
            });
            let manager = Manager::new(app, self.pool.reset, self.pool.ping_idle_after);
            let pool = pool::build(manager, &self.pool)?;
            hosts.push(Arc::new(Host::new(
                index,
                id,
                config,
                pool,
                monitor_opts,
                admin_opts,
                self.pool.statement_timeout,
            )));
        }
        let topology = Arc::new(Topology::new(hosts));
        let mode = self.failover.mode;
        topology.update_failover_status(|s| s.mode = mode);
        // Stops the monitors on the shared signal, or when the last clone
        // of the pool is dropped.
        let stop = shutdown.child();

        let (lease_sender, lease) = watch::channel(Lease::NotHeld);
        let shared = Arc::new(Shared::new(
            Arc::clone(&topology),
            self.failover.clone(),
            lease,
        ));
        let decider = Decider::new(
            Rules {
                auto: mode == FailoverMode::AutoPromote,
                failure_threshold: self.monitor.failure_threshold,
                settle: self.monitor.interval + self.monitor.check_timeout,
                max_lag: self.monitor.max_lag,
                retry_after: self.failover.retry_after,
                rejoin: self.failover.replication_credentials.is_some(),
            },
            topology
                .hosts
                .iter()
                .map(|host| HostFacts {
                    id: host.id.clone(),
                    hint: host.hint,
                    replication_address: host.replication_address.clone(),
                    monitor_user: host.monitor_opts.user().unwrap_or_default().to_owned(),
                })
                .collect(),
        );
        let (inputs, received) = mpsc::unbounded_channel();
        let mut control = Control::new(decider, Arc::clone(&shared), inputs.clone(), stop.clone());

        // First round, all hosts at once, so the pool starts knowing its
        // writer (or why there is none).
        let epoch_query = Arc::clone(&shared.epoch_query);
        let mut first = tokio::task::JoinSet::new();
        for host in &topology.hosts {
            let host = Arc::clone(host);
            let timeout = self.monitor.check_timeout.max(Duration::from_secs(1));
            let epoch_query = Arc::clone(&epoch_query);
            first.spawn(async move {
                let mut conn = None;
                let started = Instant::now();
                let observation = monitor::check(&host, &mut conn, timeout, &epoch_query).await;
                (host.index, started, observation, conn)
            });
        }
        let mut results = Vec::with_capacity(topology.hosts.len());
        while let Some(joined) = first.join_next().await {
            if let Ok(result) = joined {
                results.push(result);
            }
        }
        results.sort_by_key(|(index, ..)| *index);
        let mut conns = Vec::with_capacity(results.len());
        for (host, started, observation, conn) in results {
            control.handle(Input::Checked {
                host,
                started,
                observation,
            });
            conns.push((host, conn));
        }
        tokio::spawn(control.run(received));
        for (index, conn) in conns {
            let task = MonitorTask {
                host: Arc::clone(&topology.hosts[index]),
                config: self.monitor.clone(),
                epoch_query: Arc::clone(&epoch_query),
                inputs: inputs.clone(),
                shutdown: stop.clone(),
            };
            tokio::spawn(task.run(conn));
        }
        if mode == FailoverMode::AutoPromote {
            let coordinator = match &self.failover.coordinator {
                Some(coordinator) => Arc::clone(coordinator),
                None => Arc::new(crate::failover::MajorityLocks::new(
                    topology
                        .hosts
                        .iter()
                        .map(|h| h.admin_opts.clone())
                        .collect(),
                    self.failover.lock_timeout,
                    self.failover.step_timeout,
                )),
            };
            tokio::spawn(control::drive_lease(
                coordinator,
                lease_sender,
                inputs.clone(),
                stop.clone(),
            ));
            let shared = Arc::clone(&shared);
            let inputs = inputs.clone();
            tokio::spawn(async move {
                let problem = crate::failover::promote::preflight(shared).await;
                let _ = inputs.send(Input::Preflight(problem));
            });
        }
        for host in &topology.hosts {
            tracing::info!(host = %host.id, role = ?host.role(), health = ?host.health(), "database host");
        }
        if let Some(reason) = topology.unavailable() {
            tracing::warn!(%reason, "no database writer yet");
        }

        Ok(RwPool {
            inner: Arc::new(Inner {
                topology,
                consistency: self.consistency,
                read_fallback: self.read_fallback,
                no_writer_timeout: self.no_writer_timeout,
                max_lag: self.monitor.max_lag,
                mark: WriteMark::default(),
                name: self.name,
                stop,
            }),
        })
    }
}

//! Private MariaDB clusters for tests, benchmarks and examples (feature
//! `sandbox`).
//!
//! [`Cluster::builder`] starts a primary and N replicas, each a private
//! `mariadbd` on a random loopback port in its own temp directory, wired with
//! GTID replication (`log_slave_updates`, `gtid_strict_mode`,
//! `MASTER_CONNECT_RETRY=1`, `slave_net_timeout=4`), optionally
//! semi-synchronous. Any [`Node`] can be
//! killed (`kill -9`), stopped cleanly or restarted. Every process dies with
//! the cluster (on drop), and its directory is removed.
//!
//! `mariadb-install-db` runs once per machine: its result is cached in the
//! temp directory and copied for every node.
//!
//! Accounts, all `@'127.0.0.1'` (servers run with `--skip-name-resolve`):
//! [`APP`] (everything on the [`APP_DATABASE`] schema, nothing else),
//! [`MONITOR`] (`SLAVE MONITOR`, `REPLICATION CLIENT`, reading the failover
//! epoch), [`ADMIN`] (what
//! promotion and fencing need), [`REPLICATION`] and [`ROOT`].
//!
//! ```no_run
//! # async fn run() -> Result<(), foobar_db::sandbox::SandboxError> {
//! use foobar_db::sandbox::Cluster;
//!
//! let mut cluster = Cluster::builder().replicas(2).start().await?;
//! println!("primary at {}", cluster.primary().app_url());
//! let shutdown = foobar_core::Shutdown::new();
//! let pool = cluster.rw_pool_builder().build(&shutdown).await?;
//! cluster.primary_mut().kill().await;
//! # drop(pool); Ok(()) }
//! ```

mod node;
mod template;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

pub use self::node::Node;

/// A user name and password.
#[derive(Clone, Copy, Debug)]
pub struct Account {
    /// The user name.
    pub user: &'static str,
    /// Its password.
    pub password: &'static str,
}

/// Superuser, for the sandbox's own set-up work.
pub const ROOT: Account = Account {
    user: "root",
    password: "sandbox-root",
};
/// The application's account: all privileges on [`APP_DATABASE`] only, so
/// `read_only` applies to it.
pub const APP: Account = Account {
    user: "app",
    password: "sandbox-app",
};
/// The monitoring account: `SLAVE MONITOR`, `REPLICATION CLIENT`, `PROCESS`,
/// `SELECT ON foobar_db.*`.
pub const MONITOR: Account = Account {
    user: "monitor",
    password: "sandbox-monitor",
};
/// The failover account: `READ_ONLY ADMIN`, `REPLICATION SLAVE ADMIN`,
/// `REPLICATION MASTER ADMIN`, `BINLOG ADMIN`, `RELOAD`, `SUPER`,
/// monitoring, and `CREATE, INSERT, DELETE, SELECT ON foobar_db.*` (the
/// failover epoch).
pub const ADMIN: Account = Account {
    user: "failover",
    password: "sandbox-failover",
};
/// The account replicas connect with (`REPLICATION SLAVE`).
pub const REPLICATION: Account = Account {
    user: "repl",
    password: "sandbox-repl",
};
/// The application schema every node has.
pub const APP_DATABASE: &str = "app";

impl From<crate::Error> for SandboxError {
    fn from(error: crate::Error) -> Self {
        Self::Pool(error)
    }
}

/// What went wrong starting or driving a sandbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// A server binary is not installed.
    #[error("`{0}` not found in PATH, /usr/sbin or /usr/local/sbin (install mariadb-server)")]
    MissingBinary(String),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A node did not come up.
    #[error("node {node} did not start; log tail:\n{log}")]
    Start {
        /// The node's name.
        node: String,
        /// The end of its error log.
        log: String,
    },
    /// A statement failed.
    #[error("node {node}: `{statement}` failed: {source}")]
    Sql {
        /// The node's name.
        node: String,
        /// The statement.
        statement: String,
        /// The cause.
        source: mysql_async::Error,
    },
    /// A pool over the sandbox failed.
    #[error("pool: {0}")]
    Pool(#[source] crate::Error),
    /// A condition did not hold before its deadline.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        after: Duration,
    },
}

impl SandboxError {
    fn io(what: &str, source: std::io::Error) -> Self {
        Self::Io {
            what: what.to_owned(),
            source,
        }
    }

    fn sql(node: &str, statement: &str, source: mysql_async::Error) -> Self {
        Self::Sql {
            node: node.to_owned(),
            statement: statement.to_owned(),
            source,
        }
    }
}

/// Polls `condition` every 10 ms until it returns `true` or `timeout`
/// passes.
pub async fn wait_for<F, Fut>(
    what: &str,
    timeout: Duration,
    mut condition: F,
) -> Result<(), SandboxError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(SandboxError::Timeout {
                what: what.to_owned(),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Configures a [`Cluster`].
#[derive(Clone, Debug, Default)]
pub struct ClusterBuilder {
    replicas: usize,
    semi_sync: bool,
    args: Vec<String>,
}

impl ClusterBuilder {
    /// How many replicas (default 0: a lone primary).
    pub fn replicas(mut self, count: usize) -> Self {
        self.replicas = count;
        self
    }

    /// Semi-synchronous replication: the primary waits (up to 60 s, longer
    /// than the pool's default statement timeout) for a replica to
    /// acknowledge every commit.
    pub fn semi_sync(mut self, enabled: bool) -> Self {
        self.semi_sync = enabled;
        self
    }

    /// An extra `mariadbd` option for every node (`--max-connections=1000`).
    pub fn server_arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Starts every node and wires replication.
    pub async fn start(self) -> Result<Cluster, SandboxError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "foobar-db-sandbox-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        let template_dir = tokio::task::spawn_blocking(template::template)
            .await
            .map_err(|e| SandboxError::io("template", std::io::Error::other(e)))??;
        drop(template_dir);

        let mut cluster = Cluster {
            root: root.clone(),
            nodes: Vec::with_capacity(self.replicas + 1),
            semi_sync: self.semi_sync,
        };
        let mut semi_args = Vec::new();
        if self.semi_sync {
            semi_args.push("--rpl-semi-sync-slave-enabled=ON".to_owned());
            semi_args.push("--rpl-semi-sync-master-timeout=60000".to_owned());
        }
        for index in 0..=self.replicas {
            let name = if index == 0 {
                "primary".to_owned()
            } else {
                format!("replica{index}")
            };
            let mut args = self.args.clone();
            args.extend(semi_args.iter().cloned());
            if index > 0 {
                args.push("--read-only=ON".to_owned());
            }
            let server_id = u32::try_from(index + 1).unwrap_or(u32::MAX);
            let node = Node::create(&root, &name, server_id, &args)?;
            cluster.nodes.push(node);
        }
        // Spawn all, then wait: the servers start in parallel.
        for node in &mut cluster.nodes {
            node.spawn()?;
        }
        for node in &mut cluster.nodes {
            node.wait_ready().await?;
        }
        if self.semi_sync {
            cluster.nodes[0]
                .run(&["SET GLOBAL rpl_semi_sync_master_enabled = ON"])
                .await?;
        }
        let primary_port = cluster.nodes[0].port();
        for node in &cluster.nodes[1..] {
            replicate_from(node, primary_port).await?;
        }
        Ok(cluster)
    }
}

/// Points `replica` at the server on `primary_port` (GTID, slave_pos) and
/// starts replication.
pub async fn replicate_from(replica: &Node, primary_port: u16) -> Result<(), SandboxError> {
    let change = format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary_port}, \
         MASTER_USER='{}', MASTER_PASSWORD='{}', MASTER_USE_GTID=slave_pos, \
         MASTER_CONNECT_RETRY=1",
        REPLICATION.user, REPLICATION.password
    );
    replica
        .run(&[
            "STOP SLAVE",
            "SET GLOBAL read_only = ON",
            &change,
            "START SLAVE",
        ])
        .await
}

/// A primary and its replicas, all private to this process.
#[derive(Debug)]
pub struct Cluster {
    root: PathBuf,
    nodes: Vec<Node>,
    semi_sync: bool,
}

impl Cluster {
    /// A builder: `Cluster::builder().replicas(2).start().await`.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Whether the cluster was started semi-synchronous.
    pub fn is_semi_sync(&self) -> bool {
        self.semi_sync
    }

    /// The node started as primary (node 0; it stays node 0 after a
    /// failover).
    pub fn primary(&self) -> &Node {
        &self.nodes[0]
    }

    /// The node started as primary, mutably (to kill or restart it).
    pub fn primary_mut(&mut self) -> &mut Node {
        &mut self.nodes[0]
    }

    /// Every node: the primary first, then the replicas.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node `index` (0 is the original primary).
    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }

    /// Node `index`, mutably.
    pub fn node_mut(&mut self, index: usize) -> &mut Node {
        &mut self.nodes[index]
    }

    /// The replicas as started.
    pub fn replicas(&self) -> &[Node] {
        &self.nodes[1..]
    }

    /// An [`RwPoolBuilder`](crate::RwPoolBuilder) over every node: the
    /// application account, node 0 hinted primary, the monitor and failover
    /// accounts, and the replication account for fencing.
    pub fn rw_pool_builder(&self) -> crate::RwPoolBuilder {
        let mut builder = crate::RwPool::builder()
            .monitor_credentials(MONITOR.user, MONITOR.password)
            .failover_credentials(ADMIN.user, ADMIN.password)
            .failover(
                crate::FailoverConfig::default()
                    .semi_sync(self.semi_sync)
                    .replication_credentials(REPLICATION.user, REPLICATION.password),
            );
        for (index, node) in self.nodes.iter().enumerate() {
            builder = if index == 0 {
                builder.primary(node.app_url())
            } else {
                builder.replica(node.app_url())
            };
        }
        builder
    }

    /// Application URLs of every node, primary first.
    pub fn app_urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::app_url).collect()
    }

    /// Waits until every started node other than `primary` has applied
    /// everything the node at `primary` has written.
    pub async fn wait_replicated(
        &self,
        primary: usize,
        timeout: Duration,
    ) -> Result<(), SandboxError> {
        let source = &self.nodes[primary];
        let mut conn = source.root().await?;
        let pos: Option<String> = conn
            .query_first("SELECT @@gtid_binlog_pos")
            .await
            .map_err(|e| SandboxError::sql(source.name(), "SELECT @@gtid_binlog_pos", e))?;
        let pos = pos.unwrap_or_default();
        let _ = conn.disconnect().await;
        for (index, node) in self.nodes.iter().enumerate() {
            if index == primary || !node.is_started() {
                continue;
            }
            let mut conn = node.root().await?;
            let statement = format!(
                "SELECT MASTER_GTID_WAIT('{pos}', {})",
                timeout.as_secs_f64()
            );
            let waited: Option<i64> = conn
                .query_first(&statement)
                .await
                .map_err(|e| SandboxError::sql(node.name(), &statement, e))?;
            let _ = conn.disconnect().await;
            if waited != Some(0) {
                return Err(SandboxError::Timeout {
                    what: format!("{} to apply {pos}", node.name()),
                    after: timeout,
                });
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Kill every process before removing the files under it.
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

//! One private `mariadbd` process.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

use super::template::{self, COMMON_ARGS};
use super::{Account, SandboxError, ADMIN, APP, APP_DATABASE, MONITOR, ROOT};

/// How long a node gets to accept connections after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A private MariaDB server on a loopback port, in its own temp directory.
///
/// The process is killed when the `Node` is dropped.
#[derive(Debug)]
pub struct Node {
    name: String,
    server_id: u32,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    /// Prepares a node from the template (does not start it).
    pub(super) fn create(
        root: &std::path::Path,
        name: &str,
        server_id: u32,
        extra_args: &[String],
    ) -> Result<Self, SandboxError> {
        let template = template::template()?;
        let dir = root.join(name);
        template::copy_dir(&template, &dir.join("data"))?;
        let port = free_port()?;
        Ok(Self {
            name: name.to_owned(),
            server_id,
            port,
            dir,
            args: extra_args.to_vec(),
            child: None,
        })
    }

    /// The node's name (`primary`, `replica1`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its `@@server_id`.
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// Its TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its temp directory (data directory, error log, socket).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// A `mysql://` URL for the application account and database.
    pub fn app_url(&self) -> String {
        self.url(APP, Some(APP_DATABASE))
    }

    /// A `mysql://` URL for the monitoring account.
    pub fn monitor_url(&self) -> String {
        self.url(MONITOR, None)
    }

    /// A `mysql://` URL for the failover (administration) account.
    pub fn admin_url(&self) -> String {
        self.url(ADMIN, None)
    }

    fn url(&self, account: Account, db: Option<&str>) -> String {
        format!(
            "mysql://{}:{}@127.0.0.1:{}/{}?prefer_socket=false",
            account.user,
            account.password,
            self.port,
            db.unwrap_or("")
        )
    }

    /// Connection options for the all-powerful root account.
    pub fn root_opts(&self) -> Opts {
        OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some(ROOT.user))
            .pass(Some(ROOT.password))
            .prefer_socket(false)
            .into()
    }

    /// A fresh root connection.
    pub async fn root(&self) -> Result<Conn, SandboxError> {
        Conn::new(self.root_opts())
            .await
            .map_err(|e| SandboxError::sql(&self.name, "connect", e))
    }

    /// Runs statements as root, one after the other.
    pub async fn run(&self, statements: &[&str]) -> Result<(), SandboxError> {
        let mut conn = self.root().await?;
        for statement in statements {
            conn.query_drop(*statement)
                .await
                .map_err(|e| SandboxError::sql(&self.name, statement, e))?;
        }
        let _ = conn.disconnect().await;
        Ok(())
    }

    /// Whether the node was started and not since killed or stopped
    /// through this handle.
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the process (after [`Node::kill`] or [`Node::stop`], a
    /// restart on the same port and data) and waits until it accepts
    /// connections.
    pub async fn start(&mut self) -> Result<(), SandboxError> {
        if self.is_running() {
            return Ok(());
        }
        self.spawn()?;
        self.wait_ready().await
    }

    pub(super) fn spawn(&mut self) -> Result<(), SandboxError> {
        let mariadbd = template::find_binary("mariadbd")?;
        let data = self.dir.join("data");
        let child = Command::new(mariadbd)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!(
                "--socket={}",
                self.dir.join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mysqld.pid").display()
            ))
            .arg(format!("--log-error={}", self.log_path().display()))
            .arg(format!("--server-id={}", self.server_id))
            .args(template::user_args())
            .args(COMMON_ARGS)
            .args([
                "--skip-name-resolve",
                "--log-bin=mysql-bin",
                "--relay-log=relay-bin",
                "--log-slave-updates",
                "--gtid-strict-mode=1",
                "--binlog-format=ROW",
                "--innodb-flush-log-at-trx-commit=2",
                "--sync-binlog=0",
                "--max-connections=500",
                // A replica cut off silently from its source notices after
                // this long (heartbeats every half of it), not after 60 s.
                "--slave-net-timeout=4",
            ])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| SandboxError::io("spawn mariadbd", e))?;
        self.child = Some(child);
        Ok(())
    }

    pub(super) async fn wait_ready(&mut self) -> Result<(), SandboxError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !self.is_running() {
                return Err(SandboxError::Start {
                    node: self.name.clone(),
                    log: self.log_tail(),
                });
            }
            if let Ok(conn) = Conn::new(self.root_opts()).await {
                let _ = conn.disconnect().await;
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(SandboxError::Start {
                    node: self.name.clone(),
                    log: format!(
                        "not accepting connections after {START_TIMEOUT:?}\n{}",
                        self.log_tail()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `kill -9`: the process dies at once, mid-write if it was writing.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A clean shutdown (`SHUTDOWN`), falling back to `kill -9` after 30 s.
    pub async fn stop(&mut self) {
        if !self.is_running() {
            self.child = None;
            return;
        }
        let _ = self.run(&["SHUTDOWN"]).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.is_running() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill().await;
    }

    /// `kill -9`, then start again on the same port and data.
    pub async fn restart(&mut self) -> Result<(), SandboxError> {
        self.kill().await;
        self.start().await
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("mysqld.err")
    }

    /// The last lines of the server's error log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port the kernel just handed out on 127.0.0.1.
fn free_port() -> Result<u16, SandboxError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| SandboxError::io("pick a free port", e))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|e| SandboxError::io("pick a free port", e))
}

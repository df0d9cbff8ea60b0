//! The whole www.foobar.com topology on one machine.
//!
//! [`run`] makes a development CA and certificates, starts a private
//! MariaDB primary and two replicas with semi-synchronous GTID replication and
//! TLS (or uses existing servers), then runs every role as its own process
//! — two web servers and the load balancer — by starting this same binary
//! with a role name (`stack web …`, `stack lb …`). A dead role is restarted
//! after a short back-off, as a process supervisor would. Everything stops
//! on Ctrl-C or SIGTERM, and the temporary data is removed.
//!
//! With `--acme-pebble`, it also starts a private Pebble (the ACME test
//! server) and the load balancer takes its certificate for
//! `www.foobar.test` from it over TLS-ALPN-01; with `--acme-directory`, from
//! any ACME CA.
//!
//! With `--lbs N` (N ≥ 2) it runs N load balancers on consecutive ports,
//! which share their per-client rate limit through a private `redis-server`
//! (a random loopback port, a directory of the stack's, nothing saved,
//! killed at exit). Every admin listener shows every other role on its
//! fleet view (`/fleet`, `/fleet.json`).
//!
//! It writes `stack.json` into its directory: the addresses, process ids and
//! files of every part (every load balancer under `lbs`, the first also as
//! `lb`/`lb_admin`), for scripts and the end-to-end tests.

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use foobar_core::Shutdown;
use foobar_db::mysql_async::prelude::Queryable;
use foobar_db::sandbox::{self, Cluster};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use crate::certs::StackCerts;
use crate::config::{self, ConfigError, Parsed};
use crate::pebble::{Pebble, PebbleOptions};
use crate::AppError;

/// The `stack` command's command line. Every option may also be set in
/// the `--config` file (same names, TOML); a flag overrides the file.
#[derive(Debug, clap::Parser)]
#[command(
    name = "stack",
    about = "The whole foobar reference topology on one machine",
    after_help = "Roles, as the stack runs them:\n    stack web --help    one web server\n    stack lb --help     a load balancer\n\n\
                  With --lbs 2 or more, the load balancers share their rate limit through a \
                  private redis-server (Debian package redis-server).\n\n\
                  Passwords of existing database servers come from files (--db-password-file, \
                  --db-monitor-password-file) or from FOOBAR_DB_PASSWORD and \
                  FOOBAR_DB_MONITOR_PASSWORD, never from the command line."
)]
pub struct StackArgs {
    /// A TOML file with any of these options (a flag overrides it)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where certificates, rules, logs and stack.json go [default: a temp dir, removed at exit]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The site, over HTTPS
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub lb: SocketAddr,
    /// The load balancer's admin and status page
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub lb_admin: SocketAddr,
    /// A web server's HTTPS address (repeat for more) [default: 127.0.0.1:8541, 127.0.0.1:8542]
    #[arg(long = "web", value_name = "ADDR")]
    pub webs: Vec<SocketAddr>,
    /// Its admin address, in the same order [default: 127.0.0.1:9911, 127.0.0.1:9912]
    #[arg(long = "web-admin", value_name = "ADDR")]
    pub web_admins: Vec<SocketAddr>,
    /// Use this MariaDB/MySQL primary (mysql://user@host:port/db) instead of private servers
    #[arg(long, value_name = "URL")]
    pub db_primary: Option<String>,
    /// A replica of it (repeatable)
    #[arg(long = "db-replica", value_name = "URL")]
    pub db_replicas: Vec<String>,
    /// The CA of the existing servers' TLS certificates
    #[arg(long, value_name = "PEM")]
    pub db_ca: Option<PathBuf>,
    /// File holding the existing servers' application password [env: FOOBAR_DB_PASSWORD]
    #[arg(long, value_name = "FILE")]
    pub db_password_file: Option<PathBuf>,
    /// The monitoring account on the existing servers
    #[arg(long, value_name = "USER")]
    pub db_monitor_user: Option<String>,
    /// File holding its password [env: FOOBAR_DB_MONITOR_PASSWORD]
    #[arg(long, value_name = "FILE")]
    pub db_monitor_password_file: Option<PathBuf>,
    /// Requests per second per client at the load balancer
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// The load balancer takes its certificate from this ACME CA (directory
    /// URL), beside the development one
    #[arg(long, value_name = "URL", conflicts_with = "acme_pebble")]
    pub acme_directory: Option<String>,
    /// Start a private Pebble (the ACME test server; Debian package
    /// `pebble`) and take the load balancer's certificate from it
    #[arg(long)]
    pub acme_pebble: bool,
    /// A name on the ACME certificate (repeatable) [default with
    /// --acme-pebble: www.foobar.test]
    #[arg(long = "acme-name", value_name = "NAME")]
    pub acme_names: Vec<String>,
    /// The CA of the ACME server's own HTTPS endpoint [default: the
    /// system's roots]
    #[arg(long, value_name = "PEM")]
    pub acme_ca_file: Option<PathBuf>,
    /// Load balancers to run, on consecutive ports from --lb and
    /// --lb-admin; two or more share the rate limit through a private Redis
    #[arg(long, default_value_t = NonZeroU16::MIN, value_name = "N")]
    pub lbs: NonZeroU16,
    /// With two or more load balancers: how long each waits for Redis
    /// before its local fallback decides [default: the lb's own, 50ms]
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    pub redis_timeout: Option<Duration>,
}

/// The `stack` command's configuration file: the flags' names, all
/// optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct StackFile {
    dir: Option<PathBuf>,
    lb: Option<SocketAddr>,
    lb_admin: Option<SocketAddr>,
    web: Option<Vec<SocketAddr>>,
    web_admin: Option<Vec<SocketAddr>>,
    db_primary: Option<String>,
    db_replica: Option<Vec<String>>,
    db_ca: Option<PathBuf>,
    db_password_file: Option<PathBuf>,
    db_monitor_user: Option<String>,
    db_monitor_password_file: Option<PathBuf>,
    rate: Option<u32>,
    acme_directory: Option<String>,
    acme_pebble: Option<bool>,
    acme_name: Option<Vec<String>>,
    acme_ca_file: Option<PathBuf>,
    lbs: Option<NonZeroU16>,
    redis_timeout: Option<String>,
}

/// Addresses and options of a stack.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Where files go; a temporary directory (removed at exit) when `None`.
    pub dir: Option<PathBuf>,
    /// The load balancer's HTTPS address.
    pub lb: SocketAddr,
    /// The load balancer's admin address.
    pub lb_admin: SocketAddr,
    /// Each web server's (HTTPS, admin) addresses.
    pub webs: Vec<(SocketAddr, SocketAddr)>,
    /// Existing database servers, or `None` for private ones.
    pub existing_db: Option<ExistingDb>,
    /// Requests per second per client at the load balancer.
    pub rate: u32,
    /// Every load balancer's (HTTPS, admin) addresses; the first is
    /// [`lb`](Self::lb), [`lb_admin`](Self::lb_admin).
    pub lbs: Vec<(SocketAddr, SocketAddr)>,
    /// Where the load balancer's ACME certificate comes from, if anywhere.
    pub acme: Option<StackAcme>,
    /// How long each load balancer waits for the shared Redis; `None`
    /// leaves the lb's default.
    pub redis_timeout: Option<Duration>,
}

/// The ACME CA of the stack's load balancer.
#[derive(Debug, Clone)]
pub struct StackAcme {
    /// A private Pebble, or an existing CA.
    pub ca: AcmeCa,
    /// The names on the certificate.
    pub names: Vec<String>,
}

/// Which ACME CA.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AcmeCa {
    /// A private Pebble started by the stack.
    Pebble,
    /// An existing CA: its directory URL, and the CA of its HTTPS endpoint
    /// if not a system root.
    Directory {
        /// The directory URL.
        url: String,
        /// The CA of its HTTPS endpoint.
        ca_file: Option<PathBuf>,
    },
}

/// Database servers the stack does not own.
#[derive(Debug, Clone)]
pub struct ExistingDb {
    /// The primary's URL, without a password.
    pub primary: String,
    /// Replica URLs, without passwords.
    pub replicas: Vec<String>,
    /// The CA of their TLS certificates, if they speak TLS.
    pub ca: Option<PathBuf>,
    /// The application account's password.
    pub password: Option<String>,
    /// The monitoring account (`user`, `password`).
    pub monitor: Option<(String, String)>,
}

impl StackConfig {
    /// The configuration from a parsed command line and its `--config` file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the flag, the file and line, or the secret
    /// file.
    pub fn from_args(parsed: &Parsed<StackArgs>) -> Result<Self, ConfigError> {
        let file: StackFile = match &parsed.args.config {
            Some(path) => config::load_file(path)?,
            None => StackFile::default(),
        };
        let args = &parsed.args;
        let list =
            |flag: &[SocketAddr], file: Option<Vec<SocketAddr>>, default: [SocketAddr; 2]| {
                if flag.is_empty() {
                    file.unwrap_or_else(|| default.to_vec())
                } else {
                    flag.to_vec()
                }
            };
        let webs = list(
            &args.webs,
            file.web,
            [
                SocketAddr::from(([127, 0, 0, 1], 8541)),
                SocketAddr::from(([127, 0, 0, 1], 8542)),
            ],
        );
        let admins = list(
            &args.web_admins,
            file.web_admin,
            [
                SocketAddr::from(([127, 0, 0, 1], 9911)),
                SocketAddr::from(([127, 0, 0, 1], 9912)),
            ],
        );
        if webs.len() != admins.len() {
            return Err(ConfigError::Invalid {
                flag: "web-admin",
                reason: "give one --web-admin per --web".to_owned(),
            });
        }
        let existing_db =
            match parsed.pick_opt("db_primary", args.db_primary.clone(), file.db_primary) {
                None => None,
                Some(primary) => {
                    let password_file = parsed.pick_opt(
                        "db_password_file",
                        args.db_password_file.clone(),
                        file.db_password_file,
                    );
                    let monitor_file = parsed.pick_opt(
                        "db_monitor_password_file",
                        args.db_monitor_password_file.clone(),
                        file.db_monitor_password_file,
                    );
                    let monitor = match parsed.pick_opt(
                        "db_monitor_user",
                        args.db_monitor_user.clone(),
                        file.db_monitor_user,
                    ) {
                        Some(user) => Some((
                            user,
                            config::secret(monitor_file.as_deref(), "FOOBAR_DB_MONITOR_PASSWORD")?
                                .unwrap_or_default(),
                        )),
                        None => None,
                    };
                    Some(ExistingDb {
                        primary,
                        replicas: if args.db_replicas.is_empty() {
                            file.db_replica.unwrap_or_default()
                        } else {
                            args.db_replicas.clone()
                        },
                        ca: parsed.pick_opt("db_ca", args.db_ca.clone(), file.db_ca),
                        password: config::secret(password_file.as_deref(), "FOOBAR_DB_PASSWORD")?,
                        monitor,
                    })
                }
            };
        let names = if args.acme_names.is_empty() {
            file.acme_name.unwrap_or_default()
        } else {
            args.acme_names.clone()
        };
        let pebble = parsed.pick("acme_pebble", args.acme_pebble, file.acme_pebble);
        let directory = parsed.pick_opt(
            "acme_directory",
            args.acme_directory.clone(),
            file.acme_directory,
        );
        let ca_file = parsed.pick_opt("acme_ca_file", args.acme_ca_file.clone(), file.acme_ca_file);
        if pebble && ca_file.is_some() {
            return Err(ConfigError::Invalid {
                flag: "acme-ca-file",
                reason: "with --acme-pebble, the stack makes Pebble's CA itself".to_owned(),
            });
        }
        let acme = match (pebble, directory) {
            (true, Some(_)) => {
                return Err(ConfigError::Invalid {
                    flag: "acme-pebble",
                    reason: "--acme-pebble and --acme-directory exclude each other".to_owned(),
                })
            }
            (true, None) => Some(StackAcme {
                ca: AcmeCa::Pebble,
                names: if names.is_empty() {
                    vec!["www.foobar.test".to_owned()]
                } else {
                    names
                },
            }),
            (false, Some(_)) if names.is_empty() => {
                return Err(ConfigError::Missing { flag: "acme-name" });
            }
            (false, Some(url)) => Some(StackAcme {
                ca: AcmeCa::Directory { url, ca_file },
                names,
            }),
            (false, None) => {
                if !names.is_empty() {
                    return Err(ConfigError::Invalid {
                        flag: "acme-name",
                        reason: "needs --acme-pebble or --acme-directory".to_owned(),
                    });
                }
                None
            }
        };
        let lb = parsed.pick("lb", args.lb, file.lb);
        let lb_admin = parsed.pick("lb_admin", args.lb_admin, file.lb_admin);
        let lbs = lb_addresses(lb, lb_admin, parsed.pick("lbs", args.lbs, file.lbs))?;
        let file_redis_timeout = file
            .redis_timeout
            .as_deref()
            .map(config::parse_duration)
            .transpose()
            .map_err(|reason| ConfigError::Invalid {
                flag: "redis-timeout",
                reason,
            })?;
        Ok(Self {
            redis_timeout: parsed.pick_opt("redis_timeout", args.redis_timeout, file_redis_timeout),
            acme,
            lbs,
            dir: parsed.pick_opt("dir", args.dir.clone(), file.dir),
            lb,
            lb_admin,
            webs: webs.into_iter().zip(admins).collect(),
            existing_db,
            rate: parsed.pick("rate", args.rate, file.rate),
        })
    }
}

/// `count` load balancers' (HTTPS, admin) addresses on consecutive ports
/// from the first one's.
fn lb_addresses(
    lb: SocketAddr,
    admin: SocketAddr,
    count: NonZeroU16,
) -> Result<Vec<(SocketAddr, SocketAddr)>, ConfigError> {
    let shifted = |addr: SocketAddr, by: u16| {
        if by == 0 {
            return Some(addr);
        }
        let port = addr.port().checked_add(by).filter(|_| addr.port() != 0)?;
        Some(SocketAddr::new(addr.ip(), port))
    };
    (0..count.get())
        .map(|i| match (shifted(lb, i), shifted(admin, i)) {
            (Some(lb), Some(admin)) => Ok((lb, admin)),
            _ => Err(ConfigError::Invalid {
                flag: "lbs",
                reason: format!(
                    "{count} load balancers need {count} consecutive ports from --lb {lb} and --lb-admin {admin}"
                ),
            }),
        })
        .collect()
}

/// What `stack.json` holds: where everything is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackInfo {
    /// The stack's directory.
    pub dir: PathBuf,
    /// The CA to trust (PEM).
    pub ca: PathBuf,
    /// The site's address.
    pub lb: SocketAddr,
    /// The load balancer's admin address.
    pub lb_admin: SocketAddr,
    /// The load balancer's served certificate and key files.
    pub lb_cert: (PathBuf, PathBuf),
    /// The load balancer's client certificate and key (what the web servers accept).
    pub lb_client_cert: (PathBuf, PathBuf),
    /// The web servers.
    pub webs: Vec<WebInfo>,
    /// The database servers the stack started (empty with existing ones).
    pub db: Vec<DbNodeInfo>,
    /// The names on the load balancer's ACME certificate (empty without
    /// ACME).
    #[serde(default)]
    pub acme_names: Vec<String>,
    /// With `--acme-pebble`: Pebble's root (PEM), which clients trust to
    /// accept the ACME certificate.
    #[serde(default)]
    pub acme_root: Option<PathBuf>,
    /// Every load balancer (the first is [`lb`](Self::lb)).
    #[serde(default)]
    pub lbs: Vec<LbInfo>,
    /// The private Redis the load balancers share their rate limit
    /// through (`redis://127.0.0.1:<port>/`), with two or more.
    #[serde(default)]
    pub redis: Option<String>,
}

/// One load balancer in `stack.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LbInfo {
    /// `lb1`, `lb2`…
    pub name: String,
    /// Its HTTPS address.
    pub listen: SocketAddr,
    /// Its admin address.
    pub admin: SocketAddr,
    /// Its access log.
    pub access_log: PathBuf,
}

/// One web server in `stack.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebInfo {
    /// Its name.
    pub name: String,
    /// Its HTTPS address.
    pub listen: SocketAddr,
    /// Its admin address.
    pub admin: SocketAddr,
}

/// One private database server in `stack.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DbNodeInfo {
    /// `primary`, `replica1`…
    pub name: String,
    /// `127.0.0.1:<port>`.
    pub address: String,
    /// The file holding its process id.
    pub pid_file: PathBuf,
}

/// The private database servers, or the URLs of existing ones. URLs hold
/// no passwords: the roles read them from files only their user can read.
struct Database {
    cluster: Option<Cluster>,
    primary: String,
    replicas: Vec<String>,
    ca: Option<PathBuf>,
    password: Option<PathBuf>,
    monitor: Option<Account>,
    failover: Option<Account>,
    replication: Option<Account>,
}

/// A database account whose password is in a file.
struct Account {
    user: String,
    password_file: PathBuf,
}

/// Writes a secret into `dir/secrets/name`, readable by this user only.
fn write_secret(dir: &Path, name: &str, secret: &str) -> Result<PathBuf, AppError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets)?;
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700))?;
    let path = secrets.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    std::io::Write::write_all(&mut file, secret.as_bytes())?;
    Ok(path)
}

/// Runs the stack until `shutdown` fires.
///
/// # Errors
/// When a part cannot start.
pub async fn run(config: StackConfig, shutdown: Shutdown) -> Result<(), AppError> {
    let started = Instant::now();
    let (dir, temporary) = match &config.dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("foobar-stack-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir)?;
    let _cleanup = temporary.then(|| RemoveOnDrop(dir.clone()));

    let certs = StackCerts::generate(&dir)?;
    // Firewall 1: loopback clients, except one address kept denied to show
    // (and test) the rule; Firewall 2: the load balancer's address only.
    let lb_rules = dir.join("lb.rules");
    std::fs::write(
        &lb_rules,
        "# Firewall 1: who may reach the load balancer\ndeny 127.0.0.13\nallow 127.0.0.0/8\nallow ::1\ndefault deny\n",
    )?;
    let web_rules = dir.join("web.rules");
    std::fs::write(
        &web_rules,
        "# Firewall 2: only the load balancer\nallow 127.0.0.1\ndefault deny\n",
    )?;

    // Pebble validates TLS-ALPN-01 on the load balancer's HTTPS port.
    let pebble = match config.acme.as_ref().map(|a| &a.ca) {
        Some(AcmeCa::Pebble) => {
            tracing::info!("starting a private Pebble (ACME test server)");
            let pebble = Pebble::start(
                &dir.join("pebble"),
                &PebbleOptions::tls_alpn_01(config.lb.port()),
            )
            .await?;
            pebble.write_root(&dir.join("pebble-root.pem")).await?;
            Some(pebble)
        }
        _ => None,
    };
    let database = start_database(&config, &certs, &dir).await?;
    let redis = match config.lbs.len() {
        0 | 1 => None,
        _ => Some(PrivateRedis::start(&dir.join("redis")).await?),
    };
    let info = StackInfo {
        lbs: config
            .lbs
            .iter()
            .enumerate()
            .map(|(i, (listen, admin))| LbInfo {
                name: format!("lb{}", i + 1),
                listen: *listen,
                admin: *admin,
                // The first keeps the name a single load balancer's log has.
                access_log: dir.join(match i {
                    0 => "lb-access.log".to_owned(),
                    _ => format!("lb{}-access.log", i + 1),
                }),
            })
            .collect(),
        redis: redis.as_ref().map(PrivateRedis::url),
        dir: dir.clone(),
        ca: certs.ca.clone(),
        lb: config.lb,
        lb_admin: config.lb_admin,
        lb_cert: (certs.lb.cert.clone(), certs.lb.key.clone()),
        lb_client_cert: (certs.lb_client.cert.clone(), certs.lb_client.key.clone()),
        webs: config
            .webs
            .iter()
            .enumerate()
            .map(|(i, (listen, admin))| WebInfo {
                name: format!("web{}", i + 1),
                listen: *listen,
                admin: *admin,
            })
            .collect(),
        db: database
            .cluster
            .iter()
            .flat_map(|c| c.nodes())
            .map(|node| DbNodeInfo {
                name: node.name().to_owned(),
                address: node.address(),
                pid_file: node.dir().join("mysqld.pid"),
            })
            .collect(),
        acme_names: config
            .acme
            .as_ref()
            .map(|a| a.names.clone())
            .unwrap_or_default(),
        acme_root: pebble.as_ref().map(|_| dir.join("pebble-root.pem")),
    };

    let mut roles: Vec<RoleProcess> = info
        .webs
        .iter()
        .map(|web| {
            let mut args = web_args(&dir, web, &certs, &web_rules, &database, config.rate);
            args.extend(fleet_args(&info, web.admin));
            RoleProcess::new(web.name.clone(), args)
        })
        .collect();
    for lb in &info.lbs {
        let mut args = lb_args(&config, lb, &info, &certs, &lb_rules, pebble.as_ref());
        args.extend(fleet_args(&info, lb.admin));
        if let Some(url) = &info.redis {
            args.push(format!("--redis-url={url}"));
            if let Some(timeout) = config.redis_timeout {
                args.push(format!("--redis-timeout={}ms", timeout.as_millis().max(1)));
            }
        }
        roles.push(RoleProcess::new(lb.name.clone(), args));
    }
    for role in &mut roles {
        role.spawn()?;
    }
    // Written aside and renamed: a reader never sees a half-written file.
    let partial = dir.join("stack.json.partial");
    std::fs::write(&partial, serde_json::to_vec_pretty(&info)?)?;
    std::fs::rename(&partial, dir.join("stack.json"))?;

    for lb in &info.lbs {
        wait_ready(lb.admin, Duration::from_secs(60)).await?;
    }
    if let (Some(root), Some(name)) = (&info.acme_root, info.acme_names.first()) {
        wait_certificate(config.lb, name, root, Duration::from_secs(60)).await?;
    }
    announce(&info, pebble.as_ref(), started.elapsed());

    // Supervise: restart a role that died, until shutdown.
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            () = shutdown.wait() => break,
            _ = tick.tick() => {
                for role in &mut roles {
                    role.supervise()?;
                }
            }
        }
    }
    tracing::info!("stopping the stack");
    for role in &mut roles {
        role.terminate();
    }
    for role in &mut roles {
        role.wait_stopped(Duration::from_secs(15)).await;
    }
    drop(database);
    drop(redis);
    drop(pebble);
    Ok(())
}

async fn start_database(
    config: &StackConfig,
    certs: &StackCerts,
    dir: &Path,
) -> Result<Database, AppError> {
    if let Some(existing) = &config.existing_db {
        let password = match &existing.password {
            Some(password) => Some(write_secret(dir, "db-app", password)?),
            None => None,
        };
        let monitor = match &existing.monitor {
            Some((user, password)) => Some(Account {
                user: user.clone(),
                password_file: write_secret(dir, "db-monitor", password)?,
            }),
            None => None,
        };
        return Ok(Database {
            cluster: None,
            primary: existing.primary.clone(),
            replicas: existing.replicas.clone(),
            ca: existing.ca.clone(),
            password,
            monitor,
            failover: None,
            replication: None,
        });
    }
    tracing::info!(
        "starting a private MariaDB primary and two replicas (semi-sync GTID replication, TLS)"
    );
    let cluster = Cluster::builder()
        // Three servers: the web servers' pools decide failovers by a
        // majority of them.
        .replicas(2)
        .semi_sync(true)
        .server_arg(format!("--ssl-ca={}", certs.ca.display()))
        .server_arg(format!("--ssl-cert={}", certs.db.cert.display()))
        .server_arg(format!("--ssl-key={}", certs.db.key.display()))
        .start()
        .await?;
    // Firewall 3: the application's account may only connect over TLS.
    let mut root = cluster.primary().root().await?;
    root.query_drop(format!(
        "ALTER USER '{}'@'127.0.0.1' REQUIRE SSL",
        sandbox::APP.user
    ))
    .await?;
    drop(root);
    let account = |a: sandbox::Account, name: &str| -> Result<Option<Account>, AppError> {
        Ok(Some(Account {
            user: a.user.to_owned(),
            password_file: write_secret(dir, name, a.password)?,
        }))
    };
    let url = |node: &sandbox::Node| {
        format!(
            "mysql://{}@{}/{}",
            sandbox::APP.user,
            node.address(),
            sandbox::APP_DATABASE
        )
    };
    Ok(Database {
        primary: url(cluster.primary()),
        replicas: cluster.replicas().iter().map(url).collect(),
        ca: Some(certs.ca.clone()),
        password: Some(write_secret(dir, "db-app", sandbox::APP.password)?),
        monitor: account(sandbox::MONITOR, "db-monitor")?,
        failover: account(sandbox::ADMIN, "db-failover")?,
        replication: account(sandbox::REPLICATION, "db-replication")?,
        cluster: Some(cluster),
    })
}

fn web_args(
    dir: &Path,
    web: &WebInfo,
    certs: &StackCerts,
    rules: &Path,
    db: &Database,
    rate: u32,
) -> Vec<String> {
    let mut args = vec![
        "web".to_owned(),
        format!("--name={}", web.name),
        format!("--listen={}", web.listen),
        format!("--admin={}", web.admin),
        format!("--cert={}", certs.web.cert.display()),
        format!("--key={}", certs.web.key.display()),
        format!("--client-ca={}", certs.ca.display()),
        format!("--rules={}", rules.display()),
        format!("--db-primary={}", db.primary),
        format!(
            "--access-log={}",
            dir.join(format!("{}-access.log", web.name)).display()
        ),
        "--access-log-format=combined".to_owned(),
        // The clients behind the load balancer get the same limit there.
        format!("--rate={rate}"),
    ];
    args.extend(db.replicas.iter().map(|r| format!("--db-replica={r}")));
    if let Some(ca) = &db.ca {
        args.push(format!("--db-ca={}", ca.display()));
    }
    if let Some(password) = &db.password {
        args.push(format!("--db-password-file={}", password.display()));
    }
    if let Some(monitor) = &db.monitor {
        args.push(format!("--db-monitor-user={}", monitor.user));
        args.push(format!(
            "--db-monitor-password-file={}",
            monitor.password_file.display()
        ));
    }
    // Every web server takes part in failover: they decide together,
    // through a majority of locks on the database servers.
    if let (Some(failover), Some(replication)) = (&db.failover, &db.replication) {
        args.push(format!("--db-failover-user={}", failover.user));
        args.push(format!(
            "--db-failover-password-file={}",
            failover.password_file.display()
        ));
        args.push(format!("--db-replication-user={}", replication.user));
        args.push(format!(
            "--db-replication-password-file={}",
            replication.password_file.display()
        ));
        args.push("--failover=auto".to_owned());
    }
    if db.cluster.is_some() {
        args.push("--semi-sync=true".to_owned());
    }
    args
}

fn lb_args(
    config: &StackConfig,
    lb: &LbInfo,
    info: &StackInfo,
    certs: &StackCerts,
    rules: &Path,
    pebble: Option<&Pebble>,
) -> Vec<String> {
    let mut args = vec![
        "lb".to_owned(),
        format!("--listen={}", lb.listen),
        format!("--admin={}", lb.admin),
        format!("--cert={}", certs.lb.cert.display()),
        format!("--key={}", certs.lb.key.display()),
        format!("--rules={}", rules.display()),
        format!("--rate={}", config.rate),
        format!("--upstream-ca={}", certs.ca.display()),
        format!("--client-cert={}", certs.lb_client.cert.display()),
        format!("--client-key={}", certs.lb_client.key.display()),
        format!("--access-log={}", lb.access_log.display()),
    ];
    args.extend(
        info.webs
            .iter()
            .map(|w| format!("--backend=https://{}", w.listen)),
    );
    if let Some(acme) = &config.acme {
        let (url, ca_file) = match (&acme.ca, pebble) {
            (AcmeCa::Directory { url, ca_file }, _) => (url.clone(), ca_file.clone()),
            (AcmeCa::Pebble, Some(pebble)) => (
                pebble.directory().to_owned(),
                Some(pebble.api_ca().to_owned()),
            ),
            (AcmeCa::Pebble, None) => return args,
        };
        args.push(format!("--acme-directory={url}"));
        args.push(format!(
            "--acme-storage={}",
            info.dir.join("acme").display()
        ));
        args.extend(acme.names.iter().map(|n| format!("--acme-name={n}")));
        if let Some(ca) = ca_file {
            args.push(format!("--acme-ca-file={}", ca.display()));
        }
    }
    args
}

/// The fleet view of a role's admin listener: every other role's admin
/// listener (load balancers and web servers) as a peer.
fn fleet_args(info: &StackInfo, own: SocketAddr) -> Vec<String> {
    let lbs = info.lbs.iter().map(|lb| (&lb.name, lb.admin));
    let webs = info.webs.iter().map(|web| (&web.name, web.admin));
    lbs.chain(webs)
        .filter(|(_, admin)| *admin != own)
        .map(|(name, admin)| format!("--fleet-peer={name}=http://{admin}"))
        .collect()
}

/// A private `redis-server` for the load balancers' shared rate limit: a
/// random loopback port, its own directory, nothing saved; killed when
/// dropped.
struct PrivateRedis {
    port: u16,
    _child: Child,
}

impl PrivateRedis {
    /// How long it gets to answer `PING` after it is started.
    const START_TIMEOUT: Duration = Duration::from_secs(15);

    async fn start(dir: &Path) -> Result<Self, AppError> {
        std::fs::create_dir_all(dir)?;
        // A port picked free may be taken before redis-server binds it:
        // then it exits at once, and another port is tried.
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir)
                .arg("--logfile")
                .arg(dir.join("redis.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|error| {
                    format!("cannot start redis-server (Debian package redis-server), needed by two or more load balancers: {error}")
                })?;
            let deadline = Instant::now() + Self::START_TIMEOUT;
            loop {
                if redis_pongs(port).await {
                    tracing::info!(
                        port,
                        "private Redis up (shared rate limit of the load balancers)"
                    );
                    return Ok(Self {
                        port,
                        _child: child,
                    });
                }
                if let Ok(Some(status)) = child.try_wait() {
                    last_error = format!("redis-server on port {port} exited with {status}");
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "redis-server did not answer within {:?} (see {})",
                        Self::START_TIMEOUT,
                        dir.join("redis.log").display()
                    )
                    .into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Err(format!("{last_error} (see {})", dir.join("redis.log").display()).into())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

/// Whether a Redis on this loopback port answers `PING`.
async fn redis_pongs(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).await.ok()?;
        Some(&answer == b"+PONG\r\n")
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// A role running as a child process of the stack.
struct RoleProcess {
    name: String,
    args: Vec<String>,
    child: Option<Child>,
    died_at: Option<Instant>,
}

impl RoleProcess {
    /// How long a dead role stays down before it is restarted.
    const RESTART_AFTER: Duration = Duration::from_secs(3);

    fn new(name: String, args: Vec<String>) -> Self {
        Self {
            name,
            args,
            child: None,
            died_at: None,
        }
    }

    fn spawn(&mut self) -> Result<(), AppError> {
        let exe = std::env::current_exe()?;
        let child = Command::new(exe)
            .args(&self.args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        tracing::info!(role = %self.name, pid = child.id(), "started");
        self.child = Some(child);
        self.died_at = None;
        Ok(())
    }

    fn supervise(&mut self) -> Result<(), AppError> {
        if let Some(child) = &mut self.child {
            if let Ok(Some(status)) = child.try_wait() {
                tracing::warn!(role = %self.name, %status, "role exited; restarting it in {:?}", Self::RESTART_AFTER);
                self.child = None;
                self.died_at = Some(Instant::now());
            }
        }
        if self
            .died_at
            .is_some_and(|at| at.elapsed() >= Self::RESTART_AFTER)
        {
            self.spawn()?;
        }
        Ok(())
    }

    /// Asks the role to stop gracefully (SIGTERM).
    fn terminate(&mut self) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }

    async fn wait_stopped(&mut self, limit: Duration) {
        if let Some(child) = &mut self.child {
            if tokio::time::timeout(limit, child.wait()).await.is_err() {
                tracing::warn!(role = %self.name, "did not stop in time; killing it");
                let _ = child.kill().await;
            }
        }
    }
}

/// Waits until the load balancer's `/readyz` answers 200 (a healthy backend).
async fn wait_ready(admin: SocketAddr, limit: Duration) -> Result<(), AppError> {
    let deadline = Instant::now() + limit;
    loop {
        if admin_status(admin, "/readyz").await == Some(200) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("the stack was not ready after {limit:?} (no healthy web server behind the load balancer)").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the load balancer serves a certificate for `name` that
/// `root` (PEM file) vouches for: the ACME certificate is in place.
async fn wait_certificate(
    lb: SocketAddr,
    name: &str,
    root: &Path,
    limit: Duration,
) -> Result<(), AppError> {
    let config = foobar_core::tls::ClientTls::new().ca_file(root).build()?;
    let server_name = foobar_core::tls::server_name(name)?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let deadline = Instant::now() + limit;
    loop {
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect(lb).await.ok()?;
            connector.connect(server_name.clone(), tcp).await.ok()
        };
        if tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .ok()
            .flatten()
            .is_some()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the load balancer had no ACME certificate for {name} after {limit:?} (see the lb's log and the status page)"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The status code of a GET on a plain-HTTP admin address.
pub async fn admin_status(admin: SocketAddr, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {admin}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut head))
        .await
        .ok()?
        .ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[allow(clippy::print_stdout)]
fn announce(info: &StackInfo, pebble: Option<&Pebble>, took: Duration) {
    let lb = info.lb;
    println!(
        "\nfoobar stack is up ({:.1} s)\n\n  site (HTTPS):     https://localhost:{port}/\n                    curl --cacert {ca} https://localhost:{port}/entries\n                    curl --cacert {ca} -d '{{\"author\":\"me\",\"message\":\"hi\"}}' https://localhost:{port}/entries",
        took.as_secs_f64(),
        port = lb.port(),
        ca = info.ca.display(),
    );
    if let (Some(root), Some(pebble)) = (&info.acme_root, pebble) {
        for name in &info.acme_names {
            println!(
                "  site (ACME):      https://{name}:{port}/   certificate from Pebble\n                    curl --cacert {root} --resolve {name}:{port}:127.0.0.1 https://{name}:{port}/entries",
                port = lb.port(),
                root = root.display(),
            );
        }
        println!(
            "                    a browser: trust {root} (Pebble's root, new at each start)\n                    and point {names} at 127.0.0.1 (/etc/hosts)\n  Pebble (ACME):    {directory}",
            root = root.display(),
            names = info.acme_names.join(", "),
            directory = pebble.directory(),
        );
    } else if !info.acme_names.is_empty() {
        println!(
            "  site (ACME):      {}: certificate requested in the background (status page)",
            info.acme_names.join(", ")
        );
    }
    println!(
        "  status page:      http://{admin}/status\n  metrics:          http://{admin}/metrics",
        admin = info.lb_admin,
    );
    for lb in info.lbs.iter().skip(1) {
        println!(
            "  {} (HTTPS):      https://localhost:{}/   status: http://{}/status",
            lb.name,
            lb.listen.port(),
            lb.admin
        );
    }
    if let Some(redis) = &info.redis {
        println!("  shared limit:     {redis} (private Redis)");
    }
    println!("  fleet view:       http://{}/fleet", info.lb_admin);
    for web in &info.webs {
        println!(
            "  {} status:     http://{}/status   (database topology)",
            web.name, web.admin
        );
    }
    println!(
        "  files:            {}\n\nCtrl-C stops everything.\n",
        info.dir.display()
    );
}

/// Removes a temporary directory when the stack ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_balancers_take_consecutive_ports() {
        let lb = SocketAddr::from(([127, 0, 0, 1], 8443));
        let admin = SocketAddr::from(([127, 0, 0, 1], 9901));
        let three = lb_addresses(lb, admin, NonZeroU16::new(3).unwrap()).unwrap();
        let ports: Vec<(u16, u16)> = three.iter().map(|(l, a)| (l.port(), a.port())).collect();
        assert_eq!(ports, [(8443, 9901), (8444, 9902), (8445, 9903)]);
        let last = SocketAddr::from(([127, 0, 0, 1], u16::MAX));
        let error = lb_addresses(last, admin, NonZeroU16::new(2).unwrap()).unwrap_err();
        assert!(error.to_string().starts_with("--lbs: "), "{error}");
        assert!(lb_addresses(last, admin, NonZeroU16::MIN).is_ok());
    }
}

//! The load-balancer role: HTTPS in front, HTTPS with a client certificate
//! to the web servers.
//!
//! - Firewall 1 (connection level, before any TLS work), connection limits
//!   (total and per client), TLS termination with certificates from files
//!   (reloaded on SIGHUP), from an ACME CA (issued, stored and renewed by
//!   [`AcmeManager`], validated over TLS-ALPN-01 on the HTTPS port or
//!   HTTP-01 on the plain-HTTP listener), or both; optional OCSP stapling.
//! - A plain-HTTP listener (`--http-listen`) that answers HTTP-01
//!   validations and redirects everything else to HTTPS (308).
//! - Request metrics and a per-client rate limit (429 with `Retry-After`).
//! - Round robin over the web servers, re-encrypting with the load
//!   balancer's client certificate (mTLS); active health checks on
//!   `/healthz` and passive outlier detection; idempotent requests retried
//!   on another server after a connection failure.
//! - An access log (JSON or nginx `combined`, reopened on SIGHUP) naming
//!   the web server that answered each request.
//! - An admin listener (`/metrics`, `/status`, `/readyz`) on its own address,
//!   behind its own allow-list; the status page has a row per ACME
//!   certificate.
//!
//! Several load balancers act as one:
//! - `--redis-url` shares the rate limit with every load balancer using the
//!   same Redis (foobar-guard's `redis` feature: local leases, a stated
//!   bound, the `--redis-fallback` while Redis does not answer within
//!   `--redis-timeout`);
//! - `--backends-file` follows a watched backend list (TOML or JSON, with
//!   weights; reloaded on change and on SIGHUP), beside the `--backend`
//!   ones or instead of them; removed backends drain;
//! - `--fleet-peer` and `--fleet-stack` put other admin listeners beside
//!   this one on `/fleet` and `/fleet.json`.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use foobar_core::access_log::{AccessLogLayer, AccessLogWriter, Format};
use foobar_core::admin::Admin;
use foobar_core::metrics::{MetricsLayer, PrometheusExporter};
use foobar_core::monitor::Monitor;
use foobar_core::tls::ClientTls;
use foobar_core::{PlainTcp, Server, Shutdown};
use foobar_guard::acme::{AcmeConfig, AcmeError, AcmeManager, CertificatesStatus, RedirectToHttps};
use foobar_guard::rate_limit::{Fallback, RateLimitLayer, RedisLimits, RedisRateLimitLayer};
use foobar_guard::tls::{TlsConfig, TlsLayer};
use foobar_guard::{ConnLimitLayer, FirewallLayer, HandshakeRateLimitLayer, Rules};
use foobar_lb::discovery::{DiscoveredBackend, Discovery, DiscoveryError, FileSource};
use foobar_lb::health::{HealthCheck, OutlierDetection};
use foobar_lb::policy::RoundRobin;
use foobar_lb::Proxy;
use serde::Deserialize;
use tower::util::Either;
use tower::{Layer, ServiceBuilder};

use crate::config::{self, ConfigError, Parsed};
use crate::web::LogFormat;
use crate::AppError;

/// The `lb` role's command line. Every option may also be set in the
/// `--config` file (same names, TOML); a flag overrides the file.
#[derive(Debug, clap::Parser)]
#[command(name = "lb", about = "The HTTPS load balancer of the foobar stack")]
pub struct LbArgs {
    /// A TOML file with any of these options (a flag overrides it)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// HTTPS address
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Admin address (/metrics, /status, /readyz)
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    /// The served certificate chain (PEM, reloaded on SIGHUP); optional
    /// with --acme-directory, where it serves its own names beside the ACME
    /// certificate
    #[arg(long, value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM)
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// Firewall 1 rules [default: allow everyone]
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Who may reach the admin address [default: loopback only]
    #[arg(long, value_name = "FILE")]
    pub admin_rules: Option<PathBuf>,
    /// Requests per second per client address
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Requests a client may send at once [default: twice the rate]
    #[arg(long)]
    pub burst: Option<u32>,
    /// Open connections in all
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Open connections per client address
    #[arg(long, default_value_t = 256)]
    pub max_per_client: usize,
    /// New connections (so TLS handshakes) per second per client address;
    /// a client over it is closed before its handshake [default: no limit]
    #[arg(long, value_name = "N")]
    pub handshake_rate: Option<u32>,
    /// New connections a client may open at once [default: twice
    /// --handshake-rate]
    #[arg(long, value_name = "N")]
    pub handshake_burst: Option<u32>,
    /// A web server, https://host:port (repeatable)
    #[arg(long = "backend", value_name = "URL")]
    pub backends: Vec<String>,
    /// Threads serving requests, each with its own single-threaded runtime
    /// and upstream connections [default: one per core]
    #[arg(long)]
    pub workers: Option<NonZeroUsize>,
    /// The CA the web servers' certificates are verified with
    #[arg(long, value_name = "PEM")]
    pub upstream_ca: Option<PathBuf>,
    /// The load balancer's client certificate (mTLS to the web servers)
    #[arg(long, value_name = "PEM", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Its private key
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Write an access log line per request to this file (reopened on SIGHUP)
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,
    /// The access log's format
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub access_log_format: LogFormat,
    /// Plain-HTTP address: answers ACME HTTP-01 validations and redirects
    /// everything else to HTTPS (308)
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// Certificates from this ACME CA (its directory URL, e.g. Let's
    /// Encrypt's), issued and renewed by the load balancer
    #[arg(long, value_name = "URL")]
    pub acme_directory: Option<String>,
    /// A name on the ACME certificate (repeatable; the first is its main
    /// name; no wildcards)
    #[arg(long = "acme-name", value_name = "NAME")]
    pub acme_names: Vec<String>,
    /// Where the ACME account key and certificates are kept (created 0700,
    /// files 0600); load balancers sharing it issue once
    #[arg(long, value_name = "DIR")]
    pub acme_storage: Option<PathBuf>,
    /// A contact for the ACME account: mailto:ops@example.com, or just the
    /// address (repeatable)
    #[arg(long = "acme-contact", value_name = "URI")]
    pub acme_contacts: Vec<String>,
    /// The CA of the ACME server's own HTTPS endpoint [default: the
    /// system's roots]
    #[arg(long, value_name = "PEM")]
    pub acme_ca_file: Option<PathBuf>,
    /// How the ACME CA validates the names: tls-alpn-01 on the HTTPS
    /// listener, or http-01 on --http-listen (a public CA connects to
    /// ports 443 and 80 of the names' addresses)
    #[arg(long, value_enum, default_value_t = AcmeChallenge::TlsAlpn01)]
    pub acme_challenge: AcmeChallenge,
    /// Staple OCSP responses to the served certificates (those naming a
    /// responder), refreshed before they expire
    #[arg(long)]
    pub ocsp_stapling: bool,
    /// Share the rate limit with every load balancer using this Redis
    /// (redis://host:port/) [default: a limit of this process only]
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// How long a request waits for Redis before the fallback decides it
    #[arg(long, value_name = "DURATION", default_value = "50ms", value_parser = config::parse_duration)]
    pub redis_timeout: Duration,
    /// What decides requests while Redis does not answer: this process's
    /// own limit, admit all, or refuse all (503)
    #[arg(long, value_enum, default_value_t = RedisFallback::Local)]
    pub redis_fallback: RedisFallback,
    /// Backends from a watched file (TOML `[[backend]]` tables or a JSON
    /// list, with weights), reloaded on change and on SIGHUP; beside or
    /// instead of --backend
    #[arg(long, value_name = "FILE")]
    pub backends_file: Option<PathBuf>,
    /// Another admin listener to show on /fleet, [NAME=]http://host:port
    /// (repeatable)
    #[arg(long = "fleet-peer", value_name = "[NAME=]URL")]
    pub fleet_peers: Vec<String>,
    /// Show every admin listener this stack.json names on /fleet
    #[arg(long, value_name = "FILE")]
    pub fleet_stack: Option<PathBuf>,
}

/// The ACME challenge, as a flag value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
pub enum AcmeChallenge {
    /// TLS-ALPN-01, answered by the HTTPS listener (no other port).
    #[value(name = "tls-alpn-01")]
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// HTTP-01, answered by the plain-HTTP listener (`--http-listen`).
    #[value(name = "http-01")]
    #[serde(rename = "http-01")]
    Http01,
}

impl From<AcmeChallenge> for foobar_guard::acme::Challenge {
    fn from(challenge: AcmeChallenge) -> Self {
        match challenge {
            AcmeChallenge::TlsAlpn01 => Self::TlsAlpn01,
            AcmeChallenge::Http01 => Self::Http01,
        }
    }
}

/// What decides requests while Redis does not answer, as a flag value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedisFallback {
    /// This process's own limit (N load balancers then admit up to N
    /// times the limit).
    Local,
    /// Admit every request.
    Open,
    /// Refuse every request (503).
    Closed,
}

impl From<RedisFallback> for Fallback {
    fn from(fallback: RedisFallback) -> Self {
        match fallback {
            RedisFallback::Local => Fallback::Local,
            RedisFallback::Open => Fallback::Allow,
            RedisFallback::Closed => Fallback::Refuse,
        }
    }
}

/// The `lb` role's configuration file: the flags' names, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LbFile {
    listen: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    rules: Option<PathBuf>,
    admin_rules: Option<PathBuf>,
    rate: Option<u32>,
    burst: Option<u32>,
    max_connections: Option<usize>,
    max_per_client: Option<usize>,
    handshake_rate: Option<u32>,
    handshake_burst: Option<u32>,
    backend: Option<Vec<String>>,
    workers: Option<NonZeroUsize>,
    upstream_ca: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    access_log: Option<PathBuf>,
    access_log_format: Option<LogFormat>,
    http_listen: Option<SocketAddr>,
    acme_directory: Option<String>,
    acme_name: Option<Vec<String>>,
    acme_storage: Option<PathBuf>,
    acme_contact: Option<Vec<String>>,
    acme_ca_file: Option<PathBuf>,
    acme_challenge: Option<AcmeChallenge>,
    ocsp_stapling: Option<bool>,
    redis_url: Option<String>,
    redis_timeout: Option<String>,
    redis_fallback: Option<RedisFallback>,
    backends_file: Option<PathBuf>,
    fleet_peer: Option<Vec<String>>,
    fleet_stack: Option<PathBuf>,
}

/// Everything a load balancer needs.
#[derive(Debug)]
pub struct LbConfig {
    /// Where to serve HTTPS.
    pub listen: SocketAddr,
    /// Where to serve the admin endpoints.
    pub admin: SocketAddr,
    /// The served certificate chain and its private key (PEM files);
    /// always given without ACME.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// Certificates from an ACME CA.
    pub acme: Option<LbAcme>,
    /// The plain-HTTP listener (HTTP-01 answers, redirects to HTTPS).
    pub http_listen: Option<SocketAddr>,
    /// Whether OCSP responses are stapled.
    pub ocsp_stapling: bool,
    /// Firewall 1: who may connect.
    pub allow: Rules,
    /// Who may reach the admin listener.
    pub admin_allow: Rules,
    /// Requests per second per client address, and the burst.
    pub rate_limit: (u32, u32),
    /// Most open connections in all, and per client address.
    pub max_connections: (usize, usize),
    /// New connections per second per client address, and the burst; no
    /// limit when `None`.
    pub handshake_rate: Option<(u32, u32)>,
    /// The web servers, as `https://host:port` URLs.
    pub backends: Vec<String>,
    /// Threads serving requests.
    pub workers: NonZeroUsize,
    /// The CA the web servers' certificates are verified with.
    pub upstream_ca: PathBuf,
    /// The load balancer's client certificate and key, for mTLS to the web
    /// servers.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Where the access log goes, if anywhere.
    pub access_log: Option<(PathBuf, Format)>,
    /// The Redis the rate limit is shared through, if any.
    pub redis: Option<RedisOptions>,
    /// A watched backend list file, beside [`backends`](Self::backends).
    pub backends_file: Option<PathBuf>,
    /// The other admin listeners shown on `/fleet`.
    pub fleet: config::FleetPeers,
}

/// How the rate limit is shared through Redis.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://host:port/`.
    pub url: String,
    /// The longest a request waits for Redis.
    pub timeout: Duration,
    /// What decides requests while Redis does not answer.
    pub fallback: Fallback,
}

/// Where the load balancer's ACME certificate comes from.
#[derive(Debug, Clone)]
pub struct LbAcme {
    /// The CA's directory URL (`https://`).
    pub directory: String,
    /// The names on the certificate.
    pub names: Vec<String>,
    /// Where the account key and certificates are kept.
    pub storage: PathBuf,
    /// Contacts for the account (`mailto:` URIs).
    pub contacts: Vec<String>,
    /// The CA of the ACME server's HTTPS endpoint, if not a system root.
    pub ca_file: Option<PathBuf>,
    /// How the CA validates the names.
    pub challenge: AcmeChallenge,
}

impl LbAcme {
    /// The manager for this certificate: creates the storage directory and
    /// loads what it holds (nothing is asked of the CA yet). Call it after
    /// the metrics recorder is installed, so its metrics are recorded.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the flag at fault (`--acme-name`,
    /// `--acme-storage`).
    pub fn manager(&self) -> Result<AcmeManager, ConfigError> {
        let mut config = AcmeConfig::new(&self.directory)
            .names(&self.names)
            .storage(&self.storage)
            .challenge(self.challenge.into());
        for contact in &self.contacts {
            config = config.contact(contact);
        }
        if let Some(ca) = &self.ca_file {
            config = config.directory_ca_file(ca);
        }
        config.build().map_err(|error| {
            let flag = match &error {
                AcmeError::NoNames | AcmeError::WildcardName(_) | AcmeError::InvalidName(_) => {
                    "acme-name"
                }
                _ => "acme-storage",
            };
            ConfigError::Invalid {
                flag,
                reason: error.to_string(),
            }
        })
    }
}

impl LbConfig {
    /// The configuration from a parsed command line and its `--config` file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the flag, or the file and line.
    pub fn from_args(parsed: &Parsed<LbArgs>) -> Result<Self, ConfigError> {
        let file: LbFile = match &parsed.args.config {
            Some(path) => config::load_file(path)?,
            None => LbFile::default(),
        };
        let args = &parsed.args;
        let http_listen = parsed.pick_opt("http_listen", args.http_listen, file.http_listen);
        let acme = acme_from(parsed, &file, http_listen)?;
        let scale_out = ScaleOut::from_args(parsed, &file)?;
        let opt = |id: &str, flag: &Option<PathBuf>, file: Option<PathBuf>| {
            parsed.pick_opt(id, flag.clone(), file)
        };
        let rate = parsed.pick("rate", args.rate, file.rate).max(1);
        let burst = parsed
            .pick_opt("burst", args.burst, file.burst)
            .unwrap_or(rate.saturating_mul(2))
            .max(1);
        let handshake_rate = parsed
            .pick_opt("handshake_rate", args.handshake_rate, file.handshake_rate)
            .map(|rate| {
                let rate = rate.max(1);
                let burst = parsed
                    .pick_opt(
                        "handshake_burst",
                        args.handshake_burst,
                        file.handshake_burst,
                    )
                    .unwrap_or(rate.saturating_mul(2))
                    .max(1);
                (rate, burst)
            });
        let client_cert = match (
            opt("client_cert", &args.client_cert, file.client_cert),
            opt("client_key", &args.client_key, file.client_key),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    flag: "client-cert",
                    reason: "--client-cert and --client-key go together".to_owned(),
                })
            }
        };
        let backends = if args.backends.is_empty() {
            file.backend.unwrap_or_default()
        } else {
            args.backends.clone()
        };
        if backends.is_empty() && scale_out.backends_file.is_none() {
            return Err(ConfigError::Missing { flag: "backend" });
        }
        let access_log = opt("access_log", &args.access_log, file.access_log).map(|path| {
            let format = parsed.pick(
                "access_log_format",
                args.access_log_format,
                file.access_log_format,
            );
            (path, format.into())
        });
        let cert = match (
            opt("cert", &args.cert, file.cert),
            opt("key", &args.key, file.key),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) if acme.is_some() => None,
            (None, _) => return Err(ConfigError::Missing { flag: "cert" }),
            (Some(_), None) => return Err(ConfigError::Missing { flag: "key" }),
        };
        Ok(Self {
            listen: parsed.pick("listen", args.listen, file.listen),
            admin: parsed.pick("admin", args.admin, file.admin),
            cert,
            acme,
            http_listen,
            ocsp_stapling: parsed.pick("ocsp_stapling", args.ocsp_stapling, file.ocsp_stapling),
            allow: config::rules(
                opt("rules", &args.rules, file.rules).as_deref(),
                "default allow\n",
            )?,
            admin_allow: config::rules(
                opt("admin_rules", &args.admin_rules, file.admin_rules).as_deref(),
                config::LOOPBACK_ONLY,
            )?,
            rate_limit: (rate, burst),
            max_connections: (
                parsed.pick(
                    "max_connections",
                    args.max_connections,
                    file.max_connections,
                ),
                parsed.pick("max_per_client", args.max_per_client, file.max_per_client),
            ),
            handshake_rate,
            backends,
            workers: parsed
                .pick_opt("workers", args.workers, file.workers)
                .unwrap_or_else(foobar_core::runtime::available_workers),
            upstream_ca: opt("upstream_ca", &args.upstream_ca, file.upstream_ca).ok_or(
                ConfigError::Missing {
                    flag: "upstream-ca",
                },
            )?,
            client_cert,
            access_log,
            redis: scale_out.redis,
            backends_file: scale_out.backends_file,
            fleet: scale_out.fleet,
        })
    }
}

/// The options for running several load balancers as one: a rate limit
/// shared through Redis, a watched backend list, the fleet view.
struct ScaleOut {
    redis: Option<RedisOptions>,
    backends_file: Option<PathBuf>,
    fleet: config::FleetPeers,
}

impl ScaleOut {
    fn from_args(parsed: &Parsed<LbArgs>, file: &LbFile) -> Result<Self, ConfigError> {
        let args = &parsed.args;
        let redis =
            match parsed.pick_opt("redis_url", args.redis_url.clone(), file.redis_url.clone()) {
                None => None,
                Some(url) => {
                    let timeout = match (&file.redis_timeout, parsed.given("redis_timeout")) {
                        (Some(text), false) => {
                            config::parse_duration(text).map_err(|reason| ConfigError::Invalid {
                                flag: "redis-timeout",
                                reason,
                            })?
                        }
                        _ => args.redis_timeout,
                    };
                    if timeout.is_zero() {
                        return Err(ConfigError::Invalid {
                            flag: "redis-timeout",
                            reason: "must be longer than zero".to_owned(),
                        });
                    }
                    Some(RedisOptions {
                        url,
                        timeout,
                        fallback: parsed
                            .pick("redis_fallback", args.redis_fallback, file.redis_fallback)
                            .into(),
                    })
                }
            };
        let backends_file = parsed.pick_opt(
            "backends_file",
            args.backends_file.clone(),
            file.backends_file.clone(),
        );
        if let Some(path) = &backends_file {
            // Checked now, so that a broken list stops the start-up with its
            // line; later breakage keeps the running set.
            FileSource::new(path)
                .load()
                .map_err(|error| ConfigError::Invalid {
                    flag: "backends-file",
                    reason: error.to_string(),
                })?;
        }
        let peers = if args.fleet_peers.is_empty() {
            file.fleet_peer.clone().unwrap_or_default()
        } else {
            args.fleet_peers.clone()
        };
        let fleet = config::FleetPeers::new(
            &peers,
            parsed.pick_opt(
                "fleet_stack",
                args.fleet_stack.clone(),
                file.fleet_stack.clone(),
            ),
        )?;
        Ok(Self {
            redis,
            backends_file,
            fleet,
        })
    }
}

/// The ACME part of the configuration, checked: `None` without a
/// directory URL.
fn acme_from(
    parsed: &Parsed<LbArgs>,
    file: &LbFile,
    http_listen: Option<SocketAddr>,
) -> Result<Option<LbAcme>, ConfigError> {
    let args = &parsed.args;
    let list = |flag: &[String], file: &Option<Vec<String>>| {
        if flag.is_empty() {
            file.clone().unwrap_or_default()
        } else {
            flag.to_vec()
        }
    };
    let names = list(&args.acme_names, &file.acme_name);
    let contacts = list(&args.acme_contacts, &file.acme_contact);
    let storage = parsed.pick_opt(
        "acme_storage",
        args.acme_storage.clone(),
        file.acme_storage.clone(),
    );
    let ca_file = parsed.pick_opt(
        "acme_ca_file",
        args.acme_ca_file.clone(),
        file.acme_ca_file.clone(),
    );
    let challenge = parsed.pick("acme_challenge", args.acme_challenge, file.acme_challenge);
    let Some(directory) = parsed.pick_opt(
        "acme_directory",
        args.acme_directory.clone(),
        file.acme_directory.clone(),
    ) else {
        let stray = [
            ("acme-name", !names.is_empty()),
            ("acme-storage", storage.is_some()),
            ("acme-contact", !contacts.is_empty()),
            ("acme-ca-file", ca_file.is_some()),
            (
                "acme-challenge",
                parsed.given("acme_challenge") || file.acme_challenge.is_some(),
            ),
        ];
        if let Some((flag, _)) = stray.iter().find(|(_, given)| *given) {
            return Err(ConfigError::Invalid {
                flag,
                reason: "needs --acme-directory".to_owned(),
            });
        }
        return Ok(None);
    };
    let valid_url = directory
        .parse::<http::Uri>()
        .is_ok_and(|uri| uri.scheme_str() == Some("https") && uri.host().is_some());
    if !valid_url {
        return Err(ConfigError::Invalid {
            flag: "acme-directory",
            reason: format!("{directory:?} is not an https:// URL (RFC 8555 servers speak HTTPS)"),
        });
    }
    if names.is_empty() {
        return Err(ConfigError::Missing { flag: "acme-name" });
    }
    if let Some(name) = names.iter().find(|n| n.contains('*')) {
        return Err(ConfigError::Invalid {
            flag: "acme-name",
            reason: format!(
                "{name:?}: wildcard names need the DNS-01 challenge, which is not supported; list the names instead"
            ),
        });
    }
    if challenge == AcmeChallenge::Http01 && http_listen.is_none() {
        return Err(ConfigError::Invalid {
            flag: "acme-challenge",
            reason: "http-01 is answered on the plain-HTTP listener: give --http-listen".to_owned(),
        });
    }
    let storage = storage.ok_or(ConfigError::Missing {
        flag: "acme-storage",
    })?;
    // Read now: the CA is only reached in the background, later.
    if let Some(ca) = &ca_file {
        foobar_core::tls::ClientTls::new()
            .ca_file(ca)
            .build()
            .map_err(|error| ConfigError::Invalid {
                flag: "acme-ca-file",
                reason: error.to_string(),
            })?;
    }
    let contacts = contacts
        .into_iter()
        .map(|contact| {
            if contact.contains(':') {
                contact
            } else {
                format!("mailto:{contact}")
            }
        })
        .collect();
    Ok(Some(LbAcme {
        directory,
        names,
        storage,
        contacts,
        ca_file,
        challenge,
    }))
}

/// Runs a load balancer until `shutdown` fires: the admin listener on the
/// calling runtime, the HTTPS front on `workers` threads, each with its own
/// single-threaded runtime and listener (`SO_REUSEPORT`). The proxy (backends, health checks, ejections), connection
/// limits, the rate limit, the access log, the certificates and the metrics
/// are shared by all of them; only idle upstream connections are per
/// worker.
///
/// With ACME, the certificate is asked for in the background once the
/// HTTPS listeners are bound, and renewed until `shutdown`; with
/// `--ocsp-stapling`, staples are fetched and refreshed alike.
///
/// # Errors
/// Bad certificates, URLs or addresses; an unusable ACME configuration.
pub async fn run(config: LbConfig, shutdown: Shutdown) -> Result<(), AppError> {
    let exporter = PrometheusExporter::install()?;
    let monitor = Monitor::start(&shutdown);

    // The ACME certificate first: it keeps its names even if the file's
    // certificate also claims them, and serves clients that send no SNI
    // (once issued); the file's serves its other names.
    let acme = config.acme.as_ref().map(LbAcme::manager).transpose()?;
    let mut tls = TlsConfig::builder();
    if let Some(manager) = &acme {
        tls = tls.acme(manager);
    }
    if let Some((cert, key)) = &config.cert {
        tls = tls.certificate(cert, key);
    }
    let tls = tls.ocsp_stapling(config.ocsp_stapling).build()?;
    tls.reload_on_sighup(shutdown.clone())?;
    if config.ocsp_stapling {
        tls.staple_ocsp(shutdown.clone());
    }
    let plain_stage = ServiceBuilder::new()
        .layer(FirewallLayer::new(config.allow.clone()))
        .service(PlainTcp);
    let conn_stage = ServiceBuilder::new()
        .layer(FirewallLayer::new(config.allow))
        .option_layer(
            config
                .handshake_rate
                .map(|(rate, burst)| HandshakeRateLimitLayer::per_second(rate, burst))
                .transpose()?,
        )
        .layer(ConnLimitLayer::new(config.max_connections.0).per_client(config.max_connections.1))
        .layer(TlsLayer::new(tls))
        .service(PlainTcp);

    let mut upstream_tls = ClientTls::new().ca_file(&config.upstream_ca);
    if let Some((cert, key)) = &config.client_cert {
        upstream_tls = upstream_tls.identity_files(cert, key);
    }
    // One proxy for every worker: backends, health, ejections and
    // counters are shared; each worker reuses only the upstream connections
    // its own runtime opened.
    let proxy = Proxy::builder(RoundRobin::new())
        .name("lb")
        .tls(upstream_tls)
        .connect_timeout(Duration::from_secs(1))
        // A web server that stops answering is taken out after a few
        // failed requests, long before the next health check notices.
        .outlier_detection(
            OutlierDetection::new()
                .consecutive_failures(3)
                .base_ejection_time(Duration::from_secs(2))
                .max_ejection_time(Duration::from_secs(30)),
        )
        .shutdown(shutdown.clone())
        .build()?;
    for backend in &config.backends {
        proxy.add_backend(backend)?;
    }
    discover_backends(&proxy, config.backends_file.as_deref(), &config.backends)?;
    HealthCheck::http("/healthz")
        .interval(Duration::from_millis(500))
        .timeout(Duration::from_millis(400))
        .rise(2)
        .fall(2)
        .spawn_http(proxy.backends());

    let (rate, burst) = config.rate_limit;
    let access_log = match &config.access_log {
        Some((path, format)) => {
            let writer = AccessLogWriter::open(path)?;
            writer.reopen_on_sighup(shutdown.clone())?;
            AccessLogLayer::new(writer, *format)
        }
        None => AccessLogLayer::optional(None, Format::Json),
    };
    let requests = ServiceBuilder::new()
        .layer(MetricsLayer::new("lb").with_rates(monitor.rates()))
        .layer(access_log)
        .layer(rate_limit(rate, burst, config.redis.as_ref())?);

    let admin = Server::builder()
        .bind_addr(config.admin)
        .shutdown(shutdown.clone())
        .build()?;
    // Bound here, once, so that a bad address fails before any worker
    // starts; each worker binds the same port again with SO_REUSEPORT.
    let front = Server::builder()
        .bind_addr(config.listen)
        .reuse_port(true)
        .build()?;
    let listen = front.local_addr();
    drop(front);
    let plain = match config.http_listen {
        Some(addr) => Some(
            Server::builder()
                .bind_addr(addr)
                .shutdown(shutdown.clone())
                .build()?,
        ),
        None => None,
    };
    tracing::info!(%listen, admin = %admin.local_addr(), http = ?plain.as_ref().map(Server::local_addr), backends = ?config.backends, workers = config.workers.get(), "load balancer up");
    let mut admin_app = Admin::new(exporter)
        .with_monitor(monitor)
        .with_source(proxy.clone());
    if let Some(manager) = &acme {
        admin_app = admin_app.with_source(CertificatesStatus::new([manager.clone()]));
    }
    let admin_app = config
        .fleet
        .apply(admin_app, admin.local_addr(), &shutdown)?;
    let admin_service = ServiceBuilder::new()
        .layer(FirewallLayer::new(config.admin_allow))
        .service(admin_app);

    // The plain-HTTP listener: ACME's HTTP-01 answers, and a redirect to
    // the HTTPS port for everything else.
    let redirect = RedirectToHttps::new().port(listen.port());
    let http01 = acme.as_ref().map(AcmeManager::http01_layer);
    let plain = async move {
        match (plain, http01) {
            (Some(server), Some(http01)) => {
                server
                    .serve_connections(plain_stage, http01.layer(redirect))
                    .await
            }
            (Some(server), None) => server.serve_connections(plain_stage, redirect).await,
            (None, _) => Ok(()),
        }
    };

    // Each worker reports its listener bound; the CA is asked only once
    // all are, so that a TLS-ALPN-01 validation finds the port open.
    let (bound, mut all_bound) = tokio::sync::mpsc::unbounded_channel::<()>();
    if let Some(manager) = acme {
        let (workers, shutdown) = (config.workers.get(), shutdown.clone());
        tokio::spawn(async move {
            for _ in 0..workers {
                if all_bound.recv().await.is_none() {
                    // A worker could not bind: the load balancer stops.
                    return;
                }
            }
            manager.spawn(shutdown);
        });
    }
    let worker_shutdown = shutdown.clone();
    let front = tokio::task::spawn_blocking(move || {
        foobar_core::runtime::run_per_core(config.workers, move |_worker| {
            let shutdown = worker_shutdown.clone();
            let conn_stage = conn_stage.clone();
            let http = requests.clone().service(proxy.clone());
            let bound = bound.clone();
            async move {
                let server = Server::builder()
                    .bind_addr(listen)
                    .reuse_port(true)
                    .shutdown(shutdown)
                    .build()?;
                let _ = bound.send(());
                server.serve_connections(conn_stage, http).await?;
                Ok::<(), foobar_core::BoxError>(())
            }
        })
    });
    let (front, admin, plain) = tokio::join!(front, admin.serve(admin_service), plain);
    admin?;
    plain?;
    match front {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string().into()),
        Err(error) => Err(error.into()),
    }
}

/// The per-client rate limit: this process's own, or shared through Redis
/// (with this process's own as the fallback). Built once, inside the
/// runtime, and shared by every worker.
fn rate_limit(
    rate: u32,
    burst: u32,
    redis: Option<&RedisOptions>,
) -> Result<Either<RateLimitLayer, RedisRateLimitLayer>, AppError> {
    let local = RateLimitLayer::per_second(rate, burst)?;
    let Some(redis) = redis else {
        return Ok(Either::Left(local));
    };
    let shared = local.redis(
        RedisLimits::new(redis.url.clone())
            .timeout(redis.timeout)
            .fallback(redis.fallback),
    )?;
    tracing::info!(url = %redis.url, lease = shared.lease_size(), "rate limit shared through Redis");
    Ok(Either::Right(shared))
}

/// Follows the `--backends-file` list, if one is given: its backends join
/// the `--backend` ones, and the set follows every change of the file.
fn discover_backends(
    proxy: &Proxy<RoundRobin>,
    file: Option<&Path>,
    fixed: &[String],
) -> Result<(), AppError> {
    let Some(path) = file else {
        return Ok(());
    };
    let fixed = fixed
        .iter()
        .map(|url| DiscoveredBackend::new(url.clone(), 1))
        .collect();
    let source = FileSource::new(path).reload_on_sighup()?;
    let handle = proxy.discover(BesideFixed { source, fixed });
    tracing::info!(file = %handle.name(), "following the backend list file");
    Ok(())
}

/// A file's backend list with the fixed (`--backend`) ones added, so that
/// following the file never drains them.
struct BesideFixed {
    source: FileSource,
    fixed: Vec<DiscoveredBackend>,
}

impl Discovery for BesideFixed {
    fn name(&self) -> String {
        self.source.name()
    }

    async fn next(&mut self) -> Option<Result<Vec<DiscoveredBackend>, DiscoveryError>> {
        let mut list = match self.source.next().await? {
            Ok(list) => list,
            Err(error) => return Some(Err(error)),
        };
        for backend in &self.fixed {
            if !list.iter().any(|listed| listed.url() == backend.url()) {
                list.push(backend.clone());
            }
        }
        Some(Ok(list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configure(args: &[&str]) -> Result<LbConfig, ConfigError> {
        let base = ["lb", "--cert=c.pem", "--key=k.pem", "--upstream-ca=ca.pem"];
        let parsed = Parsed::<LbArgs>::from_args(base.iter().chain(args).copied()).unwrap();
        LbConfig::from_args(&parsed)
    }

    #[test]
    fn the_rate_limit_is_shared_through_redis_when_asked() {
        let config = configure(&["--backend=https://127.0.0.1:1"]).unwrap();
        assert!(config.redis.is_none());
        let config = configure(&[
            "--backend=https://127.0.0.1:1",
            "--redis-url=redis://127.0.0.1:6379/",
            "--redis-timeout=20ms",
            "--redis-fallback=closed",
        ])
        .unwrap();
        let redis = config.redis.unwrap();
        assert_eq!(redis.url, "redis://127.0.0.1:6379/");
        assert_eq!(redis.timeout, Duration::from_millis(20));
        assert_eq!(redis.fallback, Fallback::Refuse);
        let error = configure(&[
            "--backend=https://127.0.0.1:1",
            "--redis-url=redis://127.0.0.1:6379/",
            "--redis-timeout=0ms",
        ])
        .unwrap_err();
        assert!(
            error.to_string().starts_with("--redis-timeout: "),
            "{error}"
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lb.toml");
        std::fs::write(
            &file,
            "backend = [\"https://127.0.0.1:1\"]\nredis-url = \"redis://127.0.0.1:7/\"\nredis-timeout = \"soon\"\n",
        )
        .unwrap();
        let error = configure(&[&format!("--config={}", file.display())]).unwrap_err();
        assert!(
            error.to_string().contains("\"soon\" is not a duration"),
            "{error}"
        );
    }

    #[test]
    fn a_backends_file_replaces_or_joins_the_backend_flags_and_a_broken_one_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("backends.toml");
        std::fs::write(&list, "[[backend]]\nurl = \"https://127.0.0.1:1\"\n").unwrap();
        let config = configure(&[&format!("--backends-file={}", list.display())]).unwrap();
        assert!(config.backends.is_empty());
        assert_eq!(config.backends_file.as_deref(), Some(list.as_path()));
        assert!(matches!(
            configure(&[]),
            Err(ConfigError::Missing { flag: "backend" })
        ));

        std::fs::write(
            &list,
            "[[backend]]\nurl = \"https://127.0.0.1:1\"\n[[backend]]\nurl = 5\n",
        )
        .unwrap();
        let error = configure(&[&format!("--backends-file={}", list.display())]).unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("--backends-file: "), "{message}");
        assert!(message.contains(":4"), "names the line: {message}");
    }

    #[test]
    fn fleet_peers_come_from_flags_or_the_file() {
        let config = configure(&[
            "--backend=https://127.0.0.1:1",
            "--fleet-peer=lb2=http://127.0.0.1:9902",
            "--fleet-peer=http://127.0.0.1:9911",
        ])
        .unwrap();
        assert_eq!(config.fleet.peers.len(), 2);
        assert!(configure(&["--backend=https://127.0.0.1:1", "--fleet-peer=nowhere"]).is_err());
        let error = configure(&[
            "--backend=https://127.0.0.1:1",
            "--fleet-stack=/nonexistent/stack.json",
        ])
        .unwrap_err();
        assert!(error.to_string().starts_with("--fleet-stack: "), "{error}");
    }
}

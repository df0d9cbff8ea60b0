//! A private Pebble, the ACME test server (Debian package `pebble`), for
//! the stack's `--acme-pebble` mode and the end-to-end tests.
//!
//! [`Pebble::start`] runs `pebble` and `pebble-challtestsrv` on free
//! loopback ports with their configuration and logs in a directory of
//! their own. The challenge server is Pebble's DNS: it answers 127.0.0.1
//! for every name, so Pebble validates every name against this machine,
//! on the HTTP-01 and TLS-ALPN-01 ports it was given. Validation is real
//! (`PEBBLE_VA_ALWAYS_VALID` is never set). Both processes are killed when
//! the [`Pebble`] is dropped.
//!
//! Pebble makes a new root at every start; [`Pebble::root_pem`] fetches
//! it from the management interface (`/roots/0`). Clients that trust it
//! accept the certificates Pebble issues.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use foobar_core::tls::{server_name, ClientTls, DevCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How long Pebble may take to answer after it was started.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long one request to the management interface may take.
const REQUEST_LIMIT: Duration = Duration::from_secs(5);

/// Why Pebble could not be started or asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PebbleError {
    /// A program could not be started (not installed?).
    #[error("cannot start {program} (install the Debian package `pebble`): {source}")]
    Spawn {
        /// The program.
        program: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file of Pebble's directory could not be written, or no free port
    /// was found.
    #[error("Pebble's files in {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate of Pebble's own HTTPS endpoint could not be made,
    /// or the client configuration to reach it.
    #[error("Pebble's API certificate: {0}")]
    Tls(#[from] foobar_core::tls::TlsError),
    /// Pebble did not answer in time; the end of its log.
    #[error("Pebble did not answer within {waited:?}; its log ends with:\n{log}")]
    NotReady {
        /// How long it was given.
        waited: Duration,
        /// The end of `pebble.log`.
        log: String,
    },
    /// A process exited during the start; the end of its log.
    #[error("{program} exited ({status}); its log ends with:\n{log}")]
    Exited {
        /// The program.
        program: &'static str,
        /// How it exited.
        status: std::process::ExitStatus,
        /// The end of its log.
        log: String,
    },
    /// The management interface did not give what was asked.
    #[error("Pebble's management interface: GET {path}: {reason}")]
    Management {
        /// The path asked for.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// Where Pebble validates, and what it issues.
#[derive(Clone, Debug)]
#[must_use]
pub struct PebbleOptions {
    http_port: u16,
    tls_port: u16,
    validity: Option<Duration>,
}

impl PebbleOptions {
    /// Validates TLS-ALPN-01 on this port of 127.0.0.1 (where the load
    /// balancer's HTTPS listener is), HTTP-01 on port 80.
    pub fn tls_alpn_01(tls_port: u16) -> Self {
        Self {
            http_port: 80,
            tls_port,
            validity: None,
        }
    }

    /// Validates HTTP-01 on this port of 127.0.0.1 (the plain-HTTP
    /// listener).
    pub fn http_port(mut self, port: u16) -> Self {
        self.http_port = port;
        self
    }

    /// Issues certificates valid for this long (default: Pebble's, about
    /// five years).
    pub fn validity(mut self, validity: Duration) -> Self {
        self.validity = Some(validity);
        self
    }
}

/// A private Pebble and its DNS server; both killed on drop.
#[derive(Debug)]
pub struct Pebble {
    pebble: Child,
    dns: Child,
    dir: PathBuf,
    directory: String,
    api_ca: PathBuf,
    management: SocketAddr,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in [&mut self.pebble, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free port on 127.0.0.1 (the system's choice).
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Pebble {
    /// Starts Pebble with its files (configuration, API certificate,
    /// logs) in `dir`, created if needed, and waits until it answers.
    ///
    /// # Errors
    /// [`PebbleError`]: the programs are missing, a file cannot be
    /// written, or Pebble does not answer within 30 seconds.
    pub async fn start(dir: &Path, options: &PebbleOptions) -> Result<Self, PebbleError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| PebbleError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let ca = DevCa::with_name("Pebble API CA")?;
        let api_ca = ca.write_pem(dir)?;
        let api = ca
            .server_cert(["localhost", "127.0.0.1"])?
            .write_pem(dir, "pebble-api")?;
        let port = || free_port().map_err(io(dir));
        let (listen, management, dns_port, dns_management) = (port()?, port()?, port()?, port()?);
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": api.cert,
                "privateKey": api.key,
                "httpPort": options.http_port,
                "tlsPort": options.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        if let Some(validity) = options.validity {
            config["pebble"]["certificateValidityPeriod"] = validity.as_secs().into();
        }
        let config_path = dir.join("pebble-config.json");
        std::fs::write(&config_path, config.to_string()).map_err(io(&config_path))?;
        let log = |name: &str| {
            let path = dir.join(name);
            std::fs::File::create(&path).map_err(io(&path))
        };
        let dns = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdin(Stdio::null())
            .stdout(log("challtestsrv.log")?)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| PebbleError::Spawn {
                program: "pebble-challtestsrv",
                source,
            })?;
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .env_remove("PEBBLE_VA_ALWAYS_VALID")
            .stdin(Stdio::null())
            .stdout(log("pebble.log")?)
            .stderr(Stdio::null())
            .spawn();
        let pebble = match pebble {
            Ok(pebble) => pebble,
            Err(source) => {
                let mut dns = dns;
                let _ = dns.kill();
                let _ = dns.wait();
                return Err(PebbleError::Spawn {
                    program: "pebble",
                    source,
                });
            }
        };
        // From here on, a failure drops (and so kills) both.
        let mut pebble = Self {
            pebble,
            dns,
            dir: dir.to_owned(),
            directory: format!("https://127.0.0.1:{listen}/dir"),
            api_ca,
            management: SocketAddr::from(([127, 0, 0, 1], management)),
        };
        pebble.wait_ready(dns_management).await?;
        Ok(pebble)
    }

    async fn wait_ready(&mut self, dns_management: u16) -> Result<(), PebbleError> {
        let started = Instant::now();
        loop {
            for (program, child, log) in [
                ("pebble", &mut self.pebble, "pebble.log"),
                ("pebble-challtestsrv", &mut self.dns, "challtestsrv.log"),
            ] {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(PebbleError::Exited {
                        program,
                        status,
                        log: tail(&self.dir.join(log)),
                    });
                }
            }
            let dns_up = TcpStream::connect(("127.0.0.1", dns_management))
                .await
                .is_ok();
            if dns_up && self.get("/roots/0").await.is_ok() {
                return Ok(());
            }
            if started.elapsed() >= START_LIMIT {
                return Err(PebbleError::NotReady {
                    waited: START_LIMIT,
                    log: self.log(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The ACME directory URL.
    pub fn directory(&self) -> &str {
        &self.directory
    }

    /// The CA of Pebble's own HTTPS endpoint (the ACME API): give it to the
    /// ACME client (`--acme-ca-file`).
    pub fn api_ca(&self) -> &Path {
        &self.api_ca
    }

    /// Pebble's management address (HTTPS, same CA as the API).
    pub fn management(&self) -> SocketAddr {
        self.management
    }

    /// The directory of Pebble's files and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The end of Pebble's log.
    pub fn log(&self) -> String {
        tail(&self.dir.join("pebble.log"))
    }

    /// The root Pebble issues under (PEM), made anew at each start.
    ///
    /// # Errors
    /// [`PebbleError::Management`].
    pub async fn root_pem(&self) -> Result<String, PebbleError> {
        self.get("/roots/0").await
    }

    /// Writes the root to `path` (PEM).
    ///
    /// # Errors
    /// [`PebbleError::Management`] or [`PebbleError::Io`].
    pub async fn write_root(&self, path: &Path) -> Result<(), PebbleError> {
        let pem = self.root_pem().await?;
        std::fs::write(path, pem).map_err(|source| PebbleError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// A GET on the management interface (HTTP/1.0, so the body is plain):
    /// the body of a 200.
    async fn get(&self, path: &str) -> Result<String, PebbleError> {
        let failed = |reason: String| PebbleError::Management {
            path: path.to_owned(),
            reason,
        };
        let config = ClientTls::new().ca_file(&self.api_ca).build()?;
        let exchange = async {
            let tcp = TcpStream::connect(self.management)
                .await
                .map_err(|e| failed(e.to_string()))?;
            let mut tls = TlsConnector::from(config)
                .connect(server_name("127.0.0.1")?, tcp)
                .await
                .map_err(|e| failed(format!("TLS: {e}")))?;
            let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            tls.write_all(request.as_bytes())
                .await
                .map_err(|e| failed(e.to_string()))?;
            let mut reply = Vec::new();
            // Pebble may close without a TLS close_notify: what was read counts.
            let _ = tls.read_to_end(&mut reply).await;
            Ok::<_, PebbleError>(reply)
        };
        let reply = tokio::time::timeout(REQUEST_LIMIT, exchange)
            .await
            .map_err(|_| failed(format!("no answer within {REQUEST_LIMIT:?}")))??;
        let reply = String::from_utf8(reply).map_err(|_| failed("not UTF-8".to_owned()))?;
        let (head, body) = reply
            .split_once("\r\n\r\n")
            .ok_or_else(|| failed("no complete answer".to_owned()))?;
        if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") {
            Ok(body.to_owned())
        } else {
            Err(failed(head.lines().next().unwrap_or_default().to_owned()))
        }
    }
}

/// The last 40 lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(40).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

//! What every example binary shares: command lines (clap), optional TOML
//! configuration files whose errors name the file, key and line, secrets
//! from files or the environment (never from the command line, where any
//! local user sees them with `ps`), and running a role until a signal.

use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use serde::de::DeserializeOwned;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for this role.
    #[error("{path}:{line}: {}{message}", key.as_deref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The 1-based line of the error.
        line: usize,
        /// The key on that line, when there is one.
        key: Option<String>,
        /// What the TOML parser said.
        message: String,
    },
    /// A value required by the role was given neither as a flag nor in the
    /// file.
    #[error("missing --{flag} (or `{flag}` in the configuration file)")]
    Missing {
        /// The flag's name, which is also the file's key.
        flag: &'static str,
    },
    /// A value was given but cannot be used.
    #[error("--{flag}: {reason}")]
    Invalid {
        /// The flag's name, which is also the file's key.
        flag: &'static str,
        /// Why it cannot be used.
        reason: String,
    },
    /// A secret file could not be read.
    #[error("cannot read the secret file {path}: {source}")]
    Secret {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Firewall rules could not be read.
    #[error(transparent)]
    Rules(#[from] foobar_guard::ConfigError),
}

/// Reads a TOML configuration file into `T` (whose fields are all
/// optional, and which rejects unknown keys).
///
/// # Errors
/// [`ConfigError::Read`]; [`ConfigError::Parse`] naming the file, line and
/// key.
pub fn load_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_toml(&text, path)
}

/// Parses TOML `text` read from `path`.
///
/// # Errors
/// As [`load_file`].
pub fn parse_toml<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|error| {
        let start = error.span().map_or(0, |span| span.start).min(text.len());
        let line = text[..start].matches('\n').count() + 1;
        let line_text = text.lines().nth(line - 1).unwrap_or_default();
        ConfigError::Parse {
            path: path.to_owned(),
            line,
            key: key_of(line_text),
            message: error.message().trim_end().to_owned(),
        }
    })
}

/// The key a TOML line sets (`listen = ".."` → `listen`), or the table it
/// opens (`[db]` → `db`).
fn key_of(line: &str) -> Option<String> {
    let line = line.trim();
    if let Some(table) = line.strip_prefix('[') {
        return Some(
            table
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned(),
        );
    }
    let (key, _) = line.split_once('=')?;
    Some(key.trim().trim_matches('"').to_owned()).filter(|k| !k.is_empty())
}

/// A secret: the first line of `file` if given, else the environment
/// variable `env`, else `None`.
///
/// # Errors
/// [`ConfigError::Secret`] naming the file.
pub fn secret(file: Option<&Path>, env: &str) -> Result<Option<String>, ConfigError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Secret {
            path: path.to_owned(),
            source,
        })?;
        return Ok(Some(text.lines().next().unwrap_or_default().to_owned()));
    }
    Ok(std::env::var(env).ok().filter(|v| !v.is_empty()))
}

/// A command line, parsed, with the matches that tell which values were
/// given (rather than defaulted).
#[derive(Debug)]
pub struct Parsed<A> {
    /// The parsed flags, defaults filled in.
    pub args: A,
    matches: ArgMatches,
}

impl<A: CommandFactory + FromArgMatches> Parsed<A> {
    /// Parses `args` (with the program name first).
    ///
    /// # Errors
    /// clap's error (which prints the usage, or the help for `--help`).
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = A::command().try_get_matches_from(args)?;
        let args = A::from_arg_matches(&matches)?;
        Ok(Self { args, matches })
    }

    /// Whether the flag with this id was given on the command line (or by
    /// its environment variable), rather than left at its default.
    pub fn given(&self, id: &str) -> bool {
        matches!(
            self.matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    }

    /// An optional value: `flag` if it was given, else the file's, else
    /// `flag` (its default).
    pub fn pick_opt<T>(&self, id: &str, flag: Option<T>, file: Option<T>) -> Option<T> {
        if self.given(id) {
            flag
        } else {
            file.or(flag)
        }
    }

    /// `flag` if it was given, else the file's value, else `flag` (its
    /// default): a flag overrides the file.
    pub fn pick<T>(&self, id: &str, flag: T, file: Option<T>) -> T {
        match file {
            Some(value) if !self.given(id) => value,
            _ => flag,
        }
    }
}

/// Firewall rules from `file`, or from `default` text when no file is given.
///
/// # Errors
/// The rules error, naming the file, line and token.
pub fn rules(file: Option<&Path>, default: &str) -> Result<foobar_guard::Rules, ConfigError> {
    Ok(match file {
        Some(path) => foobar_guard::Rules::from_file(path)?,
        None => foobar_guard::Rules::parse(default)?,
    })
}

/// A duration as the flags take it: `50ms`, `2s`, `1.5s`, or a number of
/// milliseconds.
///
/// # Errors
/// A message naming what was expected.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1e-3)
    };
    let expected = || format!("{text:?} is not a duration (e.g. 50ms, 2s)");
    let value: f64 = number.trim().parse().map_err(|_| expected())?;
    if !value.is_finite() || value < 0.0 || value * scale > 86_400.0 {
        return Err(expected());
    }
    Ok(std::time::Duration::from_secs_f64(value * scale))
}

/// The peers of an admin listener's fleet view (`/fleet`, `/fleet.json`):
/// admin URLs given one by one, and the admin listeners a `stack.json`
/// names.
#[derive(Debug, Clone, Default)]
pub struct FleetPeers {
    /// `(name, http://host:port)`.
    pub peers: Vec<(String, String)>,
    /// A `stack.json` whose every admin listener is a peer.
    pub stack_file: Option<PathBuf>,
}

impl FleetPeers {
    /// Peers from `--fleet-peer [NAME=]URL` values (named by their
    /// `host:port` when no name is given) and a `--fleet-stack` file,
    /// checked now.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `fleet-peer` or `fleet-stack`.
    pub fn new(values: &[String], stack_file: Option<PathBuf>) -> Result<Self, ConfigError> {
        let mut peers = Vec::new();
        for value in values {
            let (name, url) = match value.split_once('=') {
                Some((name, url)) if !name.contains("://") => (name.trim(), url.trim()),
                _ => {
                    let url = value.trim();
                    let host = url.strip_prefix("http://").unwrap_or(url);
                    (host.trim_end_matches('/'), url)
                }
            };
            foobar_core::admin::Fleet::new()
                .peer(name, url)
                .map_err(|error| ConfigError::Invalid {
                    flag: "fleet-peer",
                    reason: error.to_string(),
                })?;
            peers.push((name.to_owned(), url.to_owned()));
        }
        if let Some(path) = &stack_file {
            foobar_core::admin::Fleet::new()
                .peers_from_stack_file(path, &[])
                .map_err(|error| ConfigError::Invalid {
                    flag: "fleet-stack",
                    reason: error.to_string(),
                })?;
        }
        Ok(Self { peers, stack_file })
    }

    /// Whether there is no peer to show.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.stack_file.is_none()
    }

    /// `admin` with the fleet view, its peers asked in the background
    /// until `shutdown`; `own` (this listener's address) is left out of the
    /// stack file's peers. Unchanged when there are no peers.
    ///
    /// # Errors
    /// The stack file cannot be read or is not JSON.
    pub fn apply(
        &self,
        admin: foobar_core::admin::Admin,
        own: std::net::SocketAddr,
        shutdown: &foobar_core::Shutdown,
    ) -> Result<foobar_core::admin::Admin, foobar_core::admin::FleetError> {
        if self.is_empty() {
            return Ok(admin);
        }
        let mut fleet = foobar_core::admin::Fleet::new();
        if let Some(path) = &self.stack_file {
            fleet = fleet.peers_from_stack_file(path, &[own])?;
        }
        for (name, url) in &self.peers {
            fleet = fleet.peer(name.clone(), url.clone())?;
        }
        Ok(admin.with_fleet(fleet.start(shutdown)))
    }
}

/// Rules text that lets loopback clients in and nobody else.
pub const LOOPBACK_ONLY: &str = "allow 127.0.0.0/8\nallow ::1\ndefault deny\n";

/// Runs a role binary: parses the command line (`--help` prints the usage
/// with defaults), turns it into the role's configuration with
/// `configure`, and runs `role` on a multi-threaded runtime until SIGTERM or
/// Ctrl-C.
#[allow(clippy::print_stderr)]
pub fn run_role<A, T, C, F, Fut>(
    args: impl IntoIterator<Item = String>,
    configure: C,
    role: F,
) -> std::process::ExitCode
where
    A: CommandFactory + FromArgMatches,
    C: FnOnce(&Parsed<A>) -> Result<T, ConfigError>,
    F: FnOnce(T, foobar_core::Shutdown) -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::AppError>>,
{
    use std::process::ExitCode;
    let parsed = match Parsed::<A>::from_args(args) {
        Ok(parsed) => parsed,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    let config = match configure(&parsed) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome =
        runtime.block_on(async move { role(config, foobar_core::Shutdown::on_signals()).await });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up logging (`RUST_LOG`, default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    #[allow(dead_code)]
    struct Sample {
        listen: Option<std::net::SocketAddr>,
        rate: Option<u32>,
    }

    #[test]
    fn file_errors_name_the_file_line_and_key() {
        let path = Path::new("/etc/foobar/lb.toml");
        let error = parse_toml::<Sample>("# lb\nlisten = \"127.0.0.1:1\"\nrate = \"fast\"\n", path)
            .unwrap_err();
        let ConfigError::Parse { line, key, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!((*line, key.as_deref()), (3, Some("rate")));
        let message = error.to_string();
        assert!(
            message.starts_with("/etc/foobar/lb.toml:3: key `rate`: "),
            "{message}"
        );

        let error = parse_toml::<Sample>("listen = \"127.0.0.1:1\"\nrat = 5\n", path).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Parse { line: 2, key: Some(k), .. } if k == "rat"),
            "{error:?}"
        );
        let error = parse_toml::<Sample>("listen = \"nowhere\"\n", path).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Parse { line: 1, key: Some(k), .. } if k == "listen"),
            "{error:?}"
        );
    }

    #[test]
    fn durations_and_fleet_peers_are_checked() {
        use std::time::Duration;
        assert_eq!(parse_duration("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("75"), Ok(Duration::from_millis(75)));
        for bad in ["", "fast", "-1ms", "1e9s", "NaNs"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }

        let peers = FleetPeers::new(
            &[
                "lb2=http://127.0.0.1:9902".to_owned(),
                "http://127.0.0.1:9911/".to_owned(),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            peers.peers,
            [
                ("lb2".to_owned(), "http://127.0.0.1:9902".to_owned()),
                (
                    "127.0.0.1:9911".to_owned(),
                    "http://127.0.0.1:9911/".to_owned()
                ),
            ]
        );
        let error = FleetPeers::new(&["web1=https://127.0.0.1:1".to_owned()], None).unwrap_err();
        assert!(error.to_string().starts_with("--fleet-peer: "), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let broken = dir.path().join("stack.json");
        std::fs::write(&broken, "{ not json").unwrap();
        let error = FleetPeers::new(&[], Some(broken)).unwrap_err();
        assert!(error.to_string().starts_with("--fleet-stack: "), "{error}");
    }

    #[test]
    fn secrets_come_from_a_file_first_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(
            secret(Some(&file), "FOOBAR_TEST_UNSET_SECRET")
                .unwrap()
                .as_deref(),
            Some("s3cret")
        );
        assert_eq!(secret(None, "FOOBAR_TEST_UNSET_SECRET").unwrap(), None);
        assert!(matches!(
            secret(Some(&dir.path().join("missing")), "X"),
            Err(ConfigError::Secret { .. })
        ));
    }
}

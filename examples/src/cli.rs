//! A small command-line parser for the example binaries: `--name value`
//! pairs, repeatable flags, `--help`. Enough for examples; applications
//! would use their own configuration.

use std::collections::HashMap;
use std::str::FromStr;

/// Parsed `--name value` flags.
#[derive(Debug, Default)]
pub struct Flags {
    values: HashMap<String, Vec<String>>,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    /// Run with these flags.
    Run(Flags),
    /// Print the usage and exit.
    Help,
}

impl Flags {
    /// Parses `args` (without the program name). Every flag takes a value;
    /// names outside `known` are rejected.
    ///
    /// # Errors
    /// A message naming the unknown flag or the flag without a value.
    pub fn parse(args: impl IntoIterator<Item = String>, known: &[&str]) -> Result<Parsed, String> {
        let mut flags = Self::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(Parsed::Help);
            }
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            let (name, value) = match name.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => {
                    let value = args
                        .next()
                        .ok_or_else(|| format!("--{name} needs a value"))?;
                    (name.to_owned(), value)
                }
            };
            if !known.contains(&name.as_str()) {
                return Err(format!("unknown flag --{name}"));
            }
            flags.values.entry(name).or_default().push(value);
        }
        Ok(Parsed::Run(flags))
    }

    /// The last value of `--name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Every value of a repeatable `--name`.
    pub fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }

    /// `--name` parsed, or `default` when absent.
    ///
    /// # Errors
    /// A message naming the flag and the bad value.
    pub fn parse_or<T: FromStr>(&self, name: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|e| format!("--{name} {raw:?}: {e}")),
        }
    }

    /// `--name` parsed; an error when absent.
    ///
    /// # Errors
    /// A message naming the missing flag or the bad value.
    pub fn require<T: FromStr>(&self, name: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self
            .get(name)
            .ok_or_else(|| format!("--{name} is required"))?;
        raw.parse().map_err(|e| format!("--{name} {raw:?}: {e}"))
    }
}

/// Rules text that lets loopback clients in and nobody else.
pub const LOOPBACK_ONLY: &str = "allow 127.0.0.0/8\nallow ::1\ndefault deny\n";

/// Firewall rules from `file`, or from `default` text when no file is given.
///
/// # Errors
/// The rules error, naming the file, line and token.
pub fn rules(file: Option<&str>, default: &str) -> Result<foobar_guard::Rules, String> {
    match file {
        Some(path) => foobar_guard::Rules::from_file(path).map_err(|e| e.to_string()),
        None => foobar_guard::Rules::parse(default).map_err(|e| e.to_string()),
    }
}

/// Runs a role binary: parses the flags, prints `usage` for `--help`, and
/// runs `role` on a multi-threaded runtime until SIGTERM or Ctrl-C.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn run_role<T, C, F, Fut>(
    args: impl IntoIterator<Item = String>,
    known: &[&str],
    usage: &str,
    configure: C,
    role: F,
) -> std::process::ExitCode
where
    C: FnOnce(&Flags) -> Result<T, String>,
    F: FnOnce(T, foobar_core::Shutdown) -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::AppError>>,
{
    use std::process::ExitCode;
    let flags = match Flags::parse(args, known) {
        Ok(Parsed::Run(flags)) => flags,
        Ok(Parsed::Help) => {
            print!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("error: {error}\n\n{usage}");
            return ExitCode::from(2);
        }
    };
    let config = match configure(&flags) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}\n\n{usage}");
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

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_values_repeats_and_help() {
        let Ok(Parsed::Run(flags)) = Flags::parse(
            args(&["--listen", "127.0.0.1:1", "--backend=a", "--backend", "b"]),
            &["listen", "backend"],
        ) else {
            panic!("parse failed");
        };
        assert_eq!(flags.get("listen"), Some("127.0.0.1:1"));
        assert_eq!(flags.all("backend"), ["a", "b"]);
        assert!(matches!(
            Flags::parse(args(&["--help"]), &[]),
            Ok(Parsed::Help)
        ));
    }

    #[test]
    fn rejects_unknown_and_valueless_flags() {
        let err = Flags::parse(args(&["--nope", "1"]), &["listen"]).unwrap_err();
        assert!(err.contains("--nope"), "{err}");
        let err = Flags::parse(args(&["--listen"]), &["listen"]).unwrap_err();
        assert!(err.contains("needs a value"), "{err}");
        let Ok(Parsed::Run(flags)) = Flags::parse(args(&["--port", "x"]), &["port"]) else {
            panic!("parse failed");
        };
        let err = flags.require::<u16>("port").unwrap_err();
        assert!(err.contains("--port \"x\""), "{err}");
    }
}

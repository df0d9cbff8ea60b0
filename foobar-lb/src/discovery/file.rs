//! A backend list in a file (TOML or JSON), reloaded when it changes and
//! on `SIGHUP`.
//!
//! TOML (any extension but `.json`):
//!
//! ```toml
//! [[backend]]
//! url = "https://10.0.0.11:443"
//! weight = 2          # optional, default 1
//!
//! [[backend]]
//! url = "https://10.0.0.12:443"
//! ```
//!
//! JSON (`.json`): `[{"url": "https://10.0.0.11:443", "weight": 2}, …]`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::{DiscoveredBackend, Discovery, DiscoveryError};
use crate::proxy::UpstreamUrl;

/// The syntax of a backend list file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileFormat {
    /// `[[backend]]` tables with `url` and `weight`.
    Toml,
    /// An array of `{"url": …, "weight": …}` objects.
    Json,
}

impl FileFormat {
    /// JSON for a `.json` file, TOML otherwise.
    pub fn of(path: &Path) -> Self {
        match path.extension() {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Toml,
        }
    }
}

/// Watches a backend list file: a [`Discovery`] source that yields the
/// list at once, then again whenever the file changes (checked every
/// second by default; replacing the file by a rename is seen too) and on
/// every `SIGHUP` once [`reload_on_sighup`](Self::reload_on_sighup) is
/// set. A file that cannot be read or parsed yields an error naming the
/// file and line; the set keeps its backends.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    format: FileFormat,
    interval: Duration,
    #[cfg(unix)]
    hangups: Option<tokio::signal::unix::Signal>,
    /// Modification time and length when last read.
    seen: Option<(Option<SystemTime>, u64)>,
    started: bool,
}

impl FileSource {
    /// Watches `path`, in the format its extension tells.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self {
            format: FileFormat::of(&path),
            path,
            interval: Duration::from_secs(1),
            #[cfg(unix)]
            hangups: None,
            seen: None,
            started: false,
        }
    }

    /// Reads the file as `format` whatever its extension.
    #[must_use]
    pub fn format(mut self, format: FileFormat) -> Self {
        self.format = format;
        self
    }

    /// How often the file is checked for changes. Default: 1 s.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Also reloads on every `SIGHUP`. Must be called inside a Tokio
    /// runtime.
    ///
    /// # Errors
    /// [`DiscoveryError::Signal`] if the handler cannot be installed.
    #[cfg(unix)]
    pub fn reload_on_sighup(mut self) -> Result<Self, DiscoveryError> {
        use tokio::signal::unix::{signal, SignalKind};
        self.hangups = Some(signal(SignalKind::hangup()).map_err(DiscoveryError::Signal)?);
        Ok(self)
    }

    /// The file watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and parses the file now.
    ///
    /// # Errors
    /// [`DiscoveryError::Read`], [`DiscoveryError::Syntax`] or
    /// [`DiscoveryError::InvalidBackend`], naming the file and line.
    pub fn load(&self) -> Result<Vec<DiscoveredBackend>, DiscoveryError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| DiscoveryError::Read {
            path: self.path.clone(),
            source,
        })?;
        parse(&text, self.format, &self.path)
    }

    /// The file's modification time and length, if it can be read.
    fn stamp(&self) -> Option<(Option<SystemTime>, u64)> {
        let meta = std::fs::metadata(&self.path).ok()?;
        Some((meta.modified().ok(), meta.len()))
    }

    /// Waits for a change of the file or a `SIGHUP`.
    async fn changed(&mut self) -> Option<()> {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            #[cfg(unix)]
            if let Some(hangups) = &mut self.hangups {
                tokio::select! {
                    received = hangups.recv() => {
                        received?;
                        tracing::info!(path = %self.path.display(), "SIGHUP: reloading the backend list");
                        return Some(());
                    }
                    _ = tick.tick() => {}
                }
            } else {
                tick.tick().await;
            }
            #[cfg(not(unix))]
            tick.tick().await;
            let stamp = self.stamp();
            if stamp.is_some() && stamp != self.seen {
                return Some(());
            }
        }
    }
}

impl Discovery for FileSource {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    async fn next(&mut self) -> Option<Result<Vec<DiscoveredBackend>, DiscoveryError>> {
        if self.started {
            self.changed().await?;
        }
        self.started = true;
        self.seen = self.stamp();
        Some(self.load())
    }
}

/// One entry, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry<U> {
    url: U,
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(default)]
    backend: Vec<Entry<toml::Spanned<String>>>,
}

/// Parses a backend list; errors name `path` and the line.
pub(super) fn parse(
    text: &str,
    format: FileFormat,
    path: &Path,
) -> Result<Vec<DiscoveredBackend>, DiscoveryError> {
    let syntax = |line: usize, message: String| DiscoveryError::Syntax {
        path: path.to_owned(),
        line,
        message,
    };
    // (entry, line of its URL)
    let entries: Vec<(DiscoveredBackend, usize)> = match format {
        FileFormat::Toml => {
            let file: TomlFile = toml::from_str(text).map_err(|error| {
                let line = error.span().map_or(1, |span| line_of(text, span.start));
                syntax(line, error.message().to_owned())
            })?;
            file.backend
                .into_iter()
                .map(|entry| {
                    let line = line_of(text, entry.url.span().start);
                    (
                        DiscoveredBackend::new(entry.url.into_inner(), entry.weight),
                        line,
                    )
                })
                .collect()
        }
        FileFormat::Json => {
            let entries: Vec<Entry<String>> = serde_json::from_str(text).map_err(|error| {
                let message = error.to_string();
                // serde_json appends " at line L column C": keep the reason.
                let message = message
                    .rsplit_once(" at line ")
                    .map_or(message.as_str(), |(reason, _)| reason)
                    .to_owned();
                syntax(error.line().max(1), message)
            })?;
            // JSON keeps no positions: an entry's line is where its URL
            // string first appears after the previous entry's.
            let mut from = 0;
            entries
                .into_iter()
                .map(|entry| {
                    let quoted = serde_json::to_string(&entry.url).unwrap_or_default();
                    let at = text[from..].find(&quoted).map_or(from, |i| from + i);
                    from = at;
                    (
                        DiscoveredBackend::new(entry.url, entry.weight),
                        line_of(text, at),
                    )
                })
                .collect()
        }
    };

    let mut seen = std::collections::HashMap::new();
    let mut list = Vec::with_capacity(entries.len());
    for (backend, line) in entries {
        let invalid = |reason: String| DiscoveryError::InvalidBackend {
            path: path.to_owned(),
            line,
            url: backend.url().to_owned(),
            reason,
        };
        if let Err(error) = UpstreamUrl::parse(backend.url()) {
            let reason = match error {
                crate::Error::InvalidUpstream { reason, .. } => reason,
                other => other.to_string(),
            };
            return Err(invalid(reason));
        }
        if let Some(first) = seen.insert(backend.url().to_owned(), line) {
            return Err(invalid(format!("already listed on line {first}")));
        }
        list.push(backend);
    }
    Ok(list)
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toml(text: &str) -> Result<Vec<DiscoveredBackend>, DiscoveryError> {
        parse(text, FileFormat::Toml, Path::new("backends.toml"))
    }

    fn json(text: &str) -> Result<Vec<DiscoveredBackend>, DiscoveryError> {
        parse(text, FileFormat::Json, Path::new("backends.json"))
    }

    #[test]
    fn both_formats_list_urls_and_weights() {
        let expected = vec![
            DiscoveredBackend::new("http://127.0.0.1:8081", 2),
            DiscoveredBackend::new("https://web2.internal:8443", 1),
        ];
        let from_toml = toml(
            "# web servers\n[[backend]]\nurl = \"http://127.0.0.1:8081\"\nweight = 2\n\n\
             [[backend]]\nurl = \"https://web2.internal:8443\"\n",
        )
        .unwrap();
        assert_eq!(from_toml, expected);
        let from_json = json(
            "[\n  {\"url\": \"http://127.0.0.1:8081\", \"weight\": 2},\n  \
             {\"url\": \"https://web2.internal:8443\"}\n]\n",
        )
        .unwrap();
        assert_eq!(from_json, expected);
        assert_eq!(toml("").unwrap(), vec![]);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let error = toml("[[backend]]\nurl = \"http://a:1\"\nweight = \"x\"\n").unwrap_err();
        assert!(
            matches!(error, DiscoveryError::Syntax { line: 3, .. }),
            "{error}"
        );
        assert!(
            error.to_string().starts_with("backends.toml:3: "),
            "{error}"
        );

        let error = toml("[[backend]]\nurl = \"http://a:1\"\n\n[[backend]]\nurl = \"ftp://b\"\n")
            .unwrap_err();
        assert!(
            matches!(error, DiscoveryError::InvalidBackend { line: 5, .. }),
            "{error}"
        );

        let error = toml("[[backend]]\nurl = \"http://a:1\"\n[[backend]]\nurl = \"http://a:1\"\n")
            .unwrap_err();
        assert!(
            error.to_string().contains("already listed on line 2"),
            "{error}"
        );

        let error = json("[\n {\"url\": \"http://a:1\"},\n {\"url\": 7}\n]").unwrap_err();
        assert!(
            matches!(error, DiscoveryError::Syntax { line: 3, .. }),
            "{error}"
        );
        let error = json("[\n {\"url\": \"http://a:1\"},\n {\"url\": \"nope\"}\n]").unwrap_err();
        assert!(
            matches!(error, DiscoveryError::InvalidBackend { line: 3, .. }),
            "{error}"
        );
        let error = toml("[[backend]]\nurl = \"http://a:1\"\nport = 3\n").unwrap_err();
        assert!(
            matches!(error, DiscoveryError::Syntax { line: 3, .. }),
            "{error}"
        );
    }
}

//! Why a discovered list could not be used.

use std::path::PathBuf;

/// A backend list that could not be read or used; the set keeps its
/// backends.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The file could not be read.
    #[error("cannot read the backend list {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or JSON, or not a list of backends.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// An entry names a backend that cannot be used: a bad URL, or one
    /// already listed.
    #[error("{}:{line}: backend {url:?}: {reason}", path.display())]
    InvalidBackend {
        /// The file.
        path: PathBuf,
        /// The 1-based line of the entry.
        line: usize,
        /// The URL as written.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A DNS name could not be resolved (or has no usable record).
    #[error("cannot resolve {name}: {reason}")]
    Resolve {
        /// The name asked for.
        name: String,
        /// The resolver's error.
        reason: String,
    },
    /// The `SIGHUP` handler could not be installed.
    #[error("cannot listen for SIGHUP: {0}")]
    Signal(#[source] std::io::Error),
    /// The list was read but the set refused it.
    #[error("backend list from {source_name}: {error}")]
    Rejected {
        /// The source's name.
        source_name: String,
        /// The set's error.
        #[source]
        error: Box<crate::Error>,
    },
}

//! What to ask the CA for, where to keep it, and how to retry.

use std::path::PathBuf;
use std::time::Duration;

use rustls_pki_types::DnsName;

use super::error::AcmeError;
use super::manager::AcmeManager;

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous
/// rate limits): try a configuration here first.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// How the CA checks that this server answers for a name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Challenge {
    /// TLS-ALPN-01 (RFC 8737): the CA connects to port 443 offering ALPN
    /// `acme-tls/1` and expects a special certificate, which the
    /// [`TlsLayer`](crate::tls::TlsLayer) serves when the configuration
    /// has this manager ([`TlsConfigBuilder::acme`](crate::tls::TlsConfigBuilder::acme)).
    /// No other port is needed.
    #[default]
    TlsAlpn01,
    /// HTTP-01 (RFC 8555, 8.3): the CA fetches
    /// `http://<name>/.well-known/acme-challenge/<token>` on port 80, which
    /// [`Http01Layer`](super::Http01Layer) answers on the plain-HTTP
    /// listener.
    Http01,
}

impl Challenge {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::TlsAlpn01 => "tls-alpn-01",
            Self::Http01 => "http-01",
        }
    }
}

/// Builds an [`AcmeManager`]: one certificate for one or more names.
///
/// ```no_run
/// use foobar_guard::acme::{AcmeConfig, LETS_ENCRYPT};
///
/// # fn run() -> Result<(), foobar_guard::acme::AcmeError> {
/// let manager = AcmeConfig::new(LETS_ENCRYPT)
///     .names(["www.foobar.com", "foobar.com"])
///     .contact("mailto:ops@foobar.com")
///     .storage("/var/lib/foobar/acme")
///     .build()?;
/// # let _ = manager; Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct AcmeConfig {
    pub(crate) directory: String,
    pub(crate) names: Vec<String>,
    pub(crate) contacts: Vec<String>,
    pub(crate) storage: Option<PathBuf>,
    pub(crate) challenge: Challenge,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) retry_min: Duration,
    pub(crate) retry_max: Duration,
    pub(crate) lock_wait: Duration,
    pub(crate) order_timeout: Duration,
}

impl AcmeConfig {
    /// A configuration for the CA at this directory URL (RFC 8555, 7.1.1),
    /// e.g. [`LETS_ENCRYPT`].
    pub fn new(directory_url: impl Into<String>) -> Self {
        Self {
            directory: directory_url.into(),
            names: Vec::new(),
            contacts: Vec::new(),
            storage: None,
            challenge: Challenge::default(),
            ca_file: None,
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(6 * 3600),
            lock_wait: Duration::from_secs(600),
            order_timeout: Duration::from_secs(120),
        }
    }

    /// The DNS names of the certificate; the first is its main name.
    /// Wildcards (`*.foobar.com`) are refused by [`build`](Self::build):
    /// they need the DNS-01 challenge.
    pub fn names<N: AsRef<str>>(mut self, names: impl IntoIterator<Item = N>) -> Self {
        self.names = names.into_iter().map(|n| n.as_ref().to_owned()).collect();
        self
    }

    /// A contact URI for the account (`mailto:ops@foobar.com`); the CA
    /// writes there about expiring certificates and policy changes.
    pub fn contact(mut self, uri: impl Into<String>) -> Self {
        self.contacts.push(uri.into());
        self
    }

    /// The directory for the account key and certificates (created 0700,
    /// files 0600). Share it between load balancers (a network file system
    /// with `flock`) and they issue once: one takes the lock and talks to
    /// the CA, the others wait and load what it stored.
    pub fn storage(mut self, dir: impl Into<PathBuf>) -> Self {
        self.storage = Some(dir.into());
        self
    }

    /// The challenge the CA uses. Default: [`Challenge::TlsAlpn01`].
    pub fn challenge(mut self, challenge: Challenge) -> Self {
        self.challenge = challenge;
        self
    }

    /// Trusts this PEM bundle for the CA's own HTTPS endpoint instead of
    /// the system's trust anchors (a private or test CA such as Pebble).
    pub fn directory_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// After a failed attempt, wait `min`, doubling up to `max` for each
    /// further failure (each wait shortened by up to half at random, so
    /// instances do not retry in step). Default: 1 minute to 6 hours.
    pub fn retry_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.retry_min = min;
        self.retry_max = max.max(min);
        self
    }

    /// How long to wait for another instance that holds the storage lock.
    /// Default: 10 minutes.
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// How long the CA may take to validate an order and issue it.
    /// Default: 2 minutes.
    pub fn order_timeout(mut self, timeout: Duration) -> Self {
        self.order_timeout = timeout;
        self
    }

    /// Checks the names, creates the storage directory and loads the
    /// stored certificate if there is one (still valid: it serves until
    /// its replacement is in place). Nothing is asked of the CA yet: call
    /// [`AcmeManager::spawn`] (or [`AcmeManager::ensure`]).
    ///
    /// # Errors
    /// [`AcmeError::NoNames`], [`AcmeError::WildcardName`],
    /// [`AcmeError::InvalidName`], [`AcmeError::NoStorage`], or
    /// [`AcmeError::Storage`] if the directory cannot be created.
    pub fn build(mut self) -> Result<AcmeManager, AcmeError> {
        if self.names.is_empty() {
            return Err(AcmeError::NoNames);
        }
        let mut names = Vec::with_capacity(self.names.len());
        for name in &self.names {
            let lower = name.trim_end_matches('.').to_ascii_lowercase();
            if lower.contains('*') {
                return Err(AcmeError::WildcardName(name.clone()));
            }
            let valid = DnsName::try_from(lower.as_str()).is_ok()
                && lower.parse::<std::net::IpAddr>().is_err()
                && super::challenges::is_dns_name(&lower);
            if !valid {
                return Err(AcmeError::InvalidName(name.clone()));
            }
            if !names.contains(&lower) {
                names.push(lower);
            }
        }
        self.names = names;
        AcmeManager::new(self)
    }
}

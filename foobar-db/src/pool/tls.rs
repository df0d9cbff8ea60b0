//! TLS to the database: a verified server certificate and an optional
//! client certificate.
//!
//! The same ingredients as every foobar TLS client (a CA bundle file, a
//! client certificate chain and key as PEM files, see
//! [`foobar_core::tls`]); the files are loaded and checked once, with
//! foobar-core's typed errors naming the file, then handed to mysql_async,
//! which runs the TLS handshake inside the MySQL protocol.

use std::path::PathBuf;

use mysql_async::{ClientIdentity, SslOpts};

use crate::Error;

/// TLS settings for every host of a pool.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct DbTls {
    ca_file: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
    server_name: Option<String>,
}

impl DbTls {
    /// TLS verified against the system's roots (no custom CA).
    pub fn new() -> Self {
        Self::default()
    }

    /// Verify servers against this CA bundle (PEM) instead.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Present this client certificate chain and key (PEM files).
    pub fn identity_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// Verify this name instead of the host in the URL (when servers are
    /// reached by address but certified by name).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Checks the files and builds mysql_async's options (what
    /// [`RwPoolBuilder::tls`](crate::RwPoolBuilder::tls) applies to every
    /// host; use it with [`Manager`](super::Manager) directly).
    ///
    /// # Errors
    /// [`Error::Tls`] naming the file that is missing or not valid PEM, or
    /// a key that does not match its certificate.
    pub fn ssl_opts(&self) -> Result<SslOpts, Error> {
        let mut ssl = SslOpts::default();
        if let Some(ca) = &self.ca_file {
            foobar_core::tls::pem::load_ca_bundle(ca).map_err(Error::Tls)?;
            ssl = ssl.with_root_certs(vec![ca.clone().into()]);
        }
        if let Some((cert, key)) = &self.identity {
            foobar_core::tls::Identity::from_pem_files(cert, key).map_err(Error::Tls)?;
            ssl = ssl.with_client_identity(Some(ClientIdentity::new(
                cert.clone().into(),
                key.clone().into(),
            )));
        }
        if let Some(name) = &self.server_name {
            ssl = ssl.with_danger_tls_hostname_override(Some(name.clone()));
        }
        Ok(ssl)
    }
}

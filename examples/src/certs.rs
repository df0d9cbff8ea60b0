//! The stack's certificates: one development CA and every certificate the
//! roles need, written as PEM files.

use std::path::{Path, PathBuf};

use foobar_core::tls::{DevCa, DevCertFiles};

use crate::AppError;

/// Paths of the stack's PEM files.
#[derive(Debug, Clone)]
pub struct StackCerts {
    /// The CA every other certificate is issued by.
    pub ca: PathBuf,
    /// The load balancer's served certificate (`localhost`, `www.foobar.test`, `127.0.0.1`).
    pub lb: DevCertFiles,
    /// The load balancer's client certificate, presented to the web servers.
    pub lb_client: DevCertFiles,
    /// The web servers' certificate (`localhost`, `127.0.0.1`).
    pub web: DevCertFiles,
    /// The database servers' certificate (`localhost`, `127.0.0.1`).
    pub db: DevCertFiles,
}

impl StackCerts {
    /// Makes a CA and the certificates, and writes them under `dir`.
    ///
    /// # Errors
    /// Certificate generation or file errors.
    pub fn generate(dir: &Path) -> Result<Self, AppError> {
        let ca = DevCa::with_name("foobar stack development CA")?;
        Ok(Self {
            ca: ca.write_pem(dir)?,
            lb: ca
                .server_cert(["localhost", "www.foobar.test", "127.0.0.1", "::1"])?
                .write_pem(dir, "lb")?,
            lb_client: ca.client_cert("foobar-lb")?.write_pem(dir, "lb-client")?,
            web: ca
                .server_cert(["localhost", "127.0.0.1"])?
                .write_pem(dir, "web")?,
            db: ca
                .server_cert(["localhost", "127.0.0.1"])?
                .write_pem(dir, "db")?,
        })
    }
}

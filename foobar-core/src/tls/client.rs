//! Client-side TLS: verifying servers against a CA you name, presenting a
//! client certificate, and the server name to verify.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName};

use super::error::{Material, Origin, PemProblem, TlsError};
use super::identity::Identity;
use super::pem;

type Result<T, E = TlsError> = std::result::Result<T, E>;

/// Builds the `rustls::ClientConfig` for outgoing TLS connections (HTTPS
/// upstreams of the load balancer, TLS to the database).
///
/// Servers are verified against the CA certificates you add; there is no
/// built-in set of public roots, so at least one CA is required. Files are
/// read when [`build`](Self::build) runs, so a builder can be kept and
/// rebuilt after the files change.
///
/// ```
/// # #[cfg(feature = "dev-certs")] {
/// use foobar_core::tls::{ClientTls, DevCa};
///
/// let ca = DevCa::new()?;
/// let client = ca.client_cert("lb.internal")?;
/// let config = ClientTls::new()
///     .ca_pem(ca.cert_pem())
///     .identity(client.identity()?)
///     .alpn(["h2", "http/1.1"])
///     .build()?;
/// assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
/// # }
/// # Ok::<(), foobar_core::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ClientTls {
    cas: Vec<CaSource>,
    identity: Option<IdentitySource>,
    alpn: Vec<Vec<u8>>,
}

#[derive(Clone, Debug)]
enum CaSource {
    File(PathBuf),
    Pem(Vec<u8>),
    Der(CertificateDer<'static>),
}

#[derive(Clone, Debug)]
enum IdentitySource {
    Files { cert: PathBuf, key: PathBuf },
    Loaded(Identity),
}

impl ClientTls {
    /// A builder with no CA, no client certificate and no ALPN.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the CA certificates in a PEM file (read at [`build`](Self::build)).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cas.push(CaSource::File(path.into()));
        self
    }

    /// Trusts the CA certificates in a PEM buffer.
    pub fn ca_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.cas.push(CaSource::Pem(pem.as_ref().to_vec()));
        self
    }

    /// Trusts one CA certificate given in DER.
    pub fn ca_der(mut self, cert: CertificateDer<'static>) -> Self {
        self.cas.push(CaSource::Der(cert));
        self
    }

    /// Presents this client certificate (mutual TLS), from PEM files read
    /// at [`build`](Self::build).
    pub fn identity_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some(IdentitySource::Files {
            cert: cert.into(),
            key: key.into(),
        });
        self
    }

    /// Presents this client certificate (mutual TLS).
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(IdentitySource::Loaded(identity));
        self
    }

    /// The ALPN protocols to offer, most preferred first (e.g. `["h2",
    /// "http/1.1"]`). Default: none.
    pub fn alpn<P: AsRef<[u8]>>(mut self, protocols: impl IntoIterator<Item = P>) -> Self {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// Reads the files and builds the configuration (TLS 1.3 and 1.2,
    /// aws-lc-rs, session resumption on).
    ///
    /// # Errors
    /// [`TlsError::NoTrustAnchors`] without a CA; [`TlsError::ReadFile`],
    /// [`TlsError::Pem`] or [`TlsError::KeyMismatch`] naming the file at fault;
    /// [`TlsError::Rustls`] if rustls rejects the combination.
    pub fn build(&self) -> Result<Arc<ClientConfig>> {
        if self.cas.is_empty() {
            return Err(TlsError::NoTrustAnchors);
        }
        let mut roots = RootCertStore::empty();
        for ca in &self.cas {
            match ca {
                CaSource::File(path) => roots.roots.extend(pem::load_ca_bundle(path)?.roots),
                CaSource::Pem(bytes) => roots.roots.extend(pem::ca_bundle_from_pem(bytes)?.roots),
                CaSource::Der(cert) => roots.add(cert.clone()).map_err(|source| {
                    let problem = PemProblem::NotACa { number: 1, source };
                    pem::pem_error(Material::CaBundle, &Origin::Memory, problem)
                })?,
            }
        }
        let builder = ClientConfig::builder_with_provider(super::provider())
            .with_protocol_versions(super::PROTOCOL_VERSIONS)?
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some(source) => {
                let identity = match source {
                    IdentitySource::Files { cert, key } => Identity::from_pem_files(cert, key)?,
                    IdentitySource::Loaded(identity) => identity.clone(),
                };
                builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                    identity.certified_key(),
                )))
            }
        };
        config.alpn_protocols.clone_from(&self.alpn);
        Ok(Arc::new(config))
    }
}

/// The name a client sends (SNI) and verifies the server certificate
/// against: a DNS name (`db1.internal`) or an IP address (`10.0.0.5`,
/// `::1` or `[::1]`).
///
/// ```
/// use foobar_core::tls::server_name;
///
/// assert!(server_name("www.foobar.com").is_ok());
/// assert!(server_name("[::1]").is_ok());
/// assert!(server_name("not a host!").is_err());
/// ```
///
/// # Errors
/// [`TlsError::InvalidServerName`] naming the string if it is neither.
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare)
        .map(|name| name.to_owned())
        .map_err(|source| TlsError::InvalidServerName {
            name: host.to_owned(),
            source,
        })
}

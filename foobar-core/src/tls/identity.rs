//! A certificate chain with its private key.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::sign::{CertifiedKey, SigningKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::{Material, Origin, PemProblem, TlsError};
use super::pem;

type Result<T, E = TlsError> = std::result::Result<T, E>;

/// A certificate chain (end-entity first) and the private key of its
/// end-entity certificate, checked to match when loaded.
///
/// A server presents one to clients; a client presents one for mutual TLS
/// (see [`ClientTls::identity`](super::ClientTls::identity)).
///
/// ```no_run
/// use foobar_core::tls::Identity;
///
/// # fn run() -> Result<(), foobar_core::tls::TlsError> {
/// let id = Identity::from_pem_files("/etc/foobar/www.crt", "/etc/foobar/www.key")?;
/// assert!(!id.chain().is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Identity {
    certified: Arc<CertifiedKey>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl Identity {
    /// Loads a chain and a key from PEM files.
    ///
    /// # Errors
    /// [`TlsError::ReadFile`] or [`TlsError::Pem`] naming the file that is missing
    /// or damaged; [`TlsError::KeyMismatch`] naming both files when the key
    /// does not belong to the first certificate.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let cert_pem = pem::read(Material::Certificate, cert)?;
        let key_pem = pem::read(Material::PrivateKey, key)?;
        Self::parse(&cert_pem, &cert.into(), &key_pem, &key.into())
    }

    /// Loads a chain and a key from PEM in memory.
    ///
    /// # Errors
    /// [`TlsError::Pem`] if either is damaged; [`TlsError::KeyMismatch`] when the
    /// key does not belong to the first certificate.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        Self::parse(cert_pem, &Origin::Memory, key_pem, &Origin::Memory)
    }

    /// Pairs an already parsed chain and key.
    ///
    /// # Errors
    /// [`TlsError::Pem`] if the chain is empty, a certificate cannot be parsed
    /// or the key cannot be loaded; [`TlsError::KeyMismatch`] when the key
    /// does not belong to the first certificate.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self> {
        let signing = pem::load_signing_key(&key, &Origin::Memory)?;
        Self::pair(chain, &Origin::Memory, key, signing, &Origin::Memory)
    }

    fn parse(
        cert_pem: &[u8],
        cert_origin: &Origin,
        key_pem: &[u8],
        key_origin: &Origin,
    ) -> Result<Self> {
        let chain = pem::parse_certs(cert_pem, Material::Certificate, cert_origin)?;
        let (key, signing) = pem::parse_signing_key(key_pem, key_origin)?;
        Self::pair(chain, cert_origin, key, signing, key_origin)
    }

    fn pair(
        chain: Vec<CertificateDer<'static>>,
        cert_origin: &Origin,
        key: PrivateKeyDer<'static>,
        signing: Arc<dyn SigningKey>,
        key_origin: &Origin,
    ) -> Result<Self> {
        if chain.is_empty() {
            return Err(pem::pem_error(
                Material::Certificate,
                cert_origin,
                PemProblem::EmptyChain,
            ));
        }
        let certified = CertifiedKey::new(chain, signing);
        match certified.keys_match() {
            // A key type whose public half rustls cannot extract is accepted;
            // the handshake will then be the check.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(TlsError::KeyMismatch {
                    certificate: cert_origin.clone(),
                    key: key_origin.clone(),
                })
            }
            Err(other) => {
                return Err(pem::pem_error(
                    Material::Certificate,
                    cert_origin,
                    PemProblem::UnusableCertificate(other),
                ))
            }
        }
        Ok(Self {
            certified: Arc::new(certified),
            key: Arc::new(key),
        })
    }

    /// The certificate chain, end-entity first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.certified.cert
    }

    /// The end-entity certificate.
    pub fn end_entity(&self) -> &CertificateDer<'static> {
        // `pair` refuses an empty chain.
        &self.certified.cert[0]
    }

    /// The private key, DER encoded.
    pub fn private_key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// The chain and loaded signing key, as rustls' certificate resolvers
    /// want them.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified.clone()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Identity")
            .field("chain_len", &self.certified.cert.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

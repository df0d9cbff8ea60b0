//! A certificate chain with its private key.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::sign::{CertifiedKey, SigningKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::pem::{self, CERTIFICATE, IN_MEMORY, PRIVATE_KEY};
use crate::error::{Error, Result};

/// A certificate chain (end-entity first) and the private key of its
/// end-entity certificate, checked to match when loaded.
///
/// A server presents one to clients; a client presents one for mutual TLS
/// (see [`ClientTls::identity`](super::ClientTls::identity)).
///
/// ```no_run
/// use foobar_core::tls::Identity;
///
/// # fn run() -> Result<(), foobar_core::Error> {
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
    /// [`Error::ReadFile`] or [`Error::Pem`] naming the file that is missing
    /// or damaged; [`Error::KeyMismatch`] naming both files when the key
    /// does not belong to the first certificate.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let cert_pem = pem::read(CERTIFICATE, cert)?;
        let key_pem = pem::read(PRIVATE_KEY, key)?;
        Self::parse(
            &cert_pem,
            &cert.display().to_string(),
            &key_pem,
            &key.display().to_string(),
        )
    }

    /// Loads a chain and a key from PEM in memory.
    ///
    /// # Errors
    /// [`Error::Pem`] if either is damaged; [`Error::KeyMismatch`] when the
    /// key does not belong to the first certificate.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        Self::parse(cert_pem, IN_MEMORY, key_pem, IN_MEMORY)
    }

    /// Pairs an already parsed chain and key.
    ///
    /// # Errors
    /// [`Error::Pem`] if the chain is empty, a certificate cannot be parsed
    /// or the key cannot be loaded; [`Error::KeyMismatch`] when the key
    /// does not belong to the first certificate.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self> {
        let signing = super::provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|error| pem::pem_error(PRIVATE_KEY, IN_MEMORY, &error))?;
        Self::pair(chain, IN_MEMORY, key, signing, IN_MEMORY)
    }

    fn parse(cert_pem: &[u8], cert_origin: &str, key_pem: &[u8], key_origin: &str) -> Result<Self> {
        let chain = pem::parse_certs(cert_pem, CERTIFICATE, cert_origin)?;
        let (key, signing) = pem::parse_signing_key(key_pem, key_origin)?;
        Self::pair(chain, cert_origin, key, signing, key_origin)
    }

    fn pair(
        chain: Vec<CertificateDer<'static>>,
        cert_origin: &str,
        key: PrivateKeyDer<'static>,
        signing: Arc<dyn SigningKey>,
        key_origin: &str,
    ) -> Result<Self> {
        if chain.is_empty() {
            return Err(pem::pem_error(
                CERTIFICATE,
                cert_origin,
                &"the chain is empty",
            ));
        }
        let certified = CertifiedKey::new(chain, signing);
        match certified.keys_match() {
            // A key type whose public half rustls cannot extract is accepted;
            // the handshake will then be the check.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(Error::KeyMismatch {
                    certificate: cert_origin.to_owned(),
                    key: key_origin.to_owned(),
                })
            }
            Err(other) => return Err(pem::pem_error(CERTIFICATE, cert_origin, &other)),
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

//! Reading certificates, private keys and CA bundles from PEM.
//!
//! Files are read whole, then parsed; every error names the file (or
//! "(in memory)" for buffers) and what was expected in it:
//!
//! - [`TlsError::ReadFile`]: the file is missing or unreadable;
//! - [`TlsError::Pem`]: the file is not valid PEM, holds no section of the
//!   expected kind, or holds a key or certificate that cannot be used
//!   ([`PemProblem`] says which).
//!
//! ```
//! use foobar_core::tls::{pem, PemProblem, TlsError};
//!
//! let err = pem::load_certs("/nonexistent/server.crt").unwrap_err();
//! assert!(matches!(err, TlsError::ReadFile { .. }));
//! assert!(err.to_string().contains("/nonexistent/server.crt"));
//!
//! let err = pem::certs_from_pem(b"not PEM at all").unwrap_err();
//! assert!(matches!(err, TlsError::Pem { problem: PemProblem::NoSection { .. }, .. }));
//! ```

use std::path::Path;
use std::sync::Arc;

use rustls::sign::SigningKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::{Material, Origin, PemProblem, TlsError};
use super::provider;

type Result<T, E = TlsError> = std::result::Result<T, E>;

/// Reads a certificate chain (end-entity first) from a PEM file.
///
/// # Errors
/// [`TlsError::ReadFile`] if the file cannot be read; [`TlsError::Pem`] if it is
/// not PEM or holds no `CERTIFICATE` section.
pub fn load_certs(path: impl AsRef<Path>) -> Result<Vec<CertificateDer<'static>>> {
    let path = path.as_ref();
    let bytes = read(Material::Certificate, path)?;
    parse_certs(&bytes, Material::Certificate, &Origin::from(path))
}

/// Reads a certificate chain (end-entity first) from PEM in memory.
///
/// # Errors
/// [`TlsError::Pem`] if the buffer is not PEM or holds no `CERTIFICATE` section.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    parse_certs(pem, Material::Certificate, &Origin::Memory)
}

/// Reads the first private key from a PEM file: PKCS#8 (`PRIVATE KEY`),
/// PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`); RSA, ECDSA and
/// Ed25519 keys are supported.
///
/// # Errors
/// [`TlsError::ReadFile`] if the file cannot be read; [`TlsError::Pem`] if it is
/// not PEM, holds no private key, or the key cannot be used for signing.
pub fn load_private_key(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>> {
    let path = path.as_ref();
    let bytes = read(Material::PrivateKey, path)?;
    parse_private_key(&bytes, &Origin::from(path))
}

/// Reads the first private key from PEM in memory. See [`load_private_key`].
///
/// # Errors
/// [`TlsError::Pem`] if the buffer is not PEM, holds no private key, or the key
/// cannot be used for signing.
pub fn private_key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>> {
    parse_private_key(pem, &Origin::Memory)
}

/// Reads a bundle of trusted CA certificates from a PEM file.
///
/// # Errors
/// [`TlsError::ReadFile`] if the file cannot be read; [`TlsError::Pem`] if it is
/// not PEM, holds no certificate, or a certificate is not a usable trust
/// anchor.
pub fn load_ca_bundle(path: impl AsRef<Path>) -> Result<RootCertStore> {
    let path = path.as_ref();
    let bytes = read(Material::CaBundle, path)?;
    parse_ca_bundle(&bytes, &Origin::from(path))
}

/// Reads a bundle of trusted CA certificates from PEM in memory.
///
/// # Errors
/// [`TlsError::Pem`] if the buffer is not PEM, holds no certificate, or a
/// certificate is not a usable trust anchor.
pub fn ca_bundle_from_pem(pem: &[u8]) -> Result<RootCertStore> {
    parse_ca_bundle(pem, &Origin::Memory)
}

pub(crate) fn read(what: Material, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| TlsError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn pem_error(what: Material, origin: &Origin, problem: PemProblem) -> TlsError {
    TlsError::Pem {
        what,
        origin: origin.clone(),
        problem,
    }
}

pub(crate) fn parse_certs(
    pem: &[u8],
    what: Material,
    origin: &Origin,
) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(what, origin, PemProblem::Syntax(error)))?;
    if certs.is_empty() {
        return Err(pem_error(
            what,
            origin,
            PemProblem::NoSection {
                expected: "CERTIFICATE",
            },
        ));
    }
    Ok(certs)
}

pub(crate) fn parse_private_key(pem: &[u8], origin: &Origin) -> Result<PrivateKeyDer<'static>> {
    parse_signing_key(pem, origin).map(|(der, _)| der)
}

/// Parses a private key and loads it for signing.
pub(crate) fn parse_signing_key(
    pem: &[u8],
    origin: &Origin,
) -> Result<(PrivateKeyDer<'static>, Arc<dyn SigningKey>)> {
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|error| {
        let problem = match error {
            rustls_pki_types::pem::Error::NoItemsFound => PemProblem::NoSection {
                expected: "PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY",
            },
            other => PemProblem::Syntax(other),
        };
        pem_error(Material::PrivateKey, origin, problem)
    })?;
    // Parse it once now, so a damaged or unsupported key is reported here,
    // with its file name, rather than as an anonymous handshake failure.
    let signing = load_signing_key(&key, origin)?;
    Ok((key, signing))
}

pub(crate) fn load_signing_key(
    key: &PrivateKeyDer<'static>,
    origin: &Origin,
) -> Result<Arc<dyn SigningKey>> {
    provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|error| pem_error(Material::PrivateKey, origin, PemProblem::UnusableKey(error)))
}

fn parse_ca_bundle(pem: &[u8], origin: &Origin) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for (index, cert) in parse_certs(pem, Material::CaBundle, origin)?
        .into_iter()
        .enumerate()
    {
        roots.add(cert).map_err(|source| {
            let problem = PemProblem::NotACa {
                number: index + 1,
                source,
            };
            pem_error(Material::CaBundle, origin, problem)
        })?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_pem_sections_is_a_typed_error() {
        let err = certs_from_pem(b"hello\n").unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Pem {
                    what: Material::Certificate,
                    origin: Origin::Memory,
                    ..
                }
            ),
            "{err}"
        );
        let err = private_key_from_pem(b"hello\n").unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Pem {
                    what: Material::PrivateKey,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn broken_base64_is_a_typed_error() {
        let pem = b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n";
        let err = certs_from_pem(pem).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Pem {
                    problem: PemProblem::Syntax(_),
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn missing_end_marker_is_a_typed_error() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n";
        let err = certs_from_pem(pem).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Pem {
                    problem: PemProblem::Syntax(_),
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn key_with_garbage_body_is_rejected_at_load() {
        let pem = b"-----BEGIN PRIVATE KEY-----\nAAAAAAAA\n-----END PRIVATE KEY-----\n";
        let err = private_key_from_pem(pem).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Pem {
                    what: Material::PrivateKey,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn missing_file_names_the_file() {
        let err = load_private_key("/nonexistent/foobar/key.pem").unwrap_err();
        match &err {
            TlsError::ReadFile { what, path, source } => {
                assert_eq!(*what, Material::PrivateKey);
                assert_eq!(path, Path::new("/nonexistent/foobar/key.pem"));
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(err.to_string().contains("/nonexistent/foobar/key.pem"));
    }

    #[test]
    fn garbage_certificate_is_not_a_ca() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n";
        let err = ca_bundle_from_pem(pem).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Pem {
                    what: Material::CaBundle,
                    problem: PemProblem::NotACa { number: 1, .. },
                    ..
                }
            ),
            "{err}"
        );
    }
}

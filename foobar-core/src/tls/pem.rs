//! Reading certificates, private keys and CA bundles from PEM.
//!
//! Files are read whole, then parsed; every error names the file (or
//! "(in memory)" for buffers) and what was expected in it:
//!
//! - [`Error::ReadFile`]: the file is missing or unreadable;
//! - [`Error::Pem`]: the file is not valid PEM, holds no section of the
//!   expected kind, or holds a key or certificate that cannot be used.
//!
//! ```
//! use foobar_core::tls::pem;
//! use foobar_core::Error;
//!
//! let err = pem::load_certs("/nonexistent/server.crt").unwrap_err();
//! assert!(matches!(err, Error::ReadFile { .. }));
//! assert!(err.to_string().contains("/nonexistent/server.crt"));
//!
//! let err = pem::certs_from_pem(b"not PEM at all").unwrap_err();
//! assert!(matches!(err, Error::Pem { .. }));
//! ```

use std::path::Path;
use std::sync::Arc;

use rustls::sign::SigningKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::provider;
use crate::error::{Error, Result};

/// The origin named in errors about PEM held in memory.
pub(crate) const IN_MEMORY: &str = "(in memory)";

pub(crate) const CERTIFICATE: &str = "certificate";
pub(crate) const PRIVATE_KEY: &str = "private key";
const CA_BUNDLE: &str = "CA bundle";

/// Reads a certificate chain (end-entity first) from a PEM file.
///
/// # Errors
/// [`Error::ReadFile`] if the file cannot be read; [`Error::Pem`] if it is
/// not PEM or holds no `CERTIFICATE` section.
pub fn load_certs(path: impl AsRef<Path>) -> Result<Vec<CertificateDer<'static>>> {
    let path = path.as_ref();
    let bytes = read(CERTIFICATE, path)?;
    parse_certs(&bytes, CERTIFICATE, &path.display().to_string())
}

/// Reads a certificate chain (end-entity first) from PEM in memory.
///
/// # Errors
/// [`Error::Pem`] if the buffer is not PEM or holds no `CERTIFICATE` section.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    parse_certs(pem, CERTIFICATE, IN_MEMORY)
}

/// Reads the first private key from a PEM file: PKCS#8 (`PRIVATE KEY`),
/// PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`); RSA, ECDSA and
/// Ed25519 keys are supported.
///
/// # Errors
/// [`Error::ReadFile`] if the file cannot be read; [`Error::Pem`] if it is
/// not PEM, holds no private key, or the key cannot be used for signing.
pub fn load_private_key(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>> {
    let path = path.as_ref();
    let bytes = read(PRIVATE_KEY, path)?;
    parse_private_key(&bytes, &path.display().to_string())
}

/// Reads the first private key from PEM in memory. See [`load_private_key`].
///
/// # Errors
/// [`Error::Pem`] if the buffer is not PEM, holds no private key, or the key
/// cannot be used for signing.
pub fn private_key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>> {
    parse_private_key(pem, IN_MEMORY)
}

/// Reads a bundle of trusted CA certificates from a PEM file.
///
/// # Errors
/// [`Error::ReadFile`] if the file cannot be read; [`Error::Pem`] if it is
/// not PEM, holds no certificate, or a certificate is not a usable trust
/// anchor.
pub fn load_ca_bundle(path: impl AsRef<Path>) -> Result<RootCertStore> {
    let path = path.as_ref();
    let bytes = read(CA_BUNDLE, path)?;
    parse_ca_bundle(&bytes, &path.display().to_string())
}

/// Reads a bundle of trusted CA certificates from PEM in memory.
///
/// # Errors
/// [`Error::Pem`] if the buffer is not PEM, holds no certificate, or a
/// certificate is not a usable trust anchor.
pub fn ca_bundle_from_pem(pem: &[u8]) -> Result<RootCertStore> {
    parse_ca_bundle(pem, IN_MEMORY)
}

pub(crate) fn read(what: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn pem_error(what: &'static str, origin: &str, reason: &dyn std::fmt::Display) -> Error {
    Error::Pem {
        what,
        origin: origin.to_owned(),
        reason: reason.to_string(),
    }
}

pub(crate) fn parse_certs(
    pem: &[u8],
    what: &'static str,
    origin: &str,
) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(what, origin, &error))?;
    if certs.is_empty() {
        return Err(pem_error(
            what,
            origin,
            &"no CERTIFICATE section found in the PEM data",
        ));
    }
    Ok(certs)
}

pub(crate) fn parse_private_key(pem: &[u8], origin: &str) -> Result<PrivateKeyDer<'static>> {
    parse_signing_key(pem, origin).map(|(der, _)| der)
}

/// Parses a private key and loads it for signing.
pub(crate) fn parse_signing_key(
    pem: &[u8],
    origin: &str,
) -> Result<(PrivateKeyDer<'static>, Arc<dyn SigningKey>)> {
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|error| match error {
        rustls_pki_types::pem::Error::NoItemsFound => pem_error(
            PRIVATE_KEY,
            origin,
            &"no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section found in the PEM data",
        ),
        other => pem_error(PRIVATE_KEY, origin, &other),
    })?;
    // Parse it once now, so a damaged or unsupported key is reported here,
    // with its file name, rather than as an anonymous handshake failure.
    let signing = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|error| pem_error(PRIVATE_KEY, origin, &error))?;
    Ok((key, signing))
}

fn parse_ca_bundle(pem: &[u8], origin: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for (index, cert) in parse_certs(pem, CA_BUNDLE, origin)?.into_iter().enumerate() {
        roots.add(cert).map_err(|error| {
            pem_error(
                CA_BUNDLE,
                origin,
                &format_args!("certificate #{} is not a usable CA: {error}", index + 1),
            )
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
            matches!(err, Error::Pem { what: "certificate", ref origin, .. } if origin == IN_MEMORY),
            "{err}"
        );
        let err = private_key_from_pem(b"hello\n").unwrap_err();
        assert!(
            matches!(
                err,
                Error::Pem {
                    what: "private key",
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
        assert!(matches!(err, Error::Pem { .. }), "{err}");
    }

    #[test]
    fn missing_end_marker_is_a_typed_error() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n";
        let err = certs_from_pem(pem).unwrap_err();
        assert!(matches!(err, Error::Pem { .. }), "{err}");
    }

    #[test]
    fn key_with_garbage_body_is_rejected_at_load() {
        let pem = b"-----BEGIN PRIVATE KEY-----\nAAAAAAAA\n-----END PRIVATE KEY-----\n";
        let err = private_key_from_pem(pem).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Pem {
                    what: "private key",
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
            Error::ReadFile { what, path, source } => {
                assert_eq!(*what, "private key");
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
            matches!(err, Error::Pem { what: "CA bundle", ref reason, .. } if reason.contains("#1")),
            "{err}"
        );
    }
}

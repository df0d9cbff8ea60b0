//! Challenge answers while an order is open: HTTP-01 key authorizations
//! by token, TLS-ALPN-01 certificates by name.
//!
//! The instance that talks to the CA keeps them in memory and also writes
//! them to the shared storage directory, so that whichever instance the
//! CA's validation request reaches can answer it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use foobar_core::tls::pem;
use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::sign::CertifiedKey;

use super::error::AcmeError;
use super::storage::Storage;

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The path prefix of HTTP-01 validation requests (RFC 8555, 8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

#[derive(Debug)]
pub(crate) struct Challenges {
    http: Mutex<HashMap<String, String>>,
    tls_alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// The shared directory other instances write their answers to.
    shared: PathBuf,
}

impl Challenges {
    pub(crate) fn new(shared: PathBuf) -> Self {
        Self {
            http: Mutex::default(),
            tls_alpn: Mutex::default(),
            shared,
        }
    }

    /// The key authorization for an HTTP-01 token, from memory or from
    /// another instance's file.
    pub(crate) fn http01(&self, token: &str) -> Option<String> {
        if !is_token(token) {
            return None;
        }
        if let Some(answer) = lock(&self.http).get(token) {
            return Some(answer.clone());
        }
        let bytes = std::fs::read(self.shared.join(token)).ok()?;
        String::from_utf8(bytes).ok()
    }

    /// The TLS-ALPN-01 certificate for a (lower-case) name.
    pub(crate) fn tls_alpn01(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        if let Some(key) = lock(&self.tls_alpn).get(name) {
            return Some(key.clone());
        }
        if !is_dns_name(name) {
            return None;
        }
        let pem = std::fs::read(self.tls_alpn_path(name)).ok()?;
        validation_key(&pem).ok()
    }

    pub(crate) fn add_http01(&self, token: &str, key_authorization: &str) -> Result<(), AcmeError> {
        if !is_token(token) {
            return Err(AcmeError::BadToken(token.to_owned()));
        }
        lock(&self.http).insert(token.to_owned(), key_authorization.to_owned());
        Storage::write_private(&self.shared.join(token), key_authorization.as_bytes())
    }

    pub(crate) fn remove_http01(&self, token: &str) {
        lock(&self.http).remove(token);
        if is_token(token) {
            Storage::remove(&self.shared.join(token));
        }
    }

    /// Makes and installs the self-signed validation certificate for
    /// `name`, carrying the SHA-256 `digest` of the key authorization in
    /// its critical acmeIdentifier extension (RFC 8737, 3).
    pub(crate) fn add_tls_alpn01(&self, name: &str, digest: &[u8]) -> Result<(), AcmeError> {
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        params
            .custom_extensions
            .push(CustomExtension::new_acme_identifier(digest));
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let pem = format!("{}{}", key.serialize_pem(), cert.pem());
        let key = validation_key(pem.as_bytes()).map_err(|error| AcmeError::Certificate {
            names: name.to_owned(),
            reason: format!("the TLS-ALPN-01 certificate: {error}"),
        })?;
        lock(&self.tls_alpn).insert(name.to_owned(), key);
        Storage::write_private(&self.tls_alpn_path(name), pem.as_bytes())
    }

    pub(crate) fn remove_tls_alpn01(&self, name: &str) {
        lock(&self.tls_alpn).remove(name);
        Storage::remove(&self.tls_alpn_path(name));
    }

    fn tls_alpn_path(&self, name: &str) -> PathBuf {
        self.shared.join(format!("{name}.tls-alpn-01.pem"))
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &std::path::Path {
        &self.shared
    }
}

/// The validation certificate and key from their PEM. Not checked by
/// webpki, which (rightly, for real certificates) refuses its critical
/// acmeIdentifier extension.
fn validation_key(pem: &[u8]) -> Result<Arc<CertifiedKey>, Box<dyn std::error::Error>> {
    let chain = pem::certs_from_pem(pem)?;
    let key = pem::private_key_from_pem(pem)?;
    let signing = foobar_core::tls::provider()
        .key_provider
        .load_private_key(key)?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// ACME tokens are base64url (RFC 8555, 8.3), so they are safe file names.
fn is_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Letters, digits, `-` and `.`, not starting with `.`: safe as a file name.
pub(crate) fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_come_from_memory_or_from_another_instance_s_files() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::new(dir.path().to_path_buf());
        storage.create().unwrap();
        let mine = Challenges::new(storage.challenges_dir());
        let other = Challenges::new(storage.challenges_dir());

        mine.add_http01("tok_en-1", "tok_en-1.thumb").unwrap();
        assert_eq!(mine.http01("tok_en-1").as_deref(), Some("tok_en-1.thumb"));
        assert_eq!(other.http01("tok_en-1").as_deref(), Some("tok_en-1.thumb"));
        assert_eq!(other.http01("../account"), None);
        mine.remove_http01("tok_en-1");
        assert_eq!(other.http01("tok_en-1"), None);

        mine.add_tls_alpn01("a.test", &[7; 32]).unwrap();
        let served = other.tls_alpn01("a.test").unwrap();
        assert_eq!(served.cert, mine.tls_alpn01("a.test").unwrap().cert);
        assert!(other.tls_alpn01("../a.test").is_none());
        mine.remove_tls_alpn01("a.test");
        assert!(other.tls_alpn01("a.test").is_none());
        assert!(mine.shared().exists());
    }
}

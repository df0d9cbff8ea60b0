//! Choosing the certificate for a handshake by SNI.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Certificates by exact name and by wildcard parent domain, plus a default.
///
/// rustls lower-cases the SNI before it gets here, and names are stored
/// lower-case, so lookups need no allocation.
#[derive(Debug, Default)]
pub(crate) struct SniResolver {
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// `*.example.com` is stored under `example.com`.
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// Adds a name (`www.example.com` or `*.example.com`); the first
    /// certificate to claim a name keeps it.
    pub(crate) fn insert(&mut self, name: &str, key: &Arc<CertifiedKey>) {
        let name = name.to_ascii_lowercase();
        let (map, name) = match name.strip_prefix("*.") {
            Some(parent) => (&mut self.wildcard, parent.to_owned()),
            None => (&mut self.exact, name),
        };
        map.entry(name.into_boxed_str())
            .or_insert_with(|| key.clone());
    }

    pub(crate) fn set_default(&mut self, key: Arc<CertifiedKey>) {
        self.default = Some(key);
    }

    /// The certificate for this (lower-case) server name, if one claims it.
    pub(crate) fn lookup(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        if let Some(key) = self.exact.get(name) {
            return Some(key);
        }
        // A wildcard covers exactly one label: `a.example.com`, not
        // `example.com` or `a.b.example.com`.
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.lookup(name))
            .or(self.default.as_ref())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tag: u8) -> Arc<CertifiedKey> {
        // Only identity matters here; the chain holds a marker byte.
        let signing = foobar_core::tls::provider()
            .key_provider
            .load_private_key(test_key())
            .unwrap();
        Arc::new(CertifiedKey::new(
            vec![rustls_pki_types::CertificateDer::from(vec![tag])],
            signing,
        ))
    }

    fn test_key() -> rustls_pki_types::PrivateKeyDer<'static> {
        let ca = foobar_core::tls::DevCa::new().unwrap();
        let cert = ca.server_cert(["x.test"]).unwrap();
        foobar_core::tls::pem::private_key_from_pem(cert.key_pem().as_bytes()).unwrap()
    }

    fn tag(key: Option<&Arc<CertifiedKey>>) -> Option<u8> {
        key.map(|k| k.cert[0].as_ref()[0])
    }

    #[test]
    fn exact_beats_wildcard_and_wildcards_cover_one_label() {
        let mut resolver = SniResolver::default();
        resolver.insert("WWW.Example.com", &key(1));
        resolver.insert("*.example.com", &key(2));
        resolver.insert("www.example.com", &key(3)); // first claim wins
        assert_eq!(tag(resolver.lookup("www.example.com")), Some(1));
        assert_eq!(tag(resolver.lookup("api.example.com")), Some(2));
        assert_eq!(tag(resolver.lookup("example.com")), None);
        assert_eq!(tag(resolver.lookup("a.b.example.com")), None);
        assert_eq!(tag(resolver.lookup("other.test")), None);
    }
}

//! Choosing the certificate for a handshake by SNI.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A certificate for a name: fixed, or kept current by an ACME manager
/// (swapped in place when renewed; empty until first issued).
#[derive(Clone, Debug)]
pub(crate) enum Entry {
    Fixed(Arc<CertifiedKey>),
    #[cfg(any(feature = "acme", feature = "ocsp"))]
    Managed(Arc<arc_swap::ArcSwapOption<CertifiedKey>>),
}

impl Entry {
    fn get(&self) -> Option<Arc<CertifiedKey>> {
        match self {
            Self::Fixed(key) => Some(key.clone()),
            #[cfg(any(feature = "acme", feature = "ocsp"))]
            Self::Managed(slot) => slot.load_full(),
        }
    }
}

impl From<&Entry> for Entry {
    fn from(entry: &Entry) -> Self {
        entry.clone()
    }
}

impl From<Arc<CertifiedKey>> for Entry {
    fn from(key: Arc<CertifiedKey>) -> Self {
        Self::Fixed(key)
    }
}

impl From<&Arc<CertifiedKey>> for Entry {
    fn from(key: &Arc<CertifiedKey>) -> Self {
        Self::Fixed(key.clone())
    }
}

/// Certificates by exact name and by wildcard parent domain, plus a default.
///
/// rustls lower-cases the SNI before it gets here, and names are stored
/// lower-case, so lookups need no allocation.
#[derive(Debug, Default)]
pub(crate) struct SniResolver {
    exact: HashMap<Box<str>, Entry>,
    /// `*.example.com` is stored under `example.com`.
    wildcard: HashMap<Box<str>, Entry>,
    default: Option<Entry>,
    /// TLS-ALPN-01 answers of the ACME managers in the configuration.
    #[cfg(feature = "acme")]
    challenges: Vec<Arc<crate::acme::Challenges>>,
}

impl SniResolver {
    /// Adds a name (`www.example.com` or `*.example.com`); the first
    /// certificate to claim a name keeps it.
    pub(crate) fn insert(&mut self, name: &str, entry: impl Into<Entry>) {
        let name = name.to_ascii_lowercase();
        let (map, name) = match name.strip_prefix("*.") {
            Some(parent) => (&mut self.wildcard, parent.to_owned()),
            None => (&mut self.exact, name),
        };
        map.entry(name.into_boxed_str())
            .or_insert_with(|| entry.into());
    }

    pub(crate) fn set_default(&mut self, entry: impl Into<Entry>) {
        self.default = Some(entry.into());
    }

    /// Answers TLS-ALPN-01 validation from these challenges.
    #[cfg(feature = "acme")]
    pub(crate) fn add_challenges(&mut self, challenges: Arc<crate::acme::Challenges>) {
        self.challenges.push(challenges);
    }

    /// The certificate for this (lower-case) server name, if one claims it.
    pub(crate) fn lookup(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        if let Some(key) = self.exact.get(name) {
            return key.get();
        }
        // A wildcard covers exactly one label: `a.example.com`, not
        // `example.com` or `a.b.example.com`.
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent)?.get()
    }

    /// A TLS-ALPN-01 validation: the client offers ALPN `acme-tls/1`
    /// (RFC 8737 validators offer nothing else). It gets the validation
    /// certificate for its SNI, or no handshake.
    #[cfg(feature = "acme")]
    fn acme_validation(&self, hello: &ClientHello<'_>) -> Option<Option<Arc<CertifiedKey>>> {
        if self.challenges.is_empty() {
            return None;
        }
        let mut offered = hello.alpn()?;
        if !offered.any(|protocol| protocol == crate::acme::ACME_TLS_ALPN) {
            return None;
        }
        let name = hello.server_name()?;
        Some(self.challenges.iter().find_map(|c| c.tls_alpn01(name)))
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        #[cfg(feature = "acme")]
        if let Some(validation) = self.acme_validation(&hello) {
            return validation;
        }
        hello
            .server_name()
            .and_then(|name| self.lookup(name))
            .or_else(|| self.default.as_ref().and_then(Entry::get))
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

    fn tag(key: Option<Arc<CertifiedKey>>) -> Option<u8> {
        key.map(|k| k.cert[0].as_ref()[0])
    }

    #[test]
    fn exact_beats_wildcard_and_wildcards_cover_one_label() {
        let mut resolver = SniResolver::default();
        resolver.insert("WWW.Example.com", key(1));
        resolver.insert("*.example.com", key(2));
        resolver.insert("www.example.com", key(3)); // first claim wins
        assert_eq!(tag(resolver.lookup("www.example.com")), Some(1));
        assert_eq!(tag(resolver.lookup("api.example.com")), Some(2));
        assert_eq!(tag(resolver.lookup("example.com")), None);
        assert_eq!(tag(resolver.lookup("a.b.example.com")), None);
        assert_eq!(tag(resolver.lookup("other.test")), None);
    }
}

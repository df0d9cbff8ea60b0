use std::hash::Hash;
use std::net::IpAddr;

use foobar_core::ConnInfo;
use http::request::Parts;

use crate::client_addr::{client_key, ClientAddr};

/// Picks the key a request is counted under; `None` leaves the request
/// unlimited.
///
/// Implemented by [`ClientIpKey`] (the default) and by any
/// `Fn(&http::request::Parts) -> Option<K>`:
///
/// ```
/// use foobar_guard::rate_limit::RateLimitLayer;
///
/// // One bucket per API key; requests without one are not limited here.
/// let layer = RateLimitLayer::per_second(100, 200)?.key(|parts: &http::request::Parts| {
///     parts.headers.get("x-api-key").map(|v| v.as_bytes().to_vec())
/// });
/// # let _ = layer;
/// # Ok::<(), foobar_guard::Error>(())
/// ```
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key type.
    type Key: Hash + Eq + Clone + Send + Sync + 'static;

    /// The key of the request whose head is `parts`.
    fn extract(&self, parts: &Parts) -> Option<Self::Key>;
}

impl<F, K> KeyExtractor for F
where
    F: Fn(&Parts) -> Option<K> + Send + Sync + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Key = K;

    fn extract(&self, parts: &Parts) -> Option<K> {
        self(parts)
    }
}

/// Keys requests by client address: the [`ClientAddr`] resolved by the
/// request-level firewall (trusted proxies), else the connection's client
/// address. IPv6 clients are grouped by a prefix (default /64: one host
/// usually owns a whole /64, so per-address buckets would be trivial to
/// evade).
#[derive(Clone, Copy, Debug)]
pub struct ClientIpKey {
    v6_prefix: u8,
}

impl Default for ClientIpKey {
    fn default() -> Self {
        Self { v6_prefix: 64 }
    }
}

impl ClientIpKey {
    /// Groups IPv6 clients by their first `prefix` bits (128: no grouping).
    pub fn ipv6_prefix(prefix: u8) -> Self {
        Self {
            v6_prefix: prefix.min(128),
        }
    }
}

impl KeyExtractor for ClientIpKey {
    type Key = IpAddr;

    fn extract(&self, parts: &Parts) -> Option<IpAddr> {
        let addr = parts
            .extensions
            .get::<ClientAddr>()
            .map(|client| client.0)
            .or_else(|| {
                parts
                    .extensions
                    .get::<ConnInfo>()
                    .map(|info| info.client_addr().ip())
            })?;
        Some(client_key(addr, self.v6_prefix))
    }
}

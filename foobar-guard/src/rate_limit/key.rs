use std::hash::Hash;
use std::net::IpAddr;

use http::request::Parts;

use crate::client_addr::{client_key, ClientAddr};
use crate::unknown_client::UnknownClient;

/// Picks the key a request is counted under; `None` leaves the request
/// unlimited, unless [`refuses_without_key`](Self::refuses_without_key).
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
/// # Ok::<(), foobar_guard::ConfigError>(())
/// ```
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key type.
    type Key: Hash + Eq + Clone + Send + Sync + 'static;

    /// The key of the request whose head is `parts`.
    fn extract(&self, parts: &Parts) -> Option<Self::Key>;

    /// Whether a request without a key is refused (a `500`, logged and
    /// counted as an unknown client) rather than let through unlimited.
    /// Default: let through.
    fn refuses_without_key(&self) -> bool {
        false
    }
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
/// request-level firewall (trusted proxies), else the
/// [connection's peer](ClientAddr::connection_peer). IPv6 clients are
/// grouped by a prefix (default /64: one host usually owns a whole /64, so
/// per-address buckets would be trivial to evade). A request with no known
/// address is refused unless [`UnknownClient::Allow`] is chosen.
#[derive(Clone, Copy, Debug)]
pub struct ClientIpKey {
    v6_prefix: u8,
    unknown: UnknownClient,
}

impl Default for ClientIpKey {
    fn default() -> Self {
        Self {
            v6_prefix: 64,
            unknown: UnknownClient::Refuse,
        }
    }
}

impl ClientIpKey {
    /// Groups IPv6 clients by their first `prefix` bits (128: no grouping).
    pub fn ipv6_prefix(prefix: u8) -> Self {
        Self::default().with_ipv6_prefix(prefix)
    }

    /// This key, grouping IPv6 clients by their first `prefix` bits.
    #[must_use]
    pub fn with_ipv6_prefix(self, prefix: u8) -> Self {
        Self {
            v6_prefix: prefix.min(128),
            ..self
        }
    }

    /// This key, with `policy` for requests whose address is unknown.
    #[must_use]
    pub fn with_unknown_client(self, policy: UnknownClient) -> Self {
        Self {
            unknown: policy,
            ..self
        }
    }
}

impl KeyExtractor for ClientIpKey {
    type Key = IpAddr;

    fn extract(&self, parts: &Parts) -> Option<IpAddr> {
        let addr = ClientAddr::from_extensions(&parts.extensions)?;
        Some(client_key(addr, self.v6_prefix))
    }

    fn refuses_without_key(&self) -> bool {
        self.unknown == UnknownClient::Refuse
    }
}

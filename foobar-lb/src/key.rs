//! Affinity keys: what consistent hashing hashes to keep a client on the
//! same backend.

use foobar_core::ConnInfo;
use http::header::{HeaderName, COOKIE};

/// Extracts a request's affinity key, hashed to a `u64`. The balancer hands
/// it to the policy; [`ConsistentHash`](crate::policy::ConsistentHash) uses
/// it, other policies ignore it.
pub trait RequestKey<Req>: Clone + Send + Sync + 'static {
    /// The hashed key of `req`, or `None` when it has none.
    fn key(&self, req: &Req) -> Option<u64>;
}

/// No affinity key (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoKey;

impl<Req> RequestKey<Req> for NoKey {
    fn key(&self, _req: &Req) -> Option<u64> {
        None
    }
}

/// Affinity keys for HTTP requests.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum HttpKey {
    /// The client's IP address, from the [`ConnInfo`] the server put in the
    /// request's extensions (the PROXY protocol address when one was
    /// accepted, else the TCP peer).
    ClientIp,
    /// The value of a header (e.g. a session or tenant id).
    Header(HeaderName),
    /// The value of a cookie with this name.
    Cookie(String),
}

impl<B> RequestKey<http::Request<B>> for HttpKey {
    fn key(&self, req: &http::Request<B>) -> Option<u64> {
        match self {
            Self::ClientIp => req.extensions().get::<ConnInfo>().map(hash_ip),
            Self::Header(name) => req.headers().get(name).map(|v| hash_bytes(v.as_bytes())),
            Self::Cookie(name) => req
                .headers()
                .get_all(COOKIE)
                .iter()
                .find_map(|value| cookie_value(value.as_bytes(), name.as_bytes()))
                .map(hash_bytes),
        }
    }
}

fn hash_ip(info: &ConnInfo) -> u64 {
    match info.client_addr().ip() {
        std::net::IpAddr::V4(ip) => hash_bytes(&ip.octets()),
        std::net::IpAddr::V6(ip) => hash_bytes(&ip.octets()),
    }
}

/// The value of cookie `name` in one `Cookie` header.
fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
    })
}

/// A fast, stable 64-bit hash (FNV-1a, then a SplitMix64 finaliser so that
/// similar inputs spread over the whole ring). Stable across processes and
/// versions, so several balancer instances agree on placements.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        assert_eq!(
            cookie_value(b"a=1; sid=xyz; b=2", b"sid"),
            Some(&b"xyz"[..])
        );
        assert_eq!(cookie_value(b"xsid=1", b"sid"), None);
        assert_eq!(cookie_value(b"garbage;;=", b"sid"), None);
    }

    #[test]
    fn header_keys_hash_stably() {
        let key = HttpKey::Header(HeaderName::from_static("x-tenant"));
        let req = http::Request::builder()
            .header("x-tenant", "acme")
            .body(())
            .unwrap();
        assert_eq!(key.key(&req), Some(hash_bytes(b"acme")));
        let none = http::Request::new(());
        assert_eq!(key.key(&none), None);
    }
}

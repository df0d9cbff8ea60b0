//! The client's address: where the server put it, trusted proxies and
//! forwarding headers.
//!
//! The request-level layers find the connection's peer wherever the server
//! put it ([`ClientAddr::connection_peer`]): foobar's
//! [`ConnInfo`](foobar_core::ConnInfo), axum's `ConnectInfo<SocketAddr>`
//! (feature `axum`), or tonic's `TcpConnectInfo` / `TlsConnectInfo` (feature
//! `tonic`). An application (or a layer of its own) may also insert a
//! [`ClientAddr`] itself. When none of them is there the layers refuse the
//! request ([`UnknownClient`](crate::UnknownClient)).
//!
//! Behind a load balancer the TCP peer is the balancer, not the client. The
//! request-level firewall ([`Firewall`](crate::firewall::Firewall)) resolves
//! the real client once, stores it in the request's extensions as a
//! [`ClientAddr`], and everything after it (rate limiter, application) reads
//! it from there.
//!
//! Forwarding headers (`Forwarded`, else `X-Forwarded-For`) are believed
//! only when the peer is a [trusted proxy](TrustedProxies). Each proxy
//! appends the address it received the request from, so the list is read
//! from the right, skipping trusted proxies: the first address that is not
//! one is the client. Entries further left were written by the client itself
//! and are never believed.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;

use http::header::{HeaderMap, HeaderName, FORWARDED};
use http::{Extensions, Request};
use ipnet::IpNet;

use crate::error::Result;
use crate::firewall::{Action, Rules};
use foobar_core::ConnInfo;

/// The client address of a request, after trusted-proxy resolution.
///
/// Inserted into request extensions by the request-level
/// [`Firewall`](crate::firewall::Firewall). An application served by a
/// server that records no peer address may insert it itself, before the
/// guard layers; they then take it as the resolved client.
///
/// ```
/// use foobar_guard::ClientAddr;
///
/// let mut req = http::Request::new(());
/// assert_eq!(ClientAddr::of(&req), None);
/// req.extensions_mut().insert(ClientAddr("192.0.2.7".parse()?));
/// assert_eq!(ClientAddr::of(&req), Some("192.0.2.7".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The best known client address of `req`: its `ClientAddr` extension,
    /// else the [connection's peer](Self::connection_peer), else `None`.
    pub fn of<B>(req: &Request<B>) -> Option<IpAddr> {
        Self::from_extensions(req.extensions())
    }

    /// As [`of`](Self::of), from a request's extensions.
    pub fn from_extensions(extensions: &Extensions) -> Option<IpAddr> {
        match extensions.get::<ClientAddr>() {
            Some(client) => Some(client.0),
            None => Self::connection_peer(extensions).map(|peer| peer.ip()),
        }
    }

    /// The address the connection came from, wherever the server recorded
    /// it: foobar's [`ConnInfo`] (the PROXY protocol client or the TCP
    /// peer), axum's `ConnectInfo<SocketAddr>` (feature `axum`), tonic's
    /// `TcpConnectInfo` or `TlsConnectInfo<TcpConnectInfo>` (feature
    /// `tonic`). `None` when the server recorded none of them.
    pub fn connection_peer(extensions: &Extensions) -> Option<SocketAddr> {
        if let Some(info) = extensions.get::<ConnInfo>() {
            return Some(info.client_addr());
        }
        #[cfg(feature = "axum")]
        if let Some(axum::extract::ConnectInfo(peer)) =
            extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
        {
            return Some(*peer);
        }
        #[cfg(feature = "tonic")]
        {
            use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
            if let Some(info) = extensions.get::<TcpConnectInfo>() {
                return info.remote_addr();
            }
            if let Some(info) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
                return info.get_ref().remote_addr();
            }
        }
        None
    }
}

/// The proxies whose forwarding headers and PROXY protocol headers are
/// believed: a set of CIDR blocks.
///
/// Clones share one live set: [`replace`](Self::replace) on any clone (say,
/// after the load balancers moved) changes what every layer holding a clone
/// believes, for the next connection or request. Reads are lock-free.
///
/// ```
/// use foobar_guard::TrustedProxies;
///
/// let trusted = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1 ::1")?;
/// assert!(trusted.contains("10.1.2.3".parse()?));
/// assert!(!trusted.contains("192.0.2.1".parse()?));
///
/// let seen_by_a_layer = trusted.clone();
/// trusted.replace(&TrustedProxies::parse("192.0.2.0/24")?);
/// assert!(seen_by_a_layer.contains("192.0.2.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct TrustedProxies {
    set: Arc<ArcSwap<Rules>>,
}

impl Default for TrustedProxies {
    fn default() -> Self {
        Self::none()
    }
}

impl TrustedProxies {
    /// Trust nobody: forwarding headers are ignored.
    pub fn none() -> Self {
        Self::from_rules(Rules::with_default(Action::Deny))
    }

    fn from_rules(rules: Rules) -> Self {
        Self {
            set: Arc::new(ArcSwap::from_pointee(rules)),
        }
    }

    /// Trust the given blocks.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let rules = nets.into_iter().map(|net| crate::firewall::Rule {
            action: Action::Allow,
            net,
        });
        Self::from_rules(Rules::new(rules, Action::Deny))
    }

    /// Parses addresses and CIDR blocks separated by commas or white space.
    ///
    /// # Errors
    /// [`ConfigError::RulesSyntax`](crate::ConfigError::RulesSyntax) naming the bad
    /// token.
    pub fn parse(list: &str) -> Result<Self> {
        let mut text = String::with_capacity(list.len() + 16);
        for token in list.split(|c: char| c == ',' || c.is_whitespace()) {
            if !token.is_empty() {
                text.push_str("allow ");
                text.push_str(token);
                text.push('\n');
            }
        }
        text.push_str("default deny\n");
        Ok(Self::from_rules(Rules::parse(&text)?))
    }

    /// Makes this set (and every clone of it) trust what `other` trusts
    /// now.
    pub fn replace(&self, other: &TrustedProxies) {
        self.set.store(other.set.load_full());
    }

    /// Whether `addr` is a trusted proxy.
    #[inline]
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.set.load().is_allowed(addr)
    }

    /// The client of a request with these extensions and headers: a
    /// [`ClientAddr`] already there, else the
    /// [connection's peer](ClientAddr::connection_peer) resolved through
    /// these proxies. For code outside the guard layers, such as an
    /// access log in front of the firewall.
    pub fn client_of(&self, extensions: &Extensions, headers: &HeaderMap) -> Option<IpAddr> {
        match extensions.get::<ClientAddr>() {
            Some(client) => Some(client.0),
            None => {
                ClientAddr::connection_peer(extensions).map(|peer| self.resolve(peer.ip(), headers))
            }
        }
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.set.load().is_empty()
    }

    /// The client address of a request that arrived from `peer` with
    /// `headers`: `peer` itself unless it is trusted, else the right-most
    /// forwarded address that is not a trusted proxy (the left-most one if
    /// all are). An entry that is not an address (`unknown`, an obfuscated
    /// name, garbage) ends the walk at the hop that passed it on.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = self.set.load();
        if !trusted.is_allowed(peer) {
            return peer;
        }
        let mut walk = Walk {
            trusted: &trusted,
            client: peer,
        };
        if headers.contains_key(FORWARDED) {
            walk.headers(headers, &FORWARDED, forwarded_for);
        } else {
            walk.headers(headers, &X_FORWARDED_FOR, parse_node);
        }
        walk.client
    }
}

/// The key a client is counted under: an IPv4 address as is (IPv4-mapped
/// IPv6 included), an IPv6 address cut to its first `v6_prefix` bits (one
/// host usually holds a whole /64).
#[inline]
pub(crate) fn client_key(addr: IpAddr, v6_prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6);
                let mask = match v6_prefix {
                    0 => 0,
                    p if p >= 128 => u128::MAX,
                    p => u128::MAX << (128 - u32::from(p)),
                };
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
        },
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Walks forwarded hops from the right.
struct Walk<'a> {
    trusted: &'a Rules,
    client: IpAddr,
}

impl Walk<'_> {
    fn headers(
        &mut self,
        headers: &HeaderMap,
        name: &HeaderName,
        parse: impl Fn(&str) -> Option<IpAddr>,
    ) {
        // Later header lines were appended by later hops. Entries are
        // split on bytes: a byte a client wrote that is not visible ASCII
        // spoils its own entry, not the ones the proxies appended after
        // it (else the client would become the proxy).
        for value in headers.get_all(name).iter().rev() {
            for entry in value.as_bytes().rsplit(|&b| b == b',') {
                if entry.trim_ascii().is_empty() {
                    continue;
                }
                match std::str::from_utf8(entry).ok().and_then(&parse) {
                    Some(addr) => {
                        self.client = addr;
                        if !self.trusted.is_allowed(addr) {
                            return;
                        }
                    }
                    None => return,
                }
            }
        }
    }
}

/// The `for=` node of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim().eq_ignore_ascii_case("for").then_some(())?;
        parse_node(value)
    })
}

/// An address, optionally quoted, bracketed (IPv6) or with a port.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    let node = node
        .strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(node);
    if let Some(rest) = node.strip_prefix('[') {
        let (v6, _port) = rest.split_once(']')?;
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(addr) = node.parse::<IpAddr>() {
        return Some(addr);
    }
    // `192.0.2.1:8080`
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn the_peer_is_found_where_the_server_put_it() {
        let mut extensions = Extensions::new();
        assert_eq!(ClientAddr::connection_peer(&extensions), None);
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let mut info = ConnInfo::new(peer, "127.0.0.1:443".parse().unwrap());
        info.proxied_client = Some("198.51.100.7:5000".parse().unwrap());
        extensions.insert(info);
        assert_eq!(
            ClientAddr::connection_peer(&extensions),
            Some("198.51.100.7:5000".parse().unwrap())
        );
        extensions.insert(ClientAddr(ip("203.0.113.9")));
        assert_eq!(
            ClientAddr::from_extensions(&extensions),
            Some(ip("203.0.113.9"))
        );
    }

    #[cfg(feature = "tonic")]
    #[test]
    fn tonic_connect_info_names_the_peer() {
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let mut extensions = Extensions::new();
        extensions.insert(tonic::transport::server::TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(peer),
        });
        assert_eq!(ClientAddr::connection_peer(&extensions), Some(peer));
    }

    #[cfg(feature = "axum")]
    #[test]
    fn axum_connect_info_names_the_peer() {
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let mut extensions = Extensions::new();
        extensions.insert(axum::extract::ConnectInfo(peer));
        assert_eq!(ClientAddr::connection_peer(&extensions), Some(peer));
    }

    #[test]
    fn client_keys_group_ipv6_by_prefix() {
        assert_eq!(
            client_key(ip("2001:db8:1:2:3::4"), 64),
            ip("2001:db8:1:2::")
        );
        assert_eq!(client_key(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(client_key(ip("2001:db8::1"), 0), ip("::"));
        assert_eq!(client_key(ip("::ffff:192.0.2.1"), 64), ip("192.0.2.1"));
    }

    #[test]
    fn untrusted_peers_keep_their_own_address() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(trusted.resolve(ip("192.0.2.9"), &h), ip("192.0.2.9"));
        assert_eq!(
            TrustedProxies::none().resolve(ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // The client forged "6.6.6.6"; 203.0.113.5 is what the first trusted
        // proxy saw.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.5"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        assert_eq!(trusted.resolve(ip("10.0.0.1"), &h), ip("203.0.113.5"));
        let all_trusted = headers(&[("x-forwarded-for", "10.9.9.9, 10.0.0.2")]);
        assert_eq!(
            trusted.resolve(ip("10.0.0.1"), &all_trusted),
            ip("10.9.9.9")
        );
        let garbage = headers(&[("x-forwarded-for", "203.0.113.5, nonsense")]);
        assert_eq!(trusted.resolve(ip("10.0.0.1"), &garbage), ip("10.0.0.1"));
    }

    #[test]
    fn a_client_byte_that_is_not_ascii_spoils_only_its_own_entry() {
        // Found by the forwarded fuzz target: the client's `\xff` made the
        // whole joined value unreadable, and the trusted proxy became the
        // client (past a firewall rule denying the real one).
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xffe, 203.0.113.5").unwrap(),
        );
        assert_eq!(trusted.resolve(ip("10.0.0.1"), &h), ip("203.0.113.5"));
        let mut h = HeaderMap::new();
        h.append("forwarded", HeaderValue::from_bytes(b"for=\xff").unwrap());
        h.append("forwarded", HeaderValue::from_static("for=203.0.113.5"));
        assert_eq!(trusted.resolve(ip("10.0.0.1"), &h), ip("203.0.113.5"));
    }

    #[test]
    fn forwarded_header_is_preferred_and_parsed() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            (
                "forwarded",
                "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, For=10.0.0.3:80;by=10.0.0.1",
            ),
        ]);
        assert_eq!(trusted.resolve(ip("10.0.0.1"), &h), ip("2001:db8:cafe::17"));
        let hidden = headers(&[("forwarded", "for=_hidden")]);
        assert_eq!(trusted.resolve(ip("10.0.0.1"), &hidden), ip("10.0.0.1"));
    }
}

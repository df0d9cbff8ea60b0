//! Client-address resolution through trusted proxies.
//!
//! A client sends whatever forwarding headers it likes; each trusted proxy
//! on the way appends the address it received the request from, as
//! foobar-lb does (`X-Forwarded-For` joined onto the client's list, a
//! `Forwarded` line of its own). Whatever the client sent, the address the
//! first trusted proxy saw must be the one found, and a peer that is not
//! trusted is its own client.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use foobar_guard::TrustedProxies;
use http::header::{HeaderMap, HeaderName, HeaderValue, FORWARDED};
use ipnet::IpNet;

use crate::Input;

const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Header names a client may try.
const NAMES: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "x_forwarded_for",
    "x-forwarded-host",
];

/// Fragments a client's forged values are made of.
const FRAGMENTS: &[&str] = &[
    "for=",
    "6.6.6.6",
    "10.0.0.1",
    "127.0.0.1",
    "\"",
    "[",
    "]",
    "::1",
    "2001:db8::6",
    ",",
    ";",
    " ",
    "unknown",
    "_hidden",
    ":8080",
    "proto=https",
    "by=",
    "for=\"[::1]:1\"",
    "host=evil",
    "\t",
    "=",
    ", for=10.0.0.2",
];

fn addr(input: &mut Input<'_>) -> IpAddr {
    if input.flag() {
        IpAddr::V6(Ipv6Addr::from(input.array::<16>()))
    } else {
        IpAddr::V4(Ipv4Addr::from(input.array::<4>()))
    }
}

/// A value a client forged: fragments, or raw bytes.
fn forged(input: &mut Input<'_>) -> Option<HeaderValue> {
    let mut value = Vec::new();
    if input.flag() {
        for _ in 0..input.below(12) {
            let fragment = FRAGMENTS[usize::from(input.byte()) % FRAGMENTS.len()];
            value.extend_from_slice(fragment.as_bytes());
        }
    } else {
        let len = usize::from(input.below(32));
        value.extend_from_slice(input.take(len));
    }
    HeaderValue::from_bytes(&value).ok()
}

/// What a proxy writes for the hop it received the request from.
fn forwarded_node(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => format!("for={v4}"),
        IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    }
}

/// Appends `hop` as foobar-lb does, or to `X-Forwarded-For` only, as
/// nginx's `$proxy_add_x_forwarded_for` does.
fn append_hop(headers: &mut HeaderMap, hop: IpAddr, xff_only: bool) {
    let mut list = Vec::new();
    for value in headers.get_all(&XFF) {
        if !list.is_empty() {
            list.extend_from_slice(b", ");
        }
        list.extend_from_slice(value.as_bytes());
    }
    if !list.is_empty() {
        list.extend_from_slice(b", ");
    }
    list.extend_from_slice(hop.to_string().as_bytes());
    headers.remove(&XFF);
    if let Ok(value) = HeaderValue::from_bytes(&list) {
        headers.insert(&XFF, value);
    }
    if xff_only {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&forwarded_node(hop)) {
        headers.append(FORWARDED, value);
    }
}

pub(crate) fn check(data: &[u8]) {
    let mut input = Input::new(data);
    // Trusted blocks, and the hops that are in them.
    let mut nets = Vec::new();
    let mut proxies = Vec::new();
    for _ in 0..=input.below(3) {
        let proxy = addr(&mut input);
        let prefix = input.byte();
        let net = match proxy {
            IpAddr::V4(_) => IpNet::new(proxy, prefix % 33),
            IpAddr::V6(_) => IpNet::new(proxy, prefix % 129),
        };
        if let Ok(net) = net {
            nets.push(net);
            proxies.push(proxy);
        }
    }
    let trusted = TrustedProxies::new(nets);
    // A hop is a proxy only if it is trusted (an IPv4-mapped address in an
    // IPv6 block is not: it counts as IPv4).
    proxies.retain(|p| trusted.contains(*p));
    let client = addr(&mut input);
    if proxies.is_empty() || trusted.contains(client) {
        return;
    }
    // Proxies that write only `X-Forwarded-For` must not forward a client's
    // `Forwarded` either, or it is believed: see SECURITY.md.
    let xff_only = input.flag();
    let mut headers = HeaderMap::new();
    for _ in 0..input.below(6) {
        let name = HeaderName::from_static(NAMES[usize::from(input.byte()) % NAMES.len()]);
        if xff_only && name == FORWARDED {
            continue;
        }
        if let Some(value) = forged(&mut input) {
            headers.append(name, value);
        }
    }
    // The request as the client sent it, from an untrusted peer.
    assert_eq!(
        trusted.resolve(client, &headers),
        client,
        "an untrusted peer's headers believed"
    );

    // Through one or more trusted proxies: each appends its peer.
    let hops = 1 + usize::from(input.below(3));
    let mut peer = client;
    for i in 0..hops {
        append_hop(&mut headers, peer, xff_only);
        peer = proxies[i % proxies.len()];
    }
    assert_eq!(
        trusted.resolve(peer, &headers),
        client,
        "a client spoofed its address through {hops} trusted hops: {headers:?}"
    );
}

//! Proxy header semantics: hop-by-hop headers removed, forwarding headers
//! (`X-Forwarded-*`, RFC 7239 `Forwarded`, `Via`) added, a request id
//! generated when the client sent none.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use foobar_core::ConnInfo;
use http::header::{
    HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, FORWARDED, HOST, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE, VIA,
};
use http::{HeaderMap, Request, Version};

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Request-Id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Whether a request asks to switch protocols (WebSocket and the like):
/// an `Upgrade` header and `upgrade` among the `Connection` tokens.
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(b"upgrade")))
}

fn tokens(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    list_items(value.as_bytes())
}

/// The items of a comma-separated header value, trimmed, empty ones left out.
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers: `Connection` and every header it names
/// (except `Host`, which every HTTP/1.1 request needs end to end),
/// `Keep-Alive`, `TE` (except `TE: trailers`, which HTTP/2 and gRPC need
/// end to end), `Trailer`, `Transfer-Encoding`, `Upgrade` and `Proxy-*`.
/// A `Content-Length` beside `Transfer-Encoding` goes too: the encoding
/// framed the message, and the next hop frames it anew (RFC 9112 section
/// 6.1). With `keep_upgrade` (a protocol switch being tunnelled),
/// `Upgrade` and `Connection: upgrade` stay.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One scan finds what is there; most messages carry at most
    // `Connection: keep-alive`, handled without allocating.
    let mut present = Present::default();
    for name in headers.keys() {
        if *name == CONNECTION {
            present.connection = true;
        } else if *name == KEEP_ALIVE {
            present.keep_alive = true;
        } else if *name == TE {
            present.te = true;
        } else if *name == TRAILER || *name == TRANSFER_ENCODING || *name == UPGRADE {
            present.other = true;
        } else if name.as_str().starts_with("proxy-") {
            present.proxy = true;
        }
    }
    if present.connection {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .flat_map(tokens)
            .filter(|t| {
                let plain =
                    t.eq_ignore_ascii_case(b"keep-alive") || t.eq_ignore_ascii_case(b"close");
                let kept = (keep_upgrade && t.eq_ignore_ascii_case(b"upgrade"))
                    || t.eq_ignore_ascii_case(b"host");
                !(plain || kept)
            })
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    if present.keep_alive {
        headers.remove(KEEP_ALIVE);
    }
    if present.te
        && !headers
            .get_all(TE)
            .iter()
            .all(|v| tokens(v).all(|t| t.eq_ignore_ascii_case(b"trailers")))
    {
        headers.remove(TE);
    }
    if present.other {
        headers.remove(TRAILER);
        if headers.remove(TRANSFER_ENCODING).is_some() {
            headers.remove(CONTENT_LENGTH);
        }
        if !keep_upgrade {
            headers.remove(UPGRADE);
        }
    }
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if present.proxy {
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|n| n.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in proxy {
            headers.remove(name);
        }
    }
}

/// Leaves one `Content-Length` with one number where a message repeated
/// it (`2, 2`, or two fields): hyper accepted it only if every value was
/// the same, and the next hop gets it as RFC 9110 section 8.6 asks.
pub(crate) fn normalize_content_length(headers: &mut HeaderMap) {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let (Some(first), repeated) = (values.next(), values.next().is_some()) else {
        return;
    };
    if !repeated && !first.as_bytes().contains(&b',') {
        return;
    }
    let single = list_items(first.as_bytes())
        .next()
        .map(HeaderValue::from_bytes);
    if let Some(Ok(single)) = single {
        headers.insert(CONTENT_LENGTH, single);
    }
}

/// Which hop-by-hop headers a message carries.
#[derive(Default)]
struct Present {
    connection: bool,
    keep_alive: bool,
    te: bool,
    other: bool,
    proxy: bool,
}

/// Settings for the headers the proxy adds.
#[derive(Clone, Debug)]
pub(crate) struct Forwarding {
    /// Keep `X-Forwarded-Proto`/`-Host` sent by the client (a trusted proxy
    /// in front); otherwise they are replaced with what this proxy saw.
    pub(crate) trust_forwarded: bool,
    /// `Via` values for HTTP/1.0, 1.1 and 2 requests.
    via: [HeaderValue; 3],
}

impl Forwarding {
    pub(crate) fn new(via_name: &str, trust_forwarded: bool) -> Self {
        let via = |v: &str| {
            HeaderValue::from_str(&format!("{v} {via_name}"))
                .unwrap_or_else(|_| HeaderValue::from_static("1.1 foobar"))
        };
        Self {
            trust_forwarded,
            via: [via("1.0"), via("1.1"), via("2")],
        }
    }

    /// The proxy's `Via` entry for a message of `version`.
    pub(crate) fn via(&self, version: Version) -> HeaderValue {
        match version {
            Version::HTTP_10 | Version::HTTP_09 => self.via[0].clone(),
            Version::HTTP_2 | Version::HTTP_3 => self.via[2].clone(),
            _ => self.via[1].clone(),
        }
    }

    /// Adds the forwarding headers to a request about to go upstream and
    /// returns its request id.
    pub(crate) fn apply<B>(&self, req: &mut Request<B>, info: Option<&ConnInfo>) -> HeaderValue {
        let tls = info.is_some_and(ConnInfo::is_tls);
        let proto = if tls { "https" } else { "http" };
        let version = req.version();
        // HTTP/2 clients send :authority instead of Host.
        let host = match req.headers().get(HOST) {
            Some(host) => Some(host.clone()),
            None => {
                let authority = req
                    .uri()
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
                if let Some(authority) = &authority {
                    req.headers_mut().insert(HOST, authority.clone());
                }
                authority
            }
        };
        let headers = req.headers_mut();

        if let Some(ip) = info.map(|i| i.client_addr().ip()) {
            let mut element = String::with_capacity(96);
            let ip_text = match ip {
                IpAddr::V4(ip) => {
                    element.push_str("for=");
                    let (text, len) = ipv4_text(ip);
                    // Digits and dots only.
                    element.push_str(std::str::from_utf8(&text[..len]).unwrap_or_default());
                    4..element.len()
                }
                IpAddr::V6(ip) => {
                    let _ = write!(element, "for=\"[{ip}]\"");
                    6..element.len() - 2
                }
            };
            append_to_list(headers, X_FORWARDED_FOR, &element[ip_text]);
            element.push_str(";proto=");
            element.push_str(proto);
            if let Some(host) = host.as_ref().and_then(|h| h.to_str().ok()) {
                if !host.contains(['"', '\\']) {
                    element.push_str(";host=\"");
                    element.push_str(host);
                    element.push('"');
                }
            }
            if let Ok(value) = HeaderValue::try_from(element) {
                headers.append(FORWARDED, value);
            }
        }
        if !self.trust_forwarded || !headers.contains_key(X_FORWARDED_PROTO) {
            headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        }
        if let Some(host) = host {
            if !self.trust_forwarded || !headers.contains_key(X_FORWARDED_HOST) {
                headers.insert(X_FORWARDED_HOST, host);
            }
        }
        headers.append(VIA, self.via(version));
        match headers.get(X_REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = new_request_id();
                headers.insert(X_REQUEST_ID, id.clone());
                id
            }
        }
    }
}

/// Appends `item` to a comma-separated list header, keeping it one field.
fn append_to_list(headers: &mut HeaderMap, name: HeaderName, item: &str) {
    if !headers.contains_key(&name) {
        if let Ok(value) = HeaderValue::from_str(item) {
            headers.insert(name, value);
        }
        return;
    }
    let mut joined = String::new();
    for value in headers.get_all(&name) {
        if let Ok(value) = value.to_str() {
            joined.push_str(value);
            joined.push_str(", ");
        }
    }
    joined.push_str(item);
    if let Ok(value) = HeaderValue::try_from(joined) {
        headers.insert(name, value);
    }
}

/// An IPv4 address in dotted decimal, as its `Display` writes it but
/// without the formatting machinery (this runs for every request): the
/// bytes and how many of them are used.
pub(crate) fn ipv4_text(ip: Ipv4Addr) -> ([u8; 15], usize) {
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    (text, len)
}

/// A unique request id: 16 hex digits random per process, then 16 of a
/// counter.
pub(crate) fn new_request_id() -> HeaderValue {
    HeaderValue::from_bytes(&request_id_text()).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// The text of a new request id (see [`new_request_id`]).
pub(crate) fn request_id_text() -> [u8; 32] {
    static PREFIX: OnceLock<[u8; 16]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut buf = [0u8; 32];
    buf[..16].copy_from_slice(PREFIX.get_or_init(|| hex16(rand::random())));
    buf[16..].copy_from_slice(&hex16(COUNTER.fetch_add(1, Ordering::Relaxed)));
    buf
}

/// `n` as 16 lowercase hex digits.
fn hex16(n: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_listed_headers_go_and_te_trailers_stays() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert("proxy-foo", HeaderValue::from_static("1"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h, false);
        assert!(!h.contains_key("x-secret"));
        assert!(!h.contains_key(CONNECTION));
        assert!(!h.contains_key("proxy-foo"));
        assert_eq!(h.get(TE).unwrap(), "trailers");
        assert!(h.contains_key("x-keep"));
        h.insert(TE, HeaderValue::from_static("gzip"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        remove_hop_by_hop(&mut h, false);
        assert!(!h.contains_key(TE));
        assert!(!h.contains_key(UPGRADE));
    }

    #[test]
    fn upgrade_is_detected_and_kept() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h.get(CONNECTION).unwrap(), "upgrade");
        assert_eq!(h.get(UPGRADE).unwrap(), "websocket");
    }

    #[test]
    fn ipv4_addresses_are_written_as_display_writes_them() {
        for octets in [
            [0, 0, 0, 0],
            [255, 255, 255, 255],
            [10, 0, 0, 1],
            [192, 168, 100, 9],
            [1, 20, 205, 99],
        ] {
            let ip = Ipv4Addr::from(octets);
            let (text, len) = ipv4_text(ip);
            assert_eq!(&text[..len], ip.to_string().as_bytes());
        }
    }

    #[test]
    fn request_ids_are_unique_hex() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
    }
}

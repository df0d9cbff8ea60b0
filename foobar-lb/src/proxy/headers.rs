//! Proxy header semantics: hop-by-hop headers removed, forwarding headers
//! (`X-Forwarded-*`, RFC 7239 `Forwarded`, `Via`) added, a request id
//! generated.
//!
//! At the edge (no trusted proxy in front, the default) every forwarding
//! field a client sent is removed, whatever its spelling, and replaced with
//! this proxy's own: a client cannot choose the address, scheme, host or
//! request id a backend sees. Behind trusted proxies their fields are kept
//! and this hop is appended.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use foobar_core::ConnInfo;
use http::header::{
    HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, TE, TRAILER, TRANSFER_ENCODING,
    UPGRADE,
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

/// Whether a field is one a proxy writes about the client: `Forwarded`,
/// `X-Forwarded-*`, `X-Real-IP`, `X-Client-IP`, `X-Cluster-Client-IP`,
/// `True-Client-IP` and `X-Request-Id`, also spelled with underscores
/// (CGI, WSGI and PHP read `X_Forwarded_For` as `X-Forwarded-For`). Names
/// are lower case in a `HeaderMap`.
pub(crate) fn is_forwarding_field(name: &HeaderName) -> bool {
    /// Equal, with `_` taken for `-`.
    fn same(name: &[u8], want: &[u8]) -> bool {
        name.len() == want.len()
            && name
                .iter()
                .zip(want)
                .all(|(&a, &b)| a == b || (a == b'_' && b == b'-'))
    }
    let name = name.as_str().as_bytes();
    match name.first() {
        Some(b'f') => name == b"forwarded",
        Some(b't') => same(name, b"true-client-ip"),
        Some(b'x') if name.len() > 2 && matches!(name[1], b'-' | b'_') => {
            let rest = &name[2..];
            (rest.len() > 10 && same(&rest[..10], b"forwarded-"))
                || same(rest, b"real-ip")
                || same(rest, b"request-id")
                || same(rest, b"client-ip")
                || same(rest, b"cluster-client-ip")
        }
        _ => false,
    }
}

/// Settings for the headers the proxy adds.
#[derive(Clone, Debug)]
pub(crate) struct Forwarding {
    /// The peers are trusted proxies: keep the forwarding fields they sent
    /// (appending this hop) and their request id. Otherwise (the edge) a
    /// client's forwarding fields are removed and replaced.
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

    /// Writes a request's header fields as they go upstream, as HTTP/1
    /// lines: the client's, less the hop-by-hop ones (but `Upgrade` when
    /// `keep_upgrade`) and those the proxy replaces (at the edge, every
    /// forwarding field: [`is_forwarding_field`]), then the proxy's own
    /// (`X-Forwarded-For`, joined with a trusted peer's, `Forwarded`,
    /// `X-Forwarded-Proto` and `-Host`, `Via`, an `X-Request-Id` unless a
    /// trusted peer sent one). Framing fields are left to the writer of the
    /// body. Returns the request id.
    pub(crate) fn write_request_fields(
        &self,
        out: &mut Vec<u8>,
        headers: &HeaderMap,
        version: Version,
        info: Option<&ConnInfo>,
        keep_upgrade: bool,
    ) -> HeaderValue {
        let plan = RequestPlan::new(self, headers, keep_upgrade);
        for (name, value) in headers {
            if plan.keeps(name, value) && *name != CONTENT_LENGTH && *name != TRANSFER_ENCODING {
                push_field(out, name.as_str().as_bytes(), value.as_bytes());
            }
        }
        if keep_upgrade {
            push_field(out, b"connection", b"upgrade");
        }
        self.write_added(out, headers, version, info, &plan)
    }

    /// The same edits as [`write_request_fields`](Self::write_request_fields),
    /// made to a request's header map (for HTTP/2 backends). Returns the
    /// request id.
    pub(crate) fn apply<B>(&self, req: &mut Request<B>, info: Option<&ConnInfo>) -> HeaderValue {
        let version = req.version();
        let headers = req.headers_mut();
        let plan = RequestPlan::new(self, headers, false);
        let dropped: Vec<HeaderName> = headers
            .iter()
            .filter(|(name, value)| !plan.keeps(name, value))
            .map(|(name, _)| name.clone())
            .collect();
        for name in dropped {
            headers.remove(name);
        }
        let mut added = Vec::with_capacity(256);
        let id = self.write_added(&mut added, headers, version, info, &plan);
        for line in added.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&line[..colon]),
                HeaderValue::from_bytes(&line[colon + 2..]),
            ) else {
                continue;
            };
            headers.append(name, value);
        }
        id
    }

    /// Writes the fields the proxy adds; returns the request id.
    fn write_added(
        &self,
        out: &mut Vec<u8>,
        headers: &HeaderMap,
        version: Version,
        info: Option<&ConnInfo>,
        plan: &RequestPlan,
    ) -> HeaderValue {
        let proto: &[u8] = if info.is_some_and(ConnInfo::is_tls) {
            b"https"
        } else {
            b"http"
        };
        let host = headers.get(HOST);
        if let Some(ip) = info.map(|i| i.client_addr().ip()) {
            let ip4;
            let ip6;
            let ip_text: &[u8] = match ip {
                IpAddr::V4(v4) => {
                    ip4 = ipv4_text(v4);
                    &ip4.0[..ip4.1]
                }
                IpAddr::V6(v6) => {
                    ip6 = v6.to_string();
                    ip6.as_bytes()
                }
            };
            // One `X-Forwarded-For` field: a trusted peer's list, then
            // this hop.
            out.extend_from_slice(b"x-forwarded-for: ");
            if !plan.edge {
                for value in headers.get_all(&X_FORWARDED_FOR) {
                    out.extend_from_slice(value.as_bytes());
                    out.extend_from_slice(b", ");
                }
            }
            out.extend_from_slice(ip_text);
            out.extend_from_slice(b"\r\nforwarded: for=");
            if ip.is_ipv6() {
                out.extend_from_slice(b"\"[");
                out.extend_from_slice(ip_text);
                out.extend_from_slice(b"]\"");
            } else {
                out.extend_from_slice(ip_text);
            }
            out.extend_from_slice(b";proto=");
            out.extend_from_slice(proto);
            if let Some(host) = host.filter(|h| quotable(h.as_bytes())) {
                out.extend_from_slice(b";host=\"");
                out.extend_from_slice(host.as_bytes());
                out.push(b'"');
            }
            out.extend_from_slice(b"\r\n");
        }
        if plan.replace_proto {
            push_field(out, b"x-forwarded-proto", proto);
        }
        if let Some(host) = host.filter(|_| plan.replace_host) {
            push_field(out, b"x-forwarded-host", host.as_bytes());
        }
        push_field(out, b"via", self.via(version).as_bytes());
        match headers.get(X_REQUEST_ID).filter(|_| !plan.edge) {
            Some(id) => id.clone(),
            None => {
                let text = request_id_text();
                push_field(out, b"x-request-id", &text);
                HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
            }
        }
    }
}

/// Which of a request's fields go upstream, decided from one look at it.
struct RequestPlan {
    /// Fields `Connection` names, beyond `keep-alive`, `close`, `upgrade`
    /// (almost always none: no allocation then).
    named: Vec<HeaderName>,
    keep_upgrade: bool,
    /// The peer is not a trusted proxy: every forwarding field it sent goes.
    edge: bool,
    /// The client's `X-Forwarded-Proto` / `-Host` are replaced.
    replace_proto: bool,
    replace_host: bool,
}

impl RequestPlan {
    fn new(forwarding: &Forwarding, headers: &HeaderMap, keep_upgrade: bool) -> Self {
        let mut named = Vec::new();
        for value in headers.get_all(CONNECTION) {
            for token in tokens(value) {
                let plain = token.eq_ignore_ascii_case(b"keep-alive")
                    || token.eq_ignore_ascii_case(b"close")
                    || token.eq_ignore_ascii_case(b"upgrade")
                    // Every HTTP/1.1 request needs it end to end.
                    || token.eq_ignore_ascii_case(b"host");
                if !plain {
                    if let Ok(name) = HeaderName::from_bytes(token) {
                        named.push(name);
                    }
                }
            }
        }
        let trust = forwarding.trust_forwarded;
        Self {
            named,
            keep_upgrade,
            edge: !trust,
            replace_proto: !trust || !headers.contains_key(X_FORWARDED_PROTO),
            replace_host: headers.contains_key(HOST)
                && (!trust || !headers.contains_key(X_FORWARDED_HOST)),
        }
    }

    /// Whether the client's field goes upstream.
    fn keeps(&self, name: &HeaderName, value: &HeaderValue) -> bool {
        if *name == CONNECTION
            || *name == KEEP_ALIVE
            || *name == TRAILER
            || *name == X_FORWARDED_FOR
        {
            return false;
        }
        if *name == UPGRADE {
            return self.keep_upgrade;
        }
        if *name == TE {
            return tokens(value).all(|t| t.eq_ignore_ascii_case(b"trailers"));
        }
        if (*name == X_FORWARDED_PROTO && self.replace_proto)
            || (*name == X_FORWARDED_HOST && self.replace_host)
            || (self.edge && is_forwarding_field(name))
        {
            return false;
        }
        !name.as_str().starts_with("proxy-") && !self.named.contains(name)
    }
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether a `Host` value can go into `Forwarded` as a quoted string:
/// visible ASCII and blanks, no quote or backslash.
fn quotable(host: &[u8]) -> bool {
    host.iter()
        .all(|&b| (b == b'\t' || (0x20..0x7f).contains(&b)) && b != b'"' && b != b'\\')
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
    fn forwarding_fields_are_known_in_every_spelling() {
        for name in [
            "forwarded",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-forwarded-port",
            "x-forwarded-prefix",
            "x_forwarded_for",
            "x_forwarded_host",
            "x-forwarded_for",
            "x_forwarded-for",
            "x-real-ip",
            "x_real_ip",
            "x-request-id",
            "x_request_id",
            "x-client-ip",
            "x-cluster-client-ip",
            "true-client-ip",
            "true_client_ip",
        ] {
            assert!(
                is_forwarding_field(&HeaderName::from_static(name)),
                "{name}"
            );
        }
        for name in [
            "x-forwarded-",
            "x-forwarded",
            "forwarded-for",
            "x-real-ips",
            "x-keep",
            "host",
            "via",
            "x",
            "xx",
            "t",
            "f",
        ] {
            assert!(
                !is_forwarding_field(&HeaderName::from_static(name)),
                "{name}"
            );
        }
    }

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

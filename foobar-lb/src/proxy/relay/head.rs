//! Message heads on the relay's path: parsed in place, written back with
//! the proxy's header edits, the same the hyper path makes with
//! [`headers`](super::super::headers): hop-by-hop headers removed,
//! `X-Forwarded-*`, `Forwarded`, `Via` and `X-Request-Id` added.

use std::mem::MaybeUninit;
use std::net::IpAddr;

use foobar_core::ConnInfo;

use super::super::headers::{ipv4_text, list_items, request_id_text, Forwarding};
use crate::key::{RequestHead, RequestKey};

/// Most header fields in a head the relay parses itself; a request with
/// more is handed to hyper, which applies the server's own limit.
pub(crate) const MAX_HEADERS: usize = 100;

/// What parsing a head from the bytes read so far gave.
pub(crate) enum Parse<T> {
    /// The head is not complete yet.
    Partial,
    /// The head, parsed and rewritten.
    Done(T),
    /// Not a request the relay handles: HTTP/2, HTTP/1.0, an upgrade, an
    /// `Expect`, unusual framing, or malformed (hyper answers those).
    HandOver,
}

/// How a request's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestBody {
    None,
    Length(u64),
    Chunked,
}

/// How a response's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResponseBody {
    None,
    Length(u64),
    Chunked,
    /// Until the backend closes the connection; relayed chunked.
    UntilClose,
}

/// The request id sent upstream: the client's, or one generated.
pub(crate) enum RequestId {
    Generated([u8; 32]),
    Client(Box<[u8]>),
}

impl RequestId {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Generated(id) => id,
            Self::Client(id) => id,
        }
    }
}

/// A parsed request, its rewritten head already in the output buffer.
pub(crate) struct RequestPlan {
    /// Bytes of the head in the input.
    pub(crate) head_len: usize,
    /// Header fields in the head.
    pub(crate) fields: usize,
    pub(crate) body: RequestBody,
    pub(crate) is_head: bool,
    pub(crate) idempotent: bool,
    /// The client asked to close the connection after this exchange.
    pub(crate) close: bool,
    pub(crate) request_id: RequestId,
    pub(crate) key: Option<u64>,
}

/// Whether `name` is a hop-by-hop header other than `Connection`-named ones.
fn is_hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
        || name
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("proxy-"))
}

fn is(name: &str, wanted: &str) -> bool {
    name.eq_ignore_ascii_case(wanted)
}

/// Whether every `TE` value is `trailers` (kept end to end).
fn te_is_trailers(value: &[u8]) -> bool {
    list_items(value).all(|t| t.eq_ignore_ascii_case(b"trailers"))
}

/// A `Content-Length` value: one number, or a list of the same number
/// (RFC 9110 section 8.6 lets a recipient take `2, 2` as `2`).
fn content_length(value: &[u8]) -> Option<u64> {
    let mut items = value.split(|&b| b == b',').map(digits);
    let first = items.next()??;
    items.all(|n| n == Some(first)).then_some(first)
}

fn digits(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether a `Host` value is empty or a valid authority.
fn valid_host(host: &[u8]) -> bool {
    host.is_empty() || http::uri::Authority::try_from(host).is_ok()
}

/// Whether a `Host` value can go into `Forwarded` as a quoted string
/// (the hyper path's test: visible ASCII, no quote or backslash).
fn quotable(host: &[u8]) -> bool {
    host.iter()
        .all(|&b| (b == b'\t' || (0x20..0x7f).contains(&b)) && b != b'"' && b != b'\\')
}

/// Parses a request head from `input` and writes the head to send upstream
/// into `out`.
pub(crate) fn prepare_request<K>(
    input: &[u8],
    out: &mut Vec<u8>,
    forwarding: &Forwarding,
    info: &ConnInfo,
    key: &K,
) -> Parse<RequestPlan>
where
    K: for<'a> RequestKey<RequestHead<'a>>,
{
    // Slots left uninitialised: filling 100 of them costs more than
    // parsing a typical head.
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(input, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(_) => return Parse::HandOver,
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Parse::HandOver;
    };
    // CONNECT, absolute-form targets, and fragments (never forwarded):
    // the proxy service handles them.
    if method == "CONNECT" || !path.starts_with('/') || path.contains('#') {
        return Parse::HandOver;
    }
    let headers: &[httparse::Header<'_>] = req.headers;

    // One scan for what decides the framing and the edits.
    let mut close = false;
    let (mut lengths, mut encodings, mut chunked) = (0, 0, false);
    let mut length = 0;
    let (mut host, mut hosts, mut client_id) = (None, 0, None);
    let (mut has_proto, mut has_fwd_host) = (false, false);
    for h in headers {
        let name = h.name;
        if is(name, "connection") {
            for token in list_items(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                    // Naming fields to drop: they could be the framing
                    // (`Content-Length`) or what the edits read; hyper and
                    // the proxy service rebuild both.
                    return Parse::HandOver;
                }
            }
        } else if is(name, "upgrade") || is(name, "expect") {
            return Parse::HandOver;
        } else if is(name, "transfer-encoding") {
            encodings += 1;
            chunked = h.value.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if is(name, "content-length") {
            lengths += 1;
            match digits(h.value) {
                Some(n) => length = n,
                None => return Parse::HandOver,
            }
        } else if is(name, "host") {
            hosts += 1;
            host = host.or(Some(h.value));
        } else if is(name, "x-request-id") {
            client_id = client_id.or(Some(h.value));
        } else if is(name, "x-forwarded-proto") {
            has_proto = true;
        } else if is(name, "x-forwarded-host") {
            has_fwd_host = true;
        }
    }
    // Exactly one valid Host (RFC 9112 section 3.2); the proxy service
    // answers the rest with `400`.
    if hosts != 1 || host.is_some_and(|h| !valid_host(h)) {
        return Parse::HandOver;
    }
    let body = match (encodings, lengths) {
        (0, 0) => RequestBody::None,
        (0, 1) if length == 0 => RequestBody::None,
        (0, 1) => RequestBody::Length(length),
        (1, 0) if chunked => RequestBody::Chunked,
        _ => return Parse::HandOver,
    };
    let trust = forwarding.trust_forwarded;
    let replace_proto = !trust || !has_proto;
    let replace_host = host.is_some() && (!trust || !has_fwd_host);

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in headers {
        let name = h.name;
        if is_hop_by_hop(name)
            || (is(name, "te") && !te_is_trailers(h.value))
            || (replace_proto && is(name, "x-forwarded-proto"))
            || (replace_host && is(name, "x-forwarded-host"))
            // Written below, joined with this hop's address in one field.
            || is(name, "x-forwarded-for")
        {
            continue;
        }
        push_header(out, name.as_bytes(), h.value);
    }
    if body == RequestBody::Chunked {
        push_header(out, b"transfer-encoding", b"chunked");
    }

    let ip = info.client_addr().ip();
    let ip_buf: [u8; 15];
    let ip6;
    let ip_text: &[u8] = match ip {
        IpAddr::V4(v4) => {
            let (text, len) = ipv4_text(v4);
            ip_buf = text;
            &ip_buf[..len]
        }
        IpAddr::V6(v6) => {
            ip6 = v6.to_string();
            ip6.as_bytes()
        }
    };
    let proto: &[u8] = if info.is_tls() { b"https" } else { b"http" };
    out.extend_from_slice(b"x-forwarded-for: ");
    for h in headers.iter().filter(|h| is(h.name, "x-forwarded-for")) {
        out.extend_from_slice(h.value);
        out.extend_from_slice(b", ");
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
    if let Some(host) = host.filter(|h| quotable(h)) {
        out.extend_from_slice(b";host=\"");
        out.extend_from_slice(host);
        out.push(b'"');
    }
    out.extend_from_slice(b"\r\n");
    if replace_proto {
        push_header(out, b"x-forwarded-proto", proto);
    }
    if let Some(host) = host.filter(|_| replace_host) {
        push_header(out, b"x-forwarded-host", host);
    }
    push_header(out, b"via", forwarding.via_http11().as_bytes());
    let request_id = match client_id {
        Some(id) => RequestId::Client(id.into()),
        None => {
            let id = request_id_text();
            push_header(out, b"x-request-id", &id);
            RequestId::Generated(id)
        }
    };
    out.extend_from_slice(b"\r\n");

    let key = key.key(&RequestHead { info, headers });
    Parse::Done(RequestPlan {
        head_len,
        fields: headers.len(),
        body,
        is_head: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        ),
        close,
        request_id,
        key,
    })
}

/// A parsed response, its rewritten head already in the output buffer.
#[derive(Debug)]
pub(crate) struct ResponsePlan {
    pub(crate) head_len: usize,
    pub(crate) status: u16,
    pub(crate) body: ResponseBody,
    /// A `1xx` head: relay it and read the final response after it.
    pub(crate) informational: bool,
    /// The backend keeps the connection open after this response.
    pub(crate) reusable: bool,
    /// The client connection closes after this response.
    pub(crate) closes_client: bool,
}

/// Why a backend's response head was refused (the client gets a `502`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadResponse {
    #[error("malformed response head")]
    Malformed,
    #[error("switching protocols without an upgrade request")]
    UnexpectedSwitch,
    #[error("conflicting or invalid Content-Length")]
    Length,
}

/// Parses a backend's response head from `input` and writes the head to
/// send to the client into `out`. `close` asks the client connection to be
/// closed after this response.
pub(crate) fn prepare_response(
    input: &[u8],
    out: &mut Vec<u8>,
    request: &RequestPlan,
    forwarding: &Forwarding,
    close: bool,
) -> Result<Option<ResponsePlan>, BadResponse> {
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, input, &mut slots);
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(BadResponse::Malformed),
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return Err(BadResponse::Malformed);
    };
    if status < 100 {
        return Err(BadResponse::Malformed);
    }
    if status == 101 {
        return Err(BadResponse::UnexpectedSwitch);
    }
    let informational = (100..200).contains(&status);
    let headers: &[httparse::Header<'_>] = resp.headers;

    let mut named: Vec<&[u8]> = Vec::new();
    let (mut keep_alive, mut backend_closes) = (false, false);
    let (mut encoded, mut chunked_last) = (false, false);
    let mut length: Option<u64> = None;
    for h in headers {
        let name = h.name;
        if is(name, "connection") {
            for token in list_items(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    backend_closes = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                } else {
                    named.push(token);
                }
            }
        } else if is(name, "transfer-encoding") {
            encoded = true;
            chunked_last = list_items(h.value)
                .last()
                .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        } else if is(name, "content-length") {
            let n = content_length(h.value).ok_or(BadResponse::Length)?;
            if length.is_some_and(|l| l != n) {
                return Err(BadResponse::Length);
            }
            length = Some(n);
        }
    }
    // HTTP/1.0 has no transfer codings: the framing is faulty (RFC 9112
    // section 6.1).
    if version == 0 && encoded {
        return Err(BadResponse::Malformed);
    }
    let body = if informational || request.is_head || status == 204 || status == 304 {
        ResponseBody::None
    } else if encoded {
        // Transfer-Encoding overrides Content-Length (RFC 9112 6.3).
        if chunked_last {
            ResponseBody::Chunked
        } else {
            ResponseBody::UntilClose
        }
    } else {
        match length {
            Some(0) => ResponseBody::None,
            Some(n) => ResponseBody::Length(n),
            None => ResponseBody::UntilClose,
        }
    };
    let reusable =
        !backend_closes && (version == 1 || keep_alive) && body != ResponseBody::UntilClose;
    let closes_client = !informational && close;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status_digits(status).as_slice());
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let (mut has_id, mut has_date, mut wrote_length) = (false, false, false);
    for h in headers {
        let name = h.name;
        // The body is relayed as it came, so its framing headers stay,
        // whatever `Connection` names.
        let framing = is(name, "transfer-encoding") || is(name, "content-length");
        if (is_hop_by_hop(name) && !framing)
            || (is(name, "te") && !te_is_trailers(h.value))
            || (!framing
                && !named.is_empty()
                && named
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(name.as_bytes())))
            || (encoded && is(name, "content-length"))
        {
            continue;
        }
        if is(name, "content-length") {
            // One field with one number, whatever list or repeats came.
            if !wrote_length {
                wrote_length = true;
                if digits(h.value).is_some() {
                    push_header(out, name.as_bytes(), h.value);
                } else {
                    let n = length.unwrap_or(0).to_string();
                    push_header(out, b"content-length", n.as_bytes());
                }
            }
            continue;
        }
        has_id |= is(name, "x-request-id");
        has_date |= is(name, "date");
        push_header(out, name.as_bytes(), h.value);
    }
    if !informational {
        let via = if version == 0 {
            forwarding.via_http10()
        } else {
            forwarding.via_http11()
        };
        push_header(out, b"via", via.as_bytes());
        if !has_id {
            push_header(out, b"x-request-id", request.request_id.as_bytes());
        }
        if !has_date {
            push_header(out, b"date", http_date().as_bytes());
        }
        if body == ResponseBody::UntilClose {
            // Relayed chunked, after any coding the backend named.
            push_header(out, b"transfer-encoding", b"chunked");
        }
        if closes_client {
            push_header(out, b"connection", b"close");
        }
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(ResponsePlan {
        head_len,
        status,
        body,
        informational,
        reusable,
        closes_client,
    }))
}

/// Appends `data` as one chunk of a chunked body (nothing if it is empty:
/// an empty chunk would end the body).
pub(crate) fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// A status code's three digits (httparse accepts exactly three).
fn status_digits(status: u16) -> [u8; 3] {
    let digit = |n: u16| b'0' + u8::try_from(n % 10).unwrap_or(0);
    [digit(status / 100), digit(status / 10), digit(status)]
}

/// The current time as an HTTP date.
pub(crate) fn http_date() -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now())
}

/// Writes a complete short response the relay makes itself (errors).
pub(crate) fn write_error(
    out: &mut Vec<u8>,
    status: http::StatusCode,
    message: &str,
    request_id: Option<&RequestId>,
    forwarding: &Forwarding,
    close: bool,
    head_only: bool,
) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    push_header(out, b"content-type", b"text/plain; charset=utf-8");
    push_header(out, b"content-length", message.len().to_string().as_bytes());
    if let Some(id) = request_id {
        push_header(out, b"x-request-id", id.as_bytes());
    }
    push_header(out, b"via", forwarding.via_http11().as_bytes());
    push_header(out, b"date", http_date().as_bytes());
    if close {
        push_header(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    // A `HEAD` answer has the length of the body it would have had.
    if !head_only {
        out.extend_from_slice(message.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::NoKey;

    fn info() -> ConnInfo {
        ConnInfo::new(
            "[2001:db8::7]:5000".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap(),
        )
    }

    fn request(input: &[u8]) -> (Option<RequestPlan>, String) {
        let forwarding = Forwarding::new("foobar", false);
        let mut out = Vec::new();
        match prepare_request(input, &mut out, &forwarding, &info(), &NoKey) {
            Parse::Done(plan) => (Some(plan), String::from_utf8(out).unwrap()),
            Parse::Partial => panic!("partial"),
            Parse::HandOver => (None, String::new()),
        }
    }

    #[test]
    fn heads_the_relay_does_not_handle_go_to_hyper() {
        for input in [
            &b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
            b"GET http://elsewhere/ HTTP/1.1\r\nhost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            // Host missing, repeated or invalid; a fragment.
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a b\r\n\r\n",
            b"GET /#top HTTP/1.1\r\nhost: a\r\n\r\n",
            // Fields named in `Connection`: hyper rebuilds the framing.
            b"POST / HTTP/1.1\r\nhost: a\r\nconnection: content-length\r\ncontent-length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\nconnection: keep-alive, x-request-id\r\n\r\n",
        ] {
            assert!(
                request(input).0.is_none(),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn requests_are_rewritten_like_the_hyper_path_does() {
        let (plan, out) = request(
            b"DELETE /x?y HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\
              X-Forwarded-For: 10.0.0.1\r\nx-forwarded-for: 10.0.0.2\r\nx-forwarded-proto: gopher\r\n\
              Proxy-Authorization: secret\r\nTE: trailers\r\nContent-Length: 0\r\n\r\n",
        );
        let plan = plan.unwrap();
        assert!(plan.close && plan.idempotent && plan.body == RequestBody::None);
        assert!(
            out.starts_with("DELETE /x?y HTTP/1.1\r\nHost: shop\r\n"),
            "{out}"
        );
        for gone in ["Connection", "Proxy-Authorization", "gopher"] {
            assert!(!out.contains(gone), "{gone} left in {out}");
        }
        assert!(out.contains("\r\nTE: trailers\r\n"), "{out}");
        assert!(
            out.contains("\r\nx-forwarded-for: 10.0.0.1, 10.0.0.2, 2001:db8::7\r\n"),
            "{out}"
        );
        assert!(
            out.contains("\r\nforwarded: for=\"[2001:db8::7]\";proto=http;host=\"shop\"\r\n"),
            "{out}"
        );
        assert!(out.contains("\r\nx-forwarded-proto: http\r\n"), "{out}");
        assert!(out.contains("\r\nx-forwarded-host: shop\r\n"), "{out}");
        assert!(out.contains("\r\nvia: 1.1 foobar\r\n"), "{out}");
        assert!(out.contains("\r\nx-request-id: "), "{out}");
        assert!(out.ends_with("\r\n\r\n"));
    }

    fn response(input: &[u8], head_request: bool) -> Result<(ResponsePlan, String), BadResponse> {
        let forwarding = Forwarding::new("foobar", false);
        let verb: &[u8] = if head_request { b"HEAD" } else { b"GET" };
        let req = [verb, b" / HTTP/1.1\r\nhost: a\r\nx-request-id: r1\r\n\r\n"].concat();
        let plan = request(&req).0.unwrap();
        let mut out = Vec::new();
        let parsed = prepare_response(input, &mut out, &plan, &forwarding, false)?;
        Ok((parsed.expect("complete"), String::from_utf8(out).unwrap()))
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let (plan, out) = response(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(plan.body, ResponseBody::Chunked);
        assert!(!out.contains("content-length"), "{out}");
        assert!(out.contains("transfer-encoding: chunked"), "{out}");
        let (plan, _) = response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true).unwrap();
        assert_eq!(plan.body, ResponseBody::None);
        let (plan, out) = response(b"HTTP/1.0 200 OK\r\n\r\n", false).unwrap();
        assert_eq!(plan.body, ResponseBody::UntilClose);
        assert!(!plan.reusable && !plan.closes_client);
        assert!(out.contains("\r\nvia: 1.0 foobar\r\n"), "{out}");
        assert!(out.contains("\r\ntransfer-encoding: chunked\r\n"), "{out}");
        assert!(!out.contains("connection: close"), "{out}");
        assert!(out.contains("\r\nx-request-id: r1\r\n"), "{out}");
        assert!(out.contains("\r\ndate: "), "{out}");
        let (plan, _) = response(
            b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(plan.body, ResponseBody::None);
        assert!(!plan.reusable && !plan.closes_client);
        // `Connection` drops the fields it names, but not the framing.
        let (plan, out) = response(
            b"HTTP/1.1 200 OK\r\nconnection: content-length, date, x-hop\r\n\
              content-length: 5\r\ndate: then\r\nx-hop: 1\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(plan.body, ResponseBody::Length(5));
        assert!(out.contains("\r\ncontent-length: 5\r\n"), "{out}");
        assert!(!out.contains("x-hop") && !out.contains("then"), "{out}");
        assert!(out.contains("\r\ndate: "), "a date of its own: {out}");
        assert_eq!(
            response(
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                false
            )
            .unwrap_err(),
            BadResponse::Length
        );
    }
}

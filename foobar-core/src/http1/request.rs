//! Request heads, parsed from the bytes read so far into `http` types,
//! with the framing of their bodies decided as RFC 9112 section 6 asks.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};

use super::{list_items, offsets, BodyLength, Field};

/// Most header fields the parser makes room for; `HttpConfig::max_headers`
/// may only lower it.
pub(crate) const MAX_HEADERS: usize = 100;

/// A request head taken off the front of the read buffer.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) parts: http::request::Parts,
    pub(crate) body: BodyLength,
    /// The connection may carry another request after this one.
    pub(crate) keep_alive: bool,
    /// The client waits for `100 Continue` before sending its body.
    pub(crate) expect_continue: bool,
}

/// Why a request head was refused, with the status to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) reason: &'static str,
}

impl Refusal {
    const fn new(status: StatusCode, reason: &'static str) -> Self {
        Self { status, reason }
    }
}

/// What parsing the bytes read so far gave.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// More bytes are needed.
    Partial,
    /// A complete head (its bytes are gone from the buffer).
    Head(Box<RequestHead>),
    /// A request to refuse; the connection closes after the answer.
    Refused(Refusal),
    /// A head that wants a protocol switch or a tunnel (`Upgrade`,
    /// `CONNECT`), for hyper, whose upgrade machinery applications use;
    /// nothing consumed.
    HandOver,
}

/// Parses a request head from the front of `buf` (taking it off when
/// complete), refusing what RFC 9112 tells a server to refuse.
pub(crate) fn parse(buf: &mut BytesMut, max_headers: usize, max_head: usize) -> Parsed {
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let slots = &mut slots[..max_headers.clamp(1, MAX_HEADERS)];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            return Parsed::Refused(Refusal::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request head too large",
            ))
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refused(Refusal::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many header fields",
            ))
        }
        Err(httparse::Error::Version) if names_a_version(buf) => {
            return match later_http1_minor(buf) {
                Some(at) => {
                    // RFC 9110 section 2.5: a higher HTTP/1 minor version
                    // is served as the highest one we implement.
                    buf[at] = b'1';
                    parse(buf, max_headers, max_head)
                }
                None if buf.len() < max_head && request_line(buf).is_none() => Parsed::Partial,
                None => Parsed::Refused(Refusal::new(
                    StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                    "HTTP version not supported",
                )),
            };
        }
        Err(_) => {
            return Parsed::Refused(Refusal::new(
                StatusCode::BAD_REQUEST,
                "malformed request head",
            ))
        }
    };
    if head_len > max_head {
        return Parsed::Refused(Refusal::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head too large",
        ));
    }
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Refused(Refusal::new(
            StatusCode::BAD_REQUEST,
            "malformed request line",
        ));
    };
    let version = if version == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Refused(Refusal::new(StatusCode::BAD_REQUEST, "invalid method"));
    };

    // One scan for what decides the framing and the connection.
    let mut framing = Framing::default();
    let head: &[u8] = &buf[..head_len];
    let mut fields = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        fields.push(Field {
            name: offsets(head, h.name.as_bytes()),
            value: offsets(head, h.value),
        });
        if let Err(refusal) = framing.see(h.name, h.value) {
            return Parsed::Refused(refusal);
        }
    }
    let path_at = offsets(head, path.as_bytes());
    // Framing and Host are judged before a hand-over too: hyper reads a
    // request with both Content-Length and Transfer-Encoding as chunked,
    // and must never see one this parser refuses.
    let body = match framing.body(version) {
        Ok(body) => body,
        Err(refusal) => return Parsed::Refused(refusal),
    };
    if version == Version::HTTP_11 && framing.hosts != 1 {
        return Parsed::Refused(Refusal::new(
            StatusCode::BAD_REQUEST,
            "an HTTP/1.1 request needs exactly one Host",
        ));
    }
    let upgrade = framing.upgrade_token && framing.upgrade_header;
    if method == Method::CONNECT || upgrade {
        return Parsed::HandOver;
    }
    if framing.expect_other {
        return Parsed::Refused(Refusal::new(
            StatusCode::EXPECTATION_FAILED,
            "unknown expectation",
        ));
    }

    let head = buf.split_to(head_len).freeze();
    let Ok(uri) = Uri::from_maybe_shared(head.slice(path_at.0..path_at.1)) else {
        return Parsed::Refused(Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid request target",
        ));
    };
    let headers = match header_map(&head, &fields) {
        Ok(headers) => headers,
        Err(refusal) => return Parsed::Refused(refusal),
    };
    if let Some(host) = headers.get(http::header::HOST) {
        if !host.is_empty() && http::uri::Authority::try_from(host.as_bytes()).is_err() {
            return Parsed::Refused(Refusal::new(StatusCode::BAD_REQUEST, "invalid Host"));
        }
    }
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    let keep_alive = match version {
        Version::HTTP_11 => !framing.close,
        _ => framing.keep_alive && !framing.close,
    };
    Parsed::Head(Box::new(RequestHead {
        parts,
        body,
        keep_alive,
        expect_continue: framing.expect_continue && version == Version::HTTP_11,
    }))
}

/// Whether a request line httparse refused for its version names an HTTP
/// version, merely not ours (`HTTP/` and a major digit, RFC 9112 section
/// 2.3): only that is a 505. Anything else (`http/1.1`, or a space inside
/// the target, which makes a path segment the "version") is a malformed
/// request line, a 400. The answer depends only on bytes up to where
/// httparse stops, so it is the same however the head arrives.
fn names_a_version(buf: &[u8]) -> bool {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n');
    let line = buf[start.unwrap_or(buf.len())..]
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    let version = line.split(|&b| b == b' ').nth(2).unwrap_or_default();
    matches!(version, [b'H', b'T', b'T', b'P', b'/', major, ..] if major.is_ascii_digit())
}

/// Where the minor digit of a complete request line's `HTTP/1.2` to
/// `HTTP/1.9` is (RFC 9112 section 2.3: one digit each side of the dot),
/// if that is its version.
fn later_http1_minor(buf: &[u8]) -> Option<usize> {
    let (start, line) = request_line(buf)?;
    let version = line.rsplit(|&b| b == b' ').next()?;
    let three_parts = line.split(|&b| b == b' ').count() == 3;
    match version {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9'] if three_parts => {
            Some(start + line.len() - 1)
        }
        _ => None,
    }
}

/// The request line, once complete (after any empty lines before it,
/// RFC 9112 section 2.2), without its line end; and where it starts.
fn request_line(buf: &[u8]) -> Option<(usize, &[u8])> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let end = start + buf[start..].iter().position(|&b| b == b'\n')?;
    let line = &buf[start..end];
    Some((start, line.strip_suffix(b"\r").unwrap_or(line)))
}

/// Builds the header map, values sharing the head's bytes.
fn header_map(head: &Bytes, fields: &[Field]) -> Result<HeaderMap, Refusal> {
    let invalid = Refusal::new(StatusCode::BAD_REQUEST, "invalid header field");
    let mut map = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let name =
            HeaderName::from_bytes(&head[field.name.0..field.name.1]).map_err(|_| invalid)?;
        let value = HeaderValue::from_maybe_shared(head.slice(field.value.0..field.value.1))
            .map_err(|_| invalid)?;
        map.append(name, value);
    }
    Ok(map)
}

/// What the header fields say about framing and the connection.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    encodings: usize,
    chunked: bool,
    /// How many of the codings are `chunked`.
    chunked_codings: usize,
    close: bool,
    keep_alive: bool,
    upgrade_token: bool,
    upgrade_header: bool,
    expect_continue: bool,
    expect_other: bool,
    hosts: usize,
}

impl Framing {
    fn see(&mut self, name: &str, value: &[u8]) -> Result<(), Refusal> {
        let is = |wanted: &str| name.eq_ignore_ascii_case(wanted);
        if is("content-length") {
            let n = super::content_length(value).ok_or(Refusal::new(
                StatusCode::BAD_REQUEST,
                "invalid Content-Length",
            ))?;
            if self.length.is_some_and(|l| l != n) {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "conflicting Content-Length",
                ));
            }
            self.length = Some(n);
        } else if is("transfer-encoding") {
            let before = self.encodings;
            for coding in list_items(value) {
                self.encodings += 1;
                self.chunked = coding.eq_ignore_ascii_case(b"chunked");
                self.chunked_codings += usize::from(self.chunked);
            }
            if self.encodings == before {
                // A field that names no coding (empty, or only commas):
                // a parser that takes the field's presence for chunked
                // would read a body this one does not see.
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "Transfer-Encoding without a coding",
                ));
            }
        } else if is("connection") {
            for token in list_items(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    self.upgrade_token = true;
                }
            }
        } else if is("upgrade") {
            self.upgrade_header = true;
        } else if is("expect") {
            if value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                self.expect_continue = true;
            } else {
                self.expect_other = true;
            }
        } else if is("host") {
            self.hosts += 1;
        }
        Ok(())
    }

    /// How the body is delimited (RFC 9112 section 6.3). Both a length and
    /// a coding, a coding other than `chunked` alone, or any coding in
    /// HTTP/1.0 is refused: no two parsers may disagree on where the
    /// request ends.
    fn body(&self, version: Version) -> Result<BodyLength, Refusal> {
        match (self.encodings, self.length) {
            (0, None | Some(0)) => Ok(BodyLength::None),
            (0, Some(n)) => Ok(BodyLength::Length(n)),
            (_, Some(_)) => Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "both Content-Length and Transfer-Encoding",
            )),
            (_, None) if version != Version::HTTP_11 => Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "Transfer-Encoding in HTTP/1.0",
            )),
            (1, None) if self.chunked => Ok(BodyLength::Chunked),
            (_, None) if !self.chunked => Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "chunked must be the final transfer coding",
            )),
            // RFC 9112 section 6.1: a sender never applies chunked twice;
            // such a request is malformed, not one we merely cannot decode.
            (_, None) if self.chunked_codings > 1 => Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "chunked applied more than once",
            )),
            (_, None) => Err(Refusal::new(
                StatusCode::NOT_IMPLEMENTED,
                "transfer codings other than chunked",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(input: &str) -> Parsed {
        let mut buf = BytesMut::from(input);
        parse(&mut buf, 100, 64 * 1024)
    }

    fn head(input: &str) -> RequestHead {
        match parse_str(input) {
            Parsed::Head(head) => *head,
            other => panic!("{input:?}: {other:?}"),
        }
    }

    fn refused(input: &str) -> StatusCode {
        match parse_str(input) {
            Parsed::Refused(refusal) => refusal.status,
            other => panic!("{input:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn heads_become_http_parts() {
        let h = head("POST /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Custom: v1\r\nx-custom: v2\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(h.parts.method, Method::POST);
        assert_eq!(h.parts.uri, "/a?b=1");
        assert_eq!(h.parts.version, Version::HTTP_11);
        let values: Vec<_> = h.parts.headers.get_all("x-custom").iter().collect();
        assert_eq!(values, ["v1", "v2"]);
        assert_eq!(h.body, BodyLength::Length(5));
        assert!(h.keep_alive && !h.expect_continue);
    }

    #[test]
    fn the_body_stays_in_the_buffer() {
        let mut buf = BytesMut::from("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next");
        assert!(matches!(parse(&mut buf, 100, 1024), Parsed::Head(_)));
        assert_eq!(&buf[..], b"GET /next");
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        assert!(!head("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(
            head("PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
                .expect_continue
        );
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for (input, status) in [
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            // Found by the framing table: chunked twice is malformed (400),
            // not a coding we lack (501).
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            // Found by the http1_request fuzz target: a field naming no
            // coding framed no body here, and chunked elsewhere.
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ,\r\nContent-Length: 4\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n", 417),
            ("GET / HTTP/2.0\r\n\r\n", 505),
            ("GET / HTTP/3\r\nHost: x\r\n\r\n", 505),
            // Found by the framing table: only a version that is not ours
            // is a 505; a malformed request line is a 400.
            ("GET / http/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET / HTPP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET /\0 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400),
        ] {
            assert_eq!(refused(input).as_u16(), status, "{input:?}");
        }
        let same =
            head("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(same.body, BodyLength::Length(2));
    }

    #[test]
    fn a_version_refusal_is_the_same_however_the_head_arrives() {
        for input in [
            "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            "GET / http/1.1\r\nHost: x\r\n\r\n",
            "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            let whole = refused(input);
            for end in 1..input.len() {
                match parse_str(&input[..end]) {
                    Parsed::Partial => {}
                    Parsed::Refused(r) => assert_eq!(r.status, whole, "{input:?} cut at {end}"),
                    other => panic!("{input:?} cut at {end}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_later_http1_minor_version_is_served_as_http_1_1_however_the_head_arrives() {
        for input in [
            "GET / HTTP/1.2\r\nHost: x\r\n\r\n",
            "\r\nGET / HTTP/1.9\r\nHost: x\r\n\r\n",
        ] {
            assert_eq!(head(input).parts.version, Version::HTTP_11);
            for end in 1..input.len() {
                assert!(
                    matches!(parse_str(&input[..end]), Parsed::Partial),
                    "{input:?} cut at {end}"
                );
            }
        }
        assert_eq!(refused("GET / HTTP/1.23\r\nHost: x\r\n\r\n").as_u16(), 505);
    }

    #[test]
    fn limits_are_431() {
        let many: String = (0..5).map(|i| format!("x-{i}: v\r\n")).collect();
        let mut buf = BytesMut::from(format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_str());
        assert!(matches!(parse(&mut buf, 3, 1024), Parsed::Refused(r) if r.status == 431));
        let mut buf = BytesMut::from("GET / HTTP/1.1\r\nHost: x\r\nx-long: ");
        buf.extend_from_slice(&[b'a'; 200]);
        assert!(matches!(parse(&mut buf, 100, 100), Parsed::Refused(r) if r.status == 431));
    }

    #[test]
    fn upgrades_and_connect_are_handed_over() {
        for input in [
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
        ] {
            assert!(matches!(parse_str(input), Parsed::HandOver), "{input}");
        }
        // Found by the framing table: what is refused on this path is
        // refused before a hand-over too.
        for (input, status) in [
            ("POST / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", 400),
            ("CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        ] {
            assert_eq!(refused(input).as_u16(), status, "{input:?}");
        }
        // An Upgrade header without the Connection token is no upgrade.
        head("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n");
    }

    #[test]
    fn fragments_and_absolute_targets() {
        assert_eq!(
            head("GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n").parts.uri,
            "/a"
        );
        let abs = head("GET http://site.example/p HTTP/1.1\r\nHost: other\r\n\r\n");
        assert_eq!(abs.parts.uri.authority().unwrap(), "site.example");
    }
}

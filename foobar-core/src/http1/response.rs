//! Response heads: written by the server, parsed by an HTTP/1 client (the
//! load balancer's upstream side).

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Response, StatusCode, Version};

use super::request::MAX_HEADERS;
use super::{content_length, list_items, offsets, push_decimal, BodyLength, Field};

/// Why a response head from a peer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadResponse {
    /// Not a valid HTTP/1 response head (status line, field syntax,
    /// obsolete line folding, a status below 100).
    #[error("malformed response head")]
    Malformed,
    /// A head longer than allowed, or with too many fields.
    #[error("response head too large")]
    TooLarge,
    /// `Content-Length` values that disagree or are not numbers.
    #[error("conflicting or invalid Content-Length")]
    Length,
    /// A transfer coding in an HTTP/1.0 response: its framing is faulty
    /// (RFC 9112 section 6.1).
    #[error("transfer coding in an HTTP/1.0 response")]
    CodingInHttp10,
}

/// A response head parsed by a client.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status, version and header fields. `Content-Length` is gone when a
    /// transfer coding framed the message, and a repeated one is one.
    pub parts: http::response::Parts,
    /// How the body is delimited (none for `HEAD`, `1xx`, `204`, `304`).
    pub body: BodyLength,
    /// The peer keeps the connection open after this response.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// Whether this is an interim (`1xx`) response.
    pub fn is_informational(&self) -> bool {
        self.parts.status.is_informational()
    }
}

/// Parses a response head from the front of `buf`, taking it off when
/// complete (`None`: more bytes are needed). `head_request` says whether
/// it answers a `HEAD`, which has no body whatever the head says.
///
/// # Errors
/// A [`BadResponse`] naming what is wrong; the connection cannot be used
/// after that.
pub fn parse_response(
    buf: &mut BytesMut,
    head_request: bool,
    max_head: usize,
) -> Result<Option<ResponseHead>, BadResponse> {
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            return Err(BadResponse::TooLarge)
        }
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            return Err(BadResponse::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(BadResponse::Malformed),
    };
    let (Some(version), Some(code)) = (resp.version, resp.code) else {
        return Err(BadResponse::Malformed);
    };
    let status = StatusCode::from_u16(code).map_err(|_| BadResponse::Malformed)?;
    let version = if version == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };

    // One pass for the framing and where each field is; the map is built
    // from the head's own bytes once it is split off.
    let (mut length, mut codings, mut chunked_last) = (None, false, false);
    let (mut close, mut keep_alive) = (false, false);
    let mut length_field = None;
    let mut length_repeated = false;
    let head: &[u8] = &buf[..head_len];
    let mut fields = Vec::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = content_length(h.value).ok_or(BadResponse::Length)?;
            if length.is_some_and(|l| l != n) {
                return Err(BadResponse::Length);
            }
            length_repeated |= length.is_some() || h.value.contains(&b',');
            length = Some(n);
            length_field = Some(offsets(head, h.value));
            continue;
        }
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            codings = true;
            chunked_last = list_items(h.value)
                .last()
                .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in list_items(h.value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        fields.push(Field {
            name: offsets(head, name),
            value: offsets(head, h.value),
        });
    }
    if version == Version::HTTP_10 && codings {
        return Err(BadResponse::CodingInHttp10);
    }
    let bodiless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let body = if bodiless {
        BodyLength::None
    } else if codings {
        // The coding frames the message; a length beside it goes
        // (RFC 9112 section 6.3).
        if chunked_last {
            BodyLength::Chunked
        } else {
            BodyLength::UntilClose
        }
    } else {
        match length {
            Some(0) => BodyLength::None,
            Some(n) => BodyLength::Length(n),
            None => BodyLength::UntilClose,
        }
    };
    let keep_alive =
        !close && (version == Version::HTTP_11 || keep_alive) && body != BodyLength::UntilClose;

    let head = buf.split_to(head_len).freeze();
    // Room for the fields a proxy adds (`Via`, a request id) without growing.
    let mut headers = HeaderMap::with_capacity(fields.len() + 4);
    for field in &fields {
        let name = HeaderName::from_bytes(&head[field.name.0..field.name.1])
            .map_err(|_| BadResponse::Malformed)?;
        let value = HeaderValue::from_maybe_shared(head.slice(field.value.0..field.value.1))
            .map_err(|_| BadResponse::Malformed)?;
        headers.append(name, value);
    }
    // One `Content-Length` with one number, unless a coding framed it.
    match (codings, length, length_field) {
        (false, Some(n), _) if length_repeated => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        (false, Some(_), Some((start, end))) => {
            let value = HeaderValue::from_maybe_shared(head.slice(start..end))
                .map_err(|_| BadResponse::Malformed)?;
            headers.insert(CONTENT_LENGTH, value);
        }
        _ => {}
    }
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(ResponseHead {
        parts,
        body,
        keep_alive,
    }))
}

/// How the server sends a response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sending {
    /// No body (`HEAD`, `1xx`, `204`, `304`).
    None,
    /// Exactly this many bytes.
    Length(u64),
    Chunked,
    /// Until the connection closes (HTTP/1.0 clients, unknown length).
    UntilClose,
}

/// Writes a response head: the status line, the fields as given except
/// the framing ones, which the server sets from `sending`, a `Date` when
/// there is none, and `Connection` as `close` decides.
pub(crate) fn encode_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    sending: Sending,
    close: bool,
    keep_alive_10: bool,
    date: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    let mut has_date = false;
    for (name, value) in &parts.headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        if name == http::header::CONNECTION {
            // Ours says what happens to the connection.
            continue;
        }
        has_date |= name == http::header::DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match sending {
        Sending::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Sending::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Sending::None => {
            // A HEAD or 304 answer keeps the length the service gave.
            if let Some(length) = parts.headers.get(CONTENT_LENGTH) {
                if parts.status != StatusCode::NO_CONTENT && !parts.status.is_informational() {
                    out.extend_from_slice(b"content-length: ");
                    out.extend_from_slice(length.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        Sending::UntilClose => {}
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if keep_alive_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str, head: bool) -> Result<ResponseHead, BadResponse> {
        let mut buf = BytesMut::from(input);
        parse_response(&mut buf, head, 64 * 1024).map(|h| h.expect("complete"))
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = parse(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(h.body, BodyLength::Chunked);
        assert!(!h.parts.headers.contains_key(CONTENT_LENGTH));
        let h = parse(
            "HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\ncontent-length: 2\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(h.body, BodyLength::Length(2));
        assert_eq!(h.parts.headers.get_all(CONTENT_LENGTH).iter().count(), 1);
        assert_eq!(
            parse("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true)
                .unwrap()
                .body,
            BodyLength::None
        );
        let h = parse("HTTP/1.0 200 OK\r\n\r\n", false).unwrap();
        assert_eq!(h.body, BodyLength::UntilClose);
        assert!(!h.keep_alive);
        let h = parse(
            "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(h.body, BodyLength::None);
        assert!(!h.keep_alive);
        assert!(
            parse("HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n", false)
                .unwrap()
                .is_informational()
        );
    }

    #[test]
    fn malformed_heads_are_refused() {
        for (input, error) in [
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n",
                BadResponse::Length,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\n",
                BadResponse::Length,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
                BadResponse::Length,
            ),
            (
                "HTTP/1.1 200 OK\r\nx: a\r\n b\r\n\r\n",
                BadResponse::Malformed,
            ),
            ("HTTP/1.1 200 OK\r\nx: a\0b\r\n\r\n", BadResponse::Malformed),
            ("HTTP/1.1 099 Odd\r\n\r\n", BadResponse::Malformed),
            (
                "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                BadResponse::CodingInHttp10,
            ),
            ("not http\r\n\r\n", BadResponse::Malformed),
        ] {
            assert_eq!(parse(input, false).unwrap_err(), error, "{input:?}");
        }
    }

    #[test]
    fn heads_are_written_with_our_framing() {
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.headers.insert("x-a", HeaderValue::from_static("1"));
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from_static("99"));
        parts
            .headers
            .insert(http::header::CONNECTION, HeaderValue::from_static("x-a"));
        let mut out = Vec::new();
        encode_head(&mut out, &parts, Sending::Length(12), true, false, b"then");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 12\r\ndate: then\r\nconnection: close\r\n\r\n"
        );
    }
}

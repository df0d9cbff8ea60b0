//! HTTP/1 request and response heads.
//!
//! A head must be decided by its own bytes: where a message ends is the
//! whole of request smuggling, so the answer may not depend on how the
//! bytes were split into reads (a prefix of a head is never a head of its
//! own) nor on what follows the head (the next request on the connection).

use bytes::BytesMut;
use foobar_core::fuzzing::{parse_request, RequestParse, MAX_HEADERS};
use foobar_core::http1::{parse_response, BodyLength};
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{StatusCode, Version};

/// The head size limit the checks run with (the server's default order of
/// magnitude; small enough that the fuzzer reaches it).
const MAX_HEAD: usize = 4096;

/// An outcome that can be compared: how many bytes a head took, and
/// everything parsed from it.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Partial,
    Head { consumed: usize, summary: String },
    Refused(String),
    HandOver,
}

impl Outcome {
    fn consumed(&self) -> Option<usize> {
        match self {
            Self::Head { consumed, .. } => Some(*consumed),
            _ => None,
        }
    }
}

/// The lengths of prefixes to re-parse: every one of a short input, a
/// handful of a long one (the last byte short, half, a third, and
/// just before the end of the first empty line).
fn prefixes(data: &[u8]) -> Vec<usize> {
    if data.len() <= 48 {
        return (0..data.len()).collect();
    }
    let mut out = vec![0, 1, data.len() / 3, data.len() / 2, data.len() - 1];
    if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
        out.extend([at, at + 1, at + 2, at + 3]);
    }
    if let Some(at) = data.windows(2).position(|w| w == b"\n\n") {
        out.extend([at, at + 1]);
    }
    out
}

/// The properties of a head parser whose outcome is `parse(bytes)`.
fn check_framing(data: &[u8], parse: impl Fn(&[u8]) -> Outcome) {
    let whole = parse(data);
    if let Some(consumed) = whole.consumed() {
        assert!(
            consumed > 0 && consumed <= data.len(),
            "consumed {consumed} of {}",
            data.len()
        );
        // The bytes after the head change nothing.
        assert_eq!(
            parse(&data[..consumed]),
            whole,
            "the head depends on the bytes after it"
        );
    }
    for len in prefixes(data) {
        let part = parse(&data[..len]);
        if let Some(consumed) = part.consumed() {
            // A head found in fewer bytes is the head of the whole input.
            assert_eq!(
                part, whole,
                "a head of {len} bytes differs from the whole input's"
            );
            assert!(consumed <= len);
        }
        if let Some(consumed) = whole.consumed() {
            if len < consumed {
                // Too few bytes of a valid head: wait for more (a refusal
                // could only come from the size limit, above the head).
                assert_eq!(part, Outcome::Partial, "a prefix of {len} bytes of a head");
            }
        }
    }
}

fn summary_request(parts: &http::request::Parts, rest: &str) -> String {
    format!(
        "{} {} {:?} {:?} {rest}",
        parts.method, parts.uri, parts.version, parts.headers
    )
}

fn run_request(data: &[u8]) -> Outcome {
    let mut buf = BytesMut::from(data);
    match parse_request(&mut buf, MAX_HEADERS, MAX_HEAD) {
        RequestParse::Partial => {
            assert_eq!(buf.len(), data.len(), "a partial head consumed bytes");
            Outcome::Partial
        }
        RequestParse::Head {
            parts,
            body,
            keep_alive,
            expect_continue,
        } => {
            let consumed = data.len() - buf.len();
            check_request_fields(&parts, body);
            Outcome::Head {
                consumed,
                summary: summary_request(
                    &parts,
                    &format!("{body:?} keep_alive={keep_alive} expect_continue={expect_continue}"),
                ),
            }
        }
        RequestParse::Refused { status, reason } => {
            // 501 for a transfer coding the server does not implement,
            // 505 for a version (RFC 9112 sections 6.1 and 2.3); never a
            // status that blames a backend.
            assert!(
                status.is_client_error()
                    || status == StatusCode::NOT_IMPLEMENTED
                    || status == StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                "a client's head refused with {status}"
            );
            Outcome::Refused(format!("{status} {reason}"))
        }
        RequestParse::HandOver => {
            assert_eq!(buf.len(), data.len(), "a handed-over head consumed bytes");
            Outcome::HandOver
        }
        other => panic!("unknown outcome {other:?}"),
    }
}

/// What the server hands on must frame the body one way only.
fn check_request_fields(parts: &http::request::Parts, body: BodyLength) {
    let headers = &parts.headers;
    if parts.version == Version::HTTP_11 {
        assert_eq!(
            headers.get_all(HOST).iter().count(),
            1,
            "HTTP/1.1 without exactly one Host"
        );
    }
    match body {
        BodyLength::Chunked => assert!(
            !headers.contains_key(CONTENT_LENGTH),
            "a chunked request keeps Content-Length"
        ),
        BodyLength::Length(n) => {
            assert!(
                !headers.contains_key(TRANSFER_ENCODING),
                "a sized request keeps Transfer-Encoding"
            );
            for value in headers.get_all(CONTENT_LENGTH) {
                let text = value.to_str().expect("an accepted Content-Length is ASCII");
                for item in text.split(',') {
                    assert_eq!(
                        item.trim().parse::<u64>().ok(),
                        Some(n),
                        "Content-Length {text:?} framed as {n}"
                    );
                }
            }
        }
        BodyLength::None => assert!(
            !headers.contains_key(TRANSFER_ENCODING),
            "a request without a body keeps Transfer-Encoding"
        ),
        _ => panic!("a request framed as {body:?}"),
    }
}

pub(crate) fn request(data: &[u8]) {
    check_framing(data, run_request);
}

fn run_response(data: &[u8], head_request: bool) -> Outcome {
    let mut buf = BytesMut::from(data);
    match parse_response(&mut buf, head_request, MAX_HEAD) {
        Ok(None) => {
            assert_eq!(buf.len(), data.len(), "a partial head consumed bytes");
            Outcome::Partial
        }
        Ok(Some(head)) => {
            let consumed = data.len() - buf.len();
            let parts = &head.parts;
            let no_body = head_request
                || parts.status.is_informational()
                || parts.status == StatusCode::NO_CONTENT
                || parts.status == StatusCode::NOT_MODIFIED;
            if no_body {
                assert_eq!(
                    head.body,
                    BodyLength::None,
                    "{} framed as {:?}",
                    parts.status,
                    head.body
                );
            }
            if head.body == BodyLength::Chunked {
                assert!(
                    !parts.headers.contains_key(CONTENT_LENGTH),
                    "a chunked response keeps Content-Length"
                );
            }
            Outcome::Head {
                consumed,
                summary: format!(
                    "{} {:?} {:?} {:?} keep_alive={}",
                    parts.status, parts.version, parts.headers, head.body, head.keep_alive
                ),
            }
        }
        Err(error) => Outcome::Refused(error.to_string()),
    }
}

pub(crate) fn response(data: &[u8]) {
    let Some((&flags, message)) = data.split_first() else {
        return;
    };
    let head_request = flags & 1 == 1;
    check_framing(message, |bytes| run_response(bytes, head_request));
}

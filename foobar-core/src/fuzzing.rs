//! The HTTP/1 request-head parser, reachable from outside the crate for
//! fuzz targets and their regression tests (feature `fuzzing`).
//!
//! The server parses request heads with a crate-private function; this
//! module hands its result on unchanged, so that a fuzz target checks the
//! code that serves requests, not a copy of it. It is no stable API: an
//! application has no use for it.

use bytes::BytesMut;
use http::StatusCode;

use crate::http1::request::{self, Parsed};
use crate::http1::BodyLength;

/// The most header fields the server's request parser makes room for.
pub const MAX_HEADERS: usize = request::MAX_HEADERS;

/// What the server's parser made of the bytes read so far.
#[derive(Debug)]
#[non_exhaustive]
pub enum RequestParse {
    /// More bytes are needed.
    Partial,
    /// A complete head, taken off the front of the buffer.
    Head {
        /// Method, target, version and header fields.
        parts: Box<http::request::Parts>,
        /// How the body is delimited.
        body: BodyLength,
        /// The connection may carry another request after this one.
        keep_alive: bool,
        /// The client waits for `100 Continue`.
        expect_continue: bool,
    },
    /// A request the server refuses (and closes the connection after).
    Refused {
        /// The status it answers.
        status: StatusCode,
        /// Why, as the server logs it.
        reason: &'static str,
    },
    /// A protocol switch or tunnel, left to hyper; nothing consumed.
    HandOver,
}

/// Parses a request head from the front of `buf` exactly as the server
/// does, with at most `max_headers` fields and `max_head` bytes.
pub fn parse_request(buf: &mut BytesMut, max_headers: usize, max_head: usize) -> RequestParse {
    match request::parse(buf, max_headers, max_head) {
        Parsed::Partial => RequestParse::Partial,
        Parsed::Head(head) => RequestParse::Head {
            parts: Box::new(head.parts),
            body: head.body,
            keep_alive: head.keep_alive,
            expect_continue: head.expect_continue,
        },
        Parsed::Refused(refusal) => RequestParse::Refused {
            status: refusal.status,
            reason: refusal.reason,
        },
        Parsed::HandOver => RequestParse::HandOver,
    }
}

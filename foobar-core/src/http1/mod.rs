//! foobar's HTTP/1.1 codec: the server's HTTP/1 path, and the pieces an
//! HTTP/1 client needs (response heads, chunked bodies) that foobar-lb's
//! upstream side uses.
//!
//! The server parses each request head in place (httparse), builds the
//! `http::Request` the application's tower stack receives, drives that
//! stack's future in the connection's own task, reads the request body
//! only as the service asks for it, and writes the response head and body
//! with one write each where it can. Requests that switch protocols
//! (`Upgrade`, `CONNECT`) are served by hyper, whose upgrade machinery
//! applications use; HTTP/2 always is.
//!
//! Framing is strict where parsers are known to disagree (RFC 9112
//! sections 6 and 7): a request with both `Content-Length` and
//! `Transfer-Encoding`, conflicting lengths, a coding other than `chunked`,
//! a missing or repeated `Host` in HTTP/1.1, or chunk extensions and
//! trailer fields outside the grammar is refused and its connection closed.

mod chunked;
mod date;
mod deadline;
pub(crate) mod request;
mod response;
pub(crate) mod server;

pub use self::chunked::{encode_chunk, encode_end, ChunkedDecoder, ChunkedError, Decoded};
pub(crate) use self::date::http_date;
pub use self::deadline::Deadline;
pub(crate) use self::response::{encode_head, Sending};
pub use self::response::{parse_response, BadResponse, ResponseHead};

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyLength {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// Where a field's name and value are in a head.
struct Field {
    name: (usize, usize),
    value: (usize, usize),
}

/// The range `part` takes in `head` (a subslice of it).
fn offsets(head: &[u8], part: &[u8]) -> (usize, usize) {
    let start = part.as_ptr() as usize - head.as_ptr() as usize;
    (start, start + part.len())
}

/// The items of a comma-separated field value, trimmed, empty ones left
/// out.
pub fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// A `Content-Length` value: one number of digits only, or a list of the
/// same number (RFC 9110 section 8.6 lets a recipient take `2, 2` as `2`).
pub fn content_length(value: &[u8]) -> Option<u64> {
    let mut items = value.split(|&b| b == b',').map(digits);
    let first = items.next()??;
    items.all(|n| n == Some(first)).then_some(first)
}

fn digits(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_decimals() {
        assert_eq!(content_length(b"42"), Some(42));
        assert_eq!(content_length(b" 7 , 7"), Some(7));
        for bad in [
            &b""[..],
            b"+1",
            b"-1",
            b"1 2",
            b"1, 2",
            b"99999999999999999999",
            b"1,",
        ] {
            assert_eq!(
                content_length(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        for n in [0, 9, 10, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}

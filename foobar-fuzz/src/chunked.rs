//! The chunked transfer coding.
//!
//! The decoder must give the same data, trailers, end and error whatever
//! sizes the reads came in (a difference is a desync between the proxy and
//! whoever reads the body next), must always make progress, and must give
//! back exactly what the encoder wrote.

use bytes::BytesMut;
use foobar_core::http1::{encode_chunk, encode_end, ChunkedDecoder, ChunkedError, Decoded};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::Input;

/// Extension and trailer bytes allowed in the checks.
const LIMIT: usize = 256;

/// What decoding a whole input gave.
#[derive(Debug, PartialEq)]
struct Run {
    data: Vec<u8>,
    trailers: Option<HeaderMap>,
    ended: bool,
    error: Option<ChunkedError>,
    /// The bytes after the end of the body.
    left: Vec<u8>,
}

/// Decodes `input`, handed to the decoder in pieces of `step` bytes.
fn decode(input: &[u8], step: usize) -> Run {
    let mut decoder = ChunkedDecoder::new(LIMIT);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut run = Run {
        data: Vec::new(),
        trailers: None,
        ended: false,
        error: None,
        left: Vec::new(),
    };
    // Each call either takes a byte, gives data or ends: a bound on the
    // calls catches a decoder that spins.
    let mut calls = 0usize;
    loop {
        calls += 1;
        assert!(
            calls <= 4 * input.len() + 8,
            "the decoder makes no progress"
        );
        match decoder.decode(&mut buf) {
            Ok(Some(Decoded::Data(bytes))) => {
                assert!(!bytes.is_empty(), "an empty data piece");
                run.data.extend_from_slice(&bytes);
            }
            Ok(Some(Decoded::End(trailers))) => {
                assert!(decoder.is_done());
                run.ended = true;
                run.trailers = trailers;
                break;
            }
            Ok(None) if fed < input.len() => {
                let next = (fed + step).min(input.len());
                buf.extend_from_slice(&input[fed..next]);
                fed = next;
            }
            Ok(None) => break,
            Err(error) => {
                run.error = Some(error);
                return run;
            }
        }
    }
    run.left = buf.to_vec();
    run.left.extend_from_slice(&input[fed..]);
    run
}

/// Trailer fields from the input.
fn trailers(input: &mut Input<'_>) -> Option<HeaderMap> {
    let count = input.below(4);
    if count == 0 {
        return None;
    }
    let mut map = HeaderMap::new();
    for i in 0..count {
        let name = HeaderName::from_bytes(format!("x-t{i}").as_bytes()).ok()?;
        let len = usize::from(input.below(16));
        // Visible characters only: what a valid field value holds.
        let value: Vec<u8> = input.take(len).iter().map(|b| b'!' + b % 94).collect();
        map.append(name, HeaderValue::from_bytes(&value).ok()?);
    }
    Some(map)
}

pub(crate) fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let step = usize::from(input.below(16)) + 1;
    if input.flag() {
        // Chunks built from the input, encoded, then decoded.
        let mut body = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..input.below(8) {
            let len = usize::from(input.byte());
            let piece = input.take(len);
            encode_chunk(&mut body, piece);
            expected.extend_from_slice(piece);
        }
        let trailers = trailers(&mut input);
        encode_end(&mut body, trailers.as_ref());
        let after = input.rest();
        body.extend_from_slice(after);
        for step in [step, 1, body.len().max(1)] {
            let run = decode(&body, step);
            assert_eq!(run.error, None, "an encoded body refused");
            assert!(run.ended, "an encoded body did not end");
            assert_eq!(run.data, expected, "the data changed on the way");
            assert_eq!(run.trailers, trailers, "the trailers changed on the way");
            assert_eq!(run.left, after, "the bytes after the body changed");
        }
    } else {
        let raw = input.rest();
        let whole = decode(raw, raw.len().max(1));
        for step in [1, step] {
            assert_eq!(
                decode(raw, step),
                whole,
                "read in pieces of {step}, the body decodes otherwise"
            );
        }
    }
}

//! The chunked transfer coding (RFC 9112 section 7.1), decoded strictly:
//! chunk extensions and trailer fields are checked against the whole
//! grammar before anything is handed on, so no byte that another parser
//! could read differently (a bare LF, a colon-less trailer, a folded line)
//! ever passes.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Why a chunked body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkedError {
    /// A chunk size that is not hexadecimal or does not fit in 64 bits.
    #[error("invalid chunk size")]
    Size,
    /// A byte where the grammar allows none (bare LF, junk after the size,
    /// a malformed extension or trailer field).
    #[error("invalid chunk framing")]
    Framing,
    /// Chunk extensions and trailers longer than allowed.
    #[error("chunk metadata too long")]
    TooLong,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size; whether one has been seen.
    Size {
        seen: bool,
    },
    /// Blanks after the size or an extension value: `;` or CR next.
    SizeWs,
    /// Blanks, then an extension's name.
    ExtNameStart,
    ExtName,
    /// Blanks after an extension name: `=`, `;` or CR next.
    ExtAfterName,
    /// Blanks, then an extension's value.
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    /// The character after a backslash in a quoted value.
    ExtQuotedEscape,
    /// After the size line's CR.
    SizeLf,
    /// Chunk data still to come.
    Data,
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// At the start of a trailer field (or of the final empty line).
    TrailerStart,
    TrailerName,
    TrailerValue,
    /// The LF of a trailer field.
    TrailerLf,
    /// The LF of the final empty line.
    EndLf,
    /// The body is complete.
    Done,
}

/// What [`ChunkedDecoder::decode`] found next.
#[derive(Debug)]
pub enum Decoded {
    /// Chunk data.
    Data(Bytes),
    /// The end of the body, with its trailer fields if it had any.
    End(Option<HeaderMap>),
}

/// Decodes one chunked body from the bytes read so far.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Data bytes left in the current chunk; the size being parsed in
    /// `Size`.
    remaining: u64,
    /// Bytes of extensions and trailers seen, against `limit`.
    metadata: usize,
    limit: usize,
    /// The trailer section, once it has started.
    trailers: Vec<u8>,
}

/// RFC 9110 `tchar`: the characters of a token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 9110 `qdtext`: what may stand unescaped in a quoted string.
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..)
}

/// RFC 9110 `field-vchar` and blanks: what a field value, or an escaped
/// character, may be.
fn is_field_byte(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..)
}

impl ChunkedDecoder {
    /// A decoder allowing `limit` bytes of extensions and trailers in all.
    pub fn new(limit: usize) -> Self {
        Self {
            state: State::Size { seen: false },
            remaining: 0,
            metadata: 0,
            limit,
            trailers: Vec::new(),
        }
    }

    /// Whether the final chunk and trailers have been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes the next piece of the body from the front of `buf`: data as
    /// soon as any is there, the end once the final CRLF is in. `None`
    /// means more bytes are needed (what was consumed is remembered). Bytes
    /// after the end stay in `buf`.
    ///
    /// # Errors
    /// A [`ChunkedError`] when the bytes break the grammar; the body and its
    /// connection cannot be used after that.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, ChunkedError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Data => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(self.remaining)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Some(Decoded::Data(buf.split_to(n).freeze())));
                }
                _ => {}
            }
            let Some(&byte) = buf.first() else {
                return Ok(None);
            };
            buf.advance(1);
            let next = self.step(byte)?;
            // The trailer fields, kept to be parsed at the end.
            if matches!(
                self.state,
                State::TrailerName | State::TrailerValue | State::TrailerLf
            ) || (self.state == State::TrailerStart && next == State::TrailerName)
            {
                self.trailers.push(byte);
            }
            self.state = next;
            if next == State::Done {
                return self.end().map(Some);
            }
        }
    }

    /// The trailer fields, once the body is done.
    fn end(&mut self) -> Result<Decoded, ChunkedError> {
        if self.trailers.is_empty() {
            return Ok(Decoded::End(None));
        }
        let block = std::mem::take(&mut self.trailers);
        let mut map = HeaderMap::new();
        // Every line was checked as `name ":" value CRLF` already.
        for line in block.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = HeaderName::from_bytes(&line[..colon]).map_err(|_| ChunkedError::Framing)?;
            let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii())
                .map_err(|_| ChunkedError::Framing)?;
            map.append(name, value);
        }
        Ok(Decoded::End(Some(map)))
    }

    /// The state after one byte outside chunk data.
    fn step(&mut self, byte: u8) -> Result<State, ChunkedError> {
        use State::{
            DataCr, DataLf, Done, EndLf, ExtAfterName, ExtName, ExtNameStart, ExtQuoted,
            ExtQuotedEscape, ExtToken, ExtValueStart, Size, SizeLf, SizeWs, TrailerLf, TrailerName,
            TrailerStart, TrailerValue,
        };
        let next = match (self.state, byte) {
            (Size { .. }, b) if b.is_ascii_hexdigit() => {
                if self.remaining > u64::MAX >> 4 {
                    return Err(ChunkedError::Size);
                }
                if self.remaining == 0 && b == b'0' {
                    // Leading zeros are valid but must not be endless.
                    self.count_metadata()?;
                }
                self.remaining = (self.remaining << 4) | u64::from(hex_value(b));
                Size { seen: true }
            }
            (Size { seen: false }, _) => return Err(ChunkedError::Size),
            (Size { .. } | SizeWs, b'\r') => SizeLf,
            (Size { .. } | SizeWs, b';') => ExtNameStart,
            (Size { .. } | SizeWs, b) if is_blank(b) => SizeWs,
            (Size { .. }, _) => return Err(ChunkedError::Size),
            (ExtNameStart, b) if is_blank(b) => ExtNameStart,
            (ExtNameStart | ExtName, b) if is_tchar(b) => ExtName,
            (ExtName | ExtAfterName, b'=') => ExtValueStart,
            (ExtName | ExtAfterName | ExtToken, b';') => ExtNameStart,
            (ExtName | ExtAfterName | ExtToken, b'\r') => SizeLf,
            (ExtName | ExtAfterName, b) if is_blank(b) => ExtAfterName,
            (ExtValueStart, b) if is_blank(b) => ExtValueStart,
            (ExtValueStart, b'"') => ExtQuoted,
            (ExtValueStart | ExtToken, b) if is_tchar(b) => ExtToken,
            (ExtToken, b) if is_blank(b) => SizeWs,
            (ExtQuoted, b'"') => SizeWs,
            (ExtQuoted, b'\\') => ExtQuotedEscape,
            (ExtQuoted, b) if is_qdtext(b) => ExtQuoted,
            (ExtQuotedEscape, b) if is_field_byte(b) => ExtQuoted,
            (SizeLf, b'\n') if self.remaining == 0 => TrailerStart,
            (SizeLf, b'\n') => State::Data,
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Size { seen: false },
            (TrailerStart, b'\r') => EndLf,
            (TrailerStart | TrailerName, b) if is_tchar(b) => TrailerName,
            (TrailerName, b':') => TrailerValue,
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, b) if is_field_byte(b) => TrailerValue,
            (TrailerLf, b'\n') => TrailerStart,
            (EndLf, b'\n') => Done,
            _ => return Err(ChunkedError::Framing),
        };
        if !matches!(
            next,
            Size { .. } | SizeLf | State::Data | DataCr | DataLf | EndLf | Done
        ) {
            self.count_metadata()?;
        }
        Ok(next)
    }

    fn count_metadata(&mut self) -> Result<(), ChunkedError> {
        self.metadata += 1;
        if self.metadata > self.limit {
            return Err(ChunkedError::TooLong);
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Appends `data` as one chunk (nothing if it is empty: an empty chunk
/// would end the body).
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut size = [0u8; 16];
    let mut at = size.len();
    let mut n = data.len();
    while n > 0 || at == size.len() {
        at -= 1;
        size[at] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
    }
    out.extend_from_slice(&size[at..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk, the trailer fields, and the final CRLF.
pub fn encode_end(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data, the trailers, whether it ended, and the bytes left after
    /// the end.
    type Run = (Vec<u8>, Option<HeaderMap>, bool, Vec<u8>);

    /// Feeds `input` in pieces of `step`.
    fn run(input: &[u8], step: usize) -> Result<Run, ChunkedError> {
        let mut decoder = ChunkedDecoder::new(64);
        let mut buf = BytesMut::new();
        let (mut data, mut trailers, mut ended) = (Vec::new(), None, false);
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            while !ended {
                match decoder.decode(&mut buf)? {
                    Some(Decoded::Data(bytes)) => data.extend_from_slice(&bytes),
                    Some(Decoded::End(t)) => {
                        trailers = t;
                        ended = true;
                    }
                    None => break,
                }
            }
        }
        Ok((data, trailers, ended, buf.to_vec()))
    }

    #[test]
    fn decodes_whatever_the_split() {
        let body = b"5\r\nhello\r\n1a;name=v\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-sum: 1\r\n\r\nGET / HTTP/1.1\r\n";
        for step in 1..=body.len() {
            let (data, trailers, ended, rest) = run(body, step).unwrap();
            assert_eq!(data, b"helloabcdefghijklmnopqrstuvwxyz", "step {step}");
            assert_eq!(trailers.unwrap()["x-sum"], "1", "step {step}");
            assert!(ended);
            assert_eq!(rest, b"GET / HTTP/1.1\r\n", "step {step}");
        }
    }

    #[test]
    fn valid_extensions_trailers_and_leading_zeros_pass() {
        for body in [
            &b"5 ;a=b ; c = \"q\\\"x\" \r\nhello\r\n0\r\n\r\n"[..],
            b"5\t\r\nhello\r\n0\r\nx-sum:\t1 \r\nx-b:\r\n\r\n",
            b"000000000000000000005\r\nhello\r\n0\r\n\r\n",
            b"0;last\r\n\r\n",
        ] {
            let (_, _, ended, rest) = run(body, 1).unwrap();
            assert!(
                ended && rest.is_empty(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn anything_outside_the_grammar_is_refused() {
        for body in [
            &b"5 junk\r\nhello\r\n0\r\n\r\n"[..],
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"open\r\nhello\r\n0\r\n\r\n",
            b"5;a b\r\nhello\r\n0\r\n\r\n",
            b"0\r\nGET /SMUGGLE HTTP/1.1\r\n\r\n",
            b"0\r\nno-colon\r\n\r\n",
            b"0\r\n: empty-name\r\n\r\n",
            b"0\r\nx: 1\r\n folded\r\n\r\n",
            b"0\r\nx: a\0b\r\n\r\n",
            b"0\r\nx: 1\nGET / HTTP/1.1\r\n\r\n",
            b"x\r\n",
            b"\r\n",
            b"11111111111111111\r\n",
            b"2\r\nabX\r\n",
            b"2\nab\r\n",
            b"5 \n",
        ] {
            assert!(
                run(body, 3).is_err(),
                "accepted {}",
                String::from_utf8_lossy(body)
            );
        }
        let zeros = [&[b'0'; 100][..], b"1\r\n"].concat();
        assert_eq!(run(&zeros, 7).unwrap_err(), ChunkedError::TooLong);
        let long = [b"1;".as_slice(), &[b'e'; 100], b"\r\n"].concat();
        assert_eq!(run(&long, 7).unwrap_err(), ChunkedError::TooLong);
    }

    #[test]
    fn encoding_round_trips() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"hello");
        encode_chunk(&mut out, &[b'x'; 300]);
        encode_chunk(&mut out, b"");
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", HeaderValue::from_static("7"));
        encode_end(&mut out, Some(&trailers));
        assert!(out.starts_with(b"5\r\nhello\r\n12c\r\n"));
        let (data, got, ended, rest) = run(&out, 5).unwrap();
        assert_eq!(data.len(), 305);
        assert_eq!(got.unwrap()["x-sum"], "7");
        assert!(ended && rest.is_empty());
    }
}

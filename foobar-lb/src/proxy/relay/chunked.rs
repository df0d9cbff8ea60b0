//! Finding the end of a chunked HTTP/1.1 body while its bytes are relayed
//! unchanged: the relay forwards chunk sizes, extensions and trailers as
//! they came and only needs to know where the message stops.

/// Why a chunked body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChunkedError {
    /// A chunk size that is not hexadecimal or does not fit in 64 bits.
    #[error("invalid chunk size")]
    Size,
    /// A line not ended by CRLF where the framing needs one.
    #[error("invalid chunk framing")]
    Framing,
    /// A chunk extension or trailer section longer than allowed.
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

/// Tracks chunked framing over the bytes of one body, checking the whole
/// grammar of RFC 9112 section 7.1 (chunk extensions, trailer fields):
/// bytes that pass are safe to relay as they came.
#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// Data bytes left in the current chunk; the size being parsed in
    /// `Size`.
    remaining: u64,
    /// Bytes of extensions and trailers seen, against `limit`.
    metadata: usize,
    limit: usize,
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

/// What may follow a backslash in a quoted string.
fn is_escapable(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..)
}

/// RFC 9110 `field-vchar`, and blanks: what a field value may hold.
fn is_field_value(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..)
}

impl ChunkedDecoder {
    /// A decoder allowing `limit` bytes of extensions and trailers in all.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            state: State::Size { seen: false },
            remaining: 0,
            metadata: 0,
            limit,
        }
    }

    /// Whether the final chunk and trailers have been seen.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes `input` up to the end of the body; returns how many bytes
    /// belong to the body (fewer than `input.len()` only once it is done).
    pub(crate) fn advance(&mut self, input: &[u8]) -> Result<usize, ChunkedError> {
        let mut at = 0;
        while at < input.len() {
            match self.state {
                State::Done => return Ok(at),
                State::Data => {
                    let n = usize::try_from(self.remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len() - at);
                    at += n;
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                _ => {}
            }
            let byte = input[at];
            at += 1;
            self.state = self.step(byte)?;
        }
        Ok(at)
    }

    /// The state after one byte outside chunk data.
    fn step(&mut self, byte: u8) -> Result<State, ChunkedError> {
        use State::*;
        let framing = Err(ChunkedError::Framing);
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
            (ExtQuotedEscape, b) if is_escapable(b) => ExtQuoted,
            (SizeLf, b'\n') if self.remaining == 0 => TrailerStart,
            (SizeLf, b'\n') => Data,
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Size { seen: false },
            (TrailerStart, b'\r') => EndLf,
            (TrailerStart | TrailerName, b) if is_tchar(b) => TrailerName,
            (TrailerName, b':') => TrailerValue,
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, b) if is_field_value(b) => TrailerValue,
            (TrailerLf, b'\n') => TrailerStart,
            (EndLf, b'\n') => Done,
            _ => return framing,
        };
        if !matches!(
            next,
            Size { .. } | SizeLf | Data | DataCr | DataLf | EndLf | Done
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], step: usize) -> Result<(bool, usize), ChunkedError> {
        let mut decoder = ChunkedDecoder::new(64);
        let mut consumed = 0;
        for piece in input.chunks(step) {
            consumed += decoder.advance(piece)?;
            if decoder.is_done() {
                break;
            }
        }
        Ok((decoder.is_done(), consumed))
    }

    #[test]
    fn finds_the_end_whatever_the_split() {
        let body = b"5\r\nhello\r\n1a;name=v\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-sum: 1\r\n\r\nGET / HTTP/1.1\r\n";
        let end = body.len() - b"GET / HTTP/1.1\r\n".len();
        for step in 1..=body.len() {
            assert_eq!(run(body, step), Ok((true, end)), "step {step}");
        }
    }

    #[test]
    fn an_unfinished_body_is_not_done() {
        assert_eq!(run(b"5\r\nhel", 3), Ok((false, 6)));
        assert_eq!(run(b"0\r\n", 3), Ok((false, 3)));
    }

    #[test]
    fn valid_extensions_trailers_and_leading_zeros_pass() {
        for body in [
            &b"5 ;a=b ; c = \"q\\\"x\" \r\nhello\r\n0\r\n\r\n"[..],
            b"5\t\r\nhello\r\n0\r\nx-sum:\t1 \r\nx-b:\r\n\r\n",
            b"000000000000000000005\r\nhello\r\n0\r\n\r\n",
            b"0;last\r\n\r\n",
        ] {
            assert_eq!(
                run(body, 1).map(|(done, n)| (done, n == body.len())),
                Ok((true, true)),
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
        ] {
            assert!(
                run(body, 3).is_err(),
                "accepted {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn bad_framing_is_refused() {
        assert_eq!(run(b"x\r\n", 1), Err(ChunkedError::Size));
        assert_eq!(run(b"\r\n", 1), Err(ChunkedError::Size));
        assert_eq!(run(b"11111111111111111\r\n", 4), Err(ChunkedError::Size));
        let zeros = [&[b'0'; 100][..], b"1\r\n"].concat();
        assert_eq!(run(&zeros, 7), Err(ChunkedError::TooLong));
        assert_eq!(run(b"2\r\nabX\r\n", 2), Err(ChunkedError::Framing));
        assert_eq!(run(b"2\nab\r\n", 2), Err(ChunkedError::Size));
        assert_eq!(run(b"0\r\nx\n", 2), Err(ChunkedError::Framing));
        assert_eq!(run(b"5 \n", 2), Err(ChunkedError::Framing));
        let long = [b"1;".as_slice(), &[b'e'; 100], b"\r\n"].concat();
        assert_eq!(run(&long, 7), Err(ChunkedError::TooLong));
    }
}

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
    /// Hex digits of a chunk size; `digits` seen so far.
    Size { digits: u8 },
    /// After the size: an extension or spaces up to CR.
    Extension,
    /// After the size line's CR.
    SizeLf,
    /// Chunk data still to come.
    Data,
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// The LF of a trailer line.
    TrailerLf,
    /// The LF of the final empty line.
    EndLf,
    /// The body is complete.
    Done,
}

/// Tracks chunked framing over the bytes of one body.
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

impl ChunkedDecoder {
    /// A decoder allowing `limit` bytes of extensions and trailers in all.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            state: State::Size { digits: 0 },
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
            self.state = match (self.state, byte) {
                (State::Size { digits }, b) if b.is_ascii_hexdigit() => {
                    // 16 hex digits fill 64 bits.
                    if digits == 16 {
                        return Err(ChunkedError::Size);
                    }
                    let value = u64::from(hex_value(b));
                    self.remaining = (self.remaining << 4) | value;
                    State::Size { digits: digits + 1 }
                }
                (State::Size { digits: 0 }, _) => return Err(ChunkedError::Size),
                (State::Size { .. }, b'\r') => State::SizeLf,
                (State::Size { .. }, b';' | b' ' | b'\t') => State::Extension,
                (State::Size { .. }, _) => return Err(ChunkedError::Size),
                (State::Extension, b'\r') => State::SizeLf,
                (State::Extension, b'\n') => return Err(ChunkedError::Framing),
                (State::Extension, _) => {
                    self.count_metadata()?;
                    State::Extension
                }
                (State::SizeLf, b'\n') if self.remaining == 0 => State::TrailerStart,
                (State::SizeLf, b'\n') => State::Data,
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => State::Size { digits: 0 },
                (State::TrailerStart, b'\r') => State::EndLf,
                (State::TrailerStart | State::Trailer, b'\n') => return Err(ChunkedError::Framing),
                (State::Trailer, b'\r') => State::TrailerLf,
                (State::TrailerStart | State::Trailer, _) => {
                    self.count_metadata()?;
                    State::Trailer
                }
                (State::TrailerLf, b'\n') => State::TrailerStart,
                (State::EndLf, b'\n') => State::Done,
                _ => return Err(ChunkedError::Framing),
            };
        }
        Ok(at)
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
    fn bad_framing_is_refused() {
        assert_eq!(run(b"x\r\n", 1), Err(ChunkedError::Size));
        assert_eq!(run(b"\r\n", 1), Err(ChunkedError::Size));
        assert_eq!(run(b"11111111111111111\r\n", 4), Err(ChunkedError::Size));
        assert_eq!(run(b"2\r\nabX\r\n", 2), Err(ChunkedError::Framing));
        assert_eq!(run(b"2\nab\r\n", 2), Err(ChunkedError::Size));
        assert_eq!(run(b"0\r\nx\n", 2), Err(ChunkedError::Framing));
        let long = [b"1;".as_slice(), &[b'e'; 100], b"\r\n"].concat();
        assert_eq!(run(&long, 7), Err(ChunkedError::TooLong));
    }
}

//! The `Transfer-Encoding: chunked` decoder (RFC 9112 section 7.1). It is
//! fed the body's bytes as they arrive, in any split, keeps its place
//! between calls, and writes the decoded data out; extensions and trailers
//! are read and discarded. Every line it reads is bounded, so a client
//! cannot make it hold more than the body limit and a few kilobytes.

use crate::server::head::Refusal;

/// Longest chunk-size line (size, extensions) or trailer line.
const MAX_LINE: usize = 4096;

/// Most bytes of trailer lines after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;

/// Where the decoder is in the chunked syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hexadecimal chunk size.
    Size,
    /// After the size: extensions up to the line's end.
    Extension,
    /// Expecting the LF of the size line.
    SizeLf,
    /// Inside a chunk's data: this many bytes left.
    Data(u64),
    /// Expecting the CR after a chunk's data.
    DataCr,
    /// Expecting the LF after a chunk's data.
    DataLf,
    /// At the start of a trailer line (or of the final blank line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// Expecting the LF of a trailer line.
    TrailerLf,
    /// Expecting the LF of the final blank line.
    EndLf,
    /// The body is complete.
    Done,
}

/// The state of one chunked body being decoded.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// The chunk size being read.
    size: u64,
    size_digits: usize,
    /// Bytes of the current line (size line or trailer), for its bound.
    line: usize,
    trailers: usize,
    /// Bytes of data decoded so far.
    decoded: u64,
    max_body: u64,
}

/// How far a call to [`ChunkedDecoder::decode`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The input was consumed and more is needed.
    NeedMore,
    /// The body ended after this many bytes of the input given.
    Done(usize),
}

impl ChunkedDecoder {
    /// A decoder for one body of at most `max_body` decoded bytes.
    pub fn new(max_body: usize) -> Self {
        Self {
            state: State::Size,
            size: 0,
            size_digits: 0,
            line: 0,
            trailers: 0,
            decoded: 0,
            max_body: max_body as u64,
        }
    }

    /// Decodes `input`, the next bytes of the body, appending the data to
    /// `out`. After `NeedMore`, call again with only the bytes that follow
    /// `input`; after `Done(n)`, the bytes from `n` on belong to the next
    /// request.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Progress, Refusal> {
        let mut at = 0;
        while at < input.len() {
            if let State::Data(left) = self.state {
                let take = left.min((input.len() - at) as u64) as usize;
                out.extend_from_slice(&input[at..at + take]);
                at += take;
                self.state = if left == take as u64 {
                    State::DataCr
                } else {
                    State::Data(left - take as u64)
                };
                continue;
            }
            self.step(input[at])?;
            at += 1;
            if self.state == State::Done {
                return Ok(Progress::Done(at));
            }
        }
        Ok(Progress::NeedMore)
    }

    /// Takes one byte of framing (anything but chunk data).
    fn step(&mut self, byte: u8) -> Result<(), Refusal> {
        self.state = match (self.state, byte) {
            (State::Size, _) if byte.is_ascii_hexdigit() => self.size_digit(byte)?,
            (State::Size, b';' | b' ' | b'\t') if self.size_digits > 0 => self.line_byte(State::Extension)?,
            (State::Size, b'\r') if self.size_digits > 0 => State::SizeLf,
            (State::Extension, b'\r') => State::SizeLf,
            (State::Extension, b'\n') => return Err(Refusal::MalformedChunkedBody),
            (State::Extension, _) => self.line_byte(State::Extension)?,
            (State::SizeLf, b'\n') => self.end_of_size_line(),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size,
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::Trailer, b'\r') => State::TrailerLf,
            (State::TrailerStart | State::Trailer, b'\n') => return Err(Refusal::MalformedChunkedBody),
            (State::TrailerStart | State::Trailer, _) => self.trailer_byte()?,
            (State::TrailerLf, b'\n') => self.next_trailer(),
            (State::EndLf, b'\n') => State::Done,
            _ => return Err(Refusal::MalformedChunkedBody),
        };
        Ok(())
    }

    fn size_digit(&mut self, byte: u8) -> Result<State, Refusal> {
        let digit = (byte as char).to_digit(16).map_or(0, u64::from);
        self.size_digits += 1;
        if self.size_digits > 16 {
            return Err(Refusal::MalformedChunkedBody);
        }
        self.size = self.size << 4 | digit;
        if self.decoded.saturating_add(self.size) > self.max_body {
            return Err(Refusal::BodyTooLarge);
        }
        self.line_byte(State::Size)
    }

    fn line_byte(&mut self, next: State) -> Result<State, Refusal> {
        self.line += 1;
        if self.line > MAX_LINE {
            return Err(Refusal::MalformedChunkedBody);
        }
        Ok(next)
    }

    fn end_of_size_line(&mut self) -> State {
        let size = std::mem::take(&mut self.size);
        self.size_digits = 0;
        self.line = 0;
        self.decoded += size;
        if size == 0 {
            State::TrailerStart
        } else {
            State::Data(size)
        }
    }

    fn trailer_byte(&mut self) -> Result<State, Refusal> {
        self.trailers += 1;
        if self.trailers > MAX_TRAILERS {
            return Err(Refusal::HeadTooLarge);
        }
        self.line_byte(State::Trailer)
    }

    fn next_trailer(&mut self) -> State {
        self.line = 0;
        State::TrailerStart
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Decodes `body` fed in the given pieces; the data, and where it ended
    /// (`usize::MAX` if it never did).
    fn decode_in_pieces(body: &[u8], cuts: &[usize], max: usize) -> Result<(Vec<u8>, usize), Refusal> {
        let mut decoder = ChunkedDecoder::new(max);
        let mut out = Vec::new();
        let mut start = 0;
        let mut bounds: Vec<usize> = cuts.iter().map(|cut| cut % (body.len() + 1)).collect();
        bounds.push(body.len());
        bounds.sort_unstable();
        for end in bounds {
            if end < start {
                continue;
            }
            if let Progress::Done(used) = decoder.decode(&body[start..end], &mut out)? {
                return Ok((out, start + used));
            }
            start = end;
        }
        Ok((out, usize::MAX))
    }

    fn decode(body: &str) -> Result<(Vec<u8>, usize), Refusal> {
        decode_in_pieces(body.as_bytes(), &[], 1 << 20)
    }

    #[test]
    fn chunks_extensions_and_trailers() {
        let body = "5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let (data, used) = decode(body).unwrap();
        assert_eq!(data, b"hello world");
        assert_eq!(&body[used..], "NEXT");
        assert_eq!(decode("A\r\n0123456789\r\n0\r\n\r\n").unwrap().0, b"0123456789");
    }

    #[test]
    fn an_unfinished_body_needs_more() {
        let mut decoder = ChunkedDecoder::new(100);
        let mut out = Vec::new();
        assert_eq!(decoder.decode(b"5\r\nhel", &mut out), Ok(Progress::NeedMore));
        assert_eq!(decoder.decode(b"lo\r\n0\r\n", &mut out), Ok(Progress::NeedMore));
        assert_eq!(decoder.decode(b"\r\n", &mut out), Ok(Progress::Done(2)));
        assert_eq!(out, b"hello");
    }

    #[test]
    fn broken_syntax_is_refused() {
        for bad in [
            "x\r\n",
            "\r\n",
            "5\nhello\r\n0\r\n\r\n",
            "5\r\nhelloX\r\n",
            "5\r\nhello\r\n0\r\n\n",
            "00000000000000001\r\n",
            "-1\r\n",
            "5 ;\n",
        ] {
            assert_eq!(decode(bad).err(), Some(Refusal::MalformedChunkedBody), "{bad:?}");
        }
        let long_extension = format!("1;{}\r\n", "e".repeat(MAX_LINE + 1));
        assert_eq!(decode(&long_extension).err(), Some(Refusal::MalformedChunkedBody));
    }

    #[test]
    fn the_limit_applies_to_the_decoded_size() {
        let body = "4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n";
        assert_eq!(decode_in_pieces(body.as_bytes(), &[], 8).unwrap().0, b"abcdefgh");
        assert_eq!(
            decode_in_pieces(body.as_bytes(), &[], 7).err(),
            Some(Refusal::BodyTooLarge)
        );
        let huge = "FFFFFFFFFFFF\r\n";
        assert_eq!(decode(huge).err(), Some(Refusal::BodyTooLarge));
    }

    /// Encodes `chunks` with optional extensions and trailers.
    fn encode(chunks: &[Vec<u8>], extension: bool, trailer: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in chunks.iter().filter(|chunk| !chunk.is_empty()) {
            out.extend_from_slice(format!("{:x}", chunk.len()).as_bytes());
            if extension {
                out.extend_from_slice(b";ext=1");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n");
        if trailer {
            out.extend_from_slice(b"X-Checksum: abc\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    proptest! {
        #[test]
        fn any_split_of_the_input_decodes_the_same(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8),
            cuts in prop::collection::vec(any::<usize>(), 0..12),
            extension in any::<bool>(),
            trailer in any::<bool>(),
        ) {
            let mut body = encode(&chunks, extension, trailer);
            let framed = body.len();
            body.extend_from_slice(b"GET /next");
            let (data, used) = decode_in_pieces(&body, &cuts, 1 << 20).unwrap();
            prop_assert_eq!(data, chunks.concat());
            prop_assert_eq!(used, framed);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_agree_across_splits(
            body in prop::collection::vec(any::<u8>(), 0..200),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            let whole = decode_in_pieces(&body, &[], 64);
            let split = decode_in_pieces(&body, &cuts, 64);
            prop_assert_eq!(whole, split);
        }
    }
}

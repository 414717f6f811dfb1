//! The framer: finds `##` + 4-digit length + data segment + 4-hex CRC + CRLF frames in a TCP byte stream.
//!
//! It survives garbage between frames (resync on the next `##`), frames split across reads, and segments longer
//! than the standard's 1024 bytes (accepted up to 9999 with a warning). Every error says whether the stream can go
//! on; a bad frame costs that frame, never the connection. The buffer never holds more than one maximal frame
//! plus one read, so a device cannot make us buffer without bound.

use super::crc::{self, CrcCheck};
use super::Warning;

/// The standard's maximum data-segment length.
pub const STANDARD_MAX_SEGMENT: usize = 1024;
/// The largest length the 4-digit field can state.
pub const MAX_SEGMENT: usize = 9999;
/// `##` + 4 digits.
const HEADER: usize = 6;
/// 4 CRC + CRLF.
const TRAILER: usize = 6;

/// One frame cut from the stream. The CRC is checked later, against the device's configured dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The data segment.
    pub segment: Vec<u8>,
    /// The 4 CRC characters as received.
    pub crc_field: [u8; 4],
    /// Deviations noticed while framing.
    pub warnings: Vec<Warning>,
}

impl Frame {
    /// Checks the CRC. `modbus_allowed`: the device is configured for the MODBUS dialect.
    ///
    /// # Errors
    /// [`FrameError::Crc`] when the CRC does not match what the device may send.
    pub fn check_crc(&mut self, modbus_allowed: bool) -> Result<(), FrameError> {
        match crc::check(&self.segment, &self.crc_field) {
            CrcCheck::Ok { lowercase } => {
                if lowercase {
                    self.warnings.push(Warning::LowercaseCrc);
                }
                Ok(())
            }
            CrcCheck::Modbus if modbus_allowed => {
                self.warnings.push(Warning::ModbusCrc);
                Ok(())
            }
            CrcCheck::Modbus => Err(FrameError::Crc {
                reason: format!(
                    "CRC {} is CRC-16/MODBUS printed low byte first, not the HJ 212 CRC {}; configure this device's CRC dialect as modbus_low_byte_first to accept it",
                    String::from_utf8_lossy(&self.crc_field),
                    crc::field(&self.segment)
                ),
            }),
            CrcCheck::Mismatch { got, expected } => Err(FrameError::Crc {
                reason: format!("CRC {got:04X} does not match the data segment (HJ 212 CRC {expected:04X})"),
            }),
            CrcCheck::NotHex => Err(FrameError::Crc {
                reason: format!("CRC field {:?} is not 4 hex digits", String::from_utf8_lossy(&self.crc_field)),
            }),
        }
    }
}

/// Why a frame was refused. Every variant leaves the stream usable: the framer has already skipped past it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Bytes before a `##` that belong to no frame.
    #[error("{bytes} bytes of garbage before the next frame skipped")]
    Garbage {
        /// How many.
        bytes: usize,
    },
    /// The length field is not 4 decimal digits (e.g. `##81…` from software that forgot the zero padding).
    #[error("length field {field:?} is not 4 decimal digits")]
    BadLength {
        /// What was there.
        field: String,
    },
    /// The declared length does not end at a CRC + CRLF.
    #[error("declared length {declared} does not match the frame: {detail}")]
    LengthMismatch {
        /// Declared length.
        declared: usize,
        /// What was found.
        detail: String,
    },
    /// Input ended inside a frame that has no CRC and CRLF where its length says.
    #[error("incomplete frame: input ended after {bytes} bytes, without the CRC and CRLF the length field promises")]
    Truncated {
        /// Bytes of the partial frame.
        bytes: usize,
    },
    /// The CRC does not match.
    #[error("{reason}")]
    Crc {
        /// Details.
        reason: String,
    },
}

/// Streaming framer. Linear in its input: consumed bytes are skipped with a cursor (compacted at the next push), and
/// no search looks past the frame at hand or repeats bytes it has already passed, so `##ab` repeated costs a
/// constant per bad frame, not a rescan of everything buffered.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
    /// While a frame waits for its declared length: how far past its header `##` has already been looked for.
    searched: usize,
    /// Bytes looked at by searches so far: the framer's work, which must stay proportional to its input.
    examined: u64,
}

impl Framer {
    /// A framer with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Bytes examined by searches since the framer was made (for tests and benchmarks of its cost).
    pub fn examined(&self) -> u64 {
        self.examined
    }

    /// Where `needle` first occurs in `data()[from..to]`, relative to `data()`; counts the bytes looked at.
    fn find(&mut self, from: usize, to: usize, needle: &[u8]) -> Option<usize> {
        let hay = &self.buf[self.start + from..self.start + to];
        let at = hay.windows(needle.len()).position(|w| w == needle);
        self.examined += at.map_or(hay.len(), |i| i + needle.len()) as u64;
        at.map(|i| i + from)
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        self.searched = 0;
    }

    /// The next frame or error, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        // Resync on "##".
        let len = self.data().len();
        match self.find(0, len, b"##") {
            Some(0) => {}
            Some(n) => {
                self.consume(n);
                return Some(Err(FrameError::Garbage { bytes: n }));
            }
            None => {
                // Keep a trailing '#' that may start the next header.
                let keep = usize::from(self.data().last() == Some(&b'#'));
                let n = self.data().len() - keep;
                if n > 0 {
                    self.consume(n);
                    return Some(Err(FrameError::Garbage { bytes: n }));
                }
                return None;
            }
        }
        if len < HEADER {
            return None;
        }
        if self.data()[2] == b'#' {
            // "###…": the frame starts one byte later.
            self.consume(1);
            return Some(Err(FrameError::Garbage { bytes: 1 }));
        }
        let len_field = &self.data()[2..HEADER];
        let parsed = std::str::from_utf8(len_field)
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| String::from_utf8_lossy(len_field).into_owned());
        let declared = match parsed {
            Ok(d) => d,
            Err(field) => {
                self.skip_bad_frame();
                return Some(Err(FrameError::BadLength { field }));
            }
        };
        let total = HEADER + declared + TRAILER;
        if len < total {
            // A shorter frame may already be complete if the length lies: look for the CRLF it should end with,
            // but only once the next frame has begun (otherwise we may simply not have everything yet). Bytes
            // already searched are not searched again (a `#` at the end may pair with the next read's).
            let from = self.searched.max(HEADER);
            if let Some(next) = self.find(from, len, b"##") {
                self.consume(next);
                return Some(Err(FrameError::LengthMismatch {
                    declared,
                    detail: format!(
                        "the next frame starts {} bytes after the header",
                        next - HEADER
                    ),
                }));
            }
            self.searched = len.saturating_sub(1).max(HEADER);
            return None;
        }
        if &self.data()[total - 2..total] != b"\r\n" {
            let detail = match self.find(HEADER, total, b"\r\n").map(|i| i - HEADER) {
                Some(i) if i >= 4 => format!("the segment ends after {} bytes", i - 4),
                _ => "no CRLF where the frame should end".to_string(),
            };
            self.skip_bad_frame();
            return Some(Err(FrameError::LengthMismatch { declared, detail }));
        }
        let mut warnings = Vec::new();
        if declared > STANDARD_MAX_SEGMENT {
            warnings.push(Warning::OversizeSegment(declared));
        }
        let data = self.data();
        let segment = data[HEADER..HEADER + declared].to_vec();
        let mut crc_field = [0u8; 4];
        crc_field.copy_from_slice(&data[HEADER + declared..HEADER + declared + 4]);
        self.consume(total);
        Some(Ok(Frame {
            segment,
            crc_field,
            warnings,
        }))
    }

    /// End of input (a file, a closed connection): whatever is buffered is judged as it stands.
    pub fn finish(&mut self) -> Option<FrameError> {
        if self.buffered() == 0 {
            return None;
        }
        let buffered = self.buf.split_off(self.start);
        self.buf.clear();
        self.start = 0;
        self.searched = 0;
        let declared = std::str::from_utf8(buffered.get(2..HEADER).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse::<usize>().ok());
        let crlf = buffered
            .get(HEADER..)
            .unwrap_or_default()
            .windows(2)
            .position(|w| w == b"\r\n");
        match (declared, crlf) {
            (Some(declared), Some(i))
                if i >= 4
                    && buffered[HEADER + i - 4..HEADER + i]
                        .iter()
                        .all(u8::is_ascii_hexdigit) =>
            {
                Some(FrameError::LengthMismatch {
                    declared,
                    detail: format!("the segment ends after {} bytes", i - 4),
                })
            }
            _ => Some(FrameError::Truncated {
                bytes: buffered.len(),
            }),
        }
    }

    /// Drops the current (bad) frame: up to its CRLF if one comes before the next `##`, else up to the next `##`.
    /// Only the bytes up to the next `##` are searched for the CRLF, so the cost is what is dropped.
    fn skip_bad_frame(&mut self) {
        let len = self.data().len();
        let next = self.find(2, len, b"##");
        let crlf = self.find(2, next.unwrap_or(len), b"\r\n").map(|i| i + 2);
        let cut = crlf.or(next).unwrap_or(len);
        self.consume(cut);
    }
}

/// Wraps a data segment into a frame with the HJ 212 CRC.
pub fn encode(segment: &str) -> Vec<u8> {
    format!(
        "##{:04}{}{}\r\n",
        segment.len(),
        segment,
        crc::field(segment.as_bytes())
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: &str = "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&";

    fn frames(f: &mut Framer) -> Vec<Result<Frame, FrameError>> {
        std::iter::from_fn(|| f.next_frame()).collect()
    }

    #[test]
    fn frames_split_across_reads_with_garbage_between() {
        let one = encode(SEG);
        assert_eq!(&one[..6], b"##0101");
        let mut stream = b"\x00junk".to_vec();
        stream.extend(&one);
        stream.extend(b"noise#");
        stream.extend(&one);
        let mut f = Framer::new();
        let mut got = Vec::new();
        for chunk in stream.chunks(7) {
            f.push(chunk);
            got.extend(frames(&mut f));
        }
        let ok: Vec<_> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].segment, SEG.as_bytes());
        assert_eq!(&ok[0].crc_field, b"1C80");
        let garbage: usize = got
            .iter()
            .filter_map(|r| match r {
                Err(FrameError::Garbage { bytes }) => Some(*bytes),
                _ => None,
            })
            .sum();
        assert_eq!(garbage, 5 + 6);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn bad_length_and_mismatch_cost_one_frame_only() {
        let good = encode(SEG);
        let mut stream = b"##81QN=;ST=23;CN=1012&&1DC0\r\n".to_vec();
        stream.extend(b"##0005QN=1;ST=2;CN=3&&ABCD\r\n");
        stream.extend(&good);
        let mut f = Framer::new();
        f.push(&stream);
        let got = frames(&mut f);
        assert!(
            matches!(got[0], Err(FrameError::BadLength { .. })),
            "{got:?}"
        );
        assert!(
            matches!(got[1], Err(FrameError::LengthMismatch { declared: 5, .. })),
            "{got:?}"
        );
        assert_eq!(
            got.last().unwrap().as_ref().unwrap().segment,
            SEG.as_bytes()
        );
    }

    #[test]
    fn oversize_is_a_warning_and_buffer_stays_bounded() {
        let big = format!(
            "ST=31;CN=2011;PW=1;MN=1;CP=&&DataTime=20200101000000;{}&&",
            "a".repeat(1500)
        );
        let mut f = Framer::new();
        f.push(&encode(&big));
        let fr = f.next_frame().unwrap().unwrap();
        assert_eq!(fr.warnings, vec![Warning::OversizeSegment(big.len())]);
        // A stream of '#' never grows the buffer beyond a byte.
        let mut f = Framer::new();
        for _ in 0..1000 {
            f.push(b"x");
            while f.next_frame().is_some() {}
        }
        assert_eq!(f.buffered(), 0);
    }

    /// The framer's work (bytes its searches look at) per input byte, over hostile inputs fed in reads of `read`.
    fn work_per_byte(input: &[u8], read: usize) -> f64 {
        let mut f = Framer::new();
        for chunk in input.chunks(read) {
            f.push(chunk);
            while f.next_frame().is_some() {}
            assert!(f.buffered() <= HEADER + MAX_SEGMENT + TRAILER + read);
        }
        f.examined() as f64 / input.len() as f64
    }

    #[test]
    fn hostile_streams_cost_a_constant_per_byte_whatever_their_length() {
        let bad_lengths = |n: usize| b"##ab".repeat(n);
        // A frame that promises 9999 bytes and trickles in one byte per read, never completing.
        let trickle = |n: usize| {
            let mut v = b"##9999".to_vec();
            v.extend(std::iter::repeat_n(b'x', n));
            v
        };
        // Bad CRLFs: a declared length that lands on no CRLF, then the real frame.
        let mismatched = |n: usize| {
            let mut one = b"##0010".to_vec();
            one.extend(b"0123456789abcdefgh\r\n");
            one.repeat(n)
        };
        for (name, input, read) in [
            ("##ab", bad_lengths as fn(usize) -> Vec<u8>, 16 * 1024),
            ("trickle", trickle, 1),
            ("mismatch", mismatched, 4096),
        ] {
            let small = work_per_byte(&input(1_000), read);
            let large = work_per_byte(&input(9_000), read);
            assert!(
                small < 4.0 && large < 4.0,
                "{name}: {small:.2} and {large:.2} bytes examined per byte"
            );
        }
    }
}

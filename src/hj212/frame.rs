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

/// Streaming framer.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Framer {
    /// A framer with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held waiting for the rest of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next frame or error, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        // Resync on "##".
        match find(&self.buf, b"##") {
            Some(0) => {}
            Some(n) => {
                self.buf.drain(..n);
                return Some(Err(FrameError::Garbage { bytes: n }));
            }
            None => {
                // Keep a trailing '#' that may start the next header.
                let keep = usize::from(self.buf.last() == Some(&b'#'));
                let n = self.buf.len() - keep;
                if n > 0 {
                    self.buf.drain(..n);
                    return Some(Err(FrameError::Garbage { bytes: n }));
                }
                return None;
            }
        }
        if self.buf.len() < HEADER {
            return None;
        }
        if self.buf[2] == b'#' {
            // "###…": the frame starts one byte later.
            self.buf.drain(..1);
            return Some(Err(FrameError::Garbage { bytes: 1 }));
        }
        let len_field = &self.buf[2..HEADER];
        let Some(declared) = std::str::from_utf8(len_field)
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok())
        else {
            let field = String::from_utf8_lossy(len_field).into_owned();
            self.skip_bad_frame();
            return Some(Err(FrameError::BadLength { field }));
        };
        let total = HEADER + declared + TRAILER;
        if self.buf.len() < total {
            // A shorter frame may already be complete if the length lies: look for the CRLF it should end with,
            // but only once the next frame has begun (otherwise we may simply not have everything yet).
            if let Some(next) = find(&self.buf[HEADER..], b"##").map(|i| i + HEADER) {
                self.buf.drain(..next);
                return Some(Err(FrameError::LengthMismatch {
                    declared,
                    detail: format!(
                        "the next frame starts {} bytes after the header",
                        next - HEADER
                    ),
                }));
            }
            return None;
        }
        if &self.buf[total - 2..total] != b"\r\n" {
            let detail = match find(&self.buf[HEADER..], b"\r\n") {
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
        let segment = self.buf[HEADER..HEADER + declared].to_vec();
        let mut crc_field = [0u8; 4];
        crc_field.copy_from_slice(&self.buf[HEADER + declared..HEADER + declared + 4]);
        self.buf.drain(..total);
        Some(Ok(Frame {
            segment,
            crc_field,
            warnings,
        }))
    }

    /// End of input (a file, a closed connection): whatever is buffered is judged as it stands.
    pub fn finish(&mut self) -> Option<FrameError> {
        if self.buf.is_empty() {
            return None;
        }
        let buffered = std::mem::take(&mut self.buf);
        let declared = std::str::from_utf8(buffered.get(2..HEADER).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse::<usize>().ok());
        let crlf = find(buffered.get(HEADER..).unwrap_or_default(), b"\r\n");
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
    fn skip_bad_frame(&mut self) {
        let crlf = find(&self.buf[2..], b"\r\n").map(|i| i + 4);
        let next = find(&self.buf[2..], b"##").map(|i| i + 2);
        let cut = match (crlf, next) {
            (Some(c), Some(n)) => c.min(n),
            (Some(c), None) => c,
            (None, Some(n)) => n,
            (None, None) => self.buf.len(),
        };
        self.buf.drain(..cut.min(self.buf.len()));
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
}

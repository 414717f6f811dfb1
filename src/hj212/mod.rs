//! HJ 212 (2005 / 2017 / 2025 dialects): the protocol every data acquisition unit (数采仪) on a Chinese stack speaks.
//!
//! Pure protocol, no I/O: [`frame`] cuts frames from a byte stream, [`crc`] checks them, [`packet`] parses the data
//! segment, [`records`] turns data commands into ingest records (the same records gRPC `Push` carries), [`reply`]
//! encodes what the platform sends back (9011/9012/9013/9014) and [`reassembly`] joins segmented packets. The TCP
//! gateway that drives them lives in `ingest::hj212_gateway`.
//!
//! Deviations real devices make (PROTOCOL.md §3) are tolerated and recorded as [`Warning`]s on the packet; what makes
//! a packet untrustworthy (bad CRC, broken framing, unreadable CP) refuses it with a reason.

pub mod crc;
pub mod frame;
pub mod packet;
pub mod reassembly;
pub mod records;
pub mod reply;

pub use frame::{Frame, FrameError, Framer};
pub use packet::{Packet, PacketError};

/// A tolerated deviation from the standard, kept with the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// CRC printed in lower-case hex.
    LowercaseCrc,
    /// CRC-16/MODBUS low byte first (accepted because the device is configured for it).
    ModbusCrc,
    /// Data segment longer than the standard's 1024 bytes.
    OversizeSegment(usize),
    /// Stray `,` or whitespace between header fields.
    StrayCharacters,
    /// Whitespace inside a field.
    WhitespaceInField,
    /// A header key in non-standard case (e.g. `FLAG`).
    NonCanonicalKey(String),
    /// A header key the standard does not define.
    UnknownHeaderField(String),
    /// Header fields out of the standard's order.
    HeaderOrder,
    /// No QN (2005-style header).
    NoQn,
    /// No Flag (2005-style header).
    NoFlag,
    /// Empty or missing MN.
    EmptyMn,
    /// Empty or missing PW.
    EmptyPw,
    /// QN as 13-digit Unix milliseconds.
    QnUnixMs,
    /// Flag bit D set without PNUM/PNO.
    SegmentFlagWithoutPnum,
    /// PNUM/PNO without Flag bit D.
    PnumWithoutSegmentFlag,
    /// A CN outside the standard's table.
    NonStandardCn(String),
    /// An ST outside the standard's table.
    NonStandardSt(String),
    /// A CP item without `=`.
    CpItemWithoutValue(String),
    /// A 2005 factor code mapped to its 2017 code.
    Code2005 {
        /// As sent.
        from: String,
        /// 2017 code.
        to: String,
    },
    /// A code mapped by the deployment's code dictionary.
    CodeMapped {
        /// As sent.
        from: String,
        /// Mapped to.
        to: String,
    },
    /// `DataTime` with milliseconds (17 digits).
    DataTimeMillis,
    /// A factor without `-Flag` (taken as N).
    NoFactorFlag(String),
    /// A bare `Flag=` in CP without a factor code (ignored).
    BareFlag,
    /// A value that is not a number (skipped).
    NonNumeric(String),
    /// A data flag outside the standard's letters (taken as D, so it never makes data valid).
    UnknownDataFlag(String),
    /// A 2005 power-failure flag `P` (taken as D).
    PowerFailureFlag,
    /// A segmented packet completed with segments missing.
    IncompleteSegments {
        /// Segments received.
        got: u32,
        /// Segments announced.
        of: u32,
    },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LowercaseCrc => write!(f, "lower-case CRC"),
            Self::ModbusCrc => write!(f, "CRC-16/MODBUS low byte first (configured dialect)"),
            Self::OversizeSegment(n) => {
                write!(f, "data segment of {n} bytes exceeds the standard's 1024")
            }
            Self::StrayCharacters => write!(f, "stray characters between header fields"),
            Self::WhitespaceInField => write!(f, "whitespace inside fields"),
            Self::NonCanonicalKey(k) => write!(f, "header key {k:?} in non-standard case"),
            Self::UnknownHeaderField(k) => write!(f, "unknown header field {k:?}"),
            Self::HeaderOrder => write!(f, "header fields out of order"),
            Self::NoQn => write!(f, "no QN (2005-style header)"),
            Self::NoFlag => write!(f, "no Flag (2005-style header)"),
            Self::EmptyMn => write!(f, "empty MN"),
            Self::EmptyPw => write!(f, "empty PW"),
            Self::QnUnixMs => write!(f, "QN as Unix milliseconds"),
            Self::SegmentFlagWithoutPnum => write!(f, "Flag D bit without PNUM/PNO"),
            Self::PnumWithoutSegmentFlag => write!(f, "PNUM/PNO without Flag D bit"),
            Self::NonStandardCn(c) => write!(f, "non-standard CN {c}"),
            Self::NonStandardSt(s) => write!(f, "non-standard ST {s}"),
            Self::CpItemWithoutValue(i) => write!(f, "CP item {i:?} without '='"),
            Self::Code2005 { from, to } => write!(f, "2005 code {from} read as {to}"),
            Self::CodeMapped { from, to } => write!(f, "code {from} mapped to {to}"),
            Self::DataTimeMillis => write!(f, "DataTime with milliseconds"),
            Self::NoFactorFlag(c) => write!(f, "{c} has no -Flag (taken as N)"),
            Self::BareFlag => write!(f, "bare Flag in CP ignored"),
            Self::NonNumeric(k) => write!(f, "{k} is not a number (skipped)"),
            Self::UnknownDataFlag(x) => write!(f, "unknown data flag {x:?} (taken as D)"),
            Self::PowerFailureFlag => write!(f, "2005 power-failure flag P (taken as D)"),
            Self::IncompleteSegments { got, of } => {
                write!(f, "only {got} of {of} segments arrived")
            }
        }
    }
}

/// The verdict on one packet as a device would send it.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Parsed; `measurements` is how many values it carries for ingest.
    Accepted {
        /// The packet.
        packet: Box<Packet>,
        /// Everything tolerated, from framing to values.
        warnings: Vec<Warning>,
        /// Values for ingest.
        measurements: usize,
    },
    /// Refused, with the reason.
    Rejected {
        /// Why.
        reason: String,
    },
}

/// Checks one frame as found in a file (one frame per line; the CRLF may be missing). `modbus_allowed` says which
/// MNs are configured for the MODBUS CRC dialect. This is the same sequence the gateway runs.
pub fn check_line(
    line: &[u8],
    modbus_allowed: &dyn Fn(&str) -> bool,
    cfg: &records::ConvertConfig,
) -> Verdict {
    let mut framer = Framer::new();
    framer.push(line);
    if !line.ends_with(b"\r\n") {
        framer.push(b"\r\n");
    }
    let mut frame = loop {
        match framer.next_frame() {
            Some(Ok(f)) => break f,
            Some(Err(FrameError::Garbage { .. })) => continue,
            Some(Err(e)) => {
                return Verdict::Rejected {
                    reason: e.to_string(),
                }
            }
            None => {
                let reason = framer
                    .finish()
                    .map_or_else(|| "no frame found".to_string(), |e| e.to_string());
                return Verdict::Rejected { reason };
            }
        }
    };
    let packet = match Packet::parse(&frame.segment) {
        Ok(p) => p,
        Err(e) => {
            return Verdict::Rejected {
                reason: e.to_string(),
            }
        }
    };
    if let Err(e) = frame.check_crc(modbus_allowed(packet.mn.as_deref().unwrap_or_default())) {
        return Verdict::Rejected {
            reason: e.to_string(),
        };
    }
    let mut warnings = frame.warnings;
    warnings.extend(packet.warnings.iter().cloned());
    let measurements = match records::to_records(&packet, cfg) {
        Ok(c) => {
            warnings.extend(c.warnings);
            c.records.iter().map(|r| r.values.len()).sum()
        }
        Err(e) => {
            return Verdict::Rejected {
                reason: e.to_string(),
            }
        }
    };
    Verdict::Accepted {
        packet: Box::new(packet),
        warnings,
        measurements,
    }
}

#[cfg(test)]
mod proptests {
    use super::records::ConvertConfig;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Whatever arrives on the wire, the framer and parser return verdicts, never panic, and the framer's buffer
        /// stays bounded.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3000), cut in 1usize..700) {
            let cfg = ConvertConfig::default();
            let _ = check_line(&bytes, &|_| true, &cfg);
            let mut framer = Framer::new();
            for chunk in bytes.chunks(cut) {
                framer.push(chunk);
                while let Some(f) = framer.next_frame() {
                    if let Ok(f) = f {
                        if let Ok(p) = Packet::parse(&f.segment) {
                            let _ = records::to_records(&p, &cfg);
                        }
                    }
                }
                prop_assert!(framer.buffered() <= 6 + frame::MAX_SEGMENT + 6 + cut);
            }
        }

        /// Packet-shaped noise: plausible headers and CP items with random content.
        #[test]
        fn packet_shaped_input_never_panics(
            cn in "(2011|2051|2061|2031|2041|2021|3020|9014|[0-9]{1,5})",
            flag in "[0-9]{0,3}",
            items in proptest::collection::vec("[a-zA-Z0-9]{0,7}(-[A-Za-z]{0,6}){0,2}=[-0-9.eE+a-zA-Z]{0,12}", 0..12),
            time in "[0-9]{0,18}",
        ) {
            let seg = format!("QN=1;ST=32;CN={cn};PW=1;MN=M;Flag={flag};CP=&&DataTime={time};{}&&", items.join(";"));
            let framed = frame::encode(&seg);
            let _ = check_line(&framed, &|_| false, &ConvertConfig::default());
        }

        /// Encoding then parsing gives back the values sent, whatever they are.
        #[test]
        fn encode_parse_round_trip(
            values in proptest::collection::vec(-1.0e6f64..1.0e6, 1..20),
            minute in 0u32..60,
        ) {
            let items: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| format!("a{:05}-Rtd={v},a{:05}-Flag=N", 10_000 + i, 10_000 + i))
                .collect();
            let seg = format!("QN=20210101000000000;ST=31;CN=2011;PW=1;MN=M;Flag=4;CP=&&DataTime=2021010110{minute:02}00;{}&&", items.join(";"));
            let framed = frame::encode(&seg);
            let Verdict::Accepted { packet, warnings, measurements } = check_line(&framed, &|_| false, &ConvertConfig::default()) else {
                return Err(TestCaseError::fail("refused"));
            };
            prop_assert!(warnings.is_empty(), "{warnings:?}");
            prop_assert_eq!(measurements, values.len());
            let converted = records::to_records(&packet, &ConvertConfig::default()).expect("records");
            let got: Vec<f64> = converted.records[0].values.iter().map(|m| m.value).collect();
            prop_assert_eq!(got, values);
        }
    }
}

//! The data segment: `QN=…;ST=…;CN=…;PW=…;MN=…;Flag=…;[PNUM=…;PNO=…;]CP=&&…&&`, parsed tolerantly.
//!
//! Real devices reorder header fields, omit QN and Flag (2005 style), send `FLAG` in upper case, leave stray commas,
//! mix `,` and `;` inside CP, use 2005 factor codes, 17-digit times and vendor suffixes (PROTOCOL.md §3). Each such
//! deviation is accepted and recorded as a [`Warning`] on the packet, never silently fixed; only what makes the
//! packet meaningless (no CP, no closing `&&`, not UTF-8) is an error.

use super::Warning;

/// A parsed data segment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Packet {
    /// Request id (`YYYYMMDDhhmmsszzz`), if present.
    pub qn: Option<String>,
    /// System code.
    pub st: Option<String>,
    /// Command code.
    pub cn: Option<String>,
    /// Password.
    pub pw: Option<String>,
    /// Device id (the source id it reports under).
    pub mn: Option<String>,
    /// Flag byte (`V5..V0 D A`); `None` in 2005-style headers.
    pub flag: Option<u8>,
    /// Total segments, when segmented.
    pub pnum: Option<u32>,
    /// This segment's number.
    pub pno: Option<u32>,
    /// The CP area as `key=value` pairs, in order.
    pub cp: Vec<(String, String)>,
    /// Deviations from the standard that were tolerated.
    pub warnings: Vec<Warning>,
    /// The data segments as received: one, or one per segment of a reassembled packet (the copy of record keeps
    /// them byte for byte).
    pub received: Vec<Vec<u8>>,
}

/// Why a data segment could not be parsed at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The bytes are not UTF-8.
    #[error("data segment is not UTF-8")]
    NotUtf8,
    /// No `CP=&&`.
    #[error("no CP=&& data area")]
    NoCp,
    /// `CP=&&` without a closing `&&`.
    #[error("CP data area is not closed by &&")]
    UnclosedCp,
    /// A header value is malformed.
    #[error("invalid header field {field}: {value:?}")]
    BadHeader {
        /// Field.
        field: &'static str,
        /// Value.
        value: String,
    },
}

impl Packet {
    /// Whether the sender asks for an acknowledgement (Flag bit A).
    pub fn wants_ack(&self) -> bool {
        self.flag.is_some_and(|f| f & 1 == 1)
    }

    /// Whether the packet is one segment of several (Flag bit D, or PNUM/PNO present).
    pub fn segmented(&self) -> bool {
        self.pnum.is_some_and(|n| n > 1)
    }

    /// Protocol version from the Flag's version bits: 0 = HJ/T 212-2005 (or no Flag), 1 = 2017, 2 = 2025.
    pub fn version(&self) -> u8 {
        self.flag.map_or(0, |f| f >> 2)
    }

    /// The CP value of `key`, if present (first occurrence).
    pub fn cp_value(&self, key: &str) -> Option<&str> {
        self.cp
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Parses a data segment.
    ///
    /// # Errors
    /// [`PacketError`] when the segment has no usable CP area or a header number is malformed.
    pub fn parse(segment: &[u8]) -> Result<Self, PacketError> {
        let text = std::str::from_utf8(segment).map_err(|_| PacketError::NotUtf8)?;
        let cp_at = find_ci(text, "CP=&&").ok_or(PacketError::NoCp)?;
        let header = &text[..cp_at];
        let body = &text[cp_at + 5..];
        let close = body.rfind("&&").ok_or(PacketError::UnclosedCp)?;
        let cp_text = &body[..close];
        if !body[close + 2..].is_empty() {
            // Bytes after the closing && inside the segment (e.g. "&&&&" of an empty CP is fine: rfind takes the last).
            return Err(PacketError::UnclosedCp);
        }
        let mut p = Packet {
            received: vec![segment.to_vec()],
            ..Packet::default()
        };
        let mut order = Vec::new();
        for item in header.split(';') {
            let item = item.trim_matches(|c: char| c == ',' || c.is_whitespace());
            if item.is_empty() {
                continue;
            }
            if item.len() != item.trim().len() || header.contains(";,") {
                p.warn(Warning::StrayCharacters);
            }
            let Some((key, value)) = item.split_once('=') else {
                p.warn(Warning::UnknownHeaderField(item.to_string()));
                continue;
            };
            let (key_t, value) = (key.trim(), value.trim());
            if value.len() != item.split_once('=').map_or(0, |(_, v)| v.len())
                || key_t.len() != key.len()
            {
                p.warn(Warning::WhitespaceInField);
            }
            let canonical = match key_t.to_ascii_uppercase().as_str() {
                "QN" => "QN",
                "ST" => "ST",
                "CN" => "CN",
                "PW" => "PW",
                "MN" => "MN",
                "FLAG" => "Flag",
                "PNUM" => "PNUM",
                "PNO" => "PNO",
                _ => {
                    p.warn(Warning::UnknownHeaderField(key_t.to_string()));
                    continue;
                }
            };
            if canonical != key_t {
                p.warn(Warning::NonCanonicalKey(key_t.to_string()));
            }
            order.push(canonical);
            let owned = Some(value.to_string());
            match canonical {
                "QN" => p.qn = owned.filter(|v| !v.is_empty()),
                "ST" => p.st = owned,
                "CN" => p.cn = owned,
                "PW" => p.pw = owned,
                "MN" => p.mn = owned,
                "Flag" => {
                    p.flag = Some(value.parse().map_err(|_| PacketError::BadHeader {
                        field: "Flag",
                        value: value.to_string(),
                    })?)
                }
                "PNUM" => p.pnum = Some(parse_u32("PNUM", value)?),
                _ => p.pno = Some(parse_u32("PNO", value)?),
            }
        }
        p.check_header(&order);
        p.cp = parse_cp(cp_text, &mut p.warnings);
        if cp_text.contains(' ') {
            p.warn(Warning::WhitespaceInField);
        }
        Ok(p)
    }

    fn warn(&mut self, w: Warning) {
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    fn check_header(&mut self, order: &[&str]) {
        const STANDARD: [&str; 8] = ["QN", "ST", "CN", "PW", "MN", "Flag", "PNUM", "PNO"];
        let ranks: Vec<usize> = order
            .iter()
            .filter_map(|k| STANDARD.iter().position(|s| s == k))
            .collect();
        if ranks.windows(2).any(|w| w[0] > w[1]) {
            self.warn(Warning::HeaderOrder);
        }
        if self.qn.is_none() {
            self.warn(Warning::NoQn);
        }
        if self.flag.is_none() {
            self.warn(Warning::NoFlag);
        }
        if self.mn.as_deref().is_none_or(str::is_empty) {
            self.warn(Warning::EmptyMn);
        }
        if self.pw.as_deref().is_none_or(str::is_empty) {
            self.warn(Warning::EmptyPw);
        }
        if let Some(qn) = &self.qn {
            if qn.len() == 13 && qn.bytes().all(|b| b.is_ascii_digit()) {
                self.warn(Warning::QnUnixMs);
            }
        }
        let d_bit = self.flag.is_some_and(|f| f & 2 == 2);
        let has_pnum = self.pnum.is_some() || self.pno.is_some();
        if d_bit && !has_pnum {
            self.warn(Warning::SegmentFlagWithoutPnum);
        }
        if has_pnum && !d_bit {
            self.warn(Warning::PnumWithoutSegmentFlag);
        }
        if let Some(cn) = &self.cn {
            if !is_standard_cn(cn) {
                self.warn(Warning::NonStandardCn(cn.clone()));
            }
        }
        if let Some(st) = &self.st {
            if !is_standard_st(st) {
                self.warn(Warning::NonStandardSt(st.clone()));
            }
        }
    }
}

fn parse_u32(field: &'static str, value: &str) -> Result<u32, PacketError> {
    value.parse().map_err(|_| PacketError::BadHeader {
        field,
        value: value.to_string(),
    })
}

/// Case-insensitive find of an ASCII needle.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    h.windows(n.len()).position(|w| w.eq_ignore_ascii_case(n))
}

/// CP items: `;` and `,` are equivalent separators (real data mixes them).
fn parse_cp(text: &str, warnings: &mut Vec<Warning>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for item in text.split([';', ',']) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        match item.split_once('=') {
            Some((k, v)) => out.push((k.trim().to_string(), v.trim().to_string())),
            None => {
                let w = Warning::CpItemWithoutValue(item.to_string());
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
            }
        }
    }
    out
}

/// CN values of HJ 212-2017 Table 9 (plus 2005's) .
fn is_standard_cn(cn: &str) -> bool {
    matches!(
        cn,
        "1000"
            | "1001"
            | "1011"
            | "1012"
            | "1013"
            | "1021"
            | "1022"
            | "1031"
            | "1032"
            | "1041"
            | "1042"
            | "1061"
            | "1062"
            | "1063"
            | "1064"
            | "1072"
            | "2011"
            | "2012"
            | "2021"
            | "2022"
            | "2031"
            | "2041"
            | "2051"
            | "2061"
            | "2071"
            | "2072"
            | "2081"
            | "3011"
            | "3012"
            | "3013"
            | "3014"
            | "3015"
            | "3016"
            | "3017"
            | "3018"
            | "3019"
            | "3020"
            | "3021"
            | "9011"
            | "9012"
            | "9013"
            | "9014"
    )
}

/// ST values of HJ 212-2017 Table 5.
fn is_standard_st(st: &str) -> bool {
    matches!(
        st,
        "21" | "22"
            | "23"
            | "24"
            | "25"
            | "26"
            | "27"
            | "31"
            | "32"
            | "33"
            | "34"
            | "35"
            | "36"
            | "37"
            | "38"
            | "39"
            | "41"
            | "51"
            | "52"
            | "91"
    )
}

/// HJ/T 212-2005 factor codes still in service, mapped to their HJ 212-2017 codes (PROTOCOL.md §2.9, HJ 212-2017
/// Table B.1/B.2).
pub fn code_2005_to_2017(code: &str) -> Option<&'static str> {
    Some(match code {
        "B02" => "a00000",
        "S01" => "a19001",
        "S02" => "a01011",
        "S03" => "a01012",
        "S04" => "a01017",
        "S05" => "a01014",
        "S06" => "a01015",
        "S07" => "a01016",
        "S08" => "a01013",
        "01" => "a34013",
        "02" => "a21026",
        "03" => "a21002",
        "04" => "a21005",
        "05" => "a21028",
        "06" => "a21018",
        "07" => "a21017",
        "08" => "a21024",
        "09" => "a34038",
        "10" => "a21001",
        "11" => "a21022",
        "14" => "a34039",
        "15" => "a34040",
        "17" => "a25003",
        "18" => "a25005",
        "19" => "a31001",
        "25" => "a24087",
        "30" => "a05001",
        "31" => "a20057",
        "37" => "a01010",
        "B01" => "w00000",
        "001" => "w01001",
        "011" => "w01018",
        "060" => "w21003",
        _ => return None,
    })
}

/// One factor's fields from the CP area, borrowed from the packet: suffix → raw value (`Rtd`, `Avg`, `ZsRtd`, `Flag`,
/// `Info`, …), in the order sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Factor<'a> {
    /// (suffix, value) pairs.
    pub fields: Vec<(&'a str, &'a str)>,
}

impl<'a> Factor<'a> {
    /// The value of a suffix, if sent.
    pub fn get(&self, suffix: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(s, _)| *s == suffix)
            .map(|(_, v)| *v)
    }
}

/// Factors by code, in the order first sent.
pub type Factors<'a> = Vec<(&'a str, Factor<'a>)>;

/// Groups `code-suffix` keys by code. The suffix is what follows the **last** dash, so info fields of a pollutant's
/// instrument (`a21026-i13007-Info`) group under `a21026-i13007` and vendor codes with dashes (`Nh3-scr-Rtd`) keep
/// theirs. Keys without a dash (`DataTime`, `SystemTime`, a bare `Flag`) are returned separately. Borrows: no copies
/// of the packet's text.
pub fn factors(cp: &[(String, String)]) -> (Factors<'_>, Vec<(&str, &str)>) {
    let mut by_code: Vec<(&str, Factor<'_>)> = Vec::new();
    let mut plain = Vec::new();
    for (k, v) in cp {
        match k.rsplit_once('-') {
            Some((code, suffix)) if !code.is_empty() && !suffix.is_empty() => {
                // Fields of one factor are almost always adjacent: look at the last group first.
                let pos = match by_code.last() {
                    Some((c, _)) if *c == code => Some(by_code.len() - 1),
                    _ => by_code.iter().position(|(c, _)| *c == code),
                };
                match pos {
                    Some(i) => by_code[i].1.fields.push((suffix, v.as_str())),
                    None => by_code.push((
                        code,
                        Factor {
                            fields: vec![(suffix, v.as_str())],
                        },
                    )),
                }
            }
            _ => plain.push((k.as_str(), v.as_str())),
        }
    }
    (by_code, plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_standard_example() {
        let p = Packet::parse(b"QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&").unwrap();
        assert_eq!(p.qn.as_deref(), Some("20160801085857223"));
        assert_eq!(p.cn.as_deref(), Some("1062"));
        assert_eq!(p.flag, Some(5));
        assert!(p.wants_ack());
        assert_eq!(p.version(), 1);
        assert_eq!(p.cp, vec![("RtdInterval".to_string(), "30".to_string())]);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn tolerates_and_reports_real_world_deviations() {
        let p = Packet::parse(b"ST=32;CN=2011;PW=123456;,MN=88888881234567;FLAG=0;CP=&&DataTime=20180306120000;001-Rtd=6.951,001-Flag=N&&").unwrap();
        assert_eq!(p.mn.as_deref(), Some("88888881234567"));
        assert_eq!(p.flag, Some(0));
        for w in [
            Warning::NoQn,
            Warning::StrayCharacters,
            Warning::NonCanonicalKey("FLAG".into()),
        ] {
            assert!(
                p.warnings.contains(&w),
                "{w:?} missing from {:?}",
                p.warnings
            );
        }
        let p = Packet::parse(b"CN=2011;QN=1234567890123;ST=22;MN=X;PW=1;Flag=4;CP=&&&&").unwrap();
        assert!(p.warnings.contains(&Warning::HeaderOrder));
        assert!(p.warnings.contains(&Warning::QnUnixMs));
        assert!(p.cp.is_empty());
    }

    #[test]
    fn refuses_what_cannot_be_read() {
        assert_eq!(Packet::parse(b"ST=32;CN=2011"), Err(PacketError::NoCp));
        assert_eq!(
            Packet::parse(b"ST=32;CN=2011;CP=&&DataTime=1"),
            Err(PacketError::UnclosedCp)
        );
        assert!(matches!(
            Packet::parse(b"ST=32;Flag=x;CP=&&&&"),
            Err(PacketError::BadHeader { field: "Flag", .. })
        ));
        assert_eq!(Packet::parse(&[0xff, 0xfe]), Err(PacketError::NotUtf8));
    }

    #[test]
    fn factors_group_by_code_with_two_dash_info_keys() {
        let cp = vec![
            ("DataTime".to_string(), "20200101000000".to_string()),
            ("a21026-Rtd".to_string(), "12.5".to_string()),
            ("a21026-Flag".to_string(), "N".to_string()),
            ("a21026-i13007-Info".to_string(), "1.02".to_string()),
            ("Nh3-scr-Rtd".to_string(), "4.1".to_string()),
        ];
        let (f, plain) = factors(&cp);
        let get = |code: &str, suffix: &str| {
            f.iter()
                .find(|(c, _)| *c == code)
                .and_then(|(_, x)| x.get(suffix))
        };
        assert_eq!(get("a21026", "Rtd"), Some("12.5"));
        assert_eq!(get("a21026", "Flag"), Some("N"));
        assert_eq!(get("a21026-i13007", "Info"), Some("1.02"));
        assert_eq!(get("Nh3-scr", "Rtd"), Some("4.1"));
        assert_eq!(plain.len(), 1);
        assert_eq!(code_2005_to_2017("02"), Some("a21026"));
        assert_eq!(code_2005_to_2017("a21026"), None);
    }
}

//! Data commands to ingest records: the same `IncomingRecord`s a gRPC `Push` carries, so HJ 212 data goes through
//! exactly the same validation, durability and detection path.
//!
//! | CN | what | value suffix | interval |
//! |---|---|---|---|
//! | 2011 | real-time data | `Rtd` (+ `ZsRtd` converted) | real-time |
//! | 2051 | minute data | `Avg` (+ `ZsAvg`) | minute |
//! | 2061 | hour data | `Avg` (+ `ZsAvg`) | hour |
//! | 2031 | day data | `Avg` (+ `ZsAvg`) | day |
//! | 2021 / 2041 | facility running state `SBx-RS` / run time `SBx-RT` | `RS` / `RT` | real-time / day |
//! | 3020 and any | field-unit information `i…-Info` | `Info` | real-time |
//!
//! Other numeric suffixes (`Min`, `Max`, `Cou`, `ZsMin`, …) are kept as series of their own (`a21026-Cou`), and
//! information fields as their own series per source (`i13007`, `a21026-i13007`), so detectors can see a slope
//! changed at 2 am. `DataTime` is local time (Beijing, UTC+8, unless configured) converted to UTC.

use super::packet::{code_2005_to_2017, factors, Packet};
use super::Warning;
use crate::domain::{IncomingMeasurement, IncomingRecord};
use std::collections::BTreeMap;

/// How data is read from packets in one deployment.
#[derive(Debug, Clone)]
pub struct ConvertConfig {
    /// Offset of `DataTime` from UTC (ms); Beijing time by default.
    pub utc_offset_ms: i64,
    /// Code dictionary: a key as sent (`i33200`, `100000-Pt`, …) → the code it is stored under (`current_a`,
    /// `power_kw`, …). A `code-suffix` key maps that one field; a bare code maps the factor.
    pub dictionary: BTreeMap<String, String>,
    /// Codes that have field-level (`code-suffix`) entries in the dictionary; derived by [`ConvertConfig::new`].
    pub field_codes: std::collections::HashSet<String>,
}

impl ConvertConfig {
    /// A config with its derived lookup built.
    pub fn new(utc_offset_ms: i64, dictionary: BTreeMap<String, String>) -> Self {
        let field_codes = dictionary
            .keys()
            .filter_map(|k| k.rsplit_once('-').map(|(code, _)| code.to_string()))
            .collect();
        Self {
            utc_offset_ms,
            dictionary,
            field_codes,
        }
    }
}

/// The built-in dictionary: HJ 212-2017's electricity info codes and the three-phase meter fields seen in the field
/// (PROTOCOL.md §4). A deployment's config file adds to or overrides it.
pub fn default_dictionary() -> BTreeMap<String, String> {
    [
        ("i33200", "current_a"),
        ("i33201", "energy_kwh"),
        ("i33202", "energy_kwh_day"),
        ("100000-Pt", "power_kw"),
        ("100000-Ept", "energy_kwh"),
        ("100000-Ia", "current_a"),
        ("100000-Ua", "voltage_v"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl Default for ConvertConfig {
    fn default() -> Self {
        Self::new(8 * 3_600_000, default_dictionary())
    }
}

/// Why a data packet yields no records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A data command without `DataTime`.
    #[error("CN {0} carries no DataTime")]
    NoDataTime(String),
    /// `DataTime` is not `YYYYMMDDhhmmss[zzz]` or not a real date.
    #[error("DataTime {0:?} is not a valid YYYYMMDDhhmmss[zzz] time")]
    BadDataTime(String),
    /// No MN.
    #[error("no MN: the packet names no source")]
    NoMn,
}

/// What a packet contributes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Converted {
    /// Records for ingest (empty for non-data commands).
    pub records: Vec<IncomingRecord>,
    /// Deviations met while reading values.
    pub warnings: Vec<Warning>,
}

/// The contract's interval numbers.
const REALTIME: i32 = 1;
const MINUTE: i32 = 2;
const HOUR: i32 = 3;
const DAY: i32 = 4;

/// Whether a CN carries data to ingest.
pub fn is_data_command(cn: &str) -> bool {
    matches!(
        cn,
        "2011" | "2021" | "2031" | "2041" | "2051" | "2061" | "3020"
    )
}

/// Days from 1970-01-01 to a civil date (H. Hinnant), or `None` if the date does not exist.
fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
    if !(1..=12).contains(&m) || d < 1 {
        return None;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if d > month_days[(m - 1) as usize] {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Parses `YYYYMMDDhhmmss` or `YYYYMMDDhhmmsszzz` local time into Unix ms (UTC).
///
/// # Errors
/// [`ConvertError::BadDataTime`].
pub fn parse_data_time(s: &str, utc_offset_ms: i64) -> Result<(i64, bool), ConvertError> {
    let bad = || ConvertError::BadDataTime(s.to_string());
    if !(s.len() == 14 || s.len() == 17) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().map_err(|_| bad());
    let (y, mo, d, h, mi, se) = (
        n(0, 4)?,
        n(4, 6)?,
        n(6, 8)?,
        n(8, 10)?,
        n(10, 12)?,
        n(12, 14)?,
    );
    let ms = if s.len() == 17 { n(14, 17)? } else { 0 };
    if h > 23 || mi > 59 || se > 59 {
        return Err(bad());
    }
    let days = days_from_civil(y, mo, d).ok_or_else(bad)?;
    let local = ((days * 24 + h) * 60 + mi) * 60_000 + se * 1000 + ms;
    Ok((local - utc_offset_ms, s.len() == 17))
}

/// Contract `DataFlag` number of an HJ 212 flag letter.
fn flag_number(letter: &str, warnings: &mut Vec<Warning>) -> i32 {
    match letter {
        "N" => 1,
        "F" => 2,
        "M" => 3,
        "S" => 4,
        "D" => 5,
        "C" => 6,
        "T" => 7,
        "B" => 8,
        "P" => {
            push(warnings, Warning::PowerFailureFlag);
            5
        }
        other => {
            push(warnings, Warning::UnknownDataFlag(other.to_string()));
            5
        }
    }
}

fn push(warnings: &mut Vec<Warning>, w: Warning) {
    if !warnings.contains(&w) {
        warnings.push(w);
    }
}

/// Reads the records of a data packet. Non-data commands give no records.
///
/// # Errors
/// [`ConvertError`] when a data packet has no source or no valid time.
pub fn to_records(p: &Packet, cfg: &ConvertConfig) -> Result<Converted, ConvertError> {
    let mut out = Converted::default();
    let cn = p.cn.as_deref().unwrap_or_default();
    if !is_data_command(cn) {
        return Ok(out);
    }
    let (by_code, plain) = factors(&p.cp);
    let Some(data_time) = p.cp_value("DataTime") else {
        // The same CN is also the host's request (`BeginTime`/`EndTime`, or an empty CP to start real-time data):
        // a request carries no values. Values without a time are an error.
        if by_code.is_empty() {
            return Ok(out);
        }
        return Err(ConvertError::NoDataTime(cn.to_string()));
    };
    let mn =
        p.mn.clone()
            .filter(|m| !m.is_empty())
            .ok_or(ConvertError::NoMn)?;
    let (time_ms, millis) = parse_data_time(data_time, cfg.utc_offset_ms)?;
    if millis {
        push(&mut out.warnings, Warning::DataTimeMillis);
    }
    let (main, converted_suffix, interval) = match cn {
        "2011" => ("Rtd", "ZsRtd", REALTIME),
        "2051" => ("Avg", "ZsAvg", MINUTE),
        "2061" => ("Avg", "ZsAvg", HOUR),
        "2031" => ("Avg", "ZsAvg", DAY),
        "2041" => ("RT", "", DAY),
        "2021" => ("RS", "", REALTIME),
        _ => ("Info", "", REALTIME),
    };
    if plain.iter().any(|(k, _)| k.eq_ignore_ascii_case("Flag")) {
        push(&mut out.warnings, Warning::BareFlag);
    }
    let mut values: Vec<IncomingMeasurement> = Vec::new();
    for (raw_code, factor) in &by_code {
        let raw_code: &str = raw_code;
        // 2005 codes first, then the deployment's dictionary for the whole factor.
        let mut code = raw_code.to_string();
        if let Some(c17) = code_2005_to_2017(raw_code) {
            push(
                &mut out.warnings,
                Warning::Code2005 {
                    from: raw_code.to_string(),
                    to: c17.to_string(),
                },
            );
            code = c17.to_string();
        }
        if let Some(mapped) = cfg
            .dictionary
            .get(raw_code)
            .or_else(|| cfg.dictionary.get(&code))
        {
            push(
                &mut out.warnings,
                Warning::CodeMapped {
                    from: raw_code.to_string(),
                    to: mapped.clone(),
                },
            );
            code = mapped.clone();
        }
        let flag = match factor.get("Flag") {
            Some(letter) => flag_number(letter, &mut out.warnings),
            None => {
                let has_value = factor.get(main).is_some() || factor.get("Info").is_some();
                if has_value && main != "Info" && main != "RS" && main != "RT" {
                    push(
                        &mut out.warnings,
                        Warning::NoFactorFlag(raw_code.to_string()),
                    );
                }
                1
            }
        };
        let number = |suffix: &str, v: &str, warnings: &mut Vec<Warning>| -> Option<f64> {
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() => Some(x),
                _ => {
                    push(
                        warnings,
                        Warning::NonNumeric(format!("{raw_code}-{suffix}")),
                    );
                    None
                }
            }
        };
        let converted = if converted_suffix.is_empty() {
            None
        } else {
            factor
                .get(converted_suffix)
                .and_then(|v| number(converted_suffix, v, &mut out.warnings))
        };
        // Field-level dictionary entries ("100000-Pt") exist only for some codes: check once per factor.
        let field_mapped = cfg.field_codes.contains(raw_code);
        for &(suffix, raw_value) in &factor.fields {
            let mapped = if field_mapped {
                cfg.dictionary.get(&format!("{raw_code}-{suffix}"))
            } else {
                None
            };
            let target = if let Some(mapped) = mapped {
                push(
                    &mut out.warnings,
                    Warning::CodeMapped {
                        from: format!("{raw_code}-{suffix}"),
                        to: mapped.clone(),
                    },
                );
                mapped.clone()
            } else {
                match suffix {
                    s if s == main || s == "Info" => code.clone(),
                    "RS" | "RT" => format!("{code}-{suffix}"),
                    "Flag" | "EFlag" | "SampleTime" | "SN" => continue,
                    s if s == converted_suffix => continue,
                    // Rtd in a minute packet, Avg in a real-time one, Min/Max/Cou/ZsMin/…: a series of its own.
                    _ => format!("{code}-{suffix}"),
                }
            };
            let Some(value) = number(suffix, raw_value, &mut out.warnings) else {
                continue;
            };
            let is_main = target == code;
            values.push(IncomingMeasurement {
                code: target,
                value,
                flag,
                converted: if is_main { converted } else { None },
            });
        }
    }
    if !values.is_empty() {
        out.records.push(IncomingRecord {
            source_id: mn,
            time_ms,
            interval,
            values,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(seg: &str) -> Converted {
        to_records(
            &Packet::parse(seg.as_bytes()).unwrap(),
            &ConvertConfig::default(),
        )
        .unwrap()
    }

    #[test]
    fn beijing_time_to_utc() {
        // 2021-01-07 14:00:00 Beijing = 2021-01-07T06:00:00Z.
        assert_eq!(
            parse_data_time("20210107140000", 8 * 3_600_000),
            Ok((1_609_999_200_000, false))
        );
        assert_eq!(
            parse_data_time("20200924101000123", 0).map(|x| x.1),
            Ok(true)
        );
        assert!(
            parse_data_time("20210230000000", 0).is_err(),
            "no 30 February"
        );
        assert!(parse_data_time("2021010714", 0).is_err());
        assert!(parse_data_time("20210107250000", 0).is_err());
    }

    #[test]
    fn real_time_packet_to_one_record_with_flags_and_converted() {
        let c = convert("QN=20180303110906001;ST=32;CN=2011;PW=123456;MN=M1;Flag=4;CP=&&DataTime=20180303105900;a00000-Rtd=12.5,a00000-Flag=N;a21026-Rtd=30.1,a21026-ZsRtd=40.2,a21026-Flag=D;a19001-Rtd=9.8&&");
        assert_eq!(c.records.len(), 1);
        let r = &c.records[0];
        assert_eq!((r.source_id.as_str(), r.interval), ("M1", 1));
        let so2 = r.values.iter().find(|m| m.code == "a21026").unwrap();
        assert_eq!((so2.value, so2.flag, so2.converted), (30.1, 5, Some(40.2)));
        assert!(c.warnings.contains(&Warning::NoFactorFlag("a19001".into())));
    }

    #[test]
    fn minute_packet_keeps_min_max_cou_as_series_and_maps_2005_codes() {
        let c = convert("ST=31;CN=2051;PW=1;MN=M1;CP=&&DataTime=20200924101000;02-Min=1,02-Avg=2,02-Max=3,02-Cou=0.5,02-ZsAvg=2.5,02-Flag=N;B02-Avg=100,B02-Flag=N&&");
        let r = &c.records[0];
        assert_eq!(r.interval, 2);
        let codes: Vec<&str> = r.values.iter().map(|m| m.code.as_str()).collect();
        for want in ["a21026", "a21026-Min", "a21026-Max", "a21026-Cou", "a00000"] {
            assert!(codes.contains(&want), "{want} missing in {codes:?}");
        }
        let avg = r.values.iter().find(|m| m.code == "a21026").unwrap();
        assert_eq!((avg.value, avg.converted), (2.0, Some(2.5)));
        assert!(c.warnings.contains(&Warning::Code2005 {
            from: "02".into(),
            to: "a21026".into()
        }));
    }

    #[test]
    fn info_and_electricity_fields_become_their_own_series() {
        let c = convert("QN=1;ST=31;CN=3020;PW=1;MN=M1;Flag=4;CP=&&DataTime=20200101020000;PolId=a21026;a21026-i13007-Info=1.02;i12001-Info=1;i33200-Info=12.5&&");
        let codes: BTreeMap<&str, f64> = c.records[0]
            .values
            .iter()
            .map(|m| (m.code.as_str(), m.value))
            .collect();
        assert_eq!(codes["a21026-i13007"], 1.02);
        assert_eq!(codes["i12001"], 1.0);
        assert_eq!(codes["current_a"], 12.5);
        let c = convert("ST=80;CN=2011;PW=1;MN=E1;CP=&&DataTime=20200101020000;100000-Pt=812.5,100000-Ia=20.1,100000-Flag=N&&");
        let codes: BTreeMap<&str, f64> = c.records[0]
            .values
            .iter()
            .map(|m| (m.code.as_str(), m.value))
            .collect();
        assert_eq!(codes["power_kw"], 812.5);
        assert_eq!(codes["current_a"], 20.1);
    }

    #[test]
    fn non_data_commands_give_nothing_and_data_without_time_is_refused() {
        assert!(
            convert("QN=1;ST=32;CN=1062;PW=1;MN=M;Flag=5;CP=&&RtdInterval=30&&")
                .records
                .is_empty()
        );
        let p = Packet::parse(b"ST=32;CN=2011;PW=1;MN=M;CP=&&a21026-Rtd=1&&").unwrap();
        assert_eq!(
            to_records(&p, &ConvertConfig::default()),
            Err(ConvertError::NoDataTime("2011".into()))
        );
        // A history request from the host: no values, no error.
        assert!(convert("QN=1;ST=32;CN=2051;PW=1;MN=M;Flag=3;CP=&&BeginTime=20040506111000,EndTime=20040506151000&&").records.is_empty());
    }
}

//! Validation of incoming records: pure, per measurement, every failure a precise rejection that affects nothing
//! else in the batch.

use crate::domain::quote::{quote, MAX_QUOTE_BYTES};
use crate::domain::{
    IncomingMeasurement, IncomingRecord, Interval, Point, ValueFlag, MS_PER_MINUTE,
};
use std::fmt::Write as _;

/// A refused record or measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Index of the record in its batch.
    pub record_index: u32,
    /// Measurement code; empty when the whole record was refused.
    pub code: String,
    /// Why.
    pub reason: String,
}

/// How far ahead of the server clock a sample may be by default (`--max-clock-skew-secs`): device clocks drift
/// minutes, not hours, and a point stamped hours ahead would move its outlet's watermark and make the real data
/// behind it late, i.e. blind detection.
pub const DEFAULT_MAX_CLOCK_SKEW_MS: i64 = 10 * MS_PER_MINUTE;
/// Longest code accepted (HJ 212 codes are 6 characters; power codes a few more).
pub const MAX_CODE_LEN: usize = 64;

/// Maps a contract `DataFlag` number (0 = unspecified = normal).
pub fn flag_from_number(n: i32) -> Option<ValueFlag> {
    Some(match n {
        0 | 1 => ValueFlag::Normal,
        2 => ValueFlag::Stopped,
        3 => ValueFlag::Maintenance,
        4 => ValueFlag::Manual,
        5 => ValueFlag::Fault,
        6 => ValueFlag::Calibration,
        7 => ValueFlag::OverRange,
        8 => ValueFlag::CommError,
        _ => return None,
    })
}

/// Maps a contract `Interval` number (0 = unspecified = minute).
pub fn interval_from_number(n: i32) -> Option<Interval> {
    Some(match n {
        0 | 2 => Interval::Minute,
        1 => Interval::Realtime,
        3 => Interval::Hour,
        4 => Interval::Day,
        _ => return None,
    })
}

/// Points that passed, each with its record index, and the rejections.
#[derive(Debug, Default)]
pub struct Validated {
    /// Accepted points with the index of the record they came in.
    pub points: Vec<(u32, Point)>,
    /// Refusals.
    pub rejections: Vec<Rejection>,
}

/// Validates a batch. `is_registered` answers whether a source id is a registered outlet or meter.
pub fn validate(
    records: Vec<IncomingRecord>,
    is_registered: impl Fn(&str) -> bool,
    now_ms: i64,
    max_clock_skew_ms: i64,
) -> Validated {
    let mut v = Validated::default();
    for (i, rec) in records.into_iter().enumerate() {
        let record_index = u32::try_from(i).unwrap_or(u32::MAX);
        let reject_record = |reason: String| Rejection {
            record_index,
            code: String::new(),
            reason,
        };
        if rec.source_id.is_empty() {
            v.rejections.push(reject_record("empty source_id".into()));
            continue;
        }
        if !is_registered(&rec.source_id) {
            v.rejections.push(reject_record(format!(
                "unknown source_id {}: register it as an outlet or meter first",
                quote(&rec.source_id)
            )));
            continue;
        }
        if rec.time_ms <= 0 {
            v.rejections.push(reject_record(format!(
                "time_ms {} must be > 0 (Unix ms UTC)",
                rec.time_ms
            )));
            continue;
        }
        if rec.time_ms > now_ms.saturating_add(max_clock_skew_ms) {
            v.rejections.push(reject_record(format!(
                "time_ms {} is {} s ahead of the server clock ({now_ms}); at most {} s of clock skew is accepted",
                rec.time_ms,
                (rec.time_ms - now_ms) / 1000,
                max_clock_skew_ms / 1000
            )));
            continue;
        }
        let Some(interval) = interval_from_number(rec.interval) else {
            v.rejections
                .push(reject_record(format!("unknown interval {}", rec.interval)));
            continue;
        };
        if rec.values.is_empty() {
            v.rejections
                .push(reject_record("record has no values".into()));
            continue;
        }
        for m in rec.values {
            match check_measurement(&m) {
                Ok(flag) => v.points.push((
                    record_index,
                    Point {
                        source_id: rec.source_id.clone(),
                        code: m.code,
                        time_ms: rec.time_ms,
                        interval,
                        value: m.value,
                        flag,
                        converted: m.converted,
                    },
                )),
                Err(reason) => v.rejections.push(Rejection {
                    record_index,
                    code: if m.code.len() > MAX_QUOTE_BYTES {
                        quote(&m.code)
                    } else {
                        m.code
                    },
                    reason,
                }),
            }
        }
    }
    v
}

fn check_measurement(m: &IncomingMeasurement) -> Result<ValueFlag, String> {
    if m.code.is_empty() {
        return Err("empty code".into());
    }
    if m.code.len() > MAX_CODE_LEN || m.code.chars().any(|c| c.is_control() || c.is_whitespace()) {
        let mut r = String::new();
        let _ = write!(
            r,
            "code must be at most {MAX_CODE_LEN} bytes without whitespace or control characters"
        );
        return Err(r);
    }
    if !m.value.is_finite() {
        return Err(format!("value is {} (not finite)", m.value));
    }
    if let Some(c) = m.converted {
        if !c.is_finite() {
            return Err(format!("converted is {c} (not finite)"));
        }
    }
    flag_from_number(m.flag).ok_or_else(|| format!("unknown data flag {}", m.flag))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(code: &str, value: f64) -> IncomingMeasurement {
        IncomingMeasurement {
            code: code.into(),
            value,
            flag: 1,
            converted: None,
        }
    }

    fn rec(source: &str, t: i64, values: Vec<IncomingMeasurement>) -> IncomingRecord {
        IncomingRecord {
            source_id: source.into(),
            time_ms: t,
            interval: 2,
            values,
        }
    }

    #[test]
    fn each_failure_is_precise_and_affects_nothing_else() {
        let now = 1_700_000_000_000;
        let mut bad_flag = m("a21002", 1.0);
        bad_flag.flag = 42;
        let mut bad_conv = m("a21003", 1.0);
        bad_conv.converted = Some(f64::INFINITY);
        let records = vec![
            rec(
                "s1",
                now,
                vec![
                    m("a21026", 12.0),
                    m("a34013", f64::NAN),
                    m("", 1.0),
                    bad_flag,
                    bad_conv,
                ],
            ),
            rec("ghost", now, vec![m("a21026", 1.0)]),
            rec("s1", 0, vec![m("a21026", 1.0)]),
            rec(
                "s1",
                now + DEFAULT_MAX_CLOCK_SKEW_MS + 1,
                vec![m("a21026", 1.0)],
            ),
            rec("s1", now - 1, vec![m("a19001", 6.0)]),
        ];
        let v = validate(records, |s| s == "s1", now, DEFAULT_MAX_CLOCK_SKEW_MS);
        assert_eq!(v.points.len(), 2);
        assert_eq!(v.points[0].1.code, "a21026");
        assert_eq!(v.points[1].0, 4);
        let reasons: Vec<(u32, &str, &str)> = v
            .rejections
            .iter()
            .map(|r| (r.record_index, r.code.as_str(), r.reason.as_str()))
            .collect();
        assert!(reasons[0].2.contains("not finite") && reasons[0].1 == "a34013");
        assert_eq!(reasons[1].2, "empty code");
        assert!(reasons[2].2.contains("unknown data flag 42"));
        assert!(reasons[3].2.contains("converted"));
        assert!(reasons[4].2.contains("unknown source_id \"ghost\"") && reasons[4].1.is_empty());
        assert!(reasons[5].2.contains("must be > 0"));
        assert!(reasons[6].2.contains("at most 600 s of clock skew"));
        assert_eq!(v.rejections.len(), 7);
    }
}

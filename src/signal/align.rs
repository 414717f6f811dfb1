//! Per-outlet alignment in data time: the points of an outlet's CEMS, its production and treatment meters and its
//! bypass ducts are gathered into one row per minute, so a detector sees "at 02:13 production drew 840 kW, the
//! scrubber 3 kW, the stack flow was 410,000 m³/h" as one fact.
//!
//! A minute is handed to detection once the outlet's watermark (the latest data time seen from any of its sources)
//! has passed its end by the allowed lateness. Points for minutes already handed over are stored but not detected
//! on: they are counted as late. Minutes with no data at all are emitted as empty rows, because silence while
//! production runs is evidence, not nothing.

use crate::domain::{Point, SourceRole, ValueFlag, MS_PER_MINUTE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The code meters report active power under.
pub const POWER_CODE: &str = "power_kw";

/// One minute's reading of one channel (several samples in a minute are averaged; a non-normal flag wins, so one
/// fault-flagged sample makes the minute suspect rather than being averaged away).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Mean of the samples.
    pub value: f64,
    /// Normal unless any sample carried another flag (then the latest such flag).
    pub flag: ValueFlag,
    /// Mean of reported converted values, if any sample had one.
    pub converted: Option<f64>,
    /// Number of samples.
    pub samples: u32,
}

impl Reading {
    fn from_point(p: &Point) -> Self {
        Self {
            value: p.value,
            flag: p.flag,
            converted: p.converted,
            samples: 1,
        }
    }

    fn merge(&mut self, p: &Point) {
        let n = f64::from(self.samples);
        self.value = (self.value * n + p.value) / (n + 1.0);
        self.converted = match (self.converted, p.converted) {
            (Some(a), Some(b)) => Some((a * n + b) / (n + 1.0)),
            (a, b) => a.or(b),
        };
        if p.flag != ValueFlag::Normal {
            self.flag = p.flag;
        }
        self.samples += 1;
    }

    /// Whether the reading is usable as a measurement (flags F/M/D/C/B make it not).
    pub fn is_valid(&self) -> bool {
        self.flag.is_valid_for_exceedance()
    }
}

/// Everything known about one outlet in one minute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutletRow {
    /// Start of the minute, Unix ms.
    pub minute_ms: i64,
    /// The outlet's own CEMS channels by HJ 212 code.
    pub cems: BTreeMap<String, Reading>,
    /// Active power by meter id (production and treatment meters linked to the outlet).
    pub power_kw: BTreeMap<String, Reading>,
    /// Bypass ducts' channels: bypass outlet id → code → reading.
    pub bypass: BTreeMap<String, BTreeMap<String, Reading>>,
}

/// Whether a point made it into detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Taken into its minute.
    Taken,
    /// Its minute was already handed to detection.
    Late,
    /// Not a channel detection uses (e.g. a meter's `energy_kwh`).
    Ignored,
}

/// The alignment state of one outlet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OutletAligner {
    /// Latest data time seen from any source of the outlet (ms), or `None` before any data.
    pub watermark_ms: Option<i64>,
    /// Every minute before this has been handed to detection.
    pub emitted_through_ms: Option<i64>,
    rows: BTreeMap<i64, OutletRow>,
}

impl OutletAligner {
    /// Adds one point from a source of the given role.
    pub fn add(&mut self, p: &Point, role: SourceRole) -> Admission {
        if role == SourceRole::Meter && p.code != POWER_CODE {
            return Admission::Ignored;
        }
        let minute = p.time_ms.div_euclid(MS_PER_MINUTE) * MS_PER_MINUTE;
        if self.emitted_through_ms.is_some_and(|t| minute < t) {
            return Admission::Late;
        }
        self.watermark_ms = Some(self.watermark_ms.map_or(p.time_ms, |w| w.max(p.time_ms)));
        let row = self.rows.entry(minute).or_insert_with(|| OutletRow {
            minute_ms: minute,
            ..OutletRow::default()
        });
        let channel = match role {
            SourceRole::Cems => row.cems.entry(p.code.clone()),
            SourceRole::Meter => row.power_kw.entry(p.source_id.clone()),
            SourceRole::Bypass => row
                .bypass
                .entry(p.source_id.clone())
                .or_default()
                .entry(p.code.clone()),
        };
        channel
            .and_modify(|r| r.merge(p))
            .or_insert_with(|| Reading::from_point(p));
        Admission::Taken
    }

    /// Hands over, in time order, every minute whose end is at least `lateness_ms` behind the watermark, filling
    /// minutes without data with empty rows.
    pub fn drain_ready(&mut self, lateness_ms: i64, out: &mut Vec<OutletRow>) {
        let Some(watermark) = self.watermark_ms else {
            return;
        };
        let horizon = watermark.saturating_sub(lateness_ms);
        self.drain_until(|minute| minute + MS_PER_MINUTE <= horizon, out);
    }

    /// Hands over everything up to and including the watermark's minute (end of a replay).
    pub fn drain_all(&mut self, out: &mut Vec<OutletRow>) {
        self.drain_until(|_| true, out);
    }

    fn drain_until(&mut self, ready: impl Fn(i64) -> bool, out: &mut Vec<OutletRow>) {
        let Some(watermark) = self.watermark_ms else {
            return;
        };
        let last_minute = watermark.div_euclid(MS_PER_MINUTE) * MS_PER_MINUTE;
        let mut next = match (self.emitted_through_ms, self.rows.keys().next()) {
            (Some(t), _) => t,
            (None, Some(first)) => *first,
            (None, None) => return,
        };
        let mut emitted = false;
        while next <= last_minute && ready(next) {
            let row = self.rows.remove(&next).unwrap_or_else(|| OutletRow {
                minute_ms: next,
                ..OutletRow::default()
            });
            out.push(row);
            next += MS_PER_MINUTE;
            emitted = true;
        }
        // Only a minute actually handed over closes the door behind it: before the first hand-over, earlier data
        // (out of order within the lateness) is still welcome.
        if emitted {
            self.emitted_through_ms = Some(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Interval;

    fn p(source: &str, code: &str, t: i64, v: f64) -> Point {
        Point {
            source_id: source.into(),
            code: code.into(),
            time_ms: t,
            interval: Interval::Minute,
            value: v,
            flag: ValueFlag::Normal,
            converted: None,
        }
    }

    const M: i64 = MS_PER_MINUTE;

    #[test]
    fn rows_wait_for_lateness_then_come_out_in_order_with_gaps_filled() {
        let mut a = OutletAligner::default();
        let t0 = 1_000 * M;
        a.add(&p("o", "a00000", t0 + 2 * M, 3.0), SourceRole::Cems);
        a.add(&p("o", "a00000", t0, 1.0), SourceRole::Cems); // out of order: fine
        a.add(&p("m", POWER_CODE, t0, 500.0), SourceRole::Meter);
        let mut out = Vec::new();
        a.drain_ready(10 * M, &mut out);
        assert!(out.is_empty(), "watermark has not passed the lateness");
        a.add(&p("o", "a00000", t0 + 13 * M, 4.0), SourceRole::Cems);
        a.drain_ready(10 * M, &mut out);
        let minutes: Vec<i64> = out.iter().map(|r| (r.minute_ms - t0) / M).collect();
        assert_eq!(minutes, vec![0, 1, 2]);
        assert_eq!(out[0].power_kw["m"].value, 500.0);
        assert!(out[1].cems.is_empty(), "gap filled with an empty row");
        // A point for an emitted minute is late.
        assert_eq!(
            a.add(&p("o", "a00000", t0 + M, 9.0), SourceRole::Cems),
            Admission::Late
        );
        // Within the lateness it is still taken.
        assert_eq!(
            a.add(&p("o", "a00000", t0 + 5 * M, 9.0), SourceRole::Cems),
            Admission::Taken
        );
        out.clear();
        a.drain_all(&mut out);
        assert_eq!(out.last().unwrap().minute_ms, t0 + 13 * M);
        assert_eq!(out.first().unwrap().minute_ms, t0 + 3 * M);
    }

    #[test]
    fn nothing_is_late_before_the_first_minute_is_handed_over() {
        let mut a = OutletAligner::default();
        a.add(&p("o", "a00000", 10 * M, 1.0), SourceRole::Cems);
        let mut out = Vec::new();
        a.drain_ready(30 * M, &mut out);
        assert!(out.is_empty());
        assert_eq!(
            a.add(&p("o", "a00000", 2 * M, 1.0), SourceRole::Cems),
            Admission::Taken
        );
        a.drain_all(&mut out);
        assert_eq!(out.first().map(|r| r.minute_ms), Some(2 * M));
    }

    #[test]
    fn samples_in_a_minute_average_and_a_bad_flag_wins() {
        let mut a = OutletAligner::default();
        a.add(&p("o", "a21026", 0, 10.0), SourceRole::Cems);
        let mut bad = p("o", "a21026", 30_000, 20.0);
        bad.flag = ValueFlag::Fault;
        a.add(&bad, SourceRole::Cems);
        assert_eq!(
            a.add(&p("m", "energy_kwh", 0, 1.0), SourceRole::Meter),
            Admission::Ignored
        );
        let mut out = Vec::new();
        a.drain_all(&mut out);
        let r = out[0].cems["a21026"];
        assert_eq!((r.value, r.flag, r.samples), (15.0, ValueFlag::Fault, 2));
        assert!(!r.is_valid());
    }
}

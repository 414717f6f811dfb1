//! Per-outlet alignment in data time: the points of an outlet's CEMS, its production and treatment meters and its
//! bypass ducts are gathered into one row per minute, so a detector sees "at 02:13 production drew 840 kW, the
//! scrubber 3 kW, the stack flow was 410,000 m³/h" as one fact.
//!
//! A minute is handed to detection once the outlet's watermark (the latest data time seen from any of its sources)
//! has passed its end by the allowed lateness. Points for minutes already handed over are stored but not detected
//! on: they are counted as late. Minutes with no data at all are emitted as empty rows, because silence while
//! production runs is evidence, not nothing.
//!
//! An outlet's resolution is a property of its data. An hour (CN 2061) or day (CN 2031) average covers every minute
//! of its period, so it is laid over those minutes, each marked with the span it came from: the minute-level rules
//! (45 valid minutes to an hour, silence while production runs) read an hourly outlet as fully reported, and the
//! shape detectors read one sample per span ([`Reading::starts_sample`]). A platform that sends a channel at several
//! resolutions (minute data and their hourly averages) is read at the finest: coarser averages of a channel that also
//! arrives finer are stored, not detected on.

use crate::domain::{Interval, Point, SourceRole, ValueFlag, MS_PER_DAY, MS_PER_MINUTE};
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
    /// Minutes the reported value averages over: 1 for real-time and minute data, 60 for an hour average, 1,440 for
    /// a day's.
    #[serde(default = "one")]
    pub span_min: u32,
    /// Which minute of its span this is (0 for the first).
    #[serde(default)]
    pub minute_of_span: u32,
}

fn one() -> u32 {
    1
}

impl Reading {
    /// A reading of one minute-level sample.
    pub fn of(value: f64, flag: ValueFlag, converted: Option<f64>) -> Self {
        Self {
            value,
            flag,
            converted,
            samples: 1,
            span_min: 1,
            minute_of_span: 0,
        }
    }

    fn from_point(p: &Point) -> Self {
        Self::of(p.value, p.flag, p.converted)
    }

    /// Whether this minute starts a reported sample: every minute of minute data, the first minute of an hour or day
    /// average. A detector that judges a series' shape (runs of equal values, repeats, spread) reads only these, so an
    /// hourly outlet is judged on its hourly values, not on sixty copies of each.
    pub fn starts_sample(&self) -> bool {
        self.minute_of_span == 0
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
    /// Per source and code, the finest span seen and the latest data time seen at it.
    #[serde(default)]
    finest: BTreeMap<String, BTreeMap<String, (u32, i64)>>,
}

/// How long a channel's finer data keeps its coarser averages out of detection after it was last seen: a day, so a
/// device that falls back to hourly reporting is read hourly from the next day on.
const FINER_MEMORY_MS: i64 = MS_PER_DAY;

/// Minutes one reported value covers.
pub fn span_min(interval: Interval) -> u32 {
    match interval {
        Interval::Realtime | Interval::Minute => 1,
        Interval::Hour => 60,
        Interval::Day => 1440,
    }
}

impl OutletAligner {
    /// Whether `p` is at its channel's finest current resolution, remembering it.
    fn is_finest(&mut self, p: &Point, span: u32) -> bool {
        let seen = match self
            .finest
            .get_mut(&p.source_id)
            .and_then(|codes| codes.get_mut(&p.code))
        {
            Some(seen) => seen,
            None => {
                self.finest
                    .entry(p.source_id.clone())
                    .or_default()
                    .insert(p.code.clone(), (span, p.time_ms));
                return true;
            }
        };
        let (finest, last_ms) = *seen;
        if span == finest {
            seen.1 = last_ms.max(p.time_ms);
        } else if span < finest || p.time_ms - last_ms > FINER_MEMORY_MS {
            *seen = (span, p.time_ms);
        } else {
            return false;
        }
        true
    }

    /// Adds one point from a source of the given role.
    pub fn add(&mut self, p: &Point, role: SourceRole) -> Admission {
        if role == SourceRole::Meter && p.code != POWER_CODE {
            return Admission::Ignored;
        }
        let minute = p.time_ms.div_euclid(MS_PER_MINUTE) * MS_PER_MINUTE;
        if self.emitted_through_ms.is_some_and(|t| minute < t) {
            return Admission::Late;
        }
        let span = span_min(p.interval);
        if !self.is_finest(p, span) {
            return Admission::Ignored;
        }
        // The data are known through the last minute the value covers.
        let end = p.time_ms.max(minute + i64::from(span - 1) * MS_PER_MINUTE);
        self.watermark_ms = Some(self.watermark_ms.map_or(end, |w| w.max(end)));
        for k in 0..span {
            let minute_ms = minute + i64::from(k) * MS_PER_MINUTE;
            let row = self.rows.entry(minute_ms).or_insert_with(|| OutletRow {
                minute_ms,
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
            let reading = Reading {
                span_min: span,
                minute_of_span: k,
                ..Reading::from_point(p)
            };
            channel
                .and_modify(|r| {
                    if span == 1 && r.span_min == 1 {
                        r.merge(p);
                    } else {
                        // A coarse value laid over these minutes gives way to finer data, and a repeated one replaces.
                        *r = reading;
                    }
                })
                .or_insert(reading);
        }
        Admission::Taken
    }

    /// Hands over, in time order, every minute whose end is at least `lateness_ms` behind the watermark, filling
    /// minutes without data with empty rows. While a channel of the outlet reports averages over a longer span, the
    /// wait grows by that span: an hour's CEMS average is sent after its hour closes, while the minute meters beside
    /// it have already moved the watermark on.
    pub fn drain_ready(&mut self, lateness_ms: i64, out: &mut Vec<OutletRow>) {
        let Some(watermark) = self.watermark_ms else {
            return;
        };
        let coarsest_live_min = self
            .finest
            .values()
            .flat_map(BTreeMap::values)
            .filter(|(_, last_ms)| watermark - last_ms <= FINER_MEMORY_MS)
            .map(|(span, _)| *span)
            .max()
            .unwrap_or(1);
        let wait = lateness_ms + i64::from(coarsest_live_min - 1) * MS_PER_MINUTE;
        let horizon = watermark.saturating_sub(wait);
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

    fn hourly(source: &str, code: &str, t: i64, v: f64) -> Point {
        Point {
            interval: Interval::Hour,
            ..p(source, code, t, v)
        }
    }

    #[test]
    fn an_hour_average_covers_its_hour_and_starts_one_sample() {
        let mut a = OutletAligner::default();
        let h = 60 * M;
        for hour in 0..3 {
            a.add(
                &hourly("o", "a21026", hour * h, 10.0 + hour as f64),
                SourceRole::Cems,
            );
        }
        let mut out = Vec::new();
        a.drain_ready(0, &mut out);
        // The watermark is the last minute of hour 2; the wait grows by the hour the channel averages over.
        assert_eq!(
            out.len(),
            120,
            "hours 0 and 1; hour 2 waits for its lateness"
        );
        assert!(
            out.iter().all(|r| r.cems.contains_key("a21026")),
            "no gaps inside an hour"
        );
        let r = out[75].cems["a21026"];
        assert_eq!((r.value, r.span_min, r.minute_of_span), (11.0, 60, 15));
        let starts = out
            .iter()
            .filter(|r| r.cems["a21026"].starts_sample())
            .count();
        assert_eq!(starts, 2);
    }

    #[test]
    fn a_channel_is_read_at_its_finest_resolution() {
        let mut a = OutletAligner::default();
        for i in 0..60 {
            a.add(&p("o", "a21026", i * M, 10.0), SourceRole::Cems);
        }
        // The hour average of the same channel, sent after its hour: stored elsewhere, not laid over the minutes.
        assert_eq!(
            a.add(&hourly("o", "a21026", 0, 99.0), SourceRole::Cems),
            Admission::Ignored
        );
        // Another channel that only comes hourly is taken.
        assert_eq!(
            a.add(&hourly("o", "a21002", 0, 50.0), SourceRole::Cems),
            Admission::Taken
        );
        let mut out = Vec::new();
        a.drain_all(&mut out);
        assert!(out.iter().all(|r| r.cems["a21026"].value == 10.0));
        assert!(out.iter().all(|r| r.cems["a21002"].span_min == 60));
        // A day after its last minute value, the channel is read hourly.
        let later = 60 * M + MS_PER_DAY + M;
        assert_eq!(
            a.add(&hourly("o", "a21026", later, 12.0), SourceRole::Cems),
            Admission::Taken
        );
    }
}

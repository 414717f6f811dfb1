//! Data availability, a statistic before it is an alarm: per outlet and Beijing month, how many of the minutes its
//! production ran have valid monitoring data (the transmission rate), how many outages there were and the longest.
//!
//! An outage is a run of production minutes in which the outlet's monitored channels sent nothing valid: silence,
//! a communication-error or stop flag, a fault. Minutes flagged maintenance or calibration (M/C) are declared and
//! judged elsewhere (`FLAG_ABUSE`); they are not valid data, but they neither start nor extend an outage. Minutes
//! where production is off are owed nothing and end an outage; minutes where production is unknown (its meters
//! silent) are not counted either way.

use super::align::OutletRow;
use super::cems::{cems_status, CemsStatus};
use super::process::ProcessState;
use crate::domain::{Month, MS_PER_MINUTE};
use std::collections::BTreeMap;

/// One outlet's availability over one month.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MonthAvailability {
    /// Minutes production ran.
    pub production_minutes: u32,
    /// Of those, minutes with a valid reading on a monitored channel.
    pub valid_minutes: u32,
    /// Outages that began this month.
    pub outages: u32,
    /// The longest of them, in minutes (counted to its end, in whatever month that is).
    pub longest_outage_min: u32,
}

impl MonthAvailability {
    /// Valid minutes over production minutes (1 when production never ran: nothing was owed).
    pub fn transmission_rate(&self) -> f64 {
        if self.production_minutes == 0 {
            1.0
        } else {
            f64::from(self.valid_minutes) / f64::from(self.production_minutes)
        }
    }
}

/// Counts availability minute by minute, in time order.
#[derive(Debug, Clone, Default)]
pub struct AvailabilityCounter {
    months: BTreeMap<Month, MonthAvailability>,
    /// The outage in progress: the month it began and its length so far.
    outage: Option<(Month, u32)>,
    last_minute_ms: Option<i64>,
}

impl AvailabilityCounter {
    /// Counts one aligned minute of the outlet with its process state; `monitored` are its monitored channels.
    pub fn observe(&mut self, row: &OutletRow, process: &ProcessState, monitored: &[String]) {
        // Aligned minutes come without gaps; a jump (a hole in what was read) ends any outage rather than
        // bridging it.
        if self
            .last_minute_ms
            .is_some_and(|last| row.minute_ms != last + MS_PER_MINUTE)
        {
            self.end_outage();
        }
        self.last_minute_ms = Some(row.minute_ms);
        if !process.running() {
            if process.production_on == Some(false) {
                self.end_outage();
            }
            return;
        }
        let month = Month::of_ms(row.minute_ms);
        let m = self.months.entry(month).or_default();
        m.production_minutes += 1;
        match cems_status(row, monitored) {
            CemsStatus::Valid => {
                m.valid_minutes += 1;
                self.end_outage();
            }
            CemsStatus::Other => {}
            CemsStatus::Silent
            | CemsStatus::Stopped
            | CemsStatus::Fault
            | CemsStatus::CommError => {
                let (_, len) = self.outage.get_or_insert((month, 0));
                *len += 1;
            }
        }
    }

    fn end_outage(&mut self) {
        if let Some((month, len)) = self.outage.take() {
            let m = self.months.entry(month).or_default();
            m.outages += 1;
            m.longest_outage_min = m.longest_outage_min.max(len);
        }
    }

    /// End of data: the outage in progress counts as it stands; the months in order.
    pub fn finish(mut self) -> Vec<(Month, MonthAvailability)> {
        self.end_outage();
        self.months.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OutletTopology, Point, ValueFlag};
    use crate::signal::align::OutletAligner;
    use crate::signal::equipment::Thresholds;
    use crate::signal::process::ProcessTracker;

    const T0: i64 = 1_740_758_400_000; // 2025-03-01 00:00 Beijing

    fn topology() -> OutletTopology {
        let mut t = OutletTopology::default();
        t.outlet.id = "s1".into();
        t.outlet.limits_mg_m3.insert("a21026".into(), 35.0);
        t.production.push(crate::domain::Meter {
            id: "p1".into(),
            rated_kw: 1000.0,
            role: crate::domain::MeterRole::Production,
            outlet_ids: vec!["s1".into()],
            ..Default::default()
        });
        t
    }

    fn point(source: &str, code: &str, i: i64, value: f64, flag: ValueFlag) -> Point {
        Point {
            source_id: source.into(),
            code: code.into(),
            time_ms: T0 + i * MS_PER_MINUTE,
            interval: crate::domain::Interval::Minute,
            value,
            flag,
            converted: None,
        }
    }

    /// Production runs through `0..minutes` except `stopped`; the CEMS is silent in `silent` and flagged
    /// calibration in `calibration`.
    fn count(
        minutes: i64,
        stopped: std::ops::Range<i64>,
        silent: &[std::ops::Range<i64>],
        calibration: std::ops::Range<i64>,
    ) -> Vec<(Month, MonthAvailability)> {
        let t = topology();
        let mut aligner = OutletAligner::default();
        for i in 0..minutes {
            let kw = if stopped.contains(&i) { 0.0 } else { 800.0 };
            aligner.add(
                &point("p1", "power_kw", i, kw, ValueFlag::Normal),
                t.role_of("p1"),
            );
            if !silent.iter().any(|r| r.contains(&i)) {
                let flag = if calibration.contains(&i) {
                    ValueFlag::Calibration
                } else {
                    ValueFlag::Normal
                };
                aligner.add(&point("s1", "a21026", i, 20.0, flag), t.role_of("s1"));
            }
        }
        let mut rows = Vec::new();
        aligner.drain_all(&mut rows);
        let (mut tracker, mut counter) =
            (ProcessTracker::default(), AvailabilityCounter::default());
        for row in &rows {
            let p = tracker.observe(&t, row, Thresholds::default());
            counter.observe(row, &p, &t.monitored_codes());
        }
        counter.finish()
    }

    #[test]
    fn outages_are_runs_of_production_minutes_without_valid_data() {
        let months = count(1_440, 1_000..1_200, &[100..190, 500..520], 700..730);
        assert_eq!(months.len(), 1);
        let (month, m) = months[0];
        assert_eq!(month.to_string(), "2025-03");
        // 1,440 minutes less 200 stopped; 110 silent and 30 in calibration are not valid.
        assert_eq!(m.production_minutes, 1_240);
        assert_eq!(m.valid_minutes, 1_240 - 110 - 30);
        assert_eq!((m.outages, m.longest_outage_min), (2, 90));
        assert!((m.transmission_rate() - 1_100.0 / 1_240.0).abs() < 1e-12);
    }

    #[test]
    fn a_stopped_plant_owes_nothing_and_ends_an_outage() {
        // Silent from 100 to 400, but production stops at 150: the outage lasted 50 production minutes.
        let months = count(600, 150..300, &[100..250, 250..400], 0..0);
        let m = months[0].1;
        assert_eq!(m.production_minutes, 600 - 150);
        assert_eq!((m.outages, m.longest_outage_min), (2, 100));
    }
}

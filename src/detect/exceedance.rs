//! `EXCEEDANCE` and `AMMONIA_SLIP`: hourly converted averages over the outlet's limit, judged the way HJ 75 / HJ 212
//! App. D judge them.
//!
//! - An hour is judged only if it has at least 45 valid minutes (`min_valid_minutes`). Minutes flagged F/M/D/C/B are
//!   not valid; neither are minutes whose O2 is at or above the process ceiling, where the conversion factor
//!   `(21 − O2ref)/(21 − O2)` diverges (start-up, shutdown, a leak): those are counted as *not evaluable*.
//! - The converted value is recomputed from the raw value and O2 with the legal formula whenever both are valid; the
//!   reported converted value (ZsRtd) is used only when O2 is missing. A DAS that scales ZsRtd therefore cannot hide
//!   an exceedance (the mismatch itself is `PARAMETER_TAMPERING`'s business).
//! - Consecutive exceeding hours of one pollutant form one episode; a valid compliant hour closes it, an hour
//!   without enough valid minutes neither extends nor closes it.
//!
//! Look-alikes: calibration windows (C flag, excluded), start-up with O2 near ambient (not evaluable), noisy
//! in-situ NH3 analyzers (hourly averaging; single high minutes do not count).

use super::kit::period::PeriodClock;
use super::kit::{saturating, Due, Runs, Timing};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::codes::{self};
use crate::domain::{units, AnomalyKind, MS_PER_HOUR};
use crate::signal::cems::{self, CemsValue};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Detector name and version.
pub const NAME: &str = "exceedance/1";

/// Settings.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Config {
    /// Valid minutes an hour needs to be judged (HJ 212-2017 App. D: k ≥ 45).
    pub min_valid_minutes: u32,
    /// O2 (%) at or above which a converted value is not evaluable.
    pub o2_ceiling_pct: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            min_valid_minutes: 45,
            o2_ceiling_pct: units::DEFAULT_O2_CEILING_PCT,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct HourSums {
    sum: f64,
    valid: u32,
    not_evaluable: u32,
    invalid_flag: u32,
}

/// Sums over the exceeding hours of one episode.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Episode {
    sum_of_means: f64,
    max_mean: f64,
    min_valid_minutes: u32,
    nox_sum_of_means: f64,
    nox_hours: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    hour: PeriodClock,
    sums: BTreeMap<String, HourSums>,
    episodes: Runs<Episode>,
}

/// The figures of an episode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Figures {
    /// The pollutant.
    pub(crate) code: String,
    pub(crate) limit_mg_m3: f64,
    pub(crate) max_hour_mean_mg_m3: f64,
    pub(crate) mean_of_exceeding_hours_mg_m3: f64,
    pub(crate) exceeding_hours: u32,
    pub(crate) max_ratio_to_limit: f64,
    pub(crate) min_valid_minutes_per_hour: u32,
    pub(crate) reference_o2_pct: f64,
    /// The NOx over the same hours, as evidence for ammonia slip.
    pub(crate) nox_mean_mg_m3: Option<f64>,
}

/// The detector.
pub struct Exceedance {
    config: Config,
    state: State,
}

impl Exceedance {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            config: config.exceedance,
            state: State::default(),
        })
    }

    /// Judges the hour starting at `hour_start` that just ended.
    fn close_hour(&mut self, ctx: &OutletContext<'_>, hour_start: i64, out: &mut Vec<Finding>) {
        let sums = std::mem::take(&mut self.state.sums);
        let nox_mean = sums
            .get(codes::NOX)
            .filter(|s| s.valid >= self.config.min_valid_minutes)
            .map(|s| s.sum / f64::from(s.valid));
        for (code, limit) in &ctx.topology.outlet.limits_mg_m3 {
            let s = sums.get(code).cloned().unwrap_or_default();
            if s.valid < self.config.min_valid_minutes {
                continue; // not judged: neither extends nor closes
            }
            let mean = s.sum / f64::from(s.valid);
            let due = if mean > *limit {
                self.state.episodes.bad(
                    code,
                    hour_start,
                    Timing::HOURLY,
                    || Episode {
                        sum_of_means: 0.0,
                        max_mean: 0.0,
                        min_valid_minutes: u32::MAX,
                        nox_sum_of_means: 0.0,
                        nox_hours: 0,
                    },
                    |ep| {
                        ep.sum_of_means += mean;
                        ep.max_mean = ep.max_mean.max(mean);
                        ep.min_valid_minutes = ep.min_valid_minutes.min(s.valid);
                        if let Some(n) = nox_mean {
                            ep.nox_sum_of_means += n;
                            ep.nox_hours += 1;
                        }
                    },
                )
            } else {
                self.state.episodes.good(code, hour_start, Timing::HOURLY)
            };
            if let Some(due) = due {
                out.push(finding(ctx, *limit, &due));
            }
        }
    }
}

fn finding(ctx: &OutletContext<'_>, limit: f64, due: &Due<Episode>) -> Finding {
    let t = ctx.topology;
    let (code, ep) = (due.key.as_str(), &due.run.stats);
    let kind = if code == codes::NH3 {
        AnomalyKind::AmmoniaSlip
    } else {
        AnomalyKind::Exceedance
    };
    let hours = f64::from(due.run.held);
    let ratio = ep.max_mean / limit;
    let figures = Figures {
        code: code.to_string(),
        limit_mg_m3: limit,
        max_hour_mean_mg_m3: ep.max_mean,
        mean_of_exceeding_hours_mg_m3: ep.sum_of_means / hours.max(1.0),
        exceeding_hours: due.run.held,
        max_ratio_to_limit: ratio,
        min_valid_minutes_per_hour: ep.min_valid_minutes,
        reference_o2_pct: t.outlet.reference_o2_pct,
        nox_mean_mg_m3: (ep.nox_hours > 0 && code == codes::NH3)
            .then(|| ep.nox_sum_of_means / f64::from(ep.nox_hours)),
    };
    let score = saturating((ratio - 1.0) / 0.3 + (hours - 1.0) / 4.0);
    due.finding(kind, NAME, score, vec![t.outlet.id.clone()], &figures)
}

impl Detector for Exceedance {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let limits = &ctx.topology.outlet.limits_mg_m3;
        if limits.is_empty() {
            return;
        }
        if let Some(ended) = self.state.hour.advance(minute.row.minute_ms, MS_PER_HOUR) {
            self.close_hour(ctx, ended, out);
        }
        // NOx is accumulated even without a limit, as evidence for ammonia slip.
        let codes_here: Vec<String> = limits
            .keys()
            .cloned()
            .chain((!limits.contains_key(codes::NOX)).then(|| codes::NOX.to_string()))
            .collect();
        for code in codes_here {
            let v = cems::converted(
                minute.row,
                &code,
                ctx.topology.outlet.reference_o2_pct,
                self.config.o2_ceiling_pct,
            );
            let sums = self.state.sums.entry(code).or_default();
            match v {
                CemsValue::Valid(x) => {
                    sums.sum += x;
                    sums.valid += 1;
                }
                CemsValue::NotEvaluable => sums.not_evaluable += 1,
                CemsValue::InvalidFlag => sums.invalid_flag += 1,
                CemsValue::Missing => {}
            }
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        if let Some(open) = self.state.hour.finish() {
            self.close_hour(ctx, open, out);
        }
        let limits = &ctx.topology.outlet.limits_mg_m3;
        for due in self.state.episodes.finish() {
            let limit = limits.get(&due.key).copied().unwrap_or(f64::NAN);
            out.push(finding(ctx, limit, &due));
        }
    }

    persist_state!(state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{row, run_detector, topology_with_limits, with_cems, T0};
    use crate::domain::ValueFlag;

    fn topo() -> crate::domain::OutletTopology {
        topology_with_limits(&[("a21026", 35.0), ("a21001", 2.5)])
    }

    /// Minutes of SO2 (raw) and O2 from a function of the minute index.
    fn run(minutes: i64, f: impl Fn(i64) -> (f64, f64, ValueFlag)) -> Vec<Finding> {
        let t = topo();
        run_detector(
            Exceedance::boxed,
            &t,
            (0..minutes).map(|i| {
                let (so2, o2, flag) = f(i);
                let mut r = with_cems(
                    row(i, &[("p1", Some(800.0))]),
                    &[("a21026", so2), ("a19001", o2), ("a21001", 0.8)],
                );
                if let Some(x) = r.cems.get_mut("a21026") {
                    x.flag = flag;
                }
                r
            }),
        )
    }

    #[test]
    fn fires_on_hours_over_the_limit_after_conversion() {
        // Raw 32 mg/m³ at 9 % O2 with reference 6 %: converted 40 > 35. Hours 2 and 3 (minutes 120..240).
        let out = run(360, |i| {
            if (120..240).contains(&i) {
                (32.0, 9.0, ValueFlag::Normal)
            } else {
                (20.0, 9.0, ValueFlag::Normal)
            }
        });
        let closed: Vec<_> = out.iter().filter(|f| !f.ongoing).collect();
        assert_eq!(closed.len(), 1, "{out:#?}");
        let e = closed[0];
        assert_eq!(e.kind, AnomalyKind::Exceedance);
        assert_eq!(
            (e.start_ms, e.end_ms),
            (T0 + 2 * MS_PER_HOUR, T0 + 4 * MS_PER_HOUR)
        );
        assert_eq!(e.evidence["exceeding_hours"], 2.0);
        assert!((e.evidence["max_hour_mean_mg_m3"] - 40.0).abs() < 1e-9);
        // Raised at the end of the first exceeding hour.
        assert_eq!(out[0].detected_at_ms, T0 + 3 * MS_PER_HOUR);
    }

    /// An outlet that reports only hour averages (CN 2061), aligned as the engine aligns it: each average covers its
    /// hour, so the 45-valid-minute rule is met and an hour over the limit is an exceedance; hours under it are not.
    #[test]
    fn an_hour_average_over_the_limit_is_an_exceedance_on_an_hourly_outlet() {
        use crate::domain::{Interval, Point, SourceRole};
        use crate::signal::align::{OutletAligner, POWER_CODE};
        let mut aligner = OutletAligner::default();
        let point = |source: &str, code: &str, hour: i64, value: f64| Point {
            source_id: source.into(),
            code: code.into(),
            time_ms: T0 + hour * MS_PER_HOUR,
            interval: Interval::Hour,
            value,
            flag: ValueFlag::Normal,
            converted: None,
        };
        for hour in 0..6 {
            // Hour 3: raw 32 at 9 % O2, converted 40 > 35.
            let so2 = if hour == 3 { 32.0 } else { 20.0 };
            aligner.add(&point("s1", "a21026", hour, so2), SourceRole::Cems);
            aligner.add(&point("s1", "a19001", hour, 9.0), SourceRole::Cems);
            aligner.add(&point("s1", "a21001", hour, 0.8), SourceRole::Cems);
            aligner.add(&point("p1", POWER_CODE, hour, 800.0), SourceRole::Meter);
        }
        let mut rows = Vec::new();
        aligner.drain_all(&mut rows);
        assert_eq!(rows.len(), 6 * 60);
        let out = run_detector(Exceedance::boxed, &topo(), rows);
        let closed: Vec<_> = out.iter().filter(|f| !f.ongoing).collect();
        assert_eq!(closed.len(), 1, "{out:#?}");
        assert_eq!(
            (closed[0].start_ms, closed[0].end_ms),
            (T0 + 3 * MS_PER_HOUR, T0 + 4 * MS_PER_HOUR)
        );
        assert!((closed[0].evidence["max_hour_mean_mg_m3"] - 40.0).abs() < 1e-9);
    }

    #[test]
    fn raw_under_limit_but_converted_over_is_an_exceedance_and_vice_versa() {
        // Raw 30 at 12 % O2 → 30 × 15 / 9 = 50 > 35, although the raw value is under the limit.
        let out = run(120, |_| (30.0, 12.0, ValueFlag::Normal));
        assert!(out.iter().any(|f| f.kind == AnomalyKind::Exceedance));
        // Raw 40 at 3 % O2 → 40 × 15 / 18 = 33.3 < 35: compliant although the raw value is over the limit.
        let out = run(120, |_| (40.0, 3.0, ValueFlag::Normal));
        assert!(out.is_empty(), "{out:#?}");
    }

    #[test]
    fn quiet_on_calibration_start_up_and_hours_without_enough_valid_minutes() {
        // Calibration with span gas at 80 flagged C for 20 minutes every hour: excluded, so the hour stays compliant.
        let out = run(240, |i| {
            if i % 60 < 20 {
                (80.0, 9.0, ValueFlag::Calibration)
            } else {
                (20.0, 9.0, ValueFlag::Normal)
            }
        });
        assert!(out.is_empty(), "{out:#?}");
        // Start-up: O2 at 19.5 % makes the conversion not evaluable, however high the raw value.
        let out = run(240, |_| (30.0, 19.5, ValueFlag::Normal));
        assert!(out.is_empty(), "{out:#?}");
        // Only 40 valid minutes in an hour of high values: not judged.
        let out = run(60, |i| {
            if i < 40 {
                (60.0, 6.0, ValueFlag::Normal)
            } else {
                (60.0, 6.0, ValueFlag::Maintenance)
            }
        });
        assert!(out.is_empty(), "{out:#?}");
    }

    #[test]
    fn ammonia_slip_is_its_own_kind() {
        let t = topo();
        let out = run_detector(
            Exceedance::boxed,
            &t,
            (0..180).map(|i| {
                let nh3 = if i >= 60 { 9.0 } else { 0.7 };
                with_cems(
                    row(i, &[]),
                    &[
                        ("a21026", 10.0),
                        ("a19001", 6.0),
                        ("a21001", nh3),
                        ("a21002", 12.0),
                    ],
                )
            }),
        );
        let slip: Vec<_> = out
            .iter()
            .filter(|f| f.kind == AnomalyKind::AmmoniaSlip && !f.ongoing)
            .collect();
        assert_eq!(slip.len(), 1, "{out:#?}");
        assert_eq!(slip[0].start_ms, T0 + MS_PER_HOUR);
        assert_eq!(slip[0].evidence["nox_mean_mg_m3"], 12.0);
        assert!(!out.iter().any(|f| f.kind == AnomalyKind::Exceedance));
    }

    #[test]
    fn noisy_minutes_do_not_make_an_hour() {
        // A noisy NH3 analyzer: one minute in ten at 10 mg/m³, the rest 1.0 → hourly mean 1.9 < 2.5.
        let t = topo();
        let out = run_detector(
            Exceedance::boxed,
            &t,
            (0..240).map(|i| {
                let nh3 = if i % 10 == 0 { 10.0 } else { 1.0 };
                with_cems(
                    row(i, &[]),
                    &[("a21026", 10.0), ("a19001", 6.0), ("a21001", nh3)],
                )
            }),
        );
        assert!(out.is_empty(), "{out:#?}");
    }
}

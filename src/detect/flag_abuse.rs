//! `FLAG_ABUSE`: the CEMS flags itself stopped, in maintenance or in calibration while flow, temperature and
//! production power say the process runs. Flagged data do not count for exceedance decisions, which is exactly why
//! a false flag is a fraud route.
//!
//! A run of such flags is raised when the evidence says it is not routine:
//! - a stop flag (F) for `stop_minutes` while the stack still carries most of its normal flow (the plant is not
//!   stopped); or
//! - values *under* the flag above the limit for `over_limit_minutes` (the flag hides an exceedance); or
//! - maintenance/calibration flags lasting longer than `long_run_min`.
//!
//! Look-alikes: the daily calibration (about 10 min of C flags, some with span gas over the limit), a planned CEMS
//! maintenance of an hour or two with unremarkable values, and a plant that really is stopped (production off).

use super::kit::{duration_score, Due, Runs, Timing};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::codes::O2;
use crate::domain::{units, AnomalyKind, ValueFlag};
use serde::{Deserialize, Serialize};

/// Detector name and version.
pub const NAME: &str = "flag_abuse/1";

/// Timing: raised as soon as the evidence suffices (see module docs); gaps under 15 min bridged.
const TIMING: Timing = Timing::minutes(0, 15, 60);
/// Minutes of stop flags on a flowing stack that make a run suspicious.
const STOP_MINUTES: u32 = 30;
/// Minutes of over-limit values under maintenance/calibration flags that make a run suspicious.
const OVER_LIMIT_MINUTES: u32 = 30;
/// A maintenance/calibration run longer than this is suspicious by itself.
const LONG_RUN_MIN: u32 = 240;
/// Share of normal stack flow above which the stack is "flowing".
const FLOWING_FRACTION: f64 = 0.5;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stats {
    stopped: u32,
    maintenance: u32,
    calibration: u32,
    over_limit_under_flag: u32,
    flow_fraction_sum: f64,
    production_kw_sum: f64,
}

/// The figures of an episode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Figures {
    pub(crate) duration_min: f64,
    pub(crate) minutes_flag_stopped: u32,
    pub(crate) minutes_flag_maintenance: u32,
    pub(crate) minutes_flag_calibration: u32,
    /// Minutes whose values under the flag were over a limit.
    pub(crate) minutes_over_limit_under_flag: u32,
    pub(crate) flow_fraction_of_normal_mean: f64,
    pub(crate) production_kw_mean: f64,
}

/// The detector.
pub struct FlagAbuse {
    runs: Runs<Stats>,
}

impl FlagAbuse {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(_config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            runs: Runs::default(),
        })
    }

    fn finding(&self, ctx: &OutletContext<'_>, due: &Due<Stats>) -> Finding {
        let t = ctx.topology;
        let (run, s) = (&due.run, &due.run.stats);
        let n = f64::from(run.held.max(1));
        let minutes = run.duration_min();
        let damning = f64::from(s.stopped + s.over_limit_under_flag);
        let score = duration_score(damning.max(minutes / 4.0) - 30.0, 90.0);
        let figures = Figures {
            duration_min: minutes,
            minutes_flag_stopped: s.stopped,
            minutes_flag_maintenance: s.maintenance,
            minutes_flag_calibration: s.calibration,
            minutes_over_limit_under_flag: s.over_limit_under_flag,
            flow_fraction_of_normal_mean: s.flow_fraction_sum / n,
            production_kw_mean: s.production_kw_sum / n,
        };
        let mut source_ids = vec![t.outlet.id.clone()];
        source_ids.extend(t.production.iter().map(|m| m.id.clone()));
        due.finding(AnomalyKind::FlagAbuse, NAME, score, source_ids, &figures)
    }
}

impl Detector for FlagAbuse {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let t = ctx.topology;
        let p = minute.process;
        let row = minute.row;
        let now = row.minute_ms;
        let monitored = t.monitored_codes();
        let flags: Vec<ValueFlag> = monitored
            .iter()
            .filter_map(|c| row.cems.get(c))
            .map(|r| r.flag)
            .collect();
        let count = |f: ValueFlag| flags.iter().filter(|x| **x == f).count();
        let majority = |f: ValueFlag| !flags.is_empty() && 2 * count(f) > flags.len();
        let flag = [
            ValueFlag::Stopped,
            ValueFlag::Maintenance,
            ValueFlag::Calibration,
        ]
        .into_iter()
        .find(|f| majority(*f));
        let flowing = p.flow_fraction().is_some_and(|f| f >= FLOWING_FRACTION);
        let due = match flag {
            Some(flag) if p.running() && flowing => {
                // Values under the flag, converted with the raw O2 reading (whatever its flag).
                let o2 = row.cems.get(O2).map(|r| r.value);
                let reference = t.outlet.reference_o2_pct;
                let over = t.outlet.limits_mg_m3.iter().any(|(code, limit)| {
                    row.cems.get(code).is_some_and(|r| {
                        let value = if reference > 0.0 {
                            o2.and_then(|o2| {
                                units::converted_mg_m3(
                                    r.value,
                                    o2,
                                    reference,
                                    units::DEFAULT_O2_CEILING_PCT,
                                )
                            })
                        } else {
                            Some(r.value)
                        };
                        value.is_some_and(|v| v > *limit)
                    })
                });
                let flow_fraction = p.flow_fraction().unwrap_or(0.0);
                self.runs.bad_when(
                    "",
                    now,
                    TIMING,
                    Stats::default,
                    |s| {
                        match flag {
                            ValueFlag::Stopped => s.stopped += 1,
                            ValueFlag::Maintenance => s.maintenance += 1,
                            _ => s.calibration += 1,
                        }
                        if over {
                            s.over_limit_under_flag += 1;
                        }
                        s.flow_fraction_sum += flow_fraction;
                        s.production_kw_sum += p.production_kw;
                    },
                    |run| {
                        run.stats.stopped >= STOP_MINUTES
                            || run.stats.over_limit_under_flag >= OVER_LIMIT_MINUTES
                            || run.held >= LONG_RUN_MIN
                    },
                )
            }
            _ if p.production_on == Some(false) || (flag.is_none() && !flags.is_empty()) => {
                self.runs.good("", now, TIMING)
            }
            _ => None,
        };
        if let Some(due) = due {
            out.push(self.finding(ctx, &due));
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        for due in self.runs.finish() {
            out.push(self.finding(ctx, &due));
        }
    }

    persist_state!(runs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{row, run_detector, topology_with_limits, with_cems, T0};
    use crate::domain::MS_PER_MINUTE;
    use crate::signal::align::OutletRow;

    fn topo() -> crate::domain::OutletTopology {
        topology_with_limits(&[("a21026", 35.0)])
    }

    /// A running plant; SO2 raw `so2` at O2 6 % (= converted), flow `flow`, all CEMS channels flagged `flag`.
    fn minute(i: i64, production_kw: f64, so2: f64, flow: f64, flag: ValueFlag) -> OutletRow {
        let mut r = with_cems(
            row(i, &[("p1", Some(production_kw)), ("t1", Some(150.0))]),
            &[("a21026", so2), ("a19001", 6.0), ("a00000", flow)],
        );
        for v in r.cems.values_mut() {
            v.flag = flag;
        }
        r
    }

    fn run(f: impl Fn(i64) -> OutletRow) -> Vec<Finding> {
        run_detector(FlagAbuse::boxed, &topo(), (0..900).map(f))
    }

    #[test]
    fn stop_flag_on_a_flowing_stack_is_abuse() {
        let out = run(|i| {
            if (400..520).contains(&i) {
                minute(i, 800.0, 20.0, 300.0, ValueFlag::Stopped)
            } else {
                minute(i, 800.0, 20.0, 300.0, ValueFlag::Normal)
            }
        });
        let closed: Vec<_> = out.iter().filter(|f| !f.ongoing).collect();
        assert_eq!(closed.len(), 1, "{out:#?}");
        assert_eq!(
            (closed[0].start_ms, closed[0].end_ms),
            (T0 + 400 * MS_PER_MINUTE, T0 + 520 * MS_PER_MINUTE)
        );
        assert_eq!(closed[0].detected_at_ms, T0 + 430 * MS_PER_MINUTE);
        assert!(closed[0].evidence["flow_fraction_of_normal_mean"] > 0.9);
    }

    #[test]
    fn maintenance_flag_hiding_an_exceedance_is_abuse() {
        let out = run(|i| {
            if (400..520).contains(&i) {
                minute(i, 800.0, 90.0, 300.0, ValueFlag::Maintenance)
            } else {
                minute(i, 800.0, 20.0, 300.0, ValueFlag::Normal)
            }
        });
        assert!(
            out.iter()
                .any(|f| !f.ongoing && f.evidence["minutes_over_limit_under_flag"] == 120.0),
            "{out:#?}"
        );
    }

    #[test]
    fn routine_calibration_maintenance_and_real_stops_are_not() {
        let out = run(|i| match i {
            // Daily calibration: 10 min of C, half of it span gas at 80 (over the limit).
            300..310 => minute(
                i,
                800.0,
                if i < 305 { 0.0 } else { 80.0 },
                300.0,
                ValueFlag::Calibration,
            ),
            // Planned maintenance for 90 min with ordinary values.
            400..490 => minute(i, 800.0, 20.0, 300.0, ValueFlag::Maintenance),
            // The plant really stops: production off, flow collapses, CEMS flags F.
            600..800 => minute(i, 10.0, 0.5, 8.0, ValueFlag::Stopped),
            _ => minute(i, 800.0, 20.0, 300.0, ValueFlag::Normal),
        });
        assert!(out.is_empty(), "{out:#?}");
    }
}

//! `DILUTION`: the sample (or the stack) diluted so that pollutant readings fall.
//!
//! Converted concentrations are invariant to honest dilution: a real duct leak adds air, raising O2 and lowering raw
//! concentrations in the same proportion, so the converted value stays put. Cheating dilution does not: air let into
//! the pollutant analyzer's line (O2 measured elsewhere or less diluted) lowers the *converted* values while O2 rises
//! above its band; nitrogen or zero gas lowers pollutants and O2 together. The test: O2 more than
//! `max(1.5 points, 4 σ)` away from the outlet's learned level at normal load, **and** converted pollutants at less
//! than 90 % of their learned level, for an hour.
//!
//! Once 50 runs of the condition are known, a run must also outlast what the outlet's own runs make likely at the
//! configured false-alarm rate ([`super::kit::null::RunLengths`]).
//!
//! Look-alikes: start-up, shutdown and low load (production below 70 % of normal is not judged; O2 rises there by
//! nature), real duct leaks (converted values unchanged), calibrations (flagged).

use super::kit::null::RunLengths;
use super::kit::{duration_score, Due, Runs, Timing};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::codes::O2;
use crate::domain::{units, AnomalyKind};
use crate::signal::cems;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Detector name and version.
pub const NAME: &str = "dilution/2";

const TIMING: Timing = Timing::minutes(60, 10, 120);
/// Weight of a new minute in the learned levels once warmed up (~1 day).
const ALPHA: f64 = 1.0 / 1440.0;
/// Minutes learned before judging.
const MATURE: u64 = 360;
/// Production share of normal below which O2 is not judged.
const NORMAL_LOAD: f64 = 0.7;
/// Weight of a minute in the smoothed ratio and shift (~10 minutes).
const SMOOTH: f64 = 0.1;
/// Converted pollutants below this share of their level count as lowered.
const POLLUTANT_DROP: f64 = 0.9;

/// An exponentially weighted level and spread.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Level {
    mean: f64,
    var: f64,
    n: u64,
}

impl Level {
    fn learn(&mut self, x: f64) {
        let a = (1.0 / (self.n as f64 + 1.0)).max(ALPHA);
        let d = x - self.mean;
        self.mean += a * d;
        self.var = (1.0 - a) * (self.var + a * d * d);
        self.n += 1;
    }

    fn sd(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stats {
    o2_sum: f64,
    o2_level: f64,
    ratio_sum: f64,
    air: u32,
    nitrogen: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    o2: Level,
    smooth_ratio: f64,
    smooth_shift: f64,
    /// Level of log(converted) per pollutant.
    pollutants: BTreeMap<String, Level>,
    runs: Runs<Stats>,
    /// How long the condition's runs last at this outlet, raised or not.
    lengths: RunLengths,
}

/// The figures of an episode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Figures {
    pub(crate) duration_min: f64,
    pub(crate) o2_mean_pct: f64,
    /// The outlet's learned O2 level at normal load.
    pub(crate) o2_normal_pct: f64,
    pub(crate) pollutants_fraction_of_normal: f64,
    /// O2 raised (air let in) rather than lowered with the pollutants (nitrogen or zero gas).
    pub(crate) air_dilution: bool,
}

/// The detector.
pub struct Dilution {
    /// False alarms per outlet-day the run-length bar is set for.
    false_alarms_per_day: f64,
    state: State,
}

impl Dilution {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            false_alarms_per_day: config.false_alarms_per_day,
            state: State::default(),
        })
    }

    fn finding(&self, ctx: &OutletContext<'_>, due: &Due<Stats>) -> Finding {
        let t = ctx.topology;
        let (run, s) = (&due.run, &due.run.stats);
        let n = f64::from(run.held.max(1));
        let minutes = run.duration_min();
        let ratio = s.ratio_sum / n;
        let figures = Figures {
            duration_min: minutes,
            o2_mean_pct: s.o2_sum / n,
            o2_normal_pct: s.o2_level,
            pollutants_fraction_of_normal: ratio,
            air_dilution: s.air >= s.nitrogen,
        };
        let score = duration_score(minutes - f64::from(TIMING.grace_min), 120.0)
            * (1.5 - ratio).clamp(0.6, 1.0);
        due.finding(
            AnomalyKind::Dilution,
            NAME,
            score,
            vec![t.outlet.id.clone()],
            &figures,
        )
    }
}

impl Detector for Dilution {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let t = ctx.topology;
        let reference = t.outlet.reference_o2_pct;
        if reference <= 0.0 {
            return;
        }
        let row = minute.row;
        let p = minute.process;
        let now = row.minute_ms;
        let (Some(o2), Some(fraction)) = (cems::raw(row, O2), p.production_fraction()) else {
            return;
        };
        if !p.running() || fraction < NORMAL_LOAD {
            return; // neither extends nor closes: low load is not judged
        }
        let mut ratios = Vec::new();
        let mut logs = Vec::new();
        for code in t.monitored_codes() {
            let Some(cz) =
                cems::converted(row, &code, reference, units::DEFAULT_O2_CEILING_PCT).valid()
            else {
                continue;
            };
            if cz <= 0.0 {
                continue;
            }
            let level = self.state.pollutants.get(&code);
            if let Some(l) = level.filter(|l| l.n >= MATURE) {
                ratios.push((cz.ln() - l.mean).exp());
            }
            logs.push((code, cz.ln()));
        }
        let mature = self.state.o2.n >= MATURE && !ratios.is_empty();
        let threshold = (4.0 * self.state.o2.sd()).max(1.5);
        let shift = o2 - self.state.o2.mean;
        let instant = if ratios.is_empty() {
            1.0
        } else {
            ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64
        }
        .exp();
        // Minute readings are noisy: judge a 10-minute smoothed ratio and O2 shift.
        self.state.smooth_ratio += SMOOTH * (instant - self.state.smooth_ratio);
        self.state.smooth_shift += SMOOTH * (shift - self.state.smooth_shift);
        let ratio = self.state.smooth_ratio;
        let lowered = ratio < POLLUTANT_DROP;
        let bad = mature && self.state.smooth_shift.abs() > threshold && lowered;
        // Learn while young, then only from minutes inside the band (a cheat must not teach the band).
        if self.state.o2.n < MATURE || (!bad && self.state.smooth_shift.abs() <= threshold) {
            self.state.o2.learn(o2);
            for (code, l) in logs {
                self.state.pollutants.entry(code).or_default().learn(l);
            }
        }
        let due = if bad {
            let level = self.state.o2.mean;
            self.state.runs.bad_beyond_own(
                "",
                now,
                TIMING,
                &self.state.lengths,
                self.false_alarms_per_day,
                Stats::default,
                |s| {
                    s.o2_sum += o2;
                    s.o2_level = level;
                    s.ratio_sum += ratio;
                    if shift > 0.0 {
                        s.air += 1;
                    } else {
                        s.nitrogen += 1;
                    }
                },
            )
        } else if mature {
            self.state
                .runs
                .good_recorded("", now, TIMING, &mut self.state.lengths)
        } else {
            None
        };
        if let Some(due) = due {
            out.push(self.finding(ctx, &due));
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        for due in self.state.runs.finish() {
            out.push(self.finding(ctx, &due));
        }
    }

    persist_state!(state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{row, run_detector, topology_with_limits, with_cems};

    fn topo() -> crate::domain::OutletTopology {
        topology_with_limits(&[("a21026", 35.0)])
    }

    fn noise(i: i64, scale: f64) -> f64 {
        (((i * 7919) % 23) as f64 - 11.0) / 11.0 * scale
    }

    /// SO2 converted level ~20 at O2 ~6 % (reference 6 %: raw = converted), through a function that may dilute.
    fn run(f: impl Fn(i64, f64, f64) -> (f64, f64, f64)) -> Vec<Finding> {
        run_detector(
            Dilution::boxed,
            &topo(),
            (0..1500).map(|i| {
                let (so2_raw, o2, production) = f(i, 20.0 + noise(i, 1.0), 6.0 + noise(i * 3, 0.2));
                with_cems(
                    row(i, &[("p1", Some(production)), ("t1", Some(150.0))]),
                    &[("a21026", so2_raw), ("a19001", o2)],
                )
            }),
        )
    }

    #[test]
    fn air_let_into_the_sample_line_is_found() {
        // k = 0.7 of pollutants, O2 pulled 60 % of the way towards air dilution: converted falls ~15 %.
        let out = run(|i, so2, o2| {
            if (1000..1200).contains(&i) {
                (so2 * 0.7, o2 + (20.9 - o2) * 0.3 * 0.6, 800.0)
            } else {
                (so2, o2, 800.0)
            }
        });
        assert_eq!(out.iter().filter(|f| !f.ongoing).count(), 1, "{out:#?}");
        let f = out.last().unwrap();
        assert!(f.evidence["pollutants_fraction_of_normal"] < 0.9);
        assert_eq!(f.evidence["air_dilution"], 1.0);
    }

    #[test]
    fn a_real_duct_leak_and_low_load_are_not() {
        // A leak: raw pollutants and O2 both diluted by the same air, so the converted value is unchanged.
        let leak = run(|i, so2, o2| {
            if (1000..1200).contains(&i) {
                let k = 0.7;
                let o2_leak = 20.9 - k * (20.9 - o2);
                (
                    so2 * k * (21.0 - 6.0) / (21.0 - o2) * (21.0 - o2) / (21.0 - 6.0),
                    o2_leak,
                    800.0,
                )
            } else {
                (so2, o2, 800.0)
            }
        });
        assert!(leak.is_empty(), "{leak:#?}");
        // Low load: O2 up 3 points and pollutants lower, but production at 40 % of normal.
        let low = run(|i, so2, o2| {
            if (1000..1200).contains(&i) {
                (so2 * 0.5, o2 + 3.0, 320.0)
            } else {
                (so2, o2, 800.0)
            }
        });
        assert!(low.is_empty(), "{low:#?}");
    }
}

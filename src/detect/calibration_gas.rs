//! `CALIBRATION_GAS`: standard or zero gas fed to the analyzer as if it were the sample. The gas channels sit at a
//! constant while O2 reads a cylinder value (≈ 0 % for nitrogen zero gas, ≈ 20.9 % for air) and the stack's flow
//! and temperature keep moving, outside any calibration-flagged window.
//!
//! Once 50 runs of the condition are known, a run must also outlast what the outlet's own runs make likely at the
//! configured false-alarm rate ([`super::kit::null::RunLengths`]).
//!
//! Look-alikes: real calibrations (flagged C, so not valid data and not judged), blow-back (minutes, shorter than the
//! 30-minute grace), a stopped plant (O2 at ambient, but production off and flow collapsed).

use super::kit::null::RunLengths;
use super::kit::{duration_score, Due, Runs, Timing};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::codes::{O2, PM};
use crate::domain::AnomalyKind;
use crate::signal::cems::{self, Resolution};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Detector name and version.
pub const NAME: &str = "calibration_gas/2";

/// Half an hour of the signature before raising (blow-back and zero checks take minutes).
const TIMING: Timing = Timing::minutes(30, 5, 120);
/// O2 (%) at or below which the sample is nitrogen / zero gas.
pub(crate) const ZERO_GAS_O2: f64 = 0.5;
/// O2 (%) at or above which the sample is air.
const AIR_O2: f64 = 20.5;
/// Share of normal stack flow that shows the plant running.
const FLOWING: f64 = 0.5;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stats {
    o2_sum: f64,
    gas_values: BTreeMap<String, f64>,
    flow_fraction_sum: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    resolution: BTreeMap<String, Resolution>,
    previous: BTreeMap<String, f64>,
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
    pub(crate) flow_fraction_of_normal_mean: f64,
    /// The constant reading of each gas channel, as `{code}_constant` (one figure per channel).
    #[serde(flatten)]
    pub(crate) constants: BTreeMap<String, f64>,
}

/// Suffix of a gas channel's constant reading in the evidence.
pub(crate) const CONSTANT: &str = "_constant";

/// The detector.
pub struct CalibrationGas {
    /// False alarms per outlet-day the run-length bar is set for.
    false_alarms_per_day: f64,
    state: State,
}

impl CalibrationGas {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            false_alarms_per_day: config.false_alarms_per_day,
            state: State::default(),
        })
    }

    fn finding(ctx: &OutletContext<'_>, due: &Due<Stats>) -> Finding {
        let t = ctx.topology;
        let (run, s) = (&due.run, &due.run.stats);
        let n = f64::from(run.held.max(1));
        let minutes = run.duration_min();
        let figures = Figures {
            duration_min: minutes,
            o2_mean_pct: s.o2_sum / n,
            flow_fraction_of_normal_mean: s.flow_fraction_sum / n,
            constants: s
                .gas_values
                .iter()
                .map(|(code, v)| (format!("{code}{CONSTANT}"), *v))
                .collect(),
        };
        due.finding(
            AnomalyKind::CalibrationGas,
            NAME,
            duration_score(minutes - f64::from(TIMING.grace_min), 60.0),
            vec![t.outlet.id.clone()],
            &figures,
        )
    }
}

impl Detector for CalibrationGas {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let t = ctx.topology;
        if t.outlet.reference_o2_pct <= 0.0 {
            return; // ventilation-air outlets (VOC) read ambient O2 by nature
        }
        let row = minute.row;
        let p = minute.process;
        let now = row.minute_ms;
        let Some(o2) = cems::minute_raw(row, O2) else {
            return;
        };
        let cylinder = o2 <= ZERO_GAS_O2 || o2 >= AIR_O2;
        let flowing = p.flow_fraction().is_some_and(|f| f >= FLOWING);
        // Every gas channel unchanged (within its resolution) since the previous minute.
        let mut constant = true;
        let mut gas_values = BTreeMap::new();
        let mut seen = 0;
        // Only gas analyzers can be fed cylinder gas; particulate is measured optically.
        for code in t.monitored_codes().into_iter().filter(|c| c != PM) {
            let Some(v) = cems::minute_raw(row, &code) else {
                continue;
            };
            seen += 1;
            let res = self.state.resolution.entry(code.clone()).or_default();
            let step = res.step();
            res.observe(v);
            if let Some(prev) = self.state.previous.insert(code.clone(), v) {
                constant &= (v - prev).abs() <= 1.01 * step;
            } else {
                constant = false;
            }
            gas_values.insert(code, v);
        }
        let bad = cylinder && constant && seen > 0 && flowing && p.running();
        let due = if bad {
            let flow_fraction = p.flow_fraction().unwrap_or(0.0);
            self.state.runs.bad_beyond_own(
                "",
                now,
                TIMING,
                &self.state.lengths,
                self.false_alarms_per_day,
                Stats::default,
                |s| {
                    s.o2_sum += o2;
                    s.flow_fraction_sum += flow_fraction;
                    s.gas_values = gas_values;
                },
            )
        } else {
            self.state
                .runs
                .good_recorded("", now, TIMING, &mut self.state.lengths)
        };
        if let Some(due) = due {
            out.push(Self::finding(ctx, &due));
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        for due in self.state.runs.finish() {
            out.push(Self::finding(ctx, &due));
        }
    }

    persist_state!(state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{row, run_detector, topology_with_limits, with_cems, T0};
    use crate::domain::{ValueFlag, MS_PER_MINUTE};
    use crate::signal::align::OutletRow;

    fn topo() -> crate::domain::OutletTopology {
        topology_with_limits(&[("a21026", 35.0), ("a21002", 50.0)])
    }

    fn minute(
        i: i64,
        so2: f64,
        nox: f64,
        o2: f64,
        production: f64,
        flow: f64,
        flag: ValueFlag,
    ) -> OutletRow {
        let mut r = with_cems(
            row(i, &[("p1", Some(production)), ("t1", Some(150.0))]),
            &[
                ("a21026", so2),
                ("a21002", nox),
                ("a19001", o2),
                ("a00000", flow),
            ],
        );
        for (code, v) in r.cems.iter_mut() {
            if code != "a00000" {
                v.flag = flag;
            }
        }
        r
    }

    fn noisy(i: i64, base: f64) -> f64 {
        base + (((i * 7919) % 23) as f64 - 11.0) * 0.1
    }

    #[test]
    fn span_gas_with_air_o2_and_zero_gas_with_nitrogen_are_found() {
        for o2 in [20.9, 0.2] {
            let out = run_detector(
                CalibrationGas::boxed,
                &topo(),
                (0..500).map(|i| {
                    if (200..300).contains(&i) {
                        minute(i, 20.0, 30.0, o2, 800.0, noisy(i, 300.0), ValueFlag::Normal)
                    } else {
                        minute(
                            i,
                            noisy(i, 22.0),
                            noisy(i, 35.0),
                            noisy(i, 6.0),
                            800.0,
                            noisy(i, 300.0),
                            ValueFlag::Normal,
                        )
                    }
                }),
            );
            let closed: Vec<_> = out.iter().filter(|f| !f.ongoing).collect();
            assert_eq!(closed.len(), 1, "O2 {o2}: {out:#?}");
            assert!((closed[0].start_ms - (T0 + 200 * MS_PER_MINUTE)).abs() <= MS_PER_MINUTE);
            assert_eq!(closed[0].evidence["a21026_constant"], 20.0);
        }
    }

    #[test]
    fn real_calibrations_blowback_and_stopped_plants_are_not() {
        let out = run_detector(
            CalibrationGas::boxed,
            &topo(),
            (0..900).map(|i| match i {
                // Flagged calibration, 40 minutes of span gas.
                100..140 => minute(
                    i,
                    80.0,
                    80.0,
                    20.9,
                    800.0,
                    noisy(i, 300.0),
                    ValueFlag::Calibration,
                ),
                // Blow-back: 10 minutes of air.
                300..310 => minute(i, 0.0, 0.0, 20.9, 800.0, noisy(i, 300.0), ValueFlag::Normal),
                // Plant stopped: ambient air in the stack, no production, flow collapsed.
                500..800 => minute(i, 0.0, 0.0, 20.9, 10.0, 5.0, ValueFlag::Normal),
                _ => minute(
                    i,
                    noisy(i, 22.0),
                    noisy(i, 35.0),
                    noisy(i, 6.0),
                    800.0,
                    noisy(i, 300.0),
                    ValueFlag::Normal,
                ),
            }),
        );
        assert!(out.is_empty(), "{out:#?}");
    }
}

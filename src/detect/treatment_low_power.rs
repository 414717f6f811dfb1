//! `TREATMENT_LOW_POWER`: a treatment facility runs, but far below the power the current production load needs
//! (idling, reduced frequency, fewer pumps than needed).
//!
//! Each facility's ratio of treatment power to production power is learned while both run normally; a minute is
//! suspicious when the facility draws less than half its normal running power *and* its ratio to production falls
//! below `RATIO_DROP` of the learned ratio. The ratio test is what keeps variable-speed fans at low load quiet: when
//! production falls, a healthy facility's power falls with it and the ratio holds.

use super::kit::{duration_score, Due, Runs, Timing};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::AnomalyKind;
use crate::signal::equipment::EquipmentState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Detector name and version.
pub const NAME: &str = "treatment_low_power/1";

/// Timing: an hour of evidence before raising (power dips for minutes are routine); gaps under 15 min bridged.
const TIMING: Timing = Timing::minutes(60, 15, 120);
/// A ratio below this share of the learned one is too low for the load.
const RATIO_DROP: f64 = 0.6;
/// Production below this share of normal is not judged (start-up, shutdown); reduced production (a restriction
/// order) still is: the ratio test holds at any load.
const MIN_PRODUCTION_FRACTION: f64 = 0.3;
/// Learn the ratio only near normal load, where it is best defined.
const LEARN_PRODUCTION_FRACTION: f64 = 0.6;
/// Weight of a new minute in the learned ratio once warmed up (~1 day).
const RATIO_ALPHA: f64 = 1.0 / 1440.0;
/// Minutes learned before the ratio is trusted.
const MATURE: u64 = 240;

/// What normal looks like for one facility: its ratio to production power, and the production range it was learned
/// on (judging outside that range would extrapolate a relation nobody has seen, e.g. a fan's cube law at low load).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Ratio {
    mean: f64,
    production_mean_kw: f64,
    production_var_kw2: f64,
    samples: u64,
}

impl Ratio {
    fn learn(&mut self, ratio: f64, production_kw: f64) {
        let alpha = (1.0 / (self.samples as f64 + 1.0)).max(RATIO_ALPHA);
        self.mean += alpha * (ratio - self.mean);
        let d = production_kw - self.production_mean_kw;
        self.production_mean_kw += alpha * d;
        self.production_var_kw2 = (1.0 - alpha) * (self.production_var_kw2 + alpha * d * d);
        self.samples += 1;
    }

    /// Whether `production_kw` lies in the range the ratio was learned on.
    fn familiar(&self, production_kw: f64) -> bool {
        let band = (2.5 * self.production_var_kw2.sqrt()).max(0.15 * self.production_mean_kw);
        production_kw >= self.production_mean_kw - band
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stats {
    treatment_kw_sum: f64,
    treatment_normal_kw: f64,
    production_kw_sum: f64,
    production_fraction_sum: f64,
    ratio_sum: f64,
    normal_ratio: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    ratios: BTreeMap<String, Ratio>,
    runs: Runs<Stats>,
}

/// The figures of an episode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Figures {
    /// The treatment meter.
    pub(crate) meter_id: String,
    /// What it powers (desulfurization, dust removal, ...).
    pub(crate) equipment: String,
    pub(crate) duration_min: f64,
    pub(crate) treatment_kw_mean: f64,
    pub(crate) treatment_normal_kw: f64,
    pub(crate) treatment_fraction_of_normal: f64,
    pub(crate) ratio_to_production_mean: f64,
    pub(crate) normal_ratio_to_production: f64,
    pub(crate) production_kw_mean: f64,
    pub(crate) production_fraction_of_normal_mean: f64,
}

/// The detector.
pub struct TreatmentLowPower {
    state: State,
}

impl TreatmentLowPower {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(_config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            state: State::default(),
        })
    }

    fn finding(ctx: &OutletContext<'_>, due: &Due<Stats>) -> Finding {
        let t = ctx.topology;
        let (run, s) = (&due.run, &due.run.stats);
        let n = f64::from(run.held.max(1));
        let minutes = run.duration_min();
        let treatment_kw = s.treatment_kw_sum / n;
        let fraction = if s.treatment_normal_kw > 0.0 {
            treatment_kw / s.treatment_normal_kw
        } else {
            0.0
        };
        let ratio_share = if s.normal_ratio > 0.0 {
            s.ratio_sum / n / s.normal_ratio
        } else {
            0.0
        };
        let score = duration_score(minutes - f64::from(TIMING.grace_min), 120.0)
            * (1.2 - ratio_share).clamp(0.5, 1.0);
        let equipment = t
            .treatment
            .iter()
            .find(|m| m.id == due.key)
            .map(|m| m.equipment.clone())
            .unwrap_or_default();
        let figures = Figures {
            meter_id: due.key.clone(),
            equipment,
            duration_min: minutes,
            treatment_kw_mean: treatment_kw,
            treatment_normal_kw: s.treatment_normal_kw,
            treatment_fraction_of_normal: fraction,
            ratio_to_production_mean: s.ratio_sum / n,
            normal_ratio_to_production: s.normal_ratio,
            production_kw_mean: s.production_kw_sum / n,
            production_fraction_of_normal_mean: s.production_fraction_sum / n,
        };
        let mut source_ids = vec![t.outlet.id.clone(), due.key.clone()];
        source_ids.extend(t.production.iter().map(|m| m.id.clone()));
        due.finding(
            AnomalyKind::TreatmentLowPower,
            NAME,
            score,
            source_ids,
            &figures,
        )
    }
}

impl Detector for TreatmentLowPower {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let t = ctx.topology;
        let p = minute.process;
        let now = minute.row.minute_ms;
        let Some(production_fraction) = p.production_fraction() else {
            return;
        };
        if p.production_kw <= 0.0 {
            return;
        }
        for m in &t.treatment {
            let Some(tm) = p.meters.get(&m.id).copied() else {
                continue;
            };
            let Some(kw) = tm.kw else {
                continue;
            };
            let ratio = kw / p.production_kw;
            let learned = self.state.ratios.entry(m.id.clone()).or_default();
            let normal_ratio = (learned.samples >= MATURE).then_some(learned.mean);
            let judged = p.running() && production_fraction >= MIN_PRODUCTION_FRACTION;
            let familiar = learned.familiar(p.production_kw);
            if judged
                && production_fraction >= LEARN_PRODUCTION_FRACTION
                && tm.state == EquipmentState::Running
            {
                learned.learn(ratio, p.production_kw);
            }
            let low = judged
                && familiar
                && tm.state == EquipmentState::Reduced
                && normal_ratio.is_some_and(|r| ratio < RATIO_DROP * r);
            let due = if low {
                let normal_kw = tm.normal_kw.unwrap_or(0.0);
                let nr = normal_ratio.unwrap_or(0.0);
                self.state
                    .runs
                    .bad(&m.id, now, TIMING, Stats::default, |s| {
                        s.treatment_kw_sum += kw;
                        s.treatment_normal_kw = normal_kw;
                        s.production_kw_sum += p.production_kw;
                        s.production_fraction_sum += production_fraction;
                        s.ratio_sum += ratio;
                        s.normal_ratio = nr;
                    })
            } else if p.production_on == Some(false)
                || tm.state == EquipmentState::Running
                || (judged && !low)
            {
                self.state.runs.good(&m.id, now, TIMING)
            } else {
                None
            };
            if let Some(due) = due {
                out.push(Self::finding(ctx, &due));
            }
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
    use crate::detect::testutil::{row, run_detector, topology, T0};
    use crate::domain::MS_PER_MINUTE;

    /// Production load `l` (0..1) → production kW; treatment follows load like a variable-speed fan, times `cut`.
    fn run(f: impl Fn(i64) -> (f64, f64)) -> Vec<Finding> {
        run_detector(
            TreatmentLowPower::boxed,
            &topology(),
            (0..1200).map(|i| {
                let (load, cut) = f(i);
                row(
                    i,
                    &[
                        ("p1", Some(200.0 + 700.0 * load)),
                        ("t1", Some((60.0 + 100.0 * load) * cut)),
                    ],
                )
            }),
        )
    }

    #[test]
    fn fires_when_treatment_idles_under_full_production() {
        let out = run(|i| (0.85, if (600..840).contains(&i) { 0.35 } else { 1.0 }));
        let closed: Vec<_> = out.iter().filter(|f| !f.ongoing).collect();
        assert_eq!(closed.len(), 1, "{out:#?}");
        assert_eq!(
            (closed[0].start_ms, closed[0].end_ms),
            (T0 + 600 * MS_PER_MINUTE, T0 + 840 * MS_PER_MINUTE)
        );
        assert!(closed[0].evidence["treatment_fraction_of_normal"] < 0.5);
    }

    #[test]
    fn a_fan_following_the_cube_law_at_unfamiliar_low_load_is_not() {
        // Learned at load 0.85–0.95; then four hours at 0.5 with a fan whose power goes with load³.
        let out = run_detector(
            TreatmentLowPower::boxed,
            &topology(),
            (0..1200).map(|i| {
                let load: f64 = if (600..840).contains(&i) {
                    0.5
                } else {
                    0.9 + 0.05 * ((i as f64) / 50.0).sin()
                };
                row(
                    i,
                    &[
                        ("p1", Some(200.0 + 700.0 * load)),
                        ("t1", Some(170.0 * load.powi(3))),
                    ],
                )
            }),
        );
        assert!(out.is_empty(), "{out:#?}");
    }

    #[test]
    fn variable_speed_fans_at_low_load_are_not() {
        // Load drops to 0.55 for four hours: treatment power falls with it, the ratio holds.
        let out = run(|i| (if (600..840).contains(&i) { 0.55 } else { 0.85 }, 1.0));
        assert!(out.is_empty(), "{out:#?}");
    }
}

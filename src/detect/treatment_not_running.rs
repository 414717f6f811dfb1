//! `TREATMENT_NOT_RUNNING`: production runs while a treatment facility linked to the same outlet is off or at
//! standby, beyond a grace period.
//!
//! The rule of the trade is that treatment starts before production and stops after it, so the same test catches a
//! scrubber switched off mid-run, a late start and an early stop; the evidence says which. Look-alikes it must
//! survive (DOMAIN.md §5): a plant that is simply stopped (production off: no alarm), a meter that stopped reporting or
//! reports faults (unknown, never "off"), and short dips (the grace period; gaps shorter than `close_after_min`
//! bridge one episode instead of opening many).

use super::kit::{duration_score, Due, Runs, Timing};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::AnomalyKind;
use crate::signal::equipment::EquipmentState;
use serde::{Deserialize, Serialize};

/// Default timing: 15 min of grace for start-up sequencing and switch-overs, gaps under 10 min bridged, hourly
/// updates while it lasts.
pub const TIMING: Timing = Timing::minutes(15, 10, 60);

/// Detector name and version, part of each anomaly.
pub const NAME: &str = "treatment_not_running/1";

/// Sums over one episode of one treatment meter.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stats {
    /// Production was off just before the episode began (treatment should have started first).
    late_start: bool,
    production_kw_sum: f64,
    treatment_kw_sum: f64,
    treatment_normal_kw: f64,
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
    pub(crate) grace_period_min: f64,
    pub(crate) production_kw_mean: f64,
    pub(crate) treatment_kw_mean: f64,
    pub(crate) treatment_normal_kw: f64,
    pub(crate) treatment_fraction_of_normal: f64,
    pub(crate) minutes_observed: f64,
    /// Production started before treatment.
    pub(crate) late_start: bool,
    /// Treatment stopped before production.
    pub(crate) early_stop: bool,
}

/// The detector.
pub struct TreatmentNotRunning {
    timing: Timing,
    runs: Runs<Stats>,
}

impl TreatmentNotRunning {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            timing: config.treatment_not_running,
            runs: Runs::default(),
        })
    }

    fn finding(&self, ctx: &OutletContext<'_>, due: &Due<Stats>, early_stop: bool) -> Finding {
        let t = ctx.topology;
        let (meter_id, ep, s) = (due.key.as_str(), &due.run, &due.run.stats);
        let minutes = ep.duration_min();
        let n = f64::from(ep.held.max(1));
        let production_kw = s.production_kw_sum / n;
        let treatment_kw = s.treatment_kw_sum / n;
        let normal_kw = s.treatment_normal_kw;
        let fraction = if normal_kw > 0.0 {
            treatment_kw / normal_kw
        } else {
            0.0
        };
        let grace = f64::from(self.timing.grace_min);
        // Fully off counts more than a standby trickle.
        let score = duration_score(minutes - grace, 60.0) * (1.0 - 0.5 * fraction.clamp(0.0, 1.0));
        let equipment = t
            .treatment
            .iter()
            .find(|m| m.id == meter_id)
            .map(|m| m.equipment.clone())
            .unwrap_or_default();
        let figures = Figures {
            meter_id: meter_id.to_string(),
            equipment,
            duration_min: minutes,
            grace_period_min: grace,
            production_kw_mean: production_kw,
            treatment_kw_mean: treatment_kw,
            treatment_normal_kw: normal_kw,
            treatment_fraction_of_normal: fraction,
            minutes_observed: n,
            late_start: s.late_start,
            early_stop,
        };
        let mut source_ids = vec![t.outlet.id.clone(), meter_id.to_string()];
        source_ids.extend(t.production.iter().map(|m| m.id.clone()));
        due.finding(
            AnomalyKind::TreatmentNotRunning,
            NAME,
            score,
            source_ids,
            &figures,
        )
    }
}

impl Detector for TreatmentNotRunning {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let t = ctx.topology;
        if t.production.is_empty() || t.treatment.is_empty() {
            return;
        }
        let p = minute.process;
        let now = minute.row.minute_ms;
        for m in &t.treatment {
            let Some(tm) = p.meters.get(&m.id).copied() else {
                continue;
            };
            let due = if p.running() && tm.state == EquipmentState::NotRunning {
                self.runs.bad(
                    &m.id,
                    now,
                    self.timing,
                    || Stats {
                        late_start: !p.production_was_on,
                        ..Stats::default()
                    },
                    |s| {
                        s.production_kw_sum += p.production_kw;
                        s.treatment_kw_sum += tm.kw.unwrap_or(0.0);
                        s.treatment_normal_kw = tm.normal_kw.unwrap_or(0.0);
                    },
                )
            } else if p.production_on == Some(false)
                || (p.running()
                    && matches!(tm.state, EquipmentState::Running | EquipmentState::Reduced))
            {
                // Production known to be off, or treatment known to run: the condition is over. Treatment unknown
                // (meter silent or faulty) holds the episode as it is.
                self.runs.good(&m.id, now, self.timing)
            } else {
                None
            };
            if let Some(due) = due {
                // Closed because production stopped (rather than treatment coming back): an early stop.
                let early_stop = !due.ongoing && p.production_on == Some(false);
                out.push(self.finding(ctx, &due, early_stop));
            }
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        for due in self.runs.finish() {
            out.push(self.finding(ctx, &due, false));
        }
    }

    persist_state!(runs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{row, run_detector, summary_en, topology, T0};
    use crate::domain::MS_PER_MINUTE;

    /// Runs the detector over minutes built by `f(i)` → (production kW, treatment kW).
    fn run(minutes: i64, f: impl Fn(i64) -> (Option<f64>, Option<f64>)) -> Vec<Finding> {
        let topo = topology();
        run_detector(
            TreatmentNotRunning::boxed,
            &topo,
            (0..minutes).map(|i| {
                let (p, t) = f(i);
                row(i, &[("p1", p), ("t1", t)])
            }),
        )
    }

    fn closed(findings: &[Finding]) -> Vec<&Finding> {
        findings.iter().filter(|f| !f.ongoing).collect()
    }

    #[test]
    fn fires_when_scrubber_is_switched_off_mid_run() {
        // Production at 800 kW all day; scrubber 150 kW, off (2 kW) from minute 300 to 420.
        let out = run(720, |i| {
            let t = if (300..420).contains(&i) { 2.0 } else { 150.0 };
            (Some(800.0), Some(t))
        });
        let eps = closed(&out);
        assert_eq!(eps.len(), 1, "{out:#?}");
        let e = eps[0];
        assert_eq!(e.start_ms, T0 + 300 * MS_PER_MINUTE);
        assert_eq!(e.end_ms, T0 + 420 * MS_PER_MINUTE);
        assert_eq!(e.evidence["duration_min"], 120.0);
        assert!(e.evidence["treatment_fraction_of_normal"] < 0.05);
        assert_eq!(e.evidence["late_start"], 0.0);
        assert!(e.score > 0.7, "{}", e.score);
        // Raised once the grace period had passed, not at the start.
        let first = out.iter().find(|f| f.ongoing).unwrap();
        assert_eq!(first.detected_at_ms, T0 + 315 * MS_PER_MINUTE);
        assert!(summary_en(e).contains("not running"), "{}", summary_en(e));
    }

    #[test]
    fn late_start_and_early_stop_are_caught_and_labelled() {
        // Plant off until 100; production starts at 100, treatment only at 160; treatment stops at 600, production at 650.
        let out = run(720, |i| {
            let p = if (100..650).contains(&i) { 800.0 } else { 0.0 };
            let t = if (160..600).contains(&i) { 150.0 } else { 1.0 };
            (Some(p), Some(t))
        });
        let eps = closed(&out);
        assert_eq!(eps.len(), 2, "{eps:#?}");
        assert_eq!(eps[0].start_ms, T0 + 100 * MS_PER_MINUTE);
        assert_eq!(eps[0].end_ms, T0 + 160 * MS_PER_MINUTE);
        assert_eq!(eps[0].evidence["late_start"], 1.0);
        assert_eq!(eps[1].start_ms, T0 + 600 * MS_PER_MINUTE);
        assert_eq!(eps[1].end_ms, T0 + 650 * MS_PER_MINUTE);
        assert_eq!(eps[1].evidence["early_stop"], 1.0);
    }

    #[test]
    fn quiet_when_plant_is_stopped_or_meters_are_dead() {
        // Whole plant stopped for hours: both read ~0.
        let stopped = run(600, |i| {
            if (100..400).contains(&i) {
                (Some(0.0), Some(0.0))
            } else {
                (Some(800.0), Some(150.0))
            }
        });
        assert!(stopped.is_empty(), "{stopped:#?}");
        // Treatment meter stops reporting (comm loss) while production runs: unknown, not off.
        let silent = run(600, |i| {
            (
                Some(800.0),
                if (100..400).contains(&i) {
                    None
                } else {
                    Some(150.0)
                },
            )
        });
        assert!(silent.is_empty(), "{silent:#?}");
    }

    #[test]
    fn quiet_on_orderly_start_up_and_short_dips() {
        // Treatment first, production 10 min later; a 10-minute treatment dip (within grace) later on.
        let out = run(600, |i| {
            let p = if i >= 60 { 800.0 } else { 0.0 };
            let t = if i >= 50 && !(300..310).contains(&i) {
                150.0
            } else {
                0.0
            };
            (Some(p), Some(t))
        });
        assert!(out.is_empty(), "{out:#?}");
    }

    #[test]
    fn state_survives_save_and_restore() {
        use crate::detect::{Minute, OutletContext};
        use crate::signal::process::ProcessTracker;
        let topo = topology();
        let config = DetectConfig::default();
        let ctx = OutletContext {
            topology: &topo,
            config: &config,
            model: None,
        };
        let mut a = TreatmentNotRunning::boxed(&config);
        let mut tracker = ProcessTracker::default();
        let mut out = Vec::new();
        let step = |d: &mut Box<dyn Detector>,
                    tracker: &mut ProcessTracker,
                    i: i64,
                    t: f64,
                    out: &mut Vec<Finding>| {
            let r = row(i, &[("p1", Some(800.0)), ("t1", Some(t))]);
            let p = tracker.observe(&topo, &r, config.equipment);
            d.observe(
                &ctx,
                &Minute {
                    row: &r,
                    process: &p,
                },
                out,
            );
        };
        for i in 0..200 {
            step(
                &mut a,
                &mut tracker,
                i,
                if i >= 100 { 1.0 } else { 150.0 },
                &mut out,
            );
        }
        let mut b = TreatmentNotRunning::boxed(&config);
        b.restore(&a.save().unwrap()).unwrap();
        let mut tracker_b = tracker.clone();
        let (mut oa, mut ob) = (Vec::new(), Vec::new());
        for i in 200..260 {
            step(&mut a, &mut tracker, i, 150.0, &mut oa);
            step(&mut b, &mut tracker_b, i, 150.0, &mut ob);
        }
        assert_eq!(oa, ob);
        assert_eq!(oa.len(), 1);
        assert!(b.restore(b"garbage").is_err());
    }
}

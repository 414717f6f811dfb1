//! `TREATMENT_NOT_RUNNING`: production runs while a treatment facility linked to the same outlet is off or at
//! standby, beyond a grace period.
//!
//! The rule of the trade is that treatment starts before production and stops after it, so the same test catches a
//! scrubber switched off mid-run, a late start and an early stop; the evidence says which. Look-alikes it must
//! survive (DOMAIN.md §5): a plant that is simply stopped (production off: no alarm), a meter that stopped reporting or
//! reports faults (unknown, never "off"), and short dips (the grace period; gaps shorter than `close_after_min`
//! bridge one episode instead of opening many).

use super::equipment::EquipmentState;
use super::{
    duration_score, restore_state, save_state, DetectConfig, Detector, Finding, Language, Minute,
    OutletContext,
};
use crate::domain::{AnomalyKind, MS_PER_MINUTE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Minutes production may run with treatment off before it is an anomaly (start-up sequencing, switch-overs).
    pub grace_period_min: u32,
    /// Minutes treatment must be back (or production off) before an episode is closed; shorter gaps are bridged.
    pub close_after_min: u32,
    /// Data minutes between updates of an ongoing episode (each update is stored and streamed to watchers).
    pub update_every_min: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grace_period_min: 15,
            close_after_min: 10,
            update_every_min: 60,
        }
    }
}

/// Detector name and version, part of each anomaly.
pub const NAME: &str = "treatment_not_running/1";

/// The episode of one treatment meter.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Episode {
    start_ms: i64,
    /// Last minute (start) at which the condition held.
    last_bad_ms: i64,
    /// Whether production was off just before the episode began (treatment should have started first).
    late_start: bool,
    /// Raised (past the grace period)?
    raised_at_ms: Option<i64>,
    last_update_ms: i64,
    minutes: u32,
    production_kw_sum: f64,
    treatment_kw_sum: f64,
    treatment_normal_kw: f64,
}

/// The detector.
pub struct TreatmentNotRunning {
    config: Config,
    language: Language,
    episodes: BTreeMap<String, Episode>,
}

impl TreatmentNotRunning {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            config: config.treatment_not_running.clone(),
            language: config.language,
            episodes: BTreeMap::new(),
        })
    }

    fn finding(
        &self,
        ctx: &OutletContext<'_>,
        meter_id: &str,
        ep: &Episode,
        end_ms: i64,
        ongoing: bool,
        early_stop: bool,
    ) -> Finding {
        let t = ctx.topology;
        let minutes = ((end_ms - ep.start_ms) / MS_PER_MINUTE) as f64;
        let n = f64::from(ep.minutes.max(1));
        let production_kw = ep.production_kw_sum / n;
        let treatment_kw = ep.treatment_kw_sum / n;
        let normal_kw = ep.treatment_normal_kw;
        let fraction = if normal_kw > 0.0 {
            treatment_kw / normal_kw
        } else {
            0.0
        };
        let grace = f64::from(self.config.grace_period_min);
        // Fully off counts more than a standby trickle.
        let score = duration_score(minutes - grace, 60.0) * (1.0 - 0.5 * fraction.clamp(0.0, 1.0));
        let equipment = t
            .treatment
            .iter()
            .find(|m| m.id == meter_id)
            .map(|m| m.equipment.clone())
            .unwrap_or_default();
        let mut evidence = BTreeMap::new();
        evidence.insert("duration_min".into(), minutes);
        evidence.insert("grace_period_min".into(), grace);
        evidence.insert("production_kw_mean".into(), production_kw);
        evidence.insert("treatment_kw_mean".into(), treatment_kw);
        evidence.insert("treatment_normal_kw".into(), normal_kw);
        evidence.insert("treatment_fraction_of_normal".into(), fraction);
        evidence.insert("minutes_observed".into(), n);
        evidence.insert("late_start".into(), if ep.late_start { 1.0 } else { 0.0 });
        evidence.insert("early_stop".into(), if early_stop { 1.0 } else { 0.0 });
        let phase_zh = match (ep.late_start, early_stop) {
            (true, _) => "（生产先于治污设施启动）",
            (_, true) => "（治污设施先于生产停运）",
            _ => "",
        };
        let phase_en = match (ep.late_start, early_stop) {
            (true, _) => " (production started before treatment)",
            (_, true) => " (treatment stopped before production)",
            _ => "",
        };
        let summary = match self.language {
            Language::Zh => format!(
                "{}{}：生产设施运行（平均 {:.0} kW）期间，治污设施 {}（{}）未运行（平均 {:.1} kW，正常 {:.0} kW），持续 {:.0} 分钟{}。",
                t.enterprise.name, t.outlet.name, production_kw, meter_id, equipment, treatment_kw, normal_kw, minutes, phase_zh
            ),
            Language::En => format!(
                "{} {}: treatment {} ({}) not running ({:.1} kW vs normal {:.0} kW) while production ran ({:.0} kW) for {:.0} min{}.",
                t.enterprise.name, t.outlet.name, meter_id, equipment, treatment_kw, normal_kw, production_kw, minutes, phase_en
            ),
        };
        let mut source_ids = vec![t.outlet.id.clone(), meter_id.to_string()];
        source_ids.extend(t.production.iter().map(|m| m.id.clone()));
        Finding {
            kind: AnomalyKind::TreatmentNotRunning,
            key: meter_id.to_string(),
            start_ms: ep.start_ms,
            end_ms,
            detected_at_ms: ep.raised_at_ms.unwrap_or(end_ms),
            score,
            source_ids,
            summary,
            evidence,
            ongoing,
            detector: NAME,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Saved {
    episodes: BTreeMap<String, Episode>,
}

impl Detector for TreatmentNotRunning {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let t = ctx.topology;
        if t.production.is_empty() || t.treatment.is_empty() {
            return;
        }
        let p = minute.process;
        let now = minute.row.minute_ms;
        let grace_ms = i64::from(self.config.grace_period_min) * MS_PER_MINUTE;
        let close_ms = i64::from(self.config.close_after_min) * MS_PER_MINUTE;
        let update_ms = i64::from(self.config.update_every_min) * MS_PER_MINUTE;
        for m in &t.treatment {
            let Some(tm) = p.meters.get(&m.id).copied() else {
                continue;
            };
            let bad = p.running() && tm.state == EquipmentState::NotRunning;
            // Production known to be off, or treatment known to run: the condition is over. Treatment unknown
            // (meter silent or faulty) holds the episode as it is.
            let good = p.production_on == Some(false)
                || (p.running()
                    && matches!(tm.state, EquipmentState::Running | EquipmentState::Reduced));
            if bad {
                let ep = self
                    .episodes
                    .entry(m.id.clone())
                    .or_insert_with(|| Episode {
                        start_ms: now,
                        last_bad_ms: now,
                        late_start: !p.production_was_on,
                        raised_at_ms: None,
                        last_update_ms: now,
                        minutes: 0,
                        production_kw_sum: 0.0,
                        treatment_kw_sum: 0.0,
                        treatment_normal_kw: 0.0,
                    });
                ep.last_bad_ms = now;
                ep.minutes += 1;
                ep.production_kw_sum += p.production_kw;
                ep.treatment_kw_sum += tm.kw.unwrap_or(0.0);
                ep.treatment_normal_kw = tm.normal_kw.unwrap_or(0.0);
                let end = now + MS_PER_MINUTE;
                if ep.raised_at_ms.is_none() && end - ep.start_ms >= grace_ms {
                    ep.raised_at_ms = Some(end);
                    ep.last_update_ms = end;
                    let ep = ep.clone();
                    out.push(self.finding(ctx, &m.id, &ep, end, true, false));
                } else if ep.raised_at_ms.is_some() && end - ep.last_update_ms >= update_ms {
                    ep.last_update_ms = end;
                    let ep = ep.clone();
                    out.push(self.finding(ctx, &m.id, &ep, end, true, false));
                }
            } else if good {
                let Some(ep) = self.episodes.get(&m.id) else {
                    continue;
                };
                let end = ep.last_bad_ms + MS_PER_MINUTE;
                if ep.raised_at_ms.is_none() {
                    // Condition ended within the grace period: sequencing, not a violation.
                    self.episodes.remove(&m.id);
                } else if now + MS_PER_MINUTE - end >= close_ms {
                    // Production stopped (rather than treatment coming back) right after: an early stop.
                    let early_stop = p.production_on == Some(false);
                    let ep = ep.clone();
                    out.push(self.finding(ctx, &m.id, &ep, end, false, early_stop));
                    self.episodes.remove(&m.id);
                }
            }
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        let episodes = std::mem::take(&mut self.episodes);
        for (meter_id, ep) in episodes {
            if ep.raised_at_ms.is_some() {
                out.push(self.finding(
                    ctx,
                    &meter_id,
                    &ep,
                    ep.last_bad_ms + MS_PER_MINUTE,
                    false,
                    false,
                ));
            }
        }
    }

    fn save(&self) -> Vec<u8> {
        save_state(&Saved {
            episodes: self.episodes.clone(),
        })
    }

    fn restore(&mut self, blob: &[u8]) -> Result<(), String> {
        let saved: Saved = restore_state(blob)?;
        self.episodes = saved.episodes;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{row, run_detector, topology, T0};

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
        assert!(e.summary.contains("not running"), "{}", e.summary);
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
        use crate::detect::process::ProcessTracker;
        use crate::detect::{Minute, OutletContext};
        let topo = topology();
        let config = DetectConfig::default();
        let ctx = OutletContext {
            topology: &topo,
            config: &config,
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
        b.restore(&a.save()).unwrap();
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

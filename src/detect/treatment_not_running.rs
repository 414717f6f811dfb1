//! `TREATMENT_NOT_RUNNING`: production runs while a treatment facility linked to the same outlet is off or at
//! standby, beyond a grace period.
//!
//! The rule of the trade is that treatment starts before production and stops after it, so the same test catches a
//! scrubber switched off mid-run, a late start and an early stop; the evidence says which. Look-alikes it must
//! survive (DOMAIN.md §5): a plant that is simply stopped (production off: no alarm), a meter that stopped reporting or
//! reports faults (unknown, never "off"), and short dips (the grace period; gaps shorter than `close_after_min`
//! bridge one episode instead of opening many).

use super::equipment::{EquipmentState, MeterLevel, Thresholds};
use super::{
    duration_score, restore_state, save_state, DetectConfig, Detector, Finding, Language,
    OutletContext,
};
use crate::align::OutletRow;
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
    /// Equipment-state thresholds.
    pub thresholds: Thresholds,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grace_period_min: 15,
            close_after_min: 10,
            update_every_min: 60,
            thresholds: Thresholds::default(),
        }
    }
}

/// Detector name and version, part of each anomaly.
pub const NAME: &str = "treatment_not_running/1";

/// Running sums over an episode, for evidence.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Sums {
    minutes: u32,
    production_kw: f64,
    treatment_kw: f64,
}

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
    sums: Sums,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    levels: BTreeMap<String, MeterLevel>,
    episodes: BTreeMap<String, Episode>,
    production_was_on: bool,
    last_minute_ms: Option<i64>,
}

/// The detector.
pub struct TreatmentNotRunning {
    config: Config,
    language: Language,
    state: State,
}

impl TreatmentNotRunning {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            config: config.treatment_not_running.clone(),
            language: config.language,
            state: State::default(),
        })
    }

    fn level(&mut self, id: &str, rated_kw: f64) -> &mut MeterLevel {
        self.state
            .levels
            .entry(id.to_string())
            .or_insert_with(|| MeterLevel::new(rated_kw))
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
        let n = f64::from(ep.sums.minutes.max(1));
        let production_kw = ep.sums.production_kw / n;
        let treatment_kw = ep.sums.treatment_kw / n;
        let normal_kw = self
            .state
            .levels
            .get(meter_id)
            .and_then(|l| l.running_kw)
            .unwrap_or(0.0);
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
        evidence.insert("minutes_observed".into(), f64::from(ep.sums.minutes));
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

impl Detector for TreatmentNotRunning {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, ctx: &OutletContext<'_>, row: &OutletRow, out: &mut Vec<Finding>) {
        let t = ctx.topology;
        if t.production.is_empty() || t.treatment.is_empty() {
            return;
        }
        let th = self.config.thresholds;
        let minute = row.minute_ms;
        self.state.last_minute_ms = Some(minute);

        // Production state: on if any production meter runs (reduced counts: reduced production still emits).
        let mut production_known = false;
        let mut production_on = false;
        let mut production_kw = 0.0;
        for m in &t.production {
            let reading = row.power_kw.get(&m.id);
            let state = self.level(&m.id, m.rated_kw).observe(reading, th);
            if state != EquipmentState::Unknown {
                production_known = true;
                production_kw += reading.map_or(0.0, |r| r.value);
            }
            production_on |= matches!(state, EquipmentState::Running | EquipmentState::Reduced);
        }
        let production_was_on = self.state.production_was_on;
        if production_known {
            self.state.production_was_on = production_on;
        }

        let grace_ms = i64::from(self.config.grace_period_min) * MS_PER_MINUTE;
        let close_ms = i64::from(self.config.close_after_min) * MS_PER_MINUTE;
        let update_ms = i64::from(self.config.update_every_min) * MS_PER_MINUTE;
        for m in &t.treatment {
            let reading = row.power_kw.get(&m.id);
            let state = self.level(&m.id, m.rated_kw).observe(reading, th);
            let bad = production_on && state == EquipmentState::NotRunning;
            // Production known to be off, or treatment known to run: the condition is over. Treatment unknown
            // (meter silent or faulty) holds the episode as it is.
            let good = production_known
                && (!production_on
                    || matches!(state, EquipmentState::Running | EquipmentState::Reduced));
            if bad {
                let ep = self
                    .state
                    .episodes
                    .entry(m.id.clone())
                    .or_insert_with(|| Episode {
                        start_ms: minute,
                        last_bad_ms: minute,
                        late_start: !production_was_on,
                        raised_at_ms: None,
                        last_update_ms: minute,
                        sums: Sums::default(),
                    });
                ep.last_bad_ms = minute;
                ep.sums.minutes += 1;
                ep.sums.production_kw += production_kw;
                ep.sums.treatment_kw += reading.map_or(0.0, |r| r.value);
                let end = minute + MS_PER_MINUTE;
                let ep = ep.clone();
                if ep.raised_at_ms.is_none() && end - ep.start_ms >= grace_ms {
                    let mut raised = ep;
                    raised.raised_at_ms = Some(end);
                    raised.last_update_ms = end;
                    out.push(self.finding(ctx, &m.id, &raised, end, true, false));
                    self.state.episodes.insert(m.id.clone(), raised);
                } else if ep.raised_at_ms.is_some() && end - ep.last_update_ms >= update_ms {
                    out.push(self.finding(ctx, &m.id, &ep, end, true, false));
                    if let Some(e) = self.state.episodes.get_mut(&m.id) {
                        e.last_update_ms = end;
                    }
                }
            } else if good {
                let Some(ep) = self.state.episodes.get(&m.id) else {
                    continue;
                };
                let end = ep.last_bad_ms + MS_PER_MINUTE;
                if ep.raised_at_ms.is_none() {
                    // Condition ended within the grace period: sequencing, not a violation.
                    self.state.episodes.remove(&m.id);
                } else if minute + MS_PER_MINUTE - end >= close_ms {
                    // Production stopped (rather than treatment coming back) right after: an early stop.
                    let early_stop = !production_on;
                    let ep = ep.clone();
                    out.push(self.finding(ctx, &m.id, &ep, end, false, early_stop));
                    self.state.episodes.remove(&m.id);
                }
            }
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        let episodes = std::mem::take(&mut self.state.episodes);
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
        save_state(&self.state)
    }

    fn restore(&mut self, blob: &[u8]) -> Result<(), String> {
        self.state = restore_state(blob)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{row, topology, T0};

    /// Runs the detector over minutes built by `f(i)` → (production kW, treatment kW).
    fn run(minutes: i64, f: impl Fn(i64) -> (Option<f64>, Option<f64>)) -> Vec<Finding> {
        let topo = topology();
        let config = DetectConfig {
            language: Language::En,
            ..DetectConfig::default()
        };
        let ctx = OutletContext {
            topology: &topo,
            config: &config,
        };
        let mut d = TreatmentNotRunning::boxed(&config);
        let mut out = Vec::new();
        for i in 0..minutes {
            let (p, t) = f(i);
            d.observe(&ctx, &row(i, &[("p1", p), ("t1", t)]), &mut out);
        }
        d.finish(&ctx, &mut out);
        out
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
        let topo = topology();
        let config = DetectConfig::default();
        let ctx = OutletContext {
            topology: &topo,
            config: &config,
        };
        let mut a = TreatmentNotRunning::boxed(&config);
        let mut out = Vec::new();
        for i in 0..200 {
            let t = if i >= 100 { 1.0 } else { 150.0 };
            a.observe(
                &ctx,
                &row(i, &[("p1", Some(800.0)), ("t1", Some(t))]),
                &mut out,
            );
        }
        let mut b = TreatmentNotRunning::boxed(&config);
        b.restore(&a.save()).unwrap();
        let (mut oa, mut ob) = (Vec::new(), Vec::new());
        for i in 200..260 {
            let r = row(i, &[("p1", Some(800.0)), ("t1", Some(150.0))]);
            a.observe(&ctx, &r, &mut oa);
            b.observe(&ctx, &r, &mut ob);
        }
        assert_eq!(oa, ob);
        assert_eq!(oa.len(), 1);
        assert!(b.restore(b"garbage").is_err());
    }
}

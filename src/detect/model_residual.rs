//! `MODEL_RESIDUAL`: the outlet's learned joint behaviour broken.
//!
//! The active model (the outlet's own, else its industry's prior; see [`crate::models`]) predicts flow, treatment
//! power and each pollutant from production and time of day, and says how far the streams may sit from the plane
//! they normally move in. Each accepted test keeps the rolling mean of its standardized residual over the model's
//! window; when that mean passes the model's threshold (set on the outlet's clean history for a configured false-alarm
//! rate per enterprise-day, multiplicity-corrected) and the effect is large enough to matter, the minute is bad.
//!
//! Look-alikes: a load change (the model follows production: residuals stay small), an unusual but consistent
//! operating point (high T², small Q: not alarmed), start-up, shutdown and loads the model never saw in training
//! (outside its production range: not judged), treatment off (`TREATMENT_NOT_RUNNING`'s, not judged here), calibration and maintenance (flagged
//! minutes carry no values), a new model version (windows restart), an outlet an industry prior does not describe (a
//! prior is tried on the outlet's own data first and judges it only if it would have stayed quiet there, and only for
//! the outlet's first two weeks: see [`PRIOR_TRIAL_MIN`]), a model an officer has reviewed an alarm of as
//! FALSE_POSITIVE (silent until the outlet's next model version), a restriction order the plant obeys (its load cut
//! by decree: not judged during the order and for three hours after it).

use super::kit::{duration_score, Due, Runs, Timing};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::{AnomalyKind, OperatingChangeKind, MS_PER_MINUTE};
use crate::models::artifact::JOINT_TEST;
use crate::models::calibrate::{WindowMean, MIN_EFFECT};
use crate::models::features::{feature_row, TREATMENT_TARGET};
use crate::models::{ModelArtifact, ModelScope};
use crate::signal::equipment::EquipmentState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Detector name and version.
pub const NAME: &str = "model_residual/1";

const TIMING: Timing = Timing::minutes(30, 60, 60);

/// How long after a restriction order ends the model stays out of judging (the plant returning to its normal load).
const ORDER_SETTLING_MS: i64 = 3 * 60 * MS_PER_MINUTE;

/// Minutes of recent evidence: the window must be over its threshold *and* at least half of the minutes this recent
/// must point the same way, so an episode ends with the departure rather than when its minutes leave the window.
const RECENT_MIN: i64 = 15;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Test {
    z: WindowMean,
    observed: WindowMean,
    predicted: WindowMean,
    /// Share of recent minutes with z > 1.
    recent_high: WindowMean,
    /// Share of recent minutes with z < −1.
    recent_low: WindowMean,
    /// An industry prior's trial on this outlet: judged minutes, and of those the ones it would have raised.
    #[serde(default)]
    trial: (u32, u32),
    /// When the prior was first judged here.
    #[serde(default)]
    prior_since_ms: Option<i64>,
}

/// Judged minutes an industry prior is tried on an outlet before it may raise there (three days). A prior fitted on
/// other plants that would have raised on more than [`PRIOR_TRIAL_MAX_BAD`] of them does not describe this plant,
/// and the test stays silent until the outlet has a model of its own.
pub const PRIOR_TRIAL_MIN: u32 = 3 * 1440;
/// Share of the trial's minutes over the threshold that rejects a prior.
const PRIOR_TRIAL_MAX_BAD: f64 = 0.02;
/// How long an accepted prior judges an outlet: a stop-gap for its first weeks, until the training schedule fits the
/// outlet a model of its own. A plant drifts away from other plants' behaviour over months (seasons, coal, wear),
/// and a prior cannot tell that from a departure.
const PRIOR_JUDGES_MS: i64 = 14 * 1440 * MS_PER_MINUTE;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stats {
    /// First minute of the unbroken stretch of anomalous minutes that carried the window over its threshold: the
    /// reported start (the window itself lags the event by up to its length).
    onset_ms: i64,
    /// Last minute that was itself anomalous: the reported end (the window mean stays high for a while after).
    last_anomalous_ms: i64,
    peak_ratio: f64,
    window_z: f64,
    threshold: f64,
    observed: f64,
    predicted: f64,
    production_fraction: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    /// The model the windows were filled against (a new version starts them afresh).
    model: Option<(ModelScope, u32)>,
    /// Data time this detector first judged by that model.
    #[serde(default)]
    model_since_ms: i64,
    tests: BTreeMap<String, Test>,
    runs: Runs<Stats>,
}

/// The figures of an episode of one test: a target's regression, or the joint test ([`JOINT_TEST`]), whose figures
/// differ (Q for the joint test, observed and predicted for a target).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Figures {
    /// The test: a target, or [`JOINT_TEST`].
    pub(crate) test: String,
    /// The model judged by (`scope@version`).
    pub(crate) model_id: String,
    /// Length of the detector's run (the finding's start and end are the onset and the last anomalous minute).
    pub(crate) duration_min: f64,
    /// The joint test's window mean of the reconstruction error Q.
    pub(crate) q_window_mean: Option<f64>,
    /// A target's window means.
    pub(crate) observed_window_mean: Option<f64>,
    pub(crate) predicted_window_mean: Option<f64>,
    pub(crate) window_z: f64,
    pub(crate) threshold_z: f64,
    pub(crate) peak_z_over_threshold: f64,
    pub(crate) production_fraction: f64,
    pub(crate) model_version: u32,
    pub(crate) false_alarms_per_day_setting: f64,
    /// The target's fit, for a target the model has a regression of.
    pub(crate) r2_holdout: Option<f64>,
    pub(crate) residual_sd: Option<f64>,
}

/// The detector.
pub struct ModelResidual {
    state: State,
}

impl ModelResidual {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(_config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            state: State::default(),
        })
    }
}

/// The finding of a test's episode as it stands.
fn finding(ctx: &OutletContext<'_>, model: &ModelArtifact, due: &Due<Stats>) -> Finding {
    let s = &due.run.stats;
    let joint = due.key == JOINT_TEST;
    let target = model.target(&due.key);
    let figures = Figures {
        test: due.key.clone(),
        model_id: model.id(),
        duration_min: due.run.duration_min(),
        q_window_mean: joint.then_some(s.observed),
        observed_window_mean: (!joint).then_some(s.observed),
        predicted_window_mean: (!joint).then_some(s.predicted),
        window_z: s.window_z,
        threshold_z: s.threshold,
        peak_z_over_threshold: s.peak_ratio,
        production_fraction: s.production_fraction,
        model_version: model.version,
        false_alarms_per_day_setting: model.calibration.false_alarms_per_day,
        r2_holdout: target.map(|t| t.metrics.r2_holdout),
        residual_sd: target.map(|t| t.residual_sd),
    };
    let mut sources = vec![ctx.topology.outlet.id.clone()];
    sources.extend(ctx.topology.production.iter().map(|m| m.id.clone()));
    if due.key == TREATMENT_TARGET {
        sources.extend(ctx.topology.treatment.iter().map(|m| m.id.clone()));
    }
    // A broken learned relationship is weaker evidence than a named signature (a bypass, a stuck analyzer): it
    // ranks below them at equal duration, and above nothing but short, marginal episodes.
    let score = duration_score(due.run.duration_min() - f64::from(TIMING.grace_min), 240.0)
        * (0.7 + 0.15 * (s.peak_ratio - 1.0).clamp(0.0, 1.0));
    let mut finding = due.finding(AnomalyKind::ModelResidual, NAME, score, sources, &figures);
    finding.start_ms = s.onset_ms.min(finding.start_ms);
    finding.end_ms = (s.last_anomalous_ms + MS_PER_MINUTE)
        .clamp(finding.start_ms + MS_PER_MINUTE, finding.end_ms);
    finding
}

impl Detector for ModelResidual {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let Some(model) = ctx.model else {
            return;
        };
        let same_model = self
            .state
            .model
            .as_ref()
            .is_some_and(|(scope, version)| *scope == model.scope && *version == model.version);
        let now = minute.row.minute_ms;
        if !same_model {
            self.state.tests.clear();
            self.state.model = Some((model.scope.clone(), model.version));
            self.state.model_since_ms = now;
        }
        // An officer reviewed one of this model's alarms here as FALSE_POSITIVE: the model no longer describes the
        // outlet, and it stays silent until the next version is fitted on the outlet's new behaviour.
        let reviewed_false = ctx.topology.operating_changes.iter().any(|c| {
            c.kind == OperatingChangeKind::ReviewedFalsePositive
                && c.applies_to(&ctx.topology.outlet.id)
                && (self.state.model_since_ms..=now).contains(&c.effective_ms)
        });
        if reviewed_false {
            for test in model.thresholds.keys() {
                if let Some(due) = self.state.runs.good(test, now, TIMING) {
                    out.push(finding(ctx, model, &due));
                }
            }
            return;
        }
        let window_ms = i64::from(model.calibration.window_min) * MS_PER_MINUTE;
        let min_valid = model.calibration.min_valid_min as usize;
        let treatment_off = minute.process.meters.iter().any(|(meter, m)| {
            ctx.topology.treatment.iter().any(|t| &t.id == meter)
                && (m.state == EquipmentState::NotRunning
                    || model
                        .fitted
                        .meter_states
                        .iter()
                        .find(|s| &s.meter_id == meter)
                        .zip(m.kw)
                        .is_some_and(|(s, kw)| s.is_off(kw)))
        });
        // A restriction order moves the plant off its normal operating point by decree, and the plant settles for a
        // few hours after it ends: the model, fitted on ordinary operation, does not judge those minutes.
        let under_order = ctx
            .topology
            .restrictions
            .iter()
            .any(|o| (o.start_ms..o.end_ms + ORDER_SETTLING_MS).contains(&now));
        let row = if treatment_off || under_order {
            None
        } else {
            feature_row(
                ctx.topology,
                minute.row,
                minute.process,
                ctx.config.exceedance.o2_ceiling_pct,
            )
            .filter(|r| model.fitted.covers(r.production_fraction))
        };
        for (test, threshold) in &model.thresholds {
            let sample = row.as_ref().and_then(|r| {
                if test == JOINT_TEST {
                    let s = model.fitted.joint.as_ref()?.score(r)?;
                    Some((s.z_log_q, s.q, 0.0))
                } else {
                    let r = model.target(test)?.residual(r)?;
                    Some((r.z, r.observed, r.predicted))
                }
            });
            let w = self.state.tests.entry(test.clone()).or_default();
            match sample {
                Some((z, obs, pred)) => {
                    w.z.push(now, z, window_ms);
                    w.observed.push(now, obs, window_ms);
                    w.predicted.push(now, pred, window_ms);
                    let recent_ms = RECENT_MIN * MS_PER_MINUTE;
                    w.recent_high
                        .push(now, f64::from(u8::from(z > 1.0)), recent_ms);
                    w.recent_low
                        .push(now, f64::from(u8::from(z < -1.0)), recent_ms);
                }
                None => {
                    w.z.expire(now, window_ms);
                    w.observed.expire(now, window_ms);
                    w.predicted.expire(now, window_ms);
                    w.recent_high.expire(now, RECENT_MIN * MS_PER_MINUTE);
                    w.recent_low.expire(now, RECENT_MIN * MS_PER_MINUTE);
                }
            }
            let recent = |up: bool| {
                let r = if up { &w.recent_high } else { &w.recent_low };
                r.mean().is_some_and(|share| share >= 0.5)
            };
            let stat = (w.z.len() >= min_valid)
                .then(|| w.z.mean())
                .flatten()
                .zip(w.observed.mean().zip(w.predicted.mean()));
            let bad = stat.filter(|(z, (obs, pred))| {
                if test == JOINT_TEST {
                    *z > *threshold && recent(true)
                } else {
                    z.abs() > *threshold && (obs - pred).abs() >= MIN_EFFECT && recent(*z > 0.0)
                }
            });
            // An industry prior earns its say on this outlet: while on trial it raises nothing, and once it would
            // have raised too often it never does.
            if matches!(model.scope, ModelScope::Industry(_)) && stat.is_some() {
                if now - *w.prior_since_ms.get_or_insert(now) > PRIOR_JUDGES_MS {
                    continue;
                }
                let (judged, raised) = &mut w.trial;
                if *judged < PRIOR_TRIAL_MIN {
                    *judged += 1;
                    *raised += u32::from(bad.is_some());
                    continue;
                }
                if f64::from(*raised) > PRIOR_TRIAL_MAX_BAD * f64::from(PRIOR_TRIAL_MIN) {
                    continue;
                }
            }
            let due = match bad {
                Some((z, (obs, pred))) => {
                    let pf = row.as_ref().map_or(0.0, |r| r.production_fraction);
                    let th = *threshold;
                    let joint = test == JOINT_TEST;
                    // A minute is anomalous on its own when its residual points the way the window does, by more
                    // than one standard deviation.
                    let anomalous = |m: f64| if joint { m > 1.0 } else { m * z.signum() > 1.0 };
                    let onset =
                        w.z.samples()
                            .rev()
                            .take_while(|(_, m)| anomalous(*m))
                            .last()
                            .map_or(now, |(t, _)| *t);
                    let this_minute = sample.is_some_and(|(m, _, _)| anomalous(m));
                    let init = || Stats {
                        onset_ms: onset,
                        last_anomalous_ms: onset,
                        ..Stats::default()
                    };
                    self.state.runs.bad(test, now, TIMING, init, |s| {
                        if this_minute {
                            s.last_anomalous_ms = now;
                        }
                        s.peak_ratio = s.peak_ratio.max(z.abs() / th);
                        s.window_z = z;
                        s.threshold = th;
                        s.observed = obs;
                        s.predicted = pred;
                        s.production_fraction = pf;
                    })
                }
                None => self.state.runs.good(test, now, TIMING),
            };
            if let Some(due) = due {
                out.push(finding(ctx, model, &due));
            }
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        let Some(model) = ctx.model else {
            return;
        };
        for due in self.state.runs.finish() {
            out.push(finding(ctx, model, &due));
        }
    }

    persist_state!(state);
}

/// Runs the detector offline over aligned rows with a given model, as detection would, and returns the final state of
/// each episode (for evaluating a model version before it is activated).
pub fn run_offline(
    t: &crate::domain::OutletTopology,
    rows: &[crate::signal::align::OutletRow],
    model: &ModelArtifact,
    config: &DetectConfig,
) -> Vec<Finding> {
    let ctx = OutletContext {
        topology: t,
        config,
        model: Some(model),
    };
    let mut d = ModelResidual::boxed(config);
    let mut tracker = crate::signal::process::ProcessTracker::default();
    let mut out = Vec::new();
    for row in rows {
        let process = tracker.observe(t, row, config.equipment);
        d.observe(
            &ctx,
            &Minute {
                row,
                process: &process,
            },
            &mut out,
        );
    }
    d.finish(&ctx, &mut out);
    let mut last: BTreeMap<(String, i64), Finding> = BTreeMap::new();
    for f in out {
        last.insert((f.key.clone(), f.start_ms), f);
    }
    last.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{noise, row, summary_en, topology_with_limits, with_cems, T0};
    use crate::domain::{codes, OutletTopology};
    use crate::models::artifact::ModelScope;
    use crate::models::calibrate::Calibration;
    use crate::models::features::FLOW_TARGET;
    use crate::models::features::{pollutant_target, targets_of};
    use crate::models::train::{fit, TrainSpec};
    use crate::models::{dataset, ModelArtifact};
    use crate::signal::align::OutletRow;

    const DAY: i64 = 1440;
    const SO2_LIMIT: f64 = 35.0;

    /// Production as a fraction of 1,000 kW: a new level every two hours, anywhere in 45–100 %.
    fn load(i: i64) -> f64 {
        0.45 + 0.55 * (noise(i / 120, 99) + 1.0) / 2.0
    }

    /// What a minute is made of; tests change it to inject a manipulation or a look-alike.
    struct Plant {
        production: f64,
        treatment_kw: f64,
        flow: f64,
        so2: f64,
    }

    fn honest(i: i64) -> Plant {
        let p = load(i);
        // Slow analyzer and process wander (sum of two smooth terms) plus white noise.
        let wander = |ch| 0.6 * noise(i / 37, ch) + 0.4 * noise(i / 11, ch + 1);
        Plant {
            production: p,
            treatment_kw: 40.0 + 150.0 * p + 3.0 * noise(i, 2),
            flow: 100.0 + 300.0 * p + 6.0 * wander(3) + 3.0 * noise(i, 4),
            so2: SO2_LIMIT * (0.3 + 0.3 * p) + 1.0 * wander(5) + 0.5 * noise(i, 6),
        }
    }

    fn minute_row(i: i64, plant: &Plant) -> OutletRow {
        with_cems(
            row(
                i,
                &[
                    ("p1", Some(1000.0 * plant.production + 5.0 * noise(i, 1))),
                    ("t1", Some(plant.treatment_kw)),
                ],
            ),
            &[
                (codes::FLOW, plant.flow),
                (codes::SO2, plant.so2),
                (codes::O2, 6.0 + 0.2 * noise(i, 7)),
            ],
        )
    }

    fn topology() -> OutletTopology {
        topology_with_limits(&[(codes::SO2, SO2_LIMIT)])
    }

    /// Days 0..4 honest; from day 4 on, `change` may alter a minute.
    fn rows(days: i64, change: impl Fn(i64, &mut Plant)) -> Vec<OutletRow> {
        (0..days * DAY)
            .map(|i| {
                let mut p = honest(i);
                if i >= 4 * DAY {
                    change(i, &mut p);
                }
                minute_row(i, &p)
            })
            .collect()
    }

    fn trained() -> ModelArtifact {
        let t = topology();
        let clean = rows(4, |_, _| {});
        let series = dataset::series(
            &t,
            &clean,
            DetectConfig::default().equipment,
            DetectConfig::default().exceedance.o2_ceiling_pct,
        );
        let spec = TrainSpec {
            scope: ModelScope::Outlet("s1".into()),
            version: 1,
            targets: targets_of(&t),
            from_ms: T0,
            to_ms: T0 + 4 * DAY * MS_PER_MINUTE,
            created_ms: 0,
            calibration: Calibration::default(),
        };
        fit(&spec, &[series], &|_| {})
    }

    fn findings(model: &ModelArtifact, rows: &[OutletRow]) -> Vec<Finding> {
        run_offline(&topology(), rows, model, &DetectConfig::default())
    }

    fn minutes(f: &Finding) -> (i64, i64) {
        (
            (f.start_ms - T0) / MS_PER_MINUTE,
            (f.end_ms - T0) / MS_PER_MINUTE,
        )
    }

    #[test]
    fn the_fitted_model_is_accepted_and_calibrated() {
        let m = trained();
        for target in [FLOW_TARGET, TREATMENT_TARGET, &pollutant_target(codes::SO2)] {
            let t = m.target(target).unwrap();
            assert!(t.accepted, "{target}: {:?}", t.metrics);
            assert!(m.thresholds[target] > 0.5, "{:?}", m.thresholds);
        }
        assert!(m.fitted.joint.is_some());
        assert_eq!(m.fitted.meter_states.len(), 2);
    }

    #[test]
    fn quiet_on_honest_days_with_load_changes() {
        let m = trained();
        let f = findings(&m, &rows(7, |_, _| {}));
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn fires_on_a_subtle_gain_change_of_the_so2_analyzer() {
        let m = trained();
        // Six hours of SO2 reported at 75 % of the truth: still well under the limit, still following the load.
        let (from, to) = (5 * DAY + 120, 5 * DAY + 480);
        let f = findings(
            &m,
            &rows(7, |i, p| {
                if (from..to).contains(&i) {
                    p.so2 *= 0.75;
                }
            }),
        );
        let so2 = f
            .iter()
            .find(|f| f.key == pollutant_target(codes::SO2))
            .unwrap_or_else(|| panic!("{f:#?}"));
        let (start, end) = minutes(so2);
        assert!(
            (start - from).abs() <= 30 && (end - to).abs() <= 30,
            "{start}..{end}"
        );
        assert!(so2.evidence["window_z"] < -so2.evidence["threshold_z"]);
        assert!(
            so2.evidence["observed_window_mean"]
                < so2.evidence["predicted_window_mean"] - MIN_EFFECT
        );
        assert_eq!(so2.evidence["model_version"], 1.0);
        assert!(
            summary_en(so2).contains("outlet:s1@1"),
            "{}",
            summary_en(so2)
        );
        // Nothing else at the outlet is out of line, and nothing before or after.
        assert!(
            f.iter().all(|x| x.end_ms > T0 + from * MS_PER_MINUTE),
            "{f:#?}"
        );
    }

    #[test]
    fn fires_when_part_of_the_gas_leaves_unmonitored() {
        let m = trained();
        let (from, to) = (4 * DAY + 600, 4 * DAY + 840);
        let f = findings(
            &m,
            &rows(6, |i, p| {
                if (from..to).contains(&i) {
                    p.flow *= 0.7;
                }
            }),
        );
        assert!(f.iter().any(|x| x.key == FLOW_TARGET), "{f:#?}");
    }

    #[test]
    fn quiet_at_a_load_never_seen_in_training() {
        let m = trained();
        // Three hours at 130 % with flow, treatment and SO2 following physically: new, not wrong.
        let f = findings(
            &m,
            &rows(6, |i, p| {
                if (4 * DAY + 300..4 * DAY + 480).contains(&i) {
                    let honest_p = p.production;
                    p.production = 1.3;
                    p.flow += 300.0 * (1.3 - honest_p);
                    p.treatment_kw += 150.0 * (1.3 - honest_p);
                    p.so2 += SO2_LIMIT * 0.3 * (1.3 - honest_p);
                }
            }),
        );
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn quiet_while_the_plant_obeys_a_restriction_order() {
        let m = trained();
        // Ten hours at half load by order, the scrubber kept at its full-load power (a cautious operator): off the
        // model's plane, but by decree.
        let (from, to) = (4 * DAY + 300, 4 * DAY + 900);
        let data = rows(6, |i, p| {
            if (from..to).contains(&i) {
                p.production = 0.5;
                p.flow = 100.0 + 300.0 * 0.5;
                p.so2 = SO2_LIMIT * 0.45;
                p.treatment_kw = 40.0 + 150.0 * 1.0;
            }
        });
        let unordered = findings(&m, &data);
        assert!(
            unordered.iter().any(|f| f.key == TREATMENT_TARGET),
            "without the order the departure is raised: {unordered:#?}"
        );
        let mut ordered = topology();
        ordered.restrictions.push(crate::domain::RestrictionOrder {
            id: "o1".into(),
            enterprise_id: "e1".into(),
            meter_ids: vec![],
            start_ms: T0 + from * MS_PER_MINUTE,
            end_ms: T0 + to * MS_PER_MINUTE,
            max_load_fraction: 0.5,
            level: "orange".into(),
        });
        let f = run_offline(&ordered, &data, &m, &DetectConfig::default());
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn leaves_an_idle_scrubber_to_its_own_detector() {
        let m = trained();
        let f = findings(
            &m,
            &rows(6, |i, p| {
                if (4 * DAY + 300..4 * DAY + 480).contains(&i) {
                    p.treatment_kw = 2.0;
                    p.so2 = 25.0 * SO2_LIMIT;
                }
            }),
        );
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn a_saved_and_loaded_model_judges_identically() {
        let m = trained();
        let from_blob = ModelArtifact::decode(&m.encode().unwrap()).unwrap();
        let from_json = ModelArtifact::from_json(&m.to_json().unwrap()).unwrap();
        assert_eq!(from_blob, m);
        let data = rows(6, |i, p| {
            if (4 * DAY + 100..4 * DAY + 400).contains(&i) {
                p.so2 *= 0.6;
            }
        });
        let expected = findings(&m, &data);
        assert!(!expected.is_empty());
        assert_eq!(findings(&from_blob, &data), expected);
        assert_eq!(findings(&from_json, &data), expected);
        let series = dataset::series(
            &topology(),
            &data,
            DetectConfig::default().equipment,
            DetectConfig::default().exceedance.o2_ceiling_pct,
        );
        for r in series.rows.iter().step_by(97) {
            for t in &m.fitted.targets {
                let other = from_json.target(&t.target).unwrap();
                assert!((t.predict(r) - other.predict(r)).abs() < 1e-12);
            }
        }
        let mut wrong = m.encode().unwrap();
        wrong[4] = 9;
        assert!(ModelArtifact::decode(&wrong)
            .unwrap_err()
            .contains("format"));
    }

    #[test]
    fn without_a_model_it_says_nothing() {
        let topo = topology();
        let out = crate::detect::testutil::run_detector(
            ModelResidual::boxed,
            &topo,
            rows(5, |_, p| p.so2 *= 0.5),
        );
        assert!(out.is_empty());
    }
}

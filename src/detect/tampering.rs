//! `PARAMETER_TAMPERING`: the numbers were changed between the gas and the report.
//!
//! Three signatures, each its own episode key:
//! - **formula** (`formula/<code>`): the reported converted value (ZsRtd/ZsAvg) differs from the legal formula
//!   `C × (21 − O2ref)/(21 − O2)` applied to the reported raw value and O2 by more than 5 % (and two resolution
//!   steps), for 30 minutes: the conversion in the data acquisition unit was changed.
//! - **step** (`step/<code>`): the converted level drops by more than a quarter against the outlet's own level over
//!   the previous days, for hours, while production stays within ±15 % of its usual level: a gain or slope changed
//!   with no process change. Only drops are judged (a cheat lowers reported values; rises have other kinds). Once
//!   three days of hours are known, the drop must also be deeper than the outlet's own honest hours make likely at
//!   the configured false-alarm rate (the empirical null of the hourly drop, see [`super::kit::null`]): a plant whose
//!   fuel changes every few days swings by more than a quarter honestly.
//! - **door access** (`door/<code>`): the analyzer shelter's door (HJ 212 `i32001`, door-access state) opened and,
//!   in the 2½ hours after, the converted level fell by more than a fifth against the six hours before, at
//!   comparable production, with no calibration or maintenance flag around the visit: someone touched the analyzer.
//! - **instrument parameter** (`param/<code>`): a range, slope or intercept (`i13001`, `i13007`, `i13008`, as
//!   the HJ 212 gateway stores them) changed while no calibration or maintenance flag was set in the previous hour.
//!
//! Look-alikes: rounding of reported values (the tolerance), real fuel or load changes (rises, production out of
//! band, or swings the outlet's own history holds), recalibration during a flagged calibration or maintenance
//! window, routine shelter visits that change nothing.

use super::kit::null::HourlyNull;
use super::kit::period::period_start_ms;
use super::kit::{duration_score, Due, Runs, Timing};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::codes::{NH3, NOX, O2};
use crate::domain::{units, AnomalyKind, ValueFlag, MS_PER_HOUR, MS_PER_MINUTE};
use crate::signal::cems::{self, Resolution};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Detector name and version.
pub const NAME: &str = "parameter_tampering/2";

const FORMULA: Timing = Timing::minutes(30, 10, 120);
const STEP: Timing = Timing::minutes(120, 60, 360);
/// Relative formula mismatch tolerated (rounding of the DAU).
const FORMULA_TOLERANCE: f64 = 0.05;
/// Long-term level memory (~2 days) and short-term level memory (~6 h), per minute.
const LONG_ALPHA: f64 = 1.0 / 2880.0;
const SHORT_ALPHA: f64 = 1.0 / 360.0;
/// A short-term level below this share of the long-term one is a step down (ln 0.75).
const STEP_LN: f64 = -0.287_682;
/// Minutes of history before steps are judged.
const MATURE: u64 = 1440;
/// After a declared operating change (fuel, raw material, analyzer, recalibration, control device), the level the
/// step test compares against follows the data for this long: the change re-bases the outlet instead of alarming.
/// A day lets the short-term level (a six-hour time constant) settle on the new level.
const REBASE_MS: i64 = 24 * 60 * MS_PER_MINUTE;
/// Instrument parameters that calibrate a reading: range, intercept, slope.
const PARAMETER_CODES: [&str; 3] = ["i13001", "i13007", "i13008"];
/// The shelter's door-access state (non-zero: open).
const DOOR_CODE: &str = "i32001";
/// After a door opens: minutes ignored (the visit itself), then the minute the level after it is judged.
const DOOR_SETTLE_MIN: i64 = 30;
const DOOR_JUDGE_MIN: i64 = 180;
/// A level after the visit below this share of the level before is a change (ln 0.8).
const DOOR_LN: f64 = -0.223_144;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Level {
    long: f64,
    short: f64,
    production_long: f64,
    production_short: f64,
    n: u64,
    /// This outlet's hourly drops (−(short − long)) at comparable production.
    null: HourlyNull,
    /// Start of the last hour whose drop joined the null.
    last_null_hour_ms: i64,
}

/// A door visit being watched: the levels before it, and sums of the minutes after it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DoorVisit {
    opened_ms: i64,
    /// Per code: (ln level of the 6 h before, production then).
    before: BTreeMap<String, (f64, f64)>,
    /// Per code: (sum of ln level, sum of production, minutes) after the settling time.
    after: BTreeMap<String, (f64, f64, u32)>,
    flagged: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stats {
    a_sum: f64,
    b_sum: f64,
    old: f64,
    new: f64,
    /// A step's channels: per code, the sum of its drops and the minutes it was stepped in.
    #[serde(default)]
    channels: BTreeMap<String, (f64, u32)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    resolution: BTreeMap<String, Resolution>,
    levels: BTreeMap<String, Level>,
    parameters: BTreeMap<String, f64>,
    last_calibration_ms: i64,
    door_open: bool,
    door: Option<DoorVisit>,
    runs: Runs<Stats>,
}

/// The figures of a `formula` episode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Formula {
    /// `formula`.
    pub(crate) signature: String,
    /// The pollutant.
    pub(crate) code: String,
    pub(crate) duration_min: f64,
    pub(crate) reported_converted_mean: f64,
    pub(crate) formula_converted_mean: f64,
    pub(crate) ratio_reported_to_formula: f64,
}

/// The figures of a `step` episode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Step {
    /// `step`.
    pub(crate) signature: String,
    /// The pollutant that stepped longest.
    pub(crate) code: String,
    /// Every pollutant that stepped in the episode, comma-separated.
    pub(crate) channels: String,
    pub(crate) duration_min: f64,
    /// Of `code`.
    pub(crate) level_ratio_to_previous_days: f64,
    pub(crate) production_ratio_to_previous_days: f64,
}

/// The figures of a `door` visit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Door {
    /// `door`.
    pub(crate) signature: String,
    /// The pollutant.
    pub(crate) code: String,
    pub(crate) level_ratio_after_to_before_door: f64,
    pub(crate) production_ratio_after_to_before_door: f64,
}

/// The figures of an instrument parameter (`param`) change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Parameter {
    /// `param`.
    pub(crate) signature: String,
    /// The parameter's channel (e.g. `a21026-i13008`).
    pub(crate) code: String,
    pub(crate) duration_min: f64,
    pub(crate) old_value: f64,
    pub(crate) new_value: f64,
}

/// The finding of an episode (or event) of any signature, from its key (`<signature>/<code>`) and sums.
fn finding(ctx: &OutletContext<'_>, due: &Due<Stats>) -> Finding {
    let t = ctx.topology;
    let (run, s) = (&due.run, &due.run.stats);
    let n = f64::from(run.held.max(1));
    let minutes = run.duration_min();
    let (what, code) = due.key.split_once('/').unwrap_or((due.key.as_str(), ""));
    let (kind, source_ids) = (AnomalyKind::ParameterTampering, vec![t.outlet.id.clone()]);
    match what {
        "formula" => {
            let (reported, formula) = (s.a_sum / n, s.b_sum / n);
            let figures = Formula {
                signature: "formula".into(),
                code: code.into(),
                duration_min: minutes,
                reported_converted_mean: reported,
                formula_converted_mean: formula,
                ratio_reported_to_formula: reported / formula,
            };
            let score = duration_score(minutes - f64::from(FORMULA.grace_min), 60.0);
            due.finding(kind, NAME, score, source_ids, &figures)
        }
        "step" => {
            let (code, (drop_sum, stepped)) = s
                .channels
                .iter()
                .max_by_key(|(_, (_, m))| *m)
                .map_or(("", (0.0, 1)), |(c, v)| (c.as_str(), *v));
            let ratio = (drop_sum / f64::from(stepped.max(1))).exp();
            let figures = Step {
                signature: "step".into(),
                code: code.into(),
                channels: s.channels.keys().cloned().collect::<Vec<_>>().join(","),
                duration_min: minutes,
                level_ratio_to_previous_days: ratio,
                production_ratio_to_previous_days: s.b_sum / n,
            };
            let score = duration_score(minutes - f64::from(STEP.grace_min), 360.0)
                * (1.6 - ratio).clamp(0.6, 1.0);
            due.finding(kind, NAME, score, source_ids, &figures)
        }
        "door" => {
            let figures = Door {
                signature: "door".into(),
                code: code.into(),
                level_ratio_after_to_before_door: s.old,
                production_ratio_after_to_before_door: s.new,
            };
            due.finding(kind, NAME, 0.75, source_ids, &figures)
        }
        _ => {
            let figures = Parameter {
                signature: "param".into(),
                code: code.into(),
                duration_min: minutes,
                old_value: s.old,
                new_value: s.new,
            };
            due.finding(kind, NAME, 0.8, source_ids, &figures)
        }
    }
}

/// The detector.
pub struct Tampering {
    false_alarms_per_day: f64,
    state: State,
}

impl Tampering {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            false_alarms_per_day: config.false_alarms_per_day,
            state: State::default(),
        })
    }

    fn formula(
        &mut self,
        ctx: &OutletContext<'_>,
        minute: &Minute<'_>,
        code: &str,
        out: &mut Vec<Finding>,
    ) {
        let row = minute.row;
        let reference = ctx.topology.outlet.reference_o2_pct;
        let key = format!("formula/{code}");
        let (Some(r), Some(o2)) = (
            row.cems.get(code).filter(|r| r.is_valid()),
            cems::raw(row, O2),
        ) else {
            return;
        };
        let Some(reported) = r.converted else {
            return;
        };
        let Some(formula) =
            units::converted_mg_m3(r.value, o2, reference, units::DEFAULT_O2_CEILING_PCT)
        else {
            return;
        };
        let res = self.state.resolution.entry(code.to_string()).or_default();
        res.observe(reported);
        let tolerance = (FORMULA_TOLERANCE * formula.abs()).max(2.0 * res.step());
        let due = if (reported - formula).abs() > tolerance {
            self.state
                .runs
                .bad(&key, row.minute_ms, FORMULA, Stats::default, |s| {
                    s.a_sum += reported;
                    s.b_sum += formula;
                })
        } else {
            self.state.runs.good(&key, row.minute_ms, FORMULA)
        };
        if let Some(due) = due {
            out.push(finding(ctx, &due));
        }
    }

    fn step(
        &mut self,
        ctx: &OutletContext<'_>,
        minute: &Minute<'_>,
        code: &str,
        out: &mut Vec<Finding>,
    ) {
        let p = minute.process;
        let row = minute.row;
        let reference = ctx.topology.outlet.reference_o2_pct;
        let Some(cz) = cems::converted(row, code, reference, units::DEFAULT_O2_CEILING_PCT)
            .valid()
            .filter(|v| *v > 0.0)
        else {
            return;
        };
        if !p.running() || p.production_kw <= 0.0 {
            return;
        }
        // One episode per outlet: channels that step together (a fuel, a DAU) are one shift, listed in its evidence.
        let key = "step";
        // A raised shift is one reviewable alarm, not weeks of one: a day after it was raised the reference takes the
        // new level, and the episode closes unless the level falls again.
        let raised_a_day_ago = self
            .state
            .runs
            .get(key)
            .and_then(|r| r.raised_at_ms)
            .is_some_and(|t| row.minute_ms - t >= REBASE_MS);
        let level = self.state.levels.entry(code.to_string()).or_default();
        let (x, prod) = (cz.ln(), p.production_kw);
        if level.n == 0 {
            level.long = x;
            level.short = x;
            level.production_long = prod;
            level.production_short = prod;
        }
        level.short += SHORT_ALPHA * (x - level.short);
        level.production_short += SHORT_ALPHA * (prod - level.production_short);
        let rebasing = ctx
            .topology
            .operating_changes
            .iter()
            .any(|c| (0..REBASE_MS).contains(&(row.minute_ms - c.effective_ms)));
        if rebasing {
            // A declared change: the new level is the reference from now on, and its settling is not evidence
            // (nor part of the outlet's null of honest drops).
            level.long = level.short;
            level.production_long = level.production_short;
            level.n += 1;
            if let Some(due) = self.state.runs.good(key, row.minute_ms, STEP) {
                out.push(finding(ctx, &due));
            }
            return;
        }
        if raised_a_day_ago && level.short - level.long < STEP_LN {
            level.long = level.short;
            level.production_long = level.production_short;
        }
        let production_ratio = level.production_short / level.production_long.max(1e-9);
        let comparable = (0.85..=1.15).contains(&production_ratio);
        // NOx falling while ammonia slip rises is over-injection of ammonia (its own kind), not a changed gain.
        let ammonia_up = code == NOX
            && self
                .state
                .levels
                .get(NH3)
                .is_some_and(|n| n.n >= MATURE && n.short - n.long > 0.4);
        let level = self.state.levels.entry(code.to_string()).or_default();
        let drop = level.short - level.long;
        let stepped = level.n >= MATURE && comparable && drop < STEP_LN && !ammonia_up;
        let hour_ms = period_start_ms(row.minute_ms, MS_PER_HOUR);
        if level.n >= MATURE && comparable && hour_ms != level.last_null_hour_ms {
            level.null.observe(-drop);
            level.last_null_hour_ms = hour_ms;
        }
        let beyond_own = level
            .null
            .threshold(self.false_alarms_per_day)
            .is_none_or(|bar| -drop > bar);
        if drop.abs() < -STEP_LN / 2.0 {
            // The long-term level learns only while the short-term one stays near it, and each minute can move it
            // only a little: neither a step down nor an excursion up (an idle scrubber's hours) may teach the
            // reference it is judged against.
            let a = (1.0 / (level.n as f64 + 1.0)).max(LONG_ALPHA);
            level.long += a * (x - level.long).clamp(-0.2, 0.2);
            level.production_long += a * (prod - level.production_long);
        }
        level.n += 1;
        let due = if stepped {
            self.state.runs.bad_when(
                key,
                row.minute_ms,
                STEP,
                Stats::default,
                |s| {
                    s.a_sum += drop;
                    s.b_sum += production_ratio;
                    let c = s.channels.entry(code.to_string()).or_default();
                    c.0 += drop;
                    c.1 += 1;
                },
                |_| beyond_own,
            )
        } else if comparable {
            self.state.runs.good(key, row.minute_ms, STEP)
        } else {
            None
        };
        if let Some(due) = due {
            out.push(finding(ctx, &due));
        }
    }

    fn parameters(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let row = minute.row;
        let now = row.minute_ms;
        if row
            .cems
            .values()
            .any(|r| matches!(r.flag, ValueFlag::Calibration | ValueFlag::Maintenance))
        {
            self.state.last_calibration_ms = now;
        }
        let window_open = now - self.state.last_calibration_ms <= 60 * MS_PER_MINUTE;
        for (code, reading) in &row.cems {
            let param = code.rsplit('-').next().unwrap_or(code);
            if !PARAMETER_CODES.contains(&param) {
                continue;
            }
            let previous = self.state.parameters.insert(code.clone(), reading.value);
            match previous {
                Some(old) if (old - reading.value).abs() > 1e-9 && !window_open => {
                    let stats = Stats {
                        old,
                        new: reading.value,
                        ..Stats::default()
                    };
                    let key = format!("param/{code}");
                    if let Some(due) = self.point_event(&key, now, now + MS_PER_MINUTE, stats) {
                        out.push(finding(ctx, &due));
                    }
                }
                _ => {}
            }
        }
    }

    /// An event raised and closed at once over `[start_ms, end_ms)` (a parameter change, a door visit), through the
    /// same runs as every episode so that its anomaly id is derived alike.
    fn point_event(
        &mut self,
        key: &str,
        start_ms: i64,
        end_ms: i64,
        stats: Stats,
    ) -> Option<Due<Stats>> {
        let timing = Timing::minutes(0, 0, 1);
        let mut due = self
            .state
            .runs
            .bad(key, start_ms, timing, || stats, |_| {})?;
        due.ongoing = false;
        due.run.last_bad_ms = end_ms - MS_PER_MINUTE;
        let _ = self.state.runs.good(key, end_ms, timing);
        Some(due)
    }

    /// Watches shelter door visits: the level before the door opened against the level after it.
    fn door(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let row = minute.row;
        let now = row.minute_ms;
        let reference = ctx.topology.outlet.reference_o2_pct;
        let open = row
            .cems
            .iter()
            .find(|(code, _)| code.rsplit('-').next() == Some(DOOR_CODE))
            .map(|(_, r)| r.value.abs() > 0.5);
        let flagged = self.state.last_calibration_ms == now;
        let opened = open == Some(true) && !self.state.door_open;
        if let Some(o) = open {
            self.state.door_open = o;
        }
        if opened && self.state.door.is_none() {
            let before = self
                .state
                .levels
                .iter()
                .filter(|(_, l)| l.n >= MATURE)
                .map(|(code, l)| (code.clone(), (l.short, l.production_short)))
                .collect();
            self.state.door = Some(DoorVisit {
                opened_ms: now,
                before,
                flagged: now - self.state.last_calibration_ms <= 60 * MS_PER_MINUTE,
                ..DoorVisit::default()
            });
        }
        let Some(visit) = self.state.door.as_mut() else {
            return;
        };
        visit.flagged |= flagged;
        let since_min = (now - visit.opened_ms) / MS_PER_MINUTE;
        if (DOOR_SETTLE_MIN..DOOR_JUDGE_MIN).contains(&since_min) && minute.process.running() {
            for code in visit.before.keys() {
                if let Some(cz) =
                    cems::converted(row, code, reference, units::DEFAULT_O2_CEILING_PCT)
                        .valid()
                        .filter(|v| *v > 0.0)
                {
                    let a = visit.after.entry(code.clone()).or_default();
                    a.0 += cz.ln();
                    a.1 += minute.process.production_kw;
                    a.2 += 1;
                }
            }
        }
        if since_min < DOOR_JUDGE_MIN {
            return;
        }
        let Some(visit) = self.state.door.take() else {
            return;
        };
        if visit.flagged {
            return;
        }
        for (code, (before, production_before)) in &visit.before {
            let Some((sum, production_sum, n)) = visit.after.get(code).copied() else {
                continue;
            };
            if n < 60 {
                continue;
            }
            let (after, production_after) = (sum / f64::from(n), production_sum / f64::from(n));
            let production_ratio = production_after / production_before.max(1e-9);
            if after - before >= DOOR_LN || !(0.85..=1.15).contains(&production_ratio) {
                continue;
            }
            let stats = Stats {
                old: (after - before).exp(),
                new: production_ratio,
                ..Stats::default()
            };
            let key = format!("door/{code}");
            if let Some(due) = self.point_event(&key, visit.opened_ms, now, stats) {
                out.push(finding(ctx, &due));
            }
        }
    }
}

impl Detector for Tampering {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let reference = ctx.topology.outlet.reference_o2_pct;
        for code in ctx.topology.monitored_codes() {
            if reference > 0.0 {
                self.formula(ctx, minute, &code, out);
            }
            self.step(ctx, minute, &code, out);
        }
        self.parameters(ctx, minute, out);
        // After `parameters`, which has noted this minute's calibration or maintenance flags.
        self.door(ctx, minute, out);
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        for due in self.state.runs.finish() {
            out.push(finding(ctx, &due));
        }
    }

    persist_state!(state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{
        row, run_detector, run_detector_at, summary_en, summary_zh, topology_with_limits,
        with_cems, T0,
    };
    use crate::signal::align::{OutletRow, Reading};

    fn topo() -> crate::domain::OutletTopology {
        topology_with_limits(&[("a21026", 35.0)])
    }

    fn noise(i: i64) -> f64 {
        (((i * 7919) % 23) as f64 - 11.0) / 11.0
    }

    /// SO2 raw ~20 at O2 7.5 (converted = raw × 15/13.5), reported converted through `zs`.
    fn minute(i: i64, gain: f64, zs: impl Fn(f64) -> f64, production: f64) -> OutletRow {
        let raw = ((20.0 + noise(i)) * gain * 10.0).round() / 10.0;
        let o2 = 7.5;
        let mut r = with_cems(
            row(i, &[("p1", Some(production)), ("t1", Some(150.0))]),
            &[("a21026", raw), ("a19001", o2)],
        );
        let formula = raw * 15.0 / 13.5;
        if let Some(x) = r.cems.get_mut("a21026") {
            x.converted = Some((zs(formula) * 10.0).round() / 10.0);
        }
        r
    }

    #[test]
    fn converted_values_scaled_in_the_dau_are_found_rounding_is_not() {
        let out = run_detector(
            Tampering::boxed,
            &topo(),
            (0..600).map(|i| {
                minute(
                    i,
                    1.0,
                    |f| if (300..420).contains(&i) { f * 0.6 } else { f },
                    800.0,
                )
            }),
        );
        let f: Vec<_> = out
            .iter()
            .filter(|f| !f.ongoing && f.key.starts_with("formula"))
            .collect();
        assert_eq!(f.len(), 1, "{out:#?}");
        assert!((f[0].evidence["ratio_reported_to_formula"] - 0.6).abs() < 0.02);
        let (en, zh) = (summary_en(f[0]), summary_zh(f[0]));
        assert!(en.contains("conversion tampered"), "{en}");
        assert!(zh.contains("折算参数疑被篡改"), "{zh}");
        // Rounded to 0.1 by the DAU: within tolerance.
        let quiet = run_detector(
            Tampering::boxed,
            &topo(),
            (0..600).map(|i| minute(i, 1.0, |f| f, 800.0)),
        );
        assert!(quiet.is_empty(), "{quiet:#?}");
    }

    #[test]
    fn a_gain_step_down_without_a_process_change_is_found_a_load_drop_is_not() {
        let n = 4 * 1440;
        let out = run_detector(
            Tampering::boxed,
            &topo(),
            (0..n).map(|i| minute(i, if i >= 3 * 1440 { 0.65 } else { 1.0 }, |f| f, 800.0)),
        );
        let steps: Vec<_> = out.iter().filter(|f| f.key.starts_with("step")).collect();
        assert!(!steps.is_empty(), "{out:#?}");
        assert!(steps[0].detected_at_ms - steps[0].start_ms <= 180 * MS_PER_MINUTE);
        assert!(steps.last().unwrap().evidence["level_ratio_to_previous_days"] < 0.75);
        assert!(summary_en(steps[0]).contains("gain or slope changed"));
        // The same drop with production falling to half: a process change, not judged.
        let quiet = run_detector(
            Tampering::boxed,
            &topo(),
            (0..n).map(|i| {
                if i >= 3 * 1440 {
                    minute(i, 0.65, |f| f, 400.0)
                } else {
                    minute(i, 1.0, |f| f, 800.0)
                }
            }),
        );
        assert!(
            quiet.iter().all(|f| !f.key.starts_with("step")),
            "{quiet:#?}"
        );
    }

    /// Two channels stepping down together (a DAU's gain on both) are one shift of the outlet: one anomaly listing
    /// both, raised once and re-based a day later, not a weeks-long episode per channel.
    #[test]
    fn channels_that_step_together_are_one_bounded_anomaly_of_the_outlet() {
        let n = 8 * 1440;
        let t = topology_with_limits(&[("a21026", 35.0), ("a21002", 100.0)]);
        let out = run_detector(
            Tampering::boxed,
            &t,
            (0..n).map(|i| {
                let gain = if i >= 3 * 1440 { 0.6 } else { 1.0 };
                let so2 = ((20.0 + noise(i)) * gain * 10.0).round() / 10.0;
                let nox = ((60.0 + 2.0 * noise(i + 5)) * gain * 10.0).round() / 10.0;
                with_cems(
                    row(i, &[("p1", Some(800.0)), ("t1", Some(150.0))]),
                    &[("a21026", so2), ("a21002", nox), ("a19001", 7.5)],
                )
            }),
        );
        let steps: Vec<_> = out
            .iter()
            .filter(|f| f.key == "step" && !f.ongoing)
            .collect();
        assert_eq!(steps.len(), 1, "{out:#?}");
        assert_eq!(steps[0].evidence.text("channels"), Some("a21002,a21026"));
        assert!(
            summary_en(steps[0]).contains("(with a2100"),
            "{}",
            summary_en(steps[0])
        );
        let hours = (steps[0].end_ms - steps[0].start_ms) / (60 * MS_PER_MINUTE);
        assert!((24..48).contains(&hours), "{hours} h");
    }

    /// A legitimate fuel change (every level steps down at unchanged production) that the enterprise declared
    /// re-bases the outlet: no step at it, but a gain cut two days after it is still found against the new level.
    #[test]
    fn a_step_at_a_declared_operating_change_rebases_the_outlet_and_a_later_gain_cut_is_still_found(
    ) {
        let n = 7 * 1440;
        let change_at = 3 * 1440;
        let mut declared = topo();
        declared
            .operating_changes
            .push(crate::domain::OperatingChange {
                enterprise_id: "e1".into(),
                outlet_id: "s1".into(),
                kind: crate::domain::OperatingChangeKind::Fuel,
                effective_ms: T0 + change_at * MS_PER_MINUTE,
                ..Default::default()
            });
        let fuel = |i: i64| if i >= change_at { 0.65 } else { 1.0 };
        let steps = |topology: &crate::domain::OutletTopology, gain: &dyn Fn(i64) -> f64| {
            run_detector(
                Tampering::boxed,
                topology,
                (0..n).map(|i| minute(i, gain(i), |f| f, 800.0)),
            )
            .into_iter()
            .filter(|f| f.key.starts_with("step"))
            .collect::<Vec<_>>()
        };
        // Undeclared, the same fuel change is a step (an officer may review it as a false positive).
        assert!(!steps(&topo(), &fuel).is_empty());
        let rebased = steps(&declared, &fuel);
        assert!(rebased.is_empty(), "{rebased:#?}");
        // Two days after the declared change, the gain is cut to 60 %: judged against the new level, it is found.
        let cut = steps(&declared, &|i| {
            fuel(i) * if i >= change_at + 2 * 1440 { 0.6 } else { 1.0 }
        });
        assert!(!cut.is_empty());
        assert!(
            cut[0].start_ms >= T0 + (change_at + 2 * 1440) * MS_PER_MINUTE,
            "{cut:#?}"
        );
        assert!(cut.last().unwrap().evidence["level_ratio_to_previous_days"] < 0.7);
    }

    #[test]
    fn a_slope_changed_outside_calibration_is_found_inside_it_is_not() {
        let param = |mut r: OutletRow, slope: f64, flag: ValueFlag| {
            r.cems.insert(
                "a21026-i13008".into(),
                Reading::of(slope, ValueFlag::Normal, None),
            );
            if let Some(x) = r.cems.get_mut("a21026") {
                x.flag = flag;
            }
            r
        };
        let out = run_detector(
            Tampering::boxed,
            &topo(),
            (0..600).map(|i| {
                let r = minute(i, 1.0, |f| f, 800.0);
                match i {
                    // Recalibrated during a flagged calibration at minute 100: slope 1.00 -> 1.02.
                    100..110 => param(r, if i >= 105 { 1.02 } else { 1.0 }, ValueFlag::Calibration),
                    // Changed at 2 am with no flag: 1.02 -> 0.80.
                    i if i >= 400 => param(r, 0.8, ValueFlag::Normal),
                    i if i >= 105 => param(r, 1.02, ValueFlag::Normal),
                    _ => param(r, 1.0, ValueFlag::Normal),
                }
            }),
        );
        let p: Vec<_> = out.iter().filter(|f| f.key.starts_with("param")).collect();
        assert_eq!(p.len(), 1, "{out:#?}");
        assert_eq!(
            (p[0].evidence["old_value"], p[0].evidence["new_value"]),
            (1.02, 0.8)
        );
        assert!(
            summary_en(p[0]).contains("changed from 1.02 to 0.8"),
            "{}",
            summary_en(p[0])
        );
    }

    /// A plant whose fuel sulfur changes every 30 hours by up to ±`swing` (batches drawn by `seed`), with its SO2
    /// analyzer's gain halved from `cheat_from` (minutes) on.
    fn fuel_changes(days: i64, swing: f64, cheat_from: i64, seed: u64) -> Vec<OutletRow> {
        (0..days * 1440)
            .map(|i| {
                let batch = i / 1800;
                let sulfur = 1.0 + swing * crate::detect::testutil::noise(batch, 77 + seed);
                let gain = if i >= cheat_from { 0.5 } else { 1.0 };
                minute(i, sulfur * gain, |f| f, 800.0)
            })
            .collect()
    }

    /// False step episodes after the third day over ten honest plants × 30 days: with the outlet's own null at
    /// 0.01 per outlet-day, and with the textbook rule alone.
    fn false_steps(swing: f64) -> (usize, usize) {
        let steps = |out: &[Finding]| -> usize {
            out.iter()
                .filter(|f| f.key.starts_with("step") && !f.ongoing)
                .filter(|f| f.start_ms >= crate::detect::testutil::T0 + 3 * 1440 * MS_PER_MINUTE)
                .count()
        };
        let (mut own, mut textbook) = (0, 0);
        for seed in 0..10 {
            let honest = fuel_changes(30, swing, i64::MAX, seed);
            own += steps(&run_detector_at(
                Tampering::boxed,
                &topo(),
                0.01,
                honest.clone(),
            ));
            textbook += steps(&run_detector_at(Tampering::boxed, &topo(), 1e6, honest));
        }
        (own, textbook)
    }

    /// Blends varying by ±28 % (changes of up to 45 % every 30 h): over the budget (measured: 6 false episodes
    /// against the textbook's 15 in 270 outlet-days at 0.01), because a month holds only a few such changes to learn
    /// from. Kept out of the default run for its cost; `cargo test --release -- --ignored severe` reproduces it.
    #[test]
    #[ignore]
    fn severe_fuel_swings_the_null_at_least_halves_the_false_episodes() {
        let (own, textbook) = false_steps(0.28);
        assert!(
            2 * own <= textbook,
            "{own} false episodes (textbook alone: {textbook})"
        );
    }

    #[test]
    fn honest_fuel_swings_are_judged_by_the_outlets_own_history_a_halved_gain_still_is_found() {
        // Blends varying by ±24 %: the textbook rule calls some changes gain steps (measured: 7); the outlet's own
        // history keeps the false episodes within the budget (0.01 × 270 judged outlet-days = 2.7; measured: 2).
        let (own, textbook) = false_steps(0.24);
        assert!(
            textbook >= 3,
            "the fixture rarely passes the textbook bar: {textbook}"
        );
        assert!(
            own <= 2,
            "{own} false episodes (textbook alone: {textbook})"
        );
        // The same plant with its gain halved on day 20.
        let cheat = run_detector(
            Tampering::boxed,
            &topo(),
            fuel_changes(30, 0.28, 20 * 1440, 0),
        );
        let found: Vec<_> = cheat
            .iter()
            .filter(|f| f.key.starts_with("step") && !f.ongoing)
            .filter(|f| f.start_ms >= crate::detect::testutil::T0 + 19 * 1440 * MS_PER_MINUTE)
            .collect();
        assert!(!found.is_empty(), "{cheat:#?}");
        assert!(found[0].evidence["level_ratio_to_previous_days"] < 0.7);
    }

    /// Four days; the shelter door opens for 20 minutes at `door_at` (minutes), the SO2 gain is `gain_after` from the
    /// door on, and the visit carries a maintenance flag if `flagged`.
    fn visit(door_at: i64, gain_after: f64, flagged: bool) -> Vec<Finding> {
        run_detector(
            Tampering::boxed,
            &topo(),
            (0..4 * 1440).map(|i| {
                let mut r = minute(i, if i >= door_at { gain_after } else { 1.0 }, |f| f, 800.0);
                let open = (door_at..door_at + 20).contains(&i);
                r.cems.insert(
                    "i32001".into(),
                    Reading::of(f64::from(u8::from(open)), ValueFlag::Normal, None),
                );
                if open && flagged {
                    if let Some(x) = r.cems.get_mut("a21026") {
                        x.flag = ValueFlag::Maintenance;
                    }
                }
                r
            }),
        )
    }

    #[test]
    fn a_level_change_after_the_shelter_door_opens_is_found_a_routine_or_flagged_visit_is_not() {
        let door = 2 * 1440 + 600;
        let out = visit(door, 0.7, false);
        let d: Vec<_> = out.iter().filter(|f| f.key.starts_with("door")).collect();
        assert_eq!(d.len(), 1, "{out:#?}");
        assert_eq!(
            d[0].start_ms,
            crate::detect::testutil::T0 + door * MS_PER_MINUTE
        );
        assert!(
            (d[0].evidence["level_ratio_after_to_before_door"] - 0.7).abs() < 0.05,
            "{:?}",
            d[0]
        );
        assert!(!d[0].ongoing);
        assert!(summary_en(d[0]).contains("the analyzer was touched"));
        // A routine visit that changes nothing, and a visit under a maintenance flag.
        for quiet in [visit(door, 1.0, false), visit(door, 0.7, true)] {
            assert!(
                quiet.iter().all(|f| !f.key.starts_with("door")),
                "{quiet:#?}"
            );
        }
    }
}

//! `FLATLINE`: a pollutant channel stuck at one value (or toggling within one step of its resolution) for an hour or
//! more while the process visibly varies (stack flow or production power moving).
//!
//! Once 50 flat runs of a channel are known, a run must also outlast what the outlet's own runs make likely at the
//! configured false-alarm rate (run lengths' empirical null, [`super::kit::null::RunLengths`]): an analyzer that honestly
//! holds its value for a while (an unflagged back-purge) sets its own, longer bar.
//!
//! Look-alikes: readings at the detection limit (gas-fired units report SO2 at the resolution for days; values
//! within `3 × resolution` or 5 % of the limit are not judged), a plant whose process is itself steady (no flow or
//! power variation: no evidence), calibration and stop periods (flagged, not valid).

use super::kit::null::RunLengths;
use super::kit::{duration_score, Due, Runs, Span, Timing};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::AnomalyKind;
use crate::signal::cems::{self, Resolution};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Detector name and version.
pub const NAME: &str = "flatline/2";

/// An hour of identical readings before raising; a changed reading closes the run at once.
const TIMING: Timing = Timing::minutes(60, 1, 120);
/// Identical hour (or day) averages before raising: an hour average of a live analyzer repeats to its resolution for
/// a few hours at steady load, not for half a day.
const FLAT_AVERAGES: u32 = 12;

/// The timing for a channel whose readings average over `span_min` minutes: for minute data [`TIMING`], for averages
/// one judgement per average.
fn timing(span_min: u32) -> Timing {
    if span_min <= 1 {
        return TIMING;
    }
    Timing {
        grace_min: FLAT_AVERAGES * span_min,
        close_after_min: span_min,
        update_every_min: 6 * span_min,
        period_min: span_min,
    }
}
/// Weight of a minute in the typical step once warmed up (~1 day).
const TYPICAL_ALPHA: f64 = 1.0 / 1440.0;

/// A running mean that learns fast while young.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Typical {
    mean: f64,
    n: u64,
}

impl Typical {
    fn learn(&mut self, x: f64) {
        let a = (1.0 / (self.n as f64 + 1.0)).max(TYPICAL_ALPHA);
        self.mean += a * (x - self.mean);
        self.n += 1;
    }
}

/// Coefficient of variation of flow or production power over the run that shows the process moving.
const PROCESS_CV: f64 = 0.005;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stats {
    value: f64,
    min: f64,
    max: f64,
    flow: Moments,
    production: Moments,
}

/// Running moments for a coefficient of variation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Moments {
    n: f64,
    sum: f64,
    sq: f64,
}

impl Moments {
    fn add(&mut self, x: f64) {
        self.n += 1.0;
        self.sum += x;
        self.sq += x * x;
    }

    fn cv(&self) -> f64 {
        if self.n < 2.0 || self.sum.abs() < 1e-12 {
            return 0.0;
        }
        let mean = self.sum / self.n;
        ((self.sq / self.n - mean * mean).max(0.0)).sqrt() / mean.abs()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    resolution: BTreeMap<String, Resolution>,
    anchor: BTreeMap<String, f64>,
    previous: BTreeMap<String, f64>,
    /// Typical absolute minute-to-minute change per channel.
    typical_step: BTreeMap<String, Typical>,
    runs: Runs<Stats>,
    /// How long flat runs last at this outlet, raised or not.
    lengths: RunLengths,
    /// Minutes each channel's latest reading averaged over.
    #[serde(default)]
    span_min: BTreeMap<String, u32>,
    /// The outlet's open episode: channels stuck together are one anomaly.
    #[serde(default)]
    merged: Option<Merged>,
}

/// One episode of the outlet over every channel stuck in it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Merged {
    start_ms: i64,
    end_ms: i64,
    raised_at_ms: i64,
    /// Each stuck channel's latest figures and score.
    channels: BTreeMap<String, (Figures, f64)>,
    /// Channels whose run is still open.
    open: std::collections::BTreeSet<String>,
}

/// The figures of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Figures {
    /// The channel stuck longest.
    pub(crate) code: String,
    /// Every channel stuck in the episode, comma-separated.
    pub(crate) channels: String,
    pub(crate) duration_min: f64,
    pub(crate) stuck_value: f64,
    pub(crate) range_during_run: f64,
    /// The channel's learned reading resolution.
    pub(crate) resolution: f64,
    /// Minutes each reading averages over (60 for an outlet that reports hour averages).
    pub(crate) reading_span_min: u32,
    pub(crate) flow_cv_during_run: f64,
    pub(crate) production_cv_during_run: f64,
}

/// The detector.
pub struct Flatline {
    /// False alarms per outlet-day the run-length bar is set for.
    false_alarms_per_day: f64,
    state: State,
}

impl Flatline {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            false_alarms_per_day: config.false_alarms_per_day,
            state: State::default(),
        })
    }

    /// One channel's run as figures, with its score.
    fn figures(&self, due: &Due<Stats>) -> (Figures, f64) {
        let (run, s) = (&due.run, &due.run.stats);
        let minutes = run.duration_min();
        let resolution = self
            .state
            .resolution
            .get(&due.key)
            .map_or(0.0, Resolution::step);
        let span = self.state.span_min.get(&due.key).copied().unwrap_or(1);
        let score = duration_score(minutes - f64::from(timing(span).grace_min), 120.0);
        let figures = Figures {
            code: due.key.clone(),
            channels: due.key.clone(),
            duration_min: minutes,
            stuck_value: s.value,
            range_during_run: s.max - s.min,
            resolution,
            reading_span_min: span,
            flow_cv_during_run: s.flow.cv(),
            production_cv_during_run: s.production.cv(),
        };
        (figures, score)
    }

    /// Folds a channel's run into the outlet's episode and emits the episode: four analyzers stuck together are one
    /// anomaly listing them, spoken for by the one stuck longest.
    fn emit(&mut self, ctx: &OutletContext<'_>, due: &Due<Stats>, out: &mut Vec<Finding>) {
        let (figures, score) = self.figures(due);
        let joins = self
            .state
            .merged
            .as_ref()
            .is_some_and(|m| !m.open.is_empty() || due.run.start_ms <= m.end_ms);
        if !joins {
            self.state.merged = None;
        }
        let m = self.state.merged.get_or_insert_with(|| Merged {
            start_ms: due.run.start_ms,
            end_ms: due.run.end_ms(),
            raised_at_ms: due.run.raised_at_ms.unwrap_or(due.run.end_ms()),
            ..Merged::default()
        });
        m.end_ms = m.end_ms.max(due.run.end_ms());
        if due.ongoing {
            m.open.insert(due.key.clone());
        } else {
            m.open.remove(&due.key);
        }
        m.channels.insert(due.key.clone(), (figures, score));
        let Some((lead, score)) = m
            .channels
            .values()
            .max_by(|a, b| a.0.duration_min.total_cmp(&b.0.duration_min))
            .cloned()
        else {
            return;
        };
        let figures = Figures {
            channels: m.channels.keys().cloned().collect::<Vec<_>>().join(","),
            ..lead
        };
        let ongoing = !m.open.is_empty();
        out.push(
            Span {
                key: String::new(),
                start_ms: m.start_ms,
                end_ms: m.end_ms,
                detected_at_ms: m.raised_at_ms,
                ongoing,
            }
            .finding(
                AnomalyKind::Flatline,
                NAME,
                score,
                vec![ctx.topology.outlet.id.clone()],
                &figures,
            ),
        );
        if !ongoing {
            self.state.merged = None;
        }
    }
}

impl Detector for Flatline {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let t = ctx.topology;
        let now = minute.row.minute_ms;
        let p = minute.process;
        for code in t.monitored_codes() {
            if let Some(r) = minute.row.cems.get(&code) {
                if !r.starts_sample() {
                    continue; // an hour average is judged once, at its first minute
                }
                self.state.span_min.insert(code.clone(), r.span_min);
            }
            let timing = timing(self.state.span_min.get(&code).copied().unwrap_or(1));
            let Some(v) = cems::raw(minute.row, &code) else {
                // A gap or a flagged minute breaks the run: values before and after a stop or a maintenance that
                // happen to agree are not a stuck channel.
                self.state.anchor.remove(&code);
                self.state.previous.remove(&code);
                let timing = Timing {
                    close_after_min: 0,
                    ..timing
                };
                if let Some(due) =
                    self.state
                        .runs
                        .good_recorded(&code, now, timing, &mut self.state.lengths)
                {
                    self.emit(ctx, &due, out);
                }
                continue;
            };
            let res = self.state.resolution.entry(code.clone()).or_default();
            res.observe(v);
            let step = res.step();
            let limit = t.outlet.limits_mg_m3.get(&code).copied().unwrap_or(0.0);
            let anchor = *self.state.anchor.entry(code.clone()).or_insert(v);
            // A channel that normally moves less than two resolution steps a minute (readings at the detection limit,
            // a quiet analyzer at its resolution) proves nothing by standing still.
            let moves = self
                .state
                .typical_step
                .get(&code)
                .is_some_and(|t| t.mean >= 2.0 * step);
            let at_detection_limit = anchor.abs() <= (3.0 * step).max(0.1 * limit) || !moves;
            let flat = (v - anchor).abs() <= 1.01 * step && !at_detection_limit && p.running();
            if !flat {
                // Learn how much the channel usually moves, from minutes that are not part of a flat run.
                if let Some(prev) = self.state.previous.insert(code.clone(), v) {
                    self.state
                        .typical_step
                        .entry(code.clone())
                        .or_default()
                        .learn((v - prev).abs());
                }
            } else {
                self.state.previous.insert(code.clone(), v);
            }
            let bar = self
                .state
                .lengths
                .bar_min(&code, now, self.false_alarms_per_day);
            let due = if flat {
                let flow = p.flow_any_flag_m3_s;
                let production = p.production_kw;
                self.state.runs.bad_when(
                    &code,
                    now,
                    timing,
                    || Stats {
                        value: anchor,
                        min: v,
                        max: v,
                        ..Stats::default()
                    },
                    |s| {
                        s.min = s.min.min(v);
                        s.max = s.max.max(v);
                        if let Some(f) = flow {
                            s.flow.add(f);
                        }
                        s.production.add(production);
                    },
                    |run| {
                        run.stats.max - run.stats.min <= 1.01 * step
                            && (run.stats.flow.cv() >= PROCESS_CV
                                || run.stats.production.cv() >= PROCESS_CV)
                            && bar.is_none_or(|b| run.duration_min() > b)
                    },
                )
            } else {
                self.state.anchor.insert(code.clone(), v);
                self.state
                    .runs
                    .good_recorded(&code, now, timing, &mut self.state.lengths)
            };
            if let Some(due) = due {
                self.emit(ctx, &due, out);
            }
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        for due in self.state.runs.finish() {
            self.emit(ctx, &due, out);
        }
    }

    persist_state!(state);
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

    /// SO2 from `so2(i)`, a noisy flow and production power.
    fn run(so2: impl Fn(i64) -> f64) -> Vec<Finding> {
        run_detector(
            Flatline::boxed,
            &topo(),
            (0..600).map(|i| -> OutletRow {
                let wobble = ((i * 7919) % 13) as f64;
                with_cems(
                    row(i, &[("p1", Some(800.0 + wobble)), ("t1", Some(150.0))]),
                    &[("a21026", so2(i)), ("a00000", 300.0 + wobble)],
                )
            }),
        )
    }

    /// Readings at 0.1 resolution that move by varied steps, as a real analyzer's do.
    fn noisy(i: i64) -> f64 {
        20.0 + (((i * i * 7919 + i * 31) % 97) as f64 - 48.0) * 0.1
    }

    /// Two analyzers frozen together (a DAU re-sending its last values) are one anomaly of the outlet listing both.
    #[test]
    fn channels_stuck_together_are_one_anomaly() {
        let t = topology_with_limits(&[("a21026", 35.0), ("a21002", 100.0)]);
        let out = run_detector(
            Flatline::boxed,
            &t,
            (0..600).map(|i| -> OutletRow {
                let wobble = ((i * 7919) % 13) as f64;
                let stuck = (200..320).contains(&i);
                with_cems(
                    row(i, &[("p1", Some(800.0 + wobble)), ("t1", Some(150.0))]),
                    &[
                        ("a21026", if stuck { 18.3 } else { noisy(i) }),
                        ("a21002", if stuck { 61.7 } else { 3.0 * noisy(i + 17) }),
                        ("a00000", 300.0 + wobble),
                    ],
                )
            }),
        );
        let closed: Vec<_> = out.iter().filter(|f| !f.ongoing).collect();
        assert_eq!(closed.len(), 1, "{out:#?}");
        assert_eq!(closed[0].evidence.text("channels"), Some("a21002,a21026"));
        let ids: std::collections::BTreeSet<_> =
            out.iter().map(|f| (f.key.clone(), f.start_ms)).collect();
        assert_eq!(ids.len(), 1, "one episode: {ids:?}");
    }

    /// An outlet reporting hour averages: 30 identical averages are found, from the first to the last, and an honest
    /// series whose averages repeat for a few hours at a time is not.
    #[test]
    fn stuck_hour_averages_are_judged_per_average() {
        let hourly = |value: fn(i64) -> f64| {
            run_detector(
                Flatline::boxed,
                &topo(),
                (0..10 * 1440).map(move |i| -> OutletRow {
                    let h = i / 60;
                    let wobble = ((h * 7919) % 13) as f64;
                    let mut r = with_cems(
                        row(i, &[("p1", Some(800.0 + wobble)), ("t1", Some(150.0))]),
                        &[("a21026", value(h)), ("a00000", 300.0 + wobble)],
                    );
                    for reading in r.cems.values_mut() {
                        reading.span_min = 60;
                        reading.minute_of_span = (i % 60) as u32;
                    }
                    r
                }),
            )
        };
        // Each honest average held for up to three hours (steady load, rounded averages).
        let honest = |h: i64| noisy(h / 3);
        assert!(hourly(honest).is_empty());
        let stuck = hourly(|h| {
            if (100..130).contains(&h) {
                18.3
            } else {
                noisy(h / 3)
            }
        });
        let closed: Vec<_> = stuck.iter().filter(|f| !f.ongoing).collect();
        assert_eq!(closed.len(), 1, "{stuck:#?}");
        assert!(
            (closed[0].start_ms - (T0 + 100 * 60 * MS_PER_MINUTE)).abs() <= 3 * 60 * MS_PER_MINUTE
        );
        assert_eq!(closed[0].end_ms, T0 + 130 * 60 * MS_PER_MINUTE);
        assert_eq!(closed[0].evidence["reading_span_min"], 60.0);
    }

    #[test]
    fn a_stuck_value_is_found_and_so_is_a_careful_one_that_toggles() {
        let out = run(|i| {
            if (200..320).contains(&i) {
                18.3
            } else {
                noisy(i)
            }
        });
        let closed: Vec<_> = out.iter().filter(|f| !f.ongoing).collect();
        assert_eq!(closed.len(), 1, "{out:#?}");
        assert!((closed[0].start_ms - (T0 + 200 * MS_PER_MINUTE)).abs() <= MS_PER_MINUTE);
        assert_eq!(closed[0].end_ms, T0 + 320 * MS_PER_MINUTE);
        assert_eq!(closed[0].evidence["stuck_value"], 18.3);
        let careful = run(|i| {
            if (200..320).contains(&i) {
                18.3 + if i % 2 == 0 { 0.1 } else { 0.0 }
            } else {
                noisy(i)
            }
        });
        assert_eq!(
            careful.iter().filter(|f| !f.ongoing).count(),
            1,
            "{careful:#?}"
        );
    }

    #[test]
    fn equal_values_either_side_of_a_maintenance_window_are_not_a_run() {
        let t = topo();
        let out = run_detector(
            Flatline::boxed,
            &t,
            (0..600).map(|i| {
                let mut r = with_cems(
                    row(
                        i,
                        &[
                            ("p1", Some(800.0 + ((i * 7919) % 13) as f64)),
                            ("t1", Some(150.0)),
                        ],
                    ),
                    &[
                        (
                            "a21026",
                            if (300..303).contains(&i) || (400..403).contains(&i) {
                                22.3
                            } else {
                                noisy(i)
                            },
                        ),
                        ("a00000", 300.0 + ((i * 7919) % 13) as f64),
                    ],
                );
                if (303..400).contains(&i) {
                    if let Some(x) = r.cems.get_mut("a21026") {
                        x.flag = crate::domain::ValueFlag::Maintenance;
                    }
                }
                r
            }),
        );
        assert!(out.is_empty(), "{out:#?}");
    }

    #[test]
    fn quiet_on_noise_detection_limit_readings_and_a_steady_process() {
        assert!(run(noisy).is_empty());
        // A gas-fired unit at the detection limit: SO2 reads 2 (resolution 1) for hours.
        assert!(run(|i| if i % 97 == 0 { 3.0 } else { 2.0 }).is_empty());
        // The whole process steady (no flow or power variation): no evidence the value should move.
        let steady = run_detector(
            Flatline::boxed,
            &topo(),
            (0..600).map(|i| {
                with_cems(
                    row(i, &[("p1", Some(800.0)), ("t1", Some(150.0))]),
                    &[("a21026", 18.3), ("a00000", 300.0)],
                )
            }),
        );
        assert!(steady.is_empty(), "{steady:#?}");
    }

    /// Ten days of an analyzer that honestly holds its last value for 70–85 minutes every three hours (an unflagged
    /// back-purge) while the process varies; `stuck` adds a real six-hour stuck value on day 9.
    fn purging_analyzer(stuck: bool) -> Vec<Finding> {
        run_detector(
            Flatline::boxed,
            &topo(),
            (0..10 * 1440).map(|i| -> OutletRow {
                let wobble = ((i * 7919) % 13) as f64;
                let cycle = i % 180;
                let hold_len = 70 + (i / 180) % 16;
                let so2 = if stuck && (9 * 1440..9 * 1440 + 360).contains(&i) {
                    18.3
                } else if cycle < hold_len {
                    noisy(i - cycle)
                } else {
                    noisy(i)
                };
                with_cems(
                    row(i, &[("p1", Some(800.0 + wobble)), ("t1", Some(150.0))]),
                    &[("a21026", so2), ("a00000", 300.0 + wobble)],
                )
            }),
        )
    }

    #[test]
    fn an_analyzers_honest_holds_stop_alarming_once_its_own_run_lengths_are_known() {
        let out = purging_analyzer(false);
        // Before 50 runs are known the fixed hour flags the holds; after, the outlet's own history sets the bar.
        assert!(!out.is_empty());
        let late: Vec<_> = out
            .iter()
            .filter(|f| f.end_ms >= T0 + 8 * 1440 * MS_PER_MINUTE)
            .collect();
        assert!(late.is_empty(), "{late:#?}");
    }

    #[test]
    fn a_real_stuck_value_still_outlasts_that_bar() {
        let out = purging_analyzer(true);
        let day9: Vec<_> = out
            .iter()
            .filter(|f| !f.ongoing && f.start_ms >= T0 + 9 * 1440 * MS_PER_MINUTE)
            .collect();
        assert_eq!(day9.len(), 1, "{out:#?}");
        assert!(day9[0].evidence["duration_min"] >= 350.0);
    }
}

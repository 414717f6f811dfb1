//! `PARAMETER_TAMPERING`, channel substitution: one channel's record is another's in disguise, e.g. a particulate
//! reading generated from the flue-gas temperature, so that it moves but never on its own.
//!
//! Physically unrelated channels (particulate, SO2, NOx, O2, temperature, flow, …) share the process's slow trend but
//! each carries its own analyzer's noise: their minute-to-minute changes are nearly uncorrelated at steady load.
//! Every hour, for each pair of moving channels, the Pearson correlation of first differences over the last two hours
//! is computed; `|r| ≥ 0.95` (with ~119 differences, a 19 σ event for independent noise) while production stayed
//! within ±10 % raises the hour, once three days of the pair's hours are known only if the hour also stands out from
//! the pair's own history (the empirical null of Fisher's z, see [`super::kit::null`]) at the configured false-alarm rate.
//! Two raised hours in a row open an episode.
//!
//! Look-alikes: start-up and load ramps (every channel follows the load: production outside ±10 %, not judged);
//! treatment switching on or off (a wet scrubber stopping heats the gas as its SO2 climbs: treatment power outside
//! ±10 %, not judged);
//! pairs coupled by physics or by the analyzer (flow computed from velocity, humidity of saturated gas following its
//! temperature, O2 and every concentration diluted by the same air: never judged; gases sharing one sample line:
//! their own history sets the bar); channels at their resolution or held values flickering by one step (they do not
//! move).

use super::kit::null::HourlyNull;
use super::kit::stats::{correlation, fisher_z, sd};
use super::kit::{push_bounded, saturating, Due, Runs, Timing};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::codes::{FLOW, HUMIDITY, NH3, NMHC, NOX, O2, PM, SO2, TEMPERATURE, VELOCITY};
use crate::domain::{AnomalyKind, MS_PER_HOUR};
use crate::signal::cems::{self, Resolution};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Detector name and version.
pub const NAME: &str = "channel_substitution/1";
/// Channels compared: each measured by its own instrument.
const CHANNELS: [&str; 10] = [
    FLOW,
    VELOCITY,
    TEMPERATURE,
    HUMIDITY,
    O2,
    SO2,
    NOX,
    PM,
    NH3,
    NMHC,
];
/// Pairs coupled by physics or by how the CEMS computes them: never judged.
const COUPLED: [(&str, &str); 2] = [(FLOW, VELOCITY), (TEMPERATURE, HUMIDITY)];
/// Concentrations: diluted by the same air that raises O2, so O2 and each of them are coupled.
const CONCENTRATIONS: [&str; 5] = [SO2, NOX, PM, NH3, NMHC];

/// Whether a pair moves together by physics rather than by fraud.
fn coupled(a: &str, b: &str) -> bool {
    COUPLED
        .iter()
        .any(|(x, y)| (*x == a && *y == b) || (*x == b && *y == a))
        || (a == O2 && CONCENTRATIONS.contains(&b))
        || (b == O2 && CONCENTRATIONS.contains(&a))
}
/// Minutes in the compared window.
const WINDOW: usize = 120;
/// Differences needed (both channels valid in consecutive minutes).
const MIN_DIFFS: usize = 90;
/// Correlation of differences that counts as one channel copying another.
const MIN_CORRELATION: f64 = 0.95;
/// Production range over the window allowed, as a share of its mean.
const STEADY: f64 = 0.10;
const TIMING: Timing = Timing::minutes(60, 120, 360);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stats {
    r_sum: f64,
    r_min: f64,
    /// Sum of the copy's scale: sd of the second channel's differences over the first's.
    scale_sum: f64,
    hours: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    values: BTreeMap<String, VecDeque<Option<f64>>>,
    resolution: BTreeMap<String, Resolution>,
    production: VecDeque<Option<f64>>,
    /// Treatment power (kW, all linked meters) of the last minutes: a scrubber switching on or off moves several
    /// channels at once (a wet FGD stopping heats the gas as its SO2 climbs).
    treatment: VecDeque<Option<f64>>,
    nulls: BTreeMap<String, HourlyNull>,
    runs: Runs<Stats>,
}

/// The figures of an episode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Figures {
    /// The pair's first channel.
    pub(crate) code_a: String,
    /// Its second channel.
    pub(crate) code_b: String,
    pub(crate) duration_min: f64,
    pub(crate) hours_matched: u32,
    pub(crate) mean_abs_correlation_of_changes: f64,
    pub(crate) min_abs_correlation_of_changes: f64,
    /// Mean sd of the second channel's changes over the first's.
    pub(crate) scale_of_copy: f64,
}

/// The detector.
pub struct Substitution {
    false_alarms_per_day: f64,
    state: State,
}

/// Differences of the minutes where both channels are valid in consecutive minutes.
fn paired_differences(
    a: &VecDeque<Option<f64>>,
    b: &VecDeque<Option<f64>>,
) -> (Vec<f64>, Vec<f64>) {
    let (mut da, mut db) = (Vec::new(), Vec::new());
    for i in 1..a.len().min(b.len()) {
        if let (Some(a0), Some(a1), Some(b0), Some(b1)) = (a[i - 1], a[i], b[i - 1], b[i]) {
            da.push(a1 - a0);
            db.push(b1 - b0);
        }
    }
    (da, db)
}

impl Substitution {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            false_alarms_per_day: config.false_alarms_per_day,
            state: State::default(),
        })
    }

    fn finding(&self, ctx: &OutletContext<'_>, due: &Due<Stats>) -> Finding {
        let t = ctx.topology;
        let s = &due.run.stats;
        let hours = f64::from(s.hours.max(1));
        let pair = due.key.trim_start_matches("substitution/");
        let (a, b) = pair.split_once('~').unwrap_or((pair, ""));
        let figures = Figures {
            code_a: a.to_string(),
            code_b: b.to_string(),
            duration_min: due.run.duration_min(),
            hours_matched: s.hours,
            mean_abs_correlation_of_changes: s.r_sum / hours,
            min_abs_correlation_of_changes: s.r_min,
            scale_of_copy: s.scale_sum / hours,
        };
        let score = saturating((hours - 2.0) / 3.0).min(0.95);
        due.finding(
            AnomalyKind::ParameterTampering,
            NAME,
            score,
            vec![t.outlet.id.clone()],
            &figures,
        )
    }

    /// Judges every pair at the top of an hour.
    fn judge(&mut self, ctx: &OutletContext<'_>, now: i64, out: &mut Vec<Finding>) {
        let steady_window = |q: &VecDeque<Option<f64>>| {
            let v: Vec<f64> = q.iter().flatten().copied().collect();
            v.len() == WINDOW && {
                let mean = v.iter().sum::<f64>() / WINDOW as f64;
                let (lo, hi) = v
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
                        (l.min(*x), h.max(*x))
                    });
                mean > 0.0 && hi - lo <= STEADY * mean
            }
        };
        let treated = ctx.topology.treatment.is_empty() || steady_window(&self.state.treatment);
        let steady = steady_window(&self.state.production) && treated;
        let codes: Vec<String> = self.state.values.keys().cloned().collect();
        for (i, a) in codes.iter().enumerate() {
            for b in &codes[i + 1..] {
                if coupled(a, b) {
                    continue;
                }
                let key = format!("substitution/{a}~{b}");
                let (Some(va), Some(vb)) = (self.state.values.get(a), self.state.values.get(b))
                else {
                    continue;
                };
                let (da, db) = if steady {
                    paired_differences(va, vb)
                } else {
                    (Vec::new(), Vec::new())
                };
                // A channel moving by more than its resolution most minutes: a held value flickering by one step
                // (a flat line's) moves in lockstep with nothing real.
                let moving = |d: &[f64], code: &str| {
                    let step = self
                        .state
                        .resolution
                        .get(code)
                        .map_or(1e-6, Resolution::step);
                    d.iter().filter(|x| x.abs() > 0.5 * step).count() >= d.len() / 2
                        && sd(d) >= 2.0 * step
                };
                if !steady || da.len() < MIN_DIFFS || !moving(&da, a) || !moving(&db, b) {
                    if let Some(due) = self.state.runs.good(&key, now, TIMING) {
                        out.push(self.finding(ctx, &due));
                    }
                    continue;
                }
                let r = correlation(&da, &db).abs();
                let null = self.state.nulls.entry(key.clone()).or_default();
                let beyond_own = null
                    .threshold(self.false_alarms_per_day)
                    .is_none_or(|bar| fisher_z(r) > bar);
                null.observe(fisher_z(r));
                let due = if r >= MIN_CORRELATION && beyond_own {
                    let scale = sd(&db) / sd(&da).max(1e-12);
                    self.state.runs.bad(&key, now, TIMING, Stats::default, |s| {
                        s.r_min = if s.hours == 0 { r } else { s.r_min.min(r) };
                        s.r_sum += r;
                        s.scale_sum += scale;
                        s.hours += 1;
                    })
                } else {
                    self.state.runs.good(&key, now, TIMING)
                };
                if let Some(due) = due {
                    out.push(self.finding(ctx, &due));
                }
            }
        }
    }
}

impl Detector for Substitution {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let row = minute.row;
        let st = &mut self.state;
        for code in CHANNELS {
            let value = cems::minute_raw(row, code);
            if value.is_none() && !st.values.contains_key(code) {
                continue;
            }
            if let Some(v) = value {
                st.resolution
                    .entry(code.to_string())
                    .or_default()
                    .observe(v);
            }
            push_bounded(
                st.values.entry(code.to_string()).or_default(),
                value,
                WINDOW,
            );
        }
        let p = minute.process;
        push_bounded(
            &mut st.production,
            p.running().then_some(p.production_kw),
            WINDOW,
        );
        let treatment: Option<f64> = ctx
            .topology
            .treatment
            .iter()
            .map(|m| p.meters.get(&m.id).and_then(|mm| mm.kw))
            .sum();
        push_bounded(&mut st.treatment, treatment, WINDOW);
        if row.minute_ms.rem_euclid(MS_PER_HOUR) == 0 {
            self.judge(ctx, row.minute_ms, out);
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
    use crate::detect::testutil::{noise, row, run_detector, topology_with_limits, with_cems};
    use crate::signal::align::OutletRow;

    /// A steady plant's stack: particulate, SO2, temperature, flow and velocity, each with its own noise. `pm` makes
    /// the particulate reading from the minute and the temperature; `load` the production (kW) at a minute.
    fn minute(i: i64, load: impl Fn(i64) -> f64, pm: impl Fn(i64, f64) -> f64) -> OutletRow {
        let l = load(i) / 800.0;
        let r1 = |x: f64| (x * 10.0).round() / 10.0;
        let temperature = r1(50.0 + 8.0 * l + 0.8 * noise(i, 1));
        let flow = r1(400.0 * l + 4.0 * noise(i, 2));
        // Air leaking in raises O2 and dilutes the raw SO2 by the same factor: they move together honestly.
        let o2 = 6.5 + 0.8 * noise(i, 4);
        with_cems(
            row(i, &[("p1", Some(load(i))), ("t1", Some(150.0))]),
            &[
                ("a34013", r1(pm(i, temperature))),
                (
                    "a21026",
                    r1((40.0 * l + 0.3 * noise(i, 3)) * (21.0 - o2) / 15.0),
                ),
                ("a01012", temperature),
                ("a00000", flow),
                // The CEMS computes flow from velocity: they move together honestly.
                ("a01011", (flow / 25.0 * 100.0).round() / 100.0),
                ("a19001", r1(o2)),
            ],
        )
    }

    fn run(days: i64, load: impl Fn(i64) -> f64, pm: impl Fn(i64, f64) -> f64) -> Vec<Finding> {
        let topo = topology_with_limits(&[("a34013", 10.0), ("a21026", 35.0)]);
        run_detector(
            Substitution::boxed,
            &topo,
            (0..days * 1440).map(|i| minute(i, &load, &pm)),
        )
    }

    fn honest_pm(i: i64, _: f64) -> f64 {
        4.0 + 0.5 * noise(i, 5)
    }

    #[test]
    fn particulate_generated_from_the_temperature_is_found() {
        // From day 4, 09:00: PM = 0.5 × temperature − 25.
        let cheat_from = 4 * 1440 + 540;
        let out = run(
            5,
            |_| 800.0 + 5.0 * noise(0, 9),
            |i, t| {
                if i >= cheat_from {
                    0.5 * t - 25.0
                } else {
                    honest_pm(i, t)
                }
            },
        );
        let f: Vec<_> = out
            .iter()
            .filter(|f| f.key == "substitution/a01012~a34013")
            .collect();
        assert!(!f.is_empty(), "{out:#?}");
        let first = f[0];
        assert!(first.start_ms >= crate::detect::testutil::T0 + cheat_from * 60_000);
        assert!(
            first.detected_at_ms - first.start_ms <= 4 * MS_PER_HOUR,
            "{first:#?}"
        );
        assert!(first.evidence["min_abs_correlation_of_changes"] > 0.95);
        assert!(
            (first.evidence["scale_of_copy"] - 0.5).abs() < 0.05,
            "{first:#?}"
        );
        // Only that pair.
        assert!(
            out.iter().all(|f| f.key == "substitution/a01012~a34013"),
            "{out:#?}"
        );
    }

    #[test]
    fn honest_channels_load_ramps_and_computed_flow_are_not() {
        // Load ramps between 400 and 900 kW twice a day: every channel follows the load.
        let ramps = |i: i64| {
            let m = (i % 720) as f64;
            400.0 + 500.0 * (m / 120.0).min(1.0) * ((720.0 - m) / 120.0).min(1.0)
        };
        let out = run(6, ramps, honest_pm);
        assert!(out.is_empty(), "{out:#?}");
        let steady = run(6, |_| 800.0, honest_pm);
        assert!(steady.is_empty(), "{steady:#?}");
        // From day 3, SO2 and particulate held, both flickering by one resolution step every other minute (a
        // careful flat line's signature, in lockstep but not a copy of anything real).
        let topo = topology_with_limits(&[("a34013", 10.0), ("a21026", 35.0)]);
        let held = run_detector(
            Substitution::boxed,
            &topo,
            (0..6 * 1440).map(|i| {
                let mut r = minute(i, |_| 800.0, honest_pm);
                if i > 3 * 1440 {
                    let flicker = 0.1 * (i % 2) as f64;
                    for (code, v) in [("a21026", 21.3), ("a34013", 4.2)] {
                        if let Some(x) = r.cems.get_mut(code) {
                            x.value = v + flicker;
                        }
                    }
                }
                r
            }),
        );
        assert!(held.is_empty(), "{held:#?}");
    }
}

//! `LOW_VARIANCE`: readings implausibly smooth for this analyzer, and no longer following the process: fabricated
//! curves.
//!
//! The minute-to-minute changes of a real CEMS channel carry the analyzer's noise and the process's, however steady
//! the load; invented data is smoother. Each hour, the variance of first differences (of log readings) over the last
//! six hours is compared with what the channel's own history says for the same operating states: the variance is
//! learned per production band (below 60 %, 60–90 %, from 90 % of normal, production unknown), and the window's
//! expected variance is the mean over its minutes of their band's (the channel-wide one while a band is young).
//! `(n − 1) s² / σ²` follows χ²(n − 1) for honest data, summed over the outlet's judged channels. An hour is raised by
//! either of two tests, each at half the configured false-alarm rate:
//!
//! - **Variance collapse.** A lower-tail p-value below `P_VALUE` (thousands of tests a week without a false alarm),
//!   the ratio below `MAX_RATIO`, and the hour smoother than the outlet's own honest hours allow (the empirical null
//!   of `−ln(ratio)`, see [`super::kit::null`], consulted once three days of hours are known).
//! - **Co-movement collapse.** Where production varied over the window (by 5 % or more) and the channels usually
//!   follow it (learned correlation at least 0.5 over at least a day of such hours), the drop of Fisher's z from the
//!   usual correlation to the window's beyond what the outlet's own honest hours show (its empirical null) and by at
//!   least 0.5, together with a variance that is lower too (ratio below `MAX_RATIO_COMOVEMENT`, p below
//!   `P_VALUE_COMOVEMENT`): an invented curve with most of the noise put back still stops following the load.
//!
//! Consecutive raised hours form one episode. Learning pauses while the window is far noisier than usual (1.5×, for
//! up to a day), so a stretch of dilution or a faulty analyzer does not make the honest hours after it look smooth.
//!
//! Look-alikes: very stable base-load operation (analyzer noise remains: differences do not collapse, and with no
//! load swing there is no co-movement to lose), a plant steadier at part load (its band's own variance), analyzers
//! honestly quieter at night (the empirical null), a pollutant that honestly stops following the load for a while
//! (its noise is intact: the co-movement test needs the variance down too), channels at their resolution or detection
//! limit (not judged: they never moved), flat lines (zero variance is `FLATLINE`'s).

use super::kit::null::HourlyNull;
use super::kit::period::period_start_ms;
use super::kit::stats::{correlation, fisher_z, sd};
use super::kit::{push_bounded, saturating, Span};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::{AnomalyKind, MS_PER_HOUR, MS_PER_MINUTE};
use crate::signal::cems::{self, Resolution};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};
use std::collections::{BTreeMap, VecDeque};

/// Detector name and version.
pub const NAME: &str = "low_variance/4";
/// Minutes in the tested window.
const WINDOW: usize = 360;
/// Lower-tail p-value that raises an hour.
const P_VALUE: f64 = 1e-7;
/// Effect size as well as significance: the window's variance must be below this share of the usual one.
const MAX_RATIO: f64 = 0.8;
/// Weight of a minute's squared difference in the learned variance once warmed up (~2 days).
const ALPHA: f64 = 1.0 / 2880.0;
/// Running minutes learned before judging (half a day: a day-shift line's first shift, so a fabrication on its second
/// day is judged).
const MATURE: u64 = 720;
/// Minutes a production band needs before its own variance is used (half a day).
const STATE_MATURE: u64 = 720;
/// Production bands (fractions of normal): below the first edge, between, from the last; then "unknown".
const STATE_EDGES: [f64; 2] = [0.6, 0.9];
/// Operating states: the bands and "production fraction unknown".
const STATES: usize = STATE_EDGES.len() + 2;
/// Co-movement test: the variance must be below this share of the usual one …
const MAX_RATIO_COMOVEMENT: f64 = 0.85;
/// … with a lower-tail p-value below this …
const P_VALUE_COMOVEMENT: f64 = 1e-3;
/// … the usual correlation with production at least this …
const MIN_USUAL_CORRELATION: f64 = 0.5;
/// … learned over at least this many hours …
const MIN_CORRELATION_HOURS: u32 = 24;
/// … and Fisher's z down by at least this.
const MIN_Z_DROP: f64 = 0.5;
/// A window this much noisier than usual (a manipulation of another kind, an analyzer fault) pauses learning …
const NOISY_RATIO: f64 = 1.5;
/// … for at most this many hours in a row (a noisier analyzer for good is learned after a day).
const MAX_NOISY_HOURS: u32 = 24;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Channel {
    resolution: Resolution,
    /// The window's minutes: log reading and operating state.
    window: VecDeque<(f64, u8)>,
    /// Learned variance of first differences, over all states and per state.
    var: f64,
    n: u64,
    var_by_state: [f64; STATES],
    n_by_state: [u64; STATES],
}

impl Channel {
    /// The variance this channel's differences have in a state, as learned.
    fn state_var(&self, state: u8) -> f64 {
        let s = usize::from(state).min(STATES - 1);
        if self.n_by_state[s] >= STATE_MATURE {
            self.var_by_state[s]
        } else {
            self.var
        }
    }

    /// What the variance of the window's differences should be, given the states its minutes were in, and whether
    /// nearly all of them (nine in ten) were in states that have their own variance yet (a few minutes in a rare
    /// band must not keep an outlet's hours out of its null for days).
    fn expected_var(&self) -> (f64, bool) {
        let n = self.window.len().saturating_sub(1).max(1) as f64;
        let sum = self
            .window
            .iter()
            .skip(1)
            .map(|(_, s)| self.state_var(*s))
            .sum::<f64>();
        let young = self
            .window
            .iter()
            .filter(|(_, s)| self.n_by_state[usize::from(*s).min(STATES - 1)] < STATE_MATURE)
            .count();
        (sum / n, young * 10 <= self.window.len())
    }

    /// Learns a squared difference into the channel-wide and the state's variance (clipped, so one jump cannot
    /// inflate it).
    fn learn(&mut self, d2: f64, state: u8) {
        let learn = |var: &mut f64, n: &mut u64| {
            let a = (1.0 / (*n as f64 + 1.0)).max(ALPHA);
            let clip = if *n > 60 { 25.0 * *var } else { f64::INFINITY };
            *var += a * (d2.min(clip) - *var);
            *n += 1;
        };
        learn(&mut self.var, &mut self.n);
        let s = usize::from(state).min(STATES - 1);
        learn(&mut self.var_by_state[s], &mut self.n_by_state[s]);
    }
}

/// Operating state of a minute: its production band, or "unknown".
fn operating_state(production_fraction: Option<f64>) -> u8 {
    match production_fraction.filter(|f| f.is_finite()) {
        Some(f) => STATE_EDGES.iter().filter(|e| f >= **e).count() as u8,
        None => (STATES - 1) as u8,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Episode {
    start_ms: i64,
    end_ms: i64,
    raised_at_ms: i64,
    hours: u32,
    min_ratio: f64,
    min_p: f64,
    channels: usize,
    /// Variance ratio below which the outlet's own honest history puts the budgeted false-alarm rate, if learned.
    null_ratio: Option<f64>,
    /// Lowest correlation of the channels with production among the raised windows where production varied
    /// (invented curves stop following the load; the outlet's usual one is in the state, unchanged while an episode
    /// is open).
    production_correlation: Option<f64>,
    /// Hours raised by the co-movement test.
    comovement_hours: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    channels: BTreeMap<String, Channel>,
    episodes: BTreeMap<String, Episode>,
    /// −ln(variance ratio) of the outlet's honest hours.
    null: HourlyNull,
    /// Production (kW) of the last minutes, aligned with the channels' windows.
    production: VecDeque<f64>,
    /// Learned correlation of the channels with production, over unraised hours when production varied.
    production_correlation_usual: Option<f64>,
    /// Hours it was learned from.
    production_correlation_hours: u32,
    /// Drop of Fisher's z from the usual correlation to the window's, over the outlet's judged hours.
    correlation_drop_null: HourlyNull,
    /// Consecutive judged hours whose window was far noisier than usual: while they last, nothing is learned, so an
    /// hour of dilution or a faulty analyzer does not make the honest hours after it look smooth.
    noisy_hours: u32,
}

/// The figures of an episode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Figures {
    pub(crate) duration_min: f64,
    pub(crate) hours_flagged: u32,
    /// Lowest variance ratio of the raised hours.
    pub(crate) variance_ratio_to_history: f64,
    /// Lowest p-value of the raised hours.
    pub(crate) p_value: f64,
    pub(crate) window_min: f64,
    pub(crate) channels_tested: u32,
    /// The variance ratio the outlet's own honest hours put at the budgeted false-alarm rate, once learned.
    pub(crate) own_history_ratio_threshold: Option<f64>,
    /// Lowest correlation with production among the raised windows where production varied.
    pub(crate) production_correlation_window: Option<f64>,
    pub(crate) production_correlation_usual: Option<f64>,
    pub(crate) hours_raised_by_comovement_only: u32,
}

/// The detector.
pub struct LowVariance {
    /// False alarms per outlet-day the empirical null is read at.
    false_alarms_per_day: f64,
    state: State,
}

fn diff_variance(w: &VecDeque<(f64, u8)>) -> f64 {
    let d: Vec<f64> = w
        .iter()
        .zip(w.iter().skip(1))
        .map(|((a, _), (b, _))| b - a)
        .collect();
    let n = d.len() as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let mean = d.iter().sum::<f64>() / n;
    d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
}

impl LowVariance {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            false_alarms_per_day: config.false_alarms_per_day,
            state: State::default(),
        })
    }

    /// The finding of an episode as it stands. The episode is not a [`super::kit::Runs`] run: it starts where the
    /// first raised hour's six-hour window starts, not at that hour.
    fn finding(&self, ctx: &OutletContext<'_>, ep: &Episode, ongoing: bool) -> Finding {
        let t = ctx.topology;
        let hours = f64::from(ep.hours);
        let score = saturating((hours - 1.0) / 3.0) * (1.0 - ep.min_ratio).clamp(0.5, 1.0);
        let figures = Figures {
            duration_min: ((ep.end_ms - ep.start_ms) / MS_PER_MINUTE) as f64,
            hours_flagged: ep.hours,
            variance_ratio_to_history: ep.min_ratio,
            p_value: ep.min_p,
            window_min: WINDOW as f64,
            channels_tested: u32::try_from(ep.channels).unwrap_or(u32::MAX),
            own_history_ratio_threshold: ep.null_ratio,
            production_correlation_window: ep.production_correlation,
            production_correlation_usual: self.state.production_correlation_usual,
            hours_raised_by_comovement_only: ep.comovement_hours,
        };
        Span {
            key: String::new(),
            start_ms: ep.start_ms,
            end_ms: ep.end_ms,
            detected_at_ms: ep.raised_at_ms,
            ongoing,
        }
        .finding(
            AnomalyKind::LowVariance,
            NAME,
            score,
            vec![t.outlet.id.clone()],
            &figures,
        )
    }
}

impl LowVariance {
    /// Mean correlation of the channels' windows with production, when production varied by 5 % or more
    /// over the window (under steady load there is no co-movement to lose).
    fn production_correlation(&self) -> Option<f64> {
        let production = &self.state.production;
        let (mut sum, mut n) = (0.0, 0usize);
        for ch in self.state.channels.values() {
            let k = ch.window.len().min(production.len());
            if k < WINDOW / 2 {
                continue;
            }
            let p: Vec<f64> = production
                .iter()
                .skip(production.len() - k)
                .copied()
                .collect();
            if p.iter().any(|x| !x.is_finite()) {
                continue;
            }
            let mean = p.iter().sum::<f64>() / k as f64;
            if mean <= 0.0 || sd(&p) < 0.05 * mean {
                continue;
            }
            let c: Vec<f64> = ch
                .window
                .iter()
                .skip(ch.window.len() - k)
                .map(|(v, _)| *v)
                .collect();
            sum += correlation(&c, &p);
            n += 1;
        }
        (n > 0).then(|| sum / n as f64)
    }
}

impl Detector for LowVariance {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let now = minute.row.minute_ms;
        // Each hour is judged at its last minute, over the window ending with it.
        let end = now + MS_PER_MINUTE;
        let hour_end = period_start_ms(end, MS_PER_HOUR) == end;
        let p = minute.process;
        let production = if p.running() {
            p.production_kw
        } else {
            f64::NAN
        };
        push_bounded(&mut self.state.production, production, WINDOW);
        let state = operating_state(p.production_fraction());
        let learning = self.state.noisy_hours == 0 || self.state.noisy_hours > MAX_NOISY_HOURS;
        for code in ctx.topology.monitored_codes() {
            let ch = self.state.channels.entry(code.clone()).or_default();
            // Analyzer noise is largely proportional to the reading, so differences are taken in log space: a night
            // at lower load is not "smoother" just because its values are smaller. Readings within ten resolution
            // steps of zero carry no usable relative noise and break the window.
            let step_now = ch.resolution.step();
            let reading = cems::minute_raw(minute.row, &code).filter(|_| minute.process.running());
            if let Some(v) = reading {
                ch.resolution.observe(v);
            }
            match reading.filter(|v| *v >= 10.0 * step_now).map(f64::ln) {
                Some(v) => {
                    if let Some((prev, _)) = ch.window.back().copied().filter(|_| learning) {
                        ch.learn((v - prev).powi(2), state);
                    }
                    push_bounded(&mut ch.window, (v, state), WINDOW);
                }
                None => ch.window.clear(), // windows are contiguous minutes
            }
        }
        if !hour_end {
            return;
        }
        // One test per outlet over every judged channel: a fabricating DAU smooths them all, and summing the
        // channels' chi-squares gives a careful cheat (noise cut by a quarter) no place to hide.
        let (mut t_sum, mut df_sum, mut judged_channels) = (0.0, 0.0, 0usize);
        let mut states_mature = true;
        for ch in self.state.channels.values() {
            let step = ch.resolution.step();
            let level = ch.window.back().map_or(0.0, |(x, _)| x.exp());
            let (expected, mature) = ch.expected_var();
            if ch.n < MATURE
                || ch.window.len() < WINDOW
                || expected.sqrt() * level < 2.0 * step
                || expected <= 0.0
            {
                continue;
            }
            let s2 = diff_variance(&ch.window);
            if s2.is_nan() || s2 <= 0.0 {
                continue;
            }
            let df = (WINDOW - 2) as f64;
            t_sum += df * s2 / expected;
            df_sum += df;
            judged_channels += 1;
            states_mature &= mature;
        }
        if judged_channels == 0 {
            return;
        }
        let ratio = t_sum / df_sum;
        let p = ChiSquared::new(df_sum).map(|c| c.cdf(t_sum)).unwrap_or(1.0);
        self.state.noisy_hours = if ratio > NOISY_RATIO {
            self.state.noisy_hours.saturating_add(1)
        } else {
            0
        };
        // Two tests share the budget.
        let budget = self.false_alarms_per_day / 2.0;
        // The χ² test assumes independent differences; the outlet's own honest hours say how smooth it can
        // legitimately get (an analyzer quieter every night, a plant steadier on Sundays): both must agree.
        let smoothness = -ratio.max(1e-12).ln();
        let null = self.state.null.threshold(budget);
        // Hours judged against a young state's stand-in (the channel-wide variance) say nothing of that state's
        // habits; they would stay in the null for weeks.
        if states_mature {
            self.state.null.observe(smoothness);
        }
        let variance_collapse =
            p < P_VALUE && ratio < MAX_RATIO && null.is_none_or(|t| smoothness > t);
        // Co-movement: how far the window's correlation with production fell from the usual one.
        let production_correlation = self.production_correlation();
        let usual = self
            .state
            .production_correlation_usual
            .filter(|_| self.state.production_correlation_hours >= MIN_CORRELATION_HOURS)
            .filter(|u| *u >= MIN_USUAL_CORRELATION);
        let z_drop = usual
            .zip(production_correlation)
            .map(|(u, r)| fisher_z(u) - fisher_z(r));
        let drop_null = self.state.correlation_drop_null.threshold(budget);
        if let Some(d) = z_drop {
            self.state.correlation_drop_null.observe(d);
        }
        let comovement_collapse = z_drop
            .zip(drop_null)
            .is_some_and(|(d, t)| d > t && d >= MIN_Z_DROP)
            && ratio < MAX_RATIO_COMOVEMENT
            && p < P_VALUE_COMOVEMENT;
        if variance_collapse || comovement_collapse {
            let window_start = end - WINDOW as i64 * MS_PER_MINUTE;
            let ep = self.state.episodes.entry(String::new()).or_insert(Episode {
                start_ms: window_start,
                end_ms: end,
                raised_at_ms: end,
                hours: 0,
                min_ratio: ratio,
                min_p: p,
                channels: judged_channels,
                null_ratio: null.map(|t| (-t).exp()),
                production_correlation: None,
                comovement_hours: 0,
            });
            if let Some(r) = production_correlation {
                ep.production_correlation = Some(ep.production_correlation.map_or(r, |x| x.min(r)));
            }
            ep.end_ms = end;
            ep.hours += 1;
            ep.comovement_hours += u32::from(comovement_collapse && !variance_collapse);
            ep.min_ratio = ep.min_ratio.min(ratio);
            ep.min_p = ep.min_p.min(p);
            let ep = ep.clone();
            out.push(self.finding(ctx, &ep, true));
        } else {
            if let Some(ep) = self.state.episodes.remove("") {
                out.push(self.finding(ctx, &ep, false));
            }
            if let Some(r) = production_correlation {
                let usual = self.state.production_correlation_usual.get_or_insert(r);
                *usual += 0.05 * (r - *usual);
                self.state.production_correlation_hours += 1;
            }
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        for (_, ep) in std::mem::take(&mut self.state.episodes) {
            out.push(self.finding(ctx, &ep, false));
        }
    }

    persist_state!(state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{
        noise, row, run_detector, summary_en, topology_with_limits, with_cems, T0,
    };
    use rand::{Rng, SeedableRng};

    fn topo() -> crate::domain::OutletTopology {
        topology_with_limits(&[("a21026", 35.0)])
    }

    /// Three days of SO2 with analyzer noise; `fake` replaces minutes in a window with a smooth invented curve
    /// whose own noise is `fake_noise` of the real one.
    fn run(fake: Option<f64>) -> Vec<Finding> {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
        let mut level: f64 = 0.0;
        let rows: Vec<_> = (0..3 * 1440)
            .map(|i| {
                level = 0.95 * level + 0.3 * (rng.gen::<f64>() - 0.5);
                let real = 22.0 + level + 0.8 * (rng.gen::<f64>() - 0.5);
                let v = match fake {
                    Some(k) if (2 * 1440 + 300..2 * 1440 + 900).contains(&i) => {
                        22.0 + 0.3 * ((i as f64) / 97.0).sin() + k * 0.8 * (rng.gen::<f64>() - 0.5)
                    }
                    _ => real,
                };
                with_cems(
                    row(i, &[("p1", Some(800.0)), ("t1", Some(150.0))]),
                    &[("a21026", (v * 10.0).round() / 10.0)],
                )
            })
            .collect();
        run_detector(LowVariance::boxed, &topo(), rows)
    }

    #[test]
    fn invented_smooth_data_is_found_even_with_some_noise_added() {
        for k in [0.0, 0.35] {
            let out = run(Some(k));
            let closed: Vec<_> = out.iter().filter(|f| !f.ongoing).collect();
            assert_eq!(closed.len(), 1, "noise {k}: {out:#?}");
            assert!(closed[0].start_ms >= T0 + (2 * 1440) * MS_PER_MINUTE);
            assert!(closed[0].evidence["p_value"] < P_VALUE);
        }
    }

    #[test]
    fn honest_data_raises_nothing_in_three_days() {
        assert!(run(None).is_empty());
    }

    /// Ten days of an analyzer that is honestly much quieter every night (00:00–06:00: a third of the day's noise),
    /// optionally with a fabricated, far smoother stretch on day 8.
    fn quiet_nights(fabricate: bool) -> Vec<Finding> {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(11);
        let rows: Vec<_> = (0..10 * 1440)
            .map(|i| {
                let night = (i % 1440) < 360;
                let amplitude = if night { 0.33 } else { 1.0 };
                let faked = fabricate && (8 * 1440 + 600..8 * 1440 + 1200).contains(&i);
                let amplitude = if faked { 0.08 } else { amplitude };
                let v = 40.0 + amplitude * 2.0 * (rng.gen::<f64>() - 0.5);
                with_cems(
                    row(i, &[("p1", Some(800.0)), ("t1", Some(150.0))]),
                    &[("a21026", (v * 100.0).round() / 100.0)],
                )
            })
            .collect();
        run_detector(LowVariance::boxed, &topo(), rows)
    }

    #[test]
    fn quiet_nights_of_an_honest_analyzer_stop_alarming_once_its_own_history_is_known() {
        let out = quiet_nights(false);
        // The textbook test alone flags the first nights; the outlet's own history then says nights are like that.
        let after_warm_up: Vec<_> = out
            .iter()
            .filter(|f| f.start_ms >= T0 + 4 * 1440 * MS_PER_MINUTE)
            .collect();
        assert!(after_warm_up.is_empty(), "{after_warm_up:#?}");
        assert!(
            !out.is_empty(),
            "the first nights are flagged before the null is learned"
        );
    }

    #[test]
    fn a_fabrication_far_smoother_than_any_honest_night_is_still_found() {
        let out = quiet_nights(true);
        let day8: Vec<_> = out
            .iter()
            .filter(|f| f.start_ms >= T0 + 8 * 1440 * MS_PER_MINUTE)
            .collect();
        assert!(!day8.is_empty(), "{out:#?}");
        assert!(
            day8[0].evidence["own_history_ratio_threshold"]
                > day8[0].evidence["variance_ratio_to_history"]
        );
    }

    #[test]
    fn an_invented_curve_that_stops_following_the_load_carries_the_collapsed_co_movement() {
        // SO2 follows a load that swings ±20 % over four hours; from day 2, 05:00 to 15:00 the record is a smooth
        // invented curve with a fifth of the analyzer's noise, which ignores the load.
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(8);
        let load = |i: i64| 800.0 * (1.0 + 0.2 * (std::f64::consts::TAU * i as f64 / 240.0).sin());
        let rows: Vec<_> = (0..3 * 1440)
            .map(|i| {
                let real = 22.0 * load(i) / 800.0 + 0.8 * (rng.gen::<f64>() - 0.5);
                let v = if (2 * 1440 + 300..2 * 1440 + 900).contains(&i) {
                    22.0 + 0.3 * ((i as f64) / 97.0).sin() + 0.2 * 0.8 * (rng.gen::<f64>() - 0.5)
                } else {
                    real
                };
                with_cems(
                    row(i, &[("p1", Some(load(i))), ("t1", Some(150.0))]),
                    &[("a21026", (v * 10.0).round() / 10.0)],
                )
            })
            .collect();
        let out = run_detector(LowVariance::boxed, &topo(), rows);
        let last = out.iter().rfind(|f| !f.ongoing).expect("found");
        assert!(
            last.evidence["production_correlation_usual"] > 0.8,
            "{last:#?}"
        );
        assert!(
            last.evidence["production_correlation_window"] < 0.5,
            "{last:#?}"
        );
    }

    /// Ten days of a plant at half load 00:00–08:00, where combustion is honestly steadier (40 % of the full-load
    /// noise), and at full load the rest of the day; `fabricate` replaces day 8, 10:00–20:00, at full load, by a
    /// curve exactly as smooth as an honest part-load night.
    fn part_load_nights(fabricate: bool) -> Vec<Finding> {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(13);
        let rows: Vec<_> = (0..10 * 1440)
            .map(|i| {
                let m = i % 1440;
                let part_load = m < 480;
                let faked = fabricate && (8 * 1440 + 600..8 * 1440 + 1200).contains(&i);
                let amplitude = if part_load || faked { 0.4 } else { 1.0 };
                let kw = if part_load { 500.0 } else { 1000.0 } + 5.0 * noise(i, 3);
                let v = 30.0 + amplitude * 2.0 * (rng.gen::<f64>() - 0.5);
                with_cems(
                    row(i, &[("p1", Some(kw)), ("t1", Some(150.0))]),
                    &[("a21026", (v * 100.0).round() / 100.0)],
                )
            })
            .collect();
        run_detector(LowVariance::boxed, &topo(), rows)
    }

    #[test]
    fn a_plant_steadier_at_part_load_is_judged_against_its_part_load_history() {
        let after_warm_up: Vec<_> = part_load_nights(false)
            .into_iter()
            .filter(|f| f.start_ms >= T0 + 4 * 1440 * MS_PER_MINUTE)
            .collect();
        assert!(after_warm_up.is_empty(), "{after_warm_up:#?}");
    }

    #[test]
    fn full_load_data_as_smooth_as_an_honest_part_load_night_is_found() {
        // Against one variance for all hours, the nights would teach the null that this smoothness is normal here.
        let out = part_load_nights(true);
        let day8: Vec<_> = out
            .iter()
            .filter(|f| f.start_ms >= T0 + 8 * 1440 * MS_PER_MINUTE)
            .collect();
        let closed = day8
            .iter()
            .rfind(|f| !f.ongoing)
            .unwrap_or_else(|| panic!("{out:#?}"));
        assert!(
            closed.evidence["variance_ratio_to_history"] < 0.3,
            "{closed:#?}"
        );
        assert!(out
            .iter()
            .all(|f| f.start_ms >= T0 + 8 * 1440 * MS_PER_MINUTE
                || f.start_ms < T0 + 4 * 1440 * MS_PER_MINUTE));
    }

    /// What day 8, 10:00–20:00, holds in [`following_load`].
    #[derive(Clone, Copy)]
    enum Day8 {
        Honest,
        /// A smooth invented curve that ignores the load, with this share of the real noise put back.
        Invented(f64),
        /// Honest readings that stop following the load (another driver, e.g. the fuel's sulphur), noise intact.
        Decoupled,
    }

    /// Ten days of SO2 that follows a load swinging ±20 % over four hours, from an analyzer honestly three times
    /// quieter 00:00–06:00.
    fn following_load(day8: Day8) -> Vec<Finding> {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(17);
        let load = |i: i64| 800.0 * (1.0 + 0.2 * (std::f64::consts::TAU * i as f64 / 240.0).sin());
        let rows: Vec<_> = (0..10 * 1440)
            .map(|i| {
                let quiet = (i % 1440) < 360;
                let noise_amplitude = if quiet { 0.27 } else { 0.8 };
                let e = noise_amplitude * (rng.gen::<f64>() - 0.5);
                let day8_window = (8 * 1440 + 600..8 * 1440 + 1200).contains(&i);
                let v = match day8 {
                    Day8::Invented(k) if day8_window => {
                        22.0 + 0.3 * ((i as f64) / 97.0).sin() + k * e
                    }
                    Day8::Decoupled if day8_window => 22.0 + 4.0 * ((i as f64) / 300.0).sin() + e,
                    _ => 22.0 * load(i) / 800.0 + e,
                };
                with_cems(
                    row(i, &[("p1", Some(load(i))), ("t1", Some(150.0))]),
                    &[("a21026", (v * 100.0).round() / 100.0)],
                )
            })
            .collect();
        run_detector(LowVariance::boxed, &topo(), rows)
    }

    fn on_day8(out: &[Finding]) -> Vec<&Finding> {
        out.iter()
            .filter(|f| f.start_ms >= T0 + 8 * 1440 * MS_PER_MINUTE)
            .collect()
    }

    #[test]
    fn an_invented_curve_with_most_noise_put_back_is_found_because_it_stops_following_the_load() {
        // 60 % of the noise: smoother than the day, but not smoother than the outlet's honest nights, so the
        // variance alone cannot tell; the collapsed co-movement can.
        let out = following_load(Day8::Invented(0.6));
        let day8 = on_day8(&out);
        let last = day8
            .iter()
            .rfind(|f| !f.ongoing)
            .unwrap_or_else(|| panic!("{out:#?}"));
        assert!(
            last.evidence["hours_raised_by_comovement_only"] >= 1.0,
            "{last:#?}"
        );
        assert!(
            last.evidence["production_correlation_window"] < 0.5,
            "{last:#?}"
        );
        assert!(
            last.evidence["production_correlation_usual"] > 0.8,
            "{last:#?}"
        );
        assert!(
            summary_en(last).contains("no longer following production"),
            "{}",
            summary_en(last)
        );
        assert!(
            out.iter()
                .all(|f| f.start_ms >= T0 + 8 * 1440 * MS_PER_MINUTE
                    || f.start_ms < T0 + 4 * 1440 * MS_PER_MINUTE),
            "{out:#?}"
        );
    }

    #[test]
    fn readings_that_honestly_stop_following_the_load_with_their_noise_intact_are_not() {
        for day8 in [Day8::Honest, Day8::Decoupled] {
            let out = following_load(day8);
            let late: Vec<_> = out
                .iter()
                .filter(|f| f.start_ms >= T0 + 4 * 1440 * MS_PER_MINUTE)
                .collect();
            assert!(late.is_empty(), "{late:#?}");
        }
    }

    #[test]
    fn a_stretch_of_noisy_data_does_not_make_the_honest_hours_after_it_look_smooth() {
        // Four days of SO2; on day 2, 06:00–14:00, the readings are 2.5 times noisier (a diluting cheat, a faulty
        // analyzer: other kinds' business). Learning from them would make the honest afternoon look fabricated.
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(21);
        let rows: Vec<_> = (0..4 * 1440)
            .map(|i| {
                let noisy = (2 * 1440 + 360..2 * 1440 + 840).contains(&i);
                let amplitude = if noisy { 2.5 } else { 1.0 };
                let v = 30.0 + amplitude * 2.0 * (rng.gen::<f64>() - 0.5);
                with_cems(
                    row(i, &[("p1", Some(800.0)), ("t1", Some(150.0))]),
                    &[("a21026", (v * 100.0).round() / 100.0)],
                )
            })
            .collect();
        let out = run_detector(LowVariance::boxed, &topo(), rows);
        assert!(out.is_empty(), "{out:#?}");
    }
}

//! `REPLAYED_DATA` on hour averages: an outlet that reports only hourly values (CN 2061, the EPA's Part 75 data)
//! re-sending an earlier stretch of its record.
//!
//! Each channel's hour averages are kept for 29 days. At every new hour the last 24 are compared with the 24 at every
//! earlier lag from one day to four weeks: a lag at which at least two channels (one, if the outlet reports only one)
//! repeat their earlier values exactly, or whose first differences correlate at ≥ 0.97, is a replayed hour. With 23
//! differences a chance correlation of 0.97 is an 8σ event per lag and channel, and two channels at one lag make it
//! negligible over the 650 lags and thousands of hours an outlet is judged at. Consecutive replayed hours at one lag
//! are one episode, from the first copied hour (not from the window before it) to the last.
//!
//! Look-alikes: steady base load (identical rounded hour averages for a few hours; a window needs eight distinct
//! values, and a flat stretch is `FLATLINE`'s), a daily load routine (an hour average carries little noise, so
//! emissions that follow a repeated load repeat too: a correlated match at a lag where production's own changes
//! correlate at ≥ 0.9 is the process repeating, not the record; a replayed record sits beside the load as it really
//! ran), common stacks that report the same apportioned values (another outlet, not an earlier stretch of this one).

use super::kit::stats::correlation;
use super::kit::{push_bounded, Span};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::{AnomalyKind, MS_PER_HOUR};
use crate::signal::cems;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Detector name and version.
pub const NAME: &str = "replay_hourly/1";
/// Hours in the compared window.
const WINDOW_H: usize = 24;
/// Shortest and longest lag (hours).
const MIN_LAG_H: usize = 24;
const MAX_LAG_H: usize = 28 * 24;
/// Correlation of first differences that counts as a copy.
const MIN_CORRELATION: f64 = 0.97;
/// Distinct values a window needs to be informative.
const MIN_DISTINCT: usize = 8;
/// Hours without a replayed hour that close an episode.
const CLOSE_AFTER_H: i64 = 3;
/// Correlation of production's own changes at the lag above which a correlated match is the process repeating.
const PROCESS_REPEATS: f64 = 0.9;

/// One channel's hour averages, newest last; `None` for an hour without a valid value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Channel {
    hours: VecDeque<Option<f64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Episode {
    start_ms: i64,
    last_ms: i64,
    lag_h: usize,
    channels: usize,
    exact: bool,
    hours: u32,
    raised_at_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    channels: BTreeMap<String, Channel>,
    /// Production power at each hour taken in.
    #[serde(default)]
    production: Channel,
    /// Start of the latest hour taken in.
    last_hour_ms: Option<i64>,
    episode: Option<Episode>,
}

/// The figures of an episode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Figures {
    pub(crate) duration_min: f64,
    /// How far back the copied stretch lies.
    pub(crate) lag_hours: f64,
    /// Channels that repeat at that lag.
    pub(crate) channels_matched: f64,
    /// Every value equal to the earlier one (rather than differences correlated).
    pub(crate) exact_copy: bool,
    pub(crate) hours_matched: f64,
    pub(crate) min_correlation: f64,
}

/// The detector.
pub struct ReplayHourly {
    state: State,
}

impl ReplayHourly {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(_config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            state: State::default(),
        })
    }

    fn finding(ctx: &OutletContext<'_>, e: &Episode, ongoing: bool) -> Finding {
        let end_ms = e.last_ms + MS_PER_HOUR;
        let figures = Figures {
            duration_min: ((end_ms - e.start_ms) / 60_000) as f64,
            lag_hours: e.lag_h as f64,
            channels_matched: e.channels as f64,
            exact_copy: e.exact,
            hours_matched: f64::from(e.hours),
            min_correlation: MIN_CORRELATION,
        };
        Span {
            key: String::new(),
            start_ms: e.start_ms,
            end_ms,
            detected_at_ms: e.raised_at_ms,
            ongoing,
        }
        .finding(
            AnomalyKind::ReplayedData,
            NAME,
            if e.exact { 0.95 } else { 0.85 },
            vec![ctx.topology.outlet.id.clone()],
            &figures,
        )
    }

    /// The lag (hours) at which the newest window repeats, with the channels that repeat there, whether exactly, and
    /// how many of the window's first hours are not yet copies (a window reaching back before the copy began).
    fn replayed_lag(&self, wanted: usize) -> Option<(usize, usize, bool, usize)> {
        let series: Vec<Vec<Option<f64>>> = self
            .state
            .channels
            .values()
            .filter(|c| c.hours.len() >= WINDOW_H + MIN_LAG_H)
            .map(|c| c.hours.iter().copied().collect())
            .collect();
        let recent: Vec<Option<Vec<f64>>> = series
            .iter()
            .map(|s| {
                let w: Option<Vec<f64>> = s[s.len() - WINDOW_H..].iter().copied().collect();
                w.filter(|w| distinct(w) >= MIN_DISTINCT)
            })
            .collect();
        let judged = recent.iter().filter(|w| w.is_some()).count();
        if judged < wanted {
            return None;
        }
        // The window's own differences, once: each lag compares against them.
        let recent_diffs: Vec<Option<Vec<f64>>> =
            recent.iter().map(|w| w.as_deref().map(diffs)).collect();
        let production: Vec<Option<f64>> = self.state.production.hours.iter().copied().collect();
        let production_window = |end: usize| -> Option<Vec<f64>> {
            end.checked_sub(WINDOW_H)
                .and_then(|start| production.get(start..end))
                .and_then(|w| w.iter().copied().collect())
        };
        let production_now = production_window(production.len()).map(|w| diffs(&w));
        let process_repeats = |lag: usize| {
            let then = production
                .len()
                .checked_sub(lag)
                .and_then(production_window);
            match (&production_now, then) {
                (Some(now), Some(then)) => correlation(now, &diffs(&then)) >= PROCESS_REPEATS,
                _ => false,
            }
        };
        let longest = series.iter().map(Vec::len).max().unwrap_or(0);
        for lag in MIN_LAG_H..=MAX_LAG_H.min(longest.saturating_sub(WINDOW_H)) {
            let (mut matched, mut exact_all, mut lead) = (0, true, 0);
            for ((s, w), w_diffs) in series.iter().zip(&recent).zip(&recent_diffs) {
                let (Some(w), Some(w_diffs)) = (w, w_diffs) else {
                    continue;
                };
                let Some(start) = s.len().checked_sub(WINDOW_H + lag) else {
                    continue;
                };
                let Some(old) = s[start..start + WINDOW_H]
                    .iter()
                    .copied()
                    .collect::<Option<Vec<f64>>>()
                else {
                    continue;
                };
                let exact = old.iter().zip(w).all(|(a, b)| (a - b).abs() <= 1e-9);
                let copied = exact
                    || (correlation(&diffs(&old), w_diffs) >= MIN_CORRELATION
                        && !process_repeats(lag));
                if copied {
                    matched += 1;
                    exact_all &= exact;
                    // An exact copy is the window's trailing run of equal values; a noisy one starts with the window.
                    let equal = w
                        .iter()
                        .rev()
                        .zip(old.iter().rev())
                        .take_while(|(a, b)| (*a - *b).abs() <= 1e-9)
                        .count();
                    if equal >= WINDOW_H / 2 {
                        lead = lead.max(WINDOW_H - equal);
                    }
                }
            }
            if matched >= wanted {
                return Some((lag, matched, exact_all, lead));
            }
        }
        None
    }
}

fn diffs(w: &[f64]) -> Vec<f64> {
    w.windows(2).map(|p| p[1] - p[0]).collect()
}

fn distinct(w: &[f64]) -> usize {
    let mut v: Vec<i64> = w.iter().map(|x| (x * 1000.0).round() as i64).collect();
    v.sort_unstable();
    v.dedup();
    v.len()
}

impl Detector for ReplayHourly {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let row = minute.row;
        let codes = ctx.topology.monitored_codes();
        // Judged once per hour average, at its first minute; an outlet with minute data is the minute detector's.
        let starts: Vec<&String> = codes
            .iter()
            .filter(|c| {
                row.cems
                    .get(*c)
                    .is_some_and(|r| r.span_min >= 60 && r.starts_sample())
            })
            .collect();
        if starts.is_empty() {
            return;
        }
        let now = row.minute_ms;
        if self
            .state
            .last_hour_ms
            .is_some_and(|t| now - t < MS_PER_HOUR)
        {
            return;
        }
        self.state.last_hour_ms = Some(now);
        let production = Some(minute.process.production_kw).filter(|_| minute.process.running());
        push_bounded(
            &mut self.state.production.hours,
            production,
            MAX_LAG_H + WINDOW_H,
        );
        for code in &codes {
            let value = cems::raw(row, code).filter(|_| minute.process.running());
            let ch = self.state.channels.entry(code.clone()).or_default();
            push_bounded(&mut ch.hours, value, MAX_LAG_H + WINDOW_H);
        }
        let wanted = if self.state.channels.len() >= 2 { 2 } else { 1 };
        let hit = self.replayed_lag(wanted);
        match (&mut self.state.episode, hit) {
            (Some(e), Some((lag, channels, exact, _))) if lag == e.lag_h => {
                e.last_ms = now;
                e.hours += 1;
                e.channels = e.channels.max(channels);
                e.exact &= exact;
            }
            (_, Some((lag, channels, exact, lead))) => {
                if let Some(e) = self.state.episode.take() {
                    out.push(Self::finding(ctx, &e, false));
                }
                // The copy began where the matched window does, past any hours of it that are not copies.
                let e = Episode {
                    start_ms: now - (WINDOW_H - 1 - lead) as i64 * MS_PER_HOUR,
                    last_ms: now,
                    lag_h: lag,
                    channels,
                    exact,
                    hours: (WINDOW_H - lead) as u32,
                    raised_at_ms: now + MS_PER_HOUR,
                };
                out.push(Self::finding(ctx, &e, true));
                self.state.episode = Some(e);
            }
            (Some(e), None) if now - e.last_ms > CLOSE_AFTER_H * MS_PER_HOUR => {
                out.push(Self::finding(ctx, e, false));
                self.state.episode = None;
            }
            _ => {}
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        if let Some(e) = self.state.episode.take() {
            out.push(Self::finding(ctx, &e, false));
        }
    }

    persist_state!(state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{row, run_detector, topology_with_limits, with_cems};
    use crate::signal::align::OutletRow;

    /// Uniform in [−0.5, 0.5), hashed (splitmix64) so no lag of it repeats.
    fn noise(i: i64, salt: i64) -> f64 {
        let mut z = (i as u64).wrapping_mul(31).wrapping_add(salt as u64) ^ 0x9E37_79B9_7F4A_7C15;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64 - 0.5
    }

    /// Hour `h` of a unit reporting hour averages of SO2 and NOx, laid over its minutes as the aligner does.
    fn hour_rows(h: i64, value: impl Fn(i64, i64) -> f64) -> Vec<OutletRow> {
        hour_rows_at(h, 800.0, value)
    }

    fn hour_rows_at(h: i64, production_kw: f64, value: impl Fn(i64, i64) -> f64) -> Vec<OutletRow> {
        (0..60)
            .map(|k| {
                let i = h * 60 + k;
                let mut r = with_cems(
                    row(i, &[("p1", Some(production_kw)), ("t1", Some(150.0))]),
                    &[("a21026", value(h, 1)), ("a21002", value(h, 2))],
                );
                for reading in r.cems.values_mut() {
                    reading.span_min = 60;
                    reading.minute_of_span = k as u32;
                }
                r
            })
            .collect()
    }

    fn honest(h: i64, salt: i64) -> f64 {
        let daily = 10.0 * ((h % 24) as f64 / 24.0 * std::f64::consts::TAU).sin();
        (100.0 + daily + 8.0 * noise(h, salt)).round()
    }

    #[test]
    fn a_replayed_week_of_hour_averages_is_found_from_its_first_copied_hour() {
        let t = topology_with_limits(&[("a21026", 400.0), ("a21002", 400.0)]);
        let copy = 20 * 24..27 * 24;
        let out = run_detector(
            ReplayHourly::boxed,
            &t,
            (0..30 * 24).flat_map(|h| {
                let copy = copy.clone();
                hour_rows(h, move |h, salt| {
                    if copy.contains(&h) {
                        honest(h - 7 * 24, salt)
                    } else {
                        honest(h, salt)
                    }
                })
            }),
        );
        let closed: Vec<_> = out.iter().filter(|f| !f.ongoing).collect();
        assert_eq!(closed.len(), 1, "{out:#?}");
        let f = closed[0];
        assert_eq!(f.evidence["lag_hours"], 168.0);
        let hour = |h: i64| crate::detect::testutil::T0 + h * MS_PER_HOUR;
        assert_eq!(f.start_ms, hour(copy.start));
        assert_eq!(f.end_ms, hour(copy.end));
        // The same plant without the copy raises nothing.
        let quiet = run_detector(
            ReplayHourly::boxed,
            &t,
            (0..30 * 24).flat_map(|h| hour_rows(h, honest)),
        );
        assert!(quiet.is_empty(), "{quiet:#?}");
    }

    /// A plant that runs the same load routine every day, its hour averages following the load with little noise:
    /// the emissions repeat because the process does, and the load beside them repeats too.
    #[test]
    fn a_repeated_daily_load_routine_is_not_a_replay() {
        let t = topology_with_limits(&[("a21026", 400.0), ("a21002", 400.0)]);
        let load = |h: i64| {
            if (8..20).contains(&(h % 24)) {
                900.0
            } else {
                450.0
            }
        };
        let out = run_detector(
            ReplayHourly::boxed,
            &t,
            (0..30 * 24).flat_map(|h| {
                hour_rows_at(h, load(h) + 2.0 * noise(h, 9), move |h, salt| {
                    0.1 * salt as f64 * load(h) + noise(h, salt)
                })
            }),
        );
        assert!(out.is_empty(), "{out:#?}");
    }
}

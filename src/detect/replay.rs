//! `REPLAYED_DATA`: a stretch of the CEMS record that is a copy of an earlier one: yesterday's data re-sent, or a
//! week-old day with a little noise added.
//!
//! The outlet's gas channels and O2 are kept as 5-minute means for eight days. Every hour the last four hours are
//! compared with **every** earlier lag (not only 24 h): the Pearson correlation of their first differences (which
//! removes level and trend, so a daily load cycle does not look like a copy). A lag at which at least two channels
//! (one, if the outlet has only one) correlate at ≥ 0.9 is a replay; consecutive replayed hours form one episode.
//! With 47 differences, a chance correlation of 0.9 is a 6σ event per lag and channel; requiring two channels at
//! the same lag makes chance matches negligible over thousands of lags and hours. Once three days of hours are known,
//! the hour's best joint correlation must also stand out from the outlet's own history at the configured false-alarm
//! rate (its empirical null, see [`super::kit::null`]): an outlet whose honest routine repeats closely is judged by
//! its own standard.
//!
//! Exact copies of any age up to four weeks, and from **another** channel, are found by hashing (episode key
//! `exact`): every minute, each channel's last 30 readings (quantized to 0.001) are hashed; the windows whose hash
//! falls in one sixty-fourth of the hash space are anchors, chosen by content alone (as rsync and winnowing do), so
//! a copy has the same anchors as its original wherever and whenever it is pasted. An anchor seen before, at least an
//! hour earlier, is a copied half hour; two copied anchors at the same lag and channel pairing within four hours
//! raise an episode. Thirty readings with at least eight distinct values do not repeat by chance.
//!
//! Look-alikes: identical constant values (a flat line has no differences to correlate and too few distinct values
//! to hash: `FLATLINE`'s), repeated daily operating patterns (differences of real data carry fresh noise every day).

use super::kit::null::HourlyNull;
use super::kit::stats::{correlation, fisher_z};
use super::kit::{push_bounded, saturating, Span};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::codes::O2;
use crate::domain::{AnomalyKind, MS_PER_HOUR, MS_PER_MINUTE};
use crate::signal::cems::{self, Resolution};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Detector name and version.
pub const NAME: &str = "replay/3";
/// Minutes per mean.
const BUCKET_MIN: i64 = 5;
/// Means in the compared window (4 h).
const WINDOW: usize = 48;
/// Means kept (8 days).
const HISTORY: usize = 8 * 24 * 12;
/// Correlation that counts as a copy.
const MIN_CORRELATION: f64 = 0.9;
/// Readings per hashed window, and the distinct values a window needs to be informative.
const HASH_WINDOW: usize = 30;
const HASH_DISTINCT: usize = 8;
/// One window in this many is an anchor.
const ANCHOR_EVERY: u64 = 64;
/// How long anchors are remembered.
const ANCHORS_KEPT_MS: i64 = 28 * 1440 * MS_PER_MINUTE;
/// Copied anchors at one lag and pairing that raise, and the span they must fall in.
const EXACT_MATCHES: u32 = 2;
const EXACT_SPAN_MS: i64 = 4 * MS_PER_HOUR;
/// Hours without a copied anchor that close an exact-copy episode.
const EXACT_CLOSE_MS: i64 = 3 * MS_PER_HOUR;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Channel {
    means: VecDeque<f64>,
    sum: f64,
    n: u32,
    resolution: Resolution,
    /// The last readings (quantized), `None` where missing, for the exact-copy hash.
    recent: VecDeque<Option<i64>>,
}

/// Content-chosen anchors of the outlet's channels: where each was first seen.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CopyIndex {
    /// hash → (first seen, channel).
    first_seen: BTreeMap<u64, (i64, String)>,
    /// (time, hash) in time order, for expiry.
    order: VecDeque<(i64, u64)>,
}

/// A window seen before: its channel now, the channel and time it was first seen.
#[derive(Debug, Clone, PartialEq)]
pub struct CopiedWindow {
    /// When the copy's window ended.
    pub at_ms: i64,
    /// Minutes between the original and the copy.
    pub lag_min: i64,
    /// The channel the original was on.
    pub source: String,
    /// The channel the copy is on.
    pub target: String,
}

/// FNV-1a over the window's quantized readings.
fn window_hash(values: impl Iterator<Item = i64>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for b in v.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    // Final avalanche so that the anchor test on the low bits sees every input bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

impl CopyIndex {
    /// Sees the window of `channel` ending at `now_ms`; says whether it copies an anchor seen at least an hour
    /// earlier. Windows that are incomplete or have fewer than eight distinct values are not hashed.
    pub fn observe(
        &mut self,
        channel: &str,
        now_ms: i64,
        window: &VecDeque<Option<i64>>,
    ) -> Option<CopiedWindow> {
        while self
            .order
            .front()
            .is_some_and(|(t, _)| now_ms - t > ANCHORS_KEPT_MS)
        {
            if let Some((t, h)) = self.order.pop_front() {
                if self
                    .first_seen
                    .get(&h)
                    .is_some_and(|(first, _)| *first == t)
                {
                    self.first_seen.remove(&h);
                }
            }
        }
        if window.len() < HASH_WINDOW || window.iter().any(Option::is_none) {
            return None;
        }
        // The anchor test first: it is cheap and fails for 63 windows in 64, which then need no sorting.
        let h = window_hash(window.iter().flatten().copied());
        if h % ANCHOR_EVERY != 0 {
            return None;
        }
        let mut distinct: Vec<i64> = window.iter().flatten().copied().collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < HASH_DISTINCT {
            return None;
        }
        match self.first_seen.get(&h) {
            Some((first, source)) if now_ms - first >= MS_PER_HOUR => Some(CopiedWindow {
                at_ms: now_ms,
                lag_min: (now_ms - first) / MS_PER_MINUTE,
                source: source.clone(),
                target: channel.to_string(),
            }),
            Some(_) => None,
            None => {
                self.first_seen.insert(h, (now_ms, channel.to_string()));
                self.order.push_back((now_ms, h));
                None
            }
        }
    }
}

/// An exact-copy episode: copied anchors at one lag and pairing.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExactEpisode {
    start_ms: i64,
    end_ms: i64,
    raised_at_ms: Option<i64>,
    lag_min: i64,
    source: String,
    target: String,
    matches: u32,
    /// When each copied anchor of this lag and pairing was seen (the raise needs two within four hours).
    seen_ms: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Episode {
    start_ms: i64,
    end_ms: i64,
    raised_at_ms: i64,
    hours: u32,
    lag_buckets: usize,
    min_correlation: f64,
    channels: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    channels: BTreeMap<String, Channel>,
    episode: Option<Episode>,
    hours_without_match: u32,
    /// Fisher z of each hour's best joint correlation over all lags.
    null: HourlyNull,
    anchors: CopyIndex,
    /// Exact-copy candidates and episodes by (lag, source, target).
    exact: Vec<ExactEpisode>,
}

/// The figures of a correlated copy (episode key empty).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct CorrelationFigures {
    pub(crate) duration_min: f64,
    /// How far back the copied data lies.
    pub(crate) lag_min: f64,
    /// The weakest correlation of a matching channel over the episode's hours.
    pub(crate) min_correlation: f64,
    pub(crate) channels_matched: u32,
    pub(crate) hours_matched: u32,
}

/// The figures of an exact copy (episode key `exact`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ExactFigures {
    /// The channel the original was on.
    pub(crate) source: String,
    /// The channel the copy is on.
    pub(crate) target: String,
    pub(crate) duration_min: f64,
    /// Minutes between the original and the copy.
    pub(crate) lag_min: f64,
    /// Copied anchors (hashed windows) seen at this lag and pairing.
    pub(crate) copied_windows: u32,
    /// Minutes per hashed window.
    pub(crate) window_min: f64,
    pub(crate) from_another_channel: bool,
}

/// The finding of a correlated-copy episode. The episode is its own, not a [`super::kit::Runs`] one: it is
/// back-dated to the start of the first matching hour's four-hour window, and its lag and channels are the first
/// hour's.
fn finding(ctx: &OutletContext<'_>, ep: &Episode, ongoing: bool) -> Finding {
    let t = ctx.topology;
    let figures = CorrelationFigures {
        duration_min: ((ep.end_ms - ep.start_ms) / MS_PER_MINUTE) as f64,
        lag_min: (ep.lag_buckets as i64 * BUCKET_MIN) as f64,
        min_correlation: ep.min_correlation,
        channels_matched: u32::try_from(ep.channels).unwrap_or(u32::MAX),
        hours_matched: ep.hours,
    };
    Span {
        key: String::new(),
        start_ms: ep.start_ms,
        end_ms: ep.end_ms,
        detected_at_ms: ep.raised_at_ms,
        ongoing,
    }
    .finding(
        AnomalyKind::ReplayedData,
        NAME,
        saturating((f64::from(ep.hours) - 1.0) / 2.0),
        vec![t.outlet.id.clone()],
        &figures,
    )
}

/// The finding of an exact-copy episode. Its own episode too: raised by two copied anchors within four hours,
/// back-dated to the first copied window's start, closed after three quiet hours.
fn exact_finding(ctx: &OutletContext<'_>, ep: &ExactEpisode, ongoing: bool) -> Finding {
    let t = ctx.topology;
    let figures = ExactFigures {
        source: ep.source.clone(),
        target: ep.target.clone(),
        duration_min: ((ep.end_ms - ep.start_ms) / MS_PER_MINUTE) as f64,
        lag_min: ep.lag_min as f64,
        copied_windows: ep.matches,
        window_min: HASH_WINDOW as f64,
        from_another_channel: ep.source != ep.target,
    };
    Span {
        key: "exact".into(),
        start_ms: ep.start_ms,
        end_ms: ep.end_ms,
        detected_at_ms: ep.raised_at_ms.unwrap_or(ep.end_ms),
        ongoing,
    }
    .finding(
        AnomalyKind::ReplayedData,
        NAME,
        saturating((f64::from(ep.matches) - 2.0) / 3.0).min(0.99),
        vec![t.outlet.id.clone()],
        &figures,
    )
}

/// The detector.
pub struct Replay {
    /// False alarms per outlet-day the empirical null is read at.
    false_alarms_per_day: f64,
    state: State,
}

impl Replay {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            false_alarms_per_day: config.false_alarms_per_day,
            state: State::default(),
        })
    }

    /// Folds this minute's copied windows into exact-copy episodes, raises those with enough copied anchors, and
    /// closes those that went quiet.
    fn exact_copies(
        &mut self,
        ctx: &OutletContext<'_>,
        now: i64,
        copies: Vec<CopiedWindow>,
        out: &mut Vec<Finding>,
    ) {
        let mut due = Vec::new();
        for c in copies {
            let window_ms = HASH_WINDOW as i64 * MS_PER_MINUTE;
            let ep = match self.state.exact.iter_mut().position(|e| {
                e.lag_min == c.lag_min && e.source == c.source && e.target == c.target
            }) {
                Some(i) => &mut self.state.exact[i],
                None => {
                    self.state.exact.push(ExactEpisode {
                        start_ms: c.at_ms + MS_PER_MINUTE - window_ms,
                        end_ms: c.at_ms + MS_PER_MINUTE,
                        raised_at_ms: None,
                        lag_min: c.lag_min,
                        source: c.source.clone(),
                        target: c.target.clone(),
                        matches: 0,
                        seen_ms: Vec::new(),
                    });
                    let last = self.state.exact.len() - 1;
                    &mut self.state.exact[last]
                }
            };
            ep.matches += 1;
            ep.end_ms = c.at_ms + MS_PER_MINUTE;
            ep.seen_ms.retain(|t| c.at_ms - t <= EXACT_SPAN_MS);
            ep.seen_ms.push(c.at_ms);
            if ep.raised_at_ms.is_none() && ep.seen_ms.len() as u32 >= EXACT_MATCHES {
                ep.raised_at_ms = Some(ep.end_ms);
            }
            if ep.raised_at_ms.is_some() {
                due.push(ep.clone());
            }
        }
        for ep in &due {
            out.push(exact_finding(ctx, ep, true));
        }
        let (quiet, open): (Vec<_>, Vec<_>) = std::mem::take(&mut self.state.exact)
            .into_iter()
            .partition(|e| now - e.end_ms >= EXACT_CLOSE_MS);
        self.state.exact = open;
        for ep in quiet.iter().filter(|e| e.raised_at_ms.is_some()) {
            out.push(exact_finding(ctx, ep, false));
        }
    }

    /// The best lag at which enough channels match, with its weakest correlation and channel count.
    /// The best copy among the lags (lag, weakest matching correlation, channels matching), and the hour's
    /// statistic for the empirical null: over all lags, the highest correlation reached by `needed` channels at once.
    fn best_match(&self) -> (Option<(usize, f64, usize)>, Option<f64>) {
        let mut judged: Vec<Vec<f64>> = Vec::new(); // first differences of each usable channel's history
        for ch in self.state.channels.values() {
            let m = &ch.means;
            if m.len() < 2 * WINDOW + 1 || m.iter().rev().take(WINDOW).any(|x| !x.is_finite()) {
                continue;
            }
            let diffs: Vec<f64> = m.iter().zip(m.iter().skip(1)).map(|(a, b)| b - a).collect();
            let recent = &diffs[diffs.len() - (WINDOW - 1)..];
            let var = recent.iter().map(|x| x * x).sum::<f64>() / recent.len() as f64;
            // A channel that barely moves (a flat line, readings at resolution) cannot show a copy.
            if var <= (ch.resolution.step() * 0.5).powi(2) {
                continue;
            }
            judged.push(diffs);
        }
        let needed = judged.len().min(2);
        if needed == 0 {
            return (None, None);
        }
        let len = judged[0].len();
        if judged.iter().any(|d| d.len() != len) {
            return (None, None);
        }
        let mut statistic = f64::NEG_INFINITY;
        let w = WINDOW - 1;
        let recent_start = len - w;
        let mut best: Option<(usize, f64, usize)> = None;
        for lag in WINDOW..=recent_start {
            let start = recent_start - lag;
            let mut count = 0;
            let mut weakest = 1.0f64;
            let mut at_lag = Vec::with_capacity(judged.len());
            for d in &judged {
                let old = &d[start..start + w];
                if old.iter().any(|x| !x.is_finite()) {
                    continue;
                }
                let r = correlation(&d[recent_start..], old);
                at_lag.push(r);
                if r >= MIN_CORRELATION {
                    count += 1;
                    weakest = weakest.min(r);
                }
            }
            if at_lag.len() >= needed {
                at_lag.sort_by(|a, b| b.total_cmp(a));
                statistic = statistic.max(at_lag[needed - 1]);
            }
            if count >= needed
                && best.is_none_or(|(_, r, c)| count > c || (count == c && weakest > r))
            {
                best = Some((lag, weakest, count));
            }
        }
        (best, statistic.is_finite().then_some(statistic))
    }
}

impl Detector for Replay {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let now = minute.row.minute_ms;
        let mut codes = ctx.topology.monitored_codes();
        codes.push(O2.to_string());
        let bucket_end = (now + MS_PER_MINUTE) % (BUCKET_MIN * MS_PER_MINUTE) == 0;
        let mut copies = Vec::new();
        for code in codes {
            let State {
                channels, anchors, ..
            } = &mut self.state;
            let ch = channels.entry(code.clone()).or_default();
            let value = cems::minute_raw(minute.row, &code).filter(|_| minute.process.running());
            if let Some(v) = value {
                ch.sum += v;
                ch.n += 1;
                ch.resolution.observe(v);
            }
            push_bounded(
                &mut ch.recent,
                value.map(|v| (v * 1000.0).round() as i64),
                HASH_WINDOW,
            );
            copies.extend(anchors.observe(&code, now, &ch.recent));
            if bucket_end {
                let mean = if ch.n >= 3 {
                    ch.sum / f64::from(ch.n)
                } else {
                    f64::NAN
                };
                push_bounded(&mut ch.means, mean, HISTORY);
                ch.sum = 0.0;
                ch.n = 0;
            }
        }
        self.exact_copies(ctx, now, copies, out);
        if (now + MS_PER_MINUTE) % MS_PER_HOUR != 0 {
            return;
        }
        let end = now + MS_PER_MINUTE;
        let (best, statistic) = self.best_match();
        // Fisher's z of the hour's best joint correlation joins the outlet's own null; a copy must also stand out
        // from that (daily routines that repeat closely at some outlet are its habit, not a replay).
        let z = statistic.map(fisher_z);
        let null = self.state.null.threshold(self.false_alarms_per_day);
        if let Some(z) = z {
            self.state.null.observe(z);
        }
        let best = best.filter(|_| null.zip(z).is_none_or(|(t, z)| z > t));
        match best {
            Some((lag, r, channels)) => {
                self.state.hours_without_match = 0;
                let ep = self.state.episode.get_or_insert(Episode {
                    start_ms: end - WINDOW as i64 * BUCKET_MIN * MS_PER_MINUTE,
                    end_ms: end,
                    raised_at_ms: end,
                    hours: 0,
                    lag_buckets: lag,
                    min_correlation: r,
                    channels,
                });
                ep.end_ms = end;
                ep.hours += 1;
                ep.min_correlation = ep.min_correlation.min(r);
                out.push(finding(ctx, ep, true));
            }
            None => {
                self.state.hours_without_match += 1;
                if let Some(ep) = self.state.episode.take() {
                    out.push(finding(ctx, &ep, false));
                }
            }
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        if let Some(ep) = self.state.episode.take() {
            out.push(finding(ctx, &ep, false));
        }
        for ep in std::mem::take(&mut self.state.exact) {
            if ep.raised_at_ms.is_some() {
                out.push(exact_finding(ctx, &ep, false));
            }
        }
    }

    persist_state!(state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{
        row, run_detector, summary_en, topology_with_limits, with_cems, T0,
    };
    use rand::{Rng, SeedableRng};

    fn topo() -> crate::domain::OutletTopology {
        topology_with_limits(&[("a21026", 35.0), ("a21002", 50.0)])
    }

    /// Four days of realistic noisy SO2, NOx and O2 with a daily load cycle; minutes in `copy` repeat the data of
    /// `lag` minutes earlier, times `1 + jitter·ε`.
    fn run(copy: std::ops::Range<i64>, lag: i64, jitter: f64) -> Vec<Finding> {
        run_long(4, copy, lag, jitter, false)
    }

    /// [`run`] over `days`; with `cross`, the copy puts SO2's earlier data on the NOx channel.
    fn run_long(
        days: i64,
        copy: std::ops::Range<i64>,
        lag: i64,
        jitter: f64,
        cross: bool,
    ) -> Vec<Finding> {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(11);
        let mut ar = [0.0f64; 3];
        let mut series: Vec<[f64; 3]> = Vec::new();
        for i in 0..days * 1440 {
            let cycle = ((i % 1440) as f64 / 1440.0 * std::f64::consts::TAU).sin();
            for a in &mut ar {
                *a = 0.95 * *a + 0.02 * (rng.gen::<f64>() - 0.5) * 3.0;
            }
            let mut v = [
                22.0 * (1.0 + ar[0] + 0.02 * (rng.gen::<f64>() - 0.5) * 3.0) + cycle,
                38.0 * (1.0 + ar[1] + 0.02 * (rng.gen::<f64>() - 0.5) * 3.0) + cycle,
                6.0 + 0.5 * cycle + 0.1 * (rng.gen::<f64>() - 0.5) * 3.0 + ar[2],
            ];
            if copy.contains(&i) {
                let old = series[(i - lag) as usize];
                if cross {
                    v[1] = old[0];
                } else {
                    for k in 0..3 {
                        v[k] = old[k] * (1.0 + jitter * (rng.gen::<f64>() - 0.5) * 3.0);
                    }
                }
            }
            series.push(v);
        }
        run_detector(
            Replay::boxed,
            &topo(),
            series.iter().enumerate().map(|(i, v)| {
                let r = |x: f64| (x * 10.0).round() / 10.0;
                with_cems(
                    row(i as i64, &[("p1", Some(800.0)), ("t1", Some(150.0))]),
                    &[
                        ("a21026", r(v[0])),
                        ("a21002", r(v[1])),
                        ("a19001", r(v[2] * 10.0) / 10.0),
                    ],
                )
            }),
        )
    }

    #[test]
    fn yesterdays_data_resent_is_found_with_its_lag() {
        let out = run(3 * 1440..3 * 1440 + 480, 1440, 0.0);
        let closed: Vec<_> = out
            .iter()
            .filter(|f| !f.ongoing && f.key.is_empty())
            .collect();
        assert_eq!(closed.len(), 1, "{out:#?}");
        assert_eq!(closed[0].evidence["lag_min"], 1440.0);
        // The exact copy is also found by its hashed windows, at the same lag.
        let exact: Vec<_> = out
            .iter()
            .filter(|f| !f.ongoing && f.key == "exact")
            .collect();
        assert!(!exact.is_empty(), "{out:#?}");
        assert!(exact
            .iter()
            .all(|f| f.evidence["lag_min"] == 1440.0 && f.evidence["from_another_channel"] == 0.0));
        assert!(closed[0].start_ms >= T0 + (3 * 1440 - 60) * MS_PER_MINUTE);
    }

    #[test]
    fn a_careful_copy_at_an_odd_lag_with_noise_is_found_too() {
        let out = run(3 * 1440..3 * 1440 + 480, 1440 + 185, 0.01);
        // Noise added: no window repeats value for value, only the correlation sees it.
        assert!(out.iter().all(|f| f.key.is_empty()), "{out:#?}");
        let closed: Vec<_> = out.iter().filter(|f| !f.ongoing).collect();
        assert_eq!(closed.len(), 1, "{out:#?}");
        assert!(
            (closed[0].evidence["lag_min"] - 1625.0).abs() <= 5.0,
            "{:?}",
            closed[0].evidence
        );
    }

    #[test]
    fn honest_data_with_a_daily_cycle_is_not() {
        let out = run(0..0, 1, 0.0);
        assert!(out.is_empty(), "{out:#?}");
    }

    #[test]
    fn a_batch_program_that_honestly_repeats_every_day_is_judged_by_its_own_standard() {
        // A coating line's oven program: the same 5-minute steps every day, small analyzer noise on top. Its
        // differences correlate day to day like a copy would; after three days its own history says so.
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(5);
        let step = |m: i64| ((m / 5) * 7919 % 13) as f64;
        let rows: Vec<_> = (0..8 * 1440)
            .map(|i| {
                let m = i % 1440;
                let mut e = || (rng.gen::<f64>() - 0.5) * 0.6;
                with_cems(
                    row(i, &[("p1", Some(800.0)), ("t1", Some(150.0))]),
                    &[
                        ("a21026", 20.0 + step(m) + e()),
                        ("a21002", 30.0 + 1.5 * step(m) + e()),
                        ("a19001", 8.0 + 0.1 * step(m) + 0.1 * e()),
                    ],
                )
            })
            .collect();
        let out = run_detector(Replay::boxed, &topo(), rows);
        // The textbook test alone calls the first days copies of each other …
        assert!(!out.is_empty());
        // … and from the fourth day the outlet's own history says this is its routine.
        let late: Vec<_> = out
            .iter()
            .filter(|f| f.end_ms >= T0 + 4 * 1440 * MS_PER_MINUTE)
            .collect();
        assert!(late.is_empty(), "{late:#?}");
    }

    #[test]
    fn an_exact_copy_older_than_the_correlation_history_or_from_another_channel_is_found_by_its_hash(
    ) {
        let closed_exact = |out: &[Finding]| -> Vec<Finding> {
            out.iter()
                .filter(|f| !f.ongoing && f.key == "exact")
                .cloned()
                .collect()
        };
        // Day 12 repeats day 2 (ten days back, beyond the eight days of 5-minute means) for six hours.
        let out = run_long(13, 12 * 1440..12 * 1440 + 360, 10 * 1440, 0.0, false);
        let exact = closed_exact(&out);
        assert!(!exact.is_empty(), "{out:#?}");
        assert_eq!(exact[0].evidence["lag_min"], 14_400.0);
        assert!(exact[0].start_ms >= T0 + (12 * 1440 - 30) * MS_PER_MINUTE);
        assert!(exact[0].detected_at_ms <= T0 + (12 * 1440 + 360) * MS_PER_MINUTE);
        assert!(
            out.iter().all(|f| !f.key.is_empty()),
            "the correlation cannot see ten days back: {out:#?}"
        );
        // NOx carrying SO2's readings of two days before.
        let out = run_long(5, 4 * 1440..4 * 1440 + 360, 2 * 1440, 0.0, true);
        let exact = closed_exact(&out);
        assert!(!exact.is_empty(), "{out:#?}");
        assert_eq!(exact[0].evidence["from_another_channel"], 1.0);
        let summary = summary_en(&exact[0]);
        assert!(summary.contains("a21002") && summary.contains("a21026"));
        // Thirteen honest days: nothing repeats.
        let honest = run_long(13, 0..0, 1, 0.0, false);
        assert!(honest.iter().all(|f| f.key != "exact"), "{honest:#?}");
    }

    #[test]
    fn windows_with_few_distinct_values_are_never_anchors() {
        let mut index = CopyIndex::default();
        let flat: VecDeque<Option<i64>> = (0..30).map(|i| Some(i % 3)).collect();
        for t in 0..5000 {
            assert!(index.observe("a21026", t * MS_PER_HOUR, &flat).is_none());
        }
        assert!(index.first_seen.is_empty());
    }
}

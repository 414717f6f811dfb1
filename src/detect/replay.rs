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
//! rate (its empirical null, see [`super::null`]): an outlet whose honest routine repeats closely is judged by its
//! own standard.
//!
//! Look-alikes: identical constant values (a flat line has no differences to correlate: `FLATLINE`'s), repeated
//! daily operating patterns (differences of real data carry fresh noise every day).

use super::cems::{self, Resolution};
use super::null::HourlyNull;
use super::stats::{correlation, fisher_z};
use super::{monitored_codes, DetectConfig, Detector, Finding, Language, Minute, OutletContext};
use crate::domain::codes::O2;
use crate::domain::{AnomalyKind, MS_PER_HOUR, MS_PER_MINUTE};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Detector name and version.
pub const NAME: &str = "replay/2";
/// Minutes per mean.
const BUCKET_MIN: i64 = 5;
/// Means in the compared window (4 h).
const WINDOW: usize = 48;
/// Means kept (8 days).
const HISTORY: usize = 8 * 24 * 12;
/// Correlation that counts as a copy.
const MIN_CORRELATION: f64 = 0.9;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Channel {
    means: VecDeque<f64>,
    sum: f64,
    n: u32,
    resolution: Resolution,
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
}

/// The detector.
pub struct Replay {
    language: Language,
    /// False alarms per outlet-day the empirical null is read at.
    false_alarms_per_day: f64,
    state: State,
}

impl Replay {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            language: config.language,
            false_alarms_per_day: config.false_alarms_per_day,
            state: State::default(),
        })
    }

    fn finding(&self, ctx: &OutletContext<'_>, ep: &Episode, ongoing: bool) -> Finding {
        let t = ctx.topology;
        let lag_min = (ep.lag_buckets as i64 * BUCKET_MIN) as f64;
        let mut evidence = BTreeMap::new();
        evidence.insert(
            "duration_min".into(),
            ((ep.end_ms - ep.start_ms) / MS_PER_MINUTE) as f64,
        );
        evidence.insert("lag_min".into(), lag_min);
        evidence.insert("min_correlation".into(), ep.min_correlation);
        evidence.insert("channels_matched".into(), ep.channels as f64);
        evidence.insert("hours_matched".into(), f64::from(ep.hours));
        let score = (1.0 - 0.5 * (-(f64::from(ep.hours) - 1.0) / 2.0).exp()).clamp(0.5, 1.0);
        let (d, h) = (lag_min as i64 / 1440, (lag_min as i64 % 1440) as f64 / 60.0);
        let summary = match self.language {
            Language::Zh => format!(
                "{}{}：{} 个监测因子的数据与 {} 天 {:.1} 小时前的数据高度一致（相关系数 ≥ {:.3}），持续 {} 小时，疑似重复上传历史数据。",
                t.enterprise.name, t.outlet.name, ep.channels, d, h, ep.min_correlation, ep.hours
            ),
            Language::En => format!(
                "{} {}: {} channels repeat the data of {} d {:.1} h earlier (correlation ≥ {:.3}) for {} h: replayed data.",
                t.enterprise.name, t.outlet.name, ep.channels, d, h, ep.min_correlation, ep.hours
            ),
        };
        Finding {
            kind: AnomalyKind::ReplayedData,
            key: String::new(),
            start_ms: ep.start_ms,
            end_ms: ep.end_ms,
            detected_at_ms: ep.raised_at_ms,
            score,
            source_ids: vec![t.outlet.id.clone()],
            summary,
            evidence,
            ongoing,
            detector: NAME,
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
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let now = minute.row.minute_ms;
        let mut codes = monitored_codes(ctx.topology);
        codes.push(O2.to_string());
        let bucket_end = (now + MS_PER_MINUTE) % (BUCKET_MIN * MS_PER_MINUTE) == 0;
        for code in codes {
            let ch = self.state.channels.entry(code.clone()).or_default();
            if let Some(v) = cems::raw(minute.row, &code).filter(|_| minute.process.running()) {
                ch.sum += v;
                ch.n += 1;
                ch.resolution.observe(v);
            }
            if bucket_end {
                let mean = if ch.n >= 3 {
                    ch.sum / f64::from(ch.n)
                } else {
                    f64::NAN
                };
                ch.means.push_back(mean);
                if ch.means.len() > HISTORY {
                    ch.means.pop_front();
                }
                ch.sum = 0.0;
                ch.n = 0;
            }
        }
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
                let ep = ep.clone();
                out.push(self.finding(ctx, &ep, true));
            }
            None => {
                self.state.hours_without_match += 1;
                if let Some(ep) = self.state.episode.take() {
                    out.push(self.finding(ctx, &ep, false));
                }
            }
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        if let Some(ep) = self.state.episode.take() {
            out.push(self.finding(ctx, &ep, false));
        }
    }

    persist_state!(state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{row, run_detector, topology_with_limits, with_cems, T0};
    use rand::{Rng, SeedableRng};

    fn topo() -> crate::registry::OutletTopology {
        topology_with_limits(&[("a21026", 35.0), ("a21002", 50.0)])
    }

    /// Four days of realistic noisy SO2, NOx and O2 with a daily load cycle; minutes in `copy` repeat the data of
    /// `lag` minutes earlier, times `1 + jitter·ε`.
    fn run(copy: std::ops::Range<i64>, lag: i64, jitter: f64) -> Vec<Finding> {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(11);
        let mut ar = [0.0f64; 3];
        let mut series: Vec<[f64; 3]> = Vec::new();
        for i in 0..4 * 1440 {
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
                for k in 0..3 {
                    v[k] = old[k] * (1.0 + jitter * (rng.gen::<f64>() - 0.5) * 3.0);
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
        let closed: Vec<_> = out.iter().filter(|f| !f.ongoing).collect();
        assert_eq!(closed.len(), 1, "{out:#?}");
        assert_eq!(closed[0].evidence["lag_min"], 1440.0);
        assert!(closed[0].start_ms >= T0 + (3 * 1440 - 60) * MS_PER_MINUTE);
    }

    #[test]
    fn a_careful_copy_at_an_odd_lag_with_noise_is_found_too() {
        let out = run(3 * 1440..3 * 1440 + 480, 1440 + 185, 0.01);
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
}

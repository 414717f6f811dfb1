//! `SELECTIVE_GAP`: data goes missing where emissions are high. Missing data must never pay, and missing data that
//! happens exactly when the values were climbing towards the limit is a pattern of its own.
//!
//! For each pollutant, every gap of at least `MIN_GAP_MIN` minutes while production runs is classified by the last
//! valid reading before it: *high* when above the channel's own mean + 1.5 σ after climbing by a σ over the last
//! half hour. Under missing data that does not care about emissions, the share of high gaps is the share of such
//! minutes in the channel's own data, `q` (at least 0.5 %). With `k` high gaps among the `n` gaps of the last week, the binomial tail `P(X ≥ k | n, q)` below
//! `P_VALUE` (and at least three high gaps) raises an episode spanning those gaps.
//!
//! Look-alikes: region-wide communication outages and other gaps at random moments (their pre-gap levels are
//! ordinary), plants that honestly run near their limits (`q` is high for them, so high gaps are expected), plant
//! stops (production off: not a gap).

use super::cems;
use super::{DetectConfig, Detector, Finding, Language, Minute, OutletContext};
use crate::domain::codes::display_name;
use crate::domain::{units, AnomalyKind, MS_PER_MINUTE};
use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, DiscreteCDF};
use std::collections::{BTreeMap, VecDeque};

/// Detector name and version.
pub const NAME: &str = "selective_gap/1";
/// Shortest gap counted.
const MIN_GAP_MIN: u32 = 10;
/// Binomial tail that raises.
const P_VALUE: f64 = 1e-4;
/// Gaps remembered (a week).
const WINDOW_MS: i64 = 7 * 1440 * MS_PER_MINUTE;
/// Weight of a minute in the high-minute share (~a week).
const ALPHA: f64 = 1.0 / 10_080.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Gap {
    start_ms: i64,
    end_ms: i64,
    high: bool,
    pre_level: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Channel {
    recent: VecDeque<f64>,
    last_high: bool,
    last: f64,
    mean: f64,
    var: f64,
    high_share: f64,
    valid_minutes: u64,
    open_gap: Option<(i64, u32, f64, bool)>,
    gaps: VecDeque<Gap>,
    episode: Option<(i64, i64)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    channels: BTreeMap<String, Channel>,
}

/// The detector.
pub struct SelectiveGap {
    language: Language,
    state: State,
}

impl Channel {
    /// The newest reading is high for this channel and has climbed to get there.
    fn is_high(&self) -> bool {
        let Some(&last) = self.recent.back() else {
            return false;
        };
        let sd = self.var.max(0.0).sqrt();
        let earlier: Vec<f64> = self.recent.iter().take(10).copied().collect();
        let before = earlier.iter().sum::<f64>() / earlier.len().max(1) as f64;
        self.recent.len() >= 30 && last >= self.mean + 1.5 * sd && last - before >= sd
    }
}

fn tail(n: u64, k: u64, q: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    Binomial::new(q.clamp(1e-6, 1.0 - 1e-9), n).map_or(1.0, |b| 1.0 - b.cdf(k - 1))
}

impl SelectiveGap {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            language: config.language,
            state: State::default(),
        })
    }

    fn finding(
        &self,
        ctx: &OutletContext<'_>,
        code: &str,
        ch: &Channel,
        p: f64,
        raised: i64,
        ongoing: bool,
    ) -> Finding {
        let t = ctx.topology;
        let n = ch.gaps.len();
        let high: Vec<&Gap> = ch.gaps.iter().filter(|g| g.high).collect();
        let missing_min: i64 = high
            .iter()
            .map(|g| (g.end_ms - g.start_ms) / MS_PER_MINUTE)
            .sum();
        let (start, end) = ch.episode.unwrap_or((raised, raised));
        let mut evidence = BTreeMap::new();
        evidence.insert("gaps".into(), n as f64);
        evidence.insert("gaps_after_high_values".into(), high.len() as f64);
        evidence.insert("share_of_high_minutes".into(), ch.high_share);
        evidence.insert("p_value".into(), p);
        evidence.insert(
            "minutes_missing_after_high_values".into(),
            missing_min as f64,
        );
        evidence.insert(
            "mean_last_value_before_high_gaps_pct_of_limit".into(),
            100.0 * high.iter().map(|g| g.pre_level).sum::<f64>() / high.len().max(1) as f64,
        );
        let score = (1.0 - 0.5 * (p.max(1e-300).log10() / -4.0).recip().min(1.0)).clamp(0.5, 1.0);
        let (zh, en) = display_name(code);
        let summary = match self.language {
            Language::Zh => format!(
                "{}{}：{}（{}）近一周 {} 次数据缺失中有 {} 次紧接在异常偏高的读数之后（正常仅 {:.1}% 的时间处于该水平，p={:.1e}），疑似选择性缺失。",
                t.enterprise.name, t.outlet.name, zh, code, n, high.len(), 100.0 * ch.high_share, p
            ),
            Language::En => format!(
                "{} {}: {} of {} gaps in {} ({}) this week began right after unusually high readings, a level seen only {:.1}% of the time (p={:.1e}): data missing where emissions are high.",
                t.enterprise.name, t.outlet.name, high.len(), n, en, code, 100.0 * ch.high_share, p
            ),
        };
        Finding {
            kind: AnomalyKind::SelectiveGap,
            key: code.to_string(),
            start_ms: start,
            end_ms: end,
            detected_at_ms: raised,
            score,
            source_ids: vec![t.outlet.id.clone()],
            summary,
            evidence,
            ongoing,
            detector: NAME,
        }
    }
}

impl Detector for SelectiveGap {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let t = ctx.topology;
        let now = minute.row.minute_ms;
        let running = minute.process.running();
        let limits: Vec<(String, f64)> = t
            .outlet
            .limits_mg_m3
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (code, limit) in limits {
            let value = cems::converted(
                minute.row,
                &code,
                t.outlet.reference_o2_pct,
                units::DEFAULT_O2_CEILING_PCT,
            )
            .valid();
            let ch = self.state.channels.entry(code.clone()).or_default();
            let mut judged: Option<i64> = None;
            match value {
                Some(v) => {
                    let share = v / limit;
                    // "High" is relative to the channel itself: the reading is above its mean + 1.5 σ *and* has risen
                    // by a σ over the last half hour (emissions climbing). `high_share` measures how often an ordinary
                    // minute looks like that: the chance a gap starts there if gaps do not care.
                    ch.recent.push_back(share);
                    if ch.recent.len() > 40 {
                        ch.recent.pop_front();
                    }
                    let high_now = ch.is_high();
                    let a = (1.0 / (ch.valid_minutes as f64 + 1.0)).max(ALPHA);
                    if ch.valid_minutes > 60 {
                        ch.high_share += a * (f64::from(u8::from(high_now)) - ch.high_share);
                    }
                    let d = share - ch.mean;
                    ch.mean += a * d;
                    ch.var = (1.0 - a) * (ch.var + a * d * d);
                    ch.valid_minutes += 1;
                    ch.last = share;
                    ch.last_high = high_now;
                    if let Some((start, len, pre, high)) = ch.open_gap.take() {
                        if len >= MIN_GAP_MIN {
                            ch.gaps.push_back(Gap {
                                start_ms: start,
                                end_ms: now,
                                high,
                                pre_level: pre,
                            });
                            judged = Some(now);
                        }
                    }
                }
                None if running => {
                    let high = ch.valid_minutes > 60 && ch.last_high;
                    let pre = ch.last;
                    let gap = ch.open_gap.get_or_insert((now, 0, pre, high));
                    gap.1 += 1;
                }
                None => {}
            }
            while ch.gaps.front().is_some_and(|g| now - g.end_ms > WINDOW_MS) {
                ch.gaps.pop_front();
            }
            let Some(at) = judged else {
                continue;
            };
            let n = ch.gaps.len() as u64;
            let k = ch.gaps.iter().filter(|g| g.high).count() as u64;
            let p = tail(n, k, ch.high_share.max(0.005));
            if k >= 3 && p < P_VALUE {
                let first = ch.gaps.iter().find(|g| g.high).map_or(at, |g| g.start_ms);
                let start = ch.episode.map_or(first, |(s, _)| s.min(first));
                ch.episode = Some((start, at));
                let ch = ch.clone();
                out.push(self.finding(ctx, &code, &ch, p, at, true));
            }
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        let codes: Vec<String> = self.state.channels.keys().cloned().collect();
        for code in codes {
            let Some(ch) = self.state.channels.get(&code).cloned() else {
                continue;
            };
            if let Some((_, end)) = ch.episode {
                let n = ch.gaps.len() as u64;
                let k = ch.gaps.iter().filter(|g| g.high).count() as u64;
                let p = tail(n, k, ch.high_share);
                let first_raise = out
                    .iter()
                    .filter(|f| f.key == code && f.kind == AnomalyKind::SelectiveGap)
                    .map(|f| f.detected_at_ms)
                    .min()
                    .unwrap_or(end);
                out.push(self.finding(ctx, &code, &ch, p, first_raise.min(end), false));
            }
            if let Some(c) = self.state.channels.get_mut(&code) {
                c.episode = None;
            }
        }
    }

    persist_state!(state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{row, run_detector, topology, with_cems};

    /// Four days; `gap(i, level)` says whether minute `i` is missing given the true level (share of the limit).
    fn run(level: impl Fn(i64) -> f64, gap: impl Fn(i64, f64) -> bool) -> Vec<Finding> {
        let mut t = topology();
        t.outlet.limits_mg_m3.insert("a21026".into(), 35.0);
        run_detector(
            SelectiveGap::boxed,
            &t,
            (0..4 * 1440).map(|i| {
                let l = level(i);
                let r = row(i, &[("p1", Some(800.0)), ("t1", Some(150.0))]);
                if gap(i, l) {
                    r
                } else {
                    with_cems(r, &[("a21026", 35.0 * l), ("a19001", 6.0)])
                }
            }),
        )
    }

    /// Normally 55 % of the limit; from 10:00 each day it climbs over an hour to 160 % and back by 16:00.
    fn daily_excursion(i: i64) -> f64 {
        let h = (i % 1440) as f64 / 60.0;
        let ramp = (h - 10.0).clamp(0.0, 1.0).min((16.0 - h).clamp(0.0, 1.0));
        0.55 + ramp * (1.6 - 0.55) + 0.02 * (((i * 7919) % 11) as f64 - 5.0) / 5.0
    }

    #[test]
    fn data_missing_whenever_it_would_show_the_limit_passed_is_found() {
        let out = run(daily_excursion, |_, l| l > 0.9);
        assert!(!out.is_empty(), "selective gaps missed");
        let last = out.last().unwrap();
        assert!(!last.ongoing);
        assert!(last.evidence["gaps_after_high_values"] >= 3.0);
        assert!(last.evidence["p_value"] < P_VALUE);
    }

    #[test]
    fn outages_at_random_moments_are_not() {
        // The same plant, but the gaps (90 minutes twice a day) fall at moments unrelated to the level.
        let out = run(daily_excursion, |i, _| {
            (i % 1440) >= 200 && (i % 1440) < 290 || (i % 1440) >= 1100 && (i % 1440) < 1190
        });
        assert!(out.is_empty(), "{out:#?}");
    }
}

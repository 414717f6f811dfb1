//! `SELECTIVE_GAP`: data goes missing where emissions are high. Missing data must never pay, and missing data that
//! happens exactly when the values were climbing towards the limit is a pattern of its own.
//!
//! A gap is a stretch of at least `MIN_GAP_MIN` minutes while production runs in which **none** of the outlet's
//! limited pollutants arrives at all (a flagged reading is not a gap: calibrations and faults are other kinds'). Each
//! gap is classified by the last readings before it: *high* when any pollutant's 5-minute level was 3 σ above its own
//! mean after climbing by 2 σ over the last 40 minutes (σ of the 5-minute level, learned robustly: deviations beyond
//! 3 σ are clipped, so a stop or an excursion does not inflate it). Under missing data that does not care about emissions, the share of
//! high gaps is the share of ordinary minutes that look like that, `q` (at least 0.5 %). With `k` high gaps among
//! the `n` gaps of the last week, the binomial tail `P(X ≥ k | n, q)` below `α` (and at least three high gaps)
//! raises an episode spanning those gaps. The test is judged at the end of every gap, so `α` is the configured false
//! alarms per outlet-day divided over the gaps a day holds at this outlet (at least one): the setting holds however
//! often an outlet's data goes missing. Judging gaps per outlet, not per pollutant, keeps the evidence together
//! when whichever pollutant crosses first triggers the gap.
//!
//! Look-alikes: region-wide communication outages and other gaps at random moments (their pre-gap levels are
//! ordinary), daily calibrations (flagged, not missing), plants that honestly run near their limits (`q` is high for
//! them, so high gaps are expected), plant stops (production off: not a gap).

use super::cems::{self, CemsValue};
use super::{DetectConfig, Detector, Finding, Language, Minute, OutletContext};
use crate::domain::codes::display_name;
use crate::domain::{units, AnomalyKind, MS_PER_MINUTE};
use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, DiscreteCDF};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Detector name and version.
pub const NAME: &str = "selective_gap/3";
/// Shortest gap counted.
const MIN_GAP_MIN: u32 = 10;
/// Gaps remembered (a week).
const WINDOW_MS: i64 = 7 * 1440 * MS_PER_MINUTE;
/// Weight of a minute in the learned levels and the high-minute share (~a week).
const ALPHA: f64 = 1.0 / 10_080.0;
/// Minutes learned before a channel's "high" means anything.
const MATURE: u64 = 60;
/// Finding key: one episode per outlet.
const KEY: &str = "outlet";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Gap {
    start_ms: i64,
    end_ms: i64,
    high: bool,
    /// Pollutants that were high before it.
    high_codes: Vec<String>,
    /// Highest last reading before it, as a share of its limit.
    pre_level: f64,
}

/// Minutes averaged into the level that is judged (single noisy minutes are not "high").
const SMOOTH_MIN: usize = 5;
/// Minutes of history kept per channel: the climb is measured from the oldest smoothed level to the newest.
const RECENT_MIN: usize = 40;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Channel {
    recent: VecDeque<f64>,
    last: f64,
    /// Learned mean of the 5-minute level.
    mean: f64,
    /// Learned variance of the 5-minute level.
    var: f64,
    valid_minutes: u64,
}

impl Channel {
    fn level(values: impl Iterator<Item = f64>) -> f64 {
        let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
        sum / n.max(1) as f64
    }

    /// Learns a reading (a share of the limit) and says whether the channel is high and climbing.
    fn observe(&mut self, share: f64) -> bool {
        self.recent.push_back(share);
        if self.recent.len() > RECENT_MIN {
            self.recent.pop_front();
        }
        self.last = share;
        self.valid_minutes += 1;
        if self.recent.len() < SMOOTH_MIN {
            return false;
        }
        let now = Self::level(self.recent.iter().rev().take(SMOOTH_MIN).copied());
        let high = self.is_high(now);
        let a = (1.0 / (self.valid_minutes as f64 + 1.0)).max(ALPHA);
        let sd = self.var.max(0.0).sqrt();
        let mut d = now - self.mean;
        if self.valid_minutes > MATURE && sd > 0.0 {
            d = d.clamp(-3.0 * sd, 3.0 * sd);
        }
        self.mean += a * d;
        self.var = (1.0 - a) * (self.var + a * d * d);
        high
    }

    /// The 5-minute level is 3 σ above its own mean and has climbed 2 σ since the start of the last 40 minutes.
    fn is_high(&self, now: f64) -> bool {
        let sd = self.var.max(0.0).sqrt();
        let before = Self::level(self.recent.iter().take(SMOOTH_MIN).copied());
        self.valid_minutes > MATURE
            && self.recent.len() >= RECENT_MIN
            && now >= self.mean + 3.0 * sd
            && now - before >= 2.0 * sd
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenGap {
    start_ms: i64,
    minutes: u32,
    high_codes: Vec<String>,
    pre_level: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    channels: BTreeMap<String, Channel>,
    /// Codes high at the last minute with data.
    last_high: Vec<String>,
    /// Share of minutes with data in which some pollutant was high.
    high_share: f64,
    minutes_with_data: u64,
    open_gap: Option<OpenGap>,
    gaps: VecDeque<Gap>,
    episode: Option<(i64, i64)>,
}

/// The detector.
pub struct SelectiveGap {
    language: Language,
    false_alarms_per_day: f64,
    state: State,
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
            false_alarms_per_day: config.false_alarms_per_day,
            state: State::default(),
        })
    }

    /// Gaps, high gaps and the binomial tail of the week.
    fn judge(&self) -> (u64, u64, f64) {
        let n = self.state.gaps.len() as u64;
        let k = self.state.gaps.iter().filter(|g| g.high).count() as u64;
        (n, k, tail(n, k, self.state.high_share.max(0.005)))
    }

    /// The level of one judgement: the day's budget over the gaps a day holds here (the week's gaps / 7, at least 1).
    fn alpha(&self) -> f64 {
        let days = (WINDOW_MS / (1440 * MS_PER_MINUTE)) as f64;
        self.false_alarms_per_day / (self.state.gaps.len() as f64 / days).max(1.0)
    }

    fn finding(&self, ctx: &OutletContext<'_>, p: f64, raised: i64, ongoing: bool) -> Finding {
        let t = ctx.topology;
        let st = &self.state;
        let n = st.gaps.len();
        let high: Vec<&Gap> = st.gaps.iter().filter(|g| g.high).collect();
        let missing_min: i64 = high
            .iter()
            .map(|g| (g.end_ms - g.start_ms) / MS_PER_MINUTE)
            .sum();
        let codes: BTreeSet<&String> = high.iter().flat_map(|g| &g.high_codes).collect();
        let (start, end) = st.episode.unwrap_or((raised, raised));
        let mut evidence = BTreeMap::new();
        evidence.insert("gaps".into(), n as f64);
        evidence.insert("gaps_after_high_values".into(), high.len() as f64);
        evidence.insert("share_of_high_minutes".into(), st.high_share);
        evidence.insert("p_value".into(), p);
        evidence.insert("alpha".into(), self.alpha());
        evidence.insert(
            "minutes_missing_after_high_values".into(),
            missing_min as f64,
        );
        evidence.insert(
            "mean_last_value_before_high_gaps_pct_of_limit".into(),
            100.0 * high.iter().map(|g| g.pre_level).sum::<f64>() / high.len().max(1) as f64,
        );
        let score = (1.0 - 0.5 * (p.max(1e-300).log10() / -4.0).recip().min(1.0)).clamp(0.5, 1.0);
        let names = |zh: bool| {
            codes
                .iter()
                .map(|c| {
                    let (z, e) = display_name(c);
                    format!("{}（{c}）", if zh { z } else { e })
                })
                .collect::<Vec<_>>()
                .join(if zh { "、" } else { ", " })
        };
        let summary = match self.language {
            Language::Zh => format!(
                "{}{}：近一周生产期间 {} 次整段数据缺失中有 {} 次紧接在{}异常升高之后（正常仅 {:.1}% 的时间处于该状态，p={:.1e}），疑似选择性缺失。",
                t.enterprise.name, t.outlet.name, n, high.len(), names(true), 100.0 * st.high_share, p
            ),
            Language::En => format!(
                "{} {}: {} of {} gaps while production ran this week began right after {} climbed unusually high, a state seen only {:.1}% of the time (p={:.1e}): data missing where emissions are high.",
                t.enterprise.name, t.outlet.name, high.len(), n, names(false).replace('（', " (").replace('）', ")"), 100.0 * st.high_share, p
            ),
        };
        Finding {
            kind: AnomalyKind::SelectiveGap,
            key: KEY.to_string(),
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
        if t.outlet.limits_mg_m3.is_empty() {
            return;
        }
        let now = minute.row.minute_ms;
        let st = &mut self.state;
        let mut any_present = false;
        let mut any_valid = false;
        let mut high_now = Vec::new();
        for (code, limit) in &t.outlet.limits_mg_m3 {
            let value = cems::converted(
                minute.row,
                code,
                t.outlet.reference_o2_pct,
                units::DEFAULT_O2_CEILING_PCT,
            );
            any_present |= !matches!(value, CemsValue::Missing);
            if let Some(v) = value.valid().filter(|_| *limit > 0.0) {
                any_valid = true;
                if st
                    .channels
                    .entry(code.clone())
                    .or_default()
                    .observe(v / limit)
                {
                    high_now.push(code.clone());
                }
            }
        }
        if any_valid {
            let a = (1.0 / (st.minutes_with_data as f64 + 1.0)).max(ALPHA);
            if st.minutes_with_data > MATURE {
                let x = f64::from(u8::from(!high_now.is_empty()));
                st.high_share += a * (x - st.high_share);
            }
            st.minutes_with_data += 1;
            st.last_high = high_now;
        }
        let mut judged = None;
        if any_present {
            if let Some(g) = st.open_gap.take() {
                if g.minutes >= MIN_GAP_MIN {
                    st.gaps.push_back(Gap {
                        start_ms: g.start_ms,
                        end_ms: now,
                        high: !g.high_codes.is_empty(),
                        high_codes: g.high_codes,
                        pre_level: g.pre_level,
                    });
                    judged = Some(now);
                }
            }
        } else if minute.process.running() && st.minutes_with_data > MATURE {
            let pre_level = st
                .channels
                .values()
                .map(|c| c.last)
                .fold(f64::NEG_INFINITY, f64::max);
            let last_high = st.last_high.clone();
            let gap = st.open_gap.get_or_insert(OpenGap {
                start_ms: now,
                minutes: 0,
                high_codes: last_high,
                pre_level,
            });
            gap.minutes += 1;
        }
        while st.gaps.front().is_some_and(|g| now - g.end_ms > WINDOW_MS) {
            st.gaps.pop_front();
        }
        let Some(at) = judged else {
            return;
        };
        let (_, k, p) = self.judge();
        if k >= 3 && p < self.alpha() {
            let st = &mut self.state;
            let first = st.gaps.iter().find(|g| g.high).map_or(at, |g| g.start_ms);
            let start = st.episode.map_or(first, |(s, _)| s.min(first));
            st.episode = Some((start, at));
            out.push(self.finding(ctx, p, at, true));
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        if let Some((_, end)) = self.state.episode {
            let (_, _, p) = self.judge();
            let first_raise = out
                .iter()
                .filter(|f| f.kind == AnomalyKind::SelectiveGap)
                .map(|f| f.detected_at_ms)
                .min()
                .unwrap_or(end);
            out.push(self.finding(ctx, p, first_raise.min(end), false));
        }
        self.state.episode = None;
    }

    persist_state!(state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{noise, row, run_detector, run_detector_at, topology, with_cems};
    use rand::{Rng, SeedableRng};

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
        assert!(last.evidence["p_value"] < last.evidence["alpha"]);
    }

    #[test]
    fn outages_at_random_moments_are_not() {
        // The same plant, but the gaps (90 minutes twice a day) fall at moments unrelated to the level.
        let out = run(daily_excursion, |i, _| {
            (i % 1440) >= 200 && (i % 1440) < 290 || (i % 1440) >= 1100 && (i % 1440) < 1190
        });
        assert!(out.is_empty(), "{out:#?}");
    }

    /// A cement kiln honestly near its limits: NOx ~75 % and PM ~48 % of the limit with minute noise, a 10-minute
    /// span calibration (flag C) every day at 03:00. `cheat(i)` returns how far (0..1) treatment is eased off.
    fn kiln(
        days: i64,
        cheat: impl Fn(i64) -> f64,
        missing: impl Fn(i64, f64, f64) -> bool,
    ) -> Vec<Finding> {
        let mut t = topology();
        t.outlet.limits_mg_m3.insert("a21002".into(), 100.0);
        t.outlet.limits_mg_m3.insert("a34013".into(), 10.0);
        t.outlet.reference_o2_pct = 0.0;
        run_detector(
            SelectiveGap::boxed,
            &t,
            (0..days * 1440).map(|i| {
                let eased = cheat(i);
                let nox = 0.75 + 0.05 * noise(i, 1) + eased * 0.85;
                let pm = 0.48 + 0.03 * noise(i, 2) + eased * 1.1;
                let r = row(i, &[("p1", Some(800.0)), ("t1", Some(150.0))]);
                if missing(i, nox, pm) {
                    return r;
                }
                let mut r = with_cems(r, &[("a21002", 100.0 * nox), ("a34013", 10.0 * pm)]);
                if (180..190).contains(&(i % 1440)) {
                    for v in r.cems.values_mut() {
                        v.flag = crate::domain::ValueFlag::Calibration;
                    }
                }
                r
            }),
        )
    }

    /// Treatment eased off from 10:00, fully by 10:20, until 16:00, on days 2..6.
    fn busy_hours(i: i64) -> f64 {
        let (day, m) = (i / 1440, i % 1440);
        if !(2..6).contains(&day) {
            return 0.0;
        }
        ((m - 600) as f64 / 20.0).clamp(0.0, 1.0) * f64::from(u8::from(m < 960))
    }

    #[test]
    fn careful_gaps_triggered_by_whichever_pollutant_crosses_90_pct_first_are_found() {
        // The record goes missing once NOx or PM would show more than 90 % of its limit: a climb of only ~3 σ of
        // the minute noise before each gap, alternating pollutants.
        let out = kiln(7, busy_hours, |_, nox, pm| nox > 0.9 || pm > 0.9);
        let last = out.last().unwrap_or_else(|| panic!("missed"));
        assert!(last.evidence["gaps_after_high_values"] >= 3.0, "{last:#?}");
        assert!(last.evidence["share_of_high_minutes"] < 0.05, "{last:#?}");
        assert!(last.summary.contains("a21002") || last.summary.contains("a34013"));
    }

    #[test]
    fn daily_calibrations_and_random_outages_of_the_same_kiln_are_not() {
        // Same kiln, honest: calibrations every day (flagged, not missing) and two-hour communication outages at
        // moments that have nothing to do with the level.
        let out = kiln(
            7,
            |_| 0.0,
            |i, _, _| {
                let m = i % 1440;
                let day = i / 1440;
                (day % 2 == 0 && (400 + day * 97..520 + day * 97).contains(&m))
                    || (day % 3 == 1 && (1100..1160).contains(&m))
            },
        );
        assert!(out.is_empty(), "{out:#?}");
    }

    #[test]
    fn the_false_alarm_setting_holds_on_honest_outlets_whose_data_often_goes_missing() {
        // 40 honest outlets × 30 days at a generous budget of 0.05 per outlet-day (60 allowed): levels that wander
        // and climb of their own accord (so "high" minutes are common), and 2–8 outages a day at random moments.
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(11);
        let mut t = topology();
        t.outlet.limits_mg_m3.insert("a21026".into(), 35.0);
        let (days, outlets, budget) = (30, 40, 0.05);
        let mut episodes = 0;
        let mut judged_gaps = 0;
        for _ in 0..outlets {
            let per_day = 2.0 + 6.0 * rng.gen::<f64>();
            let mut level: f64 = 0.6;
            let mut missing_left = 0;
            let rows: Vec<_> = (0..days * 1440)
                .map(|i| {
                    level += 0.02 * (0.6 - level) + 0.01 * (rng.gen::<f64>() - 0.5) * 2.0;
                    if missing_left == 0 && rng.gen::<f64>() < per_day / 1440.0 {
                        missing_left = rng.gen_range(10..120);
                        judged_gaps += 1;
                    }
                    let r = row(i, &[("p1", Some(800.0)), ("t1", Some(150.0))]);
                    if missing_left > 0 {
                        missing_left -= 1;
                        return r;
                    }
                    with_cems(
                        r,
                        &[
                            ("a21026", 35.0 * (level + 0.02 * noise(i, 9))),
                            ("a19001", 6.0),
                        ],
                    )
                })
                .collect();
            let out = run_detector_at(SelectiveGap::boxed, &t, budget, rows);
            episodes += out.iter().filter(|f| !f.ongoing).count();
        }
        assert!(judged_gaps > 40 * 30 * 2, "{judged_gaps}");
        let allowed = budget * (days * outlets) as f64;
        assert!(
            (episodes as f64) <= allowed,
            "{episodes} false episodes, {allowed} allowed"
        );
    }
}

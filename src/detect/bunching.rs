//! `LIMIT_BUNCHING`: converted values piled up just under the limit with nothing above it: a hard ceiling clamped
//! into the reporting chain.
//!
//! Every day, over the last seven days of valid minute values (as a share of the limit), three bins are compared:
//! `[0.90, 0.95)`, `[0.95, 1.00)` and `[1.00, 1.05)`. A ceiling shows as a local peak in the top bin under the limit
//! (more minutes there than in the bin below it) **and** a deficit above (the bin above holds less than 5 % of the
//! peak), with at least `MIN_PEAK` minutes in the peak.
//!
//! Look-alikes: plants honestly running near their limit (a smooth density falls off before the limit: no peak
//! right under it), set-points deliberately just under the limit (a peak, but with the tail above it that real
//! control leaves: no deficit).

use super::cems;
use super::{DetectConfig, Detector, Finding, Language, Minute, OutletContext};
use crate::domain::codes::display_name;
use crate::domain::{units, AnomalyKind, MS_PER_MINUTE};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Detector name and version.
pub const NAME: &str = "limit_bunching/1";
/// Days in the judged window.
const DAYS: usize = 7;
/// Minutes a day.
const DAY_MIN: i64 = 1440;
/// Minutes needed in the peak bin.
const MIN_PEAK: u32 = 120;
/// Above-limit minutes allowed as a share of the peak.
const DEFICIT: f64 = 0.05;

/// Minute counts of one day in the three bins, plus when the peak minutes happened.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Day {
    below: u32,
    peak: u32,
    above: u32,
    first_peak_ms: Option<i64>,
    last_peak_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Channel {
    days: VecDeque<Day>,
    open: Option<(i64, i64)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    day_start_ms: Option<i64>,
    channels: BTreeMap<String, Channel>,
}

/// The detector.
pub struct Bunching {
    language: Language,
    state: State,
}

impl Bunching {
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
        sums: (u32, u32, u32),
        span: (i64, i64),
        raised: i64,
        ongoing: bool,
    ) -> Finding {
        let t = ctx.topology;
        let (below, peak, above) = sums;
        let limit = t.outlet.limits_mg_m3.get(code).copied().unwrap_or(f64::NAN);
        let mut evidence = BTreeMap::new();
        evidence.insert("limit_mg_m3".into(), limit);
        evidence.insert("minutes_90_95_pct_of_limit".into(), f64::from(below));
        evidence.insert("minutes_95_100_pct_of_limit".into(), f64::from(peak));
        evidence.insert("minutes_100_105_pct_of_limit".into(), f64::from(above));
        evidence.insert("window_days".into(), DAYS as f64);
        let pile = f64::from(peak) / f64::from(below.max(1));
        let score = (0.5 + 0.25 * pile.min(2.0)).min(1.0) * if above == 0 { 1.0 } else { 0.85 };
        let (zh, en) = display_name(code);
        let summary = match self.language {
            Language::Zh => format!(
                "{}{}：{}（{}）近 {} 天折算值有 {} 分钟堆积在限值的 95–100%，其下一档仅 {} 分钟、超过限值仅 {} 分钟，疑似在限值下方被截顶。",
                t.enterprise.name, t.outlet.name, zh, code, DAYS, peak, below, above
            ),
            Language::En => format!(
                "{} {}: {} ({}) converted values pile up at 95–100% of the limit ({} min) over {} days, with {} min in the band below and only {} min above the limit: clamped under the limit.",
                t.enterprise.name, t.outlet.name, en, code, peak, DAYS, below, above
            ),
        };
        Finding {
            kind: AnomalyKind::LimitBunching,
            key: code.to_string(),
            start_ms: span.0,
            end_ms: span.1,
            detected_at_ms: raised,
            score,
            source_ids: vec![t.outlet.id.clone()],
            summary,
            evidence,
            ongoing,
            detector: NAME,
        }
    }

    /// Judges each channel over the window at a day's end.
    fn judge(&mut self, ctx: &OutletContext<'_>, now: i64, out: &mut Vec<Finding>) {
        let codes: Vec<String> = self.state.channels.keys().cloned().collect();
        for code in codes {
            let Some(ch) = self.state.channels.get(&code) else {
                continue;
            };
            let (below, peak, above) = ch.days.iter().fold((0, 0, 0), |(b, p, a), d| {
                (b + d.below, p + d.peak, a + d.above)
            });
            let bunched =
                peak >= MIN_PEAK && peak > below && f64::from(above) < DEFICIT * f64::from(peak);
            let first = ch.days.iter().filter_map(|d| d.first_peak_ms).min();
            let last = ch.days.iter().map(|d| d.last_peak_ms).max().unwrap_or(now);
            let open = ch.open;
            let finding = match (bunched, open, first) {
                (true, _, Some(first)) => {
                    let raised = open.map_or(now, |(_, r)| r);
                    if let Some(ch) = self.state.channels.get_mut(&code) {
                        ch.open = Some((open.map_or(first, |(s, _)| s), raised));
                    }
                    Some(self.finding(
                        ctx,
                        &code,
                        (below, peak, above),
                        (open.map_or(first, |(s, _)| s), last + MS_PER_MINUTE),
                        raised,
                        true,
                    ))
                }
                (false, Some((start, raised)), _) => {
                    if let Some(ch) = self.state.channels.get_mut(&code) {
                        ch.open = None;
                    }
                    Some(self.finding(
                        ctx,
                        &code,
                        (below, peak, above),
                        (start, last + MS_PER_MINUTE),
                        raised,
                        false,
                    ))
                }
                _ => None,
            };
            out.extend(finding);
        }
    }
}

impl Detector for Bunching {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let t = ctx.topology;
        if t.outlet.limits_mg_m3.is_empty() {
            return;
        }
        let now = minute.row.minute_ms;
        let day = now.div_euclid(DAY_MIN * MS_PER_MINUTE);
        let start = *self.state.day_start_ms.get_or_insert(day);
        if day != start {
            self.judge(ctx, now, out);
            self.state.day_start_ms = Some(day);
            for ch in self.state.channels.values_mut() {
                ch.days.push_back(Day::default());
                if ch.days.len() > DAYS {
                    ch.days.pop_front();
                }
            }
        }
        for (code, limit) in &t.outlet.limits_mg_m3 {
            let Some(cz) = cems::converted(
                minute.row,
                code,
                t.outlet.reference_o2_pct,
                units::DEFAULT_O2_CEILING_PCT,
            )
            .valid() else {
                continue;
            };
            let ch = self.state.channels.entry(code.clone()).or_default();
            if ch.days.is_empty() {
                ch.days.push_back(Day::default());
            }
            let Some(d) = ch.days.back_mut() else {
                continue;
            };
            let share = cz / limit;
            if (0.90..0.95).contains(&share) {
                d.below += 1;
            } else if (0.95..1.0).contains(&share) {
                d.peak += 1;
                d.first_peak_ms.get_or_insert(now);
                d.last_peak_ms = now;
            } else if (1.0..1.05).contains(&share) {
                d.above += 1;
            }
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        let now = self
            .state
            .day_start_ms
            .map_or(0, |d| (d + 1) * DAY_MIN * MS_PER_MINUTE);
        self.judge(ctx, now, out);
        let codes: Vec<String> = self.state.channels.keys().cloned().collect();
        for code in codes {
            if let Some(f) = out
                .iter_mut()
                .rev()
                .find(|f| f.key == code && f.kind == AnomalyKind::LimitBunching)
            {
                f.ongoing = false;
            }
        }
        for ch in self.state.channels.values_mut() {
            ch.open = None;
        }
    }

    persist_state!(state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{row, run_detector, topology, with_cems};
    use rand::{Rng, SeedableRng};

    fn run(report: impl Fn(f64) -> f64, center: f64, spread: f64) -> Vec<Finding> {
        let mut t = topology();
        t.outlet.limits_mg_m3.insert("a21026".into(), 35.0);
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(5);
        run_detector(
            Bunching::boxed,
            &t,
            (0..8 * 1440).map(|i| {
                let real = 35.0
                    * (center
                        + spread * (rng.gen::<f64>() + rng.gen::<f64>() + rng.gen::<f64>() - 1.5));
                with_cems(
                    row(i, &[]),
                    &[
                        ("a21026", (report(real) * 10.0).round() / 10.0),
                        ("a19001", 6.0),
                    ],
                )
            }),
        )
    }

    #[test]
    fn a_ceiling_under_the_limit_is_found() {
        // The plant really runs around the limit (85–115 %); the report is clamped at 96 %.
        let out = run(|v| v.min(35.0 * 0.96), 1.0, 0.1);
        assert!(!out.is_empty());
        let last = out.last().unwrap();
        assert!(!last.ongoing);
        assert_eq!(last.evidence["minutes_100_105_pct_of_limit"], 0.0);
        assert!(
            last.evidence["minutes_95_100_pct_of_limit"]
                > last.evidence["minutes_90_95_pct_of_limit"]
        );
    }

    #[test]
    fn honest_near_limit_plants_and_set_points_under_the_limit_are_not() {
        // Tuned to run at 85 % of the limit: density falls off before the limit.
        assert!(run(|v| v, 0.85, 0.1).is_empty());
        // Controlled to a set-point at 97 % with real scatter: a peak, but with a tail above the limit.
        assert!(run(|v| v, 0.97, 0.06).is_empty());
    }
}

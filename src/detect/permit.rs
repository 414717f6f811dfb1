//! `PERMIT_EXCEEDED`: cumulative emitted mass on course to exceed the permitted annual amount (排污许可), raised pro
//! rata long before the year runs out.
//!
//! Mass per minute = measured concentration (mg/m³) × stack flow (m³/s) × 60 s. Missing data must never pay (US EPA
//! 40 CFR 75.33, DOMAIN.md §4): a minute with production running but no valid concentration or flow is filled with
//! the highest mass rate of the last valid hour. The projection is `cumulative × minutes in the year / minutes
//! observed`; an episode opens once the projection exceeds the permit after at least `MIN_OBSERVED_MIN` of data, and
//! is updated daily. The year is the calendar year in Beijing time.

use super::kit::period::period_start_ms;
use super::kit::{push_bounded, Span};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::codes::FLOW;
use crate::domain::{AnomalyKind, MS_PER_HOUR, MS_PER_MINUTE};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Detector name and version.
pub const NAME: &str = "permit/1";
/// Data needed before projecting (a day).
const MIN_OBSERVED_MIN: u64 = 1440;
/// Minutes between updates of an open episode (a day).
const UPDATE_EVERY_MIN: i64 = 1440;
/// Minutes in a (non-leap) year.
const YEAR_MIN: f64 = 525_600.0;
/// Tonnes per milligram.
const T_PER_MG: f64 = 1e-9;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CodeState {
    cumulative_t: f64,
    substituted_minutes: u64,
    recent_rates_t_per_min: VecDeque<f64>,
    open_since_ms: Option<i64>,
    raised_at_ms: i64,
    last_update_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    year: i64,
    observed_min: u64,
    codes: BTreeMap<String, CodeState>,
    last_minute_ms: i64,
}

/// The figures of an episode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Figures {
    /// The pollutant.
    pub(crate) code: String,
    pub(crate) permitted_t_per_year: f64,
    /// Emitted so far this year, substituted minutes included.
    pub(crate) cumulative_t: f64,
    pub(crate) observed_days: f64,
    pub(crate) projected_t_per_year: f64,
    pub(crate) projected_ratio_to_permit: f64,
    /// Minutes without valid data while production ran, filled with the last hour's highest mass rate.
    pub(crate) substituted_minutes: u32,
}

/// The detector.
pub struct Permit {
    state: State,
}

/// Calendar year in Beijing time (UTC+8) of a Unix-ms time.
fn beijing_year(ms: i64) -> i64 {
    i64::from(crate::domain::Month::of_ms(ms).year)
}

impl Permit {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(_config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            state: State::default(),
        })
    }

    /// The finding of a code's episode as it stands. The episode is the permit year's own: it starts with the
    /// year's data (the projection rests on all of it), is raised once the projection passes the permit, is updated
    /// daily and closes only when the year (or the data) ends.
    fn finding(
        &self,
        ctx: &OutletContext<'_>,
        code: &str,
        permitted: f64,
        c: &CodeState,
        ongoing: bool,
    ) -> Finding {
        let t = ctx.topology;
        let observed = self.state.observed_min as f64;
        let projected = c.cumulative_t * YEAR_MIN / observed.max(1.0);
        let ratio = projected / permitted;
        // Not `saturating`: a closing projection may have fallen back under the permit, and scores under ½ then.
        let score = (1.0 - 0.5 * (-(ratio - 1.0) / 0.2).exp()).clamp(0.0, 1.0);
        let figures = Figures {
            code: code.to_string(),
            permitted_t_per_year: permitted,
            cumulative_t: c.cumulative_t,
            observed_days: observed / 1440.0,
            projected_t_per_year: projected,
            projected_ratio_to_permit: ratio,
            substituted_minutes: u32::try_from(c.substituted_minutes).unwrap_or(u32::MAX),
        };
        let start = c.open_since_ms.unwrap_or(self.state.last_minute_ms);
        Span {
            key: format!("{code}/{}", self.state.year),
            start_ms: start,
            end_ms: self.state.last_minute_ms + MS_PER_MINUTE,
            detected_at_ms: c.raised_at_ms,
            ongoing,
        }
        .finding(
            AnomalyKind::PermitExceeded,
            NAME,
            score,
            vec![t.outlet.id.clone()],
            &figures,
        )
    }
}

impl Detector for Permit {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let t = ctx.topology;
        if t.outlet.permitted_t_per_year.is_empty() {
            return;
        }
        let now = minute.row.minute_ms;
        let year = beijing_year(now);
        if year != self.state.year {
            // A new permit year: close what was open, start counting again.
            self.finish(ctx, out);
            self.state = State {
                year,
                ..State::default()
            };
        }
        self.state.observed_min += 1;
        self.state.last_minute_ms = now;
        let flow = minute
            .row
            .cems
            .get(FLOW)
            .filter(|r| r.is_valid())
            .map(|r| r.value);
        let running = minute.process.running();
        for (code, permitted) in &t.outlet.permitted_t_per_year {
            if *permitted <= 0.0 {
                continue;
            }
            let c = self.state.codes.entry(code.clone()).or_default();
            let conc = minute
                .row
                .cems
                .get(code)
                .filter(|r| r.is_valid())
                .map(|r| r.value);
            match (conc, flow) {
                (Some(mg_m3), Some(m3_s)) => {
                    let rate = mg_m3.max(0.0) * m3_s.max(0.0) * 60.0 * T_PER_MG;
                    c.cumulative_t += rate;
                    push_bounded(&mut c.recent_rates_t_per_min, rate, 60);
                }
                _ if running => {
                    c.cumulative_t += c.recent_rates_t_per_min.iter().copied().fold(0.0, f64::max);
                    c.substituted_minutes += 1;
                }
                _ => {}
            }
        }
        // Judge once an hour, at its last minute.
        let next = now + MS_PER_MINUTE;
        if period_start_ms(next, MS_PER_HOUR) != next || self.state.observed_min < MIN_OBSERVED_MIN
        {
            return;
        }
        let observed = self.state.observed_min as f64;
        let permits: Vec<(String, f64)> = t
            .outlet
            .permitted_t_per_year
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (code, permitted) in permits {
            let Some(c) = self.state.codes.get_mut(&code) else {
                continue;
            };
            let projected = c.cumulative_t * YEAR_MIN / observed;
            let due = if projected > permitted {
                match c.open_since_ms {
                    None => {
                        c.open_since_ms = Some(
                            now + MS_PER_MINUTE - self.state.observed_min as i64 * MS_PER_MINUTE,
                        );
                        c.raised_at_ms = now + MS_PER_MINUTE;
                        c.last_update_ms = now;
                        true
                    }
                    Some(_) if now - c.last_update_ms >= UPDATE_EVERY_MIN * MS_PER_MINUTE => {
                        c.last_update_ms = now;
                        true
                    }
                    Some(_) => false,
                }
            } else {
                false
            };
            if due {
                let c = c.clone();
                out.push(self.finding(ctx, &code, permitted, &c, true));
            }
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        let permits = ctx.topology.outlet.permitted_t_per_year.clone();
        let codes: Vec<(String, CodeState)> = self
            .state
            .codes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (code, c) in codes {
            if c.open_since_ms.is_some() {
                let permitted = permits.get(&code).copied().unwrap_or(f64::NAN);
                out.push(self.finding(ctx, &code, permitted, &c, false));
            }
        }
        for c in self.state.codes.values_mut() {
            c.open_since_ms = None;
        }
    }

    persist_state!(state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{row, run_detector, topology, with_cems, T0};

    fn run(permit_t: f64, so2: impl Fn(i64) -> Option<f64>) -> Vec<Finding> {
        let mut t = topology();
        // 20 mg/m³ × 100 m³/s × 60 s = 0.12 kg/min → 63.07 t/year.
        t.outlet
            .permitted_t_per_year
            .insert("a21026".into(), permit_t);
        run_detector(
            Permit::boxed,
            &t,
            (0..3 * 1440).map(|i| {
                let r = row(i, &[("p1", Some(800.0)), ("t1", Some(150.0))]);
                match so2(i) {
                    Some(v) => with_cems(r, &[("a21026", v), ("a00000", 100.0)]),
                    None => r,
                }
            }),
        )
    }

    #[test]
    fn projected_over_permit_is_raised_after_a_day_of_data() {
        let out = run(40.0, |_| Some(20.0));
        assert!(!out.is_empty());
        let first = &out[0];
        assert_eq!(first.detected_at_ms, T0 + 1440 * MS_PER_MINUTE);
        assert!(
            (first.evidence["projected_t_per_year"] - 63.07).abs() < 0.1,
            "{:?}",
            first.evidence
        );
        assert!(first.evidence["projected_ratio_to_permit"] > 1.5);
        assert!(!out.last().unwrap().ongoing);
    }

    #[test]
    fn within_permit_is_quiet_but_gaps_while_running_are_filled_conservatively() {
        assert!(run(80.0, |_| Some(20.0)).is_empty());
        // Gaps in the high hours: 40 mg/m³ for the first 10 minutes of every hour, then silence while production
        // runs. Without substitution the year projects to 40 × 10/60 ≈ 21 t; with it, to ≈ 126 t.
        let out = run(80.0, |i| (i % 60 < 10).then_some(40.0));
        assert!(!out.is_empty(), "missing data must never pay");
        assert!(out[0].evidence["substituted_minutes"] > 1000.0);
    }

    #[test]
    fn beijing_years() {
        assert_eq!(beijing_year(T0), 2025);
        assert_eq!(beijing_year(T0 - 8 * MS_PER_HOUR), 2025); // 2024-12-31T16:00Z is 2025-01-01 00:00 in Beijing
        assert_eq!(beijing_year(T0 - 8 * MS_PER_HOUR - 1), 2024);
    }
}

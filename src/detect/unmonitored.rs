//! `UNMONITORED_EMISSION`: production runs while the outlet's CEMS is silent or reports itself stopped, faulty or
//! cut off (F/D/B flags) for longer than a grace period. Missing data must never pay: a gap while production runs
//! is evidence, not silence.
//!
//! Data availability is a statistic first and an alarm second. One outage is raised only once it outlasts what the
//! outlet's own outages make likely at the configured false-alarm rate ([`OutageLengths`]: their mean length and
//! how often they come, from a prior of a 30-minute mean at one in 20 days); and a month whose transmission rate
//! (valid minutes over minutes production ran, Beijing months) falls below the floor (default 90 %) is one alarm for
//! the month, whatever its outages' lengths. Outages that hide emissions predicted high are `SELECTIVE_GAP`'s.
//!
//! Look-alikes: a plant that is stopped (production off, no alarm); a short communication outage whose data the
//! device re-sends (it arrives within the allowed lateness, so the minutes are not silent); ordinary outages that are
//! never re-sent (shorter than the bar; counted in the month's rate); a genuine analyzer failure (D flag), still
//! reportable but scored lower; maintenance and calibration flags (M/C) are left to `FLAG_ABUSE`, which judges
//! whether they are plausible.

use super::kit::null::OutageLengths;
use super::kit::{duration_score, saturating, Due, Runs, Span, Timing};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::{AnomalyKind, Month};
use crate::signal::cems::{cems_status, CemsStatus};
use serde::{Deserialize, Serialize};

/// Detector name and version.
pub const NAME: &str = "unmonitored_emission/2";

/// Default timing: 30 min of grace (longer than a blip, shorter than an hour's validity).
pub const TIMING: Timing = Timing::minutes(30, 10, 60);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stats {
    silent: u32,
    stopped: u32,
    fault: u32,
    comm: u32,
    production_kw_sum: f64,
    production_fraction_sum: f64,
}

/// The figures of an episode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Figures {
    pub(crate) duration_min: f64,
    pub(crate) minutes_silent: u32,
    pub(crate) minutes_flag_stopped: u32,
    pub(crate) minutes_flag_fault: u32,
    pub(crate) minutes_flag_comm_error: u32,
    pub(crate) production_kw_mean: f64,
    pub(crate) production_fraction_of_normal: f64,
    /// The length an outage had to pass here (the outlet's own outage history at the configured rate).
    pub(crate) outage_bar_min: f64,
    /// For a month below the floor: valid minutes over minutes production ran.
    pub(crate) transmission_rate: Option<f64>,
    /// The floor the month fell below.
    pub(crate) transmission_floor: f64,
    /// Minutes production ran in the month.
    pub(crate) month_production_min: u32,
    /// Of those, minutes with a valid reading.
    pub(crate) month_valid_min: u32,
}

/// One Beijing month's transmission so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct MonthTally {
    start_ms: i64,
    production_min: u32,
    valid_min: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    runs: Runs<Stats>,
    outages: OutageLengths,
    month: Option<MonthTally>,
}

/// A month with less production than this is not judged by its rate (a plant that ran two days of it).
const MONTH_MIN_PRODUCTION_MIN: u32 = 3 * 1440;

/// The detector.
pub struct Unmonitored {
    false_alarms_per_day: f64,
    transmission_floor: f64,
    state: State,
}

impl Unmonitored {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            false_alarms_per_day: config.false_alarms_per_day,
            transmission_floor: config.transmission_floor,
            state: State::default(),
        })
    }

    /// The month's alarm when its rate fell below the floor.
    fn month_finding(&self, ctx: &OutletContext<'_>, m: &MonthTally) -> Option<Finding> {
        if m.production_min < MONTH_MIN_PRODUCTION_MIN {
            return None;
        }
        let rate = f64::from(m.valid_min) / f64::from(m.production_min);
        if rate >= self.transmission_floor {
            return None;
        }
        let end_ms = Month::of_ms(m.start_ms).next().start_ms();
        let missing = f64::from(m.production_min - m.valid_min);
        let figures = Figures {
            duration_min: missing,
            transmission_rate: Some(rate),
            transmission_floor: self.transmission_floor,
            month_production_min: m.production_min,
            month_valid_min: m.valid_min,
            ..Figures::default()
        };
        let mut source_ids = vec![ctx.topology.outlet.id.clone()];
        source_ids.extend(ctx.topology.production.iter().map(|m| m.id.clone()));
        Some(
            Span {
                key: format!("month:{}", m.start_ms),
                start_ms: m.start_ms,
                end_ms,
                detected_at_ms: end_ms,
                ongoing: false,
            }
            .finding(
                AnomalyKind::UnmonitoredEmission,
                NAME,
                saturating((self.transmission_floor - rate) / 0.2),
                source_ids,
                &figures,
            ),
        )
    }

    /// Counts the minute into its Beijing month, judging the month before when a new one begins.
    fn tally(
        &mut self,
        ctx: &OutletContext<'_>,
        now: i64,
        running: bool,
        valid: bool,
        out: &mut Vec<Finding>,
    ) {
        let start_ms = Month::of_ms(now).start_ms();
        if self
            .state
            .month
            .as_ref()
            .is_some_and(|m| m.start_ms != start_ms)
        {
            if let Some(done) = self.state.month.take() {
                out.extend(self.month_finding(ctx, &done));
            }
        }
        let m = self.state.month.get_or_insert(MonthTally {
            start_ms,
            ..MonthTally::default()
        });
        if running {
            m.production_min += 1;
            m.valid_min += u32::from(valid);
        }
    }

    fn finding(&self, ctx: &OutletContext<'_>, due: &Due<Stats>) -> Finding {
        let t = ctx.topology;
        let (run, s) = (&due.run, &due.run.stats);
        let n = f64::from(run.held.max(1));
        let minutes = run.duration_min();
        // A failing analyzer that says so is still reportable, but less damning than silence or a stop flag.
        let severity = if s.fault > s.silent + s.stopped + s.comm {
            0.7
        } else {
            1.0
        };
        let score = duration_score(minutes - f64::from(TIMING.grace_min), 120.0) * severity;
        let figures = Figures {
            duration_min: minutes,
            minutes_silent: s.silent,
            minutes_flag_stopped: s.stopped,
            minutes_flag_fault: s.fault,
            minutes_flag_comm_error: s.comm,
            production_kw_mean: s.production_kw_sum / n,
            production_fraction_of_normal: s.production_fraction_sum / n,
            outage_bar_min: self
                .state
                .outages
                .bar_min(run.start_ms, self.false_alarms_per_day),
            transmission_floor: self.transmission_floor,
            ..Figures::default()
        };
        let mut source_ids = vec![t.outlet.id.clone()];
        source_ids.extend(t.production.iter().map(|m| m.id.clone()));
        due.finding(
            AnomalyKind::UnmonitoredEmission,
            NAME,
            score,
            source_ids,
            &figures,
        )
    }
}

impl Detector for Unmonitored {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let p = minute.process;
        let now = minute.row.minute_ms;
        let status = cems_status(minute.row, &ctx.topology.monitored_codes());
        let silent_like = matches!(
            status,
            CemsStatus::Silent | CemsStatus::Stopped | CemsStatus::Fault | CemsStatus::CommError
        );
        self.state.outages.start(now);
        self.tally(ctx, now, p.running(), status == CemsStatus::Valid, out);
        let bar = self.state.outages.bar_min(now, self.false_alarms_per_day);
        let due = if p.running() && silent_like {
            self.state.runs.bad_when(
                "",
                now,
                TIMING,
                Stats::default,
                |s| {
                    match status {
                        CemsStatus::Silent => s.silent += 1,
                        CemsStatus::Stopped => s.stopped += 1,
                        CemsStatus::Fault => s.fault += 1,
                        _ => s.comm += 1,
                    }
                    s.production_kw_sum += p.production_kw;
                    s.production_fraction_sum += p.production_fraction().unwrap_or(0.0);
                },
                |run| run.duration_min() > bar,
            )
        } else if p.production_on == Some(false) || status == CemsStatus::Valid {
            let (due, ended) = self.state.runs.good_ended("", now, TIMING);
            if let Some(minutes) = ended {
                self.state.outages.record(minutes);
            }
            due
        } else {
            None
        };
        if let Some(due) = due {
            out.push(self.finding(ctx, &due));
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
    use crate::detect::testutil::{
        row, run_detector, summary_en, summary_zh, topology_with_limits, with_cems, T0,
    };
    use crate::domain::{ValueFlag, MS_PER_MINUTE};
    use crate::signal::align::OutletRow;

    fn topo() -> crate::domain::OutletTopology {
        topology_with_limits(&[("a21026", 35.0)])
    }

    fn minute(i: i64, production_kw: f64, cems: Option<ValueFlag>) -> OutletRow {
        let r = row(i, &[("p1", Some(production_kw)), ("t1", Some(150.0))]);
        match cems {
            None => r,
            Some(flag) => {
                let mut r = with_cems(r, &[("a21026", 20.0), ("a00000", 300.0)]);
                for v in r.cems.values_mut() {
                    v.flag = flag;
                }
                r
            }
        }
    }

    #[test]
    fn fires_on_silence_and_stop_flags_while_production_runs() {
        let t = topo();
        let out = run_detector(
            Unmonitored::boxed,
            &t,
            (0..800).map(|i| match i {
                100..220 => minute(i, 800.0, None),
                300..500 => minute(i, 800.0, Some(ValueFlag::Stopped)),
                _ => minute(i, 800.0, Some(ValueFlag::Normal)),
            }),
        );
        let closed: Vec<_> = out.iter().filter(|f| !f.ongoing).collect();
        assert_eq!(closed.len(), 2, "{out:#?}");
        assert_eq!(
            (closed[0].start_ms, closed[0].end_ms),
            (T0 + 100 * MS_PER_MINUTE, T0 + 220 * MS_PER_MINUTE)
        );
        assert_eq!(closed[0].evidence["minutes_silent"], 120.0);
        assert_eq!(closed[1].evidence["minutes_flag_stopped"], 200.0);
        let (en, zh) = (summary_en(closed[0]), summary_zh(closed[1]));
        assert!(en.contains("CEMS sent no data for 120 min"), "{en}");
        assert!(zh.contains("标记停运/故障/通讯异常"), "{zh}");
    }

    /// Ordinary outages of an hour a day, never re-sent, are the outlet's normal: none is raised. An outage of six
    /// hours is beyond what that history makes likely.
    #[test]
    fn outages_shorter_than_the_outlets_own_bar_are_not_raised_a_long_one_is() {
        let t = topo();
        let long = 20 * 1440 + 600..20 * 1440 + 960;
        let out = run_detector(
            Unmonitored::boxed,
            &t,
            (0..22 * 1440).map(|i| {
                if (600..660).contains(&(i % 1440)) || long.contains(&i) {
                    minute(i, 800.0, None)
                } else {
                    minute(i, 800.0, Some(ValueFlag::Normal))
                }
            }),
        );
        let closed: Vec<_> = out.iter().filter(|f| !f.ongoing).collect();
        assert_eq!(closed.len(), 1, "{out:#?}");
        assert_eq!(closed[0].start_ms, T0 + long.start * MS_PER_MINUTE);
        let bar = closed[0].evidence["outage_bar_min"];
        assert!((60.0..360.0).contains(&bar), "{bar}");
    }

    /// 32 days from T0 with the CEMS silent for `gap` minutes of every day, production running throughout.
    fn daily_gaps(gap: std::ops::Range<i64>) -> Vec<Finding> {
        run_detector(
            Unmonitored::boxed,
            &topo(),
            (0..32 * 1440).map(|i| {
                if gap.contains(&(i % 1440)) {
                    minute(i, 800.0, None)
                } else {
                    minute(i, 800.0, Some(ValueFlag::Normal))
                }
            }),
        )
    }

    /// Three hours a day without data, an eighth of the month: a transmission rate under the 90 % floor is one alarm
    /// for the month, whatever its outages' lengths; two hours a day (92 %) is above the floor.
    #[test]
    fn a_month_under_the_transmission_floor_is_one_alarm() {
        let out = daily_gaps(600..780);
        let months: Vec<_> = out.iter().filter(|f| f.key.starts_with("month:")).collect();
        assert_eq!(months.len(), 1, "{months:#?}");
        let rate = months[0].evidence["transmission_rate"];
        assert!((rate - 0.875).abs() < 0.01, "{rate}");
        assert!(summary_en(months[0]).contains("below the 90% floor"));
        let fine = daily_gaps(600..720);
        assert!(fine.iter().all(|f| !f.key.starts_with("month:")));
    }

    #[test]
    fn analyzer_fault_is_reported_with_lower_score() {
        let t = topo();
        let run = |flag| {
            run_detector(
                Unmonitored::boxed,
                &t,
                (0..300).map(|i| {
                    minute(
                        i,
                        800.0,
                        if (60..240).contains(&i) {
                            flag
                        } else {
                            Some(ValueFlag::Normal)
                        },
                    )
                }),
            )
        };
        let fault = run(Some(ValueFlag::Fault));
        let silent = run(None);
        let (f, s) = (fault.last().unwrap(), silent.last().unwrap());
        assert!(f.score < s.score, "{} vs {}", f.score, s.score);
    }

    #[test]
    fn quiet_when_plant_is_stopped_or_gaps_are_short_or_cems_is_in_maintenance() {
        let t = topo();
        let out = run_detector(
            Unmonitored::boxed,
            &t,
            (0..600).map(|i| match i {
                100..300 => minute(i, 0.0, Some(ValueFlag::Stopped)), // plant stopped, CEMS says so
                350..370 => minute(i, 800.0, None),                   // 20-minute gap
                400..500 => minute(i, 800.0, Some(ValueFlag::Maintenance)),
                _ => minute(i, 800.0, Some(ValueFlag::Normal)),
            }),
        );
        assert!(out.is_empty(), "{out:#?}");
    }
}

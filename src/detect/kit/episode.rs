//! The one shape of an episode: a condition judged once per period (a minute, an hour, a day) that must hold for a
//! grace period before it is raised, is extended while it holds (with periodic updates), survives short
//! interruptions, and closes once it has been clear for a while. Every detector's episodes go through this one
//! implementation, so minute-level and hourly detectors open, bridge, close and report alike.

use super::figures::Figures;
use super::null::RunLengths;
use crate::detect::Finding;
use crate::domain::{AnomalyKind, Evidence, MS_PER_MINUTE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Timing of episodes, in minutes of data time.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Timing {
    /// How long the condition must hold before it is raised.
    pub grace_min: u32,
    /// How long it must be clear before the episode closes (shorter gaps are bridged).
    pub close_after_min: u32,
    /// Data minutes between updates of an ongoing episode.
    pub update_every_min: u32,
    /// The period the condition is judged over (1 for a minute-level detector, 60 for an hourly one): an episode
    /// ends one period after the last period it held in.
    #[serde(default = "one_minute")]
    pub period_min: u32,
}

fn one_minute() -> u32 {
    1
}

impl Timing {
    /// A minute-level timing.
    pub const fn minutes(grace_min: u32, close_after_min: u32, update_every_min: u32) -> Self {
        Self {
            grace_min,
            close_after_min,
            update_every_min,
            period_min: 1,
        }
    }

    /// An hourly timing: raised at the first hour the condition holds in, updated every hour it goes on, closed at
    /// the first hour it is judged clear in. Hours in which it is not judged neither extend nor close it.
    pub const HOURLY: Self = Self {
        grace_min: 0,
        close_after_min: 0,
        update_every_min: 60,
        period_min: 60,
    };

    /// The period in ms.
    pub fn period_ms(&self) -> i64 {
        i64::from(self.period_min.max(1)) * MS_PER_MINUTE
    }
}

/// One run of a condition, with the detector's own accumulator `S`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run<S> {
    /// First minute the condition held.
    pub start_ms: i64,
    /// Last minute it held.
    pub last_bad_ms: i64,
    /// When it was raised (data time), if it has been.
    pub raised_at_ms: Option<i64>,
    last_update_ms: i64,
    /// Periods the condition held in (minutes for a minute-level detector, hours for an hourly one).
    pub held: u32,
    /// The period the condition is judged over.
    #[serde(default = "minute_ms")]
    pub period_ms: i64,
    /// Detector-specific sums.
    pub stats: S,
}

fn minute_ms() -> i64 {
    MS_PER_MINUTE
}

impl<S> Run<S> {
    /// End (exclusive) of the episode so far: one period after the last period it held in.
    pub fn end_ms(&self) -> i64 {
        self.last_bad_ms + self.period_ms
    }

    /// Length so far in minutes.
    pub fn duration_min(&self) -> f64 {
        ((self.end_ms() - self.start_ms) / MS_PER_MINUTE) as f64
    }
}

/// A finding is due for this run.
#[derive(Debug, Clone)]
pub struct Due<S> {
    /// The run's key.
    pub key: String,
    /// The run as it stands.
    pub run: Run<S>,
    /// Still open.
    pub ongoing: bool,
}

impl<S> Due<S> {
    /// The finding for this run: key, times and state from the run, the judgement (kind, score, the sources it
    /// rests on, the figures) from the detector.
    pub fn finding<F: Figures>(
        &self,
        kind: AnomalyKind,
        detector: &'static str,
        score: f64,
        source_ids: Vec<String>,
        figures: &F,
    ) -> Finding {
        Span {
            key: self.key.clone(),
            start_ms: self.run.start_ms,
            end_ms: self.run.end_ms(),
            detected_at_ms: self.run.raised_at_ms.unwrap_or(self.run.end_ms()),
            ongoing: self.ongoing,
        }
        .finding(kind, detector, score, source_ids, figures)
    }
}

/// Where and when an episode lies, for the detectors whose episodes are back-dated to the evidence that raised them
/// (a window of hours, a month's density, a year's projection) and so keep their own bookkeeping; every finding,
/// [`Runs`]' included, is built here.
#[derive(Debug, Clone)]
pub struct Span {
    /// Distinguishes parallel episodes of one kind at one outlet.
    pub key: String,
    /// Episode start (data time, ms).
    pub start_ms: i64,
    /// Episode end so far (exclusive).
    pub end_ms: i64,
    /// Data time at which the episode was raised.
    pub detected_at_ms: i64,
    /// Still open.
    pub ongoing: bool,
}

impl Span {
    /// The finding of this span with the detector's judgement.
    pub fn finding<F: Figures>(
        self,
        kind: AnomalyKind,
        detector: &'static str,
        score: f64,
        source_ids: Vec<String>,
        figures: &F,
    ) -> Finding {
        Finding {
            kind,
            key: self.key,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            detected_at_ms: self.detected_at_ms,
            score,
            source_ids,
            evidence: Evidence::of(figures),
            ongoing: self.ongoing,
            detector,
        }
    }
}

/// Runs by key (e.g. per treatment meter, per pollutant code).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Runs<S> {
    runs: BTreeMap<String, Run<S>>,
}

impl<S> Default for Runs<S> {
    fn default() -> Self {
        Self {
            runs: BTreeMap::new(),
        }
    }
}

impl<S: Clone> Runs<S> {
    /// The condition holds for `key` in the minute starting at `now`. `init` makes the accumulator of a new run,
    /// `add` adds this minute to it. Returns a finding to emit when the run is raised or due for an update.
    pub fn bad(
        &mut self,
        key: &str,
        now: i64,
        timing: Timing,
        init: impl FnOnce() -> S,
        add: impl FnOnce(&mut S),
    ) -> Option<Due<S>> {
        self.bad_when(key, now, timing, init, add, |_| true)
    }

    /// As [`Runs::bad`], but the run is raised only once `ready` also says the evidence suffices (e.g. enough
    /// minutes of a particular kind), not merely once the grace period has passed.
    pub fn bad_when(
        &mut self,
        key: &str,
        now: i64,
        timing: Timing,
        init: impl FnOnce() -> S,
        add: impl FnOnce(&mut S),
        ready: impl FnOnce(&Run<S>) -> bool,
    ) -> Option<Due<S>> {
        let run = self.runs.entry(key.to_string()).or_insert_with(|| Run {
            start_ms: now,
            last_bad_ms: now,
            raised_at_ms: None,
            last_update_ms: now,
            held: 0,
            period_ms: timing.period_ms(),
            stats: init(),
        });
        run.last_bad_ms = now;
        run.held += 1;
        add(&mut run.stats);
        let end = run.end_ms();
        let grace_ms = i64::from(timing.grace_min) * MS_PER_MINUTE;
        let update_ms = i64::from(timing.update_every_min) * MS_PER_MINUTE;
        let due = match run.raised_at_ms {
            None if end - run.start_ms >= grace_ms && ready(run) => {
                run.raised_at_ms = Some(end);
                true
            }
            Some(_) => end - run.last_update_ms >= update_ms,
            None => false,
        };
        if due {
            run.last_update_ms = end;
            return Some(Due {
                key: key.to_string(),
                run: run.clone(),
                ongoing: true,
            });
        }
        None
    }

    /// The condition is known not to hold for `key` at `now`. A run that was never raised is dropped (it was within
    /// the grace period); a raised run closes once it has been clear for `close_after_min`.
    pub fn good(&mut self, key: &str, now: i64, timing: Timing) -> Option<Due<S>> {
        let run = self.runs.get(key)?;
        if run.raised_at_ms.is_none() {
            self.runs.remove(key);
            return None;
        }
        let close_ms = i64::from(timing.close_after_min) * MS_PER_MINUTE;
        if now + run.period_ms - run.end_ms() >= close_ms {
            let run = self.runs.remove(key)?;
            return Some(Due {
                key: key.to_string(),
                run,
                ongoing: false,
            });
        }
        None
    }

    /// As [`Runs::bad`], but raised only once the run also outlasts what the outlet's own history of this
    /// condition ([`RunLengths`]) makes likely at `false_alarms_per_day`.
    #[allow(clippy::too_many_arguments)]
    pub fn bad_beyond_own(
        &mut self,
        key: &str,
        now: i64,
        timing: Timing,
        lengths: &RunLengths,
        false_alarms_per_day: f64,
        init: impl FnOnce() -> S,
        add: impl FnOnce(&mut S),
    ) -> Option<Due<S>> {
        let bar = lengths.bar_min(key, now, false_alarms_per_day);
        self.bad_when(key, now, timing, init, add, |run| {
            bar.is_none_or(|b| run.duration_min() > b)
        })
    }

    /// As [`Runs::good`], and every run that ends (dropped unraised, or closed) joins `lengths`: the outlet's own
    /// history of how long the condition lasts, which sets the bar of [`RunLengths::bar_min`].
    pub fn good_recorded(
        &mut self,
        key: &str,
        now: i64,
        timing: Timing,
        lengths: &mut RunLengths,
    ) -> Option<Due<S>> {
        let (due, ended) = self.good_ended(key, now, timing);
        if let Some(minutes) = ended {
            lengths.record(key, now, minutes);
        }
        due
    }

    /// As [`Runs::good`], with the length (minutes) of the run if it ended here: dropped unraised, or closed.
    pub fn good_ended(
        &mut self,
        key: &str,
        now: i64,
        timing: Timing,
    ) -> (Option<Due<S>>, Option<f64>) {
        let unraised = self
            .runs
            .get(key)
            .filter(|r| r.raised_at_ms.is_none())
            .map(Run::duration_min);
        let due = self.good(key, now, timing);
        let closed = due
            .as_ref()
            .filter(|d| !d.ongoing)
            .map(|d| d.run.duration_min());
        (due, unraised.or(closed))
    }

    /// The open run of `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Run<S>> {
        self.runs.get(key)
    }

    /// End of data: every raised run closes where it last held; unraised runs are dropped.
    pub fn finish(&mut self) -> Vec<Due<S>> {
        std::mem::take(&mut self.runs)
            .into_iter()
            .filter(|(_, r)| r.raised_at_ms.is_some())
            .map(|(key, run)| Due {
                key,
                run,
                ongoing: false,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = MS_PER_MINUTE;
    const T: Timing = Timing::minutes(3, 2, 5);

    #[test]
    fn raise_after_grace_bridge_short_gaps_close_after_clear() {
        let mut runs: Runs<u32> = Runs::default();
        let mut events = Vec::new();
        // bad 0..10, clear at 10, bad 11..13 (bridged), clear from 13.
        for i in 0..20 {
            let bad = (0..10).contains(&i) || (11..13).contains(&i);
            let due = if bad {
                runs.bad("k", i * M, T, || 0, |s| *s += 1)
            } else {
                runs.good("k", i * M, T)
            };
            if let Some(d) = due {
                events.push((
                    i,
                    d.ongoing,
                    d.run.start_ms / M,
                    d.run.end_ms() / M,
                    d.run.stats,
                ));
            }
        }
        assert_eq!(
            events,
            vec![
                (2, true, 0, 3, 3),
                (7, true, 0, 8, 8),
                (12, true, 0, 13, 12),
                (14, false, 0, 13, 12)
            ]
        );
    }

    #[test]
    fn hourly_episodes_raise_at_the_first_hour_update_hourly_and_close_at_the_first_clear_hour() {
        const H: i64 = 60 * M;
        let mut runs: Runs<u32> = Runs::default();
        let mut events = Vec::new();
        // Over the limit in hours 0..3, hour 3 not judged (nothing called), clear in hour 4.
        for h in 0..3 {
            if let Some(d) = runs.bad("so2", h * H, Timing::HOURLY, || 0, |s| *s += 1) {
                events.push((
                    h,
                    d.ongoing,
                    d.run.start_ms / H,
                    d.run.end_ms() / H,
                    d.run.held,
                ));
            }
        }
        let closed = runs.good("so2", 4 * H, Timing::HOURLY).expect("closes");
        events.push((
            4,
            closed.ongoing,
            closed.run.start_ms / H,
            closed.run.end_ms() / H,
            closed.run.held,
        ));
        assert_eq!(
            events,
            vec![
                (0, true, 0, 1, 1),
                (1, true, 0, 2, 2),
                (2, true, 0, 3, 3),
                (4, false, 0, 3, 3)
            ]
        );
        assert_eq!(closed.run.raised_at_ms, Some(H));
    }

    #[test]
    fn short_runs_vanish_and_finish_closes_raised_ones() {
        let mut runs: Runs<()> = Runs::default();
        runs.bad("a", 0, T, || (), |_| {});
        assert!(runs.good("a", M, T).is_none());
        assert!(runs.get("a").is_none());
        for i in 0..4 {
            runs.bad("b", i * M, T, || (), |_| {});
        }
        let done = runs.finish();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].run.end_ms(), 4 * M);
    }

    #[test]
    fn a_run_must_outlast_the_outlets_own_runs_once_they_are_known() {
        let mut runs: Runs<()> = Runs::default();
        let mut lengths = RunLengths::default();
        // 60 honest runs of 40–62 minutes, four a day (the first ones raised and closed, the later ones dropped).
        let mut t = 0;
        for i in 0..60 {
            let len = 40 + (i * 7) % 23;
            for m in 0..len {
                runs.bad_beyond_own("k", (t + m) * M, T, &lengths, 0.01, || (), |_| {});
            }
            t += len;
            runs.good_recorded("k", t * M, T, &mut lengths);
            runs.good_recorded("k", (t + 5) * M, T, &mut lengths);
            t += 300;
        }
        let bar = lengths.bar_min("k", t * M, 0.01).expect("known");
        assert!(bar > 60.0, "{bar}");
        // A 30-minute run is ordinary here: never raised.
        let raised = (0..30).any(|m| {
            runs.bad_beyond_own("k", (t + m) * M, T, &lengths, 0.01, || (), |_| {})
                .is_some()
        });
        assert!(!raised);
        runs.good_recorded("k", (t + 30) * M, T, &mut lengths);
        t += 400;
        // A run far longer than any of its own is raised.
        let raised_at = (0..400).find(|m| {
            runs.bad_beyond_own("k", (t + m) * M, T, &lengths, 0.01, || (), |_| {})
                .is_some()
        });
        assert!(
            raised_at.is_some_and(|m| m as f64 > bar - 1.0),
            "{raised_at:?} vs {bar}"
        );
    }
}

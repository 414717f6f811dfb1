//! The empirical null of a test statistic on the outlet's own history, for detectors whose textbook distribution
//! does not hold on real data (autocorrelated noise, analyzers quieter at night, plants with habits of their own).
//!
//! The detector feeds the statistic of every test it judged honest; the threshold for a per-test false-alarm
//! probability `α` is read off that history: the empirical quantile where the history is long enough, and beyond it
//! a peaks-over-threshold tail (exceedances of the 90th percentile fitted by an exponential, the generalized Pareto
//! with shape 0), so a 10⁻⁴ budget can be honoured from a few weeks of hourly tests. `α` comes from the configured
//! false alarms per enterprise-day divided over the tests a day holds (multiplicity).

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Share of the history above the tail's threshold.
const TAIL_SHARE: f64 = 0.1;

/// A bounded history of a statistic under the outlet's own honest operation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EmpiricalNull {
    history: VecDeque<f64>,
}

impl EmpiricalNull {
    /// Records the statistic of a test judged honest, keeping the newest `capacity`.
    pub fn observe(&mut self, statistic: f64, capacity: usize) {
        if !statistic.is_finite() {
            return;
        }
        super::push_bounded(&mut self.history, statistic, capacity);
    }

    /// Tests recorded.
    pub fn len(&self) -> usize {
        self.history.len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.history.is_empty()
    }

    /// The value an honest test exceeds with probability `alpha`, or `None` before `min_samples` tests.
    pub fn threshold(&self, alpha: f64, min_samples: usize) -> Option<f64> {
        if self.history.len() < min_samples.max(20) {
            return None;
        }
        let mut v: Vec<f64> = self.history.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let quantile = |p: f64| v[((n - 1) as f64 * p).round() as usize];
        if alpha >= TAIL_SHARE {
            return Some(quantile(1.0 - alpha));
        }
        let u = quantile(1.0 - TAIL_SHARE);
        let excess: Vec<f64> = v.iter().filter(|x| **x > u).map(|x| x - u).collect();
        let beta = excess.iter().sum::<f64>() / excess.len().max(1) as f64;
        let extrapolated = u + beta.max(1e-12) * (TAIL_SHARE / alpha.max(1e-300)).ln();
        // Asked for a quantile beyond the history (α < 1/n): never below the largest honest value seen. Hourly
        // statistics are autocorrelated, and a fitted tail can fall short of what the outlet has already done.
        Some(if alpha * (n as f64) < 1.0 {
            extrapolated.max(v[n - 1])
        } else {
            extrapolated
        })
    }
}

/// The null of a test judged once an hour: four weeks of statistics kept, consulted once three days are known, the
/// budget divided over the 24 tests of a day. An hour joins the null only a day after it was judged, so a stretch
/// of fabrication is judged against the days before it, never against itself (a few bad hours in three days of
/// history would otherwise fill the tail they are read against).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HourlyNull {
    statistics: EmpiricalNull,
    /// The last day's statistics, not yet part of the null.
    pending: VecDeque<f64>,
}

/// Hourly statistics kept (four weeks).
const HOURS_KEPT: usize = 24 * 28;
/// Hourly statistics needed in the null before it is consulted (two days: with the day pending, three days judged).
const HOURS_NEEDED: usize = 48;
/// Hours a statistic waits before it joins the null.
const HOURS_DELAY: usize = 24;

impl HourlyNull {
    /// Records this hour's statistic (every judged hour: an outlet's habits are learned whatever a textbook test said
    /// of them, and a stretch of fabrication is a few hours in four weeks: it sits in the tail, it does not move it).
    pub fn observe(&mut self, statistic: f64) {
        if !statistic.is_finite() {
            return;
        }
        self.pending.push_back(statistic);
        while self.pending.len() > HOURS_DELAY {
            if let Some(old) = self.pending.pop_front() {
                self.statistics.observe(old, HOURS_KEPT);
            }
        }
    }

    /// The statistic an honest hour exceeds at `false_alarms_per_day`, or `None` before three days are known.
    pub fn threshold(&self, false_alarms_per_day: f64) -> Option<f64> {
        self.statistics
            .threshold(false_alarms_per_day / 24.0, HOURS_NEEDED)
    }
}

/// Lengths of a condition's runs per key (a channel), for detectors whose evidence is a duration: how long honest
/// runs of the condition last at this outlet sets how long a run must last to be raised.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunLengths {
    by_key: std::collections::BTreeMap<String, KeyRuns>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct KeyRuns {
    minutes: EmpiricalNull,
    first_ms: Option<i64>,
    runs: u64,
}

/// Run lengths remembered per key.
const RUNS_CAPACITY: usize = 500;
/// Runs needed before the history is consulted.
const RUNS_MIN: usize = 50;

impl RunLengths {
    /// A run of `key` ended at `now_ms` after `minutes`.
    pub fn record(&mut self, key: &str, now_ms: i64, minutes: f64) {
        let k = self.by_key.entry(key.to_string()).or_default();
        k.first_ms.get_or_insert(now_ms);
        k.runs += 1;
        k.minutes.observe(minutes, RUNS_CAPACITY);
    }

    /// The length (minutes) a run of `key` must pass to be raised at `false_alarms_per_day` on this outlet's own
    /// history: the budget is divided over the runs a day holds. `None` until 50 runs were seen.
    pub fn bar_min(&self, key: &str, now_ms: i64, false_alarms_per_day: f64) -> Option<f64> {
        let k = self.by_key.get(key)?;
        let days = ((now_ms - k.first_ms?) as f64 / 86_400_000.0).max(1.0);
        let runs_per_day = (k.runs as f64 / days).max(1.0);
        k.minutes
            .threshold(false_alarms_per_day / runs_per_day, RUNS_MIN)
    }
}

/// How long an outlet's outages last and how often they come, for judging one outage: lengths are taken as
/// exponential (the memoryless tail of links that drop and come back), with a prior of a 30-minute mean and one
/// outage in 20 days worth five outages, so a new outlet has a bar and its own history takes over as it accrues.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OutageLengths {
    first_ms: Option<i64>,
    outages: f64,
    total_min: f64,
}

/// Outages the prior is worth.
const PRIOR_OUTAGES: f64 = 5.0;
/// Prior mean length (minutes).
const PRIOR_MEAN_MIN: f64 = 30.0;
/// Prior frequency (outages per day).
const PRIOR_PER_DAY: f64 = 0.05;

impl OutageLengths {
    /// Notes the outlet's first data (the history's clock starts there).
    pub fn start(&mut self, now_ms: i64) {
        self.first_ms.get_or_insert(now_ms);
    }

    /// An outage of `minutes` ended.
    pub fn record(&mut self, minutes: f64) {
        self.outages += 1.0;
        self.total_min += minutes.max(0.0);
    }

    /// The length (minutes) an outage passes at `false_alarms_per_day` on this history: with outages coming at rate
    /// `r` a day and lasting `m` minutes on average, an honest one outlasts `m · ln(r / f)` at `f` a day.
    pub fn bar_min(&self, now_ms: i64, false_alarms_per_day: f64) -> f64 {
        let days = self
            .first_ms
            .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 86_400_000.0);
        let per_day = (self.outages + PRIOR_OUTAGES) / (days + PRIOR_OUTAGES / PRIOR_PER_DAY);
        let mean =
            (self.total_min + PRIOR_OUTAGES * PRIOR_MEAN_MIN) / (self.outages + PRIOR_OUTAGES);
        mean * (per_day / false_alarms_per_day.max(1e-9)).max(1.0).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn an_outage_bar_starts_from_the_prior_and_follows_the_outlets_own_outages() {
        let day = 86_400_000;
        let mut o = OutageLengths::default();
        o.start(0);
        let fresh = o.bar_min(0, 0.002);
        assert!((90.0..110.0).contains(&fresh), "{fresh}");
        // Forty days with an honest hour-long outage every other day: the bar rises above such outages.
        for _ in 0..20 {
            o.record(60.0);
        }
        let bar = o.bar_min(40 * day, 0.002);
        assert!(bar > 3.0 * 60.0, "{bar}");
        // A stricter rate asks for longer.
        assert!(o.bar_min(40 * day, 0.0002) > bar);
    }

    #[test]
    fn run_lengths_set_a_bar_from_how_long_honest_runs_last() {
        let mut r = RunLengths::default();
        assert!(r.bar_min("a", 0, 0.01).is_none());
        // 100 runs a day of 1–3 minutes, and every tenth a hold of 70–90 minutes.
        for i in 0..500i64 {
            let minutes = if i % 10 == 0 {
                70.0 + (i % 21) as f64
            } else {
                1.0 + (i % 3) as f64
            };
            r.record("a", i * 864_000, minutes);
        }
        let bar = r.bar_min("a", 500 * 864_000, 0.01).unwrap();
        assert!(bar > 91.0, "{bar}");
        assert!(r.bar_min("b", 0, 0.01).is_none());
    }

    #[test]
    fn the_tail_of_exponential_data_is_extrapolated_to_its_true_quantile() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
        let mut null = EmpiricalNull::default();
        for _ in 0..2000 {
            null.observe(-rng.gen::<f64>().ln(), 2000);
        }
        // P(X > t) = e^-t for a unit exponential: t = ln(1/α).
        for alpha in [1e-2, 1e-4, 1e-6] {
            let t = null.threshold(alpha, 100).unwrap();
            let truth = (1.0 / alpha).ln();
            assert!(
                (t - truth).abs() / truth < 0.12,
                "α {alpha}: {t} vs {truth}"
            );
        }
    }

    #[test]
    fn a_heavier_honest_tail_raises_the_threshold_and_short_histories_give_none() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(2);
        let (mut light, mut heavy) = (EmpiricalNull::default(), EmpiricalNull::default());
        assert!(light.threshold(1e-3, 50).is_none());
        for _ in 0..1000 {
            let e = -rng.gen::<f64>().ln();
            light.observe(e, 1000);
            heavy.observe(3.0 * e, 1000);
        }
        assert!(heavy.threshold(1e-4, 50).unwrap() > 2.5 * light.threshold(1e-4, 50).unwrap());
        // Non-finite statistics are ignored; memory is bounded to the newest.
        light.observe(f64::NAN, 1000);
        assert_eq!(light.len(), 1000);
        light.observe(1.0, 10);
        assert_eq!(light.len(), 10);
    }

    #[test]
    fn an_hour_joins_the_hourly_null_a_day_after_it_was_judged() {
        let mut null = HourlyNull::default();
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(3);
        for _ in 0..(47 + 24) {
            null.observe(-rng.gen::<f64>().ln());
        }
        assert!(
            null.threshold(0.01).is_none(),
            "consulted before three days"
        );
        null.observe(-rng.gen::<f64>().ln());
        let before = null.threshold(0.01).unwrap();
        // Six fabricated hours far in the tail: judged against the honest days, not against themselves.
        for _ in 0..6 {
            null.observe(50.0);
            assert!(null.threshold(0.01).unwrap() < 1.5 * before);
        }
        // A day later they are history, and an outlet that really does this every day is judged by it.
        for _ in 0..24 {
            null.observe(-rng.gen::<f64>().ln());
        }
        assert!(null.threshold(0.01).unwrap() > before);
    }
}

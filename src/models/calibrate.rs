//! Thresholds from the empirical null. A model flags a window when the mean standardized residual over it is
//! extreme. How extreme is "extreme" is set from the outlet's own clean history, not from a textbook: residuals of real
//! plants are autocorrelated, so the spread of a window mean is measured on the training data (it is far wider than
//! 1/√W), and the threshold is that spread times the normal quantile that leaves the configured false-alarm budget per
//! enterprise-day, divided over every test the outlet runs (Bonferroni) and every window of a day.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};
use std::collections::VecDeque;

/// Least mean departure from a model (target units: a fraction of normal flow or power, or of the limit) worth an
/// officer's time, however significant: the model residual detector's effect size and the drift test's.
pub const MIN_EFFECT: f64 = 0.10;

/// How a model's window statistic is turned into alarms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Minutes in the rolling window.
    pub window_min: u32,
    /// Least valid minutes in a window for it to count.
    pub min_valid_min: u32,
    /// Configured false alarms per enterprise-day the thresholds are set for (over all of an outlet's tests).
    pub false_alarms_per_day: f64,
}

impl Default for Calibration {
    fn default() -> Self {
        Self {
            window_min: 60,
            min_valid_min: 45,
            false_alarms_per_day: 0.01,
        }
    }
}

impl Calibration {
    /// Independent windows in a day.
    pub fn windows_per_day(&self) -> f64 {
        1440.0 / f64::from(self.window_min.max(1))
    }

    /// The z quantile for a two-sided (or one-sided) test among `tests` tests.
    pub fn quantile(&self, tests: usize, two_sided: bool) -> f64 {
        let sides = if two_sided { 2.0 } else { 1.0 };
        let alpha =
            self.false_alarms_per_day / (sides * tests.max(1) as f64 * self.windows_per_day());
        let alpha = alpha.clamp(1e-12, 0.5);
        Normal::standard().inverse_cdf(1.0 - alpha)
    }
}

/// Rolling mean over the last `window` samples (minutes without a sample count as gaps: the window is by time).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WindowMean {
    samples: VecDeque<(i64, f64)>,
    sum: f64,
}

impl WindowMean {
    /// Adds a sample at `t_ms` and drops those older than `window_ms`.
    pub fn push(&mut self, t_ms: i64, v: f64, window_ms: i64) {
        self.samples.push_back((t_ms, v));
        self.sum += v;
        self.expire(t_ms, window_ms);
    }

    /// Drops samples older than `window_ms` before `now_ms`.
    pub fn expire(&mut self, now_ms: i64, window_ms: i64) {
        while let Some(&(t, v)) = self.samples.front() {
            if t > now_ms - window_ms {
                break;
            }
            self.samples.pop_front();
            self.sum -= v;
        }
        if self.samples.is_empty() {
            self.sum = 0.0;
        }
    }

    /// The samples `(time, value)`, oldest first.
    pub fn samples(&self) -> impl DoubleEndedIterator<Item = &(i64, f64)> {
        self.samples.iter()
    }

    /// Samples in the window.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Mean of the window.
    pub fn mean(&self) -> Option<f64> {
        (!self.samples.is_empty()).then(|| self.sum / self.samples.len() as f64)
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.samples.clear();
        self.sum = 0.0;
    }
}

/// The spread (standard deviation around zero) of the window means of a standardized series on clean history:
/// `series` is time-ordered `(minute_ms, z)`. `None` when fewer than ten full windows were seen.
pub fn window_mean_sd(series: &[(i64, f64)], cal: &Calibration) -> Option<f64> {
    let window_ms = i64::from(cal.window_min) * 60_000;
    let mut w = WindowMean::default();
    let (mut sum_sq, mut n) = (0.0, 0usize);
    let mut last_counted: Option<i64> = None;
    for &(t, z) in series {
        w.push(t, z, window_ms);
        // Count each window once per quarter window: close enough to every window, a quarter of the work.
        let due = last_counted.is_none_or(|l| t - l >= window_ms / 4);
        if w.len() >= cal.min_valid_min as usize && due {
            let m = w.mean().unwrap_or(0.0);
            sum_sq += m * m;
            n += 1;
            last_counted = Some(t);
        }
    }
    (n >= 40).then(|| (sum_sq / n as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn quantile_grows_with_tests_and_tighter_budgets() {
        let c = Calibration::default();
        assert!(c.quantile(4, true) > c.quantile(1, true));
        let strict = Calibration {
            false_alarms_per_day: 0.001,
            ..c
        };
        assert!(strict.quantile(1, true) > c.quantile(1, true));
        // 0.01/day, 24 windows, two-sided: alpha ≈ 2.1e-4 → z ≈ 3.5.
        assert!(
            (c.quantile(1, true) - 3.53).abs() < 0.05,
            "{}",
            c.quantile(1, true)
        );
    }

    #[test]
    fn window_sd_sees_autocorrelation() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(3);
        let cal = Calibration::default();
        let white: Vec<(i64, f64)> = (0..20_000)
            .map(|i| (i * 60_000, rng.gen::<f64>() * 3.4641 - 1.7320))
            .collect();
        let mut ar = 0.0;
        let red: Vec<(i64, f64)> = (0..20_000)
            .map(|i| {
                ar = 0.95 * ar + 0.3122 * (rng.gen::<f64>() * 3.4641 - 1.7320);
                (i * 60_000, ar)
            })
            .collect();
        let sd_white = window_mean_sd(&white, &cal).unwrap();
        let sd_red = window_mean_sd(&red, &cal).unwrap();
        // White noise: 1/√60 ≈ 0.13. AR(0.95) with unit variance: ≈ √(39/60) ≈ 0.8.
        assert!((sd_white - 0.129).abs() < 0.03, "{sd_white}");
        assert!(sd_red > 4.0 * sd_white, "{sd_red} vs {sd_white}");
    }
}

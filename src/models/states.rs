//! Equipment states of a meter by clustering its power readings (`linfa-clustering` k-means): a scrubber's pumps
//! draw a few distinct levels (off, one pump, all pumps). The learned levels let a model tell "running at a lower
//! stage" from "off" without a hand-set threshold per plant.

use linfa::prelude::*;
use linfa_clustering::KMeans;
use ndarray::Array2;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// Most readings clustered (an even subsample beyond): levels of one meter need no more.
const MAX_SAMPLES: usize = 2_000;

/// Learned power levels of one meter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterStates {
    /// Meter id.
    pub meter_id: String,
    /// Cluster centres (kW), ascending.
    pub levels_kw: Vec<f64>,
    /// Share of readings nearest each level.
    pub shares: Vec<f64>,
}

impl MeterStates {
    /// Index of the level nearest `kw` (0 = lowest).
    pub fn state_of(&self, kw: f64) -> usize {
        self.levels_kw
            .iter()
            .enumerate()
            .min_by(|a, b| (a.1 - kw).abs().total_cmp(&(b.1 - kw).abs()))
            .map_or(0, |(i, _)| i)
    }

    /// Whether `kw` sits at a level that is effectively off (the lowest level, when it is below a fifth of the top).
    pub fn is_off(&self, kw: f64) -> bool {
        let (Some(lo), Some(hi)) = (self.levels_kw.first(), self.levels_kw.last()) else {
            return false;
        };
        self.levels_kw.len() > 1 && *lo < 0.2 * hi && self.state_of(kw) == 0
    }
}

/// Clusters a meter's readings into two or three levels: three when the third cuts the within-cluster spread by
/// more than half again. `None` with fewer than 100 readings.
pub fn fit(meter_id: &str, readings_kw: &[f64]) -> Option<MeterStates> {
    let finite: Vec<f64> = readings_kw
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if finite.len() < 100 {
        return None;
    }
    let step = finite.len().div_ceil(MAX_SAMPLES);
    let sample: Vec<f64> = finite.iter().step_by(step).copied().collect();
    let x = Array2::from_shape_vec((sample.len(), 1), sample.clone()).ok()?;
    let ds = DatasetBase::from(x);
    let run = |k: usize| {
        let rng = rand_xoshiro::Xoshiro256Plus::seed_from_u64(7);
        KMeans::params_with_rng(k, rng)
            .n_runs(3)
            .max_n_iterations(100)
            .tolerance(1e-6)
            .fit(&ds)
            .ok()
    };
    let two = run(2)?;
    let chosen = match run(3) {
        Some(three) if three.inertia() < 0.5 * two.inertia() => three,
        _ => two,
    };
    let mut levels: Vec<f64> = chosen.centroids().column(0).to_vec();
    levels.sort_by(f64::total_cmp);
    levels.dedup_by(|a, b| (*a - *b).abs() < 1e-6);
    let mut counts = vec![0usize; levels.len()];
    let states = MeterStates {
        meter_id: meter_id.to_string(),
        levels_kw: levels,
        shares: Vec::new(),
    };
    for v in &sample {
        counts[states.state_of(*v)] += 1;
    }
    let shares = counts
        .iter()
        .map(|c| *c as f64 / sample.len() as f64)
        .collect();
    Some(MeterStates { shares, ..states })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_off_one_pump_and_all_pumps() {
        let readings: Vec<f64> = (0..3000)
            .map(|i| {
                let jitter = ((i * 7919) % 13) as f64 - 6.0;
                match i % 10 {
                    0 => 2.0 + jitter * 0.1,
                    1..=3 => 90.0 + jitter,
                    _ => 180.0 + jitter,
                }
            })
            .collect();
        let s = fit("t1", &readings).unwrap();
        assert_eq!(s.levels_kw.len(), 3, "{s:?}");
        assert!((s.levels_kw[0] - 2.0).abs() < 2.0);
        assert!((s.levels_kw[1] - 90.0).abs() < 3.0);
        assert!((s.levels_kw[2] - 180.0).abs() < 3.0);
        assert!((s.shares[2] - 0.6).abs() < 0.02);
        assert!(s.is_off(5.0));
        assert!(!s.is_off(85.0));
    }

    #[test]
    fn two_running_levels_are_not_mistaken_for_off() {
        let readings: Vec<f64> = (0..1000)
            .map(|i| if i % 2 == 0 { 150.0 } else { 190.0 } + ((i * 31) % 7) as f64)
            .collect();
        let s = fit("t1", &readings).unwrap();
        assert!(!s.is_off(150.0), "{s:?}");
    }
}

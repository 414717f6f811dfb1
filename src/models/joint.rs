//! The outlet's streams as one system: a PCA (eigendecomposition with `linfa-linalg`) of the standardized production, flow, treatment
//! power, O2 and pollutant levels of running minutes. Normal operation moves along a few directions (more load: more
//! flow, more treatment power, more SO2 before the scrubber takes it out); falsified data moves one stream on its own
//! and leaves the plane. The squared prediction error Q measures that; Hotelling's T² measures how far along the plane
//! a minute is (an unusual but consistent operating point, which is not an alarm by itself).

use super::features::FeatureRow;
use linfa_linalg::eigh::{EigSort, Eigh};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

/// Share of standardized variance the kept components must explain.
pub const EXPLAINED_VARIANCE: f64 = 0.90;

/// Least complete rows to fit.
pub const MIN_ROWS: usize = 1440;

/// A fitted joint model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JointModel {
    /// Variables, in order (`production_fraction` first, then targets and O2).
    pub variables: Vec<String>,
    /// Training means.
    pub mean: Vec<f64>,
    /// Training standard deviations.
    pub scale: Vec<f64>,
    /// Kept principal directions (rows), in standardized units.
    pub components: Vec<Vec<f64>>,
    /// Variance along each kept direction.
    pub eigenvalues: Vec<f64>,
    /// Share of variance explained by the kept directions.
    pub explained: f64,
    /// Mean of ln(Q) on training rows.
    pub log_q_mean: f64,
    /// Standard deviation of ln(Q) on training rows.
    pub log_q_sd: f64,
    /// Training rows.
    pub n_train: usize,
}

/// Scores of one minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JointScore {
    /// Squared prediction error (distance from the normal plane), standardized units.
    pub q: f64,
    /// Hotelling's T² within the plane.
    pub t2: f64,
    /// ln(Q) standardized by its training mean and spread (the statistic alarms use).
    pub z_log_q: f64,
}

impl JointModel {
    fn vector(&self, row: &FeatureRow) -> Option<Vec<f64>> {
        self.variables
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let v = if i == 0 {
                    Some(row.production_fraction)
                } else {
                    row.values.get(name).copied()
                }?;
                Some((v - self.mean[i]) / self.scale[i])
            })
            .collect()
    }

    /// Scores a row that has every variable.
    pub fn score(&self, row: &FeatureRow) -> Option<JointScore> {
        let x = self.vector(row)?;
        let t: Vec<f64> = self
            .components
            .iter()
            .map(|c| c.iter().zip(&x).map(|(a, b)| a * b).sum())
            .collect();
        let mut q = 0.0;
        for (i, xi) in x.iter().enumerate() {
            let recon: f64 = self
                .components
                .iter()
                .zip(&t)
                .map(|(c, ti)| c[i] * ti)
                .sum();
            q += (xi - recon).powi(2);
        }
        let t2 = t
            .iter()
            .zip(&self.eigenvalues)
            .map(|(ti, l)| ti * ti / l.max(1e-9))
            .sum();
        let z_log_q = ((q + 1e-9).ln() - self.log_q_mean) / self.log_q_sd.max(1e-6);
        Some(JointScore { q, t2, z_log_q })
    }
}

/// Fits the joint model on rows that have every one of `variables` (besides `production_fraction`, which all have).
/// Variables that never vary are left out. `None` when too few complete rows or fewer than three variables remain.
pub fn fit(rows: &[FeatureRow], variables: &[String]) -> Option<JointModel> {
    let mut names = vec!["production_fraction".to_string()];
    names.extend(variables.iter().cloned());
    let complete: Vec<Vec<f64>> = rows
        .iter()
        .filter_map(|r| {
            std::iter::once(Some(r.production_fraction))
                .chain(variables.iter().map(|v| r.values.get(v).copied()))
                .collect::<Option<Vec<f64>>>()
        })
        .collect();
    if complete.len() < MIN_ROWS {
        return None;
    }
    let n = complete.len() as f64;
    let d = names.len();
    let mean: Vec<f64> = (0..d)
        .map(|j| complete.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect();
    let scale: Vec<f64> = (0..d)
        .map(|j| {
            (complete
                .iter()
                .map(|r| (r[j] - mean[j]).powi(2))
                .sum::<f64>()
                / (n - 1.0))
                .sqrt()
        })
        .collect();
    let keep: Vec<usize> = (0..d).filter(|&j| scale[j] > 1e-9).collect();
    if keep.len() < 3 {
        return None;
    }
    let mut x = Array2::<f64>::zeros((complete.len(), keep.len()));
    for (i, r) in complete.iter().enumerate() {
        for (k, &j) in keep.iter().enumerate() {
            x[[i, k]] = (r[j] - mean[j]) / scale[j];
        }
    }
    // The principal directions are the eigenvectors of the correlation matrix (d is a handful of streams, so the
    // exact symmetric eigendecomposition is cheap; linfa-reduction's truncated SVD is iterative and drifts when
    // most of the spectrum is asked for).
    let corr = x.t().dot(&x) / (n - 1.0);
    let (values, vectors) = corr.eigh().ok()?.sort_eig_desc();
    let total = keep.len() as f64; // standardized: total variance = number of variables
    let mut kept = Vec::new();
    let mut explained = 0.0;
    for (i, v) in values.iter().enumerate() {
        if explained >= EXPLAINED_VARIANCE || i + 1 == keep.len() {
            break;
        }
        explained += v.max(0.0) / total;
        kept.push(i);
    }
    let mut model = JointModel {
        variables: keep.iter().map(|&j| names[j].clone()).collect(),
        mean: keep.iter().map(|&j| mean[j]).collect(),
        scale: keep.iter().map(|&j| scale[j]).collect(),
        components: kept.iter().map(|&i| vectors.column(i).to_vec()).collect(),
        eigenvalues: kept.iter().map(|&i| values[i]).collect(),
        explained,
        log_q_mean: 0.0,
        log_q_sd: 1.0,
        n_train: complete.len(),
    };
    if !keep.contains(&0) {
        return None; // production never varied: nothing to relate the streams to
    }
    let logs: Vec<f64> = rows
        .iter()
        .filter_map(|r| model.score(r))
        .map(|s| (s.q + 1e-9).ln())
        .collect();
    let m = logs.iter().sum::<f64>() / logs.len().max(1) as f64;
    let sd = (logs.iter().map(|v| (v - m).powi(2)).sum::<f64>() / logs.len().max(2) as f64).sqrt();
    model.log_q_mean = m;
    model.log_q_sd = sd.max(1e-6);
    Some(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    fn rows(n: usize, seed: u64) -> Vec<FeatureRow> {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let p = 0.4 + 0.6 * rng.gen::<f64>();
                let mut e = || 0.02 * (rng.gen::<f64>() - 0.5);
                let values = BTreeMap::from([
                    ("flow".to_string(), 0.9 * p + 0.1 + e()),
                    ("treat".to_string(), 0.8 * p + 0.2 + e()),
                    ("so2".to_string(), 0.3 * p + 0.1 + e()),
                ]);
                FeatureRow {
                    minute_ms: i as i64 * 60_000,
                    production_fraction: p,
                    values,
                }
            })
            .collect()
    }

    fn vars() -> Vec<String> {
        ["flow", "treat", "so2"].map(String::from).to_vec()
    }

    #[test]
    fn one_direction_explains_streams_that_follow_load() {
        let m = fit(&rows(3000, 1), &vars()).unwrap();
        assert_eq!(m.components.len(), 1, "{m:?}");
        assert!(m.explained > 0.95);
    }

    #[test]
    fn a_stream_moving_on_its_own_leaves_the_plane_a_high_load_does_not() {
        let m = fit(&rows(3000, 1), &vars()).unwrap();
        let normal = rows(200, 2);
        let mean_z = |rs: &[FeatureRow]| {
            rs.iter().map(|r| m.score(r).unwrap().z_log_q).sum::<f64>() / rs.len() as f64
        };
        let mut faked = normal.clone();
        for r in &mut faked {
            // SO2 reported at a fixed low level whatever the load.
            r.values.insert("so2".into(), 0.15);
        }
        let mut high_load = rows(200, 3);
        for r in &mut high_load {
            let p = 1.0;
            r.production_fraction = p;
            r.values.insert("flow".into(), 0.9 * p + 0.1);
            r.values.insert("treat".into(), 0.8 * p + 0.2);
            r.values.insert("so2".into(), 0.3 * p + 0.1);
        }
        assert!(mean_z(&normal).abs() < 0.3, "{}", mean_z(&normal));
        // Off the plane by about a standard deviation of ln Q per minute: a window mean of white noise moves by
        // 1/√60 ≈ 0.13, so this is far beyond any calibrated threshold.
        assert!(mean_z(&faked) > mean_z(&normal) + 1.0, "{}", mean_z(&faked));
        assert!(mean_z(&high_load) < 0.5, "{}", mean_z(&high_load));
        let t2_high = m.score(&high_load[0]).unwrap().t2;
        let t2_normal: f64 = normal.iter().map(|r| m.score(r).unwrap().t2).sum::<f64>() / 200.0;
        assert!(t2_high > t2_normal, "{t2_high} vs {t2_normal}");
    }
}

//! Has an outlet moved away from its model? The scheduled retraining asks this before refitting: a relationship that
//! still holds needs no new version, and a refit is a new baseline an officer should know about (a careful cheat's
//! new gain is also "drift": that is why retrained versions are not activated unless asked).

use super::artifact::ModelArtifact;
use super::calibrate::MIN_EFFECT;
use super::features::FeatureRow;

/// Least rows (running minutes) to judge drift on.
pub const MIN_ROWS: usize = 240;

/// Why a model no longer describes recent rows, or `None` when it still does (or there is too little to say).
/// Drift: an accepted target's mean residual over the rows at least [`MIN_EFFECT`] (a tenth of normal, or of the
/// limit), or the joint model's standardized ln Q averaging above 1.
pub fn drift(model: &ModelArtifact, rows: &[FeatureRow]) -> Option<String> {
    let rows: Vec<&FeatureRow> = rows
        .iter()
        .filter(|r| model.fitted.covers(r.production_fraction))
        .collect();
    if rows.len() < MIN_ROWS {
        return None;
    }
    let mut reasons = Vec::new();
    for t in model.fitted.targets.iter().filter(|t| t.accepted) {
        let residuals: Vec<f64> = rows
            .iter()
            .filter_map(|r| t.residual(r).map(|x| x.observed - x.predicted))
            .collect();
        if residuals.len() < MIN_ROWS {
            continue;
        }
        let mean = residuals.iter().sum::<f64>() / residuals.len() as f64;
        if mean.abs() >= MIN_EFFECT {
            reasons.push(format!("{} mean residual {mean:+.3}", t.target));
        }
    }
    if let Some(j) = &model.fitted.joint {
        let z: Vec<f64> = rows
            .iter()
            .filter_map(|r| j.score(r))
            .map(|s| s.z_log_q)
            .collect();
        if z.len() >= MIN_ROWS {
            let mean = z.iter().sum::<f64>() / z.len() as f64;
            if mean > 1.0 {
                reasons.push(format!("joint ln Q mean {mean:+.2} σ"));
            }
        }
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::artifact::{FittedModel, ModelScope};
    use crate::models::calibrate::Calibration;
    use crate::models::regression::{FitMetrics, TargetModel};
    use std::collections::BTreeMap;

    fn model() -> ModelArtifact {
        ModelArtifact {
            scope: ModelScope::Outlet("s1".into()),
            version: 1,
            created_ms: 0,
            training_from_ms: 0,
            training_to_ms: 0,
            training_outlets: vec![],
            inputs: vec![],
            fitted: FittedModel {
                targets: vec![TargetModel {
                    target: "flow_fraction".into(),
                    intercept: 0.1,
                    coefficients: vec![0.9, 0.0, 0.0, 0.0],
                    residual_sd: 0.02,
                    metrics: FitMetrics::default(),
                    accepted: true,
                }],
                joint: None,
                meter_states: vec![],
                production_range: [0.4, 1.1],
            },
            calibration: Calibration::default(),
            thresholds: BTreeMap::new(),
            metrics: BTreeMap::new(),
            notes: vec![],
        }
    }

    fn rows(offset: f64) -> Vec<FeatureRow> {
        (0..300)
            .map(|i| {
                let p = 0.5 + 0.5 * ((i * 37 % 100) as f64 / 100.0);
                FeatureRow {
                    minute_ms: i * 60_000,
                    production_fraction: p,
                    values: BTreeMap::from([("flow_fraction".to_string(), 0.1 + 0.9 * p + offset)]),
                }
            })
            .collect()
    }

    #[test]
    fn a_relationship_that_holds_is_not_drift_a_moved_one_is() {
        let m = model();
        assert_eq!(drift(&m, &rows(0.03)), None);
        let moved = drift(&m, &rows(-0.15)).expect("drift");
        assert!(moved.contains("flow_fraction"), "{moved}");
        // Too few rows say nothing.
        assert_eq!(drift(&m, &rows(-0.15)[..100]), None);
    }
}

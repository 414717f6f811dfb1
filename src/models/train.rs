//! Fitting a model artifact from training series: regressions, the joint model, meter states, then thresholds from
//! the empirical null of the same clean history. Pure: data in, artifact out.

use super::artifact::{FittedModel, ModelArtifact, ModelScope, JOINT_TEST};
use super::calibrate::{window_mean_sd, Calibration};
use super::dataset::OutletSeries;
use super::features::{FeatureRow, FLOW_TARGET, INPUT_NAMES, O2_VARIABLE, TREATMENT_TARGET};
use super::{joint, regression, states};
use std::collections::BTreeMap;

/// What to fit.
#[derive(Debug, Clone)]
pub struct TrainSpec {
    /// Outlet or industry.
    pub scope: ModelScope,
    /// Version to give the artifact.
    pub version: u32,
    /// Targets to regress (see [`super::features::targets_of`]).
    pub targets: Vec<String>,
    /// Training window (for the record).
    pub from_ms: i64,
    /// End of the window.
    pub to_ms: i64,
    /// Creation time.
    pub created_ms: i64,
    /// Threshold settings.
    pub calibration: Calibration,
}

/// Fits an artifact on one series (an outlet) or several (an industry's outlets, pooled). `progress` is told the
/// share done (0..1) as parts finish.
pub fn fit(spec: &TrainSpec, series: &[OutletSeries], progress: &dyn Fn(f64)) -> ModelArtifact {
    let pooled: Vec<FeatureRow> = series.iter().flat_map(|s| s.rows.iter().cloned()).collect();
    let mut fitted = FittedModel {
        production_range: percentiles(&pooled),
        ..FittedModel::default()
    };
    let mut notes = Vec::new();
    let mut metrics = BTreeMap::new();
    metrics.insert("rows".into(), pooled.len() as f64);
    let steps = (spec.targets.len() + 2) as f64;
    for (i, target) in spec.targets.iter().enumerate() {
        match regression::fit_target(&pooled, target) {
            Ok(m) => {
                metrics.insert(format!("{target}.r2_holdout"), m.metrics.r2_holdout);
                metrics.insert(
                    format!("{target}.relative_accuracy_holdout"),
                    m.metrics.relative_accuracy_holdout,
                );
                if !m.accepted {
                    notes.push(format!(
                        "{target}: not accepted (holdout R² {:.2} < {}, relative accuracy {:.1} % > {} %): fitted but \
                         raises no alarms",
                        m.metrics.r2_holdout,
                        regression::ACCEPT_R2,
                        100.0 * m.metrics.relative_accuracy_holdout,
                        100.0 * regression::ACCEPT_RELATIVE_ACCURACY
                    ));
                }
                fitted.targets.push(m);
            }
            Err(e) => notes.push(e.to_string()),
        }
        progress((i + 1) as f64 / steps);
    }
    // Joint variables: every fitted target and O2, when most rows have them.
    let mut variables: Vec<String> = fitted.targets.iter().map(|t| t.target.clone()).collect();
    variables.push(O2_VARIABLE.into());
    variables.retain(|v| {
        pooled.iter().filter(|r| r.values.contains_key(v)).count() * 10 >= pooled.len() * 9
    });
    fitted.joint = joint::fit(&pooled, &variables);
    match &fitted.joint {
        Some(j) => {
            metrics.insert("joint.explained_variance".into(), j.explained);
            metrics.insert("joint.components".into(), j.components.len() as f64);
        }
        None => notes.push(format!(
            "joint model not fitted: fewer than {} complete running minutes or fewer than three varying streams",
            joint::MIN_ROWS
        )),
    }
    progress((steps - 1.0) / steps);
    if let (ModelScope::Outlet(_), [one]) = (&spec.scope, series) {
        fitted.meter_states = one
            .meter_kw
            .iter()
            .filter_map(|(id, kw)| states::fit(id, kw))
            .collect();
    }
    let prior = matches!(spec.scope, ModelScope::Industry(_));
    // Physics transfers between plants of an industry (flow and treatment power follow production); pollutant
    // levels do not (fuel, raw material and scrubber size differ). A prior alarms only on what transfers.
    let alarmed = |test: &str| !prior || test == FLOW_TARGET || test == TREATMENT_TARGET;
    let thresholds = calibrate(&fitted, series, &spec.calibration, &alarmed);
    if prior {
        notes.push(
            "industry prior: alarms only on flow and treatment power; pollutant levels and the joint pattern are \
             plant-specific and are judged once the outlet has a model of its own"
                .into(),
        );
    }
    progress(1.0);
    ModelArtifact {
        scope: spec.scope.clone(),
        version: spec.version,
        created_ms: spec.created_ms,
        training_from_ms: spec.from_ms,
        training_to_ms: spec.to_ms,
        training_outlets: series.iter().map(|s| s.outlet_id.clone()).collect(),
        inputs: INPUT_NAMES.iter().map(|s| s.to_string()).collect(),
        fitted,
        calibration: spec.calibration,
        thresholds,
        metrics,
        notes,
    }
}

/// 1st and 99th percentile of the training rows' production fraction.
fn percentiles(rows: &[FeatureRow]) -> [f64; 2] {
    let mut p: Vec<f64> = rows.iter().map(|r| r.production_fraction).collect();
    if p.is_empty() {
        return [0.0, 0.0];
    }
    p.sort_by(f64::total_cmp);
    let at = |q: f64| p[((p.len() - 1) as f64 * q).round() as usize];
    [at(0.01), at(0.99)]
}

/// Thresholds for every accepted test that may alarm: the spread of its window mean on the training series (pooled as a root mean
/// square over outlets) times the multiplicity-corrected normal quantile.
fn calibrate(
    fitted: &FittedModel,
    series: &[OutletSeries],
    cal: &Calibration,
    alarmed: &dyn Fn(&str) -> bool,
) -> BTreeMap<String, f64> {
    let accepted: Vec<_> = fitted
        .targets
        .iter()
        .filter(|t| t.accepted && alarmed(&t.target))
        .collect();
    let joint = fitted.joint.as_ref().filter(|_| alarmed(JOINT_TEST));
    let tests = accepted.len() + usize::from(joint.is_some());
    let spread = |z: &dyn Fn(&FeatureRow) -> Option<f64>| -> Option<f64> {
        let (mut sum_sq, mut n) = (0.0, 0);
        for s in series {
            let zs: Vec<(i64, f64)> = s
                .rows
                .iter()
                .filter_map(|r| Some((r.minute_ms, z(r)?)))
                .collect();
            if let Some(sd) = window_mean_sd(&zs, cal) {
                sum_sq += sd * sd;
                n += 1;
            }
        }
        (n > 0).then(|| (sum_sq / f64::from(n)).sqrt())
    };
    let mut out = BTreeMap::new();
    for t in accepted {
        if let Some(sd) = spread(&|r| t.z(r)) {
            out.insert(t.target.clone(), sd * cal.quantile(tests, true));
        }
    }
    if let Some(j) = joint {
        if let Some(sd) = spread(&|r| j.score(r).map(|s| s.z_log_q)) {
            out.insert(JOINT_TEST.into(), sd * cal.quantile(tests, false));
        }
    }
    out
}

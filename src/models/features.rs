//! The feature space every model lives in: one row per running minute of an outlet, in fractions rather than raw
//! units, so a per-industry prior and an outlet's own model read the same row and one outlet's fit can be compared
//! with another's.
//!
//! Inputs describe the process (production power as a fraction of its learned normal, time of day); targets are what
//! the process should explain: stack flow and treatment power as fractions of their learned normals, and each limited
//! pollutant's converted concentration as a fraction of its limit.

use crate::domain::OutletTopology;
use crate::domain::{codes, MS_PER_HOUR};
use crate::signal::align::OutletRow;
use crate::signal::cems::{converted, raw};
use crate::signal::process::ProcessState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Names of the regression inputs, in the order of [`FeatureRow::inputs`].
pub const INPUT_NAMES: [&str; 4] = [
    "production_fraction",
    "production_fraction_sq",
    "hour_sin",
    "hour_cos",
];

/// Target: stack flow / learned normal flow.
pub const FLOW_TARGET: &str = "flow_fraction";
/// Target: treatment power / learned normal treatment power.
pub const TREATMENT_TARGET: &str = "treatment_fraction";
/// Joint-model variable (not a regression target): O2 (%).
pub const O2_VARIABLE: &str = "o2_pct";

/// Name of a pollutant's target: converted concentration / limit.
pub fn pollutant_target(code: &str) -> String {
    format!("{code}_limit_fraction")
}

/// Production below this fraction of normal is start-up, shutdown or idling: a different regime that the models do
/// not describe (and that detectors of their own watch).
pub const MIN_PRODUCTION_FRACTION: f64 = 0.2;

/// One running minute in the model's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureRow {
    /// Start of the minute, Unix ms.
    pub minute_ms: i64,
    /// Production power / learned normal.
    pub production_fraction: f64,
    /// Observed targets (and the O2 variable) by name; a missing or invalid channel is absent.
    pub values: BTreeMap<String, f64>,
}

impl FeatureRow {
    /// Regression inputs: production fraction, its square (treatment and flow saturate), and the hour of day as a
    /// point on the circle (shift patterns without a jump at midnight).
    pub fn inputs(&self) -> [f64; 4] {
        let hour = (self.minute_ms.rem_euclid(24 * MS_PER_HOUR)) as f64 / MS_PER_HOUR as f64;
        let angle = hour / 24.0 * std::f64::consts::TAU;
        let p = self.production_fraction;
        [p, p * p, angle.sin(), angle.cos()]
    }
}

/// A minute's inputs alone (no observed values), or `None` when production is not known to run at a describable
/// level: what a prediction needs while the stack's own readings are missing.
pub fn input_row(minute_ms: i64, process: &ProcessState) -> Option<FeatureRow> {
    if !process.running() {
        return None;
    }
    let production_fraction = process.production_fraction()?;
    (MIN_PRODUCTION_FRACTION..=2.0)
        .contains(&production_fraction)
        .then(|| FeatureRow {
            minute_ms,
            production_fraction,
            values: BTreeMap::new(),
        })
}

/// The feature row of a minute, or `None` when production is not known to run at a describable level.
pub fn feature_row(
    t: &OutletTopology,
    row: &OutletRow,
    process: &ProcessState,
    o2_ceiling_pct: f64,
) -> Option<FeatureRow> {
    let mut features = input_row(row.minute_ms, process)?;
    let values = &mut features.values;
    if let (Some(f), Some(n)) = (process.flow_m3_s, process.flow_normal_m3_s) {
        if n > 0.0 {
            values.insert(FLOW_TARGET.to_string(), f / n);
        }
    }
    let (mut kw, mut normal_kw) = (0.0, 0.0);
    for m in &t.treatment {
        if let Some(mm) = process.meters.get(&m.id) {
            if let (Some(k), Some(n)) = (mm.kw, mm.normal_kw) {
                kw += k;
                normal_kw += n;
            }
        }
    }
    if normal_kw > 0.0 {
        values.insert(TREATMENT_TARGET.to_string(), kw / normal_kw);
    }
    for (code, limit) in &t.outlet.limits_mg_m3 {
        if *limit > 0.0 {
            let v = converted(row, code, t.outlet.reference_o2_pct, o2_ceiling_pct).valid();
            if let Some(v) = v.filter(|v| v.is_finite()) {
                values.insert(pollutant_target(code), v / limit);
            }
        }
    }
    if let Some(o2) = raw(row, codes::O2).filter(|v| v.is_finite()) {
        values.insert(O2_VARIABLE.to_string(), o2);
    }
    Some(features)
}

/// The regression targets an outlet has: flow, treatment power when it has treatment meters, each limited pollutant.
pub fn targets_of(t: &OutletTopology) -> Vec<String> {
    let mut out = vec![FLOW_TARGET.to_string()];
    if !t.treatment.is_empty() {
        out.push(TREATMENT_TARGET.to_string());
    }
    out.extend(t.outlet.limits_mg_m3.keys().map(|c| pollutant_target(c)));
    out
}

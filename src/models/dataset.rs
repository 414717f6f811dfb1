//! From stored points to model rows, offline, with the same aligner and process tracker detection uses, so a model
//! is trained on exactly the minutes and the "fraction of normal" it will later be applied to.

use super::features::{feature_row, FeatureRow};
use crate::domain::OutletTopology;
use crate::domain::Point;
use crate::signal::align::{OutletAligner, OutletRow};
use crate::signal::equipment::Thresholds;
use crate::signal::process::ProcessTracker;
use std::collections::BTreeMap;

/// One outlet's training data.
#[derive(Debug, Clone, Default)]
pub struct OutletSeries {
    /// Outlet id.
    pub outlet_id: String,
    /// Running minutes, in time order.
    pub rows: Vec<FeatureRow>,
    /// Every usable power reading of each linked meter (kW), for equipment-state clustering.
    pub meter_kw: BTreeMap<String, Vec<f64>>,
}

/// Aligns an outlet's points (any order) into minute rows, as detection would with unlimited lateness.
pub fn align(t: &OutletTopology, points: &[Point]) -> Vec<OutletRow> {
    let mut sorted: Vec<&Point> = points.iter().collect();
    sorted.sort_by_key(|p| p.time_ms);
    let mut aligner = OutletAligner::default();
    for p in sorted {
        aligner.add(p, t.role_of(&p.source_id));
    }
    let mut rows = Vec::new();
    aligner.drain_all(&mut rows);
    rows
}

/// Feature rows of aligned minutes (running minutes only), and the meters' readings: equipment judged by
/// `equipment`, CEMS values above `o2_ceiling_pct` not evaluable, as detection judges them.
pub fn series(
    t: &OutletTopology,
    rows: &[OutletRow],
    equipment: Thresholds,
    o2_ceiling_pct: f64,
) -> OutletSeries {
    let mut tracker = ProcessTracker::default();
    let mut out = OutletSeries {
        outlet_id: t.outlet.id.clone(),
        ..OutletSeries::default()
    };
    for row in rows {
        let process = tracker.observe(t, row, equipment);
        for (id, r) in &row.power_kw {
            if r.is_valid() && r.value.is_finite() {
                out.meter_kw.entry(id.clone()).or_default().push(r.value);
            }
        }
        if let Some(f) = feature_row(t, row, &process, o2_ceiling_pct) {
            out.rows.push(f);
        }
    }
    out
}

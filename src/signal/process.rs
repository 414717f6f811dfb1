//! The outlet's process state in one minute, worked out once and shared by every detector: is production running
//! and at what fraction of its normal power, and what state is each treatment facility in.
//!
//! Keeping this in one place means every detector agrees on what "running" means, and the learned equipment levels
//! are learned once per meter rather than once per detector.

use super::equipment::{EquipmentState, MeterLevel, Thresholds};
use crate::domain::OutletTopology;
use crate::signal::align::OutletRow;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One meter in one minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeterMinute {
    /// Classified state.
    pub state: EquipmentState,
    /// Reading (kW), if usable.
    pub kw: Option<f64>,
    /// Learned normal running power (kW), if known.
    pub normal_kw: Option<f64>,
}

impl MeterMinute {
    /// Power as a fraction of normal running power.
    pub fn fraction_of_normal(&self) -> Option<f64> {
        match (self.kw, self.normal_kw) {
            (Some(kw), Some(n)) if n > 0.0 => Some(kw / n),
            _ => None,
        }
    }
}

/// The process in one minute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessState {
    /// Whether production runs (reduced counts: reduced production still emits); `None` when no production meter
    /// gave a usable reading.
    pub production_on: Option<bool>,
    /// Whether production was known to run in the previous known minute.
    pub production_was_on: bool,
    /// Sum of usable production readings (kW).
    pub production_kw: f64,
    /// Sum of the learned normal running power of the meters that gave a reading (kW).
    pub production_normal_kw: f64,
    /// Every linked meter (production and treatment) by id.
    pub meters: BTreeMap<String, MeterMinute>,
    /// Stack flow (m³/s) if reported with a valid flag.
    pub flow_m3_s: Option<f64>,
    /// Stack flow as reported, whatever its flag (a stop flag on a stack that still flows is evidence).
    pub flow_any_flag_m3_s: Option<f64>,
    /// Learned normal stack flow while production runs (m³/s).
    pub flow_normal_m3_s: Option<f64>,
}

impl ProcessState {
    /// Production power as a fraction of normal, when known.
    pub fn production_fraction(&self) -> Option<f64> {
        (self.production_on.is_some() && self.production_normal_kw > 0.0)
            .then(|| self.production_kw / self.production_normal_kw)
    }

    /// Production known to run.
    pub fn running(&self) -> bool {
        self.production_on == Some(true)
    }

    /// Stack flow (any flag) as a fraction of its learned normal.
    pub fn flow_fraction(&self) -> Option<f64> {
        match (self.flow_any_flag_m3_s, self.flow_normal_m3_s) {
            (Some(f), Some(n)) if n > 0.0 => Some(f / n),
            _ => None,
        }
    }
}

/// Weight of a new reading in the learned normal flow: ~1 day of minute data once warmed up.
const FLOW_ALPHA: f64 = 1.0 / 1440.0;

/// Learns meter levels and classifies each minute.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessTracker {
    levels: BTreeMap<String, MeterLevel>,
    production_was_on: bool,
    flow_normal_m3_s: Option<f64>,
    flow_samples: u64,
}

impl ProcessTracker {
    /// Classifies the minute and learns from it.
    pub fn observe(&mut self, t: &OutletTopology, row: &OutletRow, th: Thresholds) -> ProcessState {
        let mut s = ProcessState {
            production_was_on: self.production_was_on,
            ..ProcessState::default()
        };
        let mut known = false;
        let mut on = false;
        for (m, is_production) in t
            .production
            .iter()
            .map(|m| (m, true))
            .chain(t.treatment.iter().map(|m| (m, false)))
        {
            let reading = row.power_kw.get(&m.id);
            let level = self
                .levels
                .entry(m.id.clone())
                .or_insert_with(|| MeterLevel::new(m.rated_kw));
            let state = level.observe(reading, th);
            let usable = state != EquipmentState::Unknown;
            let minute = MeterMinute {
                state,
                kw: reading.filter(|_| usable).map(|r| r.value),
                normal_kw: level.running_kw,
            };
            if is_production && usable {
                known = true;
                on |= matches!(state, EquipmentState::Running | EquipmentState::Reduced);
                s.production_kw += minute.kw.unwrap_or(0.0);
                s.production_normal_kw += minute.normal_kw.unwrap_or(0.0);
            }
            s.meters.insert(m.id.clone(), minute);
        }
        if known {
            s.production_on = Some(on);
            self.production_was_on = on;
        }
        let flow = row.cems.get(crate::domain::codes::FLOW);
        s.flow_any_flag_m3_s = flow.map(|r| r.value).filter(|v| v.is_finite());
        s.flow_m3_s = flow
            .filter(|r| r.is_valid())
            .map(|r| r.value)
            .filter(|v| v.is_finite());
        // Learn normal flow from valid minutes of full-ish production only, and never from minutes far below the
        // learned level (a bypass must not teach the model that low flow is normal).
        if let (Some(f), Some(frac)) = (s.flow_m3_s, s.production_fraction()) {
            let plausible = self.flow_normal_m3_s.is_none_or(|n| f > 0.6 * n);
            if on && frac >= 0.7 && plausible {
                let alpha = (1.0 / (self.flow_samples as f64 + 1.0)).max(FLOW_ALPHA);
                self.flow_normal_m3_s =
                    Some(self.flow_normal_m3_s.map_or(f, |n| n + alpha * (f - n)));
                self.flow_samples += 1;
            }
        }
        s.flow_normal_m3_s = self.flow_normal_m3_s;
        s
    }
}

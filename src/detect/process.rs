//! The outlet's process state in one minute, worked out once and shared by every detector: is production running
//! and at what fraction of its normal power, and what state is each treatment facility in.
//!
//! Keeping this in one place means every detector agrees on what "running" means, and the learned equipment levels
//! are learned once per meter rather than once per detector.

use super::equipment::{EquipmentState, MeterLevel, Thresholds};
use crate::align::OutletRow;
use crate::registry::OutletTopology;
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
}

/// Learns meter levels and classifies each minute.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessTracker {
    levels: BTreeMap<String, MeterLevel>,
    production_was_on: bool,
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
        s
    }
}

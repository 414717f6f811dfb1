//! Equipment state from a power meter: off, standby, reduced or running.
//!
//! The reference is the equipment's normal running power, learned from its own history (an exponentially weighted
//! mean of the readings classified as running) and cold-started from `rated_kw` × 0.7 (equipment rarely runs at
//! nameplate). A missing reading or one flagged fault / comm-error is **unknown**, never "off": a dead meter is not
//! an idle scrubber.

use crate::signal::align::Reading;
use serde::{Deserialize, Serialize};

/// Thresholds as fractions of the learned running power.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Thresholds {
    /// Below this fraction the equipment is off or at standby (not doing its job).
    pub not_running_fraction: f64,
    /// At or above this fraction it is running normally; between the two it runs reduced.
    pub running_fraction: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            not_running_fraction: 0.15,
            running_fraction: 0.5,
        }
    }
}

/// Classified state of a piece of equipment in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EquipmentState {
    /// No usable reading (missing, fault-flagged, or no reference learned yet).
    Unknown,
    /// Off or at standby.
    NotRunning,
    /// Running well below its normal power.
    Reduced,
    /// Running.
    Running,
}

/// Share of nameplate power equipment typically draws when running: the cold-start reference.
const RATED_TO_RUNNING: f64 = 0.7;
/// Weight of a new running reading in the learned level: ~1 day of minute data to adapt.
const LEARN_ALPHA: f64 = 1.0 / 1440.0;
/// Readings learned from freely before only near-normal readings count.
const WARM_UP_SAMPLES: u64 = 240;
/// Share of the learned level a reading needs, after warm-up, to teach the level.
const NEAR_NORMAL: f64 = 0.8;

/// The learned level of one meter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeterLevel {
    /// Learned normal running power (kW); `None` until known.
    pub running_kw: Option<f64>,
    /// Running readings learned from so far.
    pub learned_samples: u64,
}

impl MeterLevel {
    /// Cold start from the nameplate (0 = unknown).
    pub fn new(rated_kw: f64) -> Self {
        Self {
            running_kw: (rated_kw > 0.0).then_some(rated_kw * RATED_TO_RUNNING),
            learned_samples: 0,
        }
    }

    /// Classifies a reading and learns from it.
    pub fn observe(&mut self, reading: Option<&Reading>, th: Thresholds) -> EquipmentState {
        let Some(r) = reading.filter(|r| r.is_valid() && r.value.is_finite()) else {
            return EquipmentState::Unknown;
        };
        let kw = r.value;
        let Some(reference) = self.running_kw else {
            // No nameplate: the first clearly non-zero reading is taken as provisional running level.
            if kw > 0.0 {
                self.running_kw = Some(kw);
                self.learned_samples = 1;
                return EquipmentState::Running;
            }
            return EquipmentState::Unknown;
        };
        let state = Self::classify(kw, reference, th);
        // Once warmed up, learn only from readings near the normal level: weeks of reduced operation (a restriction
        // order, a cheat idling a scrubber at 55 %) must not lower the bar they are judged against.
        let near_normal = self.learned_samples < WARM_UP_SAMPLES || kw >= NEAR_NORMAL * reference;
        if state == EquipmentState::Running && near_normal {
            // Faster learning while young, so a wrong nameplate is corrected within hours.
            let alpha = (1.0 / (self.learned_samples as f64 + 1.0)).max(LEARN_ALPHA);
            self.running_kw = Some(reference + alpha * (kw - reference));
            self.learned_samples += 1;
        }
        state
    }

    fn classify(kw: f64, reference: f64, th: Thresholds) -> EquipmentState {
        if reference <= 0.0 {
            EquipmentState::Unknown
        } else if kw < th.not_running_fraction * reference {
            EquipmentState::NotRunning
        } else if kw < th.running_fraction * reference {
            EquipmentState::Reduced
        } else {
            EquipmentState::Running
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ValueFlag;

    fn r(v: f64) -> Reading {
        Reading::of(v, ValueFlag::Normal, None)
    }

    #[test]
    fn learns_real_level_when_nameplate_is_wrong() {
        let th = Thresholds::default();
        // Nameplate says 1000 kW but the fan really runs at 300 kW.
        let mut m = MeterLevel::new(1000.0);
        assert_eq!(m.observe(Some(&r(300.0)), th), EquipmentState::Reduced);
        // Reduced readings do not teach; without a running reading the level stays wrong...
        assert_eq!(m.running_kw, Some(700.0));
        // ...so a meter with no nameplate learns from its first readings instead.
        let mut m = MeterLevel::new(0.0);
        for _ in 0..100 {
            assert_eq!(m.observe(Some(&r(300.0)), th), EquipmentState::Running);
        }
        assert!((m.running_kw.unwrap() - 300.0).abs() < 1e-9);
        assert_eq!(m.observe(Some(&r(10.0)), th), EquipmentState::NotRunning);
        assert_eq!(m.observe(Some(&r(100.0)), th), EquipmentState::Reduced);
    }

    #[test]
    fn missing_or_fault_flagged_is_unknown_not_off() {
        let th = Thresholds::default();
        let mut m = MeterLevel::new(100.0);
        assert_eq!(m.observe(None, th), EquipmentState::Unknown);
        let mut fault = r(0.0);
        fault.flag = ValueFlag::Fault;
        assert_eq!(m.observe(Some(&fault), th), EquipmentState::Unknown);
        assert_eq!(m.observe(Some(&r(f64::NAN)), th), EquipmentState::Unknown);
    }
}

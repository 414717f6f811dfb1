//! Detectors: pure, synchronous state machines that watch one outlet's aligned minutes and report episodes.
//!
//! A detector never does I/O and never reads the wall clock: it reads time from the rows. It keeps its own state
//! (learned equipment levels, the episode in progress), which the pipeline snapshots so detection resumes exactly
//! after a restart. Every detector family lives in its own file, with its config, its state and its tests, and is
//! listed once in [`DETECTORS`].

/// `save` and `restore` for a detector whose whole state is one serde field: written once, used by every detector.
macro_rules! persist_state {
    ($field:ident) => {
        fn save(&self) -> Result<Vec<u8>, String> {
            $crate::detect::kit::persist::save_state(&self.$field)
        }

        fn restore(&mut self, blob: &[u8]) -> Result<(), String> {
            self.$field = $crate::detect::kit::persist::restore_state(blob)?;
            Ok(())
        }
    };
}

pub mod bunching;
pub mod bypass;
pub mod calibration_gas;
pub mod dilution;
pub mod exceedance;
pub mod flag_abuse;
pub mod flatline;
pub mod kit;
pub mod low_variance;
pub mod model_residual;
pub mod permit;
pub mod replay;
pub mod replay_hourly;
pub mod restriction;
pub mod selective_gap;
pub mod substitution;
pub mod tampering;
pub mod treatment_low_power;
pub mod treatment_not_running;
pub mod unmonitored;

use crate::domain::OutletTopology;
use crate::domain::{AnomalyKind, Evidence};
use crate::signal::align::OutletRow;
use crate::signal::equipment::Thresholds;
use crate::signal::process::ProcessState;
use serde::{Deserialize, Serialize};

/// Settings shared by all detectors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetectConfig {
    /// What "off", "reduced" and "running" mean for equipment, as fractions of learned running power.
    pub equipment: Thresholds,
    /// Exceedance settings (HJ 75 hourly validity, O2 ceiling).
    pub exceedance: exceedance::Config,
    /// Treatment-not-running episode timing.
    pub treatment_not_running: kit::Timing,
    /// False alarms per outlet-day each statistical falsification test family (low variance, replay, flat-line,
    /// calibration gas, dilution) may raise on honest data: its threshold against the outlet's own empirical null is
    /// set for this, divided over the tests (or runs) of a day.
    pub false_alarms_per_day: f64,
    /// A Beijing month whose transmission rate (valid minutes over minutes production ran) falls below this is an
    /// `UNMONITORED_EMISSION` for the month.
    pub transmission_floor: f64,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            equipment: Thresholds::default(),
            exceedance: exceedance::Config::default(),
            treatment_not_running: treatment_not_running::TIMING,
            false_alarms_per_day: 0.002,
            transmission_floor: 0.9,
        }
    }
}

/// What a detector sees besides the row: the outlet's registry facts and the settings.
pub struct OutletContext<'a> {
    /// The outlet, its enterprise, meters, bypasses and orders.
    pub topology: &'a OutletTopology,
    /// Settings.
    pub config: &'a DetectConfig,
    /// The model the outlet is judged by (its own, else its industry's prior), if any.
    pub model: Option<&'a crate::models::ModelArtifact>,
}

/// One minute of one outlet as detectors see it: the aligned readings and the process state derived from them.
pub struct Minute<'a> {
    /// Aligned readings.
    pub row: &'a OutletRow,
    /// Production and treatment state.
    pub process: &'a ProcessState,
}

/// One update of an episode: opened, extended or closed. The pipeline turns findings into stored anomalies; the same
/// (outlet, kind, key, start) always updates the same anomaly.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Suspected violation.
    pub kind: AnomalyKind,
    /// Distinguishes parallel episodes of one kind at one outlet (e.g. the treatment meter's id).
    pub key: String,
    /// Episode start (data time, ms).
    pub start_ms: i64,
    /// Episode end so far (exclusive).
    pub end_ms: i64,
    /// Data time at which the episode was raised.
    pub detected_at_ms: i64,
    /// 0..1.
    pub score: f64,
    /// Sources the finding rests on.
    pub source_ids: Vec<String>,
    /// The figures behind it (the summary an officer reads is written from them when served, at the API edge).
    pub evidence: Evidence,
    /// Still open.
    pub ongoing: bool,
    /// Detector name and version.
    pub detector: &'static str,
}

/// A detector family. One instance per outlet.
pub trait Detector: Send {
    /// Sees the next minute of the outlet (minutes arrive in order, without gaps) and may report findings.
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>);

    /// End of data (a finalizing sync): close open episodes at the last minute seen.
    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>);

    /// Serialized state, for checkpoints.
    ///
    /// # Errors
    /// When the state cannot be encoded.
    fn save(&self) -> Result<Vec<u8>, String>;

    /// Restores [`Detector::save`]'s output.
    ///
    /// # Errors
    /// When the blob is not this detector's state.
    fn restore(&mut self, blob: &[u8]) -> Result<(), String>;
}

/// Builds one detector for an outlet.
pub type DetectorFactory = fn(&DetectConfig) -> Box<dyn Detector>;

/// A detector family as the registry lists it.
pub struct DetectorSpec {
    /// Stable name with version, e.g. `treatment_not_running/1`: part of every anomaly it raises (its findings'
    /// `detector`) and the key of its checkpointed state.
    pub name: &'static str,
    /// Builds it for one outlet.
    pub build: DetectorFactory,
}

macro_rules! spec {
    ($module:ident :: $detector:ident) => {
        DetectorSpec {
            name: $module::NAME,
            build: $module::$detector::boxed,
        }
    };
}

/// Every detector family, run on every stack outlet in this order (order only fixes the order of findings).
pub const DETECTORS: &[DetectorSpec] = &[
    spec!(treatment_not_running::TreatmentNotRunning),
    spec!(exceedance::Exceedance),
    spec!(unmonitored::Unmonitored),
    spec!(flag_abuse::FlagAbuse),
    spec!(bypass::Bypass),
    spec!(restriction::Restriction),
    spec!(treatment_low_power::TreatmentLowPower),
    spec!(permit::Permit),
    spec!(flatline::Flatline),
    spec!(calibration_gas::CalibrationGas),
    spec!(dilution::Dilution),
    spec!(tampering::Tampering),
    spec!(substitution::Substitution),
    spec!(low_variance::LowVariance),
    spec!(replay::Replay),
    spec!(replay_hourly::ReplayHourly),
    spec!(bunching::Bunching),
    spec!(selective_gap::SelectiveGap),
    spec!(model_residual::ModelResidual),
];

#[cfg(test)]
pub(crate) mod testutil {
    //! Builders for detector tests: a topology with one stack, production and treatment meters.
    use super::*;
    use crate::domain::{Enterprise, Meter, MeterRole, Outlet, ValueFlag, MS_PER_MINUTE};
    use crate::signal::align::Reading;

    pub const T0: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z

    pub fn topology() -> OutletTopology {
        let meter = |id: &str, role, rated_kw| Meter {
            id: id.into(),
            enterprise_id: "e1".into(),
            role,
            equipment: if role == MeterRole::Treatment {
                "desulfurization".into()
            } else {
                "boiler".into()
            },
            outlet_ids: vec!["s1".into()],
            rated_kw,
            hj212_password: String::new(),
        };
        OutletTopology {
            outlet: Outlet {
                id: "s1".into(),
                enterprise_id: "e1".into(),
                name: "1# stack".into(),
                reference_o2_pct: 6.0,
                ..Default::default()
            },
            enterprise: Enterprise {
                id: "e1".into(),
                name: "Test Power".into(),
                ..Default::default()
            },
            production: vec![meter("p1", MeterRole::Production, 1000.0)],
            treatment: vec![meter("t1", MeterRole::Treatment, 200.0)],
            bypasses: vec![],
            restrictions: vec![],
            operating_changes: vec![],
        }
    }

    /// The test topology with hourly limits (mg/m³) on the given codes.
    pub fn topology_with_limits(limits: &[(&str, f64)]) -> OutletTopology {
        let mut t = topology();
        for (code, limit) in limits {
            t.outlet.limits_mg_m3.insert(code.to_string(), *limit);
        }
        t
    }

    /// Reproducible noise in [-1, 1] for (minute, channel): splitmix64, so fixtures never repeat themselves (a
    /// periodic fixture would rightly look replayed).
    pub fn noise(i: i64, channel: u64) -> f64 {
        let mut z = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ channel.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    /// Runs one detector over rows (through a fresh process tracker), then finishes it.
    pub fn run_detector(
        make: DetectorFactory,
        topo: &OutletTopology,
        rows: impl IntoIterator<Item = OutletRow>,
    ) -> Vec<Finding> {
        run_detector_at(
            make,
            topo,
            DetectConfig::default().false_alarms_per_day,
            rows,
        )
    }

    /// [`run_detector`] with another false-alarm budget per outlet-day (to measure a rate in a short test).
    pub fn run_detector_at(
        make: DetectorFactory,
        topo: &OutletTopology,
        false_alarms_per_day: f64,
        rows: impl IntoIterator<Item = OutletRow>,
    ) -> Vec<Finding> {
        run_detector_with_model(make, topo, false_alarms_per_day, None, rows)
    }

    /// [`run_detector_at`] with an active model.
    pub fn run_detector_with_model(
        make: DetectorFactory,
        topo: &OutletTopology,
        false_alarms_per_day: f64,
        model: Option<&crate::models::ModelArtifact>,
        rows: impl IntoIterator<Item = OutletRow>,
    ) -> Vec<Finding> {
        let config = DetectConfig {
            false_alarms_per_day,
            ..DetectConfig::default()
        };
        let ctx = OutletContext {
            topology: topo,
            config: &config,
            model,
        };
        let mut d = make(&config);
        let mut tracker = crate::signal::process::ProcessTracker::default();
        let mut out = Vec::new();
        for row in rows {
            let process = tracker.observe(topo, &row, config.equipment);
            d.observe(
                &ctx,
                &Minute {
                    row: &row,
                    process: &process,
                },
                &mut out,
            );
        }
        d.finish(&ctx, &mut out);
        out
    }

    /// Adds CEMS readings (normal flag) to a row.
    pub fn with_cems(mut row: OutletRow, values: &[(&str, f64)]) -> OutletRow {
        for (code, v) in values {
            row.cems
                .insert(code.to_string(), Reading::of(*v, ValueFlag::Normal, None));
        }
        row
    }

    /// A row at minute `i` with the given meter powers (`None` = no reading).
    pub fn row(i: i64, powers: &[(&str, Option<f64>)]) -> OutletRow {
        let mut r = OutletRow {
            minute_ms: T0 + i * MS_PER_MINUTE,
            ..Default::default()
        };
        for (id, kw) in powers {
            if let Some(v) = kw {
                r.power_kw
                    .insert(id.to_string(), Reading::of(*v, ValueFlag::Normal, None));
            }
        }
        r
    }

    /// A finding's summary as an English-reading client gets it from the API, with the test topology's names.
    pub fn summary_en(f: &Finding) -> String {
        crate::api::summary_of(
            f.detector,
            f.kind,
            &f.evidence,
            &TEST_NAMES,
            crate::domain::Language::En,
        )
    }

    /// The same in Chinese.
    pub fn summary_zh(f: &Finding) -> String {
        crate::api::summary_of(
            f.detector,
            f.kind,
            &f.evidence,
            &TEST_NAMES,
            crate::domain::Language::Zh,
        )
    }

    const TEST_NAMES: crate::api::Names<'static> = crate::api::Names {
        enterprise: "Test Power",
        outlet: "1# stack",
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/DETECTORS.md has one section per registry entry, in its order, under the name the detector reports.
    #[test]
    fn the_detector_docs_follow_the_registry() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/DETECTORS.md");
        let doc = std::fs::read_to_string(path).expect("docs/DETECTORS.md");
        let documented: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("## `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let registered: Vec<&str> = DETECTORS.iter().map(|d| d.name).collect();
        assert_eq!(documented, registered);
    }
}

//! The detection engine: routes accepted points to the outlets they concern, aligns them per outlet in data time and
//! runs every detector on every closed minute. Pure and synchronous; the thread that drives it lives in
//! [`super::task`].

use crate::detect::{DetectConfig, Detector, Finding, Minute, OutletContext, DETECTORS};
use crate::domain::Point;
use crate::domain::{routing, OutletTopology};
use crate::models::{ActiveModels, ModelArtifact};
use crate::signal::align::{Admission, OutletAligner, OutletRow};
use crate::signal::process::ProcessTracker;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A finding together with the outlet and enterprise it belongs to.
#[derive(Debug, Clone)]
pub struct OutletFinding {
    /// Enterprise of the outlet.
    pub enterprise_id: String,
    /// Stack outlet.
    pub outlet_id: String,
    /// The finding.
    pub finding: Finding,
}

struct OutletState {
    topology: OutletTopology,
    aligner: OutletAligner,
    process: ProcessTracker,
    detectors: Vec<Box<dyn Detector>>,
    model: Option<Arc<ModelArtifact>>,
}

/// Per outlet in a snapshot: the aligner, the process tracker, and each detector's blob by detector name.
type OutletSnapshot = (OutletAligner, ProcessTracker, BTreeMap<String, Vec<u8>>);

/// Serialized engine state.
#[derive(Serialize, Deserialize, Default)]
pub struct EngineSnapshot {
    outlets: BTreeMap<String, OutletSnapshot>,
    late_total: u64,
}

/// Engine settings.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// Detector settings.
    pub detect: DetectConfig,
    /// How far behind an outlet's watermark data is still taken into detection (ms).
    pub allowed_lateness_ms: i64,
    /// The models detectors judge outlets by; activation elsewhere is seen at the next batch.
    pub models: Arc<ActiveModels>,
}

/// The engine.
pub struct Engine {
    config: EngineConfig,
    outlets: BTreeMap<String, OutletState>,
    routes: HashMap<String, Vec<String>>,
    late_total: u64,
    rows: Vec<OutletRow>,
    models_generation: Option<u64>,
}

impl Engine {
    /// An engine with no outlets yet; call [`Engine::set_topology`].
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            outlets: BTreeMap::new(),
            routes: HashMap::new(),
            late_total: 0,
            rows: Vec::new(),
            models_generation: None,
        }
    }

    /// Installs the current registry view. Outlets keep their alignment and detector state; new outlets start fresh;
    /// outlets no longer registered are dropped.
    pub fn set_topology(&mut self, topologies: Vec<OutletTopology>) {
        self.routes = routing(&topologies);
        let mut next = BTreeMap::new();
        for t in topologies {
            let id = t.outlet.id.clone();
            let state = match self.outlets.remove(&id) {
                Some(mut s) => {
                    s.topology = t;
                    s
                }
                None => OutletState {
                    topology: t,
                    aligner: OutletAligner::default(),
                    process: ProcessTracker::default(),
                    detectors: DETECTORS
                        .iter()
                        .map(|d| (d.build)(&self.config.detect))
                        .collect(),
                    model: None,
                },
            };
            next.insert(id, state);
        }
        self.outlets = next;
        self.models_generation = None;
    }

    /// Re-resolves each outlet's model when a model was activated since the last look.
    fn refresh_models(&mut self) {
        let generation = self.config.models.generation();
        if self.models_generation == Some(generation) {
            return;
        }
        for s in self.outlets.values_mut() {
            s.model = self
                .config
                .models
                .resolve(&s.topology.outlet.id, &s.topology.enterprise.industry);
        }
        self.models_generation = Some(generation);
    }

    /// Feeds accepted points; returns how many were too late for detection.
    pub fn ingest(&mut self, points: &[Point], out: &mut Vec<OutletFinding>) -> u64 {
        let mut late = 0;
        let mut touched: Vec<String> = Vec::new();
        for p in points {
            let Some(outlets) = self.routes.get(&p.source_id) else {
                continue;
            };
            let mut was_late = false;
            for outlet_id in outlets {
                let Some(state) = self.outlets.get_mut(outlet_id) else {
                    continue;
                };
                match state.aligner.add(p, state.topology.role_of(&p.source_id)) {
                    Admission::Late => was_late = true,
                    Admission::Taken => {
                        if touched.last() != Some(outlet_id) && !touched.contains(outlet_id) {
                            touched.push(outlet_id.clone());
                        }
                    }
                    Admission::Ignored => {}
                }
            }
            if was_late {
                late += 1;
            }
        }
        self.late_total += late;
        for outlet_id in touched {
            self.run_outlet(&outlet_id, false, out);
        }
        late
    }

    /// Closes every open minute and episode at the latest data time (end of a replay).
    pub fn finalize(&mut self, out: &mut Vec<OutletFinding>) {
        let ids: Vec<String> = self.outlets.keys().cloned().collect();
        for id in ids {
            self.run_outlet(&id, true, out);
        }
    }

    fn run_outlet(&mut self, outlet_id: &str, finalize: bool, out: &mut Vec<OutletFinding>) {
        self.refresh_models();
        let lateness = self.config.allowed_lateness_ms;
        let Some(state) = self.outlets.get_mut(outlet_id) else {
            return;
        };
        self.rows.clear();
        if finalize {
            state.aligner.drain_all(&mut self.rows);
        } else {
            state.aligner.drain_ready(lateness, &mut self.rows);
        }
        let ctx = OutletContext {
            topology: &state.topology,
            config: &self.config.detect,
            model: state.model.as_deref(),
        };
        let mut findings = Vec::new();
        for row in &self.rows {
            let process = state
                .process
                .observe(&state.topology, row, self.config.detect.equipment);
            let minute = Minute {
                row,
                process: &process,
            };
            for d in &mut state.detectors {
                d.observe(&ctx, &minute, &mut findings);
            }
        }
        if finalize {
            for d in &mut state.detectors {
                d.finish(&ctx, &mut findings);
            }
        }
        out.extend(findings.into_iter().map(|finding| OutletFinding {
            enterprise_id: state.topology.outlet.enterprise_id.clone(),
            outlet_id: outlet_id.to_string(),
            finding,
        }));
    }

    /// Latest data time seen over all outlets.
    pub fn watermark_ms(&self) -> i64 {
        self.outlets
            .values()
            .filter_map(|s| s.aligner.watermark_ms)
            .max()
            .unwrap_or(0)
    }

    /// Points left out of detection as late, since the store was created.
    pub fn late_total(&self) -> u64 {
        self.late_total
    }

    /// Current state for a checkpoint.
    ///
    /// # Errors
    /// A detector whose state cannot be encoded (named, with the outlet).
    pub fn snapshot(&self) -> Result<EngineSnapshot, String> {
        let mut outlets = BTreeMap::new();
        for (id, s) in &self.outlets {
            // Detectors are built in registry order, so each one's state is filed under its registry name.
            let blobs = s
                .detectors
                .iter()
                .zip(DETECTORS)
                .map(|(d, spec)| {
                    d.save()
                        .map(|blob| (spec.name.to_string(), blob))
                        .map_err(|e| format!("{} of outlet {id}: {e}", spec.name))
                })
                .collect::<Result<_, _>>()?;
            outlets.insert(id.clone(), (s.aligner.clone(), s.process.clone(), blobs));
        }
        Ok(EngineSnapshot {
            outlets,
            late_total: self.late_total,
        })
    }

    /// Restores a snapshot onto the current topology. State of a detector whose name (version) changed is dropped:
    /// it relearns rather than misreading an old format.
    pub fn restore(&mut self, snap: EngineSnapshot) -> Vec<String> {
        let mut problems = Vec::new();
        self.late_total = snap.late_total;
        for (id, (aligner, process, blobs)) in snap.outlets {
            let Some(state) = self.outlets.get_mut(&id) else {
                continue;
            };
            state.aligner = aligner;
            state.process = process;
            for (d, spec) in state.detectors.iter_mut().zip(DETECTORS) {
                if let Some(blob) = blobs.get(spec.name) {
                    if let Err(e) = d.restore(blob) {
                        problems.push(format!("{id}/{}: {e}", spec.name));
                    }
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{topology, T0};
    use crate::domain::{Interval, ValueFlag, MS_PER_MINUTE};
    use crate::signal::align::POWER_CODE;

    fn power(meter: &str, minute: i64, kw: f64) -> Point {
        Point {
            source_id: meter.into(),
            code: POWER_CODE.into(),
            time_ms: T0 + minute * MS_PER_MINUTE,
            interval: Interval::Minute,
            value: kw,
            flag: ValueFlag::Normal,
            converted: None,
        }
    }

    fn engine(lateness_min: i64) -> Engine {
        let mut e = Engine::new(EngineConfig {
            detect: DetectConfig::default(),
            allowed_lateness_ms: lateness_min * MS_PER_MINUTE,
            ..EngineConfig::default()
        });
        e.set_topology(vec![topology()]);
        e
    }

    fn scrubber_off_day(minutes: std::ops::Range<i64>) -> Vec<Point> {
        minutes
            .flat_map(|i| {
                let t = if (300..400).contains(&i) { 0.0 } else { 150.0 };
                [power("p1", i, 800.0), power("t1", i, t)]
            })
            .collect()
    }

    #[test]
    fn routes_meter_points_to_their_outlet_and_finds_the_episode() {
        let mut e = engine(30);
        let mut out = Vec::new();
        e.ingest(&scrubber_off_day(0..600), &mut out);
        assert!(
            out.iter()
                .any(|f| !f.finding.ongoing && f.outlet_id == "s1"),
            "{out:#?}"
        );
        assert_eq!(e.watermark_ms(), T0 + 599 * MS_PER_MINUTE);
    }

    #[test]
    fn late_points_are_counted_not_detected() {
        let mut e = engine(30);
        let mut out = Vec::new();
        e.ingest(&scrubber_off_day(100..600), &mut out);
        // Minutes 0..100 arrive after minutes up to 570 have been handed over.
        let late = e.ingest(&scrubber_off_day(0..100), &mut out);
        assert_eq!(late, 200);
        assert_eq!(e.late_total(), 200);
        // Within the lateness: taken.
        let taken = e.ingest(&[power("p1", 590, 800.0)], &mut out);
        assert_eq!(taken, 0);
    }

    #[test]
    fn snapshot_restore_then_replay_gives_identical_findings() {
        let data = scrubber_off_day(0..600);
        let (first, rest) = data.split_at(700);
        let mut a = engine(30);
        let mut out_a = Vec::new();
        a.ingest(first, &mut out_a);
        let blob = crate::store::encode_state(&a.snapshot().unwrap()).unwrap();
        a.ingest(rest, &mut out_a);
        a.finalize(&mut out_a);

        let mut b = engine(30);
        let problems = b.restore(crate::store::decode_state(&blob).unwrap());
        assert!(problems.is_empty(), "{problems:?}");
        let mut out_b: Vec<OutletFinding> = Vec::new();
        b.ingest(rest, &mut out_b);
        b.finalize(&mut out_b);
        let tail_a: Vec<_> = out_a
            .iter()
            .map(|f| &f.finding)
            .skip(out_a.len() - out_b.len())
            .collect();
        let tail_b: Vec<_> = out_b.iter().map(|f| &f.finding).collect();
        assert_eq!(tail_a, tail_b);
        assert!(!tail_b.is_empty());
    }
}

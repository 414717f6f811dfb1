//! The models' edge with the store and the service: every stored version, which one is active per scope (with the
//! previous one kept for rollback), background training jobs with progress, evaluation of a version on a period and on
//! officers' reviews, and the labelled dataset export data scientists retrain from.

use super::ReviewedAnomalies;
use crate::detect::{model_residual, DetectConfig};
use crate::domain::OutletTopology;
use crate::domain::{Anomaly, AnomalyFilter, AnomalyKind, Clock, ReviewStatus, MS_PER_DAY};
use crate::models::artifact::{ModelArtifact, ModelScope};
use crate::models::calibrate::Calibration;
use crate::models::dataset::{self, OutletSeries};
use crate::models::features::targets_of;
use crate::models::train::{self, TrainSpec};
use crate::models::{priors, regression, ActiveModels};
use crate::registry::RegistryRef;
use crate::signal::align::OutletRow;
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Meta document naming the active version of each scope.
const ACTIVE_DOC: &str = "models_active";
/// Default training window when none is given: the last 14 days of data.
const DEFAULT_WINDOW_MS: i64 = 14 * MS_PER_DAY;
/// Training jobs remembered for `GetTrainingJob`.
const MAX_JOBS: usize = 100;
/// Matching tolerance between a model's episode and a reviewed anomaly.
const LABEL_TOLERANCE_MS: i64 = 30 * 60_000;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No such model, outlet, industry or job.
    #[error("not found: {0}")]
    NotFound(String),
    /// A request that cannot be served as asked.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The active version of a scope and the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ActiveEntry {
    /// Active version (0 = the shipped prior).
    pub version: u32,
    /// Version active before, for rollback.
    pub previous: Option<u32>,
}

/// A model version as listed.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The artifact.
    pub artifact: Arc<ModelArtifact>,
    /// In use by detection.
    pub active: bool,
    /// The version active before the current one of this scope (rollback target).
    pub rollback_to: Option<u32>,
    /// Shipped with the binary (version 0 of an industry), not trained here.
    pub builtin: bool,
}

/// What to train.
#[derive(Debug, Clone, Default)]
pub struct TrainRequest {
    /// One model per outlet.
    pub outlet_ids: Vec<String>,
    /// Or one pooled prior over every outlet of this industry.
    pub industry: String,
    /// Window start (0 = 14 days before its end).
    pub from_ms: i64,
    /// Window end (0 = the latest data).
    pub to_ms: i64,
    /// Activate each new version once trained.
    pub activate: bool,
    /// False alarms per enterprise-day to calibrate for (0 = default).
    pub false_alarms_per_day: f64,
}

/// State of a training job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum JobState {
    /// Still fitting.
    Running,
    /// Finished; see the model ids.
    Done,
    /// Failed; see the message.
    Failed,
}

/// A training job as reported.
#[derive(Debug, Clone)]
pub struct JobStatus {
    /// Job id.
    pub id: u64,
    /// State.
    pub state: JobState,
    /// 0..1.
    pub progress: f64,
    /// What it is doing, or why it failed.
    pub message: String,
    /// Versions created so far.
    pub model_ids: Vec<String>,
}

/// Evaluation of one version.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evaluation {
    /// Model id.
    pub model_id: String,
    /// Evaluated window.
    pub from_ms: i64,
    /// End of the window.
    pub to_ms: i64,
    /// Running minutes scored.
    pub rows: usize,
    /// Days of data per outlet, summed.
    pub outlet_days: f64,
    /// Per target: R² and relative accuracy on the window.
    pub targets: Vec<TargetEvaluation>,
    /// Episodes the model's detector raised on the window.
    pub episodes: usize,
    /// Episodes per outlet-day.
    pub episodes_per_outlet_day: f64,
    /// Per reviewed kind: confirmed anomalies found, false positives overlapped.
    pub labels: Vec<LabelEvaluation>,
    /// Of the episodes overlapping a reviewed anomaly, the share overlapping a confirmed one.
    pub precision_on_reviewed: Option<f64>,
}

/// One target's fit on the evaluated window.
#[derive(Debug, Clone, Serialize)]
pub struct TargetEvaluation {
    /// Target.
    pub target: String,
    /// Rows with the target.
    pub n: usize,
    /// R².
    pub r2: f64,
    /// Mean absolute error / mean absolute value.
    pub relative_accuracy: f64,
}

/// Reviewed anomalies of one kind against the model's episodes.
#[derive(Debug, Clone, Serialize)]
pub struct LabelEvaluation {
    /// Kind of the reviewed anomalies.
    pub kind: AnomalyKind,
    /// Confirmed anomalies of the kind in the window.
    pub confirmed: usize,
    /// Of those, overlapped by a model episode.
    pub confirmed_found: usize,
    /// False-positive anomalies of the kind.
    pub false_positive: usize,
    /// Of those, overlapped by a model episode (the model repeating a false alarm).
    pub false_positive_flagged: usize,
    /// confirmed_found / confirmed.
    pub recall: Option<f64>,
}

/// A checked export request: the outlets, the window and the anomalies that label the rows.
pub struct DatasetPlan {
    members: Vec<OutletTopology>,
    from_ms: i64,
    to_ms: i64,
    flagged: Vec<Anomaly>,
    reviewed: Vec<(Anomaly, bool)>,
}

impl DatasetPlan {
    /// Outlets to export, in order.
    pub fn outlets(&self) -> usize {
        self.members.len()
    }
}

/// One exported row: a running minute of an outlet with the reviewed label over it.
#[derive(Debug, Clone, Default)]
pub struct DatasetRow {
    /// Enterprise.
    pub enterprise_id: String,
    /// Outlet.
    pub outlet_id: String,
    /// Start of the minute (Unix ms).
    pub minute_ms: i64,
    /// Production / normal.
    pub production_fraction: f64,
    /// Targets and O2.
    pub values: BTreeMap<String, f64>,
    /// `CONFIRMED`, `FALSE_POSITIVE`, or empty when no reviewed anomaly covers the minute.
    pub label: String,
    /// Kinds of the reviewed anomalies covering it.
    pub label_kinds: Vec<AnomalyKind>,
    /// Kinds of any anomaly (reviewed or not) covering it.
    pub flagged_kinds: Vec<AnomalyKind>,
}

#[derive(Default)]
struct Inner {
    versions: BTreeMap<ModelScope, BTreeMap<u32, Arc<ModelArtifact>>>,
    active: BTreeMap<ModelScope, ActiveEntry>,
    jobs: BTreeMap<u64, JobStatus>,
}

/// Model versions, activation, training, evaluation, export.
pub struct ModelCatalog {
    store: Store,
    registry: RegistryRef,
    book: Arc<dyn ReviewedAnomalies>,
    active: Arc<ActiveModels>,
    detect: DetectConfig,
    clock: Clock,
    inner: Mutex<Inner>,
}

impl ModelCatalog {
    /// Loads every stored version and the active set (the shipped priors are version 0 of their industry, active
    /// unless another version was activated) and installs the active models for detection.
    ///
    /// # Errors
    /// Store failure.
    pub fn open(
        store: Store,
        registry: RegistryRef,
        book: Arc<dyn ReviewedAnomalies>,
        active: Arc<ActiveModels>,
        detect: DetectConfig,
        clock: Clock,
    ) -> Result<Self, CatalogError> {
        let mut inner = Inner::default();
        for p in priors::builtin() {
            inner
                .versions
                .entry(p.scope.clone())
                .or_default()
                .insert(0, Arc::new(p));
        }
        for blob in store.model_blobs()? {
            match ModelArtifact::decode(&blob) {
                Ok(m) => {
                    inner
                        .versions
                        .entry(m.scope.clone())
                        .or_default()
                        .insert(m.version, Arc::new(m));
                }
                Err(e) => tracing::warn!(error = %e, "Stored model unreadable; skipped."),
            }
        }
        let stored: BTreeMap<String, ActiveEntry> =
            store.meta_json(ACTIVE_DOC)?.unwrap_or_default();
        for (scope, versions) in &inner.versions {
            let entry = stored
                .get(&scope.key())
                .copied()
                .filter(|e| versions.contains_key(&e.version))
                .or_else(|| {
                    versions.contains_key(&0).then_some(ActiveEntry {
                        version: 0,
                        previous: None,
                    })
                });
            if let Some(e) = entry {
                inner.active.insert(scope.clone(), e);
                if let Some(m) = versions.get(&e.version) {
                    active.set(m.clone());
                }
            }
        }
        Ok(Self {
            store,
            registry,
            book,
            active,
            detect,
            clock,
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every version, optionally of one scope, newest first within a scope.
    pub fn list(&self, scope: Option<&ModelScope>) -> Vec<ModelInfo> {
        let inner = self.lock();
        let mut out = Vec::new();
        for (s, versions) in &inner.versions {
            if scope.is_some_and(|want| want != s) {
                continue;
            }
            let entry = inner.active.get(s);
            for (v, m) in versions.iter().rev() {
                out.push(ModelInfo {
                    artifact: m.clone(),
                    active: entry.is_some_and(|e| e.version == *v),
                    rollback_to: entry.filter(|e| e.version == *v).and_then(|e| e.previous),
                    builtin: *v == 0,
                });
            }
        }
        out
    }

    /// A version by id (`outlet:s1@3`).
    ///
    /// # Errors
    /// Malformed or unknown id.
    pub fn get(&self, id: &str) -> Result<Arc<ModelArtifact>, CatalogError> {
        let (scope, version) = parse_id(id)?;
        self.lock()
            .versions
            .get(&scope)
            .and_then(|v| v.get(&version))
            .cloned()
            .ok_or_else(|| CatalogError::NotFound(format!("model {id}")))
    }

    /// Makes a version the active one of its scope; detection uses it from its next batch, without a restart. The
    /// version it replaces is remembered for rollback (activate it again to roll back).
    ///
    /// # Errors
    /// Unknown id or store failure (then nothing changes).
    pub fn activate(&self, id: &str) -> Result<ActiveEntry, CatalogError> {
        let model = self.get(id)?;
        let mut inner = self.lock();
        let previous = inner
            .active
            .get(&model.scope)
            .map(|e| e.version)
            .filter(|v| *v != model.version);
        let entry = ActiveEntry {
            version: model.version,
            previous,
        };
        let mut doc: BTreeMap<String, ActiveEntry> =
            inner.active.iter().map(|(s, e)| (s.key(), *e)).collect();
        doc.insert(model.scope.key(), entry);
        self.store.put_meta_json(ACTIVE_DOC, &doc)?;
        inner.active.insert(model.scope.clone(), entry);
        drop(inner);
        self.active.set(model);
        Ok(entry)
    }

    /// Starts training in the background and returns the job id; [`ModelCatalog::job`] reports progress.
    ///
    /// # Errors
    /// An invalid request (nothing to train, unknown outlet or industry), found before the job starts.
    pub fn start_training(self: &Arc<Self>, req: TrainRequest) -> Result<u64, CatalogError> {
        let plan = self.plan(&req)?;
        let id = {
            let mut inner = self.lock();
            let id = inner.jobs.keys().next_back().map_or(1, |k| k + 1);
            // Keep the newest finished jobs only; a running job is never forgotten.
            while inner.jobs.len() >= MAX_JOBS {
                let Some(old) = inner
                    .jobs
                    .iter()
                    .find(|(_, j)| j.state != JobState::Running)
                    .map(|(k, _)| *k)
                else {
                    break;
                };
                inner.jobs.remove(&old);
            }
            inner.jobs.insert(
                id,
                JobStatus {
                    id,
                    state: JobState::Running,
                    progress: 0.0,
                    message: "reading history".into(),
                    model_ids: Vec::new(),
                },
            );
            id
        };
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("train-{id}"))
            .spawn(move || {
                // A panic in fitting fails the job (and is logged); it never leaves it running or reads as done.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    this.run_training(id, &req, plan)
                }))
                .unwrap_or_else(|_| {
                    tracing::error!(job = id, "Training job panicked.");
                    Err(CatalogError::Invalid(
                        "training failed unexpectedly; see server log".into(),
                    ))
                });
                this.update_job(id, |j| match result {
                    Ok(ids) => {
                        j.state = JobState::Done;
                        j.progress = 1.0;
                        j.message = format!("trained {}", ids.join(", "));
                        j.model_ids = ids;
                    }
                    Err(e) => {
                        j.state = JobState::Failed;
                        j.message = e.to_string();
                    }
                });
            });
        if let Err(e) = spawned {
            self.update_job(id, |j| {
                j.state = JobState::Failed;
                j.message = format!("no thread: {e}");
            });
        }
        Ok(id)
    }

    /// Trains synchronously (the scheduler and the CLI's offline paths); returns the new model ids.
    ///
    /// # Errors
    /// Invalid request or store failure.
    pub fn train_now(&self, req: &TrainRequest) -> Result<Vec<String>, CatalogError> {
        let plan = self.plan(req)?;
        self.run_training(0, req, plan)
    }

    /// A job's status.
    pub fn job(&self, id: u64) -> Option<JobStatus> {
        self.lock().jobs.get(&id).cloned()
    }

    fn update_job(&self, id: u64, f: impl FnOnce(&mut JobStatus)) {
        if let Some(j) = self.lock().jobs.get_mut(&id) {
            f(j);
        }
    }

    /// The scopes to fit and the outlets each one reads.
    fn plan(
        &self,
        req: &TrainRequest,
    ) -> Result<Vec<(ModelScope, Vec<OutletTopology>)>, CatalogError> {
        if !req.outlet_ids.is_empty() && !req.industry.is_empty() {
            return Err(CatalogError::Invalid(
                "give outlet ids or an industry, not both".into(),
            ));
        }
        if req.to_ms != 0 && req.from_ms >= req.to_ms {
            return Err(CatalogError::Invalid(format!(
                "empty window [{}, {})",
                req.from_ms, req.to_ms
            )));
        }
        if !req.false_alarms_per_day.is_finite() || req.false_alarms_per_day < 0.0 {
            return Err(CatalogError::Invalid(
                "false_alarms_per_day must be ≥ 0".into(),
            ));
        }
        if !req.industry.is_empty() {
            let scope = ModelScope::Industry(req.industry.clone());
            let members = self.members_of(&scope);
            if members.is_empty() {
                return Err(CatalogError::NotFound(format!(
                    "stack outlets of industry {}",
                    req.industry
                )));
            }
            return Ok(vec![(scope, members)]);
        }
        if req.outlet_ids.is_empty() {
            return Err(CatalogError::Invalid(
                "name outlet ids or an industry to train".into(),
            ));
        }
        Ok(self
            .stack_outlets(&req.outlet_ids)?
            .into_iter()
            .map(|t| (ModelScope::Outlet(t.outlet.id.clone()), vec![t]))
            .collect())
    }

    fn run_training(
        &self,
        job: u64,
        req: &TrainRequest,
        plan: Vec<(ModelScope, Vec<OutletTopology>)>,
    ) -> Result<Vec<String>, CatalogError> {
        let mut ids = Vec::new();
        let parts = plan.len() as f64;
        for (i, (scope, members)) in plan.into_iter().enumerate() {
            self.update_job(job, |j| j.message = format!("reading history of {scope}"));
            let (from_ms, to_ms) = self.window(&members, req.from_ms, req.to_ms)?;
            let series: Vec<OutletSeries> = members
                .iter()
                .map(|t| {
                    let rows = self.aligned(t, from_ms, to_ms)?;
                    Ok(dataset::series(
                        t,
                        &rows,
                        self.detect.equipment,
                        self.detect.exceedance.o2_ceiling_pct,
                    ))
                })
                .collect::<Result<_, CatalogError>>()?;
            let mut targets: Vec<String> = members.iter().flat_map(targets_of).collect();
            targets.sort();
            targets.dedup();
            let calibration = Calibration {
                false_alarms_per_day: if req.false_alarms_per_day > 0.0 {
                    req.false_alarms_per_day
                } else {
                    Calibration::default().false_alarms_per_day
                },
                ..Calibration::default()
            };
            let spec = TrainSpec {
                scope: scope.clone(),
                // The version is assigned when the artifact is saved: two jobs may fit one scope at once.
                version: 0,
                targets,
                from_ms,
                to_ms,
                created_ms: (self.clock)(),
                calibration,
            };
            self.update_job(job, |j| j.message = format!("fitting {scope}"));
            let progress = |p: f64| self.update_job(job, |j| j.progress = (i as f64 + p) / parts);
            let artifact = train::fit(&spec, &series, &progress);
            if artifact.fitted.targets.is_empty() {
                return Err(CatalogError::Invalid(format!(
                    "{scope}: nothing could be fitted on [{from_ms}, {to_ms}): {}",
                    artifact.notes.join("; ")
                )));
            }
            let id = self.save(artifact)?;
            if req.activate {
                self.activate(&id)?;
            }
            self.update_job(job, |j| j.model_ids.push(id.clone()));
            ids.push(id);
        }
        Ok(ids)
    }

    /// Stores a fitted artifact as the scope's next version (not activated) and returns its id. Numbering happens
    /// here, under the lock, so concurrent training jobs of one scope get distinct versions.
    ///
    /// # Errors
    /// Store failure (then nothing is added).
    pub fn save(&self, mut artifact: ModelArtifact) -> Result<String, CatalogError> {
        let mut inner = self.lock();
        let versions = inner.versions.entry(artifact.scope.clone()).or_default();
        artifact.version = versions.keys().next_back().copied().unwrap_or(0) + 1;
        self.store.put_model(
            &artifact.scope.key(),
            artifact.version,
            &artifact.encode().map_err(|reason| StoreError::Encode {
                what: "model",
                reason,
            })?,
        )?;
        let id = artifact.id();
        versions.insert(artifact.version, Arc::new(artifact));
        Ok(id)
    }

    /// The window to read: as asked, or the last 14 days of the outlets' data.
    fn window(
        &self,
        members: &[OutletTopology],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<(i64, i64), CatalogError> {
        let to = if to_ms != 0 {
            to_ms
        } else {
            let mut latest = None;
            for t in members {
                if let Some((_, last)) = self.store.time_bounds(&t.outlet.id, &[])? {
                    latest = Some(latest.map_or(last, |l: i64| l.max(last)));
                }
            }
            latest.map(|l| l + 1).ok_or_else(|| {
                CatalogError::Invalid("no stored data for the chosen outlets".into())
            })?
        };
        let from = if from_ms != 0 {
            from_ms
        } else {
            to - DEFAULT_WINDOW_MS
        };
        Ok((from, to))
    }

    fn aligned(
        &self,
        t: &OutletTopology,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<OutletRow>, CatalogError> {
        let mut points = Vec::new();
        for source in t.source_ids() {
            points.extend(self.store.read_points(&source, &[], from_ms, to_ms)?);
        }
        Ok(dataset::align(t, &points))
    }

    /// The named stack outlets (every one when `ids` is empty).
    fn stack_outlets(&self, ids: &[String]) -> Result<Vec<OutletTopology>, CatalogError> {
        let all = self.registry.stack_topologies();
        if ids.is_empty() {
            return Ok(all);
        }
        ids.iter()
            .map(|id| {
                all.iter()
                    .find(|t| &t.outlet.id == id)
                    .cloned()
                    .ok_or_else(|| CatalogError::NotFound(format!("stack outlet {id}")))
            })
            .collect()
    }

    fn members_of(&self, scope: &ModelScope) -> Vec<OutletTopology> {
        self.registry
            .stack_topologies()
            .into_iter()
            .filter(|t| match scope {
                ModelScope::Outlet(id) => &t.outlet.id == id,
                ModelScope::Industry(name) => &t.enterprise.industry == name,
            })
            .collect()
    }

    /// Scores a version on a period (R² per target, episodes per outlet-day) and on the reviewed anomalies of that
    /// period (per kind: confirmed ones it finds, false positives it repeats).
    ///
    /// # Errors
    /// Unknown model, no outlets or data, store failure.
    pub fn evaluate(&self, id: &str, from_ms: i64, to_ms: i64) -> Result<Evaluation, CatalogError> {
        let model = self.get(id)?;
        let members = self.members_of(&model.scope);
        if members.is_empty() {
            return Err(CatalogError::NotFound(format!(
                "outlets of {}",
                model.scope
            )));
        }
        let (from_ms, to_ms) = self.window(&members, from_ms, to_ms)?;
        let mut eval = Evaluation {
            model_id: id.into(),
            from_ms,
            to_ms,
            ..Evaluation::default()
        };
        let mut all_rows = Vec::new();
        let mut episodes: Vec<(String, i64, i64)> = Vec::new();
        for t in &members {
            let rows = self.aligned(t, from_ms, to_ms)?;
            if let (Some(a), Some(b)) = (rows.first(), rows.last()) {
                eval.outlet_days += (b.minute_ms - a.minute_ms) as f64 / MS_PER_DAY as f64;
            }
            for f in model_residual::run_offline(t, &rows, &model, &self.detect) {
                episodes.push((t.outlet.id.clone(), f.start_ms, f.end_ms));
            }
            all_rows.extend(
                dataset::series(
                    t,
                    &rows,
                    self.detect.equipment,
                    self.detect.exceedance.o2_ceiling_pct,
                )
                .rows,
            );
        }
        eval.rows = all_rows.len();
        for target in &model.fitted.targets {
            let refs: Vec<_> = all_rows
                .iter()
                .filter(|r| r.values.contains_key(&target.target))
                .collect();
            let (r2, ra) = regression::quality(target, &refs);
            eval.targets.push(TargetEvaluation {
                target: target.target.clone(),
                n: refs.len(),
                r2,
                relative_accuracy: ra,
            });
        }
        eval.episodes = episodes.len();
        eval.episodes_per_outlet_day = if eval.outlet_days > 0.0 {
            episodes.len() as f64 / eval.outlet_days
        } else {
            0.0
        };
        let reviewed = self.reviewed(&members, from_ms, to_ms);
        let overlaps = |a: &Anomaly, e: &(String, i64, i64)| {
            a.outlet_id == e.0
                && e.1 <= a.end_ms + LABEL_TOLERANCE_MS
                && a.start_ms <= e.2 + LABEL_TOLERANCE_MS
        };
        let mut by_kind: BTreeMap<AnomalyKind, LabelEvaluation> = BTreeMap::new();
        for (a, confirmed) in &reviewed {
            let e = by_kind.entry(a.kind).or_insert(LabelEvaluation {
                kind: a.kind,
                confirmed: 0,
                confirmed_found: 0,
                false_positive: 0,
                false_positive_flagged: 0,
                recall: None,
            });
            let hit = episodes.iter().any(|ep| overlaps(a, ep));
            if *confirmed {
                e.confirmed += 1;
                e.confirmed_found += usize::from(hit);
            } else {
                e.false_positive += 1;
                e.false_positive_flagged += usize::from(hit);
            }
        }
        for e in by_kind.values_mut() {
            e.recall = (e.confirmed > 0).then(|| e.confirmed_found as f64 / e.confirmed as f64);
        }
        eval.labels = by_kind.into_values().collect();
        let (mut on_reviewed, mut on_confirmed) = (0usize, 0usize);
        for ep in &episodes {
            let hits: Vec<bool> = reviewed
                .iter()
                .filter(|(a, _)| overlaps(a, ep))
                .map(|(_, c)| *c)
                .collect();
            if !hits.is_empty() {
                on_reviewed += 1;
                on_confirmed += usize::from(hits.iter().any(|c| *c));
            }
        }
        eval.precision_on_reviewed =
            (on_reviewed > 0).then(|| on_confirmed as f64 / on_reviewed as f64);
        Ok(eval)
    }

    /// Reviewed anomalies of the outlets overlapping the window, with `true` for confirmed (also once rectified or
    /// closed after confirmation) and `false` for false positives.
    fn reviewed(
        &self,
        members: &[OutletTopology],
        from_ms: i64,
        to_ms: i64,
    ) -> Vec<(Anomaly, bool)> {
        let filter = AnomalyFilter {
            enterprise_ids: members.iter().map(|t| t.enterprise.id.clone()).collect(),
            from_ms,
            to_ms,
            ..AnomalyFilter::default()
        };
        self.book
            .matching(&filter)
            .into_iter()
            .filter(|a| members.iter().any(|t| t.outlet.id == a.outlet_id))
            .filter_map(|a| {
                let confirmed = a.status == ReviewStatus::Confirmed
                    || a.reviews.iter().any(|r| r.to == ReviewStatus::Confirmed);
                let label = if a.status == ReviewStatus::FalsePositive {
                    Some(false)
                } else if confirmed {
                    Some(true)
                } else {
                    None
                };
                label.map(|l| (a, l))
            })
            .collect()
    }

    /// Checks an export request and gathers what labels its rows: the outlets, the window, the anomalies over it.
    /// Rows are then produced one outlet at a time ([`ModelCatalog::dataset_rows`]), so an export of every outlet
    /// over months never holds more than one outlet's rows.
    ///
    /// # Errors
    /// Unknown outlet, no data, store failure.
    pub fn dataset_plan(
        &self,
        outlet_ids: &[String],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<DatasetPlan, CatalogError> {
        let members = self.stack_outlets(outlet_ids)?;
        let (from_ms, to_ms) = self.window(&members, from_ms, to_ms)?;
        let flagged = self.book.matching(&AnomalyFilter {
            enterprise_ids: members.iter().map(|t| t.enterprise.id.clone()).collect(),
            from_ms,
            to_ms,
            ..AnomalyFilter::default()
        });
        let reviewed = self.reviewed(&members, from_ms, to_ms);
        Ok(DatasetPlan {
            members,
            from_ms,
            to_ms,
            flagged,
            reviewed,
        })
    }

    /// The aligned feature rows of the plan's `index`-th outlet, with the reviewed label over each minute.
    ///
    /// # Errors
    /// Store failure.
    pub fn dataset_rows(
        &self,
        plan: &DatasetPlan,
        index: usize,
    ) -> Result<Vec<DatasetRow>, CatalogError> {
        let Some(t) = plan.members.get(index) else {
            return Ok(Vec::new());
        };
        let rows = self.aligned(t, plan.from_ms, plan.to_ms)?;
        let mine = |a: &&Anomaly| a.outlet_id == t.outlet.id;
        let flagged: Vec<&Anomaly> = plan.flagged.iter().filter(mine).collect();
        let reviewed: Vec<&(Anomaly, bool)> =
            plan.reviewed.iter().filter(|(a, _)| mine(&a)).collect();
        let mut out = Vec::new();
        for r in dataset::series(
            t,
            &rows,
            self.detect.equipment,
            self.detect.exceedance.o2_ceiling_pct,
        )
        .rows
        {
            let covers = |a: &Anomaly| a.start_ms <= r.minute_ms && r.minute_ms < a.end_ms;
            let labels: Vec<&&(Anomaly, bool)> =
                reviewed.iter().filter(|(a, _)| covers(a)).collect();
            let label = if labels.iter().any(|(_, c)| *c) {
                "CONFIRMED"
            } else if labels.is_empty() {
                ""
            } else {
                "FALSE_POSITIVE"
            };
            let mut flagged_kinds: Vec<AnomalyKind> = flagged
                .iter()
                .filter(|a| covers(a))
                .map(|a| a.kind)
                .collect();
            flagged_kinds.sort();
            flagged_kinds.dedup();
            out.push(DatasetRow {
                enterprise_id: t.enterprise.id.clone(),
                outlet_id: t.outlet.id.clone(),
                minute_ms: r.minute_ms,
                production_fraction: r.production_fraction,
                values: r.values,
                label: label.into(),
                label_kinds: labels.iter().map(|(a, _)| a.kind).collect(),
                flagged_kinds,
            });
        }
        Ok(out)
    }

    /// Retrains every stack outlet that has data in the window ending at its latest data (the scheduled job).
    /// With `only_on_drift`, an outlet that has a model of its own is refitted only when its last day no longer fits
    /// that model ([`super::drift`]); outlets without one get their first. Outlets with too little history, or no
    /// data since their newest version was fitted, are skipped. Returns the new ids.
    pub fn retrain_all(
        &self,
        window_days: u32,
        activate: bool,
        only_on_drift: bool,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        for t in self.registry.stack_topologies() {
            let Ok((_, to)) = self.window(std::slice::from_ref(&t), 0, 0) else {
                continue;
            };
            let scope = ModelScope::Outlet(t.outlet.id.clone());
            // No data since the newest version was fitted: a refit would learn nothing new (and, for a target the
            // acceptance test rejected, would be asked for again at every run).
            if self
                .list(Some(&scope))
                .first()
                .is_some_and(|newest| newest.artifact.training_to_ms >= to)
            {
                continue;
            }
            if only_on_drift {
                let own = self.active.get(&scope);
                if let Some(model) = own {
                    let recent = self
                        .aligned(&t, to - MS_PER_DAY, to)
                        .map(|rows| {
                            dataset::series(
                                &t,
                                &rows,
                                self.detect.equipment,
                                self.detect.exceedance.o2_ceiling_pct,
                            )
                            .rows
                        })
                        .unwrap_or_default();
                    match crate::models::drift::drift(&model, &recent) {
                        Some(reason) => {
                            tracing::info!(outlet = %t.outlet.id, model = %model.id(), %reason, "Model drift: retraining.")
                        }
                        None => continue,
                    }
                }
            }
            let req = TrainRequest {
                outlet_ids: vec![t.outlet.id.clone()],
                from_ms: to - i64::from(window_days) * MS_PER_DAY,
                to_ms: to,
                activate,
                ..TrainRequest::default()
            };
            match self.train_now(&req) {
                Ok(mut new) => ids.append(&mut new),
                Err(e) => {
                    tracing::info!(outlet = %t.outlet.id, reason = %e, "Scheduled retraining skipped.")
                }
            }
        }
        ids
    }
}

/// Splits `outlet:s1@3` into scope and version.
fn parse_id(id: &str) -> Result<(ModelScope, u32), CatalogError> {
    let bad = || {
        CatalogError::Invalid(format!(
            "model id {id:?}: expected outlet:<id>@<version> or industry:<name>@<version>"
        ))
    };
    let (scope, version) = id.rsplit_once('@').ok_or_else(bad)?;
    Ok((
        ModelScope::parse(scope).ok_or_else(bad)?,
        version.parse().map_err(|_| bad())?,
    ))
}

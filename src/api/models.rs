//! `ModelService`.

use crate::models::ModelScope;
use crate::pb::{self, model_service_server::ModelService};
use crate::training::catalog::{
    CatalogError, DatasetRow, Evaluation, JobState, JobStatus, ModelInfo, TrainRequest,
};
use crate::training::ModelCatalog;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Rows per streamed message.
const EXPORT_CHUNK_ROWS: usize = 1000;
/// Messages buffered ahead of a slow client (back-pressure comes from the channel).
const EXPORT_CHANNEL: usize = 8;

/// The model service.
pub struct ModelApi {
    /// Versions, activation, training, evaluation, export.
    pub catalog: Arc<ModelCatalog>,
    /// Who activated what.
    pub audit: crate::auth::audit::AuditLog,
    /// Activations analysts asked for, awaiting a second principal (four eyes).
    pub approvals: Approvals,
}

/// How long an analyst's activation request waits for a second principal.
const APPROVAL_TTL_MS: i64 = 24 * 3_600_000;

/// Activation requests by model id: who asked (id, label) and when. Kept in memory: after a restart the request is
/// made again (the audit keeps every one).
#[derive(Default)]
pub struct Approvals(std::sync::Mutex<std::collections::HashMap<String, (String, String, i64)>>);

/// What an `ActivateModel` call does.
#[derive(Debug, PartialEq)]
enum Activation {
    /// Activate now; `Some(label)` when it approves that principal's request.
    Now(Option<String>),
    /// Recorded; waits for a second principal.
    Awaiting(String),
}

impl Approvals {
    /// An admin activates at once; an analyst's call approves another principal's pending request, or files its own.
    fn decide(&self, who: &crate::auth::Principal, model_id: &str, now_ms: i64) -> Activation {
        let mut pending = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.retain(|_, (_, _, at)| now_ms - *at < APPROVAL_TTL_MS);
        let asked = pending.get(model_id).cloned();
        match asked {
            Some((by, label, _)) if by != who.id => {
                pending.remove(model_id);
                Activation::Now(Some(label))
            }
            _ if who.role == crate::auth::Role::Admin => {
                pending.remove(model_id);
                Activation::Now(None)
            }
            _ => {
                pending.insert(model_id.to_string(), (who.id.clone(), who.label(), now_ms));
                Activation::Awaiting(who.label())
            }
        }
    }
}

/// Runs blocking catalog work (store reads, fitting) off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CatalogError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(crate::error::task_failed)?
        .map_err(Status::from)
}

#[tonic::async_trait]
impl ModelService for ModelApi {
    type ExportDatasetStream = Pin<Box<dyn Stream<Item = Result<pb::DatasetChunk, Status>> + Send>>;

    async fn train(
        &self,
        req: Request<pb::TrainRequest>,
    ) -> Result<Response<pb::TrainingJob>, Status> {
        let q = req.into_inner();
        let id = self.catalog.start_training(TrainRequest {
            outlet_ids: q.outlet_ids,
            industry: q.industry,
            from_ms: q.from_ms,
            to_ms: q.to_ms,
            activate: q.activate,
            false_alarms_per_day: q.false_alarms_per_day,
        })?;
        let job = self
            .catalog
            .job(id)
            .ok_or_else(|| crate::error::internal("model catalog", &"a started job vanished"))?;
        Ok(Response::new(job_to_pb(job)))
    }

    async fn get_training_job(
        &self,
        req: Request<pb::GetTrainingJobRequest>,
    ) -> Result<Response<pb::TrainingJob>, Status> {
        let id = req.into_inner().id;
        let job = self
            .catalog
            .job(id)
            .ok_or_else(|| Status::not_found(format!("training job {id}")))?;
        Ok(Response::new(job_to_pb(job)))
    }

    async fn list_models(
        &self,
        req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let scope = req.into_inner().scope;
        let scope = if scope.is_empty() {
            None
        } else {
            Some(ModelScope::parse(&scope).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "scope {scope:?}: expected outlet:<id> or industry:<name>"
                ))
            })?)
        };
        let models = self
            .catalog
            .list(scope.as_ref())
            .into_iter()
            .map(info_to_pb)
            .collect();
        Ok(Response::new(pb::ListModelsResponse { models }))
    }

    async fn get_model(
        &self,
        req: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::ModelFile>, Status> {
        let id = req.into_inner().id;
        let m = self.catalog.get(&id)?;
        Ok(Response::new(pb::ModelFile {
            id: m.id(),
            json: m
                .to_json()
                .map_err(|e| crate::error::internal("model catalog", &e))?,
        }))
    }

    async fn activate_model(
        &self,
        req: Request<pb::ActivateModelRequest>,
    ) -> Result<Response<pb::ModelInfo>, Status> {
        let who = crate::auth::layer::principal_of(&req)?;
        let id = req.into_inner().id;
        let model = self.catalog.get(&id)?;
        let info_of = || {
            self.catalog
                .list(Some(&model.scope))
                .into_iter()
                .find(|i| i.artifact.version == model.version)
                .ok_or_else(|| {
                    crate::error::internal("model catalog", &"an activated model vanished")
                })
        };
        let approved = match self
            .approvals
            .decide(&who, &id, crate::ingest::system_now_ms())
        {
            Activation::Awaiting(by) => {
                self.audit.changed(
                    &who,
                    "ActivateModel (requested; awaits a second principal)",
                    &id,
                    None::<&()>,
                    &(model.scope.clone(), model.version),
                )?;
                let mut info = info_to_pb(info_of()?);
                info.awaiting_approval_of = by;
                return Ok(Response::new(info));
            }
            Activation::Now(approved) => approved,
        };
        let catalog = self.catalog.clone();
        let activated = id.clone();
        blocking(move || catalog.activate(&activated)).await?;
        let action = match &approved {
            Some(asker) => format!("ActivateModel (approving {asker}'s request)"),
            None => "ActivateModel".to_string(),
        };
        self.audit.changed(
            &who,
            &action,
            &id,
            None::<&()>,
            &(model.scope.clone(), model.version),
        )?;
        let info = info_of()?;
        Ok(Response::new(info_to_pb(info)))
    }

    async fn evaluate_model(
        &self,
        req: Request<pb::EvaluateModelRequest>,
    ) -> Result<Response<pb::ModelEvaluation>, Status> {
        let q = req.into_inner();
        let catalog = self.catalog.clone();
        let e = blocking(move || catalog.evaluate(&q.id, q.from_ms, q.to_ms)).await?;
        Ok(Response::new(evaluation_to_pb(e)))
    }

    async fn export_dataset(
        &self,
        req: Request<pb::ExportDatasetRequest>,
    ) -> Result<Response<Self::ExportDatasetStream>, Status> {
        let q = req.into_inner();
        let catalog = self.catalog.clone();
        let plan =
            blocking(move || catalog.dataset_plan(&q.outlet_ids, q.from_ms, q.to_ms)).await?;
        let (tx, rx) = mpsc::channel(EXPORT_CHANNEL);
        let catalog = self.catalog.clone();
        // One outlet's rows at a time, off the async runtime; a slow client holds back the reading.
        tokio::task::spawn_blocking(move || {
            for i in 0..plan.outlets() {
                let rows = match catalog.dataset_rows(&plan, i) {
                    Ok(rows) => rows,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::from(e)));
                        return;
                    }
                };
                let mut rows = rows.into_iter().peekable();
                while rows.peek().is_some() {
                    let chunk = pb::DatasetChunk {
                        rows: rows
                            .by_ref()
                            .take(EXPORT_CHUNK_ROWS)
                            .map(row_to_pb)
                            .collect(),
                    };
                    if tx.blocking_send(Ok(chunk)).is_err() {
                        return; // client went away
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn job_to_pb(j: JobStatus) -> pb::TrainingJob {
    pb::TrainingJob {
        id: j.id,
        state: match j.state {
            JobState::Running => pb::JobState::Running,
            JobState::Done => pb::JobState::Done,
            JobState::Failed => pb::JobState::Failed,
        } as i32,
        progress: j.progress,
        message: j.message,
        model_ids: j.model_ids,
    }
}

fn info_to_pb(i: ModelInfo) -> pb::ModelInfo {
    let m = &i.artifact;
    pb::ModelInfo {
        id: m.id(),
        scope: m.scope.key(),
        version: m.version,
        active: i.active,
        builtin: i.builtin,
        rollback_to: i.rollback_to.unwrap_or(0),
        has_rollback: i.rollback_to.is_some(),
        created_ms: m.created_ms,
        training_from_ms: m.training_from_ms,
        training_to_ms: m.training_to_ms,
        training_outlets: m.training_outlets.clone(),
        inputs: m.inputs.clone(),
        targets: m
            .fitted
            .targets
            .iter()
            .map(|t| pb::TargetFit {
                target: t.target.clone(),
                intercept: t.intercept,
                coefficients: t.coefficients.clone(),
                residual_sd: t.residual_sd,
                r2_holdout: t.metrics.r2_holdout,
                relative_accuracy_holdout: t.metrics.relative_accuracy_holdout,
                accepted: t.accepted,
                n_train: t.metrics.n_train as u64,
            })
            .collect(),
        has_joint: m.fitted.joint.is_some(),
        joint_explained_variance: m.fitted.joint.as_ref().map_or(0.0, |j| j.explained),
        thresholds: m.thresholds.clone().into_iter().collect(),
        metrics: m.metrics.clone().into_iter().collect(),
        notes: m.notes.clone(),
        false_alarms_per_day: m.calibration.false_alarms_per_day,
        window_min: m.calibration.window_min,
        awaiting_approval_of: String::new(),
    }
}

fn evaluation_to_pb(e: Evaluation) -> pb::ModelEvaluation {
    pb::ModelEvaluation {
        model_id: e.model_id,
        from_ms: e.from_ms,
        to_ms: e.to_ms,
        rows: e.rows as u64,
        outlet_days: e.outlet_days,
        targets: e
            .targets
            .into_iter()
            .map(|t| pb::TargetEvaluation {
                target: t.target,
                n: t.n as u64,
                r2: t.r2,
                relative_accuracy: t.relative_accuracy,
            })
            .collect(),
        episodes: e.episodes as u64,
        episodes_per_outlet_day: e.episodes_per_outlet_day,
        labels: e
            .labels
            .into_iter()
            .map(|l| pb::LabelEvaluation {
                kind: l.kind.number(),
                confirmed: l.confirmed as u64,
                confirmed_found: l.confirmed_found as u64,
                false_positive: l.false_positive as u64,
                false_positive_flagged: l.false_positive_flagged as u64,
                recall: l.recall.unwrap_or(0.0),
            })
            .collect(),
        precision_on_reviewed: e.precision_on_reviewed.unwrap_or(0.0),
        has_precision: e.precision_on_reviewed.is_some(),
    }
}

fn row_to_pb(r: DatasetRow) -> pb::DatasetRow {
    pb::DatasetRow {
        enterprise_id: r.enterprise_id,
        outlet_id: r.outlet_id,
        minute_ms: r.minute_ms,
        production_fraction: r.production_fraction,
        values: r.values.into_iter().collect(),
        label: r.label,
        label_kinds: r.label_kinds.iter().map(|k| k.number()).collect(),
        flagged_kinds: r.flagged_kinds.iter().map(|k| k.number()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Principal, Role};

    fn principal(id: &str, role: Role) -> Principal {
        Principal {
            id: id.into(),
            name: format!("{id} name"),
            role,
            ..Principal::anonymous_admin()
        }
    }

    #[test]
    fn an_analyst_needs_a_second_principal_and_cannot_approve_itself() {
        let approvals = Approvals::default();
        let (a, b) = (
            principal("p-1", Role::Analyst),
            principal("p-2", Role::Analyst),
        );
        let admin = principal("p-3", Role::Admin);
        assert_eq!(
            approvals.decide(&a, "m@1", 0),
            Activation::Awaiting("p-1 name (p-1)".into())
        );
        assert_eq!(
            approvals.decide(&a, "m@1", 10),
            Activation::Awaiting("p-1 name (p-1)".into())
        );
        assert_eq!(
            approvals.decide(&b, "m@2", 20),
            Activation::Awaiting("p-2 name (p-2)".into())
        );
        assert_eq!(
            approvals.decide(&b, "m@1", 30),
            Activation::Now(Some("p-1 name (p-1)".into()))
        );
        // Carried out once: the next call is a new request.
        assert_eq!(
            approvals.decide(&b, "m@1", 40),
            Activation::Awaiting("p-2 name (p-2)".into())
        );
        assert_eq!(
            approvals.decide(&admin, "m@2", 50),
            Activation::Now(Some("p-2 name (p-2)".into()))
        );
        assert_eq!(approvals.decide(&admin, "m@3", 60), Activation::Now(None));
        // A request expires.
        assert_eq!(
            approvals.decide(&a, "m@4", 0),
            Activation::Awaiting("p-1 name (p-1)".into())
        );
        assert_eq!(
            approvals.decide(&b, "m@4", APPROVAL_TTL_MS + 1),
            Activation::Awaiting("p-2 name (p-2)".into())
        );
    }
}

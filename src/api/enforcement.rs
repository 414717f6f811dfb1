//! `EnforcementService`.

use super::convert::{
    anomaly_to_pb, filter_from_pb, hotspot_to_pb, incident_to_pb, review_entry_to_pb,
    review_status_from_pb,
};
use super::evidence;
use super::summary::{request_language, Summaries};
use crate::auth::audit::AuditLog;
use crate::auth::layer::principal_of;
use crate::auth::{Principal, Role};
use crate::domain::{Anomaly, AnomalyKind, Month, OperatingChange, OperatingChangeKind};
use crate::domain::{AnomalyFilter, Language, ReviewStatus};
use crate::enforce::availability;
use crate::enforce::cases;
use crate::enforce::{AnomalyBook, ReviewRequest};
use crate::error::task_failed;
use crate::ingest::system_now_ms;
use crate::ledger::Signer;
use crate::pb::{self, enforcement_service_server::EnforcementService};
use crate::registry::RegistryRef;
use crate::signal::equipment::Thresholds;
use crate::store::Store;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The enforcement service.
pub struct EnforcementApi {
    /// The anomaly book.
    pub book: Arc<AnomalyBook>,
    /// For region filters and the names in summaries.
    pub registry: RegistryRef,
    /// Language of summaries when a request does not ask for one.
    pub language: Language,
    /// The store, for data availability.
    pub store: Store,
    /// Equipment states as detection judges them (availability counts the minutes production ran).
    pub equipment: Thresholds,
    /// Who reviewed what.
    pub audit: AuditLog,
    /// Signs the copy of record's heads and evidence bundles.
    pub signer: Arc<Signer>,
    /// Turns true when the server stops: open watches end, so shutdown does not wait on them.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// Most outlets one `GetDataAvailability` may cover.
const MAX_AVAILABILITY_OUTLETS: usize = 100;

impl EnforcementApi {
    /// Refuses an officer an anomaly of an enterprise outside its regions.
    fn check_region(&self, principal: &Principal, enterprise_id: &str) -> Result<(), Status> {
        if principal.may_see_region(&self.registry.region_of(enterprise_id)) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "enterprise {enterprise_id:?} is outside {}'s regions",
                principal.name
            )))
        }
    }

    /// The anomaly `id`, if it exists and lies in the principal's regions.
    fn visible_anomaly(&self, principal: &Principal, id: &str) -> Result<Anomaly, Status> {
        let a = self
            .book
            .get(id)
            .ok_or_else(|| Status::not_found(format!("anomaly {id:?} not found")))?;
        self.check_region(principal, &a.enterprise_id)?;
        Ok(a)
    }

    /// An officer's FALSE_POSITIVE on a level-shift (`PARAMETER_TAMPERING` step) or model alarm re-bases the outlet:
    /// it is recorded as the outlet's operating change at the end of the reviewed episode, which the step test
    /// re-bases at and the model test stays silent after until the outlet's next model version.
    fn rebase_after_false_positive(&self, a: &Anomaly) -> Result<(), Status> {
        let rebases = match a.kind {
            AnomalyKind::ParameterTampering => a.evidence.text("signature") == Some("step"),
            AnomalyKind::ModelResidual => true,
            _ => false,
        };
        let reviewed = a.reviews.last();
        if !rebases || a.status != ReviewStatus::FalsePositive {
            return Ok(());
        }
        let change = OperatingChange {
            enterprise_id: a.enterprise_id.clone(),
            outlet_id: a.outlet_id.clone(),
            kind: OperatingChangeKind::ReviewedFalsePositive,
            effective_ms: a.end_ms,
            description: format!(
                "{} anomaly {} reviewed FALSE_POSITIVE",
                a.kind.as_str(),
                a.id
            ),
            declared_by: reviewed.map(|r| r.reviewer.clone()).unwrap_or_default(),
            ..OperatingChange::default()
        };
        self.registry
            .record_operating_change(change, system_now_ms())
            .map(|_| ())
            .map_err(Status::from)
    }

    fn summaries<T>(&self, req: &Request<T>) -> Summaries {
        Summaries::new(
            self.registry.clone(),
            request_language(req.metadata(), self.language),
        )
    }
}

#[tonic::async_trait]
impl EnforcementService for EnforcementApi {
    type WatchAnomaliesStream = Pin<Box<dyn Stream<Item = Result<pb::Anomaly, Status>> + Send>>;
    type ExportEvidenceStream =
        Pin<Box<dyn Stream<Item = Result<pb::EvidenceFileChunk, Status>> + Send>>;

    async fn list_anomalies(
        &self,
        req: Request<pb::ListAnomaliesRequest>,
    ) -> Result<Response<pb::ListAnomaliesResponse>, Status> {
        let summaries = self.summaries(&req);
        let principal = principal_of(&req)?;
        let q = req.into_inner();
        let mut filter = filter_from_pb(&q)?;
        if principal.role == Role::Officer {
            filter.scope_regions = principal.regions.clone();
        }
        let registry = self.registry.clone();
        let page = self
            .book
            .list(&filter, q.page_size as usize, &q.page_token, |e| {
                registry.region_of(e)
            })?;
        Ok(Response::new(pb::ListAnomaliesResponse {
            anomalies: page
                .anomalies
                .into_iter()
                .map(|a| {
                    let summary = summaries.of(&a);
                    anomaly_to_pb(a, summary)
                })
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_anomaly(
        &self,
        req: Request<pb::GetAnomalyRequest>,
    ) -> Result<Response<pb::Anomaly>, Status> {
        let summaries = self.summaries(&req);
        let principal = principal_of(&req)?;
        let a = self.visible_anomaly(&principal, &req.into_inner().id)?;
        let summary = summaries.of(&a);
        let (store, found) = (self.store.clone(), a.clone());
        let leaves = tokio::task::spawn_blocking(move || evidence::leaves_of(&store, &found))
            .await
            .map_err(task_failed)?;
        let leaves = match leaves {
            Ok(l) => l,
            // Too many to list here: the export says so with the figure.
            Err(s) if s.code() == tonic::Code::FailedPrecondition => Vec::new(),
            Err(s) => return Err(s),
        };
        let mut out = anomaly_to_pb(a, summary);
        out.record_log_leaves = leaves;
        Ok(Response::new(out))
    }

    async fn watch_anomalies(
        &self,
        req: Request<pb::WatchAnomaliesRequest>,
    ) -> Result<Response<Self::WatchAnomaliesStream>, Status> {
        let summaries = self.summaries(&req);
        let principal = principal_of(&req)?;
        let mut filter = filter_from_pb(&req.into_inner().filter.unwrap_or_default())?;
        if principal.role == Role::Officer {
            filter.scope_regions = principal.regions.clone();
        }
        let mut events = self.book.subscribe();
        let registry = self.registry.clone();
        let (tx, rx) = mpsc::channel(256);
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    e = events.recv() => e,
                    _ = super::stopped(&mut stopping) => {
                        let _ = tx.send(Err(super::shutting_down())).await;
                        break;
                    }
                };
                match event {
                    Ok(a) => {
                        let region = registry.region_of(&a.enterprise_id);
                        if filter.matches(&a, &region) {
                            let summary = summaries.of(&a);
                            if tx
                                .send(Ok(anomaly_to_pb((*a).clone(), summary)))
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::resource_exhausted(format!(
                                "watcher fell {n} updates behind; list again and re-watch"
                            ))))
                            .await;
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_incidents(
        &self,
        req: Request<pb::ListIncidentsRequest>,
    ) -> Result<Response<pb::ListIncidentsResponse>, Status> {
        let summaries = self.summaries(&req);
        let q = req.into_inner();
        let filter = filter_from_pb(&q.filter.unwrap_or_default())?;
        let gap_min = if q.max_gap_minutes == 0 {
            60
        } else {
            q.max_gap_minutes
        };
        let limit = match q.limit {
            0 => 100,
            n => n.min(1000),
        } as usize;
        let (book, registry) = (self.book.clone(), self.registry.clone());
        let incidents = tokio::task::spawn_blocking(move || {
            let members = book.matching(&filter, |e| registry.region_of(e));
            let by_id: HashMap<&str, &Anomaly> =
                members.iter().map(|a| (a.id.as_str(), a)).collect();
            cases::incidents(&members, i64::from(gap_min) * 60_000)
                .into_iter()
                .take(limit)
                .map(|i| {
                    let summary = i
                        .anomaly_ids
                        .iter()
                        .filter_map(|id| by_id.get(id.as_str()))
                        .map(|a| summaries.of(a))
                        .collect::<Vec<_>>()
                        .join(" ");
                    incident_to_pb(i, summary)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(task_failed)?;
        Ok(Response::new(pb::ListIncidentsResponse { incidents }))
    }

    async fn list_hotspots(
        &self,
        req: Request<pb::ListHotspotsRequest>,
    ) -> Result<Response<pb::ListHotspotsResponse>, Status> {
        let q = req.into_inner();
        let by_region = match pb::HotspotLevel::try_from(q.level) {
            Ok(pb::HotspotLevel::Region) => true,
            Ok(_) => false,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown hotspot level {}",
                    q.level
                )))
            }
        };
        let statuses = if q.statuses.is_empty() {
            vec![
                ReviewStatus::Open,
                ReviewStatus::Dispatched,
                ReviewStatus::Confirmed,
            ]
        } else {
            q.statuses
                .iter()
                .map(|s| review_status_from_pb(*s))
                .collect::<Result<_, _>>()?
        };
        let filter = AnomalyFilter {
            from_ms: q.from_ms,
            to_ms: q.to_ms,
            statuses,
            ..AnomalyFilter::default()
        };
        let limit = if q.limit == 0 { 20 } else { q.limit as usize };
        let (book, registry) = (self.book.clone(), self.registry.clone());
        let hotspots = tokio::task::spawn_blocking(move || {
            let members = book.matching(&filter, |e| registry.region_of(e));
            cases::hotspots(&members, by_region, |e| registry.region_of(e))
                .into_iter()
                .take(limit)
                .map(|h| {
                    let name = if by_region {
                        h.key.clone()
                    } else {
                        registry
                            .enterprise(&h.key)
                            .map(|e| e.name)
                            .unwrap_or_default()
                    };
                    hotspot_to_pb(h, name)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(task_failed)?;
        Ok(Response::new(pb::ListHotspotsResponse { hotspots }))
    }

    async fn get_review_history(
        &self,
        req: Request<pb::GetAnomalyRequest>,
    ) -> Result<Response<pb::ReviewHistory>, Status> {
        let principal = principal_of(&req)?;
        let a = self.visible_anomaly(&principal, &req.into_inner().id)?;
        Ok(Response::new(pb::ReviewHistory {
            anomaly_id: a.id,
            entries: a.reviews.into_iter().map(review_entry_to_pb).collect(),
        }))
    }

    async fn review_anomaly(
        &self,
        req: Request<pb::ReviewAnomalyRequest>,
    ) -> Result<Response<pb::Anomaly>, Status> {
        let summaries = self.summaries(&req);
        let principal = principal_of(&req)?;
        let q = req.into_inner();
        let before = self.book.get(&q.id);
        if let Some(a) = &before {
            self.check_region(&principal, &a.enterprise_id)?;
        }
        // The reviewer of record is who authenticated, whatever name the client typed.
        let reviewer = if principal.is_anonymous() {
            q.reviewer
        } else {
            principal.label()
        };
        let request = ReviewRequest {
            id: q.id,
            status: review_status_from_pb(q.status)?,
            note: q.note,
            reviewer,
            at_ms: system_now_ms(),
        };
        let book = self.book.clone();
        let a = tokio::task::spawn_blocking(move || book.review(request))
            .await
            .map_err(task_failed)??;
        self.audit.changed(
            &principal,
            "ReviewAnomaly",
            &a.id,
            before.map(|b| (b.status, b.reviews.len())).as_ref(),
            &(a.status, a.reviews.last()),
        )?;
        self.rebase_after_false_positive(&a)?;
        let summary = summaries.of(&a);
        Ok(Response::new(anomaly_to_pb(a, summary)))
    }

    async fn get_data_availability(
        &self,
        req: Request<pb::GetDataAvailabilityRequest>,
    ) -> Result<Response<pb::DataAvailabilityResponse>, Status> {
        let q = req.into_inner();
        if q.outlet_ids.is_empty() && q.enterprise_ids.is_empty() {
            return Err(Status::invalid_argument(
                "name outlet_ids or enterprise_ids",
            ));
        }
        let month = |s: &str, field: &str| -> Result<Option<Month>, Status> {
            if s.is_empty() {
                return Ok(None);
            }
            s.parse()
                .map(Some)
                .map_err(|e: String| Status::invalid_argument(format!("{field}: {e}")))
        };
        let (from, to) = (
            month(&q.from_month, "from_month")?,
            month(&q.to_month, "to_month")?,
        );
        if from.is_none() && to.is_some() {
            return Err(Status::invalid_argument("to_month needs from_month"));
        }
        let all = self.registry.stack_topologies();
        let mut outlets = Vec::new();
        for id in &q.outlet_ids {
            let t = all.iter().find(|t| &t.outlet.id == id).ok_or_else(|| {
                Status::not_found(format!("stack outlet {id:?} is not registered"))
            })?;
            outlets.push(t.clone());
        }
        outlets.extend(
            all.iter()
                .filter(|t| q.enterprise_ids.contains(&t.enterprise.id))
                .filter(|t| !q.outlet_ids.contains(&t.outlet.id))
                .cloned(),
        );
        if outlets.len() > MAX_AVAILABILITY_OUTLETS {
            return Err(Status::invalid_argument(format!(
                "{} outlets asked; at most {MAX_AVAILABILITY_OUTLETS} per request",
                outlets.len()
            )));
        }
        let span = match from {
            Some(f) => {
                Some(availability::months(f, to.unwrap_or(f)).map_err(Status::invalid_argument)?)
            }
            None => None,
        };
        let (store, equipment) = (self.store.clone(), self.equipment);
        let months = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for t in &outlets {
                let months = match &span {
                    Some(m) => m.clone(),
                    // The month of the outlet's latest data; none yet, nothing to report.
                    None => match store.time_bounds(&t.outlet.id, &[])? {
                        Some((_, last)) => vec![Month::of_ms(last)],
                        None => continue,
                    },
                };
                for (month, a) in availability::of_outlet(&store, t, &months, equipment)? {
                    out.push(pb::OutletMonthAvailability {
                        outlet_id: t.outlet.id.clone(),
                        enterprise_id: t.enterprise.id.clone(),
                        month: month.to_string(),
                        month_start_ms: month.start_ms(),
                        production_minutes: a.production_minutes,
                        valid_minutes: a.valid_minutes,
                        transmission_rate: a.transmission_rate(),
                        outages: a.outages,
                        longest_outage_min: a.longest_outage_min,
                    });
                }
            }
            Ok::<_, crate::store::StoreError>(out)
        })
        .await
        .map_err(task_failed)??;
        Ok(Response::new(pb::DataAvailabilityResponse { months }))
    }

    async fn get_log_head(
        &self,
        req: Request<pb::GetLogHeadRequest>,
    ) -> Result<Response<pb::SignedLogHead>, Status> {
        let since = req.into_inner().consistent_with_size;
        let (store, signer) = (self.store.clone(), self.signer.clone());
        let head =
            tokio::task::spawn_blocking(move || evidence::signed_head(&store, &signer, since))
                .await
                .map_err(task_failed)??;
        Ok(Response::new(head))
    }

    async fn export_evidence(
        &self,
        req: Request<pb::ExportEvidenceRequest>,
    ) -> Result<Response<Self::ExportEvidenceStream>, Status> {
        let principal = principal_of(&req)?;
        let id = req.into_inner().anomaly_id;
        let a = self.visible_anomaly(&principal, &id)?;
        let (store, signer) = (self.store.clone(), self.signer.clone());
        let files = tokio::task::spawn_blocking(move || evidence::bundle_of(&store, &signer, &a))
            .await
            .map_err(task_failed)??;
        tracing::info!(principal = %principal.id, anomaly = %id, "Evidence bundle exported.");
        let chunks = evidence::chunks(files).into_iter().map(Ok);
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}

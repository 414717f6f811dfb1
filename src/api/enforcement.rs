//! `EnforcementService`.

use super::convert::{anomaly_to_pb, filter_from_pb, review_status_from_pb};
use crate::enforce::{AnomalyBook, ReviewRequest};
use crate::ingest::system_now_ms;
use crate::pb::{self, enforcement_service_server::EnforcementService};
use crate::registry::RegistryRef;
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
    /// For region filters.
    pub registry: RegistryRef,
}

#[tonic::async_trait]
impl EnforcementService for EnforcementApi {
    type WatchAnomaliesStream = Pin<Box<dyn Stream<Item = Result<pb::Anomaly, Status>> + Send>>;

    async fn list_anomalies(
        &self,
        req: Request<pb::ListAnomaliesRequest>,
    ) -> Result<Response<pb::ListAnomaliesResponse>, Status> {
        let q = req.into_inner();
        let filter = filter_from_pb(&q)?;
        let registry = self.registry.clone();
        let page = self
            .book
            .list(&filter, q.page_size as usize, &q.page_token, |e| {
                registry.region_of(e)
            })?;
        Ok(Response::new(pb::ListAnomaliesResponse {
            anomalies: page.anomalies.into_iter().map(anomaly_to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_anomaly(
        &self,
        req: Request<pb::GetAnomalyRequest>,
    ) -> Result<Response<pb::Anomaly>, Status> {
        let id = req.into_inner().id;
        let a = self
            .book
            .get(&id)
            .ok_or_else(|| Status::not_found(format!("anomaly {id:?} not found")))?;
        Ok(Response::new(anomaly_to_pb(a)))
    }

    async fn watch_anomalies(
        &self,
        req: Request<pb::WatchAnomaliesRequest>,
    ) -> Result<Response<Self::WatchAnomaliesStream>, Status> {
        let filter = filter_from_pb(&req.into_inner().filter.unwrap_or_default())?;
        let mut events = self.book.subscribe();
        let registry = self.registry.clone();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(a) => {
                        let region = registry.region_of(&a.enterprise_id);
                        if filter.matches(&a, &region)
                            && tx.send(Ok(anomaly_to_pb((*a).clone()))).await.is_err()
                        {
                            break;
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

    async fn review_anomaly(
        &self,
        req: Request<pb::ReviewAnomalyRequest>,
    ) -> Result<Response<pb::Anomaly>, Status> {
        let q = req.into_inner();
        let request = ReviewRequest {
            id: q.id,
            status: review_status_from_pb(q.status)?,
            note: q.note,
            reviewer: q.reviewer,
            at_ms: system_now_ms(),
        };
        let book = self.book.clone();
        let a = tokio::task::spawn_blocking(move || book.review(request))
            .await
            .map_err(|e| Status::internal(format!("task failed: {e}")))??;
        Ok(Response::new(anomaly_to_pb(a)))
    }
}

//! `IngestService`.

use super::convert::{points_to_records, records_from_pb, rejection_to_pb};
use crate::domain::MS_PER_HOUR;
use crate::ingest::{Ack, Ingestor};
use crate::pb::{self, ingest_service_server::IngestService};
use crate::registry::RegistryRef;
use crate::store::Store;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// Batches one `Push` stream may have queued but not yet acknowledged: enough to keep the disk busy while acks
/// travel back, small enough to bound memory per stream.
const PUSH_IN_FLIGHT: usize = 8;
/// `ReadRecords` reads the store a day at a time, so a year-long request never sits in memory at once.
const READ_WINDOW_MS: i64 = 24 * MS_PER_HOUR;

/// The ingest service.
pub struct IngestApi {
    /// Front door of durable ingest.
    pub ingestor: Arc<Ingestor>,
    /// For reads.
    pub store: Store,
    /// To tell unknown sources from empty ones.
    pub registry: RegistryRef,
}

fn ack_to_pb(seq: u64, ack: Ack) -> pb::PushAck {
    pb::PushAck {
        seq,
        accepted: ack.accepted,
        rejected: ack.rejected.into_iter().map(rejection_to_pb).collect(),
        duplicates: ack.duplicates,
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl IngestService for IngestApi {
    type PushStream = BoxStream<pb::PushAck>;
    type ReadRecordsStream = BoxStream<pb::Record>;

    async fn push(
        &self,
        req: Request<Streaming<pb::RecordBatch>>,
    ) -> Result<Response<Self::PushStream>, Status> {
        let mut inbound = req.into_inner();
        let (pending_tx, mut pending_rx) = mpsc::channel(PUSH_IN_FLIGHT);
        let (ack_tx, ack_rx) = mpsc::channel(PUSH_IN_FLIGHT);
        let ingestor = self.ingestor.clone();
        // Reader: validate and queue each batch as it arrives.
        let reader_ack_tx = ack_tx.clone();
        tokio::spawn(async move {
            while let Some(msg) = inbound.next().await {
                let batch = match msg {
                    Ok(b) => b,
                    Err(status) => {
                        tracing::debug!(%status, "Push stream ended by the client.");
                        break;
                    }
                };
                let seq = batch.seq;
                match ingestor.submit(records_from_pb(batch.records)).await {
                    Ok(pending) => {
                        if pending_tx.send((seq, pending)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = reader_ack_tx.send(Err(Status::from(e))).await;
                        break;
                    }
                }
            }
        });
        // Acker: wait for durability in order and answer.
        tokio::spawn(async move {
            while let Some((seq, pending)) = pending_rx.recv().await {
                let msg = pending
                    .wait()
                    .await
                    .map(|ack| ack_to_pb(seq, ack))
                    .map_err(Status::from);
                let failed = msg.is_err();
                if ack_tx.send(msg).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(ack_rx))))
    }

    async fn write(&self, req: Request<pb::RecordBatch>) -> Result<Response<pb::PushAck>, Status> {
        let batch = req.into_inner();
        let ack = self.ingestor.write(records_from_pb(batch.records)).await?;
        Ok(Response::new(ack_to_pb(batch.seq, ack)))
    }

    async fn sync(
        &self,
        req: Request<pb::SyncRequest>,
    ) -> Result<Response<pb::SyncResponse>, Status> {
        let status = self.ingestor.sync(req.into_inner().finalize).await?;
        Ok(Response::new(pb::SyncResponse {
            watermark_ms: status.watermark_ms,
            anomalies_total: status.anomalies_total,
            measurements_late_total: status.late_total,
        }))
    }

    async fn read_records(
        &self,
        req: Request<pb::ReadRecordsRequest>,
    ) -> Result<Response<Self::ReadRecordsStream>, Status> {
        let q = req.into_inner();
        if self.registry.source_kind(&q.source_id).is_none() {
            return Err(Status::not_found(format!(
                "source_id {:?} is not registered",
                q.source_id
            )));
        }
        let to_ms = if q.to_ms == 0 { i64::MAX } else { q.to_ms };
        if to_ms <= q.from_ms {
            return Err(Status::invalid_argument(
                "to_ms must be after from_ms (0 = no upper bound)",
            ));
        }
        let store = self.store.clone();
        let (tx, rx) = mpsc::channel(64);
        tokio::task::spawn_blocking(move || {
            // Start from the first stored chunk rather than walking empty days from from_ms.
            let mut from = q.from_ms;
            let last = match store.time_bounds(&q.source_id, &q.codes) {
                Ok(Some((first, last))) => {
                    from = from.max(first);
                    last.min(to_ms.saturating_sub(1))
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.blocking_send(Err(Status::from(e)));
                    return;
                }
            };
            while from <= last {
                let until = from.saturating_add(READ_WINDOW_MS).min(to_ms);
                match store.read_points(&q.source_id, &q.codes, from, until) {
                    Ok(points) => {
                        for r in points_to_records(points) {
                            if tx.blocking_send(Ok(r)).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::from(e)));
                        return;
                    }
                }
                from = until;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

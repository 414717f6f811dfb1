//! `IngestService`.

use super::convert::{points_to_records, records_from_pb, rejection_to_pb};
use crate::auth::layer::principal_of;
use crate::auth::Principal;
use crate::domain::IncomingRecord;
use crate::domain::MS_PER_HOUR;
use crate::ingest::{Ack, IngestError, Ingestor, Rejection};
use crate::ledger::{Receipt, Transport};
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
/// Memory a `Push` stream reserves before its first batch is read; later ones reserve their predecessor's size.
const FIRST_BATCH_GUESS: usize = 256 << 10;
/// How long a `Push` stream holds its decode turn and memory waiting for its next message.
const TURN_IDLE: std::time::Duration = std::time::Duration::from_millis(50);
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
    /// Refused records are audited (once per batch).
    pub audit: crate::auth::audit::AuditLog,
    /// Turns true when the server stops: open `Push` streams end (after acking what they queued).
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// A `source` principal's batch split by scope: the records of its own enterprises go on, in order; each other one
/// is refused as `PERMISSION_DENIED` and stored nowhere. `index` maps a kept record's position back to the batch's.
struct Scoped {
    kept: Vec<IncomingRecord>,
    index: Vec<u32>,
    refused: Vec<Rejection>,
}

fn scope_records(
    principal: &Principal,
    registry: &RegistryRef,
    audit: &crate::auth::audit::AuditLog,
    received: Vec<pb::Record>,
) -> (Scoped, Receipt) {
    // Each record in protobuf's canonical encoding of what was decoded: the same bytes for the same record whatever
    // the client's encoder (fields this contract does not know are not kept).
    let items: Vec<Vec<u8>> = received.iter().map(prost::Message::encode_to_vec).collect();
    let records = records_from_pb(received);
    let mut out = Scoped {
        kept: Vec::with_capacity(records.len()),
        index: Vec::with_capacity(records.len()),
        refused: Vec::new(),
    };
    let mut receipt = Receipt {
        principal: principal.label(),
        transport: Transport::Grpc,
        items: Vec::with_capacity(records.len()),
    };
    for ((i, r), item) in records.into_iter().enumerate().zip(items) {
        let i = u32::try_from(i).unwrap_or(u32::MAX);
        // Unregistered sources pass on, to be refused by validation with its own reason.
        let owner = registry.enterprise_of_source(&r.source_id);
        match owner {
            Some(e) if !principal.may_act_for(&e) => out.refused.push(Rejection {
                record_index: i,
                code: String::new(),
                reason: format!(
                    "PERMISSION_DENIED: source {} belongs to enterprise {e:?}, outside {}'s scope",
                    crate::domain::quote::quote(&r.source_id),
                    principal.name
                ),
            }),
            _ => {
                out.kept.push(r);
                out.index.push(i);
                receipt.items.push(item);
            }
        }
    }
    if let Some(first) = out.refused.first() {
        tracing::warn!(principal = %principal.id, refused = out.refused.len(), "Records outside the principal's enterprises refused.");
        audit.refused(
            principal,
            "IngestService records",
            "",
            &format!(
                "{} records outside its enterprises, the first: {}",
                out.refused.len(),
                first.reason
            ),
        );
    }
    (out, receipt)
}

impl Scoped {
    /// The ack of the kept records, in the batch's numbering, with the refused ones added.
    fn ack(&self, mut ack: Ack) -> Ack {
        for r in &mut ack.rejected {
            r.record_index = self
                .index
                .get(r.record_index as usize)
                .copied()
                .unwrap_or(r.record_index);
        }
        ack.rejected.extend(self.refused.iter().cloned());
        ack.rejected.sort_by_key(|r| r.record_index);
        ack
    }
}

fn ack_to_pb(seq: u64, ack: Ack) -> pb::PushAck {
    pb::PushAck {
        seq,
        accepted: ack.accepted,
        rejected: ack.rejected.into_iter().map(rejection_to_pb).collect(),
        duplicates: ack.duplicates,
    }
}

/// Whose share of the ingest memory budget a request takes: its principal's, or without authentication (every
/// client is the same anonymous principal) its connection's.
fn sender_of<T>(req: &Request<T>, principal: &Principal) -> String {
    match req.remote_addr() {
        Some(peer) if principal.is_anonymous() => format!("{} {peer}", principal.id),
        _ => principal.id.clone(),
    }
}

/// One of `sender`'s decode turns, or `None` when the server stops first.
async fn take_turn(
    ingestor: &Ingestor,
    sender: &str,
    stopping: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    tokio::select! {
        t = ingestor.turn(sender) => t,
        _ = super::stopped(stopping) => None,
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
        let principal = principal_of(&req)?;
        let sender = sender_of(&req, &principal);
        let registry = self.registry.clone();
        let audit = self.audit.clone();
        let mut inbound = req.into_inner();
        let (pending_tx, mut pending_rx) = mpsc::channel(PUSH_IN_FLIGHT);
        let (ack_tx, ack_rx) = mpsc::channel(PUSH_IN_FLIGHT);
        let ingestor = self.ingestor.clone();
        // Reader: validate and queue each batch as it arrives; an error goes through the same queue, so it reaches
        // the client after the acks of every batch queued before it.
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            let mut guess = FIRST_BATCH_GUESS;
            loop {
                // One of the sender's decode turns, until the batch is queued: its many streams share them, and a
                // stream waiting for its turn holds no memory.
                let Some(turn) = take_turn(&ingestor, &sender, &mut stopping).await else {
                    let _ = pending_tx.send(Err(super::shutting_down())).await;
                    break;
                };
                // Then memory, then the next message: a stream waiting for memory holds no decoded batch, and
                // HTTP/2 flow control backs up to the client.
                let held = tokio::select! {
                    r = ingestor.reserve(&sender, guess) => r,
                    _ = super::stopped(&mut stopping) => Err(IngestError::ShuttingDown),
                };
                let mut held = match held {
                    Ok(h) => Some(h),
                    Err(e) => {
                        let _ = pending_tx.send(Err(Status::from(e))).await;
                        break;
                    }
                };
                // A stream with nothing to send gives its turn and memory back soon, so an idle stream does not
                // hold up its sender's busy ones; its next batch then takes them again after it is read.
                let mut turn = Some(turn);
                let next = loop {
                    tokio::select! {
                        m = inbound.next() => break Some(m),
                        _ = tokio::time::sleep(TURN_IDLE), if turn.is_some() => {
                            turn = None;
                            held = None;
                        }
                        _ = super::stopped(&mut stopping) => break None,
                    }
                };
                let Some(next) = next else {
                    let _ = pending_tx.send(Err(super::shutting_down())).await;
                    break;
                };
                let turn = match turn {
                    Some(t) => t,
                    None => match take_turn(&ingestor, &sender, &mut stopping).await {
                        Some(t) => t,
                        None => {
                            let _ = pending_tx.send(Err(super::shutting_down())).await;
                            break;
                        }
                    },
                };
                let held = held.unwrap_or_default();
                let Some(msg) = next else { break };
                let batch = match msg {
                    Ok(b) => b,
                    Err(status) => {
                        // A message that does not decode (or a broken stream) ends the stream with that error, so
                        // the client can tell; batches already queued are still committed and acknowledged first.
                        tracing::debug!(%status, "Push stream ended with an error.");
                        let _ = pending_tx.send(Err(status)).await;
                        break;
                    }
                };
                let seq = batch.seq;
                let (mut scoped, receipt) =
                    scope_records(&principal, &registry, &audit, batch.records);
                let kept = std::mem::take(&mut scoped.kept);
                let submitted = tokio::select! {
                    s = ingestor.submit_reserved(&sender, kept, receipt, held) => s,
                    _ = super::stopped(&mut stopping) => Err(IngestError::ShuttingDown),
                };
                drop(turn);
                match submitted {
                    Ok(pending) => {
                        guess = pending.held_bytes();
                        if pending_tx.send(Ok((seq, pending, scoped))).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = pending_tx.send(Err(Status::from(e))).await;
                        break;
                    }
                }
            }
        });
        // Acker: wait for durability in order and answer.
        tokio::spawn(async move {
            while let Some(queued) = pending_rx.recv().await {
                let msg = match queued {
                    Ok((seq, pending, scoped)) => pending
                        .wait()
                        .await
                        .map(|ack| ack_to_pb(seq, scoped.ack(ack)))
                        .map_err(Status::from),
                    Err(status) => Err(status),
                };
                let failed = msg.is_err();
                if ack_tx.send(msg).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(ack_rx))))
    }

    async fn write(&self, req: Request<pb::RecordBatch>) -> Result<Response<pb::PushAck>, Status> {
        let principal = principal_of(&req)?;
        let sender = sender_of(&req, &principal);
        let batch = req.into_inner();
        let (mut scoped, receipt) =
            scope_records(&principal, &self.registry, &self.audit, batch.records);
        let kept = std::mem::take(&mut scoped.kept);
        let ack = self.ingestor.write(&sender, kept, receipt).await?;
        Ok(Response::new(ack_to_pb(batch.seq, scoped.ack(ack))))
    }

    async fn sync(
        &self,
        req: Request<pb::SyncRequest>,
    ) -> Result<Response<pb::SyncResponse>, Status> {
        let principal = principal_of(&req)?;
        let finalize = req.into_inner().finalize;
        // Finalizing closes every outlet's open episodes: a step for the operator, never for a data source.
        if finalize && principal.role != crate::auth::Role::Admin {
            return Err(Status::permission_denied(format!(
                "Sync(finalize) closes detection for every outlet: admin only ({} is {})",
                principal.name,
                principal.role.as_str()
            )));
        }
        let status = self.ingestor.sync(finalize).await?;
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
        let principal = principal_of(&req)?;
        let q = req.into_inner();
        let Some(owner) = self.registry.enterprise_of_source(&q.source_id) else {
            return Err(Status::not_found(format!(
                "source_id {} is not registered",
                crate::domain::quote::quote(&q.source_id)
            )));
        };
        if !principal.may_act_for(&owner)
            || (principal.role == crate::auth::Role::Officer
                && !principal.may_see_region(&self.registry.region_of(&owner)))
        {
            return Err(Status::permission_denied(format!(
                "source {} is outside {}'s scope",
                crate::domain::quote::quote(&q.source_id),
                principal.name
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

//! Durable ingest: validation, group commit on the store, and the hand-off to detection.
//!
//! One writer thread owns every point write. It takes whatever batches are waiting (from any number of gRPC streams
//! and, later, the HJ 212 gateway), writes them in one atomic store commit, flushes once, hands the new points to
//! detection, and only then acknowledges each batch. Many concurrent streams therefore share one disk sync, and a
//! client that disconnects mid-request cannot leave a batch half-written: once queued, a batch is committed whole.

pub mod hj212_gateway;
mod validate;

pub use validate::{
    flag_from_number, interval_from_number, validate, Rejection, DEFAULT_MAX_CLOCK_SKEW_MS,
};

use crate::domain::{Clock, IncomingRecord, Point};
use crate::ledger::Receipt;
use crate::pipeline::task::{DetectMsg, SyncStatus};
use crate::registry::RegistryRef;
use crate::store::{PointOutcome, Store};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Why a batch or sync failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// More records than the configured limit.
    #[error("batch has {records} records; the limit is {limit} per batch: split it")]
    BatchTooLarge {
        /// Records sent.
        records: usize,
        /// Configured limit.
        limit: usize,
    },
    /// More measurements than the configured limit: one record may carry many values, so records alone do not bound
    /// a batch's memory.
    #[error("batch has {values} measurements; the limit is {limit} per batch: split it")]
    TooManyValues {
        /// Measurements sent.
        values: usize,
        /// Configured limit.
        limit: usize,
    },
    /// The service is stopping; retry against the restarted service.
    #[error("the service is shutting down")]
    ShuttingDown,
    /// The commit failed in the store; nothing of the batch was acknowledged, so it can be re-sent.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// Detection failed to checkpoint during a sync.
    #[error("detection checkpoint failed: {0}")]
    Detection(String),
}

/// The acknowledgement of one batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ack {
    /// Measurements accepted (stored now or identical to stored ones).
    pub accepted: u32,
    /// Of those, identical re-sends.
    pub duplicates: u32,
    /// Refusals, in record order.
    pub rejected: Vec<Rejection>,
}

/// Ingest settings.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Largest batch accepted, in records.
    pub max_batch_records: usize,
    /// Largest batch accepted, in measurements (values of all its records).
    pub max_batch_values: usize,
    /// Most batches folded into one group commit.
    pub max_group_batches: usize,
    /// How far ahead of the server clock a record may be stamped.
    pub max_clock_skew_ms: i64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_batch_records: 10_000,
            max_batch_values: 100_000,
            max_group_batches: 64,
            max_clock_skew_ms: DEFAULT_MAX_CLOCK_SKEW_MS,
        }
    }
}

/// What an ack needs to say about a point without keeping the point.
struct PointRef {
    record_index: u32,
    code: String,
    time_ms: i64,
    value: f64,
}

/// The writer's answer for one batch: an outcome per point, or why the commit failed.
type CommitReply = oneshot::Receiver<Result<Vec<PointOutcome>, String>>;

/// A batch queued for commit; [`PendingAck::wait`] resolves once it is durable.
pub struct PendingAck {
    commit: Option<(CommitReply, Vec<PointRef>)>,
    rejected: Vec<Rejection>,
}

impl PendingAck {
    /// Waits until the batch is on disk and builds its ack.
    ///
    /// # Errors
    /// [`IngestError::ShuttingDown`] or [`IngestError::CommitFailed`]: nothing was acknowledged, re-send.
    pub async fn wait(self) -> Result<Ack, IngestError> {
        let mut ack = Ack::default();
        let mut rejected = self.rejected;
        if let Some((rx, points)) = self.commit {
            let outcomes = rx
                .await
                .map_err(|_| IngestError::ShuttingDown)?
                .map_err(IngestError::CommitFailed)?;
            for (p, outcome) in points.into_iter().zip(outcomes) {
                match outcome {
                    PointOutcome::Stored => ack.accepted += 1,
                    PointOutcome::Duplicate => {
                        ack.accepted += 1;
                        ack.duplicates += 1;
                    }
                    PointOutcome::ConflictingRewrite => rejected.push(Rejection {
                        record_index: p.record_index,
                        code: p.code,
                        reason: format!(
                            "conflicting rewrite: a different reading is already stored for time_ms {}; \
                             the original is kept and this attempt (value {}) is audited",
                            p.time_ms, p.value
                        ),
                    }),
                }
            }
        }
        rejected.sort_by_key(|r| r.record_index);
        ack.rejected = rejected;
        Ok(ack)
    }
}

struct WriteJob {
    points: Vec<(u32, Point)>,
    receipt: Receipt,
    reply: oneshot::Sender<Result<Vec<PointOutcome>, String>>,
}

/// The ingest front door. Cheap to share behind an `Arc`.
pub struct Ingestor {
    registry: RegistryRef,
    config: IngestConfig,
    writer: mpsc::Sender<WriteJob>,
    detect: mpsc::Sender<DetectMsg>,
    clock: Clock,
}

/// Wall clock in Unix ms: only for "too far in the future" and audit times, never for detection.
pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Ingestor {
    /// Starts the writer thread. `next_seq` must be above every replay-log sequence already used.
    ///
    /// # Errors
    /// When the OS refuses a thread.
    pub fn start(
        store: Store,
        registry: RegistryRef,
        config: IngestConfig,
        detect: mpsc::Sender<DetectMsg>,
        next_seq: u64,
        clock: Clock,
    ) -> std::io::Result<(Arc<Self>, std::thread::JoinHandle<()>)> {
        let (writer, rx) = mpsc::channel::<WriteJob>(256);
        let max_group = config.max_group_batches.max(1);
        let detect_tx = detect.clone();
        let handle = std::thread::Builder::new()
            .name("ingest-writer".into())
            .spawn(move || writer_loop(store, rx, detect_tx, next_seq, max_group, clock))?;
        Ok((
            Arc::new(Self {
                registry,
                config,
                writer,
                detect,
                clock,
            }),
            handle,
        ))
    }

    /// Validates, commits durably and acknowledges one batch; `receipt` (its items as received) goes into the
    /// copy of record with it.
    ///
    /// # Errors
    /// [`IngestError::BatchTooLarge`], [`IngestError::ShuttingDown`] or a failed commit (nothing acknowledged).
    pub async fn write(
        &self,
        records: Vec<IncomingRecord>,
        receipt: Receipt,
    ) -> Result<Ack, IngestError> {
        self.submit(records, receipt).await?.wait().await
    }

    /// Validates a batch and queues it for the next group commit. Once this returns, the batch will be committed
    /// whole even if the caller goes away; [`PendingAck::wait`] waits for durability. Splitting the two lets one
    /// stream keep several batches in flight.
    ///
    /// # Errors
    /// [`IngestError::BatchTooLarge`] or [`IngestError::ShuttingDown`].
    pub async fn submit(
        &self,
        records: Vec<IncomingRecord>,
        receipt: Receipt,
    ) -> Result<PendingAck, IngestError> {
        if records.len() > self.config.max_batch_records {
            return Err(IngestError::BatchTooLarge {
                records: records.len(),
                limit: self.config.max_batch_records,
            });
        }
        let values: usize = records.iter().map(|r| r.values.len()).sum();
        if values > self.config.max_batch_values {
            return Err(IngestError::TooManyValues {
                values,
                limit: self.config.max_batch_values,
            });
        }
        let registry = &self.registry;
        let v = validate(
            records,
            |s| registry.source_kind(s).is_some(),
            (self.clock)(),
            self.config.max_clock_skew_ms,
        );
        let mut pending = PendingAck {
            commit: None,
            rejected: v.rejections,
        };
        if !v.points.is_empty() {
            let (reply, rx) = oneshot::channel();
            let points: Vec<PointRef> = v
                .points
                .iter()
                .map(|(i, p)| PointRef {
                    record_index: *i,
                    code: p.code.clone(),
                    time_ms: p.time_ms,
                    value: p.value,
                })
                .collect();
            self.writer
                .send(WriteJob {
                    points: v.points,
                    receipt,
                    reply,
                })
                .await
                .map_err(|_| IngestError::ShuttingDown)?;
            pending.commit = Some((rx, points));
        }
        Ok(pending)
    }

    /// Waits until detection has processed every batch acknowledged before this call.
    ///
    /// # Errors
    /// [`IngestError::ShuttingDown`] or a failed detection checkpoint.
    pub async fn sync(&self, finalize: bool) -> Result<SyncStatus, IngestError> {
        let (reply, rx) = oneshot::channel();
        self.detect
            .send(DetectMsg::Barrier { finalize, reply })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        rx.await
            .map_err(|_| IngestError::ShuttingDown)?
            .map_err(IngestError::Detection)
    }
}

fn writer_loop(
    store: Store,
    mut rx: mpsc::Receiver<WriteJob>,
    detect: mpsc::Sender<DetectMsg>,
    mut next_seq: u64,
    max_group: usize,
    clock: Clock,
) {
    let mut jobs: Vec<WriteJob> = Vec::with_capacity(max_group);
    while let Some(first) = rx.blocking_recv() {
        jobs.push(first);
        while jobs.len() < max_group {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let seq = next_seq;
        next_seq += 1;
        let batches: Vec<Vec<Point>> = jobs
            .iter_mut()
            .map(|j| {
                std::mem::take(&mut j.points)
                    .into_iter()
                    .map(|(_, p)| p)
                    .collect()
            })
            .collect();
        let receipts: Vec<Receipt> = jobs
            .iter_mut()
            .map(|j| Receipt {
                principal: std::mem::take(&mut j.receipt.principal),
                transport: j.receipt.transport,
                items: std::mem::take(&mut j.receipt.items),
            })
            .collect();
        let result = store
            .write_commit(seq, &batches, &receipts, clock())
            .and_then(|outcomes| store.flush().map(|()| outcomes));
        match result {
            Ok(outcomes) => {
                let stored: Vec<Point> = batches
                    .into_iter()
                    .zip(&outcomes)
                    .flat_map(|(points, out)| {
                        points
                            .into_iter()
                            .zip(out.iter())
                            .filter(|(_, o)| **o == PointOutcome::Stored)
                            .map(|(p, _)| p)
                            .collect::<Vec<_>>()
                    })
                    .collect();
                if !stored.is_empty()
                    && detect
                        .blocking_send(DetectMsg::Commit {
                            seq,
                            points: stored,
                        })
                        .is_err()
                {
                    tracing::warn!(
                        seq,
                        "Detection has stopped; the commit stays in the replay log."
                    );
                }
                for (job, out) in jobs.drain(..).zip(outcomes) {
                    let _ = job.reply.send(Ok(out));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, seq, "Commit failed; batches not acknowledged.");
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(e.to_string()));
                }
            }
        }
    }
    tracing::info!("Ingest writer stopped.");
}

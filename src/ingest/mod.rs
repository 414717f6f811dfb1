//! Durable ingest: validation, group commit on the store, and the hand-off to detection.
//!
//! One writer thread owns every point write. It takes whatever batches are waiting (from any number of gRPC streams
//! and, later, the HJ 212 gateway), writes them in one atomic store commit, flushes once, hands the new points to
//! detection, and only then acknowledges each batch. Many concurrent streams therefore share one disk sync, and a
//! client that disconnects mid-request cannot leave a batch half-written: once queued, a batch is committed whole.

pub mod budget;
pub mod hj212_gateway;
mod validate;

pub use validate::{
    flag_from_number, interval_from_number, validate, Rejection, DEFAULT_MAX_CLOCK_SKEW_MS,
};

use crate::domain::{Clock, IncomingRecord, Point};
use crate::ledger::Receipt;
use crate::pipeline::task::{DetectMsg, SyncStatus};
use crate::registry::RegistryRef;
use crate::store::{source_hours, PointOutcome, SourceHours, Store};
use budget::{BudgetError, MemoryBudget, Reservation, Turns};
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
    /// The batch does not fit in the ingest memory budget (now, or ever: see the reason).
    #[error("{0}")]
    OverBudget(#[from] BudgetError),
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
    /// Memory all batches in flight may hold together, from validation until detection has taken them in.
    pub memory_budget_bytes: usize,
    /// Of that, what one sender (principal or HJ 212 device) may hold.
    pub sender_share_bytes: usize,
    /// How long a batch waits for memory before it is refused with `RESOURCE_EXHAUSTED`.
    pub budget_wait: std::time::Duration,
    /// Most measurements folded into one group commit: bounds how long one commit (and so a polite sender's ack
    /// behind it) takes.
    pub max_group_points: usize,
}

/// Default ingest memory budget.
pub const DEFAULT_MEMORY_BUDGET_BYTES: usize = 512 << 20;

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_batch_records: 10_000,
            max_batch_values: 100_000,
            max_group_batches: 64,
            max_clock_skew_ms: DEFAULT_MAX_CLOCK_SKEW_MS,
            memory_budget_bytes: DEFAULT_MEMORY_BUDGET_BYTES,
            sender_share_bytes: DEFAULT_MEMORY_BUDGET_BYTES / 4,
            budget_wait: std::time::Duration::from_secs(10),
            max_group_points: 4_096,
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
    held_bytes: usize,
}

impl PendingAck {
    /// The memory the batch was estimated to need (a good guess for the next batch of the same stream).
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

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
    sender: String,
    /// Points not yet committed, in order.
    points: std::collections::VecDeque<Point>,
    /// Goes into the copy of record with the batch's first slice.
    receipt: Option<(Receipt, SourceHours)>,
    /// Outcomes of the slices committed so far.
    outcomes: Vec<PointOutcome>,
    /// Memory of the batch, released once detection has its points.
    held: Reservation,
    reply: oneshot::Sender<Result<Vec<PointOutcome>, String>>,
}

/// Allocator bookkeeping per heap allocation, for estimates.
const ALLOC_OVERHEAD: usize = 16;

/// What a batch will hold in memory from validation to detection: its points (each with its own source and code
/// strings), the ack's view of them, the received items of its receipt, and the records while they are validated.
fn batch_bytes(records: &[IncomingRecord], receipt: &Receipt) -> usize {
    let per_value = std::mem::size_of::<(u32, Point)>()
        + std::mem::size_of::<PointRef>()
        + std::mem::size_of::<crate::domain::IncomingMeasurement>()
        + 4 * ALLOC_OVERHEAD;
    let records_bytes: usize = records
        .iter()
        .map(|r| {
            let codes: usize = r.values.iter().map(|v| 3 * v.code.len()).sum();
            std::mem::size_of::<IncomingRecord>()
                + ALLOC_OVERHEAD
                + r.source_id.len()
                + codes
                + r.values.len() * (per_value + r.source_id.len())
        })
        .sum();
    let items: usize = receipt
        .items
        .iter()
        .map(|i| i.len() + std::mem::size_of::<Vec<u8>>() + ALLOC_OVERHEAD)
        .sum();
    records_bytes + items + receipt.principal.len()
}

/// The ingest front door. Cheap to share behind an `Arc`.
pub struct Ingestor {
    registry: RegistryRef,
    config: IngestConfig,
    writer: mpsc::Sender<WriteJob>,
    detect: mpsc::Sender<DetectMsg>,
    clock: Clock,
    budget: Arc<MemoryBudget>,
    turns: Turns,
}

/// Streams of one sender decoding and validating at once (see [`Turns`]).
const TURNS_PER_SENDER: usize = 2;

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
        let limits = GroupLimits {
            batches: config.max_group_batches.max(1),
            points: config.max_group_points.max(1),
        };
        let detect_tx = detect.clone();
        let budget = Arc::new(MemoryBudget::new(
            config.memory_budget_bytes,
            config.sender_share_bytes,
        ));
        let handle = std::thread::Builder::new()
            .name("ingest-writer".into())
            .spawn(move || writer_loop(store, rx, detect_tx, next_seq, limits, clock))?;
        Ok((
            Arc::new(Self {
                registry,
                config,
                writer,
                detect,
                clock,
                budget,
                turns: Turns::new(TURNS_PER_SENDER),
            }),
            handle,
        ))
    }

    /// Validates, commits durably and acknowledges one batch of `sender` (the principal or device whose share of
    /// the memory budget it takes); `receipt` (its items as received) goes into the copy of record with it.
    ///
    /// # Errors
    /// As [`Ingestor::submit`], or a failed commit (nothing acknowledged).
    pub async fn write(
        &self,
        sender: &str,
        records: Vec<IncomingRecord>,
        receipt: Receipt,
    ) -> Result<Ack, IngestError> {
        self.submit(sender, records, receipt).await?.wait().await
    }

    /// Waits for one of `sender`'s turns to decode and validate a batch (held until the batch is queued).
    pub async fn turn(&self, sender: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.turns.take(sender).await
    }

    /// The memory budget batches and HJ 212 buffers reserve from.
    pub fn budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }

    /// Validates a batch and queues it for the next group commit. Once this returns, the batch will be committed
    /// whole even if the caller goes away; [`PendingAck::wait`] waits for durability. Splitting the two lets one
    /// stream keep several batches in flight.
    ///
    /// A batch first waits for its memory (at most `budget_wait`).
    ///
    /// # Errors
    /// [`IngestError::BatchTooLarge`], [`IngestError::TooManyValues`], [`IngestError::OverBudget`] or
    /// [`IngestError::ShuttingDown`].
    pub async fn submit(
        &self,
        sender: &str,
        records: Vec<IncomingRecord>,
        receipt: Receipt,
    ) -> Result<PendingAck, IngestError> {
        self.submit_reserved(sender, records, receipt, Reservation::default())
            .await
    }

    /// Reserves memory ahead of reading a batch: a `Push` stream takes its guess before it pulls the next message,
    /// so while it waits it holds no decoded batch and HTTP/2 flow control backs up to the client. The guess is
    /// capped at a sender's share.
    ///
    /// # Errors
    /// [`IngestError::OverBudget`] when memory stays taken for `budget_wait`.
    pub async fn reserve(&self, sender: &str, bytes: usize) -> Result<Reservation, IngestError> {
        let bytes = bytes.min(self.budget.share_bytes());
        Ok(self
            .budget
            .reserve(sender, bytes, self.config.budget_wait)
            .await?)
    }

    /// [`Ingestor::submit`] with memory already reserved (by [`Ingestor::reserve`]); it is resized to the batch.
    ///
    /// # Errors
    /// As [`Ingestor::submit`].
    pub async fn submit_reserved(
        &self,
        sender: &str,
        records: Vec<IncomingRecord>,
        receipt: Receipt,
        mut held: Reservation,
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
        let held_bytes = batch_bytes(&records, &receipt);
        self.budget
            .resize(&mut held, sender, held_bytes, self.config.budget_wait)
            .await?;
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
            held_bytes,
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
                    sender: sender.to_string(),
                    receipt: Some((receipt, source_hours(v.points.iter().map(|(_, p)| p)))),
                    outcomes: Vec::with_capacity(v.points.len()),
                    points: v.points.into_iter().map(|(_, p)| p).collect(),
                    held,
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

/// How big one group commit may get.
struct GroupLimits {
    batches: usize,
    points: usize,
}

/// Part of a batch going into one commit. A batch larger than a commit's limit is committed in slices, each sender
/// taking turns between them: its ack waits for the last slice, and a crash between slices leaves only an
/// unacknowledged prefix, which the client's re-send completes (the stored part comes back as duplicates).
struct Slice {
    job: WriteJob,
    points: Vec<Point>,
    receipt: Option<(Receipt, SourceHours)>,
}

/// Batches waiting for the writer, one queue per sender, taken in turn: a sender with many batches queued puts one
/// into each commit, so a polite sender's batch goes into the next commit rather than behind the whole flood. Each
/// sender's own batches keep their order. The queue itself is bounded by the memory budget every batch holds.
#[derive(Default)]
struct FairQueue {
    by_sender: std::collections::HashMap<String, std::collections::VecDeque<WriteJob>>,
    turn: std::collections::VecDeque<String>,
}

impl FairQueue {
    fn is_empty(&self) -> bool {
        self.turn.is_empty()
    }

    fn push(&mut self, job: WriteJob) {
        let queue = self.by_sender.entry(job.sender.clone()).or_default();
        if queue.is_empty() {
            self.turn.push_back(job.sender.clone());
        }
        queue.push_back(job);
    }

    /// A batch with slices left goes back to the head of its sender's queue; the sender waits for its next turn,
    /// after every other sender's.
    fn put_back(&mut self, job: WriteJob) {
        self.turn.push_back(job.sender.clone());
        self.by_sender
            .entry(job.sender.clone())
            .or_default()
            .push_front(job);
    }

    /// One batch (or the slice of one that fits) per sender in turn, until a limit is reached.
    fn next_group(&mut self, limits: &GroupLimits) -> Vec<Slice> {
        let mut group: Vec<Slice> = Vec::new();
        let mut points = 0;
        while group.len() < limits.batches && points < limits.points {
            let Some(sender) = self.turn.pop_front() else {
                break;
            };
            let Some(queue) = self.by_sender.get_mut(&sender) else {
                continue;
            };
            let Some(mut job) = queue.pop_front() else {
                self.by_sender.remove(&sender);
                continue;
            };
            let take = job.points.len().min(limits.points - points);
            let slice: Vec<Point> = job.points.drain(..take).collect();
            points += take;
            let receipt = job.receipt.take();
            if !job.points.is_empty() {
                // The group is full; the rest of this batch comes back with `put_back` after the commit.
            } else if queue.is_empty() {
                self.by_sender.remove(&sender);
            } else {
                self.turn.push_back(sender);
            }
            group.push(Slice {
                job,
                points: slice,
                receipt,
            });
        }
        group
    }
}

fn writer_loop(
    store: Store,
    mut rx: mpsc::Receiver<WriteJob>,
    detect: mpsc::Sender<DetectMsg>,
    mut next_seq: u64,
    limits: GroupLimits,
    clock: Clock,
) {
    let mut queue = FairQueue::default();
    loop {
        if queue.is_empty() {
            match rx.blocking_recv() {
                Some(job) => queue.push(job),
                None => break,
            }
        }
        while let Ok(job) = rx.try_recv() {
            queue.push(job);
        }
        let mut group = queue.next_group(&limits);
        let seq = next_seq;
        next_seq += 1;
        let batches: Vec<Vec<Point>> = group
            .iter_mut()
            .map(|s| std::mem::take(&mut s.points))
            .collect();
        let receipts: Vec<(Receipt, SourceHours)> =
            group.iter_mut().filter_map(|s| s.receipt.take()).collect();
        let result = store
            .write_commit(seq, &batches, &receipts, clock())
            .and_then(|outcomes| store.flush().map(|()| outcomes));
        drop(receipts);
        match result {
            Ok(outcomes) => {
                let mut held = Reservation::default();
                let mut stored: Vec<Point> = Vec::new();
                let mut done = Vec::new();
                for ((points, out), mut slice) in batches.into_iter().zip(outcomes).zip(group) {
                    stored.extend(
                        points
                            .into_iter()
                            .zip(&out)
                            .filter(|(_, o)| **o == PointOutcome::Stored)
                            .map(|(p, _)| p),
                    );
                    slice.job.outcomes.extend(out);
                    if slice.job.points.is_empty() {
                        held.merge(std::mem::take(&mut slice.job.held));
                        done.push(slice.job);
                    } else {
                        queue.put_back(slice.job);
                    }
                }
                if !stored.is_empty()
                    && detect
                        .blocking_send(DetectMsg::Commit {
                            seq,
                            points: stored,
                            held: Box::new(held),
                        })
                        .is_err()
                {
                    tracing::warn!(
                        seq,
                        "Detection has stopped; the commit stays in the replay log."
                    );
                }
                for job in done {
                    let _ = job.reply.send(Ok(job.outcomes));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, seq, "Commit failed; batches not acknowledged.");
                for slice in group {
                    let _ = slice.job.reply.send(Err(e.to_string()));
                }
            }
        }
    }
    tracing::info!("Ingest writer stopped.");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Interval, ValueFlag};

    fn job(sender: &str, points: usize) -> WriteJob {
        let point = |i: usize| Point {
            source_id: sender.to_string(),
            code: "a21026".into(),
            time_ms: i as i64,
            interval: Interval::Minute,
            value: 1.0,
            flag: ValueFlag::Normal,
            converted: None,
        };
        WriteJob {
            sender: sender.into(),
            points: (0..points).map(point).collect(),
            receipt: None,
            outcomes: Vec::new(),
            held: Reservation::default(),
            reply: oneshot::channel().0,
        }
    }

    fn senders(group: &[Slice]) -> Vec<(String, usize)> {
        group
            .iter()
            .map(|s| (s.job.sender.clone(), s.points.len()))
            .collect()
    }

    const LIMITS: GroupLimits = GroupLimits {
        batches: 64,
        points: 100,
    };

    #[test]
    fn a_polite_batch_goes_into_the_next_commit_not_behind_the_flood() {
        let mut q = FairQueue::default();
        for _ in 0..10 {
            q.push(job("flood", 100));
        }
        q.push(job("polite", 1));
        assert_eq!(senders(&q.next_group(&LIMITS)), [("flood".into(), 100)]);
        // The polite sender's turn comes before the flood's second batch.
        assert_eq!(senders(&q.next_group(&LIMITS))[0], ("polite".into(), 1));
    }

    #[test]
    fn a_batch_over_the_limit_is_committed_in_slices_in_order_with_others_between() {
        let mut q = FairQueue::default();
        q.push(job("big", 250));
        q.push(job("big", 10));
        let mut group = q.next_group(&LIMITS);
        assert_eq!(senders(&group), [("big".into(), 100)]);
        q.push(job("small", 5));
        let first = group.pop().expect("slice");
        assert_eq!(first.points[0].time_ms, 0);
        q.put_back(first.job);
        let group = q.next_group(&LIMITS);
        assert_eq!(
            senders(&group),
            [("small".into(), 5), ("big".into(), 95)],
            "the small sender goes first, then the big batch's next slice"
        );
        assert_eq!(group[1].points[0].time_ms, 100, "slices keep their order");
    }

    #[test]
    fn small_batches_of_one_sender_still_share_a_commit() {
        let mut q = FairQueue::default();
        for _ in 0..8 {
            q.push(job("platform", 10));
        }
        assert_eq!(q.next_group(&LIMITS).len(), 8);
        assert!(q.is_empty());
    }
}

//! The detection thread: recovers from the last checkpoint, then feeds every committed batch through the engine in
//! commit order, upserts anomalies into the book, and checkpoints periodically and at every `Sync`.
//!
//! It is a plain OS thread, not a tokio task: detection is CPU work that must not stall the gRPC runtime, and it has
//! exactly one consumer loop, so a dedicated thread is the simplest correct shape.

use super::engine::{Engine, EngineConfig, EngineSnapshot, OutletFinding};
use super::AnomalySink;
use crate::domain::Point;
use crate::episode;
use crate::registry::RegistryRef;
use crate::store::{decode_state, encode_state, Store, StoreError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// A message to the detection thread. Commits and barriers share one FIFO channel, so a barrier sent after a batch
/// was acknowledged is processed after that batch.
pub enum DetectMsg {
    /// Points newly stored by commit `seq`.
    Commit {
        /// Replay-log sequence number.
        seq: u64,
        /// The stored points.
        points: Vec<Point>,
        /// What the sender holds for these points' memory (the ingest budget's reservation): dropped once detection
        /// has taken them in, so memory waiting for detection counts against the budget too.
        held: Box<dyn Send>,
    },
    /// Reply once everything before this message is detected (and, with `finalize`, every episode closed).
    Barrier {
        /// Close open minutes and episodes at the latest data time.
        finalize: bool,
        /// Where to reply.
        reply: oneshot::Sender<Result<SyncStatus, String>>,
    },
}

/// Detection's progress, as `Sync` reports it.
#[derive(Debug, Clone, Copy)]
pub struct SyncStatus {
    /// Latest data time seen over all outlets.
    pub watermark_ms: i64,
    /// Anomalies in the book.
    pub anomalies_total: u64,
    /// Points stored but too late for detection.
    pub late_total: u64,
}

/// Settings of the thread.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    /// Engine settings.
    pub engine: EngineConfig,
    /// Time between checkpoints while data flows. Shorter = less replay after a crash, more writes.
    pub checkpoint_interval: Duration,
}

/// Detection is throughput work, off the ack path: on a busy machine it should yield the CPU to the writer and the
/// runtime threads, so a client's ack does not wait behind another client's points being detected. Its queue is
/// bounded by the ingest memory budget, so a slower detection slows senders down rather than growing memory.
fn lower_cpu_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority only reads its integer arguments; on Linux, PRIO_PROCESS with who = 0 sets the nice
        // value of the calling thread alone.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, DETECTION_NICE) };
        if rc != 0 {
            tracing::debug!("Could not lower the detection thread's CPU priority.");
        }
    }
}

/// Nice value of the detection thread (0 is normal, 19 lowest).
#[cfg(target_os = "linux")]
const DETECTION_NICE: libc::c_int = 10;

struct Detection {
    engine: Engine,
    store: Store,
    registry: RegistryRef,
    registry_version: u64,
    book: Arc<dyn AnomalySink>,
    processed_seq: u64,
    checkpointed_seq: u64,
    last_checkpoint: Instant,
}

impl Detection {
    fn refresh_topology(&mut self) {
        let v = self.registry.version();
        if v != self.registry_version {
            self.engine.set_topology(self.registry.stack_topologies());
            self.registry_version = v;
        }
    }

    fn apply(&mut self, findings: Vec<OutletFinding>) {
        for f in findings {
            let id = episode::anomaly_id(&f.outlet_id, &f.finding);
            self.book.upsert_with(&id, &mut |existing| {
                episode::apply(existing, &f.enterprise_id, &f.outlet_id, &f.finding)
            });
        }
    }

    fn commit(&mut self, seq: u64, points: &[Point]) {
        self.refresh_topology();
        let mut findings = Vec::new();
        self.engine.ingest(points, &mut findings);
        self.apply(findings);
        self.processed_seq = seq;
    }

    fn checkpoint(&mut self) -> Result<(), StoreError> {
        let snapshot = self
            .engine
            .snapshot()
            .map_err(|reason| StoreError::Encode {
                what: "detection state",
                reason,
            })?;
        let state = encode_state(&snapshot)?;
        self.book.checkpoint(self.processed_seq, &state)?;
        self.checkpointed_seq = self.processed_seq;
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    fn status(&self) -> SyncStatus {
        SyncStatus {
            watermark_ms: self.engine.watermark_ms(),
            anomalies_total: self.book.anomaly_count() as u64,
            late_total: self.engine.late_total(),
        }
    }
}

/// Why detection could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Recovery could not read the store.
    #[error("detection recovery: {0}")]
    Store(#[from] StoreError),
    /// The OS refused a thread.
    #[error("detection thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Recovers detection state from the store (checkpoint + replay of the log after it) and starts the thread.
///
/// # Errors
/// Store failure during recovery, or no thread.
pub fn spawn(
    store: Store,
    registry: RegistryRef,
    book: Arc<dyn AnomalySink>,
    config: TaskConfig,
    mut rx: mpsc::Receiver<DetectMsg>,
) -> Result<std::thread::JoinHandle<()>, StartError> {
    let mut d = Detection {
        engine: Engine::new(config.engine.clone()),
        store: store.clone(),
        registry_version: 0,
        registry,
        book,
        processed_seq: 0,
        checkpointed_seq: 0,
        last_checkpoint: Instant::now(),
    };
    d.refresh_topology();
    if let Some((seq, blob)) = store.checkpoint()? {
        match decode_state::<EngineSnapshot>(&blob) {
            Ok(snap) => {
                for p in d.engine.restore(snap) {
                    tracing::warn!(problem = %p, "Detector state not restored; it relearns.");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Detection checkpoint unreadable; detection relearns.")
            }
        }
        d.processed_seq = seq;
        d.checkpointed_seq = seq;
    }
    let replay = d.store.log_after(d.processed_seq)?;
    let replayed = replay.len();
    for (seq, points) in replay {
        d.commit(seq, &points);
    }
    if replayed > 0 {
        tracing::info!(
            commits = replayed,
            through_seq = d.processed_seq,
            "Detection replayed the log after its checkpoint."
        );
        d.checkpoint()?;
    }
    let handle = std::thread::Builder::new()
        .name("detection".into())
        .spawn(move || {
            lower_cpu_priority();
            while let Some(msg) = rx.blocking_recv() {
                match msg {
                    DetectMsg::Commit { seq, points, held } => {
                        d.commit(seq, &points);
                        drop((points, held));
                        if d.last_checkpoint.elapsed() >= config.checkpoint_interval {
                            if let Err(e) = d.checkpoint() {
                                tracing::error!(error = %e, "Detection checkpoint failed; will retry.");
                            }
                        }
                    }
                    DetectMsg::Barrier { finalize, reply } => {
                        d.refresh_topology();
                        if finalize {
                            let mut findings = Vec::new();
                            d.engine.finalize(&mut findings);
                            d.apply(findings);
                        }
                        let result = d.checkpoint().map(|()| d.status()).map_err(|e| e.to_string());
                        let _ = reply.send(result);
                    }
                }
            }
            if d.processed_seq != d.checkpointed_seq {
                if let Err(e) = d.checkpoint() {
                    tracing::error!(error = %e, "Final detection checkpoint failed; the log will be replayed at start.");
                }
            }
            tracing::info!(through_seq = d.processed_seq, "Detection stopped.");
        })
        ?;
    Ok(handle)
}

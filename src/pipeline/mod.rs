//! The detection pipeline: accepted points flow from the ingest writer into the detection engine, findings become
//! anomalies in the enforcement book, and checkpoints make all of it survive a crash.

pub mod engine;
pub mod task;

pub use engine::{Engine, EngineConfig, OutletFinding};

use crate::domain::Anomaly;
use crate::store::StoreError;

/// Where detection's anomalies go. The enforcement book implements it from the layer above, so the pipeline never
/// imports the book.
pub trait AnomalySink: Send + Sync {
    /// Applies a detection update `f(existing) -> new` to anomaly `id`; persisted by the next
    /// [`AnomalySink::checkpoint`], together with the detection state it came from.
    fn upsert_with(&self, id: &str, f: &mut dyn FnMut(Option<&Anomaly>) -> Anomaly);

    /// Persists detection state through replay-log sequence `through_seq` with every anomaly changed since the last
    /// checkpoint, atomically.
    ///
    /// # Errors
    /// Store failure; the changes are kept for the next checkpoint.
    fn checkpoint(&self, through_seq: u64, state: &[u8]) -> Result<(), StoreError>;

    /// Anomalies held.
    fn anomaly_count(&self) -> usize;
}

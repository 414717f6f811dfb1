//! The models' service half: every stored version, which one is active per scope (the previous one kept for
//! rollback), background training jobs with progress, evaluation on a period and on officers' reviews, the labelled
//! dataset export, and the retraining schedule. The fitting itself is `models`' (pure); the store, the registry, the
//! reviews and the clock are passed in.

pub mod catalog;
pub mod schedule;

pub use catalog::{CatalogError, ModelCatalog};
pub use schedule::RetrainSchedule;

use crate::domain::{Anomaly, AnomalyFilter};

/// The reviewed anomalies training labels its data with. The enforcement book implements it from the layer above,
/// so training never imports the book.
pub trait ReviewedAnomalies: Send + Sync {
    /// Every anomaly matching `filter`, in rank order.
    fn matching(&self, filter: &AnomalyFilter) -> Vec<Anomaly>;
}

//! Scheduled retraining: every `every`, refit each stack outlet's model on its latest history (optionally only where
//! the last day drifted from it) and, if asked, activate the new versions.

use super::ModelCatalog;
use std::sync::Arc;
use std::time::Duration;

/// Scheduled retraining (e.g. nightly).
#[derive(Debug, Clone, Copy)]
pub struct RetrainSchedule {
    /// Time between runs.
    pub every: Duration,
    /// Days of history each run fits on.
    pub window_days: u32,
    /// Activate the new versions (otherwise they wait for a data scientist's evaluation).
    pub activate: bool,
    /// Refit an outlet that has a model only when its last day has drifted from it.
    pub only_on_drift: bool,
}

/// Runs the schedule until the task is aborted. The first run is one period after start (not at once), so a
/// restart does not refit everything.
pub async fn run(catalog: Arc<ModelCatalog>, schedule: RetrainSchedule) {
    let mut tick = tokio::time::interval(schedule.every);
    tick.tick().await; // the first tick is immediate
    loop {
        tick.tick().await;
        let catalog = catalog.clone();
        let run = tokio::task::spawn_blocking(move || {
            catalog.retrain_all(
                schedule.window_days,
                schedule.activate,
                schedule.only_on_drift,
            )
        })
        .await;
        match run {
            Ok(ids) => {
                tracing::info!(models = ?ids, activated = schedule.activate, "Scheduled retraining done.")
            }
            Err(e) => {
                tracing::error!(error = %e, "Scheduled retraining failed: the run panicked or was cancelled.")
            }
        }
    }
}

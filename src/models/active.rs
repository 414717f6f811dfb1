//! The models detection uses right now: one per scope, swapped in place when a version is activated, read by the
//! detection thread without a restart. An outlet uses its own model when it has one, else its industry's prior.

use super::artifact::{ModelArtifact, ModelScope};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Active model per scope.
#[derive(Debug, Default)]
pub struct ActiveModels {
    by_scope: RwLock<BTreeMap<ModelScope, Arc<ModelArtifact>>>,
    generation: AtomicU64,
}

impl ActiveModels {
    /// Makes `model` the active one of its scope.
    pub fn set(&self, model: Arc<ModelArtifact>) {
        if let Ok(mut m) = self.by_scope.write() {
            m.insert(model.scope.clone(), model);
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Changes each time a model is activated: readers cache their lookups until it moves.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The active model of a scope.
    pub fn get(&self, scope: &ModelScope) -> Option<Arc<ModelArtifact>> {
        self.by_scope.read().ok()?.get(scope).cloned()
    }

    /// The model an outlet is judged by: its own, else its industry's.
    pub fn resolve(&self, outlet_id: &str, industry: &str) -> Option<Arc<ModelArtifact>> {
        let m = self.by_scope.read().ok()?;
        m.get(&ModelScope::Outlet(outlet_id.into()))
            .or_else(|| m.get(&ModelScope::Industry(industry.into())))
            .cloned()
    }

    /// Every active model.
    pub fn all(&self) -> Vec<Arc<ModelArtifact>> {
        self.by_scope
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

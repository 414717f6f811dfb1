//! The per-industry priors shipped in `models/priors/`: version 0 of each industry's model, used by every outlet of
//! the industry until it has enough history for a model of its own. See `models/README.md` for how they were made.

use super::ModelArtifact;

/// The shipped files, embedded so a fresh binary needs nothing beside it.
const FILES: &[(&str, &str)] = &[];

/// The shipped priors that parse (a broken file is logged and skipped, never fatal).
pub fn builtin() -> Vec<ModelArtifact> {
    FILES
        .iter()
        .filter_map(|(name, json)| match ModelArtifact::from_json(json) {
            Ok(m) => Some(ModelArtifact { version: 0, ..m }),
            Err(e) => {
                tracing::warn!(file = name, error = %e, "Shipped prior unreadable; skipped.");
                None
            }
        })
        .collect()
}

//! The per-industry priors shipped in `models/priors/`: version 0 of each industry's model, used by every outlet of
//! the industry until it has enough history for a model of its own. See `models/README.md` for how they were made.

use super::ModelArtifact;

/// The shipped files, embedded so a fresh binary needs nothing beside it.
const FILES: &[(&str, &str)] = &[
    (
        "cement.json",
        include_str!("../../models/priors/cement.json"),
    ),
    (
        "coal_power.json",
        include_str!("../../models/priors/coal_power.json"),
    ),
    (
        "coating.json",
        include_str!("../../models/priors/coating.json"),
    ),
    (
        "coking.json",
        include_str!("../../models/priors/coking.json"),
    ),
    (
        "gas_boiler.json",
        include_str!("../../models/priors/gas_boiler.json"),
    ),
    (
        "steel_sintering.json",
        include_str!("../../models/priors/steel_sintering.json"),
    ),
];

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModelScope;

    #[test]
    fn every_shipped_prior_parses_and_has_accepted_tests() {
        let priors = builtin();
        assert_eq!(priors.len(), FILES.len());
        for p in &priors {
            assert!(matches!(p.scope, ModelScope::Industry(_)), "{}", p.id());
            assert_eq!(p.version, 0);
            assert!(p.thresholds.contains_key("flow_fraction"), "{}", p.id());
            assert!(p.thresholds.values().all(|t| t.is_finite() && *t > 0.0));
        }
    }
}

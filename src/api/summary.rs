//! Summaries at the edge: an anomaly's sentence is rendered from its stored evidence when it is served, in the
//! language the request asks for (`accept-language` metadata, as HTTP's header: `zh`, `en`, `en-US`, ...), else the
//! server's `--language`, with the enterprise's and outlet's names as the registry has them now.

use crate::detect::kit::Names;
use crate::domain::{Anomaly, Language};
use crate::registry::RegistryRef;
use tonic::metadata::MetadataMap;

/// The metadata key a client sets to choose the summaries' language.
pub const LANGUAGE_KEY: &str = "accept-language";

/// The language a request asks for: the first tag of `accept-language` that names a language we write (quality
/// values are ignored: the client's first choice wins), else `default`.
pub fn request_language(metadata: &MetadataMap, default: Language) -> Language {
    metadata
        .get(LANGUAGE_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(|header| {
            header
                .split(',')
                .filter_map(|tag| tag.split(';').next()?.trim().parse::<Language>().ok())
                .next()
        })
        .unwrap_or(default)
}

/// Renders summaries for one request.
#[derive(Clone)]
pub struct Summaries {
    registry: RegistryRef,
    language: Language,
}

impl Summaries {
    /// Summaries in `language`, with names from `registry`.
    pub fn new(registry: RegistryRef, language: Language) -> Self {
        Self { registry, language }
    }

    /// The sentence for one anomaly.
    pub fn of(&self, a: &Anomaly) -> String {
        let (enterprise, outlet) = self.registry.names(&a.enterprise_id, &a.outlet_id);
        let names = Names {
            enterprise: if enterprise.is_empty() {
                &a.enterprise_id
            } else {
                &enterprise
            },
            outlet: if outlet.is_empty() {
                &a.outlet_id
            } else {
                &outlet
            },
        };
        crate::detect::summary(&a.detector, a.kind, &a.evidence, &names, self.language)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert(LANGUAGE_KEY, value.parse().expect("ascii"));
        m
    }

    #[test]
    fn the_clients_first_known_language_wins_else_the_servers() {
        assert_eq!(
            request_language(&metadata("en-US,en;q=0.9"), Language::Zh),
            Language::En
        );
        assert_eq!(
            request_language(&metadata("fr, zh-CN;q=0.5"), Language::En),
            Language::Zh
        );
        assert_eq!(
            request_language(&metadata("fr"), Language::En),
            Language::En
        );
        assert_eq!(
            request_language(&MetadataMap::new(), Language::Zh),
            Language::Zh
        );
    }
}

//! Summaries at the edge: an anomaly's sentence is rendered from its stored evidence when it is served, in the
//! language the request asks for (`accept-language` metadata, as HTTP's header: `zh`, `en`, `en-US`, ...), else the
//! server's `--language`, with the enterprise's and outlet's names as the registry has them now. The sentences
//! themselves, one section per detector, are in [`sentences`].

mod sentences;

use crate::domain::{Anomaly, AnomalyKind, Evidence, Language};
use crate::registry::RegistryRef;
use serde::de::DeserializeOwned;
use tonic::metadata::MetadataMap;

/// The names a summary speaks of, looked up when it is rendered (a renamed enterprise reads under its new name).
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    /// The enterprise's name.
    pub enterprise: &'a str,
    /// The outlet's name.
    pub outlet: &'a str,
}

/// How a detector's figures read to an officer.
trait Summary: DeserializeOwned {
    /// One sentence, from these figures and names alone.
    fn summary(&self, names: &Names<'_>, language: Language) -> String;
}

/// Renders a summary from evidence through a figures type, if the evidence is that type's.
type RenderFn = fn(&Evidence, &Names<'_>, Language) -> Option<String>;

fn render<F: Summary>(
    evidence: &Evidence,
    names: &Names<'_>,
    language: Language,
) -> Option<String> {
    evidence.fields::<F>().map(|f| f.summary(names, language))
}

/// The summary of an anomaly raised by `detector` (name with version), from its evidence, in `language`. An
/// anomaly whose detector or figures are unknown (a retired version) reads as its kind and names.
pub fn summary_of(
    detector: &str,
    kind: AnomalyKind,
    evidence: &Evidence,
    names: &Names<'_>,
    language: Language,
) -> String {
    sentences::SENTENCES
        .iter()
        .find(|(name, _)| *name == detector)
        .and_then(|(_, render)| render(evidence, names, language))
        .unwrap_or_else(|| match language {
            Language::Zh => format!("{}{}：{}。", names.enterprise, names.outlet, kind.as_str()),
            Language::En => format!("{} {}: {}.", names.enterprise, names.outlet, kind.as_str()),
        })
}

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
        summary_of(&a.detector, a.kind, &a.evidence, &names, self.language)
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
    fn every_registered_detector_has_a_sentence_and_no_retired_one_does() {
        let registered: Vec<&str> = crate::detect::DETECTORS.iter().map(|d| d.name).collect();
        let written: Vec<&str> = sentences::SENTENCES.iter().map(|(n, _)| *n).collect();
        assert_eq!(written, registered);
    }

    #[test]
    fn an_unknown_detectors_anomaly_still_reads_as_its_kind() {
        let names = Names {
            enterprise: "E",
            outlet: "S",
        };
        let s = summary_of(
            "retired/9",
            AnomalyKind::Exceedance,
            &Evidence::default(),
            &names,
            Language::En,
        );
        assert_eq!(s, "E S: exceedance.");
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

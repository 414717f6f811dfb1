//! A signature's figures: the typed record a detector fills when it raises or updates an episode, stored as the
//! anomaly's [`Evidence`], and the one place its summary is written from. Summaries are rendered from the stored
//! figures when they are read, in the reader's language, so an anomaly raised on a Chinese-speaking server reads in
//! English to an English-speaking client and no prose is frozen into the store.

use crate::domain::{Evidence, Language};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The names a summary speaks of, looked up when it is rendered (a renamed enterprise reads under its new name).
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    /// The enterprise's name.
    pub enterprise: &'a str,
    /// The outlet's name.
    pub outlet: &'a str,
}

/// The figures of one signature: named fields (units in the names), serialised into the anomaly's evidence.
pub trait Figures: Serialize + DeserializeOwned {
    /// One sentence for an officer, from these figures alone.
    fn summary(&self, names: &Names<'_>, language: Language) -> String;
}

/// Renders a stored anomaly's summary from its evidence, if the evidence is `F`'s.
pub fn render<F: Figures>(
    evidence: &Evidence,
    names: &Names<'_>,
    language: Language,
) -> Option<String> {
    evidence.fields::<F>().map(|f| f.summary(names, language))
}

/// Renders a summary through a detector's [`Figures`] type (the signature of [`render`], for the registry).
pub type RenderFn = fn(&Evidence, &Names<'_>, Language) -> Option<String>;

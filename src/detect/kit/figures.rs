//! A signature's figures: the typed record a detector fills when it raises or updates an episode (named fields,
//! units in the names), stored as the anomaly's [`crate::domain::Evidence`]. Detectors state facts; the sentence an
//! officer reads is written from these figures at the API edge, in the reader's language.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The figures of one signature: any serde record (its fields become the evidence's figures).
pub trait Figures: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> Figures for T {}

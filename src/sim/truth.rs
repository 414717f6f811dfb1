//! Ground truth: what the simulator injected, where and when, so detectors can be scored against it.

use crate::domain::AnomalyKind;
use serde::{Deserialize, Serialize};

/// One injected violation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthEvent {
    /// Enterprise.
    pub enterprise_id: String,
    /// Stack outlet concerned.
    pub outlet_id: String,
    /// The violation.
    pub kind: AnomalyKind,
    /// Start (Unix ms).
    pub start_ms: i64,
    /// End (Unix ms, exclusive).
    pub end_ms: i64,
    /// A careful cheat (smaller magnitude, disguised) rather than a lazy one.
    pub subtle: bool,
    /// What was done, in words.
    pub description: String,
    /// Other kinds a correct detector may legitimately report for the same event (an idle scrubber also causes an
    /// exceedance); such anomalies are not false alarms.
    #[serde(default)]
    pub also: Vec<AnomalyKind>,
}

/// A truth file: what `sentinel simulate` writes and `sentinel eval` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthFile {
    /// First data minute (Unix ms).
    pub start_ms: i64,
    /// Days of data.
    pub days: f64,
    /// Enterprises with no injected violation (false-alarm rates are measured on them).
    pub clean_enterprises: Vec<String>,
    /// The injected violations.
    pub events: Vec<TruthEvent>,
    /// The simulator seed (absent from truth files written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Number of simulated enterprises (absent from older truth files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprises: Option<usize>,
    /// Share of enterprises the simulator was asked to keep clean (absent from older truth files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_share: Option<f64>,
    /// The scenario family (absent from older truth files, which are all `district`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<super::Family>,
}

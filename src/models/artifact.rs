//! A model as a versioned artifact: what it describes (an outlet or an industry), the data it was trained on, what it
//! reads, its fitted parameters, its alarm thresholds and how well it validated. Stored in the store as a postcard
//! blob behind a format header, exported and shipped (the per-industry priors in `models/`) as JSON a person can read.

use super::calibrate::Calibration;
use super::joint::JointModel;
use super::regression::TargetModel;
use super::states::MeterStates;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Magic of a stored model blob.
const MAGIC: &[u8; 4] = b"CSMD";
/// Format of the blob after the header; bump when [`ModelArtifact`] changes shape.
pub const FORMAT_VERSION: u16 = 1;

/// What a model describes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelScope {
    /// One stack outlet, fitted on its own history.
    Outlet(String),
    /// Every outlet of an industry: the prior used until an outlet has a model of its own.
    Industry(String),
}

impl ModelScope {
    /// `outlet:<id>` or `industry:<name>`.
    pub fn key(&self) -> String {
        self.to_string()
    }

    /// Parses [`ModelScope::key`].
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, name) = s.split_once(':')?;
        if name.is_empty() {
            return None;
        }
        match kind {
            "outlet" => Some(Self::Outlet(name.into())),
            "industry" => Some(Self::Industry(name.into())),
            _ => None,
        }
    }
}

impl fmt::Display for ModelScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Outlet(id) => write!(f, "outlet:{id}"),
            Self::Industry(name) => write!(f, "industry:{name}"),
        }
    }
}

/// The fitted parts of a model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FittedModel {
    /// Regression of each target on production and time of day.
    pub targets: Vec<TargetModel>,
    /// Joint PCA of the streams.
    pub joint: Option<JointModel>,
    /// Learned power levels per meter (outlet models only).
    pub meter_states: Vec<MeterStates>,
    /// Production fractions the model was fitted on (1st and 99th percentile): outside it the model extrapolates,
    /// and a plant at a load it never ran at before is not evidence of anything.
    pub production_range: [f64; 2],
}

impl FittedModel {
    /// Whether a production fraction lies within what the model saw in training.
    pub fn covers(&self, production_fraction: f64) -> bool {
        let [lo, hi] = self.production_range;
        (lo - 0.02..=hi + 0.02).contains(&production_fraction)
    }
}

/// A versioned model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelArtifact {
    /// What it describes.
    pub scope: ModelScope,
    /// 1, 2, … per scope.
    pub version: u32,
    /// Creation time (Unix ms).
    pub created_ms: i64,
    /// Training window `[from, to)` (Unix ms, data time).
    pub training_from_ms: i64,
    /// End of the training window.
    pub training_to_ms: i64,
    /// Outlets whose data it was fitted on.
    pub training_outlets: Vec<String>,
    /// Regression inputs, in coefficient order.
    pub inputs: Vec<String>,
    /// The fitted parameters.
    pub fitted: FittedModel,
    /// How window statistics become alarms.
    pub calibration: Calibration,
    /// Alarm threshold on the window mean of each test's standardized statistic, by test name (a target, or
    /// [`JOINT_TEST`]). Only accepted tests have one.
    pub thresholds: BTreeMap<String, f64>,
    /// Validation figures a reader needs to trust it (holdout R² per target, explained variance, rows).
    pub metrics: BTreeMap<String, f64>,
    /// Why parts were not fitted or not accepted.
    pub notes: Vec<String>,
}

/// Name of the joint model's test in [`ModelArtifact::thresholds`].
pub const JOINT_TEST: &str = "joint_q";

impl ModelArtifact {
    /// `outlet:s1@3`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.scope, self.version)
    }

    /// The regression of `target`, if fitted.
    pub fn target(&self, target: &str) -> Option<&TargetModel> {
        self.fitted.targets.iter().find(|t| t.target == target)
    }

    /// Stored form: header (magic, format version) + postcard.
    ///
    /// # Errors
    /// When the model cannot be encoded (an error rather than an empty blob, which would read as corrupt later).
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend(postcard::to_stdvec(self).map_err(|e| format!("model body: {e}"))?);
        Ok(out)
    }

    /// Inverse of [`ModelArtifact::encode`].
    ///
    /// # Errors
    /// Not a model blob, or one of another format version.
    pub fn decode(blob: &[u8]) -> Result<Self, String> {
        let body = blob
            .strip_prefix(MAGIC.as_slice())
            .ok_or("not a model blob (bad magic)")?;
        let (version, body) = body.split_at_checked(2).ok_or("truncated model header")?;
        let version = u16::from_le_bytes([version[0], version[1]]);
        if version != FORMAT_VERSION {
            return Err(format!(
                "model format {version}, this build reads {FORMAT_VERSION}"
            ));
        }
        postcard::from_bytes(body).map_err(|e| format!("model body: {e}"))
    }

    /// Pretty JSON, for export files and the shipped priors.
    ///
    /// # Errors
    /// When the model cannot be written as JSON.
    pub fn to_json(&self) -> Result<String, String> {
        serde_json::to_string_pretty(self).map_err(|e| format!("model JSON: {e}"))
    }

    /// Reads [`ModelArtifact::to_json`].
    ///
    /// # Errors
    /// Not a model file.
    pub fn from_json(s: &str) -> Result<Self, String> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }
}

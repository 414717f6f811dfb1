//! An anomaly is one episode of suspicious behaviour at one outlet (or enterprise): when it started and ended, how
//! sure we are, the figures behind it, and where it stands in the rectification loop of the city plan (八(三)).

use super::Evidence;
use serde::{Deserialize, Serialize};

/// The kinds of anomaly an officer can act on. Stable numbering mirrors the gRPC contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // each variant is documented in proto/sentinel/v1/enforcement.proto
pub enum AnomalyKind {
    Exceedance,
    TreatmentNotRunning,
    TreatmentLowPower,
    BypassSuspected,
    RestrictionViolation,
    UnmonitoredEmission,
    Flatline,
    LowVariance,
    ReplayedData,
    CalibrationGas,
    Dilution,
    ParameterTampering,
    LimitBunching,
    FlagAbuse,
    ModelResidual,
    AmmoniaSlip,
    PermitExceeded,
    SelectiveGap,
}

impl AnomalyKind {
    /// Every kind, in contract order.
    pub const ALL: [AnomalyKind; 18] = [
        Self::Exceedance,
        Self::TreatmentNotRunning,
        Self::TreatmentLowPower,
        Self::BypassSuspected,
        Self::RestrictionViolation,
        Self::UnmonitoredEmission,
        Self::Flatline,
        Self::LowVariance,
        Self::ReplayedData,
        Self::CalibrationGas,
        Self::Dilution,
        Self::ParameterTampering,
        Self::LimitBunching,
        Self::FlagAbuse,
        Self::ModelResidual,
        Self::AmmoniaSlip,
        Self::PermitExceeded,
        Self::SelectiveGap,
    ];

    /// The contract's enum number (1-based).
    pub fn number(self) -> i32 {
        match Self::ALL.iter().position(|k| *k == self) {
            Some(i) => i as i32 + 1,
            None => 0,
        }
    }

    /// Inverse of [`AnomalyKind::number`].
    pub fn from_number(n: i32) -> Option<Self> {
        usize::try_from(n - 1)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
    }

    /// snake_case name for tables, CSV and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exceedance => "exceedance",
            Self::TreatmentNotRunning => "treatment_not_running",
            Self::TreatmentLowPower => "treatment_low_power",
            Self::BypassSuspected => "bypass_suspected",
            Self::RestrictionViolation => "restriction_violation",
            Self::UnmonitoredEmission => "unmonitored_emission",
            Self::Flatline => "flatline",
            Self::LowVariance => "low_variance",
            Self::ReplayedData => "replayed_data",
            Self::CalibrationGas => "calibration_gas",
            Self::Dilution => "dilution",
            Self::ParameterTampering => "parameter_tampering",
            Self::LimitBunching => "limit_bunching",
            Self::FlagAbuse => "flag_abuse",
            Self::ModelResidual => "model_residual",
            Self::AmmoniaSlip => "ammonia_slip",
            Self::PermitExceeded => "permit_exceeded",
            Self::SelectiveGap => "selective_gap",
        }
    }

    /// Parses [`AnomalyKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// Where an anomaly stands in the closed loop: open → dispatched → confirmed / false positive → rectified → closed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub enum ReviewStatus {
    /// Raised, nobody has looked yet.
    #[default]
    Open,
    /// Sent for on-site or off-site enforcement.
    Dispatched,
    /// Violation confirmed.
    Confirmed,
    /// Not a violation (the label models train on).
    FalsePositive,
    /// 整改完成: the enterprise has fixed it.
    Rectified,
    /// Case closed.
    Closed,
}

/// A review transition the workflow does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot move an anomaly from {from:?} to {to:?}: allowed from {from:?} are {allowed}")]
pub struct ReviewTransitionError {
    /// Current status.
    pub from: ReviewStatus,
    /// Requested status.
    pub to: ReviewStatus,
    /// Human-readable list of allowed targets.
    pub allowed: String,
}

impl ReviewStatus {
    /// Every status, in contract order.
    pub const ALL: [ReviewStatus; 6] = [
        Self::Open,
        Self::Dispatched,
        Self::Confirmed,
        Self::FalsePositive,
        Self::Rectified,
        Self::Closed,
    ];

    /// The contract's enum number (1-based).
    pub fn number(self) -> i32 {
        match Self::ALL.iter().position(|k| *k == self) {
            Some(i) => i as i32 + 1,
            None => 0,
        }
    }

    /// Inverse of [`ReviewStatus::number`].
    pub fn from_number(n: i32) -> Option<Self> {
        usize::try_from(n - 1)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
    }

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Dispatched => "dispatched",
            Self::Confirmed => "confirmed",
            Self::FalsePositive => "false_positive",
            Self::Rectified => "rectified",
            Self::Closed => "closed",
        }
    }

    /// The statuses the workflow allows next. A false positive can be closed directly; a confirmed violation
    /// must be rectified before it is closed, so that no confirmed case disappears without a fix on record.
    pub fn allowed_next(self) -> &'static [ReviewStatus] {
        match self {
            Self::Open => &[Self::Dispatched, Self::FalsePositive],
            Self::Dispatched => &[Self::Confirmed, Self::FalsePositive],
            Self::Confirmed => &[Self::Rectified],
            Self::FalsePositive => &[Self::Closed, Self::Open],
            Self::Rectified => &[Self::Closed],
            Self::Closed => &[],
        }
    }

    /// Checks a transition against [`ReviewStatus::allowed_next`].
    ///
    /// # Errors
    /// [`ReviewTransitionError`] naming the allowed targets.
    pub fn transition(self, to: ReviewStatus) -> Result<ReviewStatus, ReviewTransitionError> {
        if self.allowed_next().contains(&to) {
            Ok(to)
        } else {
            let allowed: Vec<&str> = self.allowed_next().iter().map(|s| s.as_str()).collect();
            Err(ReviewTransitionError {
                from: self,
                to,
                allowed: if allowed.is_empty() {
                    "none (final)".to_string()
                } else {
                    allowed.join(", ")
                },
            })
        }
    }
}

/// One entry of the audit trail of a review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewEntry {
    /// Status before.
    pub from: ReviewStatus,
    /// Status after.
    pub to: ReviewStatus,
    /// Who made the change.
    pub reviewer: String,
    /// Wall time of the change, Unix ms.
    pub at_ms: i64,
    /// Free text.
    pub note: String,
}

/// One anomaly episode with its evidence and review state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// Deterministic id (outlet, kind, detector, start): re-detecting the same episode after a restart updates it
    /// instead of reporting it twice.
    pub id: String,
    /// Enterprise.
    pub enterprise_id: String,
    /// Outlet, or empty for enterprise-level kinds.
    pub outlet_id: String,
    /// Every source whose data the finding rests on.
    pub source_ids: Vec<String>,
    /// What kind of violation is suspected.
    pub kind: AnomalyKind,
    /// Episode start (data time, ms).
    pub start_ms: i64,
    /// Episode end so far (data time, ms, exclusive).
    pub end_ms: i64,
    /// Calibrated 0..1; ranks the enforcement list across kinds.
    pub score: f64,
    /// Detector name and version.
    pub detector: String,
    /// The figures that justify the alarm; the sentence an officer reads is rendered from them in the reader's
    /// language when the anomaly is served.
    pub evidence: Evidence,
    /// Review state.
    pub status: ReviewStatus,
    /// Data time at which the episode was first raised.
    pub detected_at_ms: i64,
    /// Latest review note.
    pub note: String,
    /// Whether the episode was still open when last updated.
    pub ongoing: bool,
    /// Audit trail of review transitions.
    #[serde(default)]
    pub reviews: Vec<ReviewEntry>,
}

/// A filter on the enforcement list. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct AnomalyFilter {
    /// Enterprises.
    pub enterprise_ids: Vec<String>,
    /// Region of the enterprise.
    pub region: String,
    /// Regions the caller may see (an officer's scope); empty = all.
    pub scope_regions: Vec<String>,
    /// Kinds.
    pub kinds: Vec<AnomalyKind>,
    /// Overlap window start (0 = open).
    pub from_ms: i64,
    /// Overlap window end (0 = open).
    pub to_ms: i64,
    /// Minimum score.
    pub min_score: f64,
    /// Review statuses.
    pub statuses: Vec<ReviewStatus>,
}

impl AnomalyFilter {
    /// Whether the filter looks at regions (so the caller must resolve them).
    pub fn needs_region(&self) -> bool {
        !self.region.is_empty() || !self.scope_regions.is_empty()
    }

    /// Whether `a` passes, given its enterprise's region.
    pub fn matches(&self, a: &Anomaly, region: &str) -> bool {
        (self.enterprise_ids.is_empty() || self.enterprise_ids.contains(&a.enterprise_id))
            && (self.region.is_empty() || self.region == region)
            && (self.scope_regions.is_empty() || self.scope_regions.iter().any(|r| r == region))
            && (self.kinds.is_empty() || self.kinds.contains(&a.kind))
            && (self.from_ms == 0 || a.end_ms >= self.from_ms)
            && (self.to_ms == 0 || a.start_ms <= self.to_ms)
            && a.score >= self.min_score
            && (self.statuses.is_empty() || self.statuses.contains(&a.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_numbers_match_contract() {
        assert_eq!(AnomalyKind::Exceedance.number(), 1);
        assert_eq!(AnomalyKind::TreatmentNotRunning.number(), 2);
        assert_eq!(AnomalyKind::SelectiveGap.number(), 18);
        for k in AnomalyKind::ALL {
            assert_eq!(AnomalyKind::from_number(k.number()), Some(k));
            assert_eq!(AnomalyKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(AnomalyKind::from_number(0), None);
        assert_eq!(AnomalyKind::from_number(19), None);
    }

    #[test]
    fn review_workflow_allows_the_closed_loop_only() {
        use ReviewStatus::*;
        let mut s = Open;
        for next in [Dispatched, Confirmed, Rectified, Closed] {
            s = s.transition(next).unwrap();
        }
        assert_eq!(s, Closed);
        let err = Open.transition(Closed).unwrap_err();
        assert!(err.to_string().contains("dispatched"), "{err}");
        assert!(Confirmed.transition(Closed).is_err());
        assert!(Closed.transition(Open).is_err());
        assert_eq!(Open.transition(FalsePositive), Ok(FalsePositive));
    }
}

//! Episodes become anomalies: a finding is one update of an episode, the anomaly is its stored, reviewable form.
//!
//! The anomaly id is derived from what identifies the episode (outlet, kind, key, start), not from a counter, so that
//! re-detecting the same episode after a crash-and-replay updates the stored anomaly instead of reporting it twice,
//! and so that an update never touches the review state an officer has set.

use crate::detect::Finding;
use crate::domain::{Anomaly, ReviewStatus};

/// FNV-1a 64: stable across Rust versions and platforms (unlike `DefaultHasher`), which ids must be.
fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff; // separator, so ("ab","c") and ("a","bc") differ
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The id of the anomaly a finding belongs to: `A` + 16 hex digits.
pub fn anomaly_id(outlet_id: &str, finding: &Finding) -> String {
    let h = fnv1a64(&[
        outlet_id.as_bytes(),
        finding.kind.as_str().as_bytes(),
        finding.key.as_bytes(),
        &finding.start_ms.to_be_bytes(),
    ]);
    format!("A{h:016x}")
}

/// Applies a finding to the stored anomaly (if any): detection fields are replaced, review fields kept, and the
/// first detection time stays the earliest one.
pub fn apply(
    existing: Option<&Anomaly>,
    enterprise_id: &str,
    outlet_id: &str,
    f: &Finding,
) -> Anomaly {
    let id = anomaly_id(outlet_id, f);
    let (status, note, reviews, detected_at_ms) = match existing {
        Some(a) => (
            a.status,
            a.note.clone(),
            a.reviews.clone(),
            a.detected_at_ms.min(f.detected_at_ms),
        ),
        None => (
            ReviewStatus::Open,
            String::new(),
            Vec::new(),
            f.detected_at_ms,
        ),
    };
    Anomaly {
        id,
        enterprise_id: enterprise_id.to_string(),
        outlet_id: outlet_id.to_string(),
        source_ids: f.source_ids.clone(),
        kind: f.kind,
        start_ms: f.start_ms,
        end_ms: f.end_ms,
        score: f.score,
        detector: f.detector.to_string(),
        evidence: f.evidence.clone(),
        status,
        detected_at_ms,
        note,
        ongoing: f.ongoing,
        reviews,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AnomalyKind;

    fn finding(start: i64, end: i64) -> Finding {
        Finding {
            kind: AnomalyKind::TreatmentNotRunning,
            key: "t1".into(),
            start_ms: start,
            end_ms: end,
            detected_at_ms: start + 10,
            score: 0.6,
            source_ids: vec!["s1".into()],
            evidence: crate::domain::Evidence::default(),
            ongoing: true,
            detector: "d/1",
        }
    }

    #[test]
    fn same_episode_same_id_and_review_state_survives_updates() {
        let a = apply(None, "e1", "s1", &finding(100, 200));
        let mut reviewed = a.clone();
        reviewed.status = ReviewStatus::Dispatched;
        reviewed.note = "inspect".into();
        let b = apply(Some(&reviewed), "e1", "s1", &finding(100, 900));
        assert_eq!(a.id, b.id);
        assert_eq!(b.end_ms, 900);
        assert_eq!(b.status, ReviewStatus::Dispatched);
        assert_eq!(b.note, "inspect");
        assert_ne!(a.id, apply(None, "e1", "s1", &finding(101, 200)).id);
        assert_ne!(a.id, apply(None, "e1", "s2", &finding(100, 200)).id);
        assert_eq!(a.id.len(), 17);
    }
}

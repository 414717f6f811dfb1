//! Scoring detections against ground truth: per kind, how many injected events were found (recall), how many
//! alarms were right (precision), how long detection took in data time, and how often clean enterprises were
//! flagged (false alarms per enterprise-day). Pure: it takes truth and detections, whatever server produced them.

pub mod epa;

use crate::domain::AnomalyKind;
use crate::sim::TruthEvent;
use serde::Serialize;
use std::collections::BTreeMap;

/// How close in time an alarm must be to an event to count as finding it (ms either side).
pub const DEFAULT_TOLERANCE_MS: i64 = 30 * 60_000;

/// Kinds judged per enterprise rather than per outlet.
fn enterprise_level(kind: AnomalyKind) -> bool {
    matches!(
        kind,
        AnomalyKind::RestrictionViolation | AnomalyKind::PermitExceeded
    )
}

/// An alarm as the scorer needs it.
#[derive(Debug, Clone)]
pub struct Detection {
    /// Enterprise.
    pub enterprise_id: String,
    /// Outlet.
    pub outlet_id: String,
    /// Kind.
    pub kind: AnomalyKind,
    /// Start (ms).
    pub start_ms: i64,
    /// End (ms).
    pub end_ms: i64,
    /// Data time it was raised (ms).
    pub detected_at_ms: i64,
}

/// Scores of one kind.
#[derive(Debug, Clone, Serialize)]
pub struct KindScore {
    /// The kind.
    pub kind: AnomalyKind,
    /// Injected events of this kind.
    pub events: usize,
    /// Of those, found by an alarm of this kind.
    pub detected: usize,
    /// detected / events (None when no events).
    pub recall: Option<f64>,
    /// Alarms of this kind raised.
    pub alarms: usize,
    /// Of those, matching an injected event (of this kind, or one that causes this kind).
    pub true_alarms: usize,
    /// true_alarms / alarms (None when no alarms).
    pub precision: Option<f64>,
    /// Median data-time delay from event start to first alarm (minutes).
    pub median_delay_min: Option<f64>,
    /// Alarms of this kind at clean enterprises.
    pub false_alarms_on_clean: usize,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Per kind, in contract order; kinds with neither events nor alarms are left out.
    pub kinds: Vec<KindScore>,
    /// Events found / events.
    pub overall_recall: Option<f64>,
    /// True alarms / alarms.
    pub overall_precision: Option<f64>,
    /// Alarms at clean enterprises per enterprise-day.
    pub false_alarms_per_enterprise_day: f64,
    /// Clean enterprises × days observed.
    pub clean_enterprise_days: f64,
    /// Matching tolerance (minutes).
    pub tolerance_min: f64,
}

fn matches(e: &TruthEvent, d: &Detection, tolerance_ms: i64, primary_only: bool) -> bool {
    let same_place = if enterprise_level(e.kind) || enterprise_level(d.kind) {
        e.enterprise_id == d.enterprise_id
    } else {
        e.outlet_id == d.outlet_id
    };
    let kind_ok = d.kind == e.kind || (!primary_only && e.also.contains(&d.kind));
    same_place
        && kind_ok
        && d.start_ms <= e.end_ms + tolerance_ms
        && d.end_ms >= e.start_ms - tolerance_ms
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Scores `detections` against `truth`. `clean` lists enterprises without injected events; `days` is the length
/// of the observed period.
pub fn score(
    truth: &[TruthEvent],
    detections: &[Detection],
    clean: &[String],
    days: f64,
    tolerance_ms: i64,
) -> Report {
    let mut kinds: BTreeMap<AnomalyKind, KindScore> = BTreeMap::new();
    let entry = |kinds: &mut BTreeMap<AnomalyKind, KindScore>, k: AnomalyKind| {
        kinds.entry(k).or_insert(KindScore {
            kind: k,
            events: 0,
            detected: 0,
            recall: None,
            alarms: 0,
            true_alarms: 0,
            precision: None,
            median_delay_min: None,
            false_alarms_on_clean: 0,
        });
    };
    let mut delays: BTreeMap<AnomalyKind, Vec<f64>> = BTreeMap::new();
    for e in truth {
        entry(&mut kinds, e.kind);
        let found: Vec<&Detection> = detections
            .iter()
            .filter(|d| matches(e, d, tolerance_ms, true))
            .collect();
        if let Some(s) = kinds.get_mut(&e.kind) {
            s.events += 1;
            if !found.is_empty() {
                s.detected += 1;
            }
        }
        if let Some(first) = found.iter().map(|d| d.detected_at_ms).min() {
            delays
                .entry(e.kind)
                .or_default()
                .push(((first - e.start_ms).max(0)) as f64 / 60_000.0);
        }
    }
    let mut false_on_clean = 0usize;
    for d in detections {
        entry(&mut kinds, d.kind);
        let true_alarm = truth.iter().any(|e| matches(e, d, tolerance_ms, false));
        let on_clean = clean.contains(&d.enterprise_id);
        if let Some(s) = kinds.get_mut(&d.kind) {
            s.alarms += 1;
            if true_alarm {
                s.true_alarms += 1;
            }
            if on_clean {
                s.false_alarms_on_clean += 1;
            }
        }
        if on_clean {
            false_on_clean += 1;
        }
    }
    for (k, s) in kinds.iter_mut() {
        s.recall = ratio(s.detected, s.events);
        s.precision = ratio(s.true_alarms, s.alarms);
        s.median_delay_min = delays.get_mut(k).and_then(|v| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied()
        });
    }
    let events: usize = kinds.values().map(|s| s.events).sum();
    let detected: usize = kinds.values().map(|s| s.detected).sum();
    let alarms: usize = kinds.values().map(|s| s.alarms).sum();
    let true_alarms: usize = kinds.values().map(|s| s.true_alarms).sum();
    let clean_days = clean.len() as f64 * days;
    Report {
        kinds: kinds.into_values().collect(),
        overall_recall: ratio(detected, events),
        overall_precision: ratio(true_alarms, alarms),
        false_alarms_per_enterprise_day: if clean_days > 0.0 {
            false_on_clean as f64 / clean_days
        } else {
            0.0
        },
        clean_enterprise_days: clean_days,
        tolerance_min: tolerance_ms as f64 / 60_000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: AnomalyKind, outlet: &str, s: i64, e: i64) -> TruthEvent {
        TruthEvent {
            enterprise_id: outlet[..3].to_string(),
            outlet_id: outlet.into(),
            kind,
            start_ms: s,
            end_ms: e,
            subtle: false,
            description: String::new(),
            also: vec![AnomalyKind::Exceedance],
        }
    }

    fn det(kind: AnomalyKind, outlet: &str, s: i64, e: i64, at: i64) -> Detection {
        Detection {
            enterprise_id: outlet[..3].to_string(),
            outlet_id: outlet.into(),
            kind,
            start_ms: s,
            end_ms: e,
            detected_at_ms: at,
        }
    }

    const M: i64 = 60_000;

    #[test]
    fn recall_precision_delay_and_false_alarms() {
        let tnr = AnomalyKind::TreatmentNotRunning;
        let truth = vec![
            event(tnr, "E01-S", 100 * M, 200 * M),
            event(tnr, "E02-S", 100 * M, 200 * M),
        ];
        let dets = vec![
            det(tnr, "E01-S", 110 * M, 190 * M, 125 * M), // finds E01 after 25 min
            det(AnomalyKind::Exceedance, "E01-S", 120 * M, 180 * M, 130 * M), // secondary: true alarm
            det(tnr, "E01-S", 900 * M, 950 * M, 915 * M),                     // nowhere near: false
            det(tnr, "E09-S", 100 * M, 200 * M, 115 * M), // clean enterprise: false
        ];
        let r = score(
            &truth,
            &dets,
            &["E09".to_string()],
            2.0,
            DEFAULT_TOLERANCE_MS,
        );
        let k = r.kinds.iter().find(|k| k.kind == tnr).unwrap();
        assert_eq!(
            (k.events, k.detected, k.alarms, k.true_alarms),
            (2, 1, 3, 1)
        );
        assert_eq!(k.recall, Some(0.5));
        assert_eq!(k.median_delay_min, Some(25.0));
        let ex = r
            .kinds
            .iter()
            .find(|k| k.kind == AnomalyKind::Exceedance)
            .unwrap();
        assert_eq!((ex.events, ex.alarms, ex.true_alarms), (0, 1, 1));
        assert_eq!(r.false_alarms_per_enterprise_day, 0.5);
        assert_eq!(r.overall_recall, Some(0.5));
        assert_eq!(r.overall_precision, Some(0.5));
    }
}

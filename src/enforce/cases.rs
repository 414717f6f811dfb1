//! Incidents and hotspots: how the list reads to an officer.
//!
//! An **incident** is the anomalies of one enterprise that overlap in time (within `max_gap_ms`): at 2 am a bypass,
//! an idle scrubber and a flat-lined CEMS are one case. Its score is `1 − Π(1 − sᵢ)`: independent signals of the same
//! case compound. A **hotspot** ranks enterprises or regions by the summed score of their unresolved anomalies over
//! a period (plan 八(四): target high-value hotspots). Pure functions over anomalies.

use crate::domain::{Anomaly, AnomalyKind};
use std::collections::{BTreeMap, BTreeSet};

/// One case.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Id of the incident: that of its earliest member, prefixed `I`.
    pub id: String,
    /// Enterprise.
    pub enterprise_id: String,
    /// Outlets involved.
    pub outlet_ids: Vec<String>,
    /// First start.
    pub start_ms: i64,
    /// Last end.
    pub end_ms: i64,
    /// Compound score.
    pub score: f64,
    /// Kinds involved, in contract order.
    pub kinds: Vec<AnomalyKind>,
    /// Members, highest score first (their summaries, joined in this order, are the incident's).
    pub anomaly_ids: Vec<String>,
}

/// Episodes longer than this form an incident of their own.
pub const LONG_EPISODE_MS: i64 = 24 * 3_600_000;

/// Groups anomalies into incidents, highest score first.
pub fn incidents(anomalies: &[Anomaly], max_gap_ms: i64) -> Vec<Incident> {
    let mut by_enterprise: BTreeMap<&str, Vec<&Anomaly>> = BTreeMap::new();
    for a in anomalies {
        by_enterprise
            .entry(a.enterprise_id.as_str())
            .or_default()
            .push(a);
    }
    let mut out = Vec::new();
    for (enterprise, mut list) in by_enterprise {
        // Long-running findings (a permit over the year, a changed gain for weeks) would swallow every short event
        // into one endless case: each stands alone.
        list.retain(|a| {
            let long = a.end_ms - a.start_ms > LONG_EPISODE_MS;
            if long {
                out.push(incident(enterprise, &[a]));
            }
            !long
        });
        list.sort_by_key(|a| (a.start_ms, a.end_ms));
        let mut group: Vec<&Anomaly> = Vec::new();
        let mut group_end = i64::MIN;
        for a in list {
            if !group.is_empty() && a.start_ms > group_end.saturating_add(max_gap_ms) {
                out.push(incident(enterprise, &group));
                group.clear();
            }
            group_end = if group.is_empty() {
                a.end_ms
            } else {
                group_end.max(a.end_ms)
            };
            group.push(a);
        }
        if !group.is_empty() {
            out.push(incident(enterprise, &group));
        }
    }
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.start_ms.cmp(&a.start_ms))
    });
    out
}

fn incident(enterprise: &str, members: &[&Anomaly]) -> Incident {
    let mut ranked: Vec<&Anomaly> = members.to_vec();
    ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
    let miss: f64 = members
        .iter()
        .map(|a| 1.0 - a.score.clamp(0.0, 1.0))
        .product();
    let kinds: BTreeSet<AnomalyKind> = members.iter().map(|a| a.kind).collect();
    let outlets: BTreeSet<&str> = members.iter().map(|a| a.outlet_id.as_str()).collect();
    Incident {
        id: format!("I{}", members[0].id),
        enterprise_id: enterprise.to_string(),
        outlet_ids: outlets.into_iter().map(str::to_string).collect(),
        start_ms: members.iter().map(|a| a.start_ms).min().unwrap_or(0),
        end_ms: members.iter().map(|a| a.end_ms).max().unwrap_or(0),
        score: 1.0 - miss,
        kinds: kinds.into_iter().collect(),
        anomaly_ids: ranked.iter().map(|a| a.id.clone()).collect(),
    }
}

/// One ranked enterprise or region.
#[derive(Debug, Clone, PartialEq)]
pub struct Hotspot {
    /// Enterprise id or region.
    pub key: String,
    /// Region (for enterprises) or the region itself.
    pub region: String,
    /// Anomalies counted.
    pub anomalies: u32,
    /// Sum of their scores.
    pub severity: f64,
    /// Highest score.
    pub max_score: f64,
    /// Kinds seen.
    pub kinds: Vec<AnomalyKind>,
    /// Distinct enterprises.
    pub enterprises: u32,
}

/// Ranks by summed score. `region_of` maps an enterprise to its region; with `by_region` the ranking is per region.
pub fn hotspots(
    anomalies: &[Anomaly],
    by_region: bool,
    region_of: impl Fn(&str) -> String,
) -> Vec<Hotspot> {
    #[derive(Default)]
    struct Acc {
        region: String,
        anomalies: u32,
        severity: f64,
        max_score: f64,
        kinds: BTreeSet<AnomalyKind>,
        enterprises: BTreeSet<String>,
    }
    let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
    let mut regions: BTreeMap<String, String> = BTreeMap::new();
    for a in anomalies {
        let region = regions
            .entry(a.enterprise_id.clone())
            .or_insert_with(|| region_of(&a.enterprise_id))
            .clone();
        let key = if by_region {
            region.clone()
        } else {
            a.enterprise_id.clone()
        };
        let acc = groups.entry(key).or_default();
        acc.region = region;
        acc.anomalies += 1;
        acc.severity += a.score;
        acc.max_score = acc.max_score.max(a.score);
        acc.kinds.insert(a.kind);
        acc.enterprises.insert(a.enterprise_id.clone());
    }
    let mut out: Vec<Hotspot> = groups
        .into_iter()
        .map(|(key, acc)| Hotspot {
            key,
            region: acc.region,
            anomalies: acc.anomalies,
            severity: acc.severity,
            max_score: acc.max_score,
            kinds: acc.kinds.into_iter().collect(),
            enterprises: acc.enterprises.len() as u32,
        })
        .collect();
    out.sort_by(|a, b| b.severity.total_cmp(&a.severity).then(a.key.cmp(&b.key)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ReviewStatus;

    fn a(id: &str, ent: &str, kind: AnomalyKind, start: i64, end: i64, score: f64) -> Anomaly {
        Anomaly {
            id: id.into(),
            enterprise_id: ent.into(),
            outlet_id: format!("{ent}-s1"),
            source_ids: vec![],
            kind,
            start_ms: start,
            end_ms: end,
            score,
            detector: "d/1".into(),
            evidence: Default::default(),
            status: ReviewStatus::Open,
            detected_at_ms: start,
            note: String::new(),
            ongoing: false,
            reviews: vec![],
        }
    }

    #[test]
    fn overlapping_anomalies_of_one_enterprise_are_one_case_and_compound() {
        use AnomalyKind::*;
        let list = vec![
            a("b", "e1", BypassSuspected, 100, 200, 0.6),
            a("t", "e1", TreatmentNotRunning, 150, 260, 0.5),
            a("f", "e1", Flatline, 300, 400, 0.9), // 40 after the group ends: joins with a 60 gap
            a("x", "e1", Exceedance, 1000, 1100, 0.7),
            a("y", "e2", Exceedance, 100, 200, 0.95),
            a("p", "e1", PermitExceeded, 0, 7 * LONG_EPISODE_MS, 0.8), // stands alone
        ];
        let inc = incidents(&list, 60);
        assert_eq!(inc.len(), 4);
        let case = inc.iter().find(|i| i.anomaly_ids.len() == 3).unwrap();
        assert_eq!((case.start_ms, case.end_ms), (100, 400));
        assert_eq!(case.anomaly_ids, vec!["f", "b", "t"]);
        assert!((case.score - (1.0 - 0.4 * 0.5 * 0.1)).abs() < 1e-12);
        assert_eq!(
            case.kinds,
            vec![TreatmentNotRunning, BypassSuspected, Flatline]
        );
        assert_eq!(
            inc[0].anomaly_ids.len(),
            3,
            "compound score ranks the case first"
        );
    }

    #[test]
    fn hotspots_rank_by_summed_severity() {
        use AnomalyKind::*;
        let list = vec![
            a("1", "e1", Exceedance, 0, 1, 0.9),
            a("2", "e2", Exceedance, 0, 1, 0.6),
            a("3", "e2", Flatline, 0, 1, 0.6),
            a("4", "e3", Flatline, 0, 1, 0.5),
        ];
        let region = |e: &str| {
            if e == "e3" {
                "north".to_string()
            } else {
                "south".to_string()
            }
        };
        let ents = hotspots(&list, false, region);
        assert_eq!(
            ents.iter().map(|h| h.key.as_str()).collect::<Vec<_>>(),
            vec!["e2", "e1", "e3"]
        );
        let regions = hotspots(&list, true, region);
        assert_eq!(regions[0].key, "south");
        assert_eq!(regions[0].enterprises, 2);
        assert!((regions[0].severity - 2.1).abs() < 1e-12);
    }
}

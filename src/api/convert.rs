//! Conversions between the wire contract (`pb`) and the domain. Kept in one file so that every mapping of an enum
//! number is written once.

use crate::domain::AnomalyFilter;
use crate::domain::{
    Anomaly, AnomalyKind, Enterprise, Meter, MeterRole, OperatingChange, OperatingChangeKind,
    Outlet, OutletKind, Point, RestrictionOrder, ReviewStatus, ValueFlag,
};
use crate::domain::{IncomingMeasurement, IncomingRecord};
use crate::ingest::Rejection;
use crate::pb;
use tonic::Status;

pub fn enterprise_from_pb(e: pb::Enterprise) -> Enterprise {
    Enterprise {
        id: e.id,
        name: e.name,
        industry: e.industry,
        region: e.region,
        performance_grade: e.performance_grade,
    }
}

/// Domain enterprise to wire form.
pub fn enterprise_to_pb(e: Enterprise) -> pb::Enterprise {
    pb::Enterprise {
        id: e.id,
        name: e.name,
        industry: e.industry,
        region: e.region,
        performance_grade: e.performance_grade,
    }
}

pub fn outlet_from_pb(o: pb::Outlet) -> Result<Outlet, Status> {
    let kind = match pb::OutletKind::try_from(o.kind) {
        Ok(pb::OutletKind::Unspecified | pb::OutletKind::Stack) => OutletKind::Stack,
        Ok(pb::OutletKind::Bypass) => OutletKind::Bypass,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "unknown outlet kind {}",
                o.kind
            )))
        }
    };
    Ok(Outlet {
        id: o.id,
        enterprise_id: o.enterprise_id,
        name: o.name,
        kind,
        main_outlet_id: o.main_outlet_id,
        reference_o2_pct: o.reference_o2_pct,
        limits_mg_m3: o.limits_mg_m3.into_iter().collect(),
        permitted_t_per_year: o.permitted_t_per_year.into_iter().collect(),
        hj212_password: o.hj212_password,
    })
}

/// Domain outlet to wire form.
pub fn outlet_to_pb(o: Outlet) -> pb::Outlet {
    pb::Outlet {
        id: o.id,
        enterprise_id: o.enterprise_id,
        name: o.name,
        kind: match o.kind {
            OutletKind::Stack => pb::OutletKind::Stack,
            OutletKind::Bypass => pb::OutletKind::Bypass,
        } as i32,
        main_outlet_id: o.main_outlet_id,
        reference_o2_pct: o.reference_o2_pct,
        limits_mg_m3: o.limits_mg_m3.into_iter().collect(),
        permitted_t_per_year: o.permitted_t_per_year.into_iter().collect(),
        hj212_password: o.hj212_password,
    }
}

pub fn meter_from_pb(m: pb::Meter) -> Result<Meter, Status> {
    let role = match pb::MeterRole::try_from(m.role) {
        Ok(pb::MeterRole::Unspecified) => MeterRole::Unspecified,
        Ok(pb::MeterRole::Production) => MeterRole::Production,
        Ok(pb::MeterRole::Treatment) => MeterRole::Treatment,
        Ok(pb::MeterRole::Total) => MeterRole::Total,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "unknown meter role {}",
                m.role
            )))
        }
    };
    Ok(Meter {
        id: m.id,
        enterprise_id: m.enterprise_id,
        role,
        equipment: m.equipment,
        outlet_ids: m.outlet_ids,
        rated_kw: m.rated_kw,
        hj212_password: m.hj212_password,
    })
}

/// Domain meter to wire form.
pub fn meter_to_pb(m: Meter) -> pb::Meter {
    pb::Meter {
        id: m.id,
        enterprise_id: m.enterprise_id,
        role: match m.role {
            MeterRole::Unspecified => pb::MeterRole::Unspecified,
            MeterRole::Production => pb::MeterRole::Production,
            MeterRole::Treatment => pb::MeterRole::Treatment,
            MeterRole::Total => pb::MeterRole::Total,
        } as i32,
        equipment: m.equipment,
        outlet_ids: m.outlet_ids,
        rated_kw: m.rated_kw,
        hj212_password: m.hj212_password,
    }
}

pub fn restriction_from_pb(r: pb::RestrictionOrder) -> RestrictionOrder {
    RestrictionOrder {
        id: r.id,
        enterprise_id: r.enterprise_id,
        meter_ids: r.meter_ids,
        start_ms: r.start_ms,
        end_ms: r.end_ms,
        max_load_fraction: r.max_load_fraction,
        level: r.level,
    }
}

/// Domain restriction order to wire form.
pub fn restriction_to_pb(r: RestrictionOrder) -> pb::RestrictionOrder {
    pb::RestrictionOrder {
        id: r.id,
        enterprise_id: r.enterprise_id,
        meter_ids: r.meter_ids,
        start_ms: r.start_ms,
        end_ms: r.end_ms,
        max_load_fraction: r.max_load_fraction,
        level: r.level,
    }
}

/// Wire operating change to domain form (id and record time are the server's).
pub fn operating_change_from_pb(c: pb::OperatingChange) -> Result<OperatingChange, Status> {
    let kind = match pb::OperatingChangeKind::try_from(c.kind) {
        Ok(pb::OperatingChangeKind::Fuel) => OperatingChangeKind::Fuel,
        Ok(pb::OperatingChangeKind::RawMaterial) => OperatingChangeKind::RawMaterial,
        Ok(pb::OperatingChangeKind::AnalyzerReplacement) => {
            OperatingChangeKind::AnalyzerReplacement
        }
        Ok(pb::OperatingChangeKind::Recalibration) => OperatingChangeKind::Recalibration,
        Ok(pb::OperatingChangeKind::ControlDevice) => OperatingChangeKind::ControlDevice,
        Ok(pb::OperatingChangeKind::ReviewedFalsePositive) => {
            return Err(Status::invalid_argument(
                "kind: REVIEWED_FALSE_POSITIVE is recorded by the server when an officer reviews an alarm, not declared",
            ))
        }
        Ok(pb::OperatingChangeKind::Unspecified) | Err(_) => {
            return Err(Status::invalid_argument(format!(
                "kind: unknown or unspecified operating change kind {}",
                c.kind
            )))
        }
    };
    Ok(OperatingChange {
        id: String::new(),
        enterprise_id: c.enterprise_id,
        outlet_id: c.outlet_id,
        kind,
        effective_ms: c.effective_ms,
        description: c.description,
        declared_by: c.declared_by,
        recorded_at_ms: 0,
    })
}

/// Domain operating change to wire form.
pub fn operating_change_to_pb(c: OperatingChange) -> pb::OperatingChange {
    let kind = match c.kind {
        OperatingChangeKind::Fuel => pb::OperatingChangeKind::Fuel,
        OperatingChangeKind::RawMaterial => pb::OperatingChangeKind::RawMaterial,
        OperatingChangeKind::AnalyzerReplacement => pb::OperatingChangeKind::AnalyzerReplacement,
        OperatingChangeKind::Recalibration => pb::OperatingChangeKind::Recalibration,
        OperatingChangeKind::ControlDevice => pb::OperatingChangeKind::ControlDevice,
        OperatingChangeKind::ReviewedFalsePositive => {
            pb::OperatingChangeKind::ReviewedFalsePositive
        }
    };
    pb::OperatingChange {
        id: c.id,
        enterprise_id: c.enterprise_id,
        outlet_id: c.outlet_id,
        kind: kind as i32,
        effective_ms: c.effective_ms,
        description: c.description,
        declared_by: c.declared_by,
        recorded_at_ms: c.recorded_at_ms,
    }
}

pub fn records_from_pb(records: Vec<pb::Record>) -> Vec<IncomingRecord> {
    records
        .into_iter()
        .map(|r| IncomingRecord {
            source_id: r.source_id,
            time_ms: r.time_ms,
            interval: r.interval,
            values: r
                .values
                .into_iter()
                .map(|m| IncomingMeasurement {
                    code: m.code,
                    value: m.value,
                    flag: m.flag,
                    converted: m.converted,
                })
                .collect(),
        })
        .collect()
}

pub fn rejection_to_pb(r: Rejection) -> pb::Rejection {
    pb::Rejection {
        record_index: r.record_index,
        code: r.code,
        reason: r.reason,
    }
}

fn flag_to_pb(f: ValueFlag) -> pb::DataFlag {
    match f {
        ValueFlag::Normal => pb::DataFlag::Normal,
        ValueFlag::Stopped => pb::DataFlag::Stopped,
        ValueFlag::Maintenance => pb::DataFlag::Maintenance,
        ValueFlag::Manual => pb::DataFlag::Manual,
        ValueFlag::Fault => pb::DataFlag::Fault,
        ValueFlag::Calibration => pb::DataFlag::Calibration,
        ValueFlag::OverRange => pb::DataFlag::OverRange,
        ValueFlag::CommError => pb::DataFlag::CommError,
    }
}

fn interval_to_pb(i: crate::domain::Interval) -> pb::Interval {
    match i {
        crate::domain::Interval::Realtime => pb::Interval::Realtime,
        crate::domain::Interval::Minute => pb::Interval::Minute,
        crate::domain::Interval::Hour => pb::Interval::Hour,
        crate::domain::Interval::Day => pb::Interval::Day,
    }
}

/// Groups points into records: consecutive points of the same source and time become one record.
pub fn points_to_records(points: Vec<Point>) -> Vec<pb::Record> {
    let mut out: Vec<pb::Record> = Vec::new();
    for p in points {
        let m = pb::Measurement {
            code: p.code,
            value: p.value,
            flag: flag_to_pb(p.flag) as i32,
            converted: p.converted,
        };
        match out.last_mut() {
            Some(r) if r.time_ms == p.time_ms && r.source_id == p.source_id => r.values.push(m),
            _ => out.push(pb::Record {
                source_id: p.source_id,
                time_ms: p.time_ms,
                interval: interval_to_pb(p.interval) as i32,
                values: vec![m],
            }),
        }
    }
    out
}

/// Domain anomaly to wire form, with its summary rendered for the reader ([`super::Summaries`]).
pub fn anomaly_to_pb(a: Anomaly, summary: String) -> pb::Anomaly {
    pb::Anomaly {
        id: a.id,
        enterprise_id: a.enterprise_id,
        outlet_id: a.outlet_id,
        source_ids: a.source_ids,
        kind: a.kind.number(),
        start_ms: a.start_ms,
        end_ms: a.end_ms,
        score: a.score,
        detector: a.detector,
        summary,
        evidence: a.evidence.numbers().into_iter().collect(),
        evidence_text: a.evidence.texts().into_iter().collect(),
        status: a.status.number(),
        detected_at_ms: a.detected_at_ms,
        note: a.note,
        ongoing: a.ongoing,
        record_log_leaves: Vec::new(),
    }
}

pub fn review_status_from_pb(n: i32) -> Result<ReviewStatus, Status> {
    ReviewStatus::from_number(n)
        .ok_or_else(|| Status::invalid_argument(format!("unknown review status {n}")))
}

pub fn filter_from_pb(r: &pb::ListAnomaliesRequest) -> Result<AnomalyFilter, Status> {
    let kinds = r
        .kinds
        .iter()
        .map(|k| {
            AnomalyKind::from_number(*k)
                .ok_or_else(|| Status::invalid_argument(format!("unknown anomaly kind {k}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let statuses = r
        .statuses
        .iter()
        .map(|s| review_status_from_pb(*s))
        .collect::<Result<Vec<_>, _>>()?;
    if !r.min_score.is_finite() {
        return Err(Status::invalid_argument("min_score must be finite"));
    }
    if r.from_ms != 0 && r.to_ms != 0 && r.to_ms < r.from_ms {
        return Err(Status::invalid_argument("to_ms must not be before from_ms"));
    }
    Ok(AnomalyFilter {
        enterprise_ids: r.enterprise_ids.clone(),
        region: r.region.clone(),
        scope_regions: vec![],
        kinds,
        from_ms: r.from_ms,
        to_ms: r.to_ms,
        min_score: r.min_score,
        statuses,
    })
}

pub fn incident_to_pb(i: crate::enforce::cases::Incident, summary: String) -> pb::Incident {
    pb::Incident {
        id: i.id,
        enterprise_id: i.enterprise_id,
        outlet_ids: i.outlet_ids,
        start_ms: i.start_ms,
        end_ms: i.end_ms,
        score: i.score,
        kinds: i.kinds.into_iter().map(AnomalyKind::number).collect(),
        anomaly_ids: i.anomaly_ids,
        summary,
    }
}

pub fn hotspot_to_pb(h: crate::enforce::cases::Hotspot, name: String) -> pb::Hotspot {
    pb::Hotspot {
        key: h.key,
        name,
        region: h.region,
        anomalies: h.anomalies,
        severity: h.severity,
        max_score: h.max_score,
        kinds: h.kinds.into_iter().map(AnomalyKind::number).collect(),
        enterprises: h.enterprises,
    }
}

pub fn review_entry_to_pb(r: crate::domain::ReviewEntry) -> pb::ReviewEntry {
    pb::ReviewEntry {
        from: r.from.number(),
        to: r.to.number(),
        reviewer: r.reviewer,
        at_ms: r.at_ms,
        note: r.note,
    }
}

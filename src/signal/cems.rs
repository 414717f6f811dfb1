//! Reading CEMS values the way every detector must: converted to the reference O2 by the legal formula from the raw
//! value and O2, not evaluable above the O2 ceiling, invalid under F/M/D/C/B flags. One place, so the exceedance,
//! bunching and tampering detectors judge the same number.

use crate::domain::{codes, units, ValueFlag};
use crate::signal::align::OutletRow;

/// What one minute says about one pollutant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CemsValue {
    /// A valid converted value (mg/m³ at reference O2; raw when the outlet has no reference O2).
    Valid(f64),
    /// Valid reading, but O2 at or above the ceiling: the conversion diverges.
    NotEvaluable,
    /// Flagged F/M/D/C/B.
    InvalidFlag,
    /// Nothing reported.
    Missing,
}

impl CemsValue {
    /// The value, if valid.
    pub fn valid(self) -> Option<f64> {
        match self {
            Self::Valid(v) => Some(v),
            _ => None,
        }
    }
}

/// The converted value of `code` in `row`. The reported converted value (ZsRtd) is used only when O2 is missing.
pub fn converted(
    row: &OutletRow,
    code: &str,
    reference_o2_pct: f64,
    o2_ceiling_pct: f64,
) -> CemsValue {
    let Some(r) = row.cems.get(code) else {
        return CemsValue::Missing;
    };
    if !r.is_valid() {
        return CemsValue::InvalidFlag;
    }
    if reference_o2_pct <= 0.0 {
        return CemsValue::Valid(r.value);
    }
    match row.cems.get(codes::O2).filter(|o2| o2.is_valid()) {
        Some(o2) => units::converted_mg_m3(r.value, o2.value, reference_o2_pct, o2_ceiling_pct)
            .map_or(CemsValue::NotEvaluable, CemsValue::Valid),
        None => r
            .converted
            .map_or(CemsValue::NotEvaluable, CemsValue::Valid),
    }
}

/// The raw value of `code` if its reading is valid.
pub fn raw(row: &OutletRow, code: &str) -> Option<f64> {
    row.cems
        .get(code)
        .filter(|r| r.is_valid())
        .map(|r| r.value)
        .filter(|v| v.is_finite())
}

/// The raw value of `code` if its reading is valid and a minute-level sample. The statistics of analyzer noise,
/// minute patterns and calibration ramps are of minute data: an hour average laid over its hour is not a reading
/// they can judge, so to them an hourly channel is not there.
pub fn minute_raw(row: &OutletRow, code: &str) -> Option<f64> {
    raw(row, code).filter(|_| row.cems.get(code).is_some_and(|r| r.span_min <= 1))
}

/// Learns a channel's reporting resolution: the smallest non-zero step between consecutive readings.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Resolution {
    last: Option<f64>,
    step: Option<f64>,
}

impl Resolution {
    /// Sees the next reading.
    pub fn observe(&mut self, v: f64) {
        if let Some(last) = self.last {
            let d = (v - last).abs();
            if d > 1e-9 {
                self.step = Some(self.step.map_or(d, |s| s.min(d)));
            }
        }
        self.last = Some(v);
    }

    /// The learned step (a tiny floor before any step is seen).
    pub fn step(&self) -> f64 {
        self.step.unwrap_or(1e-6).max(1e-6)
    }
}
/// What the CEMS says about itself in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CemsStatus {
    /// At least one monitored channel has a valid reading.
    Valid,
    /// No reading at all.
    Silent,
    /// Flagged stopped (F).
    Stopped,
    /// Flagged fault (D).
    Fault,
    /// Flagged communication error (B).
    CommError,
    /// Flagged maintenance or calibration (M/C) or another invalid flag.
    Other,
}

/// The CEMS status of a row over the monitored channels: the most common invalid flag wins.
pub fn cems_status(row: &OutletRow, codes: &[String]) -> CemsStatus {
    let readings: Vec<_> = codes.iter().filter_map(|c| row.cems.get(c)).collect();
    if readings.is_empty() {
        return CemsStatus::Silent;
    }
    if readings.iter().any(|r| r.is_valid()) {
        return CemsStatus::Valid;
    }
    let count = |f: ValueFlag| readings.iter().filter(|r| r.flag == f).count();
    let (stopped, fault, comm) = (
        count(ValueFlag::Stopped),
        count(ValueFlag::Fault),
        count(ValueFlag::CommError),
    );
    let best = stopped.max(fault).max(comm);
    if best == 0 {
        CemsStatus::Other
    } else if best == stopped {
        CemsStatus::Stopped
    } else if best == fault {
        CemsStatus::Fault
    } else {
        CemsStatus::CommError
    }
}

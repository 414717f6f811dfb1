//! Registry facts: enterprises, their outlets and meters, and restriction orders. The outlet is where the three
//! streams (production power, treatment power, stack emissions) meet, so most lookups start from it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An emitting enterprise (排污单位).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Enterprise {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Industry key (`coal_power`, `steel_sintering`, `cement`, `coking`, ...).
    pub industry: String,
    /// County / district.
    pub region: String,
    /// Performance grade A–D (A-grade firms are exempt from some staggered-production cuts).
    pub performance_grade: String,
}

/// Whether an outlet is a main stack or a bypass duct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OutletKind {
    /// A monitored main stack with a CEMS.
    #[default]
    Stack,
    /// A bypass / emergency vent duct with its own flow/temperature monitor, linked to its main stack.
    Bypass,
}

/// A monitored emission point (排放口). Its id is also the source id its CEMS reports under.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Outlet {
    /// Stable id = CEMS source id (HJ 212 MN).
    pub id: String,
    /// Owning enterprise.
    pub enterprise_id: String,
    /// Display name.
    pub name: String,
    /// Stack or bypass.
    pub kind: OutletKind,
    /// For a bypass: the stack it bypasses.
    pub main_outlet_id: String,
    /// Reference O2 (%) for concentration conversion.
    pub reference_o2_pct: f64,
    /// HJ 212 code → hourly converted-concentration limit (mg/m³).
    pub limits_mg_m3: BTreeMap<String, f64>,
    /// HJ 212 code → permitted annual mass (t/a).
    pub permitted_t_per_year: BTreeMap<String, f64>,
    /// Password the outlet's data acquisition unit must send over HJ 212; empty = not checked.
    pub hj212_password: String,
}

/// What a meter measures the power of (分表计电).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MeterRole {
    /// Not stated: stored, but not used by the cross-checks.
    #[default]
    Unspecified,
    /// Production (pollution-generating) equipment.
    Production,
    /// Treatment (pollution-control) equipment.
    Treatment,
    /// The enterprise's total consumption.
    Total,
}

/// An electricity sub-meter on one piece of equipment.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Meter {
    /// Stable id = the source id it reports under.
    pub id: String,
    /// Owning enterprise.
    pub enterprise_id: String,
    /// Production, treatment or total.
    pub role: MeterRole,
    /// Equipment type (`sinter_machine`, `desulfurization`, `dust_collector`, ...).
    pub equipment: String,
    /// Outlets its gas goes to (production) or that it treats (treatment).
    pub outlet_ids: Vec<String>,
    /// Nameplate power (kW); the cold-start reference for "running" before history is learned.
    pub rated_kw: f64,
    /// HJ 212 password when the meter reports through HJ 212.
    pub hj212_password: String,
}

/// A heavy-pollution emergency or staggered-production order (重污染天气应急 / 错峰生产).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RestrictionOrder {
    /// Stable id.
    pub id: String,
    /// Enterprise it applies to.
    pub enterprise_id: String,
    /// Production meters affected; empty = all production meters.
    pub meter_ids: Vec<String>,
    /// Window start, Unix ms.
    pub start_ms: i64,
    /// Window end, Unix ms (exclusive).
    pub end_ms: i64,
    /// Allowed production power as a fraction of normal; 0 = stop.
    pub max_load_fraction: f64,
    /// yellow / orange / red / staggered.
    pub level: String,
}

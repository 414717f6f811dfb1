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
/// What kind of operating change an enterprise or officer declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OperatingChangeKind {
    /// Another fuel or fuel blend (e.g. lower-sulphur coal): every pollutant it feeds steps at unchanged load.
    #[default]
    Fuel,
    /// Another raw material.
    RawMaterial,
    /// The analyzer was replaced.
    AnalyzerReplacement,
    /// The analyzer was recalibrated.
    Recalibration,
    /// A control device commissioned or switched seasonally (a scrubber, SCR, filter).
    ControlDevice,
    /// Recorded by the server, never by a client: an officer reviewed a level-shift or model alarm of the outlet as
    /// FALSE_POSITIVE, so the level it found is the outlet's own.
    ReviewedFalsePositive,
}

/// A declared operating change: the legitimate cause a level shift at `effective_ms` is judged against.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OperatingChange {
    /// Derived from (enterprise, outlet, kind, effective time): the same declaration twice is one record.
    pub id: String,
    /// Enterprise it applies to.
    pub enterprise_id: String,
    /// Outlet; empty = every outlet of the enterprise.
    pub outlet_id: String,
    /// What changed.
    pub kind: OperatingChangeKind,
    /// When it took effect, Unix ms.
    pub effective_ms: i64,
    /// In the declarer's words.
    pub description: String,
    /// Who declared it.
    pub declared_by: String,
    /// When the server recorded it, Unix ms.
    pub recorded_at_ms: i64,
}

impl OperatingChange {
    /// The id a declaration gets: FNV-1a of its identity, so a re-sent declaration finds its record.
    pub fn derived_id(&self) -> String {
        let identity = format!(
            "{}\u{1f}{}\u{1f}{:?}\u{1f}{}",
            self.enterprise_id, self.outlet_id, self.kind, self.effective_ms
        );
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in identity.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("C{h:016x}")
    }

    /// Whether it applies to `outlet_id`.
    pub fn applies_to(&self, outlet_id: &str) -> bool {
        self.outlet_id.is_empty() || self.outlet_id == outlet_id
    }
}

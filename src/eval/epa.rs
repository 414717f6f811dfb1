//! Real US EPA hourly CEMS data (Part 75, SMOKE format; `tests/data/real/README.md`) replayed as a bureau would
//! receive it: each unit an enterprise with one stack that reports hour averages (CN 2061) of SO2, NOx and flow, and
//! one production meter that reports the unit's load. Clean units measure false alarms on real noise, real start-ups
//! and real control-device steps; copies of clean units with a violation written into them (a gain cut, a replayed
//! week, a stuck analyzer, a clamp under the limit) measure what is found. Pure: parsing, conversion and injection;
//! the replay through a server is [`crate::tools::replay_epa`].

use crate::domain::{
    codes, days_from_civil, AnomalyKind, Enterprise, Interval, Meter, MeterRole, Outlet, Point,
    ValueFlag, MS_PER_DAY, MS_PER_HOUR,
};
use crate::signal::align::POWER_CODE;
use crate::sim::{secondary_kinds, TruthEvent, TruthFile};
use std::collections::BTreeMap;

/// mg/m³ at 6 % O2 (dry, 20 °C) per lb/MMBtu: EPA Method 19 with Fd = 9,780 dscf/MMBtu (bituminous coal).
pub const MG_M3_PER_LB_MMBTU: f64 = 1167.7;
/// Stack flow at 6 % O2 (m³/s) per MMBtu/h of heat input, by the same F-factor.
pub const FLOW_M3_S_PER_MMBTU_H: f64 = 0.1079;
/// Part 75 hours are local standard time; North Carolina's is UTC−5 all year.
const UTC_MINUS_LOCAL_MS: i64 = 5 * MS_PER_HOUR;
/// Each unit's limits sit this far above its highest measured hour, so honest data never exceeds them.
const LIMIT_HEADROOM: f64 = 1.1;

/// One unit-hour as reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitHour {
    /// Start of the hour, Unix ms.
    pub time_ms: i64,
    /// Share of the hour the unit ran (0 = not operating).
    pub operating_fraction: f64,
    /// Gross load while running (MW).
    pub load_mw: Option<f64>,
    /// Heat input over the hour (MMBtu).
    pub heat_mmbtu: Option<f64>,
    /// SO2 emission rate (lb/MMBtu), SO2 mass over heat input.
    pub so2_lb_mmbtu: Option<f64>,
    /// NOx emission rate (lb/MMBtu).
    pub nox_lb_mmbtu: Option<f64>,
    /// Any value of the hour is a Part 75 missing-data substitute.
    pub substituted: bool,
}

impl UnitHour {
    fn measured(&self) -> bool {
        self.operating_fraction >= 1.0
            && !self.substituted
            && self.load_mw.is_some()
            && self.heat_mmbtu.is_some_and(|h| h > 0.0)
            && self.so2_lb_mmbtu.is_some()
            && self.nox_lb_mmbtu.is_some()
    }
}

/// One unit's year.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// EIA/ORIS plant code.
    pub plant: String,
    /// Unit (boiler) id.
    pub unit: String,
    /// Hours in time order.
    pub hours: Vec<UnitHour>,
}

impl Unit {
    /// `plant-unit`, the id its enterprise is registered under.
    pub fn id(&self) -> String {
        format!("{}-{}", self.plant, self.unit)
    }
}

/// A line that is not a SMOKE CEM row.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct EpaError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

fn number(field: &str) -> Option<f64> {
    field
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v != -9.0)
}

/// Parses a SMOKE CEM file (16 comma-separated columns, no header) into units, in the order they first appear.
///
/// # Errors
/// The first malformed line.
pub fn parse(text: &str) -> Result<Vec<Unit>, EpaError> {
    let mut units: Vec<Unit> = Vec::new();
    let mut index: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: &str| EpaError {
            line: i + 1,
            reason: reason.to_string(),
        };
        let f: Vec<&str> = line.split(',').map(|s| s.trim_matches('"')).collect();
        if f.len() != 16 {
            return Err(bad(&format!("{} columns, expected 16", f.len())));
        }
        let date = f[2];
        let (Some(yy), Some(mm), Some(dd)) = (
            date.get(0..2).and_then(|s| s.parse::<i32>().ok()),
            date.get(2..4).and_then(|s| s.parse::<u32>().ok()),
            date.get(4..6).and_then(|s| s.parse::<u32>().ok()),
        ) else {
            return Err(bad("date is not YYMMDD"));
        };
        let hour: i64 = f[3]
            .parse()
            .ok()
            .filter(|h| (0..24).contains(h))
            .ok_or_else(|| bad("hour is not 0-23"))?;
        if !(1..=12).contains(&mm) || !(1..=31).contains(&dd) {
            return Err(bad("date is not YYMMDD"));
        }
        let time_ms = days_from_civil(2000 + yy, mm, dd) * MS_PER_DAY
            + hour * MS_PER_HOUR
            + UTC_MINUS_LOCAL_MS;
        let heat = number(f[10]);
        let code = |c: &str| matches!(c.trim(), "3" | "4");
        let h = UnitHour {
            time_ms,
            operating_fraction: number(f[7]).unwrap_or(0.0),
            load_mw: number(f[8]),
            heat_mmbtu: heat,
            so2_lb_mmbtu: number(f[5])
                .zip(heat.filter(|h| *h > 0.0))
                .map(|(m, h)| m / h),
            nox_lb_mmbtu: number(f[6]),
            substituted: f[11..15].iter().any(|c| code(c)),
        };
        let key = (f[0].to_string(), f[1].to_string());
        let at = *index.entry(key).or_insert_with(|| {
            units.push(Unit {
                plant: f[0].to_string(),
                unit: f[1].to_string(),
                hours: Vec::new(),
            });
            units.len() - 1
        });
        units[at].hours.push(h);
    }
    for u in &mut units {
        u.hours.sort_by_key(|h| h.time_ms);
    }
    Ok(units)
}

/// A violation written into a copy of a clean unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    /// SO2 analyzer gain halved for a week, load unchanged.
    GainCut,
    /// SO2, NOx and flow of a week replaced by the week before, load as it really ran.
    ReplayedWeek,
    /// SO2 stuck at one value for 30 hours.
    StuckDay,
    /// A week of NOx over the limit reported as values spread over a band 0.5–9.5 % of the limit below it.
    Clamp,
}

impl Injection {
    /// Every injection, in the order the replay applies them.
    pub const ALL: [Injection; 4] = [
        Self::GainCut,
        Self::ReplayedWeek,
        Self::StuckDay,
        Self::Clamp,
    ];

    /// The kind a detector should raise.
    pub fn kind(self) -> AnomalyKind {
        match self {
            Self::GainCut => AnomalyKind::ParameterTampering,
            Self::ReplayedWeek => AnomalyKind::ReplayedData,
            Self::StuckDay => AnomalyKind::Flatline,
            Self::Clamp => AnomalyKind::LimitBunching,
        }
    }

    fn hours(self) -> usize {
        match self {
            Self::GainCut | Self::ReplayedWeek | Self::Clamp => 7 * 24,
            Self::StuckDay => 30,
        }
    }

    /// Short name (used in the copy's id).
    pub fn label(self) -> &'static str {
        match self {
            Self::GainCut => "gain",
            Self::ReplayedWeek => "replay",
            Self::StuckDay => "stuck",
            Self::Clamp => "clamp",
        }
    }
}

/// Which clean unit gets which injection, starting at the first fully measured stretch from `from_day` (day of the
/// year, 0-based) on.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// `plant-unit` of the clean unit copied.
    pub unit_id: String,
    /// What is written into the copy.
    pub injection: Injection,
    /// Earliest day of the year it may start.
    pub from_day: usize,
}

/// The registry and data of a replay, with its ground truth.
#[derive(Debug, Clone)]
pub struct Replay {
    /// One per unit and per injected copy.
    pub enterprises: Vec<Enterprise>,
    /// One stack per enterprise.
    pub outlets: Vec<Outlet>,
    /// One production meter per enterprise.
    pub meters: Vec<Meter>,
    /// What was injected; the units themselves are the clean enterprises.
    pub truth: TruthFile,
    /// Every point, in time order.
    pub points: Vec<Point>,
    /// Cases that found no stretch to start in.
    pub unplaced: Vec<Case>,
}

/// Deterministic uniform draw in [0, 1) for hour `i` (splitmix64), so a replay is the same on every run.
fn uniform(i: u64) -> f64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as f64 / u64::MAX as f64
}

/// The first hour index from which `len` hours, and the week before them, are all fully measured.
fn stretch(hours: &[UnitHour], from_index: usize, len: usize) -> Option<usize> {
    let week = 7 * 24;
    (from_index.max(week)..hours.len().saturating_sub(len))
        .find(|&i| hours[i - week..i + len].iter().all(UnitHour::measured))
}

fn inject(hours: &mut [UnitHour], start: usize, injection: Injection, nox_limit_mg_m3: f64) {
    let len = injection.hours();
    match injection {
        Injection::GainCut => {
            for h in &mut hours[start..start + len] {
                h.so2_lb_mmbtu = h.so2_lb_mmbtu.map(|v| v * 0.5);
            }
        }
        Injection::ReplayedWeek => {
            for k in start..start + len {
                let old = hours[k - 7 * 24];
                let h = &mut hours[k];
                h.so2_lb_mmbtu = old.so2_lb_mmbtu;
                h.nox_lb_mmbtu = old.nox_lb_mmbtu;
                h.heat_mmbtu = old.heat_mmbtu;
            }
        }
        Injection::StuckDay => {
            let stuck = hours[start].so2_lb_mmbtu;
            for h in &mut hours[start..start + len] {
                h.so2_lb_mmbtu = stuck;
            }
        }
        Injection::Clamp => {
            // The week's true NOx is scaled to run at 1.05× the limit at its median hour, so about half its hours
            // are over; those are reported inside the band under the limit.
            let mut window: Vec<f64> = hours[start..start + len]
                .iter()
                .filter_map(|h| h.nox_lb_mmbtu)
                .collect();
            window.sort_by(f64::total_cmp);
            let median = window.get(window.len() / 2).copied().unwrap_or(0.0) * MG_M3_PER_LB_MMBTU;
            if median <= 0.0 {
                return;
            }
            let scale = 1.05 * nox_limit_mg_m3 / median;
            for (k, h) in hours[start..start + len].iter_mut().enumerate() {
                h.nox_lb_mmbtu = h.nox_lb_mmbtu.map(|v| {
                    let truth = v * scale * MG_M3_PER_LB_MMBTU;
                    let reported = if truth >= nox_limit_mg_m3 {
                        nox_limit_mg_m3 * (1.0 - 0.005 - 0.09 * uniform(k as u64))
                    } else {
                        truth
                    };
                    reported / MG_M3_PER_LB_MMBTU
                });
            }
        }
    }
}

/// The unit's limit for a rate series: [`LIMIT_HEADROOM`] above its highest measured hour, rounded up to 10 mg/m³.
fn limit_mg_m3(hours: &[UnitHour], rate: impl Fn(&UnitHour) -> Option<f64>) -> f64 {
    let max = hours
        .iter()
        .filter(|h| h.measured())
        .filter_map(&rate)
        .fold(0.0, f64::max);
    ((max * MG_M3_PER_LB_MMBTU * LIMIT_HEADROOM / 10.0).ceil() * 10.0).max(10.0)
}

fn hour_points(outlet: &str, meter: &str, h: &UnitHour, out: &mut Vec<Point>) {
    let point = |source: &str, code: &str, value: f64, flag: ValueFlag, converted| Point {
        source_id: source.to_string(),
        code: code.to_string(),
        time_ms: h.time_ms,
        interval: Interval::Hour,
        value,
        flag,
        converted,
    };
    let load_kw = h.load_mw.unwrap_or(0.0) * 1000.0 * h.operating_fraction.clamp(0.0, 1.0);
    out.push(point(meter, POWER_CODE, load_kw, ValueFlag::Normal, None));
    if h.operating_fraction <= 0.0 {
        return;
    }
    let flag = if h.substituted {
        ValueFlag::Fault
    } else {
        ValueFlag::Normal
    };
    if let Some(heat) = h.heat_mmbtu {
        let per_hour = heat / h.operating_fraction.max(0.01);
        out.push(point(
            outlet,
            codes::FLOW,
            per_hour * FLOW_M3_S_PER_MMBTU_H,
            flag,
            None,
        ));
    }
    for (code, rate) in [(codes::SO2, h.so2_lb_mmbtu), (codes::NOX, h.nox_lb_mmbtu)] {
        if let Some(r) = rate {
            let c = r * MG_M3_PER_LB_MMBTU;
            out.push(point(outlet, code, c, flag, Some(c)));
        }
    }
}

/// Builds the replay of `units` between `from_ms` and `to_ms`: every unit as a clean enterprise, and for each case a
/// copy of its unit with the injection written in.
pub fn replay(units: &[Unit], cases: &[Case], from_ms: i64, to_ms: i64) -> Replay {
    let mut r = Replay {
        enterprises: Vec::new(),
        outlets: Vec::new(),
        meters: Vec::new(),
        truth: TruthFile {
            start_ms: from_ms,
            days: (to_ms - from_ms) as f64 / MS_PER_DAY as f64,
            clean_enterprises: Vec::new(),
            events: Vec::new(),
            seed: None,
            enterprises: None,
            clean_share: None,
            family: None,
        },
        points: Vec::new(),
        unplaced: Vec::new(),
    };
    let add = |r: &mut Replay, id: String, name: String, unit: &Unit, hours: &[UnitHour]| {
        let (outlet, meter) = (format!("{id}-stack"), format!("{id}-gen"));
        r.enterprises.push(Enterprise {
            id: id.clone(),
            name,
            industry: "coal_power".into(),
            region: "NC".into(),
            performance_grade: String::new(),
        });
        r.outlets.push(Outlet {
            id: outlet.clone(),
            enterprise_id: id.clone(),
            name: format!("unit {} stack", unit.unit),
            limits_mg_m3: BTreeMap::from([
                (
                    codes::SO2.into(),
                    limit_mg_m3(&unit.hours, |h| h.so2_lb_mmbtu),
                ),
                (
                    codes::NOX.into(),
                    limit_mg_m3(&unit.hours, |h| h.nox_lb_mmbtu),
                ),
            ]),
            ..Outlet::default()
        });
        r.meters.push(Meter {
            id: meter.clone(),
            enterprise_id: id,
            role: MeterRole::Production,
            equipment: "generator".into(),
            outlet_ids: vec![outlet.clone()],
            rated_kw: unit
                .hours
                .iter()
                .filter_map(|h| h.load_mw)
                .fold(0.0, f64::max)
                * 1000.0,
            ..Meter::default()
        });
        for h in hours
            .iter()
            .filter(|h| (from_ms..to_ms).contains(&h.time_ms))
        {
            hour_points(&outlet, &meter, h, &mut r.points);
        }
        outlet
    };
    for unit in units {
        let id = unit.id();
        r.truth.clean_enterprises.push(id.clone());
        add(
            &mut r,
            id.clone(),
            format!("EPA ORIS {} unit {}", unit.plant, unit.unit),
            unit,
            &unit.hours,
        );
    }
    for case in cases {
        let Some(unit) = units.iter().find(|u| u.id() == case.unit_id) else {
            r.unplaced.push(case.clone());
            continue;
        };
        let from_index = unit
            .hours
            .iter()
            .position(|h| h.time_ms >= from_ms + case.from_day as i64 * MS_PER_DAY)
            .unwrap_or(unit.hours.len());
        let len = case.injection.hours();
        let Some(start) = stretch(&unit.hours, from_index, len)
            .filter(|&s| unit.hours[s + len - 1].time_ms < to_ms)
        else {
            r.unplaced.push(case.clone());
            continue;
        };
        let mut hours = unit.hours.clone();
        let nox_limit = limit_mg_m3(&unit.hours, |h| h.nox_lb_mmbtu);
        inject(&mut hours, start, case.injection, nox_limit);
        let id = format!("{}+{}", unit.id(), case.injection.label());
        let outlet = add(
            &mut r,
            id.clone(),
            format!(
                "EPA ORIS {} unit {} ({} injected)",
                unit.plant,
                unit.unit,
                case.injection.label()
            ),
            unit,
            &hours,
        );
        let kind = case.injection.kind();
        r.truth.events.push(TruthEvent {
            enterprise_id: id,
            outlet_id: outlet,
            kind,
            start_ms: hours[start].time_ms,
            end_ms: hours[start + len - 1].time_ms + MS_PER_HOUR,
            subtle: false,
            description: format!("{:?} written into a real unit's data", case.injection),
            also: secondary_kinds(kind),
        });
    }
    r.points.sort_by_key(|p| p.time_ms);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROWS: &str = "\
8042,\"2\",\"070101\",0,419.5,10747.9,.048,1,1060,-9,8738.6,1,2,1,1,-9
8042,\"2\",\"070101\",1,-9,-9,-9,0,-9,-9,-9,,,,,-9
8042,\"1\",\"070131\",9,4345.9,14528.6,.44,1,1184,-9,9877.1,1,2,3,3,-9
";

    #[test]
    fn rows_become_unit_hours_in_utc_with_rates_and_substitution() {
        let units = parse(ROWS).unwrap();
        assert_eq!(units.len(), 2);
        let h = units[0].hours[0];
        // 2007-01-01 00:00 EST = 05:00 UTC.
        assert_eq!(h.time_ms, 1_167_627_600_000);
        assert!((h.so2_lb_mmbtu.unwrap() - 10747.9 / 8738.6).abs() < 1e-9);
        assert_eq!((h.nox_lb_mmbtu, h.substituted), (Some(0.048), false));
        assert_eq!(units[0].hours[1].operating_fraction, 0.0);
        assert!(units[1].hours[0].substituted);
        assert!(parse("8042,\"2\",\"071301\",0").is_err());
    }

    fn steady_unit(hours: usize) -> Unit {
        let t0 = 1_167_627_600_000;
        Unit {
            plant: "1".into(),
            unit: "A".into(),
            hours: (0..hours)
                .map(|i| UnitHour {
                    time_ms: t0 + i as i64 * MS_PER_HOUR,
                    operating_fraction: 1.0,
                    load_mw: Some(500.0 + (i % 24) as f64 * 10.0),
                    heat_mmbtu: Some(5000.0),
                    so2_lb_mmbtu: Some(0.5 + 0.01 * uniform(i as u64)),
                    nox_lb_mmbtu: Some(0.1 + 0.01 * uniform(i as u64 + 7)),
                    substituted: false,
                })
                .collect(),
        }
    }

    #[test]
    fn a_replay_has_the_clean_unit_and_each_injected_copy_with_its_truth() {
        let unit = steady_unit(40 * 24);
        let t0 = unit.hours[0].time_ms;
        let cases: Vec<Case> = Injection::ALL
            .iter()
            .map(|&injection| Case {
                unit_id: unit.id(),
                injection,
                from_day: 10,
            })
            .collect();
        let r = replay(
            std::slice::from_ref(&unit),
            &cases,
            t0,
            t0 + 40 * MS_PER_DAY,
        );
        assert!(r.unplaced.is_empty());
        assert_eq!(r.enterprises.len(), 5);
        assert_eq!(r.truth.clean_enterprises, vec!["1-A".to_string()]);
        assert_eq!(r.truth.events.len(), 4);
        // The clamp reports no hour at or over the limit, and most of its week inside the band under it.
        let clamp = &r.truth.events[3];
        let limit = r.outlets[4].limits_mg_m3[codes::NOX];
        // The values of one channel of an event's outlet during the event.
        let during = |e: &TruthEvent, code: &str| -> Vec<f64> {
            r.points
                .iter()
                .filter(|p| p.source_id == e.outlet_id && p.code == code)
                .filter(|p| (e.start_ms..e.end_ms).contains(&p.time_ms))
                .map(|p| p.value)
                .collect()
        };
        let week = during(clamp, codes::NOX);
        assert_eq!(week.len(), 168);
        assert!(week.iter().all(|v| *v < limit));
        assert!(week.iter().filter(|v| **v >= 0.905 * limit).count() > 60);
        // The stuck copy repeats one SO2 value for 30 hours.
        let stuck = &r.truth.events[2];
        let values = during(stuck, codes::SO2);
        assert_eq!(values.len(), 30);
        assert!(values.iter().all(|v| *v == values[0]));
    }
}

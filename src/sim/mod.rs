//! The simulator: realistic enterprises with known violations, deterministic for a seed.
//!
//! A scenario is a city district's worth of key polluters (coal power, steel sintering, cement, coking, VOC coating,
//! gas boilers), each with production and treatment meters and a stack CEMS, living a normal industrial life
//! (shifts, load swings, start-ups and shutdowns in the right order, daily calibrations, maintenance, communication
//! outages, meter faults, fuel changes, plants tuned close to their limits) with violations injected into some of
//! them. Every violation is recorded as ground truth, so detectors can be scored; some enterprises stay clean, so
//! false-alarm rates can be measured on them.

pub mod family;
pub mod industry;
pub mod plant;
pub mod truth;

use crate::domain::{
    AnomalyKind, Enterprise, Meter, MeterRole, OperatingChange, OperatingChangeKind, Outlet,
    OutletKind, Point, RestrictionOrder, MS_PER_MINUTE,
};
pub use family::Family;
use family::Params;
use plant::{Injection, Life, Plant, PlantIds, Restriction, Style, DAY_MIN};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::BTreeMap;
pub use truth::{TruthEvent, TruthFile};

/// Scenario settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed: the same seed gives the same data, bit for bit.
    pub seed: u64,
    /// Number of enterprises.
    pub enterprises: usize,
    /// Days of minute data.
    pub days: u32,
    /// First minute (Unix ms); defaults to Monday 2025-03-03 00:00 Beijing time.
    pub start_ms: i64,
    /// Share of enterprises kept free of violations (for false-alarm rates).
    pub clean_share: f64,
    /// The generator: the development family or the held-out one.
    pub family: Family,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            enterprises: 20,
            days: 7,
            start_ms: 1_740_931_200_000, // 2025-03-02T16:00:00Z = 2025-03-03 00:00 +08:00
            clean_share: 0.3,
            family: Family::District,
        }
    }
}

/// Districts of Pingdingshan, the city whose plan started this project.
const REGIONS: [&str; 4] = ["新华区", "卫东区", "湛河区", "石龙区"];

/// The violations the simulator injects, in the order enterprises are dealt them. `ModelResidual` has no injection of
/// its own: it is a legitimate secondary finding of several of these.
const INJECTED_KINDS: [AnomalyKind; 17] = [
    AnomalyKind::TreatmentNotRunning,
    AnomalyKind::BypassSuspected,
    AnomalyKind::Flatline,
    AnomalyKind::Exceedance,
    AnomalyKind::UnmonitoredEmission,
    AnomalyKind::RestrictionViolation,
    AnomalyKind::TreatmentLowPower,
    AnomalyKind::ReplayedData,
    AnomalyKind::CalibrationGas,
    AnomalyKind::Dilution,
    AnomalyKind::FlagAbuse,
    AnomalyKind::AmmoniaSlip,
    AnomalyKind::LowVariance,
    AnomalyKind::ParameterTampering,
    AnomalyKind::LimitBunching,
    AnomalyKind::SelectiveGap,
    AnomalyKind::PermitExceeded,
];

/// Kinds a detector may correctly report as a consequence of an injected kind.
pub fn secondary_kinds(kind: AnomalyKind) -> Vec<AnomalyKind> {
    use AnomalyKind::*;
    let mut v = match kind {
        TreatmentNotRunning => vec![Exceedance, TreatmentLowPower, AmmoniaSlip, PermitExceeded],
        TreatmentLowPower => vec![Exceedance, TreatmentNotRunning, PermitExceeded],
        BypassSuspected => vec![],
        UnmonitoredEmission => vec![SelectiveGap, FlagAbuse],
        FlagAbuse => vec![UnmonitoredEmission, PermitExceeded],
        Exceedance => vec![PermitExceeded],
        Flatline => vec![LowVariance],
        LowVariance => vec![Flatline],
        ReplayedData => vec![LowVariance, PermitExceeded],
        CalibrationGas => vec![
            Flatline,
            Dilution,
            ParameterTampering,
            LowVariance,
            PermitExceeded,
        ],
        Dilution => vec![ParameterTampering],
        ParameterTampering => vec![],
        // Clamped raw values are back-computed from one converted ceiling through the measured O2: every clamped
        // pollutant then moves with O2 and with each other, which is channel substitution in fact.
        LimitBunching => vec![LowVariance, ParameterTampering],
        AmmoniaSlip => vec![],
        SelectiveGap => vec![UnmonitoredEmission, Exceedance, PermitExceeded],
        RestrictionViolation => vec![],
        PermitExceeded => vec![Exceedance],
        ModelResidual => vec![],
    };
    v.push(ModelResidual);
    v
}

/// A generated scenario: the registry, the ground truth, and the plants that produce the data.
pub struct Scenario {
    /// Settings it was made with.
    pub config: SimConfig,
    /// Enterprises.
    pub enterprises: Vec<Enterprise>,
    /// Outlets (stacks and bypass ducts).
    pub outlets: Vec<Outlet>,
    /// Meters.
    pub meters: Vec<Meter>,
    /// Restriction orders.
    pub restrictions: Vec<RestrictionOrder>,
    /// Injected violations.
    pub truth: Vec<TruthEvent>,
    /// Operating changes the enterprises declare (Field's declared fuel changes).
    pub operating_changes: Vec<OperatingChange>,
    plants: Vec<Plant>,
}

impl Scenario {
    /// Builds the scenario.
    pub fn new(config: SimConfig) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
        let params = config.family.params();
        let total_min = i64::from(config.days) * DAY_MIN;
        let profiles = industry::profiles();
        let n_clean = ((config.enterprises as f64) * config.clean_share).round() as usize;
        // Region-wide communication outages: one per region, 30–90 min, on a random day.
        let outages: Vec<(i64, i64)> = REGIONS
            .iter()
            .map(|_| {
                let s = rng.gen_range(DAY_MIN..(total_min - DAY_MIN).max(DAY_MIN + 1));
                (s, s + rng.gen_range(30..90))
            })
            .collect();
        // An orange heavy-pollution alert on day 4 (or the middle of a short scenario): 36 h at 50 % load.
        let alert_start = (total_min / 2).min(3 * DAY_MIN) + 8 * 60;
        let alert = Restriction {
            start_min: alert_start,
            end_min: (alert_start + 36 * 60).min(total_min),
            max_load_fraction: 0.5,
        };
        let mut pending: std::collections::VecDeque<AnomalyKind> =
            std::collections::VecDeque::new();
        let mut scenario = Self {
            config: config.clone(),
            enterprises: Vec::new(),
            outlets: Vec::new(),
            meters: Vec::new(),
            restrictions: Vec::new(),
            truth: Vec::new(),
            operating_changes: Vec::new(),
            plants: Vec::new(),
        };
        for i in 0..config.enterprises {
            let profile = profiles[i % profiles.len()].clone();
            let region = REGIONS[i % REGIONS.len()];
            let eid = format!("E{:02}", i + 1);
            let grade = if i % 5 == 0 {
                "A"
            } else if i % 3 == 0 {
                "C"
            } else {
                "B"
            };
            let clean = i >= config.enterprises - n_clean;
            let has_bypass = matches!(
                profile.industry,
                "coal_power" | "steel_sintering" | "coking"
            ) && i % 2 == 0;
            let ids = PlantIds {
                enterprise: eid.clone(),
                stack: format!("{eid}-DA001"),
                bypass: has_bypass.then(|| format!("{eid}-DA001-BP")),
                production: format!("{eid}-P01"),
                treatment: (0..profile.treatment.len())
                    .map(|k| format!("{eid}-T{:02}", k + 1))
                    .collect(),
            };

            // Legitimate life.
            let mut life = Life {
                calibration_minute: 120 + rng.gen_range(0..180),
                near_limit: i % 7 == 3,
                ..Life::default()
            };
            if profile.continuous {
                if rng.gen_bool(0.35) || (!clean && i % 4 == 1) {
                    // A planned shutdown (the late-start / early-stop injections hang on it).
                    let s = rng.gen_range(DAY_MIN..(total_min - 2 * DAY_MIN).max(DAY_MIN + 1));
                    let e = s + rng.gen_range(8 * 60..30 * 60);
                    life.production = vec![(0, s), (e.min(total_min), total_min)];
                } else {
                    life.production = vec![(0, total_min)];
                }
            } else {
                // Day shift 08:00–20:00, Monday to Saturday.
                life.production = (0..i64::from(config.days))
                    .filter(|d| d % 7 != 6)
                    .map(|d| (d * DAY_MIN + 8 * 60, d * DAY_MIN + 20 * 60))
                    .collect();
            }
            if rng.gen_bool(0.3) {
                let s = running_start(&life, &mut rng, 90, total_min);
                life.maintenance.push((s, s + 90));
            }
            if rng.gen_bool(0.25) {
                let s = running_start(&life, &mut rng, 300, total_min);
                life.meter_faults.push((0, s, s + rng.gen_range(120..300)));
            }
            life.outages.push(outages[i % REGIONS.len()]);
            for _ in 0..2 {
                let s = running_start(&life, &mut rng, 180, total_min);
                life.load_swings.push((s, s + rng.gen_range(60..180), 0.65));
            }
            if profile.industry == "coal_power" && rng.gen_bool(0.5) {
                life.fuel_changes.push((rng.gen_range(0..total_min), 1.3));
            }
            if config.family != Family::District {
                field_life(
                    &mut life,
                    &params,
                    &mut rng,
                    total_min,
                    &eid,
                    config.start_ms,
                    &mut scenario.operating_changes,
                );
            }
            if grade != "A" {
                life.restriction = Some(alert);
                scenario.restrictions.push(RestrictionOrder {
                    id: format!("{eid}-ORANGE-1"),
                    enterprise_id: eid.clone(),
                    meter_ids: vec![],
                    start_ms: config.start_ms + alert.start_min * MS_PER_MINUTE,
                    end_ms: config.start_ms + alert.end_min * MS_PER_MINUTE,
                    max_load_fraction: alert.max_load_fraction,
                    level: "orange".into(),
                });
            }

            // Violations: two per violating enterprise, one lazy and one careful.
            let mut injections = Vec::new();
            let mut permit_factor = 2.0;
            if !clean {
                for dealt in 0..2 {
                    if pending.is_empty() {
                        pending.extend(INJECTED_KINDS);
                    }
                    let style = if dealt == 0 {
                        Style::Lazy
                    } else {
                        Style::Careful
                    };
                    // The first kind still to be dealt that fits this plant.
                    let fit = (0..pending.len()).find_map(|pos| {
                        let kind = pending[pos];
                        plan_injection(
                            kind,
                            style,
                            &Host {
                                profile: &profile,
                                life: &life,
                                params: &params,
                                total_min,
                            },
                            &injections,
                            &mut rng,
                        )
                        .map(|inj| (pos, inj))
                    });
                    let Some((pos, inj)) = fit else {
                        continue;
                    };
                    pending.remove(pos);
                    let kind = inj.kind;
                    if kind == AnomalyKind::PermitExceeded {
                        permit_factor = if style == Style::Lazy { 0.6 } else { 0.85 };
                    }
                    scenario.truth.push(TruthEvent {
                        enterprise_id: eid.clone(),
                        outlet_id: ids.stack.clone(),
                        kind,
                        start_ms: config.start_ms + inj.start_min * MS_PER_MINUTE,
                        end_ms: config.start_ms + inj.end_min * MS_PER_MINUTE,
                        subtle: style == Style::Careful,
                        description: describe(&inj, &profile),
                        also: secondary_kinds(kind),
                    });
                    injections.push(inj);
                }
            }

            // Registry.
            scenario.enterprises.push(Enterprise {
                id: eid.clone(),
                name: format!(
                    "平顶山{}{}有限公司",
                    ["恒", "鑫", "华", "瑞", "金"][i % 5],
                    profile.name_zh
                ),
                industry: profile.industry.to_string(),
                region: region.to_string(),
                performance_grade: grade.to_string(),
            });
            // Permitted annual mass: `permit_factor` × what a year at the plant's own typical emissions would be
            // (its typical load and running time; near the limit for plants that run there), so a cheat with a factor
            // below 1 runs over its permit pro rata while an honest plant stays at half of it.
            let flow_m3_s =
                profile.flow_full_m3_s * (0.35 + 0.65 * profile.typical_load) * profile.duty;
            let permitted: BTreeMap<String, f64> = profile
                .pollutants
                .iter()
                .map(|pol| {
                    let inlet = pol.inlet_mg_m3 * (0.85 + 0.15 * profile.typical_load);
                    let mut typical_mg_m3 = inlet * (1.0 - pol.efficiency);
                    if life.near_limit && pol.removed_by.is_some() {
                        typical_mg_m3 = typical_mg_m3.max(0.85 * pol.limit_mg_m3);
                    }
                    let raw_factor = if profile.reference_o2_pct > 0.0 {
                        (21.0 - profile.o2_full_pct) / (21.0 - profile.reference_o2_pct)
                    } else {
                        1.0
                    };
                    let t_per_year =
                        typical_mg_m3 * raw_factor * flow_m3_s * 3600.0 * 8760.0 * 1e-9;
                    (
                        pol.code.to_string(),
                        (t_per_year * permit_factor * 1000.0).round() / 1000.0,
                    )
                })
                .collect();
            let mut limits: BTreeMap<String, f64> = profile
                .pollutants
                .iter()
                .map(|p| (p.code.to_string(), p.limit_mg_m3))
                .collect();
            if let Some((nh3_limit, _)) = profile.ammonia {
                limits.insert("a21001".into(), nh3_limit);
            }
            scenario.outlets.push(Outlet {
                id: ids.stack.clone(),
                enterprise_id: eid.clone(),
                name: "1#排放口".into(),
                kind: OutletKind::Stack,
                main_outlet_id: String::new(),
                reference_o2_pct: profile.reference_o2_pct,
                limits_mg_m3: limits,
                permitted_t_per_year: permitted,
                hj212_password: "123456".into(),
            });
            if let Some(b) = &ids.bypass {
                scenario.outlets.push(Outlet {
                    id: b.clone(),
                    enterprise_id: eid.clone(),
                    name: "1#旁路烟道".into(),
                    kind: OutletKind::Bypass,
                    main_outlet_id: ids.stack.clone(),
                    hj212_password: "123456".into(),
                    ..Outlet::default()
                });
            }
            scenario.meters.push(Meter {
                id: ids.production.clone(),
                enterprise_id: eid.clone(),
                role: MeterRole::Production,
                equipment: profile.production.0.to_string(),
                outlet_ids: vec![ids.stack.clone()],
                rated_kw: profile.production.1,
                hj212_password: "123456".into(),
            });
            for (k, f) in profile.treatment.iter().enumerate() {
                scenario.meters.push(Meter {
                    id: ids.treatment[k].clone(),
                    enterprise_id: eid.clone(),
                    role: MeterRole::Treatment,
                    equipment: f.equipment.to_string(),
                    outlet_ids: vec![ids.stack.clone()],
                    rated_kw: f.rated_kw,
                    hj212_password: "123456".into(),
                });
            }
            let seed = config.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
            scenario.plants.push(Plant::new(
                profile,
                ids,
                life,
                injections,
                config.start_ms,
                seed,
                params,
            ));
        }
        scenario
    }

    /// Minutes in the scenario.
    pub fn total_minutes(&self) -> i64 {
        i64::from(self.config.days) * DAY_MIN
    }

    /// Everything every enterprise reports in minute `m` (in order of `m`; call each minute once, in order).
    pub fn minute(&mut self, m: i64) -> Vec<Point> {
        let mut out = Vec::with_capacity(self.plants.len() * 20);
        for p in &mut self.plants {
            out.extend(p.minute(m));
        }
        out
    }

    /// The ground truth as a file.
    pub fn truth_file(&self) -> TruthFile {
        TruthFile {
            start_ms: self.config.start_ms,
            days: f64::from(self.config.days),
            clean_enterprises: self.clean_enterprises(),
            events: self.truth.clone(),
            seed: Some(self.config.seed),
            enterprises: Some(self.config.enterprises),
            clean_share: Some(self.config.clean_share),
            family: Some(self.config.family),
        }
    }

    /// Enterprises with no injected violation.
    pub fn clean_enterprises(&self) -> Vec<String> {
        self.enterprises
            .iter()
            .filter(|e| !self.truth.iter().any(|t| t.enterprise_id == e.id))
            .map(|e| e.id.clone())
            .collect()
    }
}

/// Field's plant life on top of what both families share: honest outages whose data is lost, a fuel step (declared
/// by half the plants that make one), hourly-only reporting.
fn field_life(
    life: &mut Life,
    params: &Params,
    rng: &mut Xoshiro256PlusPlus,
    total_min: i64,
    enterprise_id: &str,
    start_ms: i64,
    declared: &mut Vec<OperatingChange>,
) {
    // Poisson count by inversion, log-uniform lengths.
    let mean = params.lost_outages_per_month * total_min as f64 / (30.0 * DAY_MIN as f64);
    let (mut k, mut p, threshold) = (0usize, 1.0f64, (-mean).exp());
    loop {
        p *= rng.gen::<f64>();
        if p <= threshold {
            break;
        }
        k += 1;
    }
    let (lo, hi) = params.lost_outage_min;
    for _ in 0..k {
        let len = (lo.ln() + rng.gen::<f64>() * (hi.ln() - lo.ln()))
            .exp()
            .round() as i64;
        let s = rng.gen_range(0..(total_min - len).max(1));
        life.lost_outages
            .push((s, s + len.max(1), rng.gen_bool(0.5)));
    }
    life.hourly = rng.gen_bool(params.hourly_share);
    if rng.gen_bool(params.fuel_step_share) {
        let from = rng.gen_range(DAY_MIN..(total_min - 3 * DAY_MIN).max(DAY_MIN + 1));
        let so2 = rng.gen_range(0.55..0.8);
        life.fuel_step = Some((from, so2));
        if rng.gen_bool(0.5) {
            let mut change = OperatingChange {
                enterprise_id: enterprise_id.to_string(),
                kind: OperatingChangeKind::Fuel,
                effective_ms: start_ms + from * MS_PER_MINUTE,
                description: format!("低硫煤 / lower-sulphur fuel: SO2 inlet × {so2:.2}"),
                declared_by: format!("{enterprise_id} 环保专员"),
                ..OperatingChange::default()
            };
            change.id = change.derived_id();
            declared.push(change);
        }
    }
}

/// A random minute at which production runs for at least `len` more minutes.
fn running_start(life: &Life, rng: &mut Xoshiro256PlusPlus, len: i64, total_min: i64) -> i64 {
    for _ in 0..200 {
        let m = rng.gen_range(0..(total_min - len).max(1));
        if life
            .production
            .iter()
            .any(|(s, e)| m >= s + 60 && m + len <= *e)
        {
            return m;
        }
    }
    life.production.first().map_or(0, |(s, _)| *s)
}

fn overlaps(injections: &[Injection], s: i64, e: i64) -> bool {
    injections
        .iter()
        .any(|i| i.start_min < e + 240 && s < i.end_min + 240)
}

/// The plant a violation is planned into: what it is, how it lives, its family's cheat lengths, the scenario's length.
struct Host<'a> {
    profile: &'a industry::Profile,
    life: &'a Life,
    params: &'a Params,
    total_min: i64,
}

/// Decides where a violation goes; `None` when it does not fit the plant.
fn plan_injection(
    kind: AnomalyKind,
    style: Style,
    host: &Host<'_>,
    taken: &[Injection],
    rng: &mut Xoshiro256PlusPlus,
) -> Option<Injection> {
    use AnomalyKind::*;
    let Host {
        profile,
        life,
        params,
        total_min,
    } = *host;
    // Signatures that exist only in minute data: a calibration-gas minute pattern, a minute-level gap pattern, a
    // minute-to-minute variance.
    if life.hourly && matches!(kind, CalibrationGas | SelectiveGap | LowVariance) {
        return None;
    }
    let (flat_lo, flat_hi) = params.flatline_len_min;
    let (replay_lo, replay_hi) = params.replay_len_min;
    let converts = profile.reference_o2_pct > 0.0;
    let removed = profile
        .pollutants
        .iter()
        .position(|p| p.removed_by.is_some());
    let (len_lo, len_hi, min_start) = match kind {
        TreatmentNotRunning => (120, 360, 0),
        TreatmentLowPower => (240, 600, 0),
        BypassSuspected if profile.continuous => (90, 300, 0),
        UnmonitoredEmission => (120, 420, 0),
        Exceedance if removed.is_some() => (120, 300, 0),
        Flatline => (flat_lo, flat_hi, 0),
        LowVariance => (600, 660, 0),
        ReplayedData if profile.continuous => (
            replay_lo,
            replay_hi,
            params
                .replay_lag_min
                .0
                .max(params.replay_lag_min.1)
                .max(2 * DAY_MIN),
        ),
        CalibrationGas if converts => (120, 360, 0),
        Dilution if converts => (180, 480, 0),
        FlagAbuse => (120, 360, 0),
        AmmoniaSlip if profile.ammonia.is_some() => (180, 540, 0),
        ParameterTampering | LimitBunching | SelectiveGap
            if profile.continuous && removed.is_some() =>
        {
            let s = total_min / 2;
            return (!overlaps(taken, s, total_min)).then_some(Injection {
                kind,
                start_min: s,
                end_min: total_min,
                style,
                target: 0,
            });
        }
        PermitExceeded => {
            return (!taken.iter().any(|i| i.kind == PermitExceeded)).then_some(Injection {
                kind,
                start_min: 0,
                end_min: total_min,
                style,
                target: 0,
            });
        }
        RestrictionViolation => {
            let r = life.restriction?;
            return (!overlaps(taken, r.start_min, r.end_min)).then_some(Injection {
                kind,
                start_min: r.start_min,
                end_min: r.end_min,
                style,
                target: 0,
            });
        }
        _ => return None,
    };
    // Late start / early stop on a plant that stops and starts.
    if kind == TreatmentNotRunning && style == Style::Careful && life.production.len() > 1 {
        let (s, _) = life.production[1];
        let len = rng.gen_range(60..100);
        if !overlaps(taken, s, s + len) {
            return Some(Injection {
                kind,
                start_min: s,
                end_min: s + len,
                style,
                target: 0,
            });
        }
    }
    let target = match kind {
        Exceedance => removed.unwrap_or(0),
        _ => 0,
    };
    for _ in 0..200 {
        let len = rng
            .gen_range(len_lo..=len_hi)
            .min(if profile.continuous { len_hi } else { 600 });
        let s = running_start(life, rng, len, total_min);
        if s < min_start || overlaps(taken, s, s + len) {
            continue;
        }
        return Some(Injection {
            kind,
            start_min: s,
            end_min: s + len,
            style,
            target,
        });
    }
    None
}

fn describe(inj: &Injection, profile: &industry::Profile) -> String {
    let how = match inj.style {
        Style::Lazy => "lazy",
        Style::Careful => "careful",
    };
    let facility = profile
        .treatment
        .get(inj.target)
        .map_or("", |f| f.equipment);
    let minutes = inj.end_min - inj.start_min;
    match inj.kind {
        AnomalyKind::TreatmentNotRunning => {
            format!("{how}: {facility} switched off for {minutes} min while production ran")
        }
        AnomalyKind::TreatmentLowPower => {
            format!("{how}: {facility} run at reduced power for {minutes} min")
        }
        AnomalyKind::BypassSuspected => {
            format!("{how}: part of the flue gas sent through the bypass for {minutes} min")
        }
        other => format!("{how}: {} for {minutes} min", other.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> Scenario {
        Scenario::new(SimConfig {
            seed,
            enterprises: 12,
            days: 3,
            ..SimConfig::default()
        })
    }

    #[test]
    fn same_seed_same_data_different_seed_different_data() {
        let (mut a, mut b, mut c) = (small(7), small(7), small(8));
        for m in 0..600 {
            let (pa, pb, pc) = (a.minute(m), b.minute(m), c.minute(m));
            assert_eq!(pa, pb);
            if m == 599 {
                assert_ne!(pa, pc);
            }
        }
        assert_eq!(a.truth, b.truth);
    }

    #[test]
    fn clean_enterprises_have_no_truth_and_violators_do() {
        let s = small(3);
        let clean = s.clean_enterprises();
        assert_eq!(clean.len(), 4);
        assert!(s.truth.iter().all(|t| !clean.contains(&t.enterprise_id)));
        assert!(s.truth.len() >= 12, "{}", s.truth.len());
        assert!(s.truth.iter().all(|t| t.end_ms > t.start_ms));
    }

    #[test]
    fn every_injectable_kind_appears_in_the_default_demo() {
        let s = Scenario::new(SimConfig::default());
        for k in INJECTED_KINDS {
            assert!(s.truth.iter().any(|t| t.kind == k), "{k:?} never injected");
        }
    }

    #[test]
    fn the_field_family_has_hourly_outlets_lost_outages_and_declared_fuel_changes() {
        let mut s = Scenario::new(SimConfig {
            seed: 201,
            enterprises: 16,
            days: 28,
            family: Family::Field,
            ..SimConfig::default()
        });
        let hourly: Vec<String> = s
            .plants
            .iter()
            .filter(|p| p.life.hourly)
            .map(|p| p.ids.stack.clone())
            .collect();
        assert!(!hourly.is_empty() && hourly.len() < 16, "{hourly:?}");
        assert!(s.plants.iter().any(|p| !p.life.lost_outages.is_empty()));
        assert!(s.plants.iter().any(|p| p.life.fuel_step.is_some()));
        assert!(s
            .operating_changes
            .iter()
            .all(|c| c.kind == OperatingChangeKind::Fuel && !c.id.is_empty()));
        let mut stack_points = Vec::new();
        for m in 0..DAY_MIN {
            stack_points.extend(
                s.minute(m)
                    .into_iter()
                    .filter(|p| p.source_id == hourly[0] && p.code == "a00000"),
            );
        }
        assert!(
            (20..=24).contains(&stack_points.len()),
            "{}",
            stack_points.len()
        );
        for p in &stack_points {
            assert_eq!(p.interval, crate::domain::Interval::Hour);
            assert_eq!((p.time_ms - s.config.start_ms) % (60 * MS_PER_MINUTE), 0);
        }
    }

    /// Groups a minute's points by (source, code).
    fn by_key(points: &[Point]) -> BTreeMap<(String, String), Point> {
        points
            .iter()
            .map(|p| ((p.source_id.clone(), p.code.clone()), p.clone()))
            .collect()
    }

    #[test]
    fn physics_flow_follows_load_and_converted_follows_formula() {
        let mut s = small(11);
        let stack = s.outlets[0].id.clone();
        let prod = s.meters[0].id.clone();
        let reference = s.outlets[0].reference_o2_pct;
        let (mut powers, mut flows) = (Vec::new(), Vec::new());
        for m in 0..1440 {
            let pts = by_key(&s.minute(m));
            let (Some(p), Some(f)) = (
                pts.get(&(prod.clone(), "power_kw".into())),
                pts.get(&(stack.clone(), "a00000".into())),
            ) else {
                continue;
            };
            if f.flag != crate::domain::ValueFlag::Normal {
                continue;
            }
            powers.push(p.value);
            flows.push(f.value);
            let o2 = pts[&(stack.clone(), "a19001".into())].value;
            let so2 = &pts[&(stack.clone(), "a21026".into())];
            if let Some(cz) = so2.converted {
                let expect =
                    crate::domain::units::converted_mg_m3(so2.value, o2, reference, 19.0).unwrap();
                assert!((cz - expect).abs() <= 0.11, "{cz} vs {expect}");
            }
        }
        let n = powers.len() as f64;
        let (mp, mf) = (
            powers.iter().sum::<f64>() / n,
            flows.iter().sum::<f64>() / n,
        );
        let cov: f64 = powers
            .iter()
            .zip(&flows)
            .map(|(p, f)| (p - mp) * (f - mf))
            .sum();
        let sp: f64 = powers.iter().map(|p| (p - mp).powi(2)).sum::<f64>().sqrt();
        let sf: f64 = flows.iter().map(|f| (f - mf).powi(2)).sum::<f64>().sqrt();
        let corr = cov / (sp * sf);
        assert!(
            corr > 0.8,
            "flow should follow production power, corr = {corr}"
        );
    }
}

#[cfg(test)]
mod signature_tests {
    //! Each injected violation leaves the signature DOMAIN.md §5 describes, visible in the data the plant reports.
    use super::*;
    use crate::domain::{units, ValueFlag};
    use std::collections::HashMap;

    type Series = HashMap<(String, String), Vec<(i64, f64, ValueFlag, Option<f64>)>>;

    fn scenario() -> (Scenario, Series) {
        let mut s = Scenario::new(SimConfig::default());
        let mut series: Series = HashMap::new();
        for m in 0..s.total_minutes() {
            for p in s.minute(m) {
                let minute = (p.time_ms - s.config.start_ms) / MS_PER_MINUTE;
                series.entry((p.source_id, p.code)).or_default().push((
                    minute,
                    p.value,
                    p.flag,
                    p.converted,
                ));
            }
        }
        for v in series.values_mut() {
            v.sort_by_key(|x| x.0);
        }
        (s, series)
    }

    fn values(series: &Series, source: &str, code: &str, range: std::ops::Range<i64>) -> Vec<f64> {
        series
            .get(&(source.to_string(), code.to_string()))
            .map(|v| {
                v.iter()
                    .filter(|x| range.contains(&x.0) && x.2 == ValueFlag::Normal)
                    .map(|x| x.1)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }

    #[test]
    fn every_injected_kind_leaves_its_signature() {
        let (s, series) = scenario();
        let start = s.config.start_ms;
        let mut checked = std::collections::BTreeSet::new();
        for e in &s.truth {
            let (a, b) = (
                (e.start_ms - start) / MS_PER_MINUTE,
                (e.end_ms - start) / MS_PER_MINUTE,
            );
            let ent = &e.enterprise_id;
            let stack = &e.outlet_id;
            let before = (a - 120).max(0)..a;
            let outlet = s.outlets.iter().find(|o| &o.id == stack).expect("outlet");
            let t1 = format!("{ent}-T01");
            let p1 = format!("{ent}-P01");
            let ok = match e.kind {
                AnomalyKind::TreatmentNotRunning => {
                    // Some treatment meter falls below 15 % of its normal level while production runs.
                    s.meters
                        .iter()
                        .filter(|m| &m.enterprise_id == ent && m.role == MeterRole::Treatment)
                        .any(|m| {
                            let during = values(&series, &m.id, "power_kw", a..b);
                            let normal =
                                mean(&values(&series, &m.id, "power_kw", 0..s.total_minutes()));
                            mean(&during) < 0.15 * normal
                        })
                }
                AnomalyKind::TreatmentLowPower => {
                    let during = mean(&values(&series, &t1, "power_kw", a..b));
                    let normal = mean(&values(&series, &t1, "power_kw", before.clone()));
                    during < 0.6 * normal && during > 0.15 * normal
                }
                AnomalyKind::BypassSuspected => {
                    mean(&values(&series, stack, "a00000", a..b))
                        < 0.7 * mean(&values(&series, stack, "a00000", before.clone()))
                        && mean(&values(&series, &p1, "power_kw", a..b))
                            > 0.8 * mean(&values(&series, &p1, "power_kw", before.clone()))
                }
                AnomalyKind::RestrictionViolation => {
                    // While it runs during the order, production stays near its level of the day before.
                    let running = |v: Vec<f64>| -> Vec<f64> {
                        let top = v.iter().cloned().fold(0.0, f64::max);
                        v.into_iter().filter(|x| *x > 0.2 * top).collect()
                    };
                    mean(&running(values(&series, &p1, "power_kw", a + 120..b)))
                        > 0.8
                            * mean(&running(values(
                                &series,
                                &p1,
                                "power_kw",
                                (a - 1440).max(0)..a,
                            )))
                }
                AnomalyKind::UnmonitoredEmission => {
                    let valid = values(&series, stack, "a00000", a..b).len() as i64;
                    valid < (b - a) / 10
                }
                AnomalyKind::Exceedance | AnomalyKind::AmmoniaSlip | AnomalyKind::FlagAbuse => {
                    // Something over its limit in the window (for flag abuse: behind the flags).
                    outlet.limits_mg_m3.iter().any(|(code, limit)| {
                        series.get(&(stack.clone(), code.clone())).is_some_and(|v| {
                            v.iter()
                                .filter(|x| (a..b).contains(&x.0))
                                .any(|x| x.3.unwrap_or(x.1) > *limit)
                        })
                    }) && (e.kind != AnomalyKind::FlagAbuse
                        || series[&(stack.clone(), "a00000".to_string())]
                            .iter()
                            .filter(|x| (a..b).contains(&x.0))
                            .all(|x| matches!(x.2, ValueFlag::Stopped | ValueFlag::Maintenance)))
                }
                AnomalyKind::Flatline => outlet.limits_mg_m3.keys().any(|code| {
                    let v = values(&series, stack, code, a + 1..b);
                    !v.is_empty()
                        && v.iter().cloned().fold(f64::MIN, f64::max)
                            - v.iter().cloned().fold(f64::MAX, f64::min)
                            <= 0.011 + 0.1
                }),
                AnomalyKind::LowVariance => outlet.limits_mg_m3.keys().any(|code| {
                    let d = |v: Vec<f64>| {
                        let d: Vec<f64> =
                            v.windows(2).map(|w| (w[1] / w[0].max(1e-9)).ln()).collect();
                        mean(&d.iter().map(|x| x * x).collect::<Vec<_>>())
                    };
                    d(values(&series, stack, code, a..b))
                        < 0.8 * d(values(&series, stack, code, (a - 720).max(0)..a))
                }),
                AnomalyKind::ReplayedData => {
                    let now = values(&series, stack, "a19001", a..b);
                    [1440i64, 1620].iter().any(|lag| {
                        let old = values(&series, stack, "a19001", a - lag..b - lag);
                        now.len() == old.len()
                            && now
                                .iter()
                                .zip(&old)
                                .all(|(x, y)| (x - y).abs() <= 0.05 * y.abs() + 0.02)
                    })
                }
                AnomalyKind::CalibrationGas => {
                    let o2 = values(&series, stack, "a19001", a..b);
                    !o2.is_empty() && o2.iter().all(|x| *x <= 0.5 || *x >= 20.5)
                }
                AnomalyKind::Dilution => {
                    mean(&values(&series, stack, "a19001", a..b))
                        > mean(&values(&series, stack, "a19001", before.clone())) + 1.5
                }
                AnomalyKind::ParameterTampering => {
                    // Lazy: ZsRtd no longer the formula; careful: the gas level steps down.
                    let code = outlet.limits_mg_m3.keys().next().expect("a pollutant");
                    let mismatch = series[&(stack.clone(), code.clone())]
                        .iter()
                        .filter(|x| (a..b).contains(&x.0))
                        .any(|x| {
                            let o2 = series[&(stack.clone(), "a19001".to_string())]
                                .iter()
                                .find(|y| y.0 == x.0)
                                .map(|y| y.1);
                            match (
                                x.3,
                                o2.and_then(|o2| {
                                    units::converted_mg_m3(x.1, o2, outlet.reference_o2_pct, 19.0)
                                }),
                            ) {
                                (Some(reported), Some(formula)) => {
                                    (reported - formula).abs() > 0.2 * formula
                                }
                                _ => false,
                            }
                        });
                    mismatch
                        || mean(&values(&series, stack, code, a..a + 720))
                            < 0.8 * mean(&values(&series, stack, code, a - 720..a))
                }
                AnomalyKind::LimitBunching => outlet.limits_mg_m3.iter().any(|(code, limit)| {
                    let v: Vec<f64> = series[&(stack.clone(), code.clone())]
                        .iter()
                        .filter(|x| (a..b).contains(&x.0) && x.2 == ValueFlag::Normal)
                        .filter_map(|x| x.3)
                        .collect();
                    let near = v.iter().filter(|x| **x >= 0.9 * limit).count();
                    near > 60 && v.iter().all(|x| *x <= *limit)
                }),
                AnomalyKind::SelectiveGap => {
                    let present = values(&series, stack, "a00000", a..b).len() as i64;
                    present < (b - a) * 9 / 10
                }
                AnomalyKind::PermitExceeded => {
                    let code = outlet.permitted_t_per_year.keys().next().expect("permit");
                    let conc = series[&(stack.clone(), code.clone())].clone();
                    let flow: HashMap<i64, f64> = series[&(stack.clone(), "a00000".to_string())]
                        .iter()
                        .map(|x| (x.0, x.1))
                        .collect();
                    let t: f64 = conc
                        .iter()
                        .filter_map(|x| flow.get(&x.0).map(|f| x.1 * f * 60.0 * 1e-9))
                        .sum();
                    t * 365.0 / f64::from(s.config.days) > outlet.permitted_t_per_year[code]
                }
                AnomalyKind::ModelResidual => true,
            };
            assert!(
                ok,
                "{:?} at {ent} ({}): signature not found in the data",
                e.kind, e.description
            );
            checked.insert(e.kind);
        }
        assert_eq!(checked.len(), INJECTED_KINDS.len());
    }
}

//! One simulated enterprise, minute by minute: a production line, its treatment facilities, one stack with a CEMS
//! (and maybe a monitored bypass duct), the physics that ties them together, the legitimate events of plant life, and
//! the injected violations.
//!
//! The physics, in order: load → production power; schedule → treatment power; treatment power relative to what the
//! load needs → removal efficiency → converted concentration; load → flow, O2, temperature; converted concentration
//! and O2 → raw concentration as the analyzer sees it. Cheats act on what is *reported*, physics on what is *real*,
//! so a faked CEMS leaves the power meters telling the truth.

use super::family::Params;
use super::industry::Profile;
use crate::domain::{units, AnomalyKind, Interval, Point, ValueFlag, MS_PER_MINUTE};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::{BTreeMap, VecDeque};

/// Minutes in a day.
pub const DAY_MIN: i64 = 1440;
/// Treatment starts this many minutes before production and stops this many after (the rule of the trade).
const SEQUENCING_MIN: i64 = 20;
/// CEMS history kept for replay cheats.
const HISTORY_MIN: usize = 2 * DAY_MIN as usize + 1;

/// How a violation is carried out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Style {
    /// Obvious: switched off, stuck values, exact copies.
    Lazy,
    /// Disguised: standby instead of off, small gain changes, near-copies with noise.
    Careful,
}

/// A violation to inject.
#[derive(Debug, Clone)]
pub struct Injection {
    /// What kind of violation (its ground-truth kind).
    pub kind: AnomalyKind,
    /// First minute (scenario minutes).
    pub start_min: i64,
    /// End minute (exclusive).
    pub end_min: i64,
    /// Lazy or careful.
    pub style: Style,
    /// What it targets: the treatment facility index (treatment kinds) or the pollutant index (exceedance).
    pub target: usize,
}

impl Injection {
    fn active(&self, m: i64) -> bool {
        (self.start_min..self.end_min).contains(&m)
    }
}

/// A restriction order as the plant experiences it.
#[derive(Debug, Clone, Copy)]
pub struct Restriction {
    /// First minute.
    pub start_min: i64,
    /// End minute (exclusive).
    pub end_min: i64,
    /// Allowed fraction of normal load.
    pub max_load_fraction: f64,
}

/// Source ids of the plant.
#[derive(Debug, Clone)]
pub struct PlantIds {
    /// Enterprise.
    pub enterprise: String,
    /// Stack outlet (its CEMS source id).
    pub stack: String,
    /// Bypass duct, if monitored.
    pub bypass: Option<String>,
    /// Production meter.
    pub production: String,
    /// Treatment meters, one per facility of the profile.
    pub treatment: Vec<String>,
}

/// Legitimate plant life that detectors must not mistake for violations.
#[derive(Debug, Clone, Default)]
pub struct Life {
    /// Production intervals (minutes, end exclusive).
    pub production: Vec<(i64, i64)>,
    /// Minute of the day of the daily CEMS calibration (C flag).
    pub calibration_minute: i64,
    /// CEMS maintenance windows (M flag, plant running).
    pub maintenance: Vec<(i64, i64)>,
    /// Treatment meter faults: (facility, start, end); the meter reports 0 with a D flag.
    pub meter_faults: Vec<(usize, i64, i64)>,
    /// Communication outages (all sources silent, data re-sent at the end).
    pub outages: Vec<(i64, i64)>,
    /// Honest outages whose data is lost, never re-sent: (start, end, only the CEMS link rather than the plant's).
    pub lost_outages: Vec<(i64, i64, bool)>,
    /// A fuel change that steps every pollutant's inlet down at unchanged production: (from minute, SO2 factor).
    pub fuel_step: Option<(i64, f64)>,
    /// The CEMS reports only hour averages (CN 2061), as many platforms and the US EPA's CEMS deliver.
    pub hourly: bool,
    /// Load swings: (start, end, factor).
    pub load_swings: Vec<(i64, i64, f64)>,
    /// Fuel changes: (from minute, inlet factor).
    pub fuel_changes: Vec<(i64, f64)>,
    /// Runs deliberately close to its limits (legitimate).
    pub near_limit: bool,
    /// Restriction order the plant is under, if any (and whether it complies is decided by injections).
    pub restriction: Option<Restriction>,
}

/// One simulated enterprise.
pub struct Plant {
    /// Industry profile.
    pub profile: Profile,
    /// Its ids.
    pub ids: PlantIds,
    /// Its legitimate life.
    pub life: Life,
    /// Its violations.
    pub injections: Vec<Injection>,
    start_ms: i64,
    rng: Xoshiro256PlusPlus,
    load_noise: f64,
    inlet_noise: Vec<f64>,
    history: VecDeque<Vec<Point>>,
    backlog: Vec<Point>,
    /// Values a flat-line cheat holds, captured when it starts.
    frozen: BTreeMap<String, f64>,
    /// The family's parameters (noise, drift, the cheats' magnitudes).
    params: Params,
    /// Per gas: the analyzer's autocorrelated noise state, its drift rate per day since the last calibration, and
    /// the near-limit controller's error state.
    analyzer_noise: Vec<f64>,
    drift_per_day: Vec<f64>,
    controller_noise: Vec<f64>,
    /// An hourly outlet's minutes of the current hour, averaged when it ends.
    hour_buffer: Vec<Point>,
}

/// Standard normal sample (Box–Muller): the simulator's one noise source.
pub fn gaussian(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Student-t sample with `df` (> 2) degrees of freedom, scaled to unit variance: heavy-tailed analyzer noise.
fn student_t(rng: &mut impl Rng, df: u32) -> f64 {
    let chi2: f64 = (0..df).map(|_| gaussian(rng).powi(2)).sum();
    let t = gaussian(rng) / (chi2 / f64::from(df)).sqrt().max(1e-6);
    t * ((f64::from(df) - 2.0) / f64::from(df)).sqrt()
}

fn round_to(v: f64, resolution: f64) -> f64 {
    ((v / resolution).round() * resolution * 1e6).round() / 1e6
}

/// What the plant really did in one minute (before any cheat touches the CEMS).
struct Truth {
    production_on: bool,
    production_kw: f64,
    treatment_kw: Vec<f64>,
    flow_m3_s: f64,
    bypass_flow_m3_s: f64,
    o2_pct: f64,
    temperature_c: f64,
    humidity_pct: f64,
    pressure_kpa: f64,
    /// Converted (reference-O2) concentrations by code.
    converted: BTreeMap<&'static str, f64>,
    nh3_mg_m3: Option<f64>,
}

impl Plant {
    /// A plant with its life and injections decided by the caller.
    pub fn new(
        profile: Profile,
        ids: PlantIds,
        life: Life,
        injections: Vec<Injection>,
        start_ms: i64,
        seed: u64,
        params: Params,
    ) -> Self {
        let n = profile.pollutants.len();
        Self {
            params,
            analyzer_noise: vec![0.0; n + 1],
            drift_per_day: vec![0.0; n + 1],
            controller_noise: vec![0.0; n],
            hour_buffer: Vec::new(),
            profile,
            ids,
            life,
            injections,
            start_ms,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            load_noise: 0.0,
            inlet_noise: vec![0.0; n],
            history: VecDeque::with_capacity(HISTORY_MIN),
            backlog: Vec::new(),
            frozen: BTreeMap::new(),
        }
    }

    fn injection(&self, kind: AnomalyKind, m: i64) -> Option<&Injection> {
        self.injections
            .iter()
            .find(|i| i.kind == kind && i.active(m))
    }

    fn production_on(&self, m: i64) -> bool {
        self.life
            .production
            .iter()
            .any(|(s, e)| (*s..*e).contains(&m))
    }

    /// Whether the treatment facility is scheduled to run: from `SEQUENCING_MIN` before production starts to as long
    /// after it stops, except where a late-start / early-stop violation shifts it.
    fn treatment_scheduled(&self, facility: usize, m: i64) -> bool {
        self.life.production.iter().any(|(s, e)| {
            let mut on = s - SEQUENCING_MIN;
            let mut off = e + SEQUENCING_MIN;
            for inj in self
                .injections
                .iter()
                .filter(|i| i.kind == AnomalyKind::TreatmentNotRunning && i.target == facility)
            {
                // A late start is an injection beginning exactly at a production start; an early stop one ending at
                // a production stop.
                if inj.start_min == *s {
                    on = inj.end_min;
                }
                if inj.end_min == *e {
                    off = inj.start_min;
                }
            }
            (on..off).contains(&m)
        })
    }

    fn load(&mut self, m: i64) -> f64 {
        let hour = (m % DAY_MIN) as f64 / 60.0;
        let noise_sd = 0.02;
        self.load_noise = 0.97 * self.load_noise
            + noise_sd * gaussian(&mut self.rng) * (1.0f64 - 0.97 * 0.97).sqrt();
        let base = match self.profile.industry {
            "coal_power" => {
                0.74 + 0.14
                    * ((hour - 9.0) / 24.0 * std::f64::consts::TAU)
                        .sin()
                        .max(-0.6)
            }
            "gas_boiler" => 0.62 + 0.2 * ((hour - 5.0) / 24.0 * std::f64::consts::TAU).cos(),
            "coating" => 0.85,
            _ => 0.9,
        };
        let day = m.div_euclid(DAY_MIN);
        let weekend = self.profile.continuous && matches!(day % 7, 5 | 6);
        let base =
            base * if weekend {
                self.params.weekend_load
            } else {
                1.0
            } * (1.0
                + self.params.seasonal_load
                    * (m as f64 / (60.0 * DAY_MIN as f64) * std::f64::consts::TAU).sin());
        let mut load = base + self.load_noise;
        // Ramps after a start and before a stop.
        for (s, e) in &self.life.production {
            if (*s..*e).contains(&m) {
                let since = (m - s) as f64;
                let until = (e - m) as f64;
                load *= (0.35 + 0.65 * (since / 60.0)).min(1.0);
                load *= (0.4 + 0.6 * (until / 30.0)).min(1.0);
            }
        }
        for (s, e, f) in &self.life.load_swings {
            if (*s..*e).contains(&m) {
                load *= f;
            }
        }
        if let Some(r) = self.life.restriction {
            let defies = self
                .injection(AnomalyKind::RestrictionViolation, m)
                .is_some();
            if (r.start_min..r.end_min).contains(&m) && !defies {
                // Compliance is judged on power (what the grid company sees): cut load until production power is
                // at 90 % of the allowed fraction of its normal level. Auxiliaries draw power at any load, so the
                // load cut is deeper than the power cut.
                let normal_power = 0.25 + 0.7 * base;
                let target_power = 0.9 * r.max_load_fraction * normal_power;
                load = load.min(((target_power - 0.25) / 0.7).max(0.05));
            }
        }
        load.clamp(0.05, 1.0)
    }

    /// A fuel step's factor on a pollutant's inlet: sulphur moves most, dust and NOx less.
    fn fuel_step_factor(&self, code: &str, m: i64) -> f64 {
        match self.life.fuel_step {
            Some((from, so2)) if m >= from => match code {
                "a21026" => so2,
                "a34013" => 0.5 + 0.5 * so2,
                _ => 0.8 + 0.2 * so2,
            },
            _ => 1.0,
        }
    }

    fn fuel_factor(&self, m: i64) -> f64 {
        self.life
            .fuel_changes
            .iter()
            .rfind(|(from, _)| m >= *from)
            .map_or(1.0, |(_, f)| *f)
    }

    fn truth(&mut self, m: i64) -> Truth {
        let p = self.profile.clone();
        let production_on = self.production_on(m);
        let load = if production_on { self.load(m) } else { 0.0 };
        let noise = |rng: &mut Xoshiro256PlusPlus, sd: f64| 1.0 + sd * gaussian(rng);
        let production_kw = if production_on {
            p.production.1 * (0.25 + 0.7 * load) * noise(&mut self.rng, 0.01)
        } else {
            p.production.1 * 0.02 * noise(&mut self.rng, 0.05)
        };
        // Treatment power and how well each facility works.
        let mut treatment_kw = Vec::with_capacity(p.treatment.len());
        let mut working = Vec::with_capacity(p.treatment.len());
        for (k, f) in p.treatment.iter().enumerate() {
            let needed = f.rated_kw * (0.55 + 0.35 * load.max(0.3));
            let mut kw = if self.treatment_scheduled(k, m) {
                needed * noise(&mut self.rng, 0.015)
            } else {
                f.rated_kw * 0.012 * noise(&mut self.rng, 0.05)
            };
            if let Some(i) = self
                .injection(AnomalyKind::TreatmentNotRunning, m)
                .filter(|i| i.target == k)
            {
                if production_on {
                    kw = f.rated_kw
                        * if i.style == Style::Lazy { 0.012 } else { 0.08 }
                        * noise(&mut self.rng, 0.05);
                }
            }
            if let Some(i) = self
                .injection(AnomalyKind::TreatmentLowPower, m)
                .filter(|i| i.target == k)
            {
                kw *= if i.style == Style::Lazy { 0.3 } else { 0.45 };
            }
            let fraction = kw / needed;
            working.push(((fraction - 0.2) / 0.7).clamp(0.0, 1.0));
            treatment_kw.push(kw);
        }
        let mut flow = if production_on {
            p.flow_full_m3_s * (0.35 + 0.65 * load) * noise(&mut self.rng, 0.01)
        } else {
            p.flow_full_m3_s * 0.03 * noise(&mut self.rng, 0.1)
        };
        let mut bypass_flow = 0.02 * noise(&mut self.rng, 0.3).abs();
        if let Some(i) = self.injection(AnomalyKind::BypassSuspected, m) {
            if production_on {
                let (lazy, careful) = self.params.bypass_kept;
                let kept = if i.style == Style::Lazy {
                    lazy
                } else {
                    careful
                };
                bypass_flow = flow * (1.0 - kept);
                flow *= kept;
            }
        }
        let o2 = if production_on {
            p.o2_low_pct + (p.o2_full_pct - p.o2_low_pct) * load + 0.12 * gaussian(&mut self.rng)
        } else {
            20.4 + 0.1 * gaussian(&mut self.rng)
        };
        let scrubber_off = p.wet_scrubber.is_some_and(|k| working[k] < 0.2) && production_on;
        let mut temperature = if production_on {
            p.temperature_c * (0.85 + 0.15 * load) + 0.4 * gaussian(&mut self.rng)
        } else {
            22.0 + 0.3 * gaussian(&mut self.rng)
        };
        let mut humidity =
            if p.wet_scrubber.is_some() { 12.5 } else { 7.0 } + 0.3 * gaussian(&mut self.rng);
        if scrubber_off {
            temperature += 65.0;
            humidity -= 5.0;
        }
        let pressure = 0.22 + 0.1 * load + 0.01 * gaussian(&mut self.rng);
        let fuel = self.fuel_factor(m);
        let mut converted = BTreeMap::new();
        for (j, pol) in p.pollutants.iter().enumerate() {
            self.inlet_noise[j] =
                0.95 * self.inlet_noise[j] + 0.05 * gaussian(&mut self.rng) * 0.312;
            // A fuel change moves the sulfur in the coal, so SO2 at the inlet; the operator answers with more
            // scrubbing, which takes back most of the rise at the outlet.
            let fuel_here = if pol.code == "a21026" { fuel } else { 1.0 };
            let inlet = pol.inlet_mg_m3
                * (0.85 + 0.15 * load)
                * fuel_here
                * self.fuel_step_factor(pol.code, m)
                * (1.0 + self.inlet_noise[j]).max(0.3);
            let mut efficiency = match pol.removed_by {
                // Compensation: outlet rises by a fifth of the inlet rise.
                Some(k) => {
                    (1.0 - (1.0 - pol.efficiency) * (1.0 + 0.2 * (fuel_here - 1.0)) / fuel_here)
                        * working[k]
                }
                None => 0.0,
            };
            if self.life.near_limit {
                // Legitimately tuned to run close to the limit: 80–90 % of it, or held there by a controller whose
                // error wanders a few percent around its set point.
                let target = match self.params.controller_target {
                    Some(set_point) => {
                        // Stationary sd 2 % of the set point: the hour averages stay under the limit.
                        self.controller_noise[j] =
                            0.98 * self.controller_noise[j] + 0.2 * gaussian(&mut self.rng) * 0.02;
                        pol.limit_mg_m3 * set_point * (1.0 + self.controller_noise[j])
                    }
                    None => pol.limit_mg_m3 * 0.85,
                };
                if pol.removed_by.is_some() && inlet > target {
                    efficiency = efficiency.min(1.0 - target / inlet);
                }
            }
            if let Some(i) = self.injection(AnomalyKind::Exceedance, m) {
                if pol.removed_by.is_some() && j == i.target.min(p.pollutants.len() - 1) {
                    let over = if i.style == Style::Lazy { 2.2 } else { 1.25 };
                    efficiency = efficiency.min(1.0 - over * pol.limit_mg_m3 / inlet);
                }
            }
            if self.injection(AnomalyKind::FlagAbuse, m).is_some() && pol.removed_by.is_some() {
                // The flag is there to hide something: treatment eased off under it.
                efficiency = efficiency.min(1.0 - 1.8 * pol.limit_mg_m3 / inlet);
            }
            if self.injection(AnomalyKind::SelectiveGap, m).is_some() && pol.removed_by.is_some() {
                // Treatment eased off over the busy hours (ramping up from 10:00, down to normal by 16:00), and the
                // data goes missing exactly where it would show the limit passed.
                let h = (m % DAY_MIN) as f64 / 60.0;
                let ramp = (h - 10.0).clamp(0.0, 1.0).min((16.0 - h).clamp(0.0, 1.0));
                if ramp > 0.0 {
                    let normal = inlet * (1.0 - efficiency);
                    let eased = normal + ramp * (1.6 * pol.limit_mg_m3 - normal).max(0.0);
                    efficiency = efficiency.min(1.0 - eased / inlet);
                }
            }
            let mut c = if production_on {
                inlet * (1.0 - efficiency.clamp(0.0, 1.0))
            } else {
                inlet * 0.01
            };
            if self.injection(AnomalyKind::LimitBunching, m).is_some() {
                // The real plant runs hot, around the limit; the report is what gets clamped (below).
                c = c.max(
                    pol.limit_mg_m3
                        * (0.85 + 0.3 * (self.inlet_noise[j] * 3.0 + 0.5).clamp(0.0, 1.0)),
                );
            }
            converted.insert(pol.code, c.max(0.0));
        }
        let nh3 = p.ammonia.map(|(limit, normal)| {
            let slipping = self.injection(AnomalyKind::AmmoniaSlip, m);
            match slipping {
                Some(i) if production_on => {
                    let over = if i.style == Style::Lazy { 4.0 } else { 1.5 };
                    limit * over * noise(&mut self.rng, 0.1)
                }
                _ if production_on => normal * noise(&mut self.rng, 0.2).max(0.1),
                _ => 0.05,
            }
        });
        if let (Some(_), Some(nox)) = (
            self.injection(AnomalyKind::AmmoniaSlip, m),
            converted.get_mut("a21002"),
        ) {
            // Over-injection of ammonia drives NOx suspiciously low.
            *nox *= 0.45;
        }
        Truth {
            production_on,
            production_kw,
            treatment_kw,
            flow_m3_s: flow,
            bypass_flow_m3_s: bypass_flow,
            o2_pct: o2,
            temperature_c: temperature,
            humidity_pct: humidity,
            pressure_kpa: pressure,
            converted,
            nh3_mg_m3: nh3,
        }
    }

    /// The relative error of gas `j`'s analyzer this minute: independent Gaussian (District), or an AR(1) of
    /// heavy-tailed innovations (Field).
    fn analyzer_error(&mut self, j: usize) -> f64 {
        let sd = self.params.analyzer_noise;
        let ar = self.params.noise_ar;
        let innovation = match self.params.noise_df {
            Some(df) => student_t(&mut self.rng, df),
            None => gaussian(&mut self.rng),
        };
        if ar == 0.0 {
            return sd * innovation;
        }
        let state = &mut self.analyzer_noise[j];
        *state = ar * *state + (1.0 - ar * ar).sqrt() * innovation;
        sd * *state
    }

    fn raw_from_converted(&self, cz: f64, o2: f64) -> f64 {
        let reference = self.profile.reference_o2_pct;
        if reference <= 0.0 {
            cz
        } else {
            cz * (21.0 - o2.min(20.5)) / (21.0 - reference)
        }
    }

    fn point(
        &self,
        source: &str,
        code: &str,
        t: i64,
        value: f64,
        flag: ValueFlag,
        converted: Option<f64>,
    ) -> Point {
        Point {
            source_id: source.to_string(),
            code: code.to_string(),
            time_ms: t,
            interval: Interval::Minute,
            value,
            flag,
            converted,
        }
    }

    /// Everything the plant reports for minute `m` (plus any backlog re-sent after an outage), in source order.
    pub fn minute(&mut self, m: i64) -> Vec<Point> {
        let t = self.start_ms + m * MS_PER_MINUTE;
        let truth = self.truth(m);
        let mut out = Vec::with_capacity(24);
        let ids = self.ids.clone();

        // Power meters tell the truth (they belong to the grid company).
        out.push(self.point(
            &ids.production,
            "power_kw",
            t,
            round_to(truth.production_kw, 0.1),
            ValueFlag::Normal,
            None,
        ));
        for (k, id) in ids.treatment.iter().enumerate() {
            let fault = self
                .life
                .meter_faults
                .iter()
                .any(|(f, s, e)| *f == k && (*s..*e).contains(&m));
            let (kw, flag) = if fault {
                (0.0, ValueFlag::Fault)
            } else {
                (round_to(truth.treatment_kw[k], 0.1), ValueFlag::Normal)
            };
            out.push(self.point(id, "power_kw", t, kw, flag, None));
        }
        if let Some(b) = &ids.bypass {
            let open = truth.bypass_flow_m3_s > 1.0;
            let temp = if open {
                truth.temperature_c + 40.0
            } else {
                24.0 + 0.3 * gaussian(&mut self.rng)
            };
            out.push(self.point(
                b,
                "a00000",
                t,
                round_to(truth.bypass_flow_m3_s, 0.1),
                ValueFlag::Normal,
                None,
            ));
            out.push(self.point(b, "a01012", t, round_to(temp, 0.1), ValueFlag::Normal, None));
        }

        let cems = self.cems(m, t, &truth);
        self.history.push_back(cems.clone());
        if self.history.len() > HISTORY_MIN {
            self.history.pop_front();
        }
        if self.life.hourly {
            self.hour_buffer.extend(cems);
            if m % 60 == 59 {
                out.extend(hour_averages(
                    std::mem::take(&mut self.hour_buffer),
                    t - 59 * MS_PER_MINUTE,
                ));
            }
        } else {
            out.extend(cems);
        }

        // An honest outage loses what falls in it: the plant's whole uplink, or only the CEMS link.
        if let Some((_, _, cems_only)) = self
            .life
            .lost_outages
            .iter()
            .find(|(s, e, _)| (*s..*e).contains(&m))
        {
            if !*cems_only {
                return Vec::new();
            }
            let stack = &self.ids.stack;
            out.retain(|p| &p.source_id != stack);
        }

        // A communication outage holds everything back and re-sends it when the link returns.
        let in_outage = self.life.outages.iter().any(|(s, e)| (*s..*e).contains(&m));
        if in_outage {
            self.backlog.extend(out);
            return Vec::new();
        }
        if !self.backlog.is_empty() {
            let mut resent = std::mem::take(&mut self.backlog);
            resent.extend(out);
            return resent;
        }
        out
    }

    fn cems(&mut self, m: i64, t: i64, truth: &Truth) -> Vec<Point> {
        let p = self.profile.clone();
        let stack = self.ids.stack.clone();
        let running = truth.production_on;
        // Reported values before any cheat: the analyzer's reading with measurement noise.
        let mut o2 = truth.o2_pct + 0.03 * gaussian(&mut self.rng);
        if self.params.drift_per_day > 0.0 && m % DAY_MIN == self.life.calibration_minute {
            // The daily calibration takes the drift out; from here each analyzer wanders at its own rate.
            let d = self.params.drift_per_day;
            for rate in &mut self.drift_per_day {
                *rate = self.rng.gen_range(-d..=d);
            }
        }
        let since_calibration =
            (m - self.life.calibration_minute).rem_euclid(DAY_MIN) as f64 / DAY_MIN as f64;
        let mut gases: Vec<(&'static str, f64, f64)> = Vec::with_capacity(p.pollutants.len() + 1);
        for (j, pol) in p.pollutants.iter().enumerate() {
            let cz = truth.converted[pol.code];
            let raw = self.raw_from_converted(cz, truth.o2_pct);
            let relative_error = self.analyzer_error(j);
            let drift = 1.0 + self.drift_per_day[j] * since_calibration;
            let measured = (raw * drift * (1.0 + relative_error)
                + 0.05 * pol.resolution.max(0.1) * gaussian(&mut self.rng))
            .max(0.0);
            gases.push((pol.code, measured, pol.resolution));
        }
        if let Some(nh3) = truth.nh3_mg_m3 {
            gases.push(("a21001", nh3 * (1.0 + 0.05 * gaussian(&mut self.rng)), 0.01));
        }
        let mut flow = truth.flow_m3_s;
        let mut flag = if running {
            ValueFlag::Normal
        } else {
            ValueFlag::Stopped
        };
        let mut tampered_converted = 1.0;
        let mut replayed_flag: Option<ValueFlag> = None;

        // --- cheats on the CEMS ---
        if let Some(i) = self.injection(AnomalyKind::Flatline, m).cloned() {
            if m == i.start_min || self.frozen.is_empty() {
                self.frozen = gases
                    .iter()
                    .map(|g| (g.0.to_string(), round_to(g.1, g.2)))
                    .collect();
            }
            for g in &mut gases {
                if let Some(v) = self.frozen.get(g.0) {
                    // The careful version toggles by one resolution step, so "identical values" is not enough.
                    let toggle = if i.style == Style::Careful && m % 2 == 0 {
                        g.2
                    } else {
                        0.0
                    };
                    g.1 = v + toggle;
                }
            }
        } else {
            self.frozen.clear();
        }
        if let Some(i) = self.injection(AnomalyKind::LowVariance, m).cloned() {
            let span = (m - i.start_min) as f64;
            for g in &mut gases {
                // A plausible invented level: what the plant typically emits.
                let cz_mean = p
                    .pollutants
                    .iter()
                    .find(|pol| pol.code == g.0)
                    .map_or(g.1, |pol| pol.inlet_mg_m3 * 0.95 * (1.0 - pol.efficiency));
                let raw_mean = self.raw_from_converted(cz_mean, truth.o2_pct);
                let wobble = if i.style == Style::Lazy { 0.01 } else { 0.04 };
                // The careful fake adds noise: District's white; Field's a third of the analyzer's own
                // autocorrelated noise, so its minute changes are smoother than real ones, not rougher.
                let noise = match i.style {
                    Style::Lazy => 0.0,
                    Style::Careful if self.params.noise_ar == 0.0 => {
                        0.05 * raw_mean * 0.3 * gaussian(&mut self.rng)
                    }
                    Style::Careful => {
                        let j = p.pollutants.iter().position(|pol| pol.code == g.0);
                        let state = j.map_or(0.0, |j| self.analyzer_noise[j]);
                        raw_mean * self.params.analyzer_noise * state / 3.0
                    }
                };
                g.1 = raw_mean * (1.0 + wobble * (span / 97.0).sin()) + noise;
            }
        }
        if let Some(i) = self.injection(AnomalyKind::ReplayedData, m).cloned() {
            let (lazy, careful) = self.params.replay_lag_min;
            let lag = if i.style == Style::Lazy {
                lazy
            } else {
                careful
            } as usize;
            if self.history.len() >= lag {
                let old = self.history[self.history.len() - lag].clone();
                for g in &mut gases {
                    if let Some(v) = old.iter().find(|pt| pt.code == g.0) {
                        g.1 = v.value
                            * if i.style == Style::Careful {
                                1.0 + 0.01 * gaussian(&mut self.rng)
                            } else {
                                1.0
                            };
                    }
                }
                if let Some(v) = old.iter().find(|pt| pt.code == "a19001") {
                    o2 = v.value;
                }
                // A replay re-sends stored records, flags included (yesterday's calibration stays a calibration).
                replayed_flag = old.iter().find(|pt| pt.code == "a19001").map(|pt| pt.flag);
            }
        }
        if let Some(i) = self.injection(AnomalyKind::CalibrationGas, m) {
            for g in &mut gases {
                g.1 = match g.0 {
                    "a21026" => 20.0,
                    "a21002" => 30.0,
                    "a34013" => g.1,
                    _ => 0.0,
                };
            }
            o2 = if i.style == Style::Lazy {
                20.9
            } else {
                0.2 + 0.02 * gaussian(&mut self.rng)
            };
        }
        if let Some(i) = self.injection(AnomalyKind::Dilution, m) {
            let k = if i.style == Style::Lazy { 0.4 } else { 0.7 };
            for g in &mut gases {
                g.1 *= k;
            }
            o2 += (20.9 - o2) * (1.0 - k) * 0.6;
        }
        if let Some(i) = self.injection(AnomalyKind::ParameterTampering, m) {
            match i.style {
                // Converted values scaled in the DAS: ZsRtd no longer equals the formula.
                Style::Lazy => tampered_converted = 0.6,
                // Analyzer gain changed: raw and converted agree, but emission per unit of production steps down.
                Style::Careful => {
                    for g in &mut gases {
                        g.1 *= self.params.tampering_gain;
                    }
                }
            }
        }
        if self.injection(AnomalyKind::LimitBunching, m).is_some() {
            for g in &mut gases {
                if let Some(pol) = p.pollutants.iter().find(|pol| pol.code == g.0) {
                    let (top, band) = self.params.clamp;
                    let ceiling = self.raw_from_converted(pol.limit_mg_m3 * top, o2);
                    if g.1 > ceiling {
                        // A narrow clamp piles just under its ceiling; a wide one spreads over the band.
                        let spread = if band > 0.02 {
                            band / top * self.rng.gen::<f64>()
                        } else {
                            band * gaussian(&mut self.rng).abs()
                        };
                        g.1 = ceiling * (1.0 - spread);
                    }
                }
            }
        }
        if let Some(i) = self.injection(AnomalyKind::UnmonitoredEmission, m) {
            if i.style == Style::Lazy {
                return Vec::new();
            }
            flag = ValueFlag::Fault;
        }
        if let Some(i) = self.injection(AnomalyKind::FlagAbuse, m) {
            flag = if i.style == Style::Lazy {
                ValueFlag::Stopped
            } else {
                ValueFlag::Maintenance
            };
        }
        if self.injection(AnomalyKind::SelectiveGap, m).is_some()
            && p.pollutants
                .iter()
                .any(|pol| truth.converted[pol.code] > pol.limit_mg_m3 * 0.9)
        {
            return Vec::new();
        }

        // --- legitimate flags ---
        let minute_of_day = m % DAY_MIN;
        let calibrating = running
            && (self.life.calibration_minute..self.life.calibration_minute + 10)
                .contains(&minute_of_day);
        let maintaining = self
            .life
            .maintenance
            .iter()
            .any(|(s, e)| (*s..*e).contains(&m));
        if maintaining && flag == ValueFlag::Normal {
            flag = ValueFlag::Maintenance;
        }

        let mut out = Vec::with_capacity(12);
        let area = p.duct_area_m2;
        if self.injection(AnomalyKind::BypassSuspected, m).is_some() {
            flow = truth.flow_m3_s; // already reduced in truth
        }
        out.push(self.point(&stack, "a00000", t, round_to(flow, 0.1), flag, None));
        out.push(self.point(&stack, "a01011", t, round_to(flow / area, 0.01), flag, None));
        out.push(self.point(
            &stack,
            "a01012",
            t,
            round_to(truth.temperature_c, 0.1),
            flag,
            None,
        ));
        out.push(self.point(
            &stack,
            "a01013",
            t,
            round_to(truth.pressure_kpa, 0.001),
            flag,
            None,
        ));
        out.push(self.point(
            &stack,
            "a01014",
            t,
            round_to(truth.humidity_pct, 0.1),
            flag,
            None,
        ));
        if let Some(f) = replayed_flag.filter(|f| *f != ValueFlag::Normal) {
            flag = f;
        }
        let (o2_report, o2_flag) = if calibrating {
            (
                if minute_of_day - self.life.calibration_minute < 5 {
                    20.9
                } else {
                    0.0
                },
                ValueFlag::Calibration,
            )
        } else {
            (round_to(o2.clamp(0.0, 21.0), 0.01), flag)
        };
        out.push(self.point(&stack, "a19001", t, o2_report, o2_flag, None));
        for (code, value, resolution) in gases {
            let (value, gas_flag) = if calibrating {
                // Zero gas, then span gas at a round value.
                let span = if minute_of_day - self.life.calibration_minute < 5 {
                    0.0
                } else {
                    80.0
                };
                (span, ValueFlag::Calibration)
            } else {
                (round_to(value, resolution), flag)
            };
            let converted = if p.reference_o2_pct > 0.0 && code != "a21001" && !calibrating {
                units::converted_mg_m3(
                    value,
                    o2_report,
                    p.reference_o2_pct,
                    units::DEFAULT_O2_CEILING_PCT,
                )
                .map(|cz| round_to(cz * tampered_converted, resolution))
            } else {
                None
            };
            out.push(self.point(&stack, code, t, value, gas_flag, converted));
        }
        out
    }
}

/// An hour's minute points as the hour averages a DAS reports (CN 2061): per code, the mean of the minutes with a
/// normal flag (the hour keeps the normal flag when at least 45 are), otherwise the mean of all with the flag most
/// of them carry; a code with fewer than 45 minutes in the hour is not reported.
fn hour_averages(minutes: Vec<Point>, hour_start_ms: i64) -> Vec<Point> {
    let mut by_code: BTreeMap<(String, String), Vec<Point>> = BTreeMap::new();
    for p in minutes {
        by_code
            .entry((p.source_id.clone(), p.code.clone()))
            .or_default()
            .push(p);
    }
    let mean = |v: &[&Point]| v.iter().map(|p| p.value).sum::<f64>() / v.len() as f64;
    let mean_converted = |v: &[&Point]| -> Option<f64> {
        let c: Vec<f64> = v.iter().filter_map(|p| p.converted).collect();
        (c.len() == v.len()).then(|| c.iter().sum::<f64>() / c.len() as f64)
    };
    let mut out = Vec::with_capacity(by_code.len());
    for ((source, code), points) in by_code {
        if points.len() < 45 {
            continue;
        }
        let normal: Vec<&Point> = points
            .iter()
            .filter(|p| p.flag == ValueFlag::Normal)
            .collect();
        let (chosen, flag) = if normal.len() >= 45 {
            (normal, ValueFlag::Normal)
        } else {
            let mut counts: BTreeMap<u8, usize> = BTreeMap::new();
            for p in &points {
                *counts.entry(p.flag.to_u8()).or_default() += 1;
            }
            let flag = points
                .iter()
                .map(|p| p.flag)
                .max_by_key(|f| counts.get(&f.to_u8()).copied().unwrap_or(0))
                .unwrap_or(ValueFlag::Normal);
            (points.iter().collect(), flag)
        };
        out.push(Point {
            source_id: source,
            code,
            time_ms: hour_start_ms,
            interval: Interval::Hour,
            value: round_to(mean(&chosen), 0.001),
            flag,
            converted: mean_converted(&chosen).map(|c| round_to(c, 0.001)),
        });
    }
    out
}

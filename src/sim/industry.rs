//! Industry profiles: the numbers that make a simulated coal-power unit look like one and a sinter plant like
//! another. Orders of magnitude follow DOMAIN.md §4 (limits, reference O2) and typical Chinese plant practice;
//! equipment powers are scaled to one line per enterprise.

/// A pollutant channel of an outlet and how it is produced and removed.
#[derive(Debug, Clone)]
pub struct Pollutant {
    /// HJ 212 code.
    pub code: &'static str,
    /// Uncontrolled (inlet) concentration at full load, converted to reference O2 (mg/m³).
    pub inlet_mg_m3: f64,
    /// Index into [`Profile::treatment`] of the facility that removes it, if any.
    pub removed_by: Option<usize>,
    /// Removal efficiency of that facility at normal power (0..1).
    pub efficiency: f64,
    /// Hourly converted limit (mg/m³).
    pub limit_mg_m3: f64,
    /// Reporting resolution (mg/m³).
    pub resolution: f64,
}

/// A treatment facility.
#[derive(Debug, Clone)]
pub struct Facility {
    /// Equipment name (as in the registry).
    pub equipment: &'static str,
    /// Nameplate power (kW).
    pub rated_kw: f64,
}

/// Everything about an industry the simulator needs.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Registry industry key.
    pub industry: &'static str,
    /// Name stem for enterprises.
    pub name_zh: &'static str,
    /// Reference O2 (%); 0 = concentrations are not O2-converted (VOC ventilation air).
    pub reference_o2_pct: f64,
    /// O2 at full and at minimum load (%).
    pub o2_full_pct: f64,
    /// O2 at minimum load (%).
    pub o2_low_pct: f64,
    /// Flue-gas flow at full load (m³/s, HJ 212 a00000).
    pub flow_full_m3_s: f64,
    /// Duct cross-section (m²) for velocity.
    pub duct_area_m2: f64,
    /// Stack temperature in normal operation at full load (°C).
    pub temperature_c: f64,
    /// Whether a wet scrubber cools and humidifies the gas (stack temperature jumps when it stops).
    pub wet_scrubber: Option<usize>,
    /// Production equipment and its nameplate (kW).
    pub production: (&'static str, f64),
    /// Treatment facilities.
    pub treatment: Vec<Facility>,
    /// Pollutant channels.
    pub pollutants: Vec<Pollutant>,
    /// NH3 slip limit (mg/m³) and normal slip, when there is ammonia-based denitrification.
    pub ammonia: Option<(f64, f64)>,
    /// Continuous process (runs around the clock) or day-shift (starts and stops daily).
    pub continuous: bool,
    /// Typical load while running (0..1), for sizing permits.
    pub typical_load: f64,
    /// Share of the year it runs, for sizing permits.
    pub duty: f64,
}

const fn pollutant(
    code: &'static str,
    inlet_mg_m3: f64,
    removed_by: Option<usize>,
    efficiency: f64,
    limit_mg_m3: f64,
    resolution: f64,
) -> Pollutant {
    Pollutant {
        code,
        inlet_mg_m3,
        removed_by,
        efficiency,
        limit_mg_m3,
        resolution,
    }
}

fn facility(equipment: &'static str, rated_kw: f64) -> Facility {
    Facility {
        equipment,
        rated_kw,
    }
}

/// The profiles, in the order enterprises cycle through them.
pub fn profiles() -> Vec<Profile> {
    vec![
        Profile {
            industry: "coal_power",
            name_zh: "热电",
            reference_o2_pct: 6.0,
            o2_full_pct: 5.2,
            o2_low_pct: 7.4,
            flow_full_m3_s: 280.0,
            duct_area_m2: 28.0,
            temperature_c: 50.0,
            wet_scrubber: Some(0),
            production: ("boiler_auxiliaries", 12_000.0),
            treatment: vec![
                facility("desulfurization", 3_000.0),
                facility("denitrification", 300.0),
                facility("dust_collector", 1_500.0),
            ],
            pollutants: vec![
                pollutant("a21026", 1_900.0, Some(0), 0.988, 35.0, 0.1),
                pollutant("a21002", 320.0, Some(1), 0.88, 50.0, 0.1),
                pollutant("a34013", 12_000.0, Some(2), 0.9994, 10.0, 0.01),
            ],
            ammonia: Some((2.5, 0.7)),
            continuous: true,
            typical_load: 0.74,
            duty: 1.0,
        },
        Profile {
            industry: "steel_sintering",
            name_zh: "钢铁",
            reference_o2_pct: 16.0,
            o2_full_pct: 15.2,
            o2_low_pct: 17.0,
            flow_full_m3_s: 300.0,
            duct_area_m2: 30.0,
            temperature_c: 55.0,
            wet_scrubber: Some(0),
            production: ("sinter_machine", 8_000.0),
            treatment: vec![
                facility("desulfurization", 1_500.0),
                facility("denitrification", 400.0),
                facility("dust_collector", 800.0),
            ],
            pollutants: vec![
                pollutant("a21026", 700.0, Some(0), 0.97, 35.0, 0.1),
                pollutant("a21002", 260.0, Some(1), 0.86, 50.0, 0.1),
                pollutant("a34013", 3_000.0, Some(2), 0.998, 10.0, 0.01),
            ],
            ammonia: Some((2.5, 0.8)),
            continuous: true,
            typical_load: 0.9,
            duty: 1.0,
        },
        Profile {
            industry: "cement",
            name_zh: "水泥",
            reference_o2_pct: 10.0,
            o2_full_pct: 9.0,
            o2_low_pct: 11.5,
            flow_full_m3_s: 120.0,
            duct_area_m2: 12.0,
            temperature_c: 110.0,
            wet_scrubber: None,
            production: ("cement_kiln", 6_000.0),
            treatment: vec![
                facility("denitrification", 200.0),
                facility("dust_collector", 1_200.0),
            ],
            pollutants: vec![
                pollutant("a21026", 18.0, None, 0.0, 35.0, 0.1),
                pollutant("a21002", 700.0, Some(0), 0.89, 100.0, 0.1),
                pollutant("a34013", 50_000.0, Some(1), 0.9999, 10.0, 0.01),
            ],
            ammonia: Some((8.0, 2.5)),
            continuous: true,
            typical_load: 0.9,
            duty: 1.0,
        },
        Profile {
            industry: "coking",
            name_zh: "焦化",
            reference_o2_pct: 8.0,
            o2_full_pct: 7.0,
            o2_low_pct: 9.5,
            flow_full_m3_s: 60.0,
            duct_area_m2: 6.0,
            temperature_c: 160.0,
            wet_scrubber: None,
            production: ("coke_oven", 3_000.0),
            treatment: vec![
                facility("desulfurization", 600.0),
                facility("denitrification", 200.0),
                facility("dust_collector", 300.0),
            ],
            pollutants: vec![
                pollutant("a21026", 320.0, Some(0), 0.95, 35.0, 0.1),
                pollutant("a21002", 650.0, Some(1), 0.9, 100.0, 0.1),
                pollutant("a34013", 2_000.0, Some(2), 0.997, 10.0, 0.01),
            ],
            ammonia: Some((2.5, 0.8)),
            continuous: true,
            typical_load: 0.9,
            duty: 1.0,
        },
        Profile {
            industry: "coating",
            name_zh: "涂装",
            reference_o2_pct: 0.0,
            o2_full_pct: 20.6,
            o2_low_pct: 20.8,
            flow_full_m3_s: 25.0,
            duct_area_m2: 2.5,
            temperature_c: 38.0,
            wet_scrubber: None,
            production: ("coating_line", 1_500.0),
            treatment: vec![facility("rto", 400.0)],
            pollutants: vec![pollutant("a24088", 900.0, Some(0), 0.97, 60.0, 0.01)],
            ammonia: None,
            continuous: false,
            typical_load: 0.85,
            duty: 0.43,
        },
        Profile {
            industry: "gas_boiler",
            name_zh: "燃气锅炉",
            reference_o2_pct: 3.5,
            o2_full_pct: 3.2,
            o2_low_pct: 5.0,
            flow_full_m3_s: 20.0,
            duct_area_m2: 2.0,
            temperature_c: 85.0,
            wet_scrubber: None,
            production: ("gas_boiler", 400.0),
            treatment: vec![facility("denitrification", 60.0)],
            pollutants: vec![
                // Gas-fired: SO2 sits at the detection limit, legitimately flat at the resolution.
                pollutant("a21026", 2.0, None, 0.0, 35.0, 1.0),
                pollutant("a21002", 90.0, Some(0), 0.7, 50.0, 0.1),
                pollutant("a34013", 2.0, None, 0.0, 5.0, 0.1),
            ],
            ammonia: Some((2.5, 0.5)),
            continuous: true,
            typical_load: 0.62,
            duty: 1.0,
        },
    ]
}

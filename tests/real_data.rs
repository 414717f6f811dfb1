//! Models on real plant data (tests/data/real, CC BY 4.0): false alarms of MODEL_RESIDUAL on a real gas turbine's
//! load and NOx/CO, and equipment-state clustering of a real steel plant's power.
//!
//! The turbine's rows are hourly; they are fed as consecutive minutes, so the detector's 60-minute window spans 60
//! hours and "a day" of the calibration is 1,440 rows. The false-alarm figure is therefore per 1,440 rows, the unit
//! the thresholds were calibrated in.

use cems_sentinel::detect::model_residual;
use cems_sentinel::detect::DetectConfig;
use cems_sentinel::domain::OutletTopology;
use cems_sentinel::domain::{Enterprise, Meter, MeterRole, Outlet, ValueFlag, MS_PER_MINUTE};
use cems_sentinel::models::artifact::ModelScope;
use cems_sentinel::models::calibrate::Calibration;
use cems_sentinel::models::dataset;
use cems_sentinel::models::features::targets_of;
use cems_sentinel::models::states;
use cems_sentinel::models::train::{self, TrainSpec};
use cems_sentinel::signal::align::{OutletRow, Reading};
use std::collections::BTreeMap;

const T0: i64 = 1_293_840_000_000; // 2011-01-01
const NOX: &str = "a21002";
const CO: &str = "a21005";
/// Normalisation of NOx (mg/m³): GB 13223's gas-turbine NOx limit is 50; this turbine runs above that (its own
/// country's limit differs), so 100 keeps the fraction-of-limit scale of the features near the Chinese plants'.
const NOX_LIMIT: f64 = 100.0;
const CO_LIMIT: f64 = 100.0;

fn turbine() -> OutletTopology {
    OutletTopology {
        outlet: Outlet {
            id: "gt".into(),
            enterprise_id: "tr".into(),
            limits_mg_m3: BTreeMap::from([(NOX.into(), NOX_LIMIT), (CO.into(), CO_LIMIT)]),
            ..Default::default()
        },
        enterprise: Enterprise {
            id: "tr".into(),
            industry: "gas_turbine".into(),
            ..Default::default()
        },
        production: vec![Meter {
            id: "gen".into(),
            enterprise_id: "tr".into(),
            role: MeterRole::Production,
            outlet_ids: vec!["gt".into()],
            rated_kw: 180_000.0,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn reading(value: f64) -> Reading {
    Reading::of(value, ValueFlag::Normal, None)
}

/// The turbine's rows as minute rows: TEY (MWh/h) as the generator meter's kW, NOx and CO as CEMS channels.
fn turbine_rows(file: &str) -> Vec<OutletRow> {
    let text = std::fs::read_to_string(format!("tests/data/real/{file}")).expect("data file");
    text.lines()
        .skip(1)
        .enumerate()
        .map(|(i, line)| {
            let v: Vec<f64> = line
                .split(',')
                .map(|x| x.parse().expect("number"))
                .collect();
            OutletRow {
                minute_ms: T0 + i as i64 * MS_PER_MINUTE,
                cems: BTreeMap::from([(NOX.into(), reading(v[2])), (CO.into(), reading(v[1]))]),
                power_kw: BTreeMap::from([("gen".into(), reading(v[0] * 1000.0))]),
                bypass: BTreeMap::new(),
            }
        })
        .collect()
}

fn fit(rows: &[OutletRow], false_alarms_per_day: f64) -> cems_sentinel::models::ModelArtifact {
    let t = turbine();
    let config = DetectConfig::default();
    let series = dataset::series(&t, rows, config.equipment, config.exceedance.o2_ceiling_pct);
    let spec = TrainSpec {
        scope: ModelScope::Outlet("gt".into()),
        version: 1,
        targets: targets_of(&t),
        from_ms: rows[0].minute_ms,
        to_ms: rows[rows.len() - 1].minute_ms,
        created_ms: 0,
        calibration: Calibration {
            false_alarms_per_day,
            ..Calibration::default()
        },
    };
    train::fit(&spec, &[series], &|_| {})
}

/// Episodes per 1,440 rows.
fn false_alarm_rate(
    rows: &[OutletRow],
    model: &cems_sentinel::models::ModelArtifact,
) -> (usize, f64) {
    let episodes = model_residual::run_offline(&turbine(), rows, model, &DetectConfig::default());
    (
        episodes.len(),
        episodes.len() as f64 / (rows.len() as f64 / 1440.0),
    )
}

#[test]
fn a_pems_fitted_on_one_year_of_a_real_turbine_keeps_its_false_alarm_budget() {
    let y2011 = turbine_rows("gas_turbine_2011.csv");
    let y2012 = turbine_rows("gas_turbine_2012.csv");
    let model = fit(&y2011, 0.05);
    let nox = model
        .target(&format!("{NOX}_limit_fraction"))
        .expect("NOx fitted");
    eprintln!(
        "NOx on load: R² holdout {:.3}, relative accuracy {:.1} %, accepted {}; thresholds {:?}; notes {:?}",
        nox.metrics.r2_holdout,
        100.0 * nox.metrics.relative_accuracy_holdout,
        nox.accepted,
        model.thresholds,
        model.notes
    );
    // Load alone does not predict this turbine's NOx a season ahead (ambient conditions drive it too): the
    // acceptance criterion must refuse to alarm on such a model.
    assert!(!nox.accepted, "{:?}", nox.metrics);
    assert!(model.thresholds.contains_key("joint_q"));
    let (n_2011, in_sample) = false_alarm_rate(&y2011, &model);
    let (n_2012, next_year) = false_alarm_rate(&y2012, &model);
    eprintln!(
        "configured 0.05 per 1,440 rows; 2011 (training year): {n_2011} episodes = {in_sample:.3}; \
         2012 (next year): {n_2012} episodes = {next_year:.3}"
    );
    // Real data is honest data: on the year it was calibrated on, the detector stays within a small multiple of its
    // budget (the Gaussian tail on real residuals is not exact), and it never alarms on most of the year.
    assert!(in_sample <= 0.05 * 4.0, "{in_sample}");

    // A year later the plant has drifted; retraining on the first half of 2012 restores the budget on the second.
    let half = y2012.len() / 2;
    let retrained = fit(&y2012[..half], 0.05);
    let (n_after, after) = false_alarm_rate(&y2012[half..], &retrained);
    eprintln!(
        "retrained on 2012 H1, judged on 2012 H2: {n_after} episodes = {after:.3} per 1,440 rows"
    );
    assert!(after <= 0.05 * 4.0, "{after}");
}

#[test]
fn a_real_turbine_with_its_nox_analyzer_reading_low_is_flagged() {
    let y2011 = turbine_rows("gas_turbine_2011.csv");
    let model = fit(&y2011, 0.05);
    let mut y2012 = turbine_rows("gas_turbine_2012.csv");
    // For 500 rows from row 3000, NOx reported at half the measured value (a changed span). Load alone does not
    // predict this turbine's NOx (see the test above), so only the joint model judges it: halving leaves the joint
    // pattern; a 30 % cut stays inside this turbine's natural NOx spread and is not flagged (a stated limit).
    for r in &mut y2012[3000..3500] {
        if let Some(n) = r.cems.get_mut(NOX) {
            n.value *= 0.5;
        }
    }
    let episodes =
        model_residual::run_offline(&turbine(), &y2012, &model, &DetectConfig::default());
    let hit = episodes
        .iter()
        .any(|f| f.start_ms < T0 + 3500 * MS_PER_MINUTE && f.end_ms > T0 + 3000 * MS_PER_MINUTE);
    assert!(hit, "{episodes:#?}");
}

#[test]
fn a_real_steel_plants_power_clusters_into_its_load_levels() {
    let text = std::fs::read_to_string("tests/data/real/steel_plant_power.csv").expect("data file");
    let mut kw = Vec::new();
    let mut load_type = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        kw.push(cols[1].parse::<f64>().expect("number") * 4.0); // kWh per 15 min → kW
        load_type.push(cols[2].to_string());
    }
    let s = states::fit("mill", &kw).expect("clustered");
    eprintln!("levels {:?} kW, shares {:?}", s.levels_kw, s.shares);
    assert!(s.levels_kw.len() >= 2);
    // The plant's own labels: the mean level index rises from light to maximum load.
    let mean_state = |label: &str| {
        let idx: Vec<f64> = kw
            .iter()
            .zip(&load_type)
            .filter(|(_, l)| l.as_str() == label)
            .map(|(k, _)| s.state_of(*k) as f64)
            .collect();
        idx.iter().sum::<f64>() / idx.len() as f64
    };
    let (light, medium, maximum) = (
        mean_state("Light_Load"),
        mean_state("Medium_Load"),
        mean_state("Maximum_Load"),
    );
    eprintln!("mean level index: light {light:.2}, medium {medium:.2}, maximum {maximum:.2}");
    assert!(
        light < medium && medium <= maximum + 0.05,
        "{light} {medium} {maximum}"
    );
}

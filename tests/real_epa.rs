//! Real US EPA hourly CEMS data through the real server (tests/data/real/epa_cems_2007_NC_10_units.txt, public
//! domain; see its README): ten North Carolina coal units, April to June 2007, reporting hour averages over gRPC, and
//! copies of four of them with a violation written in. The window holds real, legitimate control-device steps
//! (scrubber start-ups at Roxboro 2 and Marshall 1 and 2, NOx control at Asheville 1 and Belews Creek 1), start-ups,
//! outages and Part 75 substitute data.

use crate::common;

use cems_sentinel::domain::AnomalyKind;
use cems_sentinel::eval::epa;
use cems_sentinel::pb;
use cems_sentinel::tools::replay_epa::{default_cases, replay_through, window};

fn kind(a: &cems_sentinel::pb::Anomaly) -> Option<AnomalyKind> {
    AnomalyKind::from_number(a.kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_hourly_units_replayed_through_the_server() {
    let text = std::fs::read_to_string("tests/data/real/epa_cems_2007_NC_10_units.txt")
        .expect("the EPA subset is in the repo");
    let units = epa::parse(&text).expect("parses");
    assert_eq!(units.len(), 10);
    let (from_ms, to_ms) = window(4, 6);
    let replay = epa::replay(&units, &default_cases(), from_ms, to_ms);
    assert!(replay.unplaced.is_empty(), "{:?}", replay.unplaced);
    let mut s = common::start().await;
    let r = replay_through(&s.conn().await, &replay)
        .await
        .expect("replays");

    // The stuck analyzer, the replayed week and the gain cut written into real units are found.
    for injected in [
        AnomalyKind::Flatline,
        AnomalyKind::ReplayedData,
        AnomalyKind::ParameterTampering,
    ] {
        let k = r.report.kinds.iter().find(|k| k.kind == injected);
        assert_eq!(
            k.map(|k| (k.events, k.detected)),
            Some((1, 1)),
            "{injected:?}: {:#?}",
            r.report
        );
    }

    let on_clean: Vec<_> = r.on_clean(&replay).collect();
    // Real hour averages are never a stuck or replayed record, nor an invented curve.
    for shape in [
        AnomalyKind::Flatline,
        AnomalyKind::ReplayedData,
        AnomalyKind::LowVariance,
    ] {
        let n = on_clean.iter().filter(|a| kind(a) == Some(shape)).count();
        assert_eq!(n, 0, "{shape:?} on a clean unit");
    }
    // A real control-device step is at most one bounded, reviewable shift per unit, not weeks of alarms per channel.
    for unit in ["2712-2", "2727-1", "2727-2", "2706-1", "8042-1"] {
        let steps: Vec<_> = on_clean
            .iter()
            .filter(|a| a.enterprise_id == unit && kind(a) == Some(AnomalyKind::ParameterTampering))
            .collect();
        for a in &steps {
            let hours = (a.end_ms - a.start_ms) / 3_600_000;
            assert!(hours <= 72, "{unit}: a {hours} h shift");
        }
    }
    // An hourly outlet reports every hour: ordinary outages and substitute periods are not a stream of alarms.
    let unmonitored = on_clean
        .iter()
        .filter(|a| kind(a) == Some(AnomalyKind::UnmonitoredEmission))
        .count();
    assert!(
        (unmonitored as f64) < 0.5 * r.clean_unit_months,
        "{unmonitored} UNMONITORED_EMISSION on {:.0} unit-months",
        r.clean_unit_months
    );
    s.server.take();
}

/// A real gas turbine's two years (`tests/data/real/gas_turbine_201{1,2}.csv`, CC BY 4.0: hourly rows in time order,
/// no timestamps, so they are laid end to end as consecutive hours) as an outlet that reports hour averages of NOx and
/// CO beside its generator's load, through the server. Nothing was tuned on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_turbines_hour_averages_through_the_server() {
    use cems_sentinel::api::points_to_records;
    use cems_sentinel::domain::{
        Enterprise, Interval, Meter, MeterRole, Outlet, Point, ValueFlag, MS_PER_DAY, MS_PER_HOUR,
    };
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for year in ["2011", "2012"] {
        let text = std::fs::read_to_string(format!("tests/data/real/gas_turbine_{year}.csv"))
            .expect("turbine data");
        rows.extend(text.lines().skip(1).map(|l| {
            l.split(',')
                .map(|x| x.parse::<f64>().expect("number"))
                .collect::<Vec<f64>>()
        }));
    }
    let max = |col: usize| rows.iter().map(|r| r[col]).fold(0.0, f64::max);
    let t0 = 1_293_840_000_000; // 2011-01-01
    let (nox, co) = ("a21002", "a21005");
    let points: Vec<Point> = rows
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            let point = |source: &str, code: &str, value: f64| Point {
                source_id: source.into(),
                code: code.into(),
                time_ms: t0 + i as i64 * MS_PER_HOUR,
                interval: Interval::Hour,
                value,
                flag: ValueFlag::Normal,
                converted: None,
            };
            [
                point("gt-gen", "power_kw", r[0] * 1000.0),
                point("gt-stack", co, r[1]),
                point("gt-stack", nox, r[2]),
            ]
        })
        .collect();
    let mut s = common::start().await;
    cems_sentinel::tools::feed::register_all(
        &s.conn().await,
        &[Enterprise {
            id: "gt".into(),
            name: "gas turbine (Kaya et al. 2019)".into(),
            industry: "gas_turbine".into(),
            region: "TR".into(),
            performance_grade: String::new(),
        }],
        &[Outlet {
            id: "gt-stack".into(),
            enterprise_id: "gt".into(),
            // Above the highest hour, as for the EPA units: exceedances are not what this measures.
            limits_mg_m3: [(nox.into(), 1.1 * max(2)), (co.into(), 1.1 * max(1))]
                .into_iter()
                .collect(),
            ..Outlet::default()
        }],
        &[Meter {
            id: "gt-gen".into(),
            enterprise_id: "gt".into(),
            role: MeterRole::Production,
            equipment: "generator".into(),
            outlet_ids: vec!["gt-stack".into()],
            rated_kw: max(0) * 1000.0,
            ..Meter::default()
        }],
        &[],
    )
    .await
    .expect("registered");
    let batches: Vec<pb::RecordBatch> = points
        .chunk_by(|a, b| a.time_ms.div_euclid(MS_PER_DAY) == b.time_ms.div_euclid(MS_PER_DAY))
        .enumerate()
        .map(|(n, day)| pb::RecordBatch {
            seq: n as u64 + 1,
            records: points_to_records(day.to_vec()),
        })
        .collect();
    common::push_all(&mut s, batches).await;
    s.ingest
        .sync(pb::SyncRequest { finalize: true })
        .await
        .expect("sync");
    let anomalies = common::list_all(&mut s, pb::ListAnomaliesRequest::default()).await;
    let months = rows.len() as f64 / (24.0 * 365.25 / 12.0);
    let mut by_kind = std::collections::BTreeMap::new();
    for a in &anomalies {
        *by_kind
            .entry(kind(a).map_or("?", |k| k.as_str()))
            .or_insert(0) += 1;
    }
    eprintln!(
        "turbine: {} alarms on {months:.1} unit-months: {by_kind:?}",
        anomalies.len()
    );
    for a in &anomalies {
        eprintln!(
            "  {} {} h from row {}: {}",
            a.kind,
            (a.end_ms - a.start_ms) / MS_PER_HOUR,
            (a.start_ms - t0) / MS_PER_HOUR,
            a.summary
        );
    }
    // A daily load routine repeats the turbine's hour averages; that is not a replayed record.
    for shape in [AnomalyKind::ReplayedData, AnomalyKind::LowVariance] {
        assert!(
            anomalies.iter().all(|a| kind(a) != Some(shape)),
            "{shape:?} on a real turbine"
        );
    }
    s.server.take();
}

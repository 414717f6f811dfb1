//! Real US EPA hourly CEMS data through the real server (tests/data/real/epa_cems_2007_NC_10_units.txt, public
//! domain; see its README): ten North Carolina coal units, April to June 2007, reporting hour averages over gRPC, and
//! copies of four of them with a violation written in. The window holds real, legitimate control-device steps
//! (scrubber start-ups at Roxboro 2 and Marshall 1 and 2, NOx control at Asheville 1 and Belews Creek 1), start-ups,
//! outages and Part 75 substitute data.

use crate::common;

use cems_sentinel::domain::AnomalyKind;
use cems_sentinel::eval::epa;
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
    let r = replay_through(&s.channel, &replay).await.expect("replays");

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

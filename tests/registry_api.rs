use crate::common::*;
use cems_sentinel::pb;
use tonic::Code;

fn fuel_change(outlet: &str, effective_ms: i64) -> pb::OperatingChange {
    pb::OperatingChange {
        enterprise_id: "e1".into(),
        outlet_id: outlet.into(),
        kind: pb::OperatingChangeKind::Fuel as i32,
        effective_ms,
        description: "lower-sulphur coal from today".into(),
        declared_by: "plant manager".into(),
        ..Default::default()
    }
}

/// The operating changes listed for enterprise `e`.
async fn changes_of(s: &mut TestServer, e: &str) -> Vec<pb::OperatingChange> {
    s.registry
        .list_operating_changes(pb::ListOperatingChangesRequest {
            enterprise_id: e.into(),
        })
        .await
        .expect("list")
        .into_inner()
        .changes
}

/// A declared operating change is recorded with who declared it and when the server took it, once: re-sending it
/// returns the first record; it is listed with the enterprise and lands in its outlets' topologies.
#[tokio::test]
async fn operating_changes_are_recorded_once_with_who_and_when() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    register_plant(&mut s, "e2").await;
    let before = cems_sentinel::ingest::system_now_ms();
    let first = s
        .registry
        .record_operating_change(fuel_change("e1-s1", T0 + 600 * MINUTE))
        .await
        .expect("recorded")
        .into_inner();
    assert!(
        first.id.starts_with('C') && first.id.len() == 17,
        "{first:?}"
    );
    assert!(first.recorded_at_ms >= before, "{first:?}");
    assert_eq!(first.declared_by, "plant manager");
    let again = s
        .registry
        .record_operating_change(pb::OperatingChange {
            description: "rewritten later".into(),
            ..fuel_change("e1-s1", T0 + 600 * MINUTE)
        })
        .await
        .expect("re-sent")
        .into_inner();
    assert_eq!(again, first, "a record is never rewritten");
    let enterprise_wide = s
        .registry
        .record_operating_change(fuel_change("", T0))
        .await
        .expect("enterprise-wide")
        .into_inner();
    assert_ne!(enterprise_wide.id, first.id);

    let listed = changes_of(&mut s, "e1").await;
    assert_eq!(listed, vec![enterprise_wide, first], "in effective order");
    assert!(changes_of(&mut s, "e2").await.is_empty());

    for (change, code) in [
        (
            pb::OperatingChange {
                enterprise_id: "nope".into(),
                ..fuel_change("", T0)
            },
            Code::FailedPrecondition,
        ),
        (fuel_change("e2-s1", T0), Code::InvalidArgument),
        (fuel_change("e1-s9", T0), Code::FailedPrecondition),
        (fuel_change("e1-s1", 0), Code::InvalidArgument),
        (
            pb::OperatingChange {
                kind: 0,
                ..fuel_change("e1-s1", T0)
            },
            Code::InvalidArgument,
        ),
    ] {
        let err = s
            .registry
            .record_operating_change(change.clone())
            .await
            .expect_err("refused");
        assert_eq!(err.code(), code, "{change:?}: {err}");
    }
}

/// Minutes `range` of plant `e` whose SO2 gain is cut to 60 % from day 3, production and treatment unchanged.
fn gain_cut_batches(e: &str, range: std::ops::Range<i64>, seq0: u64) -> Vec<pb::RecordBatch> {
    let minutes: Vec<i64> = range.collect();
    minutes
        .chunks(60)
        .enumerate()
        .map(|(n, chunk)| pb::RecordBatch {
            seq: seq0 + n as u64,
            records: chunk
                .iter()
                .flat_map(|&i| {
                    let mut records = plant_minute(e, i, &(0..0));
                    if i >= 3 * 1440 {
                        for m in records.iter_mut().flat_map(|r| r.values.iter_mut()) {
                            if m.code == "a21026" {
                                m.value = (m.value * 0.6 * 10.0).round() / 10.0;
                            }
                        }
                    }
                    records
                })
                .collect(),
        })
        .collect()
}

async fn step_alarms(s: &mut TestServer, e: &str) -> Vec<pb::Anomaly> {
    list_all(
        s,
        pb::ListAnomaliesRequest {
            enterprise_ids: vec![e.into()],
            kinds: vec![pb::AnomalyKind::ParameterTampering as i32],
            ..Default::default()
        },
    )
    .await
}

/// An officer's FALSE_POSITIVE on a level shift re-bases the outlet: the server records it as the outlet's operating
/// change (who, when), the episode closes within the hour, and no new alarm is raised for the same shift; the same
/// shift unreviewed at a second plant stays raised for the day the step test gives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_false_positive_review_of_a_level_shift_rebases_the_outlet() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    register_plant(&mut s, "e2").await;
    let first: Vec<_> = gain_cut_batches("e1", 0..3 * 1440 + 720, 1)
        .into_iter()
        .chain(gain_cut_batches("e2", 0..3 * 1440 + 720, 1000))
        .collect();
    push_all(&mut s, first).await;
    s.ingest
        .sync(pb::SyncRequest { finalize: false })
        .await
        .expect("sync");
    let raised = step_alarms(&mut s, "e1").await;
    assert_eq!(raised.len(), 1, "{raised:#?}");
    let reviewed_at_ms = raised[0].end_ms;
    for status in [
        pb::ReviewStatus::Dispatched,
        pb::ReviewStatus::FalsePositive,
    ] {
        s.enforcement
            .review_anomaly(pb::ReviewAnomalyRequest {
                id: raised[0].id.clone(),
                status: status as i32,
                note: "fuel switched; the plant showed the delivery note".into(),
                reviewer: "officer li".into(),
            })
            .await
            .expect("review");
    }
    let changes = changes_of(&mut s, "e1").await;
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(
        changes[0].kind,
        pb::OperatingChangeKind::ReviewedFalsePositive as i32
    );
    assert_eq!(
        (changes[0].declared_by.as_str(), changes[0].effective_ms),
        ("officer li", reviewed_at_ms)
    );
    // A client may not declare the review's kind itself.
    let err = s
        .registry
        .record_operating_change(pb::OperatingChange {
            kind: pb::OperatingChangeKind::ReviewedFalsePositive as i32,
            ..fuel_change("e1-s1", T0 + 600 * MINUTE)
        })
        .await
        .expect_err("server-only kind");
    assert_eq!(err.code(), Code::InvalidArgument);

    let rest: Vec<_> = gain_cut_batches("e1", 3 * 1440 + 720..5 * 1440, 2000)
        .into_iter()
        .chain(gain_cut_batches("e2", 3 * 1440 + 720..5 * 1440, 3000))
        .collect();
    push_all(&mut s, rest).await;
    s.ingest
        .sync(pb::SyncRequest { finalize: true })
        .await
        .expect("sync");
    let reviewed = step_alarms(&mut s, "e1").await;
    assert_eq!(
        reviewed.len(),
        1,
        "no new alarm for the same shift: {reviewed:#?}"
    );
    // The review came when the data stood at the end of the first push.
    let data_at_review_ms = T0 + (3 * 1440 + 720) * MINUTE;
    assert!(
        reviewed[0].end_ms <= data_at_review_ms + 2 * 60 * MINUTE,
        "closed within the hour of the review: {} h after it",
        (reviewed[0].end_ms - data_at_review_ms) / (60 * MINUTE)
    );
    let unreviewed = step_alarms(&mut s, "e2").await;
    assert_eq!(unreviewed.len(), 1, "{unreviewed:#?}");
    assert!(
        unreviewed[0].end_ms - unreviewed[0].start_ms >= 20 * 60 * MINUTE,
        "{unreviewed:#?}"
    );
}

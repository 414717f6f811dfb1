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

    let listed = s
        .registry
        .list_operating_changes(pb::ListOperatingChangesRequest {
            enterprise_id: "e1".into(),
        })
        .await
        .expect("list")
        .into_inner()
        .changes;
    assert_eq!(listed, vec![enterprise_wide, first], "in effective order");
    let others = s
        .registry
        .list_operating_changes(pb::ListOperatingChangesRequest {
            enterprise_id: "e2".into(),
        })
        .await
        .expect("list e2")
        .into_inner()
        .changes;
    assert!(others.is_empty());

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

use crate::common::*;
use cems_sentinel::pb;
use tonic::Code;

/// A plant that is simply stopped (both meters near zero) from `stop`: the look-alike of an idle scrubber.
fn stopped_plant(
    e: &str,
    range: std::ops::Range<i64>,
    stop: std::ops::Range<i64>,
) -> Vec<pb::RecordBatch> {
    let mut batches = plant_batches(e, range, 0..0, 30);
    for b in &mut batches {
        for r in &mut b.records {
            let minute = (r.time_ms - T0) / MINUTE;
            if stop.contains(&minute) && !r.source_id.ends_with("-s1") {
                r.values[0].value = 0.0;
            }
        }
    }
    batches
}

#[tokio::test]
async fn idle_scrubber_is_listed_with_evidence_and_a_stopped_plant_is_not() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    register_plant(&mut s, "e2").await;
    push_all(&mut s, plant_batches("e1", 0..720, 300..420, 30)).await;
    push_all(&mut s, stopped_plant("e2", 0..720, 300..420)).await;
    let sync = s
        .ingest
        .sync(pb::SyncRequest { finalize: true })
        .await
        .expect("sync")
        .into_inner();
    // The idle scrubber, and the SO2 exceedance it caused; nothing for the stopped plant.
    assert_eq!(sync.anomalies_total, 2);

    let all = list_all(&mut s, pb::ListAnomaliesRequest::default()).await;
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all.iter().all(|a| a.enterprise_id == "e1"), "{all:#?}");
    assert!(
        all.iter()
            .any(|a| a.kind == pb::AnomalyKind::Exceedance as i32
                && a.evidence["limit_mg_m3"] == 35.0)
    );
    let a = all
        .iter()
        .find(|a| a.kind == pb::AnomalyKind::TreatmentNotRunning as i32)
        .expect("treatment not running");
    assert_eq!(a.enterprise_id, "e1");
    assert_eq!(a.outlet_id, "e1-s1");
    assert_eq!(a.kind, pb::AnomalyKind::TreatmentNotRunning as i32);
    assert_eq!(a.status, pb::ReviewStatus::Open as i32);
    assert_eq!(
        (a.start_ms, a.end_ms),
        (T0 + 300 * MINUTE, T0 + 420 * MINUTE)
    );
    assert_eq!(
        a.detected_at_ms,
        T0 + 315 * MINUTE,
        "raised when the grace period ran out"
    );
    assert_eq!(a.evidence["duration_min"], 120.0);
    assert!(a.evidence["treatment_kw_mean"] < 5.0);
    assert!(a.evidence["production_kw_mean"] > 700.0);
    assert!(a.score > 0.5 && a.score <= 1.0);
    assert!(
        a.summary.contains("治污设施"),
        "Chinese by default: {}",
        a.summary
    );
    assert!(a.source_ids.contains(&"e1-t1".to_string()));
    assert!(!a.ongoing);

    let got = s
        .enforcement
        .get_anomaly(pb::GetAnomalyRequest { id: a.id.clone() })
        .await
        .expect("get")
        .into_inner();
    // GetAnomaly adds the copy-of-record leaves the finding rests on: the 30-minute batches of minutes 240..480
    // (the episode 300..420 and an hour either side).
    assert_eq!(got.record_log_leaves, (8..16).collect::<Vec<u64>>());
    assert_eq!(
        pb::Anomaly {
            record_log_leaves: vec![],
            ..got
        },
        *a
    );
    // The same stored anomaly reads in English to a client that asks for it, with the same figures.
    let mut english = tonic::Request::new(pb::GetAnomalyRequest { id: a.id.clone() });
    english
        .metadata_mut()
        .insert("accept-language", "en-GB, zh;q=0.5".parse().expect("ascii"));
    let en = s
        .enforcement
        .get_anomaly(english)
        .await
        .expect("get in English")
        .into_inner();
    assert!(
        en.summary
            .starts_with("e1 Power 1# stack: treatment e1-t1 (desulfurization) not running"),
        "{}",
        en.summary
    );
    assert_eq!(
        (en.evidence.clone(), en.score),
        (a.evidence.clone(), a.score)
    );
    assert_eq!(en.evidence_text["meter_id"], "e1-t1");
    assert_eq!(en.evidence_text["equipment"], "desulfurization");
    let err = s
        .enforcement
        .get_anomaly(pb::GetAnomalyRequest { id: "nope".into() })
        .await
        .expect_err("missing");
    assert_eq!(err.code(), Code::NotFound);

    // Filters.
    let count = |req: pb::ListAnomaliesRequest| {
        let mut c = s.enforcement.clone();
        async move {
            c.list_anomalies(req)
                .await
                .expect("list")
                .into_inner()
                .anomalies
                .len()
        }
    };
    assert_eq!(
        count(pb::ListAnomaliesRequest {
            enterprise_ids: vec!["e2".into()],
            ..Default::default()
        })
        .await,
        0
    );
    assert_eq!(
        count(pb::ListAnomaliesRequest {
            enterprise_ids: vec!["e1".into()],
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(pb::ListAnomaliesRequest {
            region: "r1".into(),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(pb::ListAnomaliesRequest {
            region: "elsewhere".into(),
            ..Default::default()
        })
        .await,
        0
    );
    assert_eq!(
        count(pb::ListAnomaliesRequest {
            kinds: vec![pb::AnomalyKind::BypassSuspected as i32],
            ..Default::default()
        })
        .await,
        0
    );
    assert_eq!(
        count(pb::ListAnomaliesRequest {
            from_ms: T0 + 500 * MINUTE,
            to_ms: T0 + 600 * MINUTE,
            ..Default::default()
        })
        .await,
        0
    );
    assert_eq!(
        count(pb::ListAnomaliesRequest {
            from_ms: T0 + 400 * MINUTE,
            to_ms: T0 + 600 * MINUTE,
            ..Default::default()
        })
        .await,
        2
    );
    let err = s
        .enforcement
        .list_anomalies(pb::ListAnomaliesRequest {
            page_token: "bogus".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad token");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = s
        .enforcement
        .list_anomalies(pb::ListAnomaliesRequest {
            kinds: vec![99],
            ..Default::default()
        })
        .await
        .expect_err("bad kind");
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn many_episodes_page_in_rank_order_without_gaps_or_repeats() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    // Twelve scrubber stops of growing length: 20, 25, ... minutes, each 100 minutes apart.
    let mut batches = plant_batches("e1", 0..1300, 0..0, 60);
    for b in &mut batches {
        for r in &mut b.records {
            let minute = (r.time_ms - T0) / MINUTE;
            let k = minute / 100;
            if r.source_id == "e1-t1" && minute % 100 < 20 + 5 * k && k < 12 {
                r.values[0].value = 1.0;
            }
        }
    }
    push_all(&mut s, batches).await;
    s.ingest
        .sync(pb::SyncRequest { finalize: true })
        .await
        .expect("sync");
    let mut pages = 0;
    let mut req = pb::ListAnomaliesRequest {
        page_size: 5,
        ..Default::default()
    };
    let mut seen: Vec<pb::Anomaly> = Vec::new();
    loop {
        let page = s
            .enforcement
            .list_anomalies(req.clone())
            .await
            .expect("list")
            .into_inner();
        assert!(page.anomalies.len() <= 5);
        pages += 1;
        seen.extend(page.anomalies);
        if page.next_page_token.is_empty() {
            break;
        }
        req.page_token = page.next_page_token;
    }
    assert_eq!(seen.len(), 12);
    assert_eq!(pages, 3);
    let mut ids: Vec<&str> = seen.iter().map(|a| a.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 12);
    assert!(
        seen.windows(2).all(|w| w[0].score >= w[1].score),
        "ranked by score"
    );
    // Longer stops score higher: the first listed is the longest.
    assert_eq!(seen[0].evidence["duration_min"], 75.0);
}

#[tokio::test]
async fn review_follows_the_closed_loop_and_watch_streams_updates() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    register_plant(&mut s, "e2").await;
    let mut watch = s
        .enforcement
        .watch_anomalies(pb::WatchAnomaliesRequest {
            filter: Some(pb::ListAnomaliesRequest {
                enterprise_ids: vec!["e1".into()],
                ..Default::default()
            }),
        })
        .await
        .expect("watch")
        .into_inner();
    push_all(&mut s, plant_batches("e2", 0..400, 100..200, 30)).await;
    push_all(&mut s, plant_batches("e1", 0..400, 100..200, 30)).await;
    s.ingest
        .sync(pb::SyncRequest { finalize: true })
        .await
        .expect("sync");
    // The first event for e1 is the episode being raised (ongoing); e2's never reaches this watcher.
    let first = watch.message().await.expect("watch").expect("event");
    assert_eq!(first.enterprise_id, "e1");
    assert!(first.ongoing);
    let id = first.id.clone();

    let review = |status: pb::ReviewStatus, reviewer: &str| pb::ReviewAnomalyRequest {
        id: id.clone(),
        status: status as i32,
        note: format!("{status:?} by {reviewer}"),
        reviewer: reviewer.into(),
    };
    let err = s
        .enforcement
        .review_anomaly(review(pb::ReviewStatus::Closed, "wang"))
        .await
        .expect_err("skip");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("dispatched"), "{}", err.message());
    let err = s
        .enforcement
        .review_anomaly(review(pb::ReviewStatus::Dispatched, ""))
        .await
        .expect_err("anon");
    assert_eq!(err.code(), Code::InvalidArgument);
    for st in [
        pb::ReviewStatus::Dispatched,
        pb::ReviewStatus::Confirmed,
        pb::ReviewStatus::Rectified,
        pb::ReviewStatus::Closed,
    ] {
        let a = s
            .enforcement
            .review_anomaly(review(st, "wang"))
            .await
            .expect("review")
            .into_inner();
        assert_eq!(a.status, st as i32);
    }
    let closed = list_all(
        &mut s,
        pb::ListAnomaliesRequest {
            statuses: vec![pb::ReviewStatus::Closed as i32],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].note, "Closed by wang");
    // The watcher saw the review transitions too (after the detection updates).
    let mut last_status = 0;
    while last_status != pb::ReviewStatus::Closed as i32 {
        let ev = watch.message().await.expect("watch").expect("event");
        assert_eq!(ev.enterprise_id, "e1");
        last_status = ev.status;
    }
}

/// The plant of `register_plant` plus a monitored bypass duct `{e}-b1`.
async fn register_bypass(s: &mut TestServer, e: &str) {
    s.registry
        .upsert_outlet(pb::Outlet {
            id: format!("{e}-b1"),
            enterprise_id: e.into(),
            name: "1# bypass".into(),
            kind: pb::OutletKind::Bypass as i32,
            main_outlet_id: format!("{e}-s1"),
            ..Default::default()
        })
        .await
        .expect("bypass outlet");
}

/// Scrubber off in 300..420 and gas diverted through the bypass in 330..450.
fn bypass_and_idle_scrubber(e: &str) -> Vec<pb::RecordBatch> {
    let mut batches = plant_batches(e, 0..720, 300..420, 30);
    for b in &mut batches {
        let mut extra = Vec::new();
        for r in &mut b.records {
            let minute = (r.time_ms - T0) / MINUTE;
            let diverted = (330..450).contains(&minute);
            if r.source_id.ends_with("-s1") && diverted {
                for m in &mut r.values {
                    if m.code == "a00000" {
                        m.value *= 0.3;
                    }
                }
            }
            if r.source_id.ends_with("-s1") {
                let flow = if diverted { 290.0 } else { 0.5 };
                let temp = if diverted { 140.0 } else { 25.0 };
                extra.push(record(
                    &format!("{e}-b1"),
                    r.time_ms,
                    vec![measurement("a00000", flow), measurement("a01012", temp)],
                ));
            }
        }
        b.records.extend(extra);
    }
    batches
}

#[tokio::test]
async fn bypass_and_idle_scrubber_become_one_incident_listed_watched_reviewed_and_ranked() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    register_bypass(&mut s, "e1").await;
    register_plant(&mut s, "e2").await;
    let mut watch = s
        .enforcement
        .watch_anomalies(pb::WatchAnomaliesRequest {
            filter: Some(pb::ListAnomaliesRequest {
                kinds: vec![pb::AnomalyKind::BypassSuspected as i32],
                ..Default::default()
            }),
        })
        .await
        .expect("watch")
        .into_inner();
    push_all(&mut s, bypass_and_idle_scrubber("e1")).await;
    push_all(&mut s, plant_batches("e2", 0..720, 0..0, 30)).await;
    s.ingest
        .sync(pb::SyncRequest { finalize: true })
        .await
        .expect("sync");

    // Watch saw the bypass as it was raised: 15 minutes after the diversion began.
    let raised = watch.message().await.expect("watch").expect("event");
    assert_eq!(raised.kind, pb::AnomalyKind::BypassSuspected as i32);
    assert_eq!(raised.start_ms, T0 + 330 * MINUTE);
    assert_eq!(raised.detected_at_ms, T0 + 345 * MINUTE);

    let all = list_all(&mut s, pb::ListAnomaliesRequest::default()).await;
    let kind = |k: pb::AnomalyKind| all.iter().find(|a| a.kind == k as i32).cloned();
    let bypass = kind(pb::AnomalyKind::BypassSuspected).expect("bypass");
    let idle = kind(pb::AnomalyKind::TreatmentNotRunning).expect("idle scrubber");
    assert_eq!(
        (bypass.start_ms, bypass.end_ms),
        (T0 + 330 * MINUTE, T0 + 450 * MINUTE)
    );
    assert_eq!(bypass.evidence["minutes_bypass_monitor_active"], 120.0);
    assert!(bypass.source_ids.contains(&"e1-b1".to_string()));
    assert_eq!(
        (idle.start_ms, idle.end_ms),
        (T0 + 300 * MINUTE, T0 + 420 * MINUTE)
    );
    assert!(
        all.iter().all(|a| a.enterprise_id == "e1"),
        "the clean plant stays clean: {all:#?}"
    );

    // One case for the officer.
    let incidents = s
        .enforcement
        .list_incidents(pb::ListIncidentsRequest::default())
        .await
        .expect("incidents")
        .into_inner()
        .incidents;
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let case = &incidents[0];
    assert!(case.anomaly_ids.contains(&bypass.id) && case.anomaly_ids.contains(&idle.id));
    assert_eq!(case.anomaly_ids.len(), all.len());
    assert!(case.score > bypass.score.max(idle.score));
    assert_eq!(
        (case.start_ms, case.end_ms),
        (T0 + 300 * MINUTE, T0 + 450 * MINUTE)
    );

    // Hotspots: e1 is the only enterprise with anomalies; its region leads.
    let hot = s
        .enforcement
        .list_hotspots(pb::ListHotspotsRequest::default())
        .await
        .expect("hotspots")
        .into_inner()
        .hotspots;
    assert_eq!(hot.len(), 1);
    assert_eq!(
        (hot[0].key.as_str(), hot[0].name.as_str()),
        ("e1", "e1 Power")
    );
    assert_eq!(hot[0].anomalies as usize, all.len());
    let regions = s
        .enforcement
        .list_hotspots(pb::ListHotspotsRequest {
            level: pb::HotspotLevel::Region as i32,
            ..Default::default()
        })
        .await
        .expect("hotspots")
        .into_inner()
        .hotspots;
    assert_eq!(regions[0].key, "r1");

    // Review: dispatch the bypass, confirm it; the audit trail records who and when; a confirmed case leaves the
    // unresolved hotspot ranking only once rectified.
    for st in [
        pb::ReviewStatus::Dispatched,
        pb::ReviewStatus::Confirmed,
        pb::ReviewStatus::Rectified,
    ] {
        s.enforcement
            .review_anomaly(pb::ReviewAnomalyRequest {
                id: bypass.id.clone(),
                status: st as i32,
                note: format!("{st:?}"),
                reviewer: "inspector li".into(),
            })
            .await
            .expect("review");
    }
    let history = s
        .enforcement
        .get_review_history(pb::GetAnomalyRequest {
            id: bypass.id.clone(),
        })
        .await
        .expect("history")
        .into_inner();
    assert_eq!(history.entries.len(), 3);
    assert_eq!(history.entries[0].from, pb::ReviewStatus::Open as i32);
    assert_eq!(history.entries[2].to, pb::ReviewStatus::Rectified as i32);
    assert!(history
        .entries
        .iter()
        .all(|e| e.reviewer == "inspector li" && e.at_ms > 0));
    let hot = s
        .enforcement
        .list_hotspots(pb::ListHotspotsRequest::default())
        .await
        .expect("hotspots")
        .into_inner()
        .hotspots;
    assert_eq!(hot[0].anomalies as usize, all.len() - 1);
}

/// Availability is a statistic first: a 90-minute and a 20-minute silence of the stack while production runs are
/// two outages in the month's figures, whatever detection makes of them.
#[tokio::test]
async fn data_availability_counts_the_outages_of_a_month() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    let silent = |m: i64| (200..290).contains(&m) || (400..420).contains(&m);
    let mut batches = plant_batches("e1", 0..720, 0..0, 30);
    for b in &mut batches {
        b.records
            .retain(|r| !(r.source_id == "e1-s1" && silent((r.time_ms - T0) / MINUTE)));
    }
    push_all(&mut s, batches).await;
    s.ingest
        .sync(pb::SyncRequest { finalize: true })
        .await
        .expect("sync");

    let months = s
        .enforcement
        .get_data_availability(pb::GetDataAvailabilityRequest {
            enterprise_ids: vec!["e1".into()],
            ..Default::default()
        })
        .await
        .expect("availability")
        .into_inner()
        .months;
    assert_eq!(months.len(), 1, "{months:#?}");
    let m = &months[0];
    assert_eq!(
        (m.outlet_id.as_str(), m.enterprise_id.as_str()),
        ("e1-s1", "e1")
    );
    assert!(m.production_minutes >= 700, "{m:#?}");
    assert_eq!(m.valid_minutes, m.production_minutes - 110, "{m:#?}");
    assert_eq!((m.outages, m.longest_outage_min), (2, 90), "{m:#?}");
    let rate = f64::from(m.valid_minutes) / f64::from(m.production_minutes);
    assert!((m.transmission_rate - rate).abs() < 1e-12);

    // The same month asked by name, and a month without data (nothing was owed).
    let named = |from: &str, to: &str| pb::GetDataAvailabilityRequest {
        outlet_ids: vec!["e1-s1".into()],
        from_month: from.into(),
        to_month: to.into(),
        ..Default::default()
    };
    let two = s
        .enforcement
        .get_data_availability(named(&m.month, &next_month(&m.month)))
        .await
        .expect("two months")
        .into_inner()
        .months;
    assert_eq!(two.len(), 2);
    assert_eq!(two[0], *m);
    assert_eq!(
        (two[1].production_minutes, two[1].transmission_rate),
        (0, 1.0)
    );

    for (req, code) in [
        (
            pb::GetDataAvailabilityRequest::default(),
            Code::InvalidArgument,
        ),
        (named("2025-03", "2025-02"), Code::InvalidArgument),
        (named("2025-01", "2026-01"), Code::InvalidArgument),
        (named("2025-3", ""), Code::InvalidArgument),
        (
            pb::GetDataAvailabilityRequest {
                outlet_ids: vec!["nope".into()],
                ..Default::default()
            },
            Code::NotFound,
        ),
    ] {
        let err = s
            .enforcement
            .get_data_availability(req.clone())
            .await
            .expect_err("refused");
        assert_eq!(err.code(), code, "{req:?}: {err}");
    }
}

fn next_month(month: &str) -> String {
    let m: cems_sentinel::domain::Month = month.parse().expect("month");
    m.next().to_string()
}

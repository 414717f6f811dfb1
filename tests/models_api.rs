//! The retraining loop over the real service: train → evaluate → activate → detection uses the new version →
//! rollback; reviewed labels flow into the exported dataset and into evaluation.

use crate::common::*;
use cems_sentinel::pb;
use cems_sentinel::pb::model_service_client::ModelServiceClient;
use tonic::transport::Channel;
use tonic::Code;

const DAY: i64 = 1440;
const OUTLET: &str = "e1-s1";

/// Minutes `range` of the plant, with its SO2 analyzer reading `factor` of the truth in `cheat`.
fn plant_with_low_so2(
    range: std::ops::Range<i64>,
    cheat: std::ops::Range<i64>,
    factor: f64,
) -> Vec<pb::RecordBatch> {
    enterprise_with_low_so2("e1", range, cheat, factor)
}

/// [`plant_with_low_so2`] for enterprise `e`.
fn enterprise_with_low_so2(
    e: &str,
    range: std::ops::Range<i64>,
    cheat: std::ops::Range<i64>,
    factor: f64,
) -> Vec<pb::RecordBatch> {
    let outlet = format!("{e}-s1");
    let mut batches = plant_batches(e, range, 0..0, 60);
    for b in &mut batches {
        for r in &mut b.records {
            let minute = (r.time_ms - T0) / MINUTE;
            if r.source_id == outlet && cheat.contains(&minute) {
                for m in &mut r.values {
                    if m.code == "a21026" {
                        m.value = (m.value * factor * 10.0).round() / 10.0;
                    }
                }
            }
        }
    }
    batches
}

async fn sync(s: &mut TestServer, finalize: bool) {
    s.ingest
        .sync(pb::SyncRequest { finalize })
        .await
        .expect("sync");
}

/// Starts training and waits for the job to end.
async fn train(models: &mut ModelServiceClient<Channel>, req: pb::TrainRequest) -> pb::TrainingJob {
    let mut job = models.train(req).await.expect("train").into_inner();
    for _ in 0..600 {
        if job.state != pb::JobState::Running as i32 {
            return job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        job = models
            .get_training_job(pb::GetTrainingJobRequest { id: job.id })
            .await
            .expect("job")
            .into_inner();
    }
    panic!("training did not finish: {job:?}");
}

/// Trains a model of the outlet on all its data, activated at once.
async fn train_and_activate(models: &mut ModelServiceClient<Channel>) -> pb::TrainingJob {
    train(
        models,
        pb::TrainRequest {
            outlet_ids: vec![OUTLET.into()],
            activate: true,
            ..Default::default()
        },
    )
    .await
}

async fn list(models: &mut ModelServiceClient<Channel>, scope: &str) -> Vec<pb::ModelInfo> {
    models
        .list_models(pb::ListModelsRequest {
            scope: scope.into(),
        })
        .await
        .expect("list")
        .into_inner()
        .models
}

async fn model_residuals(s: &mut TestServer) -> Vec<pb::Anomaly> {
    list_all(
        s,
        pb::ListAnomaliesRequest {
            kinds: vec![pb::AnomalyKind::ModelResidual as i32],
            ..Default::default()
        },
    )
    .await
}

#[tokio::test]
async fn train_evaluate_activate_then_detection_uses_the_new_version_and_rollback_restores_the_old()
{
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    let mut models = ModelServiceClient::new(s.channel.clone());

    // Before any training the industry's shipped prior judges the outlet.
    let prior = list(&mut models, "industry:coal_power").await;
    assert!(
        prior
            .iter()
            .any(|m| m.version == 0 && m.builtin && m.active),
        "{prior:#?}"
    );
    // Nothing to train on yet: a clear error, not an empty model.
    let empty = models
        .train(pb::TrainRequest {
            outlet_ids: vec![OUTLET.into()],
            ..Default::default()
        })
        .await
        .expect("job starts");
    let job = empty.into_inner();
    let job = loop {
        let j = models
            .get_training_job(pb::GetTrainingJobRequest { id: job.id })
            .await
            .expect("job")
            .into_inner();
        if j.state != pb::JobState::Running as i32 {
            break j;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(job.state, pb::JobState::Failed as i32, "{job:?}");
    assert!(job.message.contains("no stored data"), "{}", job.message);

    // Two honest days.
    push_all(&mut s, plant_with_low_so2(0..2 * DAY, 0..0, 1.0)).await;
    sync(&mut s, false).await;
    let job = train(
        &mut models,
        pb::TrainRequest {
            outlet_ids: vec![OUTLET.into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(job.state, pb::JobState::Done as i32, "{job:?}");
    assert_eq!(job.model_ids, vec![format!("outlet:{OUTLET}@1")]);
    assert_eq!(job.progress, 1.0);

    // Trained, stored, listed, not yet in use.
    let v1 = list(&mut models, &format!("outlet:{OUTLET}")).await;
    assert_eq!(v1.len(), 1);
    assert!(!v1[0].active);
    assert!(v1[0]
        .targets
        .iter()
        .any(|t| t.target == "a21026_limit_fraction" && t.accepted));
    assert!(v1[0].thresholds.contains_key("a21026_limit_fraction"));

    // Evaluated on the honest days: it fits them and raises nothing.
    let eval = models
        .evaluate_model(pb::EvaluateModelRequest {
            id: job.model_ids[0].clone(),
            from_ms: T0,
            to_ms: T0 + 2 * DAY * MINUTE,
        })
        .await
        .expect("evaluate")
        .into_inner();
    assert!(eval.rows > 2 * DAY as u64 - 200, "{eval:?}");
    assert!((eval.outlet_days - 2.0).abs() < 0.01);
    assert_eq!(eval.episodes, 0, "{eval:?}");
    let so2 = eval
        .targets
        .iter()
        .find(|t| t.target == "a21026_limit_fraction")
        .expect("SO2 evaluated");
    assert!(so2.relative_accuracy < 0.1, "{so2:?}");

    // The exported artifact is the same model as the stored one.
    let file = models
        .get_model(pb::GetModelRequest {
            id: job.model_ids[0].clone(),
        })
        .await
        .expect("get")
        .into_inner();
    let artifact = cems_sentinel::models::ModelArtifact::from_json(&file.json).expect("json");
    assert_eq!(artifact.id(), job.model_ids[0]);

    // Activated without a restart; the next data is judged by it.
    let active = models
        .activate_model(pb::ActivateModelRequest {
            id: job.model_ids[0].clone(),
        })
        .await
        .expect("activate")
        .into_inner();
    assert!(active.active && !active.has_rollback);
    push_all(
        &mut s,
        plant_with_low_so2(2 * DAY..3 * DAY, 2 * DAY + 300..2 * DAY + 600, 0.6),
    )
    .await;
    sync(&mut s, true).await;
    let found = model_residuals(&mut s).await;
    let so2_alarm = found
        .iter()
        .find(|a| a.summary.contains(&job.model_ids[0]) && a.summary.contains("a21026"))
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert_eq!(so2_alarm.evidence["model_version"], 1.0);
    assert!(
        so2_alarm.start_ms >= T0 + (2 * DAY + 270) * MINUTE,
        "{so2_alarm:?}"
    );
    assert!(
        so2_alarm.end_ms <= T0 + (2 * DAY + 630) * MINUTE,
        "{so2_alarm:?}"
    );
    assert!(
        so2_alarm.evidence["observed_window_mean"] < so2_alarm.evidence["predicted_window_mean"]
    );

    // A second version, activated at once, then rolled back to the first.
    let job2 = train(
        &mut models,
        pb::TrainRequest {
            outlet_ids: vec![OUTLET.into()],
            from_ms: T0,
            to_ms: T0 + 2 * DAY * MINUTE,
            activate: true,
            false_alarms_per_day: 0.001,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(job2.model_ids, vec![format!("outlet:{OUTLET}@2")]);
    let v2 = list(&mut models, &format!("outlet:{OUTLET}")).await;
    assert!(v2[0].version == 2 && v2[0].active && v2[0].has_rollback && v2[0].rollback_to == 1);
    assert_eq!(v2[0].false_alarms_per_day, 0.001);
    // A stricter budget means higher thresholds.
    assert!(
        v2[0].thresholds["a21026_limit_fraction"] > v1[0].thresholds["a21026_limit_fraction"],
        "{:?} vs {:?}",
        v2[0].thresholds,
        v1[0].thresholds
    );
    let back = models
        .activate_model(pb::ActivateModelRequest {
            id: format!("outlet:{OUTLET}@1"),
        })
        .await
        .expect("rollback")
        .into_inner();
    assert!(back.active && back.has_rollback && back.rollback_to == 2);

    // Activation survives a restart.
    let dir = s.stop().await;
    let s2 = start_with(dir, test_config).await;
    let mut models = ModelServiceClient::new(s2.channel.clone());
    let after = list(&mut models, &format!("outlet:{OUTLET}")).await;
    let active: Vec<u32> = after
        .iter()
        .filter(|m| m.active)
        .map(|m| m.version)
        .collect();
    assert_eq!(active, vec![1]);
    assert_eq!(after.len(), 2);
}

#[tokio::test]
async fn bad_model_requests_get_precise_errors() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    let mut models = ModelServiceClient::new(s.channel.clone());
    let code =
        |r: Result<tonic::Response<pb::TrainingJob>, tonic::Status>| r.expect_err("error").code();
    let unknown = models
        .train(pb::TrainRequest {
            outlet_ids: vec!["nope".into()],
            ..Default::default()
        })
        .await;
    assert_eq!(code(unknown), Code::NotFound);
    let both = models
        .train(pb::TrainRequest {
            outlet_ids: vec![OUTLET.into()],
            industry: "coal_power".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(both), Code::InvalidArgument);
    let nothing = models.train(pb::TrainRequest::default()).await;
    assert_eq!(code(nothing), Code::InvalidArgument);
    let backwards = models
        .train(pb::TrainRequest {
            outlet_ids: vec![OUTLET.into()],
            from_ms: T0 + MINUTE,
            to_ms: T0,
            ..Default::default()
        })
        .await;
    assert_eq!(code(backwards), Code::InvalidArgument);
    let nan = models
        .train(pb::TrainRequest {
            outlet_ids: vec![OUTLET.into()],
            false_alarms_per_day: f64::NAN,
            ..Default::default()
        })
        .await;
    assert_eq!(code(nan), Code::InvalidArgument);
    for (id, want) in [
        ("nonsense", Code::InvalidArgument),
        ("outlet:e1-s1@x", Code::InvalidArgument),
        ("outlet:e1-s1@9", Code::NotFound),
        ("industry:coal_power@0", Code::Ok),
    ] {
        let got = models
            .activate_model(pb::ActivateModelRequest { id: id.into() })
            .await
            .map_or_else(|e| e.code(), |_| Code::Ok);
        assert_eq!(got, want, "{id}");
    }
    let scope = models
        .list_models(pb::ListModelsRequest {
            scope: "planet:earth".into(),
        })
        .await
        .expect_err("bad scope");
    assert_eq!(scope.code(), Code::InvalidArgument);
    let job = models
        .get_training_job(pb::GetTrainingJobRequest { id: 77 })
        .await
        .expect_err("no job");
    assert_eq!(job.code(), Code::NotFound);
    let export = |outlet: &str| pb::ExportDatasetRequest {
        outlet_ids: vec![outlet.into()],
        ..Default::default()
    };
    let unknown = models
        .export_dataset(export("nope"))
        .await
        .expect_err("unknown outlet");
    assert_eq!(unknown.code(), Code::NotFound);
    let empty = models
        .export_dataset(export(OUTLET))
        .await
        .expect_err("nothing stored");
    assert_eq!(empty.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn reviewed_labels_reach_the_exported_dataset_and_the_evaluation() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    let mut models = ModelServiceClient::new(s.channel.clone());
    push_all(&mut s, plant_with_low_so2(0..2 * DAY, 0..0, 1.0)).await;
    sync(&mut s, false).await;
    let job = train_and_activate(&mut models).await;
    let id = job.model_ids[0].clone();
    let cheat = 2 * DAY + 300..2 * DAY + 600;
    push_all(
        &mut s,
        plant_with_low_so2(2 * DAY..3 * DAY, cheat.clone(), 0.6),
    )
    .await;
    sync(&mut s, true).await;
    let alarm = model_residuals(&mut s)
        .await
        .into_iter()
        .find(|a| a.summary.contains("a21026"))
        .expect("SO2 departure found");
    // An officer confirms it.
    for status in [pb::ReviewStatus::Dispatched, pb::ReviewStatus::Confirmed] {
        s.enforcement
            .review_anomaly(pb::ReviewAnomalyRequest {
                id: alarm.id.clone(),
                status: status as i32,
                note: "on-site check: span gas cylinder swapped".into(),
                reviewer: "officer 7".into(),
            })
            .await
            .expect("review");
    }

    // The dataset carries the label on the minutes the confirmed anomaly covers, and only there.
    let mut stream = models
        .export_dataset(pb::ExportDatasetRequest {
            outlet_ids: vec![OUTLET.into()],
            from_ms: T0 + 2 * DAY * MINUTE,
            to_ms: T0 + 3 * DAY * MINUTE,
        })
        .await
        .expect("export")
        .into_inner();
    let mut rows = Vec::new();
    while let Some(chunk) = stream.message().await.expect("chunk") {
        assert!(!chunk.rows.is_empty() && chunk.rows.len() <= 1000);
        rows.extend(chunk.rows);
    }
    assert!(rows.len() > 1300, "{}", rows.len());
    for r in &rows {
        let covered = (alarm.start_ms..alarm.end_ms).contains(&r.minute_ms);
        assert_eq!(r.label == "CONFIRMED", covered, "{r:?}");
        if covered {
            assert!(r
                .label_kinds
                .contains(&(pb::AnomalyKind::ModelResidual as i32)));
        }
        assert!(
            r.values.contains_key("a21026_limit_fraction")
                && r.values.contains_key("flow_fraction")
        );
    }

    // Evaluation reads the same labels: the confirmed anomaly is found by this version.
    let eval = models
        .evaluate_model(pb::EvaluateModelRequest {
            id: id.clone(),
            from_ms: T0,
            to_ms: T0 + 3 * DAY * MINUTE,
        })
        .await
        .expect("evaluate")
        .into_inner();
    let label = eval
        .labels
        .iter()
        .find(|l| l.kind == pb::AnomalyKind::ModelResidual as i32)
        .expect("label kind");
    assert_eq!((label.confirmed, label.confirmed_found), (1, 1));
    assert_eq!(label.recall, 1.0);
    assert!(eval.has_precision && eval.precision_on_reviewed == 1.0);

    // The CLI writes the same rows as CSV for pandas.
    let csv = s.dir.path().join("dataset.csv");
    let addr = s.server.as_ref().expect("running").addr.to_string();
    let n = cems_sentinel::tools::models::export(
        &addr,
        vec![OUTLET.into()],
        T0 + 2 * DAY * MINUTE,
        T0 + 3 * DAY * MINUTE,
        &csv,
    )
    .await
    .expect("csv");
    assert_eq!(n, rows.len());
    let text = std::fs::read_to_string(&csv).expect("read csv");
    let header = text.lines().next().expect("header");
    assert!(header.starts_with("enterprise_id,outlet_id,minute_ms,production_fraction,"));
    assert!(header.ends_with(",label,label_kinds,flagged_kinds"));
    let confirmed = text
        .lines()
        .filter(|l| l.contains(",CONFIRMED,model_residual"))
        .count();
    assert_eq!(
        confirmed,
        rows.iter().filter(|r| r.label == "CONFIRMED").count()
    );
    assert!(confirmed > 0);
}

#[tokio::test]
async fn concurrent_training_of_one_outlet_gives_distinct_versions() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    push_all(&mut s, plant_with_low_so2(0..2 * DAY, 0..0, 1.0)).await;
    sync(&mut s, false).await;
    let req = pb::TrainRequest {
        outlet_ids: vec![OUTLET.into()],
        ..Default::default()
    };
    let (mut a, mut b) = (
        ModelServiceClient::new(s.channel.clone()),
        ModelServiceClient::new(s.channel.clone()),
    );
    let (ja, jb) = tokio::join!(train(&mut a, req.clone()), train(&mut b, req));
    assert_eq!(ja.state, pb::JobState::Done as i32, "{ja:?}");
    assert_eq!(jb.state, pb::JobState::Done as i32, "{jb:?}");
    let mut ids = [ja.model_ids[0].clone(), jb.model_ids[0].clone()];
    ids.sort();
    assert_eq!(
        ids,
        [format!("outlet:{OUTLET}@1"), format!("outlet:{OUTLET}@2")]
    );
    assert_eq!(list(&mut a, &format!("outlet:{OUTLET}")).await.len(), 2);
}

/// The batches' records as one batch (one atomic commit).
fn one_batch(batches: Vec<pb::RecordBatch>) -> Vec<pb::RecordBatch> {
    vec![pb::RecordBatch {
        seq: batches.first().map_or(1, |b| b.seq),
        records: batches.into_iter().flat_map(|b| b.records).collect(),
    }]
}

/// Polls until `done` holds for the versions of `scope` (the schedule runs in the background).
async fn wait_for_versions(
    models: &mut ModelServiceClient<Channel>,
    scope: &str,
    done: impl Fn(&[pb::ModelInfo]) -> bool,
) -> Vec<pb::ModelInfo> {
    for _ in 0..600 {
        let got = list(models, scope).await;
        if done(&got) {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("schedule never produced the expected versions of {scope}");
}

#[tokio::test]
async fn the_schedule_fits_first_models_then_refits_only_the_outlet_that_drifted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start_with(dir, |d| {
        let mut c = test_config(d);
        // A day of one plant in one batch (see below).
        c.ingest.max_batch_records = 5_000;
        c.retrain = Some(cems_sentinel::server::RetrainSchedule {
            every: std::time::Duration::from_millis(300),
            window_days: 14,
            activate: true,
            only_on_drift: true,
        });
        c
    })
    .await;
    register_plant(&mut s, "e1").await;
    register_plant(&mut s, "e2").await;
    let mut models = ModelServiceClient::new(s.channel.clone());

    // Two honest days of both plants: the schedule gives each outlet its first model, and activates it.
    for e in ["e1", "e2"] {
        push_all(&mut s, enterprise_with_low_so2(e, 0..2 * DAY, 0..0, 1.0)).await;
    }
    sync(&mut s, false).await;
    for e in ["e1", "e2"] {
        let v = wait_for_versions(&mut models, &format!("outlet:{e}-s1"), |v| {
            v.iter().any(|m| m.version == 1 && m.active)
        })
        .await;
        assert_eq!(v.len(), 1, "{v:#?}");
    }

    // A third day: e1 as before, e2's SO2 analyzer reading 60 % of the truth all day. Only e2 has drifted. Each
    // day goes in as one batch, so the schedule (running in the background) sees all of it or none of it.
    push_all(
        &mut s,
        one_batch(enterprise_with_low_so2("e1", 2 * DAY..3 * DAY, 0..0, 1.0)),
    )
    .await;
    push_all(
        &mut s,
        one_batch(enterprise_with_low_so2(
            "e2",
            2 * DAY..3 * DAY,
            2 * DAY..3 * DAY,
            0.6,
        )),
    )
    .await;
    sync(&mut s, false).await;
    let v2 = wait_for_versions(&mut models, "outlet:e2-s1", |v| {
        v.iter().any(|m| m.version == 2 && m.active)
    })
    .await;
    let newest = v2.iter().find(|m| m.version == 2).expect("v2");
    assert!(
        newest.training_to_ms > T0 + (3 * DAY - 2) * MINUTE,
        "{newest:?}"
    );
    // A few more runs of the schedule: the outlet that still fits its model keeps it, unrefitted.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let v1 = list(&mut models, "outlet:e1-s1").await;
    assert_eq!(v1.len(), 1, "{v1:#?}");
    assert!(v1[0].active);
    // Nor is e2 refitted again: nothing arrived since its new version was fitted.
    let e2 = list(&mut models, "outlet:e2-s1").await;
    assert_eq!(e2.len(), 2, "refitted without new data: {e2:#?}");
}

/// Minutes `range` of a plant whose load peaks every afternoon (610–990 kW) and whose SO2 follows it; from minute
/// `cheat_from`, the stack's record is withheld whenever production passes 950 kW.
fn peaking_plant(range: std::ops::Range<i64>, cheat_from: i64) -> Vec<pb::RecordBatch> {
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    let minutes: Vec<i64> = range.collect();
    minutes
        .chunks(60)
        .enumerate()
        .map(|(n, chunk)| pb::RecordBatch {
            seq: n as u64 + 1,
            records: chunk
                .iter()
                .flat_map(|&i| {
                    let t = T0 + i * MINUTE;
                    let angle = std::f64::consts::TAU * ((i % DAY) as f64 / DAY as f64 - 0.33);
                    let load = 800.0 + 180.0 * angle.sin() + 5.0 * noise(i, 1);
                    let mut out = vec![
                        record("e1-p1", t, vec![measurement("power_kw", r1(load))]),
                        record(
                            "e1-t1",
                            t,
                            vec![measurement("power_kw", r1(150.0 + 2.0 * noise(i, 2)))],
                        ),
                    ];
                    if i < cheat_from || load <= 950.0 {
                        let so2 = 35.0 * (-0.2 + 0.9 * load / 800.0) + 1.0 * noise(i, 3);
                        out.push(record(
                            "e1-s1",
                            t,
                            vec![
                                measurement("a21026", r1(so2)),
                                measurement("a19001", r1(6.5 + 0.2 * noise(i, 4))),
                                measurement("a00000", r1(410.0 * load / 800.0 + 5.0 * noise(i, 5))),
                            ],
                        ));
                    }
                    out
                })
                .collect(),
        })
        .collect()
}

#[tokio::test]
async fn an_activated_outlet_model_lets_selective_gaps_at_the_load_peaks_be_found() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    let mut models = ModelServiceClient::new(s.channel.clone());
    // Five honest days, an outlet model fitted on them and activated: SO2 follows production.
    push_all(&mut s, peaking_plant(0..5 * DAY, i64::MAX)).await;
    sync(&mut s, false).await;
    let job = train_and_activate(&mut models).await;
    assert_eq!(job.state, pb::JobState::Done as i32, "{job:?}");
    let model_id = job.model_ids[0].clone();
    let info = list(&mut models, &format!("outlet:{OUTLET}")).await;
    assert!(info[0]
        .targets
        .iter()
        .any(|t| t.target == "a21026_limit_fraction" && t.accepted));

    // Eight more days; from day 6 the record goes missing at every afternoon peak.
    push_all(&mut s, peaking_plant(5 * DAY..13 * DAY, 6 * DAY)).await;
    sync(&mut s, true).await;
    let found = list_all(
        &mut s,
        pb::ListAnomaliesRequest {
            kinds: vec![pb::AnomalyKind::SelectiveGap as i32],
            ..Default::default()
        },
    )
    .await;
    let gap = found
        .iter()
        .find(|a| a.summary.contains(&model_id))
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert!(
        gap.evidence["p_value_model"] < gap.evidence["alpha"],
        "{gap:?}"
    );
    assert!(gap.evidence["gaps_predicted_high"] >= 3.0, "{gap:?}");
    assert!(gap.start_ms >= T0 + 6 * DAY * MINUTE, "{gap:?}");
}

use crate::common::process::{self, Process};
use crate::common::*;
use cems_sentinel::pb;
use cems_sentinel::pb::enforcement_service_client::EnforcementServiceClient;
use cems_sentinel::pb::ingest_service_client::IngestServiceClient;
use cems_sentinel::pb::registry_service_client::RegistryServiceClient;
use std::path::Path;
use std::process::Command;
use tonic::transport::Channel;

/// Authentication has its own tests (tests/auth.rs); these are about what survives a kill.
async fn spawn_binary(dir: &Path) -> Process {
    process::spawn(dir, &["--insecure-no-auth"]).await
}

impl Process {
    fn ingest(&self) -> IngestServiceClient<Channel> {
        IngestServiceClient::new(self.channel.clone())
    }
}

async fn register_via(channel: &Channel, e: &str) {
    let mut probe = TestServerLike {
        registry: RegistryServiceClient::new(channel.clone()),
    };
    probe.register(e).await;
}

struct TestServerLike {
    registry: RegistryServiceClient<Channel>,
}

impl TestServerLike {
    async fn register(&mut self, e: &str) {
        // Same topology as common::register_plant, through the child's gRPC port.
        let reg = &mut self.registry;
        reg.upsert_enterprise(pb::Enterprise {
            id: e.into(),
            name: e.into(),
            region: "r1".into(),
            ..Default::default()
        })
        .await
        .expect("enterprise");
        reg.upsert_outlet(pb::Outlet {
            id: format!("{e}-s1"),
            enterprise_id: e.into(),
            name: "1#".into(),
            kind: pb::OutletKind::Stack as i32,
            reference_o2_pct: 6.0,
            ..Default::default()
        })
        .await
        .expect("outlet");
        for (id, role, rated) in [
            ("p1", pb::MeterRole::Production, 1000.0),
            ("t1", pb::MeterRole::Treatment, 200.0),
        ] {
            reg.upsert_meter(pb::Meter {
                id: format!("{e}-{id}"),
                enterprise_id: e.into(),
                role: role as i32,
                outlet_ids: vec![format!("{e}-s1")],
                rated_kw: rated,
                ..Default::default()
            })
            .await
            .expect("meter");
        }
    }
}

async fn count_points(channel: &Channel, source: &str) -> usize {
    let mut c = IngestServiceClient::new(channel.clone());
    let mut stream = c
        .read_records(pb::ReadRecordsRequest {
            source_id: source.into(),
            ..Default::default()
        })
        .await
        .expect("read")
        .into_inner();
    let mut n = 0;
    while let Some(r) = stream.message().await.expect("r") {
        n += r.values.len();
    }
    n
}

async fn all_anomalies(channel: &Channel) -> Vec<pb::Anomaly> {
    let mut c = EnforcementServiceClient::new(channel.clone());
    c.list_anomalies(pb::ListAnomaliesRequest {
        page_size: 1000,
        ..Default::default()
    })
    .await
    .expect("list")
    .into_inner()
    .anomalies
}

#[tokio::test]
async fn kill_9_right_after_an_ack_loses_no_acknowledged_data_and_no_anomaly() {
    let dir = tempfile::tempdir().expect("tmp");
    // Scrubber off 300..420, day of 720 minutes in 24 batches of 30 minutes; SIGKILL after batches 5, 12 and 19.
    let batches = plant_batches("e1", 0..720, 300..420, 30);
    let kill_after = [5usize, 12, 19];
    let mut proc = spawn_binary(dir.path()).await;
    register_via(&proc.channel, "e1").await;
    let mut acked_points = 0usize;
    for (i, b) in batches.into_iter().enumerate() {
        let ack = proc.ingest().write(b).await.expect("write").into_inner();
        assert!(ack.rejected.is_empty());
        acked_points += ack.accepted as usize;
        if kill_after.contains(&i) {
            proc.kill9();
            proc = spawn_binary(dir.path()).await;
            // Every acknowledged measurement is back.
            let stored: usize = futures_count(&proc.channel, &["e1-s1", "e1-p1", "e1-t1"]).await;
            assert_eq!(stored, acked_points, "after kill at batch {i}");
        }
    }
    proc.ingest()
        .sync(pb::SyncRequest { finalize: true })
        .await
        .expect("sync");
    let anomalies = all_anomalies(&proc.channel).await;
    assert_eq!(
        anomalies.len(),
        1,
        "exactly one episode, not lost and not doubled: {anomalies:#?}"
    );
    assert_eq!(
        (anomalies[0].start_ms, anomalies[0].end_ms),
        (T0 + 300 * MINUTE, T0 + 420 * MINUTE)
    );
    proc.kill9();
}

async fn futures_count(channel: &Channel, sources: &[&str]) -> usize {
    let mut total = 0;
    for s in sources {
        total += count_points(channel, s).await;
    }
    total
}

#[tokio::test]
async fn sigterm_finishes_cleanly_and_restart_resumes_detection() {
    let dir = tempfile::tempdir().expect("tmp");
    let batches = plant_batches("e1", 0..720, 300..420, 30);
    let (first, rest) = batches.split_at(11); // stop mid-episode (minute 330)
    let proc = spawn_binary(dir.path()).await;
    register_via(&proc.channel, "e1").await;
    for b in first {
        proc.ingest().write(b.clone()).await.expect("write");
    }
    let mut proc = proc;
    let mut child = proc.child.take().expect("child");
    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(exit.success(), "SIGTERM exits 0, got {exit:?}");

    let proc = spawn_binary(dir.path()).await;
    for b in rest {
        proc.ingest().write(b.clone()).await.expect("write");
    }
    proc.ingest()
        .sync(pb::SyncRequest { finalize: true })
        .await
        .expect("sync");
    let anomalies = all_anomalies(&proc.channel).await;
    assert_eq!(anomalies.len(), 1, "{anomalies:#?}");
    assert_eq!(
        (anomalies[0].start_ms, anomalies[0].end_ms),
        (T0 + 300 * MINUTE, T0 + 420 * MINUTE)
    );
    proc.kill9();
}

#[tokio::test]
async fn in_process_restart_keeps_registry_data_and_reviews() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    for b in plant_batches("e1", 0..600, 100..200, 60) {
        s.ingest.write(b).await.expect("w");
    }
    s.ingest
        .sync(pb::SyncRequest { finalize: true })
        .await
        .expect("sync");
    let a = list_all(&mut s, pb::ListAnomaliesRequest::default())
        .await
        .remove(0);
    s.enforcement
        .review_anomaly(pb::ReviewAnomalyRequest {
            id: a.id.clone(),
            status: pb::ReviewStatus::Dispatched as i32,
            note: "team 3".into(),
            reviewer: "zhao".into(),
        })
        .await
        .expect("review");
    let dir = s.stop().await;
    let mut s = start_with(dir, test_config).await;
    let topo = s
        .registry
        .get_topology(pb::GetTopologyRequest {
            enterprise_id: "e1".into(),
        })
        .await
        .expect("topo")
        .into_inner();
    assert_eq!(topo.meters.len(), 2);
    assert_eq!(read_all(&mut s, "e1-s1").await.len(), 600);
    let b = s
        .enforcement
        .get_anomaly(pb::GetAnomalyRequest { id: a.id })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(b.status, pb::ReviewStatus::Dispatched as i32);
    assert_eq!(b.note, "team 3");
}

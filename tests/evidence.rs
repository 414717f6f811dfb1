//! The copy of record end to end: gRPC and HJ 212 receipts in the log, an anomaly's bundle exported over gRPC and
//! checked offline, and each kind of tampering caught with its reason.

use crate::common::*;
use cems_sentinel::domain::secret::hex;
use cems_sentinel::hj212::frame::encode;
use cems_sentinel::hj212::Framer;
use cems_sentinel::ledger::bundle::BundleError;
use cems_sentinel::ledger::SignedHeadFile;
use cems_sentinel::pb;
use cems_sentinel::tools::evidence::{check_extends, export, verify_dir};
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Minutes of e1's stack that arrive over HJ 212 instead of gRPC.
const HJ212_MINUTES: std::ops::Range<i64> = 400..405;

/// e1 (scrubber off 300..420) and e2 (clean) in the same batches, as one monitoring platform sends them.
fn shared_batches() -> Vec<pb::RecordBatch> {
    let e1 = plant_batches("e1", 0..720, 300..420, 30);
    let e2 = plant_batches("e2", 0..720, 0..0, 30);
    e1.into_iter()
        .zip(e2)
        .map(|(mut a, b)| {
            a.records.retain(|r| {
                !(r.source_id == "e1-s1" && HJ212_MINUTES.contains(&((r.time_ms - T0) / MINUTE)))
            });
            a.records.extend(b.records);
            a
        })
        .collect()
}

/// Minute `i` of e1's stack as an HJ 212 minute-data packet (Beijing time), asking for an ack.
fn hj212_minute(i: i64) -> Vec<u8> {
    let t = T0 + i * MINUTE + 8 * 3_600_000;
    let secs = t / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // T0 is 2025-01-01; the minutes used stay on that day.
    assert_eq!(days, T0 / 86_400_000);
    let stamp = format!("20250101{:02}{:02}00", rem / 3600, rem % 3600 / 60);
    encode(&format!(
        "QN={stamp}000;ST=31;CN=2051;PW=123456;MN=e1-s1;Flag=5;CP=&&DataTime={stamp};\
         a21026-Avg=905.0,a21026-Flag=N;a19001-Avg=6.5,a19001-Flag=N;a00000-Avg=410.0,a00000-Flag=N&&"
    ))
}

async fn send_hj212(s: &TestServer) {
    let mut stream = tokio::net::TcpStream::connect(s.hj212_addr())
        .await
        .expect("connect");
    let mut framer = Framer::new();
    let mut buf = [0u8; 4096];
    for i in HJ212_MINUTES {
        stream.write_all(&hj212_minute(i)).await.expect("send");
        // Wait for the 9014 ack: the packet is durable.
        loop {
            if let Some(frame) = framer.next_frame() {
                let ack = cems_sentinel::hj212::Packet::parse(&frame.expect("frame").segment)
                    .expect("ack parses");
                assert_eq!(ack.cn.as_deref(), Some("9014"));
                break;
            }
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("ack in time")
                .expect("read");
            assert!(n > 0, "gateway closed the connection");
            framer.push(&buf[..n]);
        }
    }
}

fn copy_bundle(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(from).expect("bundle dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, to.path().join(path.file_name().expect("name"))).expect("copy");
    }
    to
}

fn edit(dir: &Path, name: &str, f: impl FnOnce(String) -> String) {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).expect("read");
    let changed = f(text.clone());
    assert_ne!(changed, text, "the edit of {name} changed nothing");
    std::fs::write(path, changed).expect("write");
}

#[tokio::test]
async fn an_exported_bundle_verifies_offline_and_each_tampering_fails_with_its_reason() {
    let mut s = start_with_gateway().await;
    register_plant(&mut s, "e1").await;
    register_plant(&mut s, "e2").await;
    s.registry
        .set_hj212_password(pb::SetHj212PasswordRequest {
            source_id: "e1-s1".into(),
            password: "123456".into(),
        })
        .await
        .expect("password");
    let empty = s
        .enforcement
        .get_log_head(pb::GetLogHeadRequest::default())
        .await
        .expect("head")
        .into_inner();
    assert_eq!(empty.tree_size, 0);
    push_all(&mut s, shared_batches()).await;
    send_hj212(&s).await;
    s.ingest
        .sync(pb::SyncRequest { finalize: true })
        .await
        .expect("sync");
    let head = s
        .enforcement
        .get_log_head(pb::GetLogHeadRequest::default())
        .await
        .expect("head")
        .into_inner();
    // 24 gRPC batches and 5 HJ 212 packets: one receipt each.
    assert_eq!(head.tree_size, 24 + 5);
    assert_eq!(head.public_key, empty.public_key);
    let key = hex(&head.public_key);

    let all = list_all(&mut s, pb::ListAnomaliesRequest::default()).await;
    let idle = all
        .iter()
        .find(|a| a.kind == pb::AnomalyKind::TreatmentNotRunning as i32)
        .expect("the idle scrubber is found");
    let got = s
        .enforcement
        .get_anomaly(pb::GetAnomalyRequest {
            id: idle.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    // Minutes 240..480 (the episode and an hour either side) are in batches 8..16 and the 5 HJ 212 receipts.
    assert_eq!(
        got.record_log_leaves,
        (8..16).chain(24..29).collect::<Vec<u64>>()
    );

    let out = tempfile::tempdir().expect("tempdir");
    let bundle = out.path().join("bundle");
    let files = export(&s.conn().await, &idle.id, &bundle)
        .await
        .expect("export");
    let records = String::from_utf8(files["records.jsonl"].clone()).expect("utf8");
    assert!(
        !records.contains("e2-"),
        "another enterprise's records are in e1's bundle"
    );
    assert!(records.contains("\"transport\":\"hj212\"") && records.contains("MN=e1-s1"));
    let leaves = String::from_utf8(files["leaves.jsonl"].clone()).expect("utf8");
    assert!(
        leaves.contains("MN e1-s1 (127.0.0.1:"),
        "the HJ 212 receipt names the device"
    );

    let v = verify_dir(&bundle, Some(&key))
        .expect("readable")
        .expect("verifies");
    assert_eq!(v.anomaly_id, idle.id);
    assert_eq!(v.leaves, 13);
    // Per minute of 240..480 three records of e1 (stack, two meters), less the five stack minutes HJ 212 carried,
    // plus those five packets; the batches are 30 minutes, so 240..480 is exactly 8 batches.
    assert_eq!(v.records, 240 * 3 - 5 + 5);
    assert_eq!(v.head.size, 29);

    // An altered value.
    let d = copy_bundle(&bundle);
    edit(d.path(), "records.jsonl", |t| {
        t.replacen("\"value\":2.", "\"value\":1.", 1)
    });
    let e = verify_dir(d.path(), Some(&key))
        .expect("readable")
        .unwrap_err();
    assert!(
        matches!(&e, BundleError::Digest(f) if f == "records.jsonl"),
        "{e}"
    );
    // A removed record.
    let d = copy_bundle(&bundle);
    edit(d.path(), "records.jsonl", |t| {
        t.lines().skip(1).map(|l| format!("{l}\n")).collect()
    });
    let e = verify_dir(d.path(), Some(&key))
        .expect("readable")
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("records.jsonl differs from the signed manifest"),
        "{e}"
    );
    // An altered anomaly: a lower score.
    let d = copy_bundle(&bundle);
    edit(d.path(), "anomaly.json", |t| {
        t.replacen("\"score\": ", "\"score\": 0.0", 1)
    });
    let e = verify_dir(d.path(), Some(&key))
        .expect("readable")
        .unwrap_err();
    assert!(
        matches!(&e, BundleError::Digest(f) if f == "anomaly.json"),
        "{e}"
    );
    // A forged signature.
    let d = copy_bundle(&bundle);
    edit(d.path(), "manifest.sig", |t| {
        let flipped = if t.starts_with('0') { "1" } else { "0" };
        format!("{flipped}{}", &t[1..])
    });
    let e = verify_dir(d.path(), Some(&key))
        .expect("readable")
        .unwrap_err();
    assert!(matches!(e, BundleError::Signature { .. }), "{e}");
    // Another key than the bureau's.
    let other = "ab".repeat(32);
    let e = verify_dir(&bundle, Some(&other))
        .expect("readable")
        .unwrap_err();
    assert!(matches!(e, BundleError::KeyMismatch { .. }), "{e}");
    // A missing file.
    let d = copy_bundle(&bundle);
    std::fs::remove_file(d.path().join("leaves.jsonl")).expect("rm");
    let e = verify_dir(d.path(), Some(&key))
        .expect("readable")
        .unwrap_err();
    assert!(e.to_string().contains("leaves.jsonl"), "{e}");

    // The key and the log survive a restart; the old bundle still verifies against the key.
    let dir = s.stop().await;
    let mut s = start_full_with(dir, test_config).await;
    let again = s
        .enforcement
        .get_log_head(pb::GetLogHeadRequest::default())
        .await
        .expect("head")
        .into_inner();
    assert_eq!(
        (
            again.tree_size,
            again.root.clone(),
            again.public_key.clone()
        ),
        (head.tree_size, head.root.clone(), head.public_key.clone())
    );
    assert!(verify_dir(&bundle, Some(&key)).expect("readable").is_ok());

    // The log only grows: the head in the bundle is provably a prefix of the log after more data arrives.
    push_all(&mut s, plant_batches("e1", 720..780, 0..0, 30)).await;
    let kept: SignedHeadFile =
        serde_json::from_slice(&std::fs::read(bundle.join("head.json")).expect("head.json"))
            .expect("a signed head");
    let grown = s
        .enforcement
        .get_log_head(pb::GetLogHeadRequest {
            consistent_with_size: kept.tree_size,
        })
        .await
        .expect("head")
        .into_inner();
    assert_eq!(grown.tree_size, 29 + 2);
    check_extends(&kept, &grown).expect("the grown log extends the kept head");
    // A kept head whose root was changed is caught; a proof for another size does not pass.
    let mut forged = kept.clone();
    forged.root = hex(&[7u8; 32]);
    assert!(check_extends(&forged, &grown)
        .unwrap_err()
        .contains("signature"));
    let mut other = grown.clone();
    other.consistent_with_size = 1;
    assert!(check_extends(&kept, &other).is_err());
    let beyond = s
        .enforcement
        .get_log_head(pb::GetLogHeadRequest {
            consistent_with_size: 1_000,
        })
        .await
        .expect_err("beyond the log");
    assert_eq!(beyond.code(), tonic::Code::OutOfRange);
    s.stop().await;
}

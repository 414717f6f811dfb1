use crate::common::*;
use cems_sentinel::pb;
use tonic::Code;

#[tokio::test]
async fn push_acks_every_batch_after_commit_and_data_reads_back_in_order() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    let batches = plant_batches("e1", 0..120, 0..0, 10);
    let n = batches.len();
    let mut acks = s
        .ingest
        .push(tokio_stream::iter(batches))
        .await
        .expect("push")
        .into_inner();
    let mut seqs = Vec::new();
    let mut accepted = 0;
    while let Some(ack) = acks.message().await.expect("ack") {
        assert!(ack.rejected.is_empty(), "{:?}", ack.rejected);
        seqs.push(ack.seq);
        accepted += ack.accepted;
    }
    assert_eq!(
        seqs,
        (1..=n as u64).collect::<Vec<_>>(),
        "one ack per batch, in order"
    );
    assert_eq!(accepted, 120 * 5);

    let stack = read_all(&mut s, "e1-s1").await;
    assert_eq!(stack.len(), 120);
    assert!(stack.windows(2).all(|w| w[0].time_ms < w[1].time_ms));
    let first = &stack[0];
    assert_eq!(first.time_ms, T0);
    let so2 = first
        .values
        .iter()
        .find(|m| m.code == "a21026")
        .expect("so2");
    let sent = plant_minute("e1", 0, &(0..0));
    let sent_so2 = sent[2]
        .values
        .iter()
        .find(|m| m.code == "a21026")
        .expect("sent SO2");
    assert_eq!(so2.value, sent_so2.value);
    assert_eq!(first.values.len(), 3);

    // Code filter and time window.
    let mut only = s
        .ingest
        .read_records(pb::ReadRecordsRequest {
            source_id: "e1-s1".into(),
            codes: vec!["a19001".into()],
            from_ms: T0 + 10 * MINUTE,
            to_ms: T0 + 20 * MINUTE,
        })
        .await
        .expect("read")
        .into_inner();
    let mut count = 0;
    while let Some(r) = only.message().await.expect("r") {
        assert_eq!(r.values.len(), 1);
        assert!(r.time_ms >= T0 + 10 * MINUTE && r.time_ms < T0 + 20 * MINUTE);
        count += 1;
    }
    assert_eq!(count, 10);
}

#[tokio::test]
async fn every_bad_input_is_rejected_precisely_and_the_rest_is_kept() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    // Three hours ahead: a drifting clock is minutes, this would make the real data behind it late.
    let future = cems_sentinel::ingest::system_now_ms() + 3 * 3_600_000;
    let mut flagged = measurement("a19001", 6.0);
    flagged.flag = 99;
    let batch = pb::RecordBatch {
        seq: 7,
        records: vec![
            record(
                "e1-s1",
                T0,
                vec![
                    measurement("a21026", 12.0),
                    measurement("a34013", f64::NAN),
                    measurement("", 1.0),
                    flagged,
                ],
            ),
            record("ghost", T0, vec![measurement("a21026", 1.0)]),
            record("e1-s1", 0, vec![measurement("a21026", 1.0)]),
            record("e1-s1", future, vec![measurement("a21026", 1.0)]),
            record(
                "e1-p1",
                T0,
                vec![
                    measurement("power_kw", f64::INFINITY),
                    measurement("energy_kwh", 10.0),
                ],
            ),
        ],
    };
    let ack = s.ingest.write(batch).await.expect("write").into_inner();
    assert_eq!(ack.seq, 7);
    assert_eq!(ack.accepted, 2, "{ack:?}");
    let by_record: Vec<(u32, &str)> = ack
        .rejected
        .iter()
        .map(|r| (r.record_index, r.code.as_str()))
        .collect();
    assert_eq!(
        by_record,
        vec![
            (0, "a34013"),
            (0, ""),
            (0, "a19001"),
            (1, ""),
            (2, ""),
            (3, ""),
            (4, "power_kw")
        ]
    );
    let reasons: Vec<&str> = ack.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert!(reasons[0].contains("not finite"));
    assert!(reasons[1].contains("empty code"));
    assert!(reasons[2].contains("unknown data flag 99"));
    assert!(reasons[3].contains("unknown source_id \"ghost\""));
    assert!(reasons[4].contains("must be > 0"));
    assert!(
        reasons[5].contains("at most 600 s of clock skew"),
        "{}",
        reasons[5]
    );
    assert!(reasons[6].contains("not finite"));
    assert_eq!(read_all(&mut s, "e1-s1").await.len(), 1);
    assert_eq!(
        read_all(&mut s, "e1-p1").await[0].values[0].code,
        "energy_kwh"
    );

    // Oversized batch: INVALID_ARGUMENT naming the limit, nothing stored.
    let big = pb::RecordBatch {
        seq: 8,
        records: (0..1_001)
            .map(|i| {
                record(
                    "e1-s1",
                    T0 + (i + 100) * MINUTE,
                    vec![measurement("a21026", 1.0)],
                )
            })
            .collect(),
    };
    let err = s.ingest.write(big).await.expect_err("too large");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("1000"), "{}", err.message());
    assert_eq!(read_all(&mut s, "e1-s1").await.len(), 1);

    // Unknown source on read: NOT_FOUND.
    let err = s
        .ingest
        .read_records(pb::ReadRecordsRequest {
            source_id: "ghost".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn duplicates_are_idempotent_and_rewrites_are_refused_keeping_the_original() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    let batch = |v: f64| pb::RecordBatch {
        seq: 1,
        records: vec![record(
            "e1-s1",
            T0,
            vec![measurement("a21026", 12.0), measurement("a19001", v)],
        )],
    };
    let first = s.ingest.write(batch(6.0)).await.expect("w").into_inner();
    assert_eq!((first.accepted, first.duplicates), (2, 0));
    let again = s.ingest.write(batch(6.0)).await.expect("w").into_inner();
    assert_eq!((again.accepted, again.duplicates), (2, 2));
    assert!(again.rejected.is_empty());
    let rewrite = s.ingest.write(batch(3.0)).await.expect("w").into_inner();
    assert_eq!((rewrite.accepted, rewrite.duplicates), (1, 1));
    assert_eq!(rewrite.rejected.len(), 1);
    assert_eq!(rewrite.rejected[0].code, "a19001");
    assert!(rewrite.rejected[0].reason.contains("conflicting rewrite"));
    let stored = read_all(&mut s, "e1-s1").await;
    assert_eq!(stored.len(), 1);
    let o2 = stored[0]
        .values
        .iter()
        .find(|m| m.code == "a19001")
        .expect("o2");
    assert_eq!(o2.value, 6.0, "the original stays");
}

#[tokio::test]
async fn out_of_order_batches_are_stored_in_time_order_and_detected_on_data_time() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    // Scrubber off 200..300; send the day in reverse batch order within the allowed lateness window.
    let mut batches = plant_batches("e1", 0..400, 200..300, 5);
    // Swap neighbours: every batch arrives after the one that follows it in time.
    for pair in batches.chunks_mut(2) {
        pair.reverse();
    }
    for b in batches {
        let ack = s.ingest.write(b).await.expect("w").into_inner();
        assert!(ack.rejected.is_empty());
    }
    let sync = s
        .ingest
        .sync(pb::SyncRequest { finalize: true })
        .await
        .expect("sync")
        .into_inner();
    assert_eq!(sync.watermark_ms, T0 + 399 * MINUTE);
    assert_eq!(sync.measurements_late_total, 0);
    let stored = read_all(&mut s, "e1-t1").await;
    assert_eq!(stored.len(), 400);
    assert!(stored.windows(2).all(|w| w[0].time_ms < w[1].time_ms));
    let anomalies = list_all(
        &mut s,
        pb::ListAnomaliesRequest {
            kinds: vec![pb::AnomalyKind::TreatmentNotRunning as i32],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(anomalies.len(), 1, "{anomalies:#?}");
    assert_eq!(anomalies[0].start_ms, T0 + 200 * MINUTE);
    assert_eq!(anomalies[0].end_ms, T0 + 300 * MINUTE);
}

#[tokio::test]
async fn data_later_than_the_allowed_lateness_is_stored_and_counted_late() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    for b in plant_batches("e1", 100..300, 0..0, 50) {
        s.ingest.write(b).await.expect("w");
    }
    // Minutes 0..10 arrive after the outlet's watermark moved 200 minutes past them (lateness is 30 min in tests).
    for b in plant_batches("e1", 0..10, 0..0, 10) {
        let ack = s.ingest.write(b).await.expect("w").into_inner();
        assert_eq!(ack.accepted, 50, "late data is still accepted and stored");
    }
    let sync = s
        .ingest
        .sync(pb::SyncRequest { finalize: false })
        .await
        .expect("sync")
        .into_inner();
    // 10 minutes × 5 measurements, of which the three CEMS channels and two power readings reach detection.
    assert_eq!(sync.measurements_late_total, 50);
    assert_eq!(read_all(&mut s, "e1-s1").await.len(), 210);
}

#[tokio::test]
async fn a_huge_id_or_code_is_quoted_in_short_not_echoed_whole() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    let huge = "x".repeat(1 << 20);
    let ack = s
        .ingest
        .write(pb::RecordBatch {
            seq: 1,
            records: vec![
                record(&huge, T0, vec![measurement("a21026", 1.0)]),
                record("e1-s1", T0, vec![measurement(&huge, 1.0)]),
            ],
        })
        .await
        .expect("write")
        .into_inner();
    assert_eq!(
        ack.rejected.len(),
        2,
        "{:?}",
        ack.rejected
            .iter()
            .map(|r| r.reason.len())
            .collect::<Vec<_>>()
    );
    for r in &ack.rejected {
        assert!(
            r.reason.len() < 300 && r.code.len() < 200,
            "{} + {} bytes",
            r.reason.len(),
            r.code.len()
        );
        assert!(
            r.reason.contains("1048576 bytes") || r.code.contains("1048576 bytes"),
            "{r:?}"
        );
    }
}

/// A `RecordBatch` on the wire whose `records` field has the wrong wire type: it cannot decode.
#[derive(Clone, PartialEq, prost::Message)]
struct UndecodableBatch {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(uint64, tag = "2")]
    records: u64,
}

#[tokio::test]
async fn a_message_that_does_not_decode_ends_a_push_stream_with_an_error_not_ok() {
    let s = start().await;
    let mut grpc = tonic::client::Grpc::new(s.channel.clone());
    grpc.ready().await.expect("ready");
    let codec = tonic_prost::ProstCodec::<UndecodableBatch, pb::PushAck>::default();
    let batches = tokio_stream::iter(vec![UndecodableBatch { seq: 1, records: 7 }]);
    let outcome = match grpc
        .streaming(
            tonic::Request::new(batches),
            http::uri::PathAndQuery::from_static("/sentinel.v1.IngestService/Push"),
            codec,
        )
        .await
    {
        Ok(resp) => {
            let mut acks = resp.into_inner();
            loop {
                match acks.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => break Ok(()),
                    Err(status) => break Err(status),
                }
            }
        }
        Err(status) => Err(status),
    };
    let status = outcome.expect_err("the stream must not end OK");
    assert!(status.message().contains("decode"), "{status:?}");
}

#[tokio::test]
async fn a_stop_ends_open_push_and_watch_streams_and_completes_in_seconds() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::RecordBatch>(4);
    let mut acks = s
        .ingest
        .push(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("push")
        .into_inner();
    tx.send(plant_batches("e1", 0..10, 0..0, 10).remove(0))
        .await
        .expect("send");
    let first = acks.message().await.expect("ack").expect("an ack");
    assert!(first.rejected.is_empty());
    let mut watch = s
        .enforcement
        .watch_anomalies(pb::WatchAnomaliesRequest::default())
        .await
        .expect("watch")
        .into_inner();
    // The client keeps both streams open (tx is alive); the stop must not wait for it.
    let server = s.server.take().expect("running");
    tokio::time::timeout(std::time::Duration::from_secs(15), server.shutdown())
        .await
        .expect("the stop finishes in seconds with streams open")
        .expect("clean stop");
    let end = acks.message().await;
    assert!(
        matches!(&end, Err(st) if st.code() == tonic::Code::Unavailable) || matches!(end, Ok(None)),
        "{end:?}"
    );
    assert!(watch.message().await.is_err() || matches!(watch.message().await, Ok(None)));
    drop(tx);
}

#[tokio::test]
async fn a_record_with_more_values_than_a_batch_may_hold_is_refused_whole() {
    let mut s = start().await;
    register_plant(&mut s, "e1").await;
    let values: Vec<pb::Measurement> = (0..150_000)
        .map(|i| measurement(&format!("c{i}"), 1.0))
        .collect();
    let err = s
        .ingest
        .write(pb::RecordBatch {
            seq: 1,
            records: vec![record("e1-s1", T0, values)],
        })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("150000 measurements"), "{err:?}");
    assert!(read_all(&mut s, "e1-s1").await.is_empty());
}

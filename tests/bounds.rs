//! Bounded under abuse: the built server's own memory during a flood, a polite client's acks beside it, and a stop
//! with streams open. The server is a child process so its resident set is its own.

use crate::common::process::{self, Process};
use crate::common::*;
use cems_sentinel::pb;
use cems_sentinel::pb::admin_service_client::AdminServiceClient;
use cems_sentinel::pb::ingest_service_client::IngestServiceClient;
use cems_sentinel::pb::registry_service_client::RegistryServiceClient;
use cems_sentinel::tools::feed::{connect_as, percentile, Conn};
use std::time::{Duration, Instant};

const BUDGET_MIB: f64 = 256.0;
/// What the budget does not count: the allocator's slack and fragmentation, tonic's buffers, a decoded batch per
/// stream holding a decode turn, sled's write buffers.
const MARGIN_MIB: f64 = 128.0;
const FLOOD_STREAMS: usize = 40;
const CODES: [&str; 10] = [
    "a21026", "a21002", "a34013", "a19001", "a01012", "a01011", "a01013", "a01014", "a00000",
    "a21005",
];

async fn admin(p: &Process, dir: &std::path::Path) -> Conn {
    let token = std::fs::read_to_string(dir.join("admin.token")).expect("admin token");
    connect_as(&p.addr, Some(token.trim()))
        .await
        .expect("admin")
}

/// An enterprise with `outlets` stacks `{e}-s{i}`, and a source principal for it; returns its token.
async fn enterprise_with_source(admin: &Conn, e: &str, outlets: usize) -> String {
    let mut reg = RegistryServiceClient::new(admin.clone());
    reg.upsert_enterprise(pb::Enterprise {
        id: e.into(),
        name: e.into(),
        region: "r1".into(),
        ..Default::default()
    })
    .await
    .expect("enterprise");
    for i in 0..outlets {
        reg.upsert_outlet(pb::Outlet {
            id: format!("{e}-s{i}"),
            enterprise_id: e.into(),
            name: format!("{i}#"),
            kind: pb::OutletKind::Stack as i32,
            reference_o2_pct: 6.0,
            ..Default::default()
        })
        .await
        .expect("outlet");
    }
    AdminServiceClient::new(admin.clone())
        .create_principal(pb::CreatePrincipalRequest {
            name: format!("{e} platform"),
            role: pb::Role::Source as i32,
            enterprises: vec![e.into()],
            ..Default::default()
        })
        .await
        .expect("principal")
        .into_inner()
        .token
}

/// `records` minutes of all [`CODES`] for `source` from minute `from`.
fn batch(source: &str, seq: u64, from: i64, records: i64) -> pb::RecordBatch {
    pb::RecordBatch {
        seq,
        records: (from..from + records)
            .map(|m| {
                record(
                    source,
                    T0 + m * MINUTE,
                    CODES
                        .iter()
                        .enumerate()
                        .map(|(c, code)| measurement(code, noise(m, c as u64) + 50.0))
                        .collect(),
                )
            })
            .collect(),
    }
}

/// One polite write: 1 record of 5 values; its ack latency, ms.
async fn polite_write(client: &mut IngestServiceClient<Conn>, minute: i64) -> f64 {
    let mut b = batch("polite-s0", minute as u64, minute, 1);
    b.records[0].values.truncate(5);
    let started = Instant::now();
    let ack = client.write(b).await.expect("polite write").into_inner();
    assert_eq!(ack.accepted, 5, "{ack:?}");
    started.elapsed().as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_stays_within_the_memory_budget_and_a_polite_client_keeps_its_latency() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = process::spawn(dir.path(), &["--memory-budget-mib", "256"]).await;
    let admin = admin(&server, dir.path()).await;
    let flood_token = enterprise_with_source(&admin, "flood", FLOOD_STREAMS).await;
    let polite_token = enterprise_with_source(&admin, "polite", 1).await;
    let polite_conn = connect_as(&server.addr, Some(&polite_token))
        .await
        .expect("polite");
    let mut polite = IngestServiceClient::new(polite_conn);

    // Idle: the polite client alone.
    let mut minute = 0;
    let mut idle = Vec::new();
    for _ in 0..60 {
        idle.push(polite_write(&mut polite, minute).await);
        minute += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    idle.drain(..10); // connection warm-up
    let baseline = server.rss_mib();

    // One record of 1,000,000 values: refused whole (its message is over the size limit, so it is never decoded).
    let huge = pb::RecordBatch {
        seq: 1,
        records: vec![record(
            "flood-s0",
            T0,
            (0..1_000_000)
                .map(|i| measurement("a21026", f64::from(i)))
                .collect(),
        )],
    };
    let refused = IngestServiceClient::new(
        connect_as(&server.addr, Some(&flood_token))
            .await
            .expect("flood"),
    )
    .max_encoding_message_size(64 << 20)
    .write(huge)
    .await
    .expect_err("a million values in one record");
    assert!(
        matches!(
            refused.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted | tonic::Code::InvalidArgument
        ),
        "{refused:?}"
    );
    let after_huge = server.rss_mib();
    assert!(
        after_huge < baseline + 64.0,
        "RSS {after_huge:.0} MiB after the 1,000,000-value record, {baseline:.0} before"
    );

    // The flood: 40 Push streams of 50,000-measurement batches, each to its own stack, as fast as the server takes
    // them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flooders = Vec::new();
    for k in 0..FLOOD_STREAMS {
        let conn = connect_as(&server.addr, Some(&flood_token))
            .await
            .expect("flood");
        let stop = stop.clone();
        flooders.push(tokio::spawn(async move {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let source = format!("flood-s{k}");
            let feeder = tokio::spawn({
                let stop = stop.clone();
                async move {
                    let mut b = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if tx
                            .send(batch(&source, b, b as i64 * 5000, 5000))
                            .await
                            .is_err()
                        {
                            break;
                        }
                        b += 1;
                    }
                }
            });
            let mut acked = 0u64;
            let mut exhausted = 0u64;
            if let Ok(resp) = IngestServiceClient::new(conn)
                .max_decoding_message_size(64 << 20)
                .push(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
            {
                let mut acks = resp.into_inner();
                loop {
                    match acks.message().await {
                        Ok(Some(a)) => acked += u64::from(a.accepted),
                        Ok(None) => break,
                        Err(s) => {
                            if s.code() == tonic::Code::ResourceExhausted {
                                exhausted += 1;
                            }
                            break;
                        }
                    }
                }
            }
            feeder.abort();
            (acked, exhausted)
        }));
    }
    let mut during = Vec::new();
    let mut peak: f64 = baseline;
    let flood_started = Instant::now();
    while flood_started.elapsed() < Duration::from_secs(20) {
        during.push(polite_write(&mut polite, minute).await);
        minute += 1;
        peak = peak.max(server.rss_mib());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut flooded = 0;
    for f in flooders {
        // The feeders stop; each stream ends once its queued batches are acknowledged.
        if let Ok(Ok((acked, _))) = tokio::time::timeout(Duration::from_secs(60), f).await {
            flooded += acked;
        }
    }
    // Everything acknowledged is detected, then memory should come back.
    IngestServiceClient::new(admin.clone())
        .sync(pb::SyncRequest { finalize: false })
        .await
        .expect("sync");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = server.rss_mib();

    let idle_p99 = percentile(&mut idle, 99.0);
    let flood_p99 = percentile(&mut during, 99.0);
    let flood_p50 = percentile(&mut during, 50.0);
    eprintln!(
        "flood: {flooded} measurements acknowledged; RSS baseline {baseline:.0} MiB, peak {peak:.0} MiB, after \
         {after:.0} MiB (budget {BUDGET_MIB} MiB); polite p99 idle {idle_p99:.1} ms, during flood p50 {flood_p50:.1} \
         ms p99 {flood_p99:.1} ms ({} writes)",
        during.len()
    );
    assert!(flooded > 1_000_000, "the flood did flood: {flooded}");
    // What stays after the flood is what the data left (detection state of 40 stacks a month deep, caches); what
    // came and went above it is in-flight memory, which the budget bounds.
    assert!(
        peak < after + BUDGET_MIB + MARGIN_MIB,
        "peak RSS {peak:.0} MiB over {after:.0} MiB (what the data left) + budget + margin"
    );
    assert!(
        after < peak - BUDGET_MIB / 2.0,
        "RSS falls back after the flood: {after:.0} MiB vs peak {peak:.0} MiB"
    );
    // No multi-second stall of a polite client (before the budget: 3-24 s). Its p99 is not yet within 10x of idle
    // (docs/BENCHMARKS.md has the figures); that bound is not asserted.
    assert!(
        flood_p99 < 2_000.0,
        "polite p99 {flood_p99:.1} ms during the flood vs {idle_p99:.1} ms idle"
    );
    server.kill9();
}

#[tokio::test]
async fn sigterm_with_push_streams_open_exits_0_within_seconds() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = process::spawn(dir.path(), &[]).await;
    let admin = admin(&server, dir.path()).await;
    let token = enterprise_with_source(&admin, "e", 4).await;
    let mut streams = Vec::new();
    for k in 0..4 {
        let conn = connect_as(&server.addr, Some(&token)).await.expect("conn");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(batch(&format!("e-s{k}"), 1, 0, 60))
            .await
            .expect("queue");
        let mut acks = IngestServiceClient::new(conn)
            .push(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("push")
            .into_inner();
        let first = acks.message().await.expect("ack").expect("one");
        assert_eq!(first.accepted, 600);
        // The stream stays open: the client neither sends nor closes.
        streams.push((tx, acks));
    }
    let started = Instant::now();
    let exit = server.sigterm(Duration::from_secs(8)).await;
    let took = started.elapsed();
    let exit = exit.unwrap_or_else(|| panic!("still running {took:?} after SIGTERM"));
    assert!(exit.success(), "SIGTERM exits 0, got {exit:?}");
    // Each open stream was told why it ended.
    for (_tx, mut acks) in streams {
        match acks.message().await {
            Err(s) => assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}"),
            Ok(other) => panic!("the stream should end with UNAVAILABLE, got {other:?}"),
        }
    }
    eprintln!("SIGTERM with 4 Push streams open: exit 0 in {took:?}");
}

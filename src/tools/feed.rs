//! Feeding a server: register a scenario's registry and stream its minutes through `Push`, as a monitoring platform
//! would.

use crate::api::{
    enterprise_to_pb, meter_to_pb, outlet_to_pb, points_to_records, restriction_to_pb,
};
use crate::domain::{Outlet, OutletKind};
use crate::pb;
use crate::pb::ingest_service_client::IngestServiceClient;
use crate::pb::registry_service_client::RegistryServiceClient;
use crate::sim::Scenario;
use anyhow::Context as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Connects to `addr` (`host:port` or a URL).
///
/// # Errors
/// When the server cannot be reached.
pub async fn connect(addr: &str) -> anyhow::Result<Channel> {
    let uri = if addr.starts_with("http") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Channel::from_shared(uri.clone())?
        .connect()
        .await
        .with_context(|| format!("connecting to {uri}"))
}

/// Registers every enterprise, outlet (stacks before their bypasses), meter and order of the scenario.
///
/// # Errors
/// The first refused registration.
pub async fn register(channel: &Channel, s: &Scenario) -> anyhow::Result<()> {
    let mut reg = RegistryServiceClient::new(channel.clone());
    for e in &s.enterprises {
        reg.upsert_enterprise(enterprise_to_pb(e.clone())).await?;
    }
    let (stacks, bypasses): (Vec<&Outlet>, Vec<&Outlet>) =
        s.outlets.iter().partition(|o| o.kind == OutletKind::Stack);
    for o in stacks.into_iter().chain(bypasses) {
        reg.upsert_outlet(outlet_to_pb(o.clone())).await?;
    }
    for m in &s.meters {
        reg.upsert_meter(meter_to_pb(m.clone())).await?;
    }
    for r in &s.restrictions {
        reg.upsert_restriction(restriction_to_pb(r.clone())).await?;
    }
    Ok(())
}

/// What a stream achieved.
#[derive(Debug, Clone, Default)]
pub struct StreamStats {
    /// Batches acknowledged.
    pub batches: u64,
    /// Measurements sent.
    pub measurements: u64,
    /// Measurements accepted.
    pub accepted: u64,
    /// Measurements rejected.
    pub rejected: u64,
    /// Wall time from first send to last ack.
    pub elapsed: Duration,
    /// Per-batch time from send to durable ack (ms).
    pub ack_latency_ms: Vec<f64>,
}

/// Generates the scenario's minutes into batches of `minutes_per_batch` minutes.
pub fn batches(s: &mut Scenario, minutes_per_batch: i64) -> Vec<pb::RecordBatch> {
    let total = s.total_minutes();
    let mut out = Vec::new();
    let mut m = 0;
    while m < total {
        let end = (m + minutes_per_batch).min(total);
        let mut points = Vec::new();
        for minute in m..end {
            points.extend(s.minute(minute));
        }
        out.push(pb::RecordBatch {
            seq: out.len() as u64 + 1,
            records: points_to_records(points),
        });
        m = end;
    }
    out
}

/// Streams batches through one `Push` stream, keeping the server busy while acks come back. With `minutes_per_sec`,
/// paces data time at that many data minutes per wall second (e.g. 1/60 = real time).
///
/// # Errors
/// A failed stream or a refused batch.
pub async fn push(
    channel: &Channel,
    batches: Vec<pb::RecordBatch>,
    pace: Option<(i64, f64)>,
) -> anyhow::Result<StreamStats> {
    let mut client = IngestServiceClient::new(channel.clone());
    let sent_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let measurements: u64 = batches
        .iter()
        .flat_map(|b| &b.records)
        .map(|r| r.values.len() as u64)
        .sum();
    let (tx, rx) = mpsc::channel::<pb::RecordBatch>(4);
    let started = Instant::now();
    let producer_sent = sent_at.clone();
    let producer = tokio::spawn(async move {
        for (i, b) in batches.into_iter().enumerate() {
            if let Some((minutes_per_batch, minutes_per_sec)) = pace {
                let due =
                    Duration::from_secs_f64(i as f64 * minutes_per_batch as f64 / minutes_per_sec);
                tokio::time::sleep_until(tokio::time::Instant::from_std(started + due)).await;
            }
            if let Ok(mut m) = producer_sent.lock() {
                m.insert(b.seq, Instant::now());
            }
            if tx.send(b).await.is_err() {
                break;
            }
        }
    });
    let mut acks = client.push(ReceiverStream::new(rx)).await?.into_inner();
    let mut stats = StreamStats {
        measurements,
        ..StreamStats::default()
    };
    while let Some(ack) = acks.message().await? {
        stats.batches += 1;
        stats.accepted += u64::from(ack.accepted);
        stats.rejected += ack.rejected.len() as u64;
        if let Some(t) = sent_at.lock().ok().and_then(|mut m| m.remove(&ack.seq)) {
            stats
                .ack_latency_ms
                .push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    producer.await?;
    stats.elapsed = started.elapsed();
    Ok(stats)
}

/// The p-th percentile (0..100) of `v` (sorted in place).
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[idx.min(v.len() - 1)]
}

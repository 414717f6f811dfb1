//! `sentinel bench ingest`: durable-ack ingest throughput over real gRPC into a real store, with detection running.
//! Figures are printed, never asserted: machines here are noisy.

use super::feed::{self, percentile};
use super::table::render;
use crate::pb;
use crate::pb::ingest_service_client::IngestServiceClient;
use crate::server::{self, ServeConfig};
use crate::sim::{Scenario, SimConfig};
use std::time::Instant;

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Simulated enterprises (each one stack, 1–3 treatment meters, a production meter).
    pub enterprises: usize,
    /// Hours of minute data.
    pub hours: u32,
    /// Concurrent `Push` streams (sources split between them).
    pub streams: usize,
    /// Data minutes per batch.
    pub minutes_per_batch: i64,
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs the ingest benchmark and prints its table.
///
/// # Errors
/// When the service cannot start or a stream fails.
pub async fn ingest(opts: BenchOptions) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = ServeConfig::new(dir.path().to_path_buf());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let running = server::start(config, listener).await?;
    let channel = feed::connect(&running.addr.to_string()).await?;
    let days = opts.hours.div_ceil(24);
    let mut scenario = Scenario::new(SimConfig {
        enterprises: opts.enterprises,
        days,
        ..SimConfig::default()
    });
    feed::register(&channel, &scenario).await?;
    let outlets = scenario.outlets.len();
    // Generate first, so generation is not measured; keep only the requested hours.
    let mut batches = feed::batches(&mut scenario, opts.minutes_per_batch);
    batches.truncate((i64::from(opts.hours) * 60 / opts.minutes_per_batch).max(1) as usize);
    // Split each batch's records between the streams by source, so each stream stays in time order per source.
    let streams = opts.streams.max(1);
    let mut per_stream: Vec<Vec<pb::RecordBatch>> = vec![Vec::new(); streams];
    for b in batches {
        let mut parts: Vec<Vec<pb::Record>> = vec![Vec::new(); streams];
        for r in b.records {
            let h = r
                .source_id
                .bytes()
                .fold(0usize, |h, c| h.wrapping_mul(31).wrapping_add(c as usize));
            parts[h % streams].push(r);
        }
        for (i, records) in parts.into_iter().enumerate() {
            let seq = per_stream[i].len() as u64 + 1;
            per_stream[i].push(pb::RecordBatch { seq, records });
        }
    }
    let rss_before = rss_kib();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for batches in per_stream {
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            feed::push(&channel, batches, None).await
        }));
    }
    let mut measurements = 0u64;
    let mut latencies = Vec::new();
    for t in tasks {
        let s = t.await??;
        measurements += s.accepted;
        latencies.extend(s.ack_latency_ms);
    }
    let acked_s = started.elapsed().as_secs_f64();
    IngestServiceClient::new(channel.clone())
        .sync(pb::SyncRequest { finalize: false })
        .await?;
    let detected_s = started.elapsed().as_secs_f64();
    let rss_after = rss_kib();
    let disk = dir
        .path()
        .read_dir()?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum::<u64>();
    let rows = vec![
        vec!["measurements".into(), measurements.to_string()],
        vec![
            "streams × batches".into(),
            format!("{streams} × {}", latencies.len() / streams),
        ],
        vec![
            "ingest, durable acks".into(),
            format!("{:.0} measurements/s", measurements as f64 / acked_s),
        ],
        vec![
            "ingest + detection (to Sync)".into(),
            format!("{:.0} measurements/s", measurements as f64 / detected_s),
        ],
        vec![
            "ack latency p50".into(),
            format!("{:.1} ms", percentile(&mut latencies, 50.0)),
        ],
        vec![
            "ack latency p99".into(),
            format!("{:.1} ms", percentile(&mut latencies, 99.0)),
        ],
        vec![
            "RSS growth per outlet".into(),
            match (rss_before, rss_after) {
                (Some(a), Some(b)) => format!(
                    "{:.0} KiB ({} outlets)",
                    b.saturating_sub(a) as f64 / outlets as f64,
                    outlets
                ),
                _ => "-".into(),
            },
        ],
        vec![
            "store files on disk".into(),
            format!("{:.1} MiB", disk as f64 / (1 << 20) as f64),
        ],
    ];
    println!(
        "ingest benchmark: {} enterprises, {} h of minute data, {} min per batch, {} cores",
        opts.enterprises,
        opts.hours,
        opts.minutes_per_batch,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    print!("{}", render(&["figure", "value"], &rows));
    running.shutdown().await?;
    Ok(())
}

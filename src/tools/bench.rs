//! `sentinel bench …`: durable-ack ingest throughput over real gRPC into a real store with detection running,
//! `ListAnomalies` latency, the retraining loop's cost, and (in `hj212`) parse throughput. Figures are printed,
//! never asserted: machines here are noisy.

use super::feed::{self, percentile};
use super::table::render;
use crate::pb;
use crate::pb::ingest_service_client::IngestServiceClient;
use crate::server::{self, ServeConfig};
use crate::sim::{Scenario, SimConfig};
use std::path::PathBuf;
use std::time::Instant;

/// `sentinel bench …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// HJ 212 parse throughput (framing, CRC, data segment, records) over a packet file.
    Hj212 {
        /// Packet file (default: the conformance corpus).
        #[arg(long, default_value = "tests/data/hj212/real_packets.txt")]
        file: PathBuf,
        /// Passes over the file.
        #[arg(long, default_value_t = 2000)]
        rounds: usize,
    },
    /// ListAnomalies latency over gRPC with many stored anomalies.
    List {
        /// Anomalies to store first.
        #[arg(long, default_value_t = 1_000_000)]
        anomalies: usize,
        /// Requests per query case.
        #[arg(long, default_value_t = 200)]
        requests: usize,
    },
    /// The retraining loop's cost: train every outlet, evaluate one, export the dataset, over gRPC.
    Models {
        /// Simulated enterprises.
        #[arg(long, default_value_t = 20)]
        enterprises: usize,
        /// Days of minute data.
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
    /// Durable-ack ingest throughput and latency over gRPC, with detection running.
    Ingest(BenchOptions),
}

impl BenchCommand {
    /// Runs the benchmark and prints its figures.
    ///
    /// # Errors
    /// When the service cannot start, a call fails, or the packet file cannot be read.
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Hj212 { file, rounds } => {
                print!("{}", super::hj212::bench(&file, rounds)?);
                Ok(())
            }
            Self::List {
                anomalies,
                requests,
            } => list(anomalies, requests).await,
            Self::Models { enterprises, days } => models(enterprises, days).await,
            Self::Ingest(opts) => ingest(opts).await,
        }
    }
}

/// Ingest benchmark settings (`sentinel bench ingest` flags).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Simulated enterprises.
    #[arg(long, default_value_t = 100)]
    pub enterprises: usize,
    /// Hours of minute data.
    #[arg(long, default_value_t = 6)]
    pub hours: u32,
    /// Concurrent Push streams.
    #[arg(long, default_value_t = 4)]
    pub streams: usize,
    /// Data minutes per batch.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i64).range(1..))]
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
    let channel =
        feed::connect_as(&running.addr.to_string(), running.admin_token.as_deref()).await?;
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

/// `sentinel bench list`: `ListAnomalies` latency over gRPC with many stored anomalies.
///
/// # Errors
/// When the store or the service fails.
pub async fn list(anomalies: usize, requests: usize) -> anyhow::Result<()> {
    use crate::domain::{Anomaly, AnomalyKind, ReviewStatus};
    use crate::pb::enforcement_service_client::EnforcementServiceClient;
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    {
        let store = crate::store::Store::open(dir.path(), 256 << 20)?;
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
        let year_ms = 365 * 86_400_000i64;
        let mut chunk = Vec::with_capacity(50_000);
        for i in 0..anomalies {
            let start_ms = 1_735_689_600_000 + rng.gen_range(0..year_ms);
            let kind = AnomalyKind::ALL[rng.gen_range(0..AnomalyKind::ALL.len())];
            chunk.push(Anomaly {
                id: format!("A{i:016x}"),
                enterprise_id: format!("E{:04}", rng.gen_range(0..2000)),
                outlet_id: format!("E{:04}-DA001", i % 2000),
                source_ids: vec![],
                kind,
                start_ms,
                end_ms: start_ms + rng.gen_range(600_000..86_400_000),
                score: rng.gen(),
                // A real detector's figures, so the list pays for rendering summaries as it does in service.
                detector: crate::detect::treatment_not_running::NAME.into(),
                evidence: bench_evidence(),
                status: ReviewStatus::Open,
                detected_at_ms: start_ms,
                note: String::new(),
                ongoing: false,
                reviews: vec![],
            });
            if chunk.len() == 50_000 {
                store.put_anomalies(&chunk)?;
                chunk.clear();
            }
        }
        store.put_anomalies(&chunk)?;
    }
    let written_s = started.elapsed().as_secs_f64();
    let loading = Instant::now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let running = server::start(ServeConfig::new(dir.path().to_path_buf()), listener).await?;
    let load_s = loading.elapsed().as_secs_f64();
    let channel =
        feed::connect_as(&running.addr.to_string(), running.admin_token.as_deref()).await?;
    let mut client = EnforcementServiceClient::new(channel);
    let cases: Vec<(&str, pb::ListAnomaliesRequest)> = vec![
        ("first page, no filter", pb::ListAnomaliesRequest::default()),
        (
            "one enterprise",
            pb::ListAnomaliesRequest {
                enterprise_ids: vec!["E0042".into()],
                ..Default::default()
            },
        ),
        (
            "one kind, score >= 0.9",
            pb::ListAnomaliesRequest {
                kinds: vec![AnomalyKind::BypassSuspected.number()],
                min_score: 0.9,
                ..Default::default()
            },
        ),
        (
            "one week window",
            pb::ListAnomaliesRequest {
                from_ms: 1_750_000_000_000,
                to_ms: 1_750_604_800_000,
                ..Default::default()
            },
        ),
    ];
    let mut rows = Vec::new();
    for (name, req) in cases {
        let mut lat = Vec::with_capacity(requests);
        let mut got = 0;
        for _ in 0..requests {
            let t = Instant::now();
            got = client
                .list_anomalies(req.clone())
                .await?
                .into_inner()
                .anomalies
                .len();
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        rows.push(vec![
            name.to_string(),
            got.to_string(),
            format!("{:.2} ms", percentile(&mut lat, 50.0)),
            format!("{:.2} ms", percentile(&mut lat, 99.0)),
        ]);
    }
    println!(
        "ListAnomalies benchmark: {anomalies} stored anomalies (written in {written_s:.1} s, loaded by the service in {load_s:.1} s), {requests} requests per case, page size 100"
    );
    print!("{}", render(&["query", "rows", "p50", "p99"], &rows));
    running.shutdown().await?;
    Ok(())
}

/// `sentinel bench models`: the retraining loop's cost on a real server: simulated enterprises streamed in, then one
/// `Train` job fitting a model for every stack outlet, one `EvaluateModel`, and the labelled `ExportDataset`.
pub async fn models(enterprises: usize, days: u32) -> anyhow::Result<()> {
    use crate::pb::model_service_client::ModelServiceClient;
    let dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let running = server::start(ServeConfig::new(dir.path().to_path_buf()), listener).await?;
    let channel =
        feed::connect_as(&running.addr.to_string(), running.admin_token.as_deref()).await?;
    let mut scenario = Scenario::new(SimConfig {
        enterprises,
        days,
        ..SimConfig::default()
    });
    feed::register(&channel, &scenario).await?;
    let outlets: Vec<String> = scenario
        .outlets
        .iter()
        .filter(|o| o.kind == crate::domain::OutletKind::Stack)
        .map(|o| o.id.clone())
        .collect();
    let batches = feed::batches(&mut scenario, 10);
    feed::push(&channel, batches, None).await?;
    IngestServiceClient::new(channel.clone())
        .sync(pb::SyncRequest { finalize: true })
        .await?;
    let mut models = ModelServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let started = Instant::now();
    let mut job = models
        .train(pb::TrainRequest {
            outlet_ids: outlets.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    while job.state == pb::JobState::Running as i32 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        job = models
            .get_training_job(pb::GetTrainingJobRequest { id: job.id })
            .await?
            .into_inner();
    }
    let train_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        job.state == pb::JobState::Done as i32,
        "training failed: {}",
        job.message
    );
    let list = models
        .list_models(pb::ListModelsRequest::default())
        .await?
        .into_inner()
        .models;
    let trained: Vec<&pb::ModelInfo> = list.iter().filter(|m| !m.builtin).collect();
    let accepted: usize = trained
        .iter()
        .map(|m| m.targets.iter().filter(|t| t.accepted).count())
        .sum();
    let targets: usize = trained.iter().map(|m| m.targets.len()).sum();
    let started = Instant::now();
    let first = job.model_ids.first().cloned().unwrap_or_default();
    models
        .evaluate_model(pb::EvaluateModelRequest {
            id: first,
            from_ms: 0,
            to_ms: 0,
        })
        .await?;
    let evaluate_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut stream = models
        .export_dataset(pb::ExportDatasetRequest::default())
        .await?
        .into_inner();
    let mut rows = 0u64;
    while let Some(chunk) = stream.message().await? {
        rows += chunk.rows.len() as u64;
    }
    let export_s = started.elapsed().as_secs_f64();
    let table = vec![
        vec!["stack outlets".into(), outlets.len().to_string()],
        vec!["days of minute data".into(), days.to_string()],
        vec![
            "train (one job, all outlets)".into(),
            format!(
                "{train_s:.1} s = {:.2} s per outlet",
                train_s / outlets.len().max(1) as f64
            ),
        ],
        vec![
            "targets accepted".into(),
            format!("{accepted} of {targets}"),
        ],
        vec!["evaluate one outlet".into(), format!("{evaluate_s:.2} s")],
        vec![
            "export dataset".into(),
            format!(
                "{rows} rows in {export_s:.1} s = {:.0} rows/s",
                rows as f64 / export_s
            ),
        ],
    ];
    print!("{}", render(&["figure", "value"], &table));
    running.shutdown().await
}

/// The figures of an ordinary idle-scrubber alarm.
fn bench_evidence() -> crate::domain::Evidence {
    let mut e = crate::domain::Evidence::default();
    for (name, value) in [
        ("duration_min", 60.0),
        ("production_kw_mean", 840.0),
        ("treatment_kw_mean", 3.0),
        ("treatment_normal_kw", 210.0),
    ] {
        e.set_number(name, value);
    }
    e
}

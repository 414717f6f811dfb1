//! `sentinel`: the service and its tools.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// cems-sentinel: catches bypass emissions, idle scrubbers and faked CEMS data from monitoring and power-meter streams.
#[derive(Parser)]
#[command(name = "sentinel", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC service on an embedded store.
    Serve(ServeArgs),
    /// The whole product in one command: service + simulated enterprises + enforcement list + score.
    Demo(DemoArgs),
    /// Generate simulated enterprises with known violations: stream them to a server, or write them to files.
    Simulate(SimulateArgs),
    /// Score a server's anomalies against a ground-truth file.
    Eval(EvalArgs),
    /// The enforcement list from a running server.
    Anomalies(AnomaliesArgs),
    /// Incidents: overlapping anomalies of one enterprise as one case.
    Incidents {
        /// The server.
        #[arg(long, env = "SENTINEL_SERVER", default_value = "127.0.0.1:50051")]
        server: String,
        /// Only these enterprises (repeatable).
        #[arg(long = "enterprise")]
        enterprises: Vec<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: cems_sentinel::tools::anomalies::Format,
    },
    /// Enterprises (or regions) ranked by unresolved anomaly severity.
    Hotspots {
        /// The server.
        #[arg(long, env = "SENTINEL_SERVER", default_value = "127.0.0.1:50051")]
        server: String,
        /// Rank regions instead of enterprises.
        #[arg(long)]
        by_region: bool,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Move an anomaly through the review workflow (open → dispatched → confirmed / false_positive → rectified → closed).
    Review(ReviewArgs),
    /// Fit new model versions for outlets or an industry on a running server (in the background, with progress).
    Train(TrainArgs),
    /// Model versions: list, show, activate (and roll back), evaluate, export the labelled dataset, build priors.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// HJ 212 tools: check a file of packets, or send it to a gateway.
    #[command(subcommand)]
    Hj212(Hj212Command),
    /// Benchmarks (figures are printed, not asserted).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum Hj212Command {
    /// One verdict per packet (ok / warnings / rejected with reason) and totals; exits 1 if any was rejected.
    Check {
        /// File with one packet per line.
        file: PathBuf,
        /// MNs whose devices send the MODBUS CRC dialect (repeatable).
        #[arg(long = "modbus-mn")]
        modbus_mns: Vec<String>,
    },
    /// Sends a file of packets to a gateway and reports the replies.
    Send {
        /// File with one packet per line.
        file: PathBuf,
        /// Gateway address.
        #[arg(long)]
        to: String,
        /// Seconds of silence after which no more replies are expected.
        #[arg(long, default_value_t = 2.0)]
        reply_timeout_secs: f64,
    },
}

#[derive(clap::Args)]
struct TrainArgs {
    /// One model per outlet (repeatable).
    #[arg(long = "outlet", conflicts_with = "industry")]
    outlets: Vec<String>,
    /// Or one pooled prior over every stack outlet of this industry.
    #[arg(long)]
    industry: Option<String>,
    /// Training window start (Unix ms; default 14 days before its end).
    #[arg(long, default_value_t = 0)]
    from_ms: i64,
    /// Training window end (Unix ms; default the latest data).
    #[arg(long, default_value_t = 0)]
    to_ms: i64,
    /// Activate each new version once trained.
    #[arg(long)]
    activate: bool,
    /// False alarms per enterprise-day to calibrate the thresholds for (default 0.01).
    #[arg(long, default_value_t = 0.0)]
    false_alarms_per_day: f64,
    /// Return once the job has started instead of waiting for it.
    #[arg(long)]
    no_wait: bool,
    /// The server.
    #[arg(long, env = "SENTINEL_SERVER", default_value = "127.0.0.1:50051")]
    server: String,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Every version (optionally of one scope) with its state, training window and fit.
    List {
        /// `outlet:<id>` or `industry:<name>`.
        #[arg(long, default_value = "")]
        scope: String,
        /// The server.
        #[arg(long, env = "SENTINEL_SERVER", default_value = "127.0.0.1:50051")]
        server: String,
    },
    /// One version as JSON (the format of the shipped priors); to a file with --out.
    Show {
        /// Model id, e.g. outlet:E01-S1@2.
        id: String,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The server.
        #[arg(long, env = "SENTINEL_SERVER", default_value = "127.0.0.1:50051")]
        server: String,
    },
    /// Make a version the active one of its scope (activating the previous version rolls back).
    Activate {
        /// Model id.
        id: String,
        /// The server.
        #[arg(long, env = "SENTINEL_SERVER", default_value = "127.0.0.1:50051")]
        server: String,
    },
    /// Score a version on a holdout period and on the reviewed anomalies in it.
    Evaluate {
        /// Model id.
        id: String,
        /// Period start (Unix ms; default 14 days before its end).
        #[arg(long, default_value_t = 0)]
        from_ms: i64,
        /// Period end (Unix ms; default the latest data).
        #[arg(long, default_value_t = 0)]
        to_ms: i64,
        /// The server.
        #[arg(long, env = "SENTINEL_SERVER", default_value = "127.0.0.1:50051")]
        server: String,
    },
    /// The aligned feature rows with reviewed labels (CONFIRMED / FALSE_POSITIVE), as CSV for pandas.
    Export {
        /// Outlets (repeatable; default all stack outlets).
        #[arg(long = "outlet")]
        outlets: Vec<String>,
        /// Period start (Unix ms; default 14 days before its end).
        #[arg(long, default_value_t = 0)]
        from_ms: i64,
        /// Period end (Unix ms; default the latest data).
        #[arg(long, default_value_t = 0)]
        to_ms: i64,
        /// CSV file to write.
        #[arg(long)]
        out: PathBuf,
        /// The server.
        #[arg(long, env = "SENTINEL_SERVER", default_value = "127.0.0.1:50051")]
        server: String,
    },
    /// Fit the shipped per-industry priors offline from simulated clean enterprises (writes models/priors/*.json).
    BuildPriors {
        #[command(flatten)]
        sim: SimArgs,
        /// Output directory.
        #[arg(long, default_value = "models/priors")]
        out: PathBuf,
    },
}

#[derive(clap::Args, Clone)]
struct SimArgs {
    /// Seed: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of enterprises.
    #[arg(long, default_value_t = 20)]
    enterprises: usize,
    /// Days of minute data.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Share of enterprises kept free of violations (1 = all clean: a false-alarm run).
    #[arg(long, default_value_t = 0.3)]
    clean_share: f64,
}

impl SimArgs {
    fn config(&self) -> cems_sentinel::sim::SimConfig {
        cems_sentinel::sim::SimConfig {
            seed: self.seed,
            enterprises: self.enterprises,
            days: self.days,
            clean_share: self.clean_share,
            ..Default::default()
        }
    }
}

#[derive(clap::Args)]
struct DemoArgs {
    #[command(flatten)]
    sim: SimArgs,
    /// Keep the store in this directory (default: a temporary one, removed at exit); truth.json is written there.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address for the demo's service.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Rows of the enforcement list to print.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Keep serving after the report, until Ctrl-C.
    #[arg(long)]
    keep_serving: bool,
    /// Language of anomaly summaries.
    #[arg(long, default_value = "zh")]
    language: cems_sentinel::domain::Language,
}

#[derive(clap::Args)]
struct SimulateArgs {
    #[command(flatten)]
    sim: SimArgs,
    /// Register the enterprises with this server and stream the data to it over gRPC.
    #[arg(long, conflicts_with = "out")]
    to: Option<String>,
    /// Pace: data minutes per wall-clock second (default: as fast as possible; 1 = 60× real time).
    #[arg(long)]
    minutes_per_sec: Option<f64>,
    /// With --to (for registration): send the data as HJ 212 minute packets (CN 2051) to this gateway instead of
    /// gRPC Push.
    #[arg(long, requires = "to")]
    hj212_to: Option<String>,
    /// Write registry.json, records.jsonl and truth.json into this directory instead.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where to write the ground truth when streaming (default: truth.json).
    #[arg(long, default_value = "truth.json")]
    truth: PathBuf,
}

#[derive(clap::Args)]
struct AnomaliesArgs {
    /// The server.
    #[arg(long, env = "SENTINEL_SERVER", default_value = "127.0.0.1:50051")]
    server: String,
    /// Only these enterprises (repeatable).
    #[arg(long = "enterprise")]
    enterprises: Vec<String>,
    /// Only this region.
    #[arg(long, default_value = "")]
    region: String,
    /// Only these kinds, e.g. bypass_suspected (repeatable).
    #[arg(long = "kind")]
    kinds: Vec<String>,
    /// Only these review statuses, e.g. open (repeatable).
    #[arg(long = "status")]
    statuses: Vec<String>,
    /// Minimum score.
    #[arg(long, default_value_t = 0.0)]
    min_score: f64,
    /// Overlapping this window start (Unix ms).
    #[arg(long, default_value_t = 0)]
    from_ms: i64,
    /// Overlapping this window end (Unix ms).
    #[arg(long, default_value_t = 0)]
    to_ms: i64,
    /// At most this many rows (0 = all).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: cems_sentinel::tools::anomalies::Format,
}

#[derive(clap::Args)]
struct ReviewArgs {
    /// Anomaly id.
    id: String,
    /// Target status: dispatched, confirmed, false_positive, rectified, closed, open.
    #[arg(long)]
    status: String,
    /// Note for the audit trail.
    #[arg(long, default_value = "")]
    note: String,
    /// Who is reviewing (recorded in the audit trail).
    #[arg(long, env = "USER")]
    reviewer: String,
    /// The server.
    #[arg(long, env = "SENTINEL_SERVER", default_value = "127.0.0.1:50051")]
    server: String,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// The server to score.
    #[arg(long, default_value = "127.0.0.1:50051")]
    server: String,
    /// Ground-truth file (from `sentinel simulate` or `sentinel demo --data-dir`).
    #[arg(long)]
    truth: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum BenchCommand {
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
    Ingest {
        /// Simulated enterprises.
        #[arg(long, default_value_t = 100)]
        enterprises: usize,
        /// Hours of minute data.
        #[arg(long, default_value_t = 6)]
        hours: u32,
        /// Concurrent Push streams.
        #[arg(long, default_value_t = 4)]
        streams: usize,
        /// Data minutes per batch.
        #[arg(long, default_value_t = 5)]
        minutes_per_batch: i64,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on for gRPC.
    #[arg(long, env = "SENTINEL_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Directory of the embedded store (created if missing).
    #[arg(long, env = "SENTINEL_DATA_DIR", default_value = "./sentinel-data")]
    data_dir: PathBuf,
    /// Largest batch accepted, in records; bigger batches fail with INVALID_ARGUMENT.
    #[arg(long, env = "SENTINEL_MAX_BATCH_RECORDS", default_value_t = 10_000)]
    max_batch_records: usize,
    /// How far (seconds) behind an outlet's latest data time late data still goes into detection.
    #[arg(long, env = "SENTINEL_ALLOWED_LATENESS_SECS", default_value_t = 7200)]
    allowed_lateness_secs: u64,
    /// Store page-cache budget in MiB.
    #[arg(long, env = "SENTINEL_CACHE_MB", default_value_t = 256)]
    cache_mb: u64,
    /// Language of anomaly summaries.
    #[arg(long, env = "SENTINEL_LANGUAGE", default_value = "zh")]
    language: cems_sentinel::domain::Language,
    /// Also accept HJ 212 over TCP on this address (data acquisition units connect here).
    #[arg(long, env = "SENTINEL_HJ212_LISTEN")]
    hj212_listen: Option<SocketAddr>,
    /// HJ 212 gateway settings (TOML: time zone, code dictionary, per-device CRC dialect, limits);
    /// see config/hj212.example.toml.
    #[arg(long, env = "SENTINEL_HJ212_CONFIG")]
    hj212_config: Option<PathBuf>,
    /// False alarms per outlet-day each statistical falsification test family (low variance, replay, flat-line,
    /// calibration gas, dilution) may raise on honest data, against the outlet's own empirical null.
    #[arg(long, env = "SENTINEL_FALSE_ALARMS_PER_DAY", default_value_t = 0.002)]
    false_alarms_per_day: f64,
    /// Retrain every outlet's model on this schedule (hours; 0 = never, e.g. 24 for nightly).
    #[arg(long, env = "SENTINEL_RETRAIN_EVERY_HOURS", default_value_t = 0.0)]
    retrain_every_hours: f64,
    /// Days of history each scheduled retraining fits on.
    #[arg(long, env = "SENTINEL_RETRAIN_WINDOW_DAYS", default_value_t = 14)]
    retrain_window_days: u32,
    /// Activate scheduled versions automatically (default: leave them for review with `models evaluate`).
    #[arg(long, env = "SENTINEL_RETRAIN_ACTIVATE")]
    retrain_activate: bool,
    /// On each scheduled run, refit an outlet that already has a model only if its last day drifted from it.
    #[arg(long, env = "SENTINEL_RETRAIN_ON_DRIFT")]
    retrain_on_drift: bool,
}

fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logs();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => rt.block_on(serve(args)),
        Command::Demo(args) => rt.block_on(cems_sentinel::tools::demo::run(
            cems_sentinel::tools::demo::DemoOptions {
                data_dir: args.data_dir,
                listen: args.listen,
                sim: args.sim.config(),
                top: args.top,
                keep_serving: args.keep_serving,
                language: args.language,
            },
        )),
        Command::Simulate(args) => rt.block_on(simulate(args)),
        Command::Eval(args) => rt.block_on(eval(args)),
        Command::Anomalies(a) => rt.block_on(async {
            let filter = cems_sentinel::tools::anomalies::Filter {
                enterprises: a.enterprises,
                region: a.region,
                kinds: a.kinds,
                statuses: a.statuses,
                min_score: a.min_score,
                from_ms: a.from_ms,
                to_ms: a.to_ms,
                limit: a.limit,
            };
            print!(
                "{}",
                cems_sentinel::tools::anomalies::list(&a.server, filter, a.format).await?
            );
            Ok(())
        }),
        Command::Incidents {
            server,
            enterprises,
            limit,
            format,
        } => rt.block_on(async {
            print!(
                "{}",
                cems_sentinel::tools::anomalies::incidents(&server, enterprises, limit, format)
                    .await?
            );
            Ok(())
        }),
        Command::Hotspots {
            server,
            by_region,
            limit,
        } => rt.block_on(async {
            print!(
                "{}",
                cems_sentinel::tools::anomalies::hotspots(&server, by_region, limit).await?
            );
            Ok(())
        }),
        Command::Review(r) => rt.block_on(async {
            println!(
                "{}",
                cems_sentinel::tools::anomalies::review(
                    &r.server,
                    &r.id,
                    &r.status,
                    &r.note,
                    &r.reviewer
                )
                .await?
            );
            Ok(())
        }),
        Command::Train(t) => rt.block_on(async {
            let req = cems_sentinel::pb::TrainRequest {
                outlet_ids: t.outlets,
                industry: t.industry.unwrap_or_default(),
                from_ms: t.from_ms,
                to_ms: t.to_ms,
                activate: t.activate,
                false_alarms_per_day: t.false_alarms_per_day,
            };
            println!(
                "{}",
                cems_sentinel::tools::models::train(&t.server, req, !t.no_wait).await?
            );
            Ok(())
        }),
        Command::Models(cmd) => rt.block_on(models(cmd)),
        Command::Hj212(Hj212Command::Check { file, modbus_mns }) => {
            let (report, all_ok) =
                cems_sentinel::tools::hj212::check(&file, &modbus_mns, &Default::default())?;
            print!("{report}");
            if !all_ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Hj212(Hj212Command::Send {
            file,
            to,
            reply_timeout_secs,
        }) => rt.block_on(async {
            print!(
                "{}",
                cems_sentinel::tools::hj212::send(
                    &file,
                    &to,
                    Duration::from_secs_f64(reply_timeout_secs)
                )
                .await?
            );
            Ok(())
        }),
        Command::Bench(BenchCommand::List {
            anomalies,
            requests,
        }) => rt.block_on(cems_sentinel::tools::bench::list(anomalies, requests)),
        Command::Bench(BenchCommand::Models { enterprises, days }) => {
            rt.block_on(cems_sentinel::tools::bench::models(enterprises, days))
        }
        Command::Bench(BenchCommand::Hj212 { file, rounds }) => {
            print!("{}", cems_sentinel::tools::hj212::bench(&file, rounds)?);
            Ok(())
        }
        Command::Bench(BenchCommand::Ingest {
            enterprises,
            hours,
            streams,
            minutes_per_batch,
        }) => rt.block_on(cems_sentinel::tools::bench::ingest(
            cems_sentinel::tools::bench::BenchOptions {
                enterprises,
                hours,
                streams,
                minutes_per_batch,
            },
        )),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = cems_sentinel::server::ServeConfig::new(args.data_dir);
    config.ingest.max_batch_records = args.max_batch_records;
    config.allowed_lateness = Duration::from_secs(args.allowed_lateness_secs);
    config.cache_bytes = args.cache_mb << 20;
    config.language = args.language;
    anyhow::ensure!(
        args.false_alarms_per_day > 0.0 && args.false_alarms_per_day < 1.0,
        "--false-alarms-per-day must be in (0, 1), got {}",
        args.false_alarms_per_day
    );
    config.detect.false_alarms_per_day = args.false_alarms_per_day;
    if args.retrain_every_hours > 0.0 {
        config.retrain = Some(cems_sentinel::server::RetrainSchedule {
            every: Duration::from_secs_f64(args.retrain_every_hours * 3600.0),
            window_days: args.retrain_window_days,
            activate: args.retrain_activate,
            only_on_drift: args.retrain_on_drift,
        });
    }
    if let Some(path) = &args.hj212_config {
        config.hj212 = cems_sentinel::ingest::hj212_gateway::GatewayConfig::load(path)?;
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let hj212 = match args.hj212_listen {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await?),
        None => None,
    };
    let mut server = cems_sentinel::server::start_with(config, listener, hj212).await?;
    // Plain lines on stdout, so scripts and tests can find the ports when listening on :0.
    println!("sentinel listening on {}", server.addr);
    if let Some(a) = server.hj212_addr {
        println!("sentinel hj212 gateway on {a}");
    }
    let stop = shutdown_signal();
    tokio::pin!(stop);
    tokio::select! {
        _ = &mut stop => {
            tracing::info!("Signal received; finishing in-flight batches.");
            server.trigger_shutdown();
            server.wait().await
        }
        r = server.wait() => r,
    }
}

async fn models(cmd: ModelsCommand) -> anyhow::Result<()> {
    use cems_sentinel::tools::models as m;
    match cmd {
        ModelsCommand::List { scope, server } => print!("{}", m::list(&server, &scope).await?),
        ModelsCommand::Show { id, out, server } => {
            let json = m::show(&server, &id).await?;
            match out {
                Some(path) => {
                    std::fs::write(&path, json + "\n")?;
                    println!("wrote {id} to {}", path.display());
                }
                None => println!("{json}"),
            }
        }
        ModelsCommand::Activate { id, server } => println!("{}", m::activate(&server, &id).await?),
        ModelsCommand::Evaluate {
            id,
            from_ms,
            to_ms,
            server,
        } => print!("{}", m::evaluate(&server, &id, from_ms, to_ms).await?),
        ModelsCommand::Export {
            outlets,
            from_ms,
            to_ms,
            out,
            server,
        } => {
            let n = m::export(&server, outlets, from_ms, to_ms, &out).await?;
            println!("wrote {n} rows to {}", out.display());
        }
        ModelsCommand::BuildPriors { sim, out } => {
            print!("{}", m::build_priors(sim.config(), &out)?)
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    use cems_sentinel::tools::feed;
    use std::io::Write as _;
    let mut scenario = cems_sentinel::sim::Scenario::new(args.sim.config());
    let truth = scenario.truth_file();
    if let Some(dir) = args.out {
        std::fs::create_dir_all(&dir)?;
        let registry = serde_json::json!({
            "enterprises": scenario.enterprises,
            "outlets": scenario.outlets,
            "meters": scenario.meters,
            "restrictions": scenario.restrictions,
        });
        std::fs::write(
            dir.join("registry.json"),
            serde_json::to_vec_pretty(&registry)?,
        )?;
        std::fs::write(dir.join("truth.json"), serde_json::to_vec_pretty(&truth)?)?;
        let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("records.jsonl"))?);
        let mut n = 0u64;
        for m in 0..scenario.total_minutes() {
            for p in scenario.minute(m) {
                serde_json::to_writer(&mut out, &p)?;
                out.write_all(b"\n")?;
                n += 1;
            }
        }
        out.flush()?;
        println!(
            "wrote {n} measurements, {} truth events to {}",
            truth.events.len(),
            dir.display()
        );
        return Ok(());
    }
    let Some(addr) = args.to else {
        anyhow::bail!("say where the data goes: --to HOST:PORT or --out DIR");
    };
    let channel = feed::connect(&addr).await?;
    feed::register(&channel, &scenario).await?;
    std::fs::write(&args.truth, serde_json::to_vec_pretty(&truth)?)?;
    if let Some(gateway) = args.hj212_to {
        let packets = feed::hj212_packets(&mut scenario);
        let stats = feed::send_hj212(&gateway, packets).await?;
        println!(
            "sent {} HJ 212 packets to {gateway}: {} acknowledged (9014) in {:.1} s; truth in {}",
            stats.measurements,
            stats.accepted,
            stats.elapsed.as_secs_f64(),
            args.truth.display()
        );
        return Ok(());
    }
    let minutes_per_batch = if args.minutes_per_sec.is_some() {
        1
    } else {
        10
    };
    let batches = feed::batches(&mut scenario, minutes_per_batch);
    let stats = feed::push(
        &channel,
        batches,
        args.minutes_per_sec.map(|r| (minutes_per_batch, r)),
    )
    .await?;
    println!(
        "streamed {} measurements ({} accepted, {} rejected) in {:.1} s; truth in {}",
        stats.measurements,
        stats.accepted,
        stats.rejected,
        stats.elapsed.as_secs_f64(),
        args.truth.display()
    );
    Ok(())
}

async fn eval(args: EvalArgs) -> anyhow::Result<()> {
    use cems_sentinel::tools::{demo, feed};
    let truth: cems_sentinel::sim::TruthFile =
        serde_json::from_slice(&std::fs::read(&args.truth)?)?;
    let channel = feed::connect(&args.server).await?;
    let anomalies = demo::list_all(&channel, Default::default()).await?;
    let report = demo::score(&truth, &anomalies);
    match args.format {
        Format::Table => print!("{}", demo::score_table(&report)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}

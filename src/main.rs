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
    #[arg(long, env = "SENTINEL_LANGUAGE", value_enum, default_value = "zh")]
    language: cems_sentinel::detect::Language,
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
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = cems_sentinel::server::ServeConfig::new(args.data_dir);
    config.ingest.max_batch_records = args.max_batch_records;
    config.allowed_lateness = Duration::from_secs(args.allowed_lateness_secs);
    config.cache_bytes = args.cache_mb << 20;
    config.detect.language = args.language;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let mut server = cems_sentinel::server::start(config, listener).await?;
    // One plain line on stdout, so scripts and tests can find the port when listening on :0.
    println!("sentinel listening on {}", server.addr);
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

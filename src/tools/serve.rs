//! `sentinel serve`: the service on an embedded store. Its flags become a [`ServeConfig`] in one place,
//! `impl TryFrom<&ServeArgs> for ServeConfig`, which reports every bad value at once.

use crate::domain::Language;
use crate::ingest::hj212_gateway::GatewayConfig;
use crate::server::{self, RetrainSchedule, ServeConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `sentinel serve` flags (each also settable through its environment variable).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// TLS on the gRPC port: the server's certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "SENTINEL_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "SENTINEL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// mTLS: clients must present a certificate signed by this CA (PEM); needs --tls-cert.
    #[arg(long, env = "SENTINEL_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<std::path::PathBuf>,
    /// TLS on the HJ 212 port too (same certificate, key and client CA); leave off for DAUs that speak plain TCP.
    #[arg(long, env = "SENTINEL_HJ212_TLS", requires = "tls_cert")]
    pub hj212_tls: bool,
    /// Serve without authentication: every client acts as admin. For local experiments only; warns at start.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Address to listen on for gRPC.
    #[arg(long, env = "SENTINEL_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Directory of the embedded store (created if missing).
    #[arg(long, env = "SENTINEL_DATA_DIR", default_value = "./sentinel-data")]
    pub data_dir: PathBuf,
    /// Largest batch accepted, in records; bigger batches fail with INVALID_ARGUMENT.
    #[arg(long, env = "SENTINEL_MAX_BATCH_RECORDS", default_value_t = 10_000)]
    pub max_batch_records: usize,
    /// Largest batch accepted, in measurements (all its records' values); bigger batches fail with INVALID_ARGUMENT.
    #[arg(long, env = "SENTINEL_MAX_BATCH_VALUES", default_value_t = 100_000)]
    pub max_batch_values: usize,
    /// Records stamped further ahead of the server clock than this are refused: a point stamped hours ahead
    /// would make the real data behind it late, i.e. blind detection.
    #[arg(long, env = "SENTINEL_MAX_CLOCK_SKEW_SECS", default_value_t = 600)]
    pub max_clock_skew_secs: u32,
    /// Memory (MiB) all batches in flight may hold together, from validation until detection has them, HJ 212
    /// buffers included; past it new batches wait, then fail with RESOURCE_EXHAUSTED.
    #[arg(long, env = "SENTINEL_MEMORY_BUDGET_MIB", default_value_t = 512)]
    pub memory_budget_mib: usize,
    /// Percent of the memory budget one sender (principal or HJ 212 device) may hold: a flooding client waits on
    /// its own share and leaves the rest to others.
    #[arg(long, env = "SENTINEL_SENDER_SHARE_PCT", default_value_t = 25)]
    pub sender_share_pct: u8,
    /// How far (seconds) behind an outlet's latest data time late data still goes into detection.
    #[arg(long, env = "SENTINEL_ALLOWED_LATENESS_SECS", default_value_t = 7200)]
    pub allowed_lateness_secs: u64,
    /// Store page-cache budget in MiB.
    #[arg(long, env = "SENTINEL_CACHE_MB", default_value_t = 256)]
    pub cache_mb: u64,
    /// Language of anomaly summaries.
    #[arg(long, env = "SENTINEL_LANGUAGE", default_value = "zh")]
    pub language: Language,
    /// Also accept HJ 212 over TCP on this address (data acquisition units connect here).
    #[arg(long, env = "SENTINEL_HJ212_LISTEN")]
    pub hj212_listen: Option<SocketAddr>,
    /// HJ 212 gateway settings (TOML: time zone, code dictionary, per-device CRC dialect, limits);
    /// see config/hj212.example.toml.
    #[arg(long, env = "SENTINEL_HJ212_CONFIG")]
    pub hj212_config: Option<PathBuf>,
    /// False alarms per outlet-day each statistical falsification test family (low variance, replay, flat-line,
    /// calibration gas, dilution) may raise on honest data, against the outlet's own empirical null.
    #[arg(long, env = "SENTINEL_FALSE_ALARMS_PER_DAY", default_value_t = 0.002)]
    pub false_alarms_per_day: f64,
    /// A month whose transmission rate (valid minutes over minutes production ran) falls below this raises one
    /// UNMONITORED_EMISSION for the month.
    #[arg(long, env = "SENTINEL_TRANSMISSION_FLOOR", default_value_t = 0.9)]
    pub transmission_floor: f64,
    /// Retrain every outlet's model on this schedule (hours; 0 = never, e.g. 24 for nightly).
    #[arg(long, env = "SENTINEL_RETRAIN_EVERY_HOURS", default_value_t = 0.0)]
    pub retrain_every_hours: f64,
    /// Days of history each scheduled retraining fits on.
    #[arg(long, env = "SENTINEL_RETRAIN_WINDOW_DAYS", default_value_t = 14)]
    pub retrain_window_days: u32,
    /// Activate scheduled versions automatically (default: leave them for review with `models evaluate`).
    #[arg(long, env = "SENTINEL_RETRAIN_ACTIVATE")]
    pub retrain_activate: bool,
    /// On each scheduled run, refit an outlet that already has a model only if its last day drifted from it.
    #[arg(long, env = "SENTINEL_RETRAIN_ON_DRIFT")]
    pub retrain_on_drift: bool,
}

/// Every problem found in the `serve` flags, one per line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct InvalidArgs(pub Vec<String>);

impl TryFrom<&ServeArgs> for ServeConfig {
    type Error = InvalidArgs;

    fn try_from(args: &ServeArgs) -> Result<Self, InvalidArgs> {
        let mut problems = Vec::new();
        let mut config = ServeConfig::new(args.data_dir.clone());
        config.require_auth = !args.insecure_no_auth;
        if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
            let mut read = |p: &std::path::PathBuf| match std::fs::read(p) {
                Ok(pem) => pem,
                Err(e) => {
                    problems.push(format!("reading {}: {e}", p.display()));
                    Vec::new()
                }
            };
            let (cert_pem, key_pem) = (read(cert), read(key));
            let client_ca_pem = args.tls_client_ca.as_ref().map(&mut read);
            config.tls = Some(crate::server::TlsFiles {
                cert_pem,
                key_pem,
                client_ca_pem,
            });
        }
        config.hj212_tls = args.hj212_tls;
        config.ingest.max_batch_records = args.max_batch_records;
        config.ingest.max_batch_values = args.max_batch_values;
        config.ingest.max_clock_skew_ms = i64::from(args.max_clock_skew_secs) * 1000;
        match args.memory_budget_mib.checked_mul(1 << 20) {
            Some(bytes) if bytes >= 16 << 20 => config.ingest.memory_budget_bytes = bytes,
            _ => problems.push(format!(
                "--memory-budget-mib must be at least 16 (and fit in memory), got {}",
                args.memory_budget_mib
            )),
        }
        if (1..=100).contains(&args.sender_share_pct) {
            config.ingest.sender_share_bytes =
                config.ingest.memory_budget_bytes / 100 * usize::from(args.sender_share_pct);
        } else {
            problems.push(format!(
                "--sender-share-pct must be in 1..=100, got {}",
                args.sender_share_pct
            ));
        }
        config.allowed_lateness = Duration::from_secs(args.allowed_lateness_secs);
        match args.cache_mb.checked_mul(1 << 20) {
            Some(bytes) => config.cache_bytes = bytes,
            None => problems.push(format!("--cache-mb {} is too large", args.cache_mb)),
        }
        config.language = args.language;
        if args.false_alarms_per_day > 0.0 && args.false_alarms_per_day < 1.0 {
            config.detect.false_alarms_per_day = args.false_alarms_per_day;
        } else {
            problems.push(format!(
                "--false-alarms-per-day must be in (0, 1), got {}",
                args.false_alarms_per_day
            ));
        }
        if (0.0..=1.0).contains(&args.transmission_floor) {
            config.detect.transmission_floor = args.transmission_floor;
        } else {
            problems.push(format!(
                "--transmission-floor must be in [0, 1], got {}",
                args.transmission_floor
            ));
        }
        let hours = args.retrain_every_hours;
        match Duration::try_from_secs_f64(hours * 3600.0) {
            Ok(every) if hours > 0.0 => {
                config.retrain = Some(RetrainSchedule {
                    every,
                    window_days: args.retrain_window_days,
                    activate: args.retrain_activate,
                    only_on_drift: args.retrain_on_drift,
                });
            }
            Ok(_) => {}
            Err(_) => problems.push(format!(
                "--retrain-every-hours must be a finite number of hours ≥ 0 (0 = never), got {hours}"
            )),
        }
        if let Some(path) = &args.hj212_config {
            match GatewayConfig::load(path) {
                Ok(c) => config.hj212 = c,
                Err(e) => problems.push(e.to_string()),
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(InvalidArgs(problems))
        }
    }
}

impl ServeArgs {
    /// Serves until SIGINT/SIGTERM, then shuts down without losing acknowledged data.
    ///
    /// # Errors
    /// Invalid flags, an address that cannot be bound, or a store that cannot be opened.
    pub async fn run(self) -> anyhow::Result<()> {
        let config = ServeConfig::try_from(&self)?;
        let listener = tokio::net::TcpListener::bind(self.listen).await?;
        let hj212 = match self.hj212_listen {
            Some(a) => Some(tokio::net::TcpListener::bind(a).await?),
            None => None,
        };
        let mut server = server::start_with(config, listener, hj212).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> ServeArgs {
        Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .expect("parses")
            .serve
    }

    #[test]
    fn defaults_give_the_documented_config() {
        let c = ServeConfig::try_from(&parse(&["--data-dir", "d"])).expect("valid");
        assert_eq!(c.data_dir, PathBuf::from("d"));
        assert_eq!(c.cache_bytes, 256 << 20);
        assert_eq!(c.allowed_lateness, Duration::from_secs(7200));
        assert_eq!(c.ingest.max_batch_records, 10_000);
        assert_eq!(c.detect.false_alarms_per_day, 0.002);
        assert_eq!(c.detect.transmission_floor, 0.9);
        assert!(c.retrain.is_none());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let args = parse(&[
            "--false-alarms-per-day",
            "1.5",
            "--retrain-every-hours=-1",
            "--transmission-floor",
            "1.5",
            "--hj212-config",
            "/nonexistent/hj212.toml",
        ]);
        let InvalidArgs(problems) = ServeConfig::try_from(&args).expect_err("invalid");
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn a_schedule_is_built_from_the_retrain_flags() {
        let args = parse(&["--retrain-every-hours", "24", "--retrain-on-drift"]);
        let r = ServeConfig::try_from(&args)
            .expect("valid")
            .retrain
            .expect("scheduled");
        assert_eq!(r.every, Duration::from_secs(86_400));
        assert_eq!(r.window_days, 14);
        assert!(r.only_on_drift && !r.activate);
    }
}

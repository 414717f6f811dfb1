//! The commands behind the CLI, each module owning its flags (`clap` args) and a `run`: serving, feeding a server
//! with simulated enterprises, the demo, scoring a server's anomalies against ground truth, the enforcement list,
//! models, HJ 212 and the benchmarks. The client commands talk to the service only through its gRPC API, exactly as
//! a monitoring platform would.

pub mod anomalies;
pub mod availability;
pub mod bench;
pub mod demo;
pub mod eval;
pub mod evidence;
pub mod feed;
pub mod hj212;
pub mod models;
pub mod principals;
pub mod replay_epa;
pub mod serve;
pub mod simulate;
pub mod table;

/// Logs to stderr, at `info` unless `RUST_LOG` says otherwise.
pub fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

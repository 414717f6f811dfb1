//! `sentinel`: the service and its tools. Each command's flags and behaviour live in its `tools` module.

use cems_sentinel::tools::{
    anomalies, availability, bench, demo, eval, evidence, hj212, models, principals, replay_epa,
    serve, simulate,
};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// mimalloc gives freed memory back to the OS soon after it is freed; glibc's malloc keeps what a flood of batches
/// took in its per-thread arenas (measured in tests/bounds.rs and docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// cems-sentinel: catches bypass emissions, idle scrubbers and faked CEMS data from monitoring and power-meter streams.
#[derive(Parser)]
#[command(name = "sentinel", version, about)]
struct Cli {
    /// The server the client commands (eval, anomalies, incidents, hotspots, review, train, models) talk to.
    #[arg(
        long,
        global = true,
        env = "SENTINEL_SERVER",
        default_value = "127.0.0.1:50051"
    )]
    #[arg(help_heading = "Global options")]
    server: String,
    /// The credential client commands send (`authorization: Bearer`); see also --token-file.
    #[arg(long, global = true, env = "SENTINEL_TOKEN", hide_env_values = true)]
    #[arg(help_heading = "Global options")]
    token: Option<String>,
    /// Read the credential from this file (e.g. `<data-dir>/admin.token`).
    #[arg(long, global = true, conflicts_with = "token")]
    #[arg(help_heading = "Global options")]
    token_file: Option<std::path::PathBuf>,
    /// Connect over TLS, trusting the CA in this PEM file.
    #[arg(long, global = true, env = "SENTINEL_TLS_CA")]
    #[arg(help_heading = "Global options")]
    tls_ca: Option<std::path::PathBuf>,
    /// With --tls-ca: the name the server's certificate must carry (default: the --server host).
    #[arg(long, global = true, requires = "tls_ca")]
    #[arg(help_heading = "Global options")]
    tls_domain: Option<String>,
    /// With --tls-ca, for a server requiring client certificates: this certificate (PEM) and --tls-client-key.
    #[arg(long, global = true, requires_all = ["tls_ca", "tls_client_key"])]
    #[arg(help_heading = "Global options")]
    tls_client_cert: Option<std::path::PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, global = true, requires = "tls_client_cert")]
    #[arg(help_heading = "Global options")]
    tls_client_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC service on an embedded store.
    Serve(serve::ServeArgs),
    /// The whole product in one command: service + simulated enterprises + enforcement list + score.
    Demo(demo::DemoArgs),
    /// Generate simulated enterprises with known violations: stream them to a server, or write them to files.
    Simulate(simulate::SimulateArgs),
    /// Score a server's anomalies against a ground-truth file.
    Eval(eval::EvalArgs),
    /// Real US EPA hourly CEMS data, clean and with violations written in, through an embedded service, scored.
    ReplayEpa(replay_epa::ReplayEpaArgs),
    /// The enforcement list from a running server.
    Anomalies(anomalies::AnomaliesArgs),
    /// Incidents: overlapping anomalies of one enterprise as one case.
    Incidents(anomalies::IncidentsArgs),
    /// Enterprises (or regions) ranked by unresolved anomaly severity.
    Hotspots(anomalies::HotspotsArgs),
    /// Data availability per stack outlet and month: transmission rate, outages, the longest.
    Availability(availability::AvailabilityArgs),
    /// Move an anomaly through the review workflow (open → dispatched → confirmed / false_positive → rectified → closed).
    Review(anomalies::ReviewArgs),
    /// Fit new model versions for outlets or an industry on a running server (in the background, with progress).
    Train(models::TrainArgs),
    /// Model versions: list, show, activate (and roll back), evaluate, export the labelled dataset, build priors.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Principals: who may call the service, in which role and scope (admin).
    #[command(subcommand)]
    Principals(principals::PrincipalsCommand),
    /// Who changed what: registry changes, reviews, activations, principals, refused attempts (admin).
    Audit(principals::AuditArgs),
    /// The copy of record: export an anomaly's evidence bundle, verify one offline, print the signed log head.
    #[command(subcommand)]
    Evidence(evidence::EvidenceCommand),
    /// HJ 212 tools: check a file of packets, or send it to a gateway.
    #[command(subcommand)]
    Hj212(hj212::Hj212Command),
    /// Benchmarks (figures are printed, not asserted).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> anyhow::Result<ExitCode> {
    let Cli {
        server,
        token,
        token_file,
        tls_ca,
        tls_domain,
        tls_client_cert,
        tls_client_key,
        command,
    } = Cli::parse();
    cems_sentinel::tools::init_logs();
    let token = match (token, token_file) {
        (Some(t), _) => Some(t),
        (None, Some(path)) => Some(
            std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("reading the token file {}: {e}", path.display()))?
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    if let Some(t) = token {
        cems_sentinel::tools::feed::set_cli_token(t);
    }
    if let Some(ca) = tls_ca {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
        };
        let identity = match (tls_client_cert, tls_client_key) {
            (Some(c), Some(k)) => Some((read(&c)?, read(&k)?)),
            _ => None,
        };
        cems_sentinel::tools::feed::set_cli_tls(cems_sentinel::tools::feed::ClientTls {
            ca_pem: read(&ca)?,
            domain: tls_domain,
            identity,
        });
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match command {
            Command::Serve(a) => a.run().await?,
            Command::Demo(a) => a.run().await?,
            Command::Simulate(a) => a.run().await?,
            Command::Eval(a) => a.run(&server).await?,
            Command::ReplayEpa(a) => a.run().await?,
            Command::Anomalies(a) => a.run(&server).await?,
            Command::Incidents(a) => a.run(&server).await?,
            Command::Hotspots(a) => a.run(&server).await?,
            Command::Availability(a) => a.run(&server).await?,
            Command::Review(a) => a.run(&server).await?,
            Command::Train(a) => a.run(&server).await?,
            Command::Models(c) => c.run(&server).await?,
            Command::Principals(c) => c.run(&server).await?,
            Command::Audit(a) => a.run(&server).await?,
            Command::Hj212(c) => return c.run().await,
            Command::Evidence(c) => return c.run(&server).await,
            Command::Bench(c) => c.run().await?,
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[test]
fn the_command_line_is_well_formed() {
    <Cli as clap::CommandFactory>::command().debug_assert();
}

//! `sentinel simulate`: simulated enterprises with known violations, streamed to a server (gRPC or HJ 212) or
//! written to files; and the simulation flags `demo` and `models build-priors` share.

use super::feed;
use crate::sim::{Family, Scenario, SimConfig};
use std::io::Write as _;
use std::path::PathBuf;

/// Simulation flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Seed: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of enterprises.
    #[arg(long, default_value_t = 20)]
    pub enterprises: usize,
    /// Days of minute data.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Share of enterprises kept free of violations (1 = all clean: a false-alarm run).
    #[arg(long, default_value_t = 0.3)]
    pub clean_share: f64,
    /// Scenario family: `district` (the one detectors were tuned on) or `field` (held out).
    #[arg(long, default_value = "district")]
    pub family: Family,
}

impl SimArgs {
    /// The simulator's configuration (default start time).
    pub fn config(&self) -> SimConfig {
        SimConfig {
            seed: self.seed,
            enterprises: self.enterprises,
            days: self.days,
            clean_share: self.clean_share,
            family: self.family,
            ..Default::default()
        }
    }
}

/// `sentinel simulate` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
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

impl SimulateArgs {
    /// Generates the scenario and sends or writes it.
    ///
    /// # Errors
    /// Neither `--to` nor `--out`, a file that cannot be written, or a failed call.
    pub async fn run(self) -> anyhow::Result<()> {
        let mut scenario = Scenario::new(self.sim.config());
        let truth = scenario.truth_file();
        if let Some(dir) = self.out {
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
            let mut out =
                std::io::BufWriter::new(std::fs::File::create(dir.join("records.jsonl"))?);
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
        let Some(addr) = self.to else {
            anyhow::bail!("say where the data goes: --to HOST:PORT or --out DIR");
        };
        let channel = feed::connect(&addr).await?;
        feed::register(&channel, &scenario).await?;
        std::fs::write(&self.truth, serde_json::to_vec_pretty(&truth)?)?;
        if let Some(gateway) = self.hj212_to {
            let packets = feed::hj212_packets(&mut scenario);
            let stats = feed::send_hj212(&gateway, packets).await?;
            println!(
                "sent {} HJ 212 packets to {gateway}: {} acknowledged (9014) in {:.1} s; truth in {}",
                stats.measurements,
                stats.accepted,
                stats.elapsed.as_secs_f64(),
                self.truth.display()
            );
            return Ok(());
        }
        let minutes_per_batch = if self.minutes_per_sec.is_some() {
            1
        } else {
            10
        };
        let batches = feed::batches(&mut scenario, minutes_per_batch);
        let stats = feed::push(
            &channel,
            batches,
            self.minutes_per_sec.map(|r| (minutes_per_batch, r)),
        )
        .await?;
        println!(
            "streamed {} measurements ({} accepted, {} rejected) in {:.1} s; truth in {}",
            stats.measurements,
            stats.accepted,
            stats.rejected,
            stats.elapsed.as_secs_f64(),
            self.truth.display()
        );
        Ok(())
    }
}

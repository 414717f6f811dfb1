//! `sentinel eval`: a server's anomalies scored against a ground-truth file; or, with `--seeds`, the held-out
//! protocol: each seed of a scenario family run through a fresh embedded server and scored together, refusing seeds
//! the detectors were tuned on. As a table, JSON, or Markdown for docs/EVALUATION.md (also written by `sentinel demo
//! --markdown`).

use super::demo::{list_all, score, score_table};
use super::feed;
use super::table::beijing;
use crate::eval::Report;
use crate::pb;
use crate::pb::ingest_service_client::IngestServiceClient;
use crate::server::{self, ServeConfig};
use crate::sim::{Family, Scenario, SimConfig, TruthFile};
use std::path::{Path, PathBuf};

/// The commit this binary was built from (`unknown` outside a git checkout); set by build.rs.
pub const GIT_COMMIT: &str = env!("SENTINEL_GIT_COMMIT");

/// `sentinel eval` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Ground-truth file (from `sentinel simulate` or `sentinel demo --data-dir`) to score the server's anomalies
    /// against.
    #[arg(long, required_unless_present = "seeds", conflicts_with = "seeds")]
    truth: Option<PathBuf>,
    /// Instead: run these seeds of `--family` (comma-separated), each on a fresh embedded server, and score them
    /// together. Seeds the detectors were tuned on are refused.
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<u64>,
    /// With --seeds: the scenario family.
    #[arg(long, default_value = "field")]
    family: Family,
    /// With --seeds: days per scenario.
    #[arg(long, default_value_t = 28)]
    days: u32,
    /// With --seeds: enterprises per scenario.
    #[arg(long, default_value_t = 16)]
    enterprises: usize,
    /// With --seeds: score tuning seeds too (the report then says these are not held-out figures).
    #[arg(long)]
    allow_tuning_seeds: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Also write the report as Markdown (for docs/EVALUATION.md) to this file.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
}

/// Output formats of `sentinel eval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned table for a terminal.
    Table,
    /// The report as JSON.
    Json,
}

impl EvalArgs {
    /// Scores the anomalies of `server` against the truth file (or runs the seeds) and prints (and optionally
    /// writes) the report.
    ///
    /// # Errors
    /// An unreadable truth file, a tuning seed without `--allow-tuning-seeds`, a failed call, or a Markdown file
    /// that cannot be written.
    pub async fn run(self, server: &str) -> anyhow::Result<()> {
        let (report, scenario, source) = match &self.truth {
            Some(path) => {
                let truth: TruthFile = serde_json::from_slice(&std::fs::read(path)?)?;
                let channel = feed::connect(server).await?;
                let anomalies = list_all(&channel, Default::default()).await?;
                (
                    score(&truth, &anomalies),
                    describe_truth(&truth),
                    format!("`sentinel eval` of {server} against `{}`", path.display()),
                )
            }
            None => {
                let tuned: Vec<u64> = self
                    .seeds
                    .iter()
                    .copied()
                    .filter(|s| self.family.tuning_seeds().contains(s))
                    .collect();
                if !tuned.is_empty() && !self.allow_tuning_seeds {
                    anyhow::bail!(
                        "seeds {tuned:?} of family {} were used to tune the detectors: their figures are not \
                         held-out figures (pass --allow-tuning-seeds to score them anyway)",
                        self.family.as_str()
                    );
                }
                let configs: Vec<SimConfig> = self
                    .seeds
                    .iter()
                    .map(|&seed| SimConfig {
                        seed,
                        enterprises: self.enterprises,
                        days: self.days,
                        family: self.family,
                        ..SimConfig::default()
                    })
                    .collect();
                let (truth, anomalies) = run_seeds(&configs).await?;
                let held_out = if tuned.is_empty() {
                    "held out: no threshold was tuned on them"
                } else {
                    "NOT held out: some were used for tuning"
                };
                let seeds: Vec<String> = self.seeds.iter().map(u64::to_string).collect();
                (
                    score(&truth, &anomalies),
                    format!(
                        "family `{}`, seeds {} ({held_out}); each {} enterprises × {} days from {} (UTC+8); \
                         {} injected violations, {} clean enterprises in all",
                        self.family.as_str(),
                        seeds.join(", "),
                        self.enterprises,
                        self.days,
                        beijing(truth.start_ms),
                        truth.events.len(),
                        truth.clean_enterprises.len()
                    ),
                    "`sentinel eval --seeds`, each seed on a fresh embedded server through gRPC".to_string(),
                )
            }
        };
        match self.format {
            Format::Table => {
                println!("{scenario}\n");
                print!("{}", score_table(&report));
            }
            Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        }
        if let Some(path) = &self.markdown {
            write_markdown(path, &report, &scenario, &source)?;
        }
        Ok(())
    }
}

/// Runs each scenario through a fresh embedded server (registry, declared changes, data over gRPC Push, final
/// detection) and returns the truths and anomalies of all of them, enterprise and outlet ids prefixed with
/// `<family>-<seed>/` so that one score covers them all.
///
/// # Errors
/// A server that cannot start or a failed call.
pub async fn run_seeds(configs: &[SimConfig]) -> anyhow::Result<(TruthFile, Vec<pb::Anomaly>)> {
    let mut all_truth: Option<TruthFile> = None;
    let mut all_anomalies = Vec::new();
    for config in configs {
        let prefix = format!("{}-{}/", config.family.as_str(), config.seed);
        let dir = tempfile::tempdir()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let running = server::start(ServeConfig::new(dir.path().to_path_buf()), listener).await?;
        let channel =
            feed::connect_as(&running.addr.to_string(), running.admin_token.as_deref()).await?;
        let mut scenario = Scenario::new(config.clone());
        feed::register(&channel, &scenario).await?;
        let batches = feed::batches(&mut scenario, 10);
        feed::push(&channel, batches, None).await?;
        IngestServiceClient::new(channel.clone())
            .sync(pb::SyncRequest { finalize: true })
            .await?;
        let anomalies = list_all(&channel, pb::ListAnomaliesRequest::default()).await?;
        running.shutdown().await?;
        eprintln!(
            "{prefix}: {} injected violations, {} anomalies",
            scenario.truth.len(),
            anomalies.len()
        );
        let mut truth = scenario.truth_file();
        for e in &mut truth.events {
            e.enterprise_id.insert_str(0, &prefix);
            e.outlet_id.insert_str(0, &prefix);
        }
        for c in &mut truth.clean_enterprises {
            c.insert_str(0, &prefix);
        }
        all_anomalies.extend(anomalies.into_iter().map(|mut a| {
            a.enterprise_id.insert_str(0, &prefix);
            a.outlet_id.insert_str(0, &prefix);
            a
        }));
        match &mut all_truth {
            None => all_truth = Some(truth),
            Some(t) => {
                t.events.extend(truth.events);
                t.clean_enterprises.extend(truth.clean_enterprises);
                t.seed = None;
            }
        }
    }
    let truth = all_truth.ok_or_else(|| anyhow::anyhow!("no seeds given"))?;
    Ok((truth, all_anomalies))
}

/// Writes [`markdown`] to `path`.
///
/// # Errors
/// When the file cannot be written.
pub fn write_markdown(
    path: &Path,
    report: &Report,
    scenario: &str,
    source: &str,
) -> anyhow::Result<()> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    std::fs::write(
        path,
        markdown(report, scenario, source, &beijing(now_ms)[..10]),
    )
    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{:.0} %", x * 100.0))
}

/// What a truth file describes: seed, family and size when it records them, days, start, violations.
pub fn describe_truth(truth: &TruthFile) -> String {
    let mut scenario = match truth.seed {
        Some(seed) => format!("simulator seed {seed}"),
        None => "simulator seed not recorded".to_string(),
    };
    if let Some(family) = truth.family {
        scenario.push_str(&format!(" of family `{}`", family.as_str()));
    }
    if let Some(n) = truth.enterprises {
        scenario.push_str(&format!(", {n} enterprises"));
    }
    scenario.push_str(&format!(
        ", {} of them clean",
        truth.clean_enterprises.len()
    ));
    if let Some(share) = truth.clean_share {
        scenario.push_str(&format!(" (clean share {share})"));
    }
    scenario.push_str(&format!(
        ", {} days from {} (UTC+8), {} injected violations",
        truth.days,
        beijing(truth.start_ms),
        truth.events.len()
    ));
    scenario
}

/// The score report as Markdown: what was scored (`scenario`), date, commit, a table with one row per kind, and the
/// overall figures.
pub fn markdown(report: &Report, scenario: &str, source: &str, date: &str) -> String {
    let r = report;
    let mut out = format!(
        "# Evaluation\n\n\
         Scored {date} (UTC+8) by {source}, built from commit `{GIT_COMMIT}`.\n\n\
         Scenario: {scenario}; an alarm matches an event within ±{:.0} min.\n\n\
         | kind | events | found | recall | alarms | precision | median delay (min) | alarms on clean | false alarms per clean enterprise-day |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        r.tolerance_min
    );
    for k in &r.kinds {
        let per_day = if r.clean_enterprise_days > 0.0 {
            format!(
                "{:.3}",
                k.false_alarms_on_clean as f64 / r.clean_enterprise_days
            )
        } else {
            "–".to_string()
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {per_day} |\n",
            k.kind.as_str(),
            k.events,
            k.detected,
            pct(k.recall),
            k.alarms,
            pct(k.precision),
            k.median_delay_min
                .map_or_else(|| "–".into(), |d| format!("{d:.0}")),
            k.false_alarms_on_clean,
        ));
    }
    out.push_str(&format!(
        "\nOverall: recall {}, precision {}; {:.3} false alarms per clean enterprise-day over {:.0} clean \
         enterprise-days.\n",
        pct(r.overall_recall),
        pct(r.overall_precision),
        r.false_alarms_per_enterprise_day,
        r.clean_enterprise_days
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AnomalyKind;
    use crate::eval::KindScore;

    fn truth(seed: Option<u64>) -> TruthFile {
        TruthFile {
            start_ms: 1_740_931_200_000,
            days: 7.0,
            clean_enterprises: vec!["E02".into()],
            events: Vec::new(),
            seed,
            enterprises: seed.map(|_| 2),
            clean_share: None,
            family: None,
        }
    }

    fn report() -> Report {
        Report {
            kinds: vec![KindScore {
                kind: AnomalyKind::BypassSuspected,
                events: 4,
                detected: 3,
                recall: Some(0.75),
                alarms: 5,
                true_alarms: 4,
                precision: Some(0.8),
                median_delay_min: Some(12.0),
                false_alarms_on_clean: 1,
            }],
            overall_recall: Some(0.75),
            overall_precision: Some(0.8),
            false_alarms_per_enterprise_day: 1.0 / 7.0,
            clean_enterprise_days: 7.0,
            tolerance_min: 30.0,
        }
    }

    #[test]
    fn markdown_has_a_row_per_kind_and_the_stamp() {
        let md = markdown(
            &report(),
            &describe_truth(&truth(Some(7))),
            "a test",
            "2025-06-01",
        );
        assert!(md.contains("2025-06-01"), "{md}");
        assert!(md.contains(GIT_COMMIT), "{md}");
        assert!(
            md.contains("simulator seed 7, 2 enterprises, 1 of them clean"),
            "{md}"
        );
        assert!(
            md.contains("| `bypass_suspected` | 4 | 3 | 75 % | 5 | 80 % | 12 | 1 | 0.143 |"),
            "{md}"
        );
        assert!(
            md.contains("0.143 false alarms per clean enterprise-day"),
            "{md}"
        );
    }

    #[test]
    fn older_truth_files_say_the_seed_is_not_recorded() {
        let old = r#"{"start_ms":0,"days":1.0,"clean_enterprises":[],"events":[]}"#;
        let t: TruthFile = serde_json::from_str(old).expect("old format still reads");
        assert_eq!(t.seed, None);
        let md = markdown(&report(), &describe_truth(&t), "a test", "2025-06-01");
        assert!(md.contains("simulator seed not recorded"), "{md}");
    }

    #[test]
    fn simulated_truth_files_record_the_scenario() {
        let config = crate::sim::SimConfig {
            seed: 9,
            enterprises: 2,
            days: 1,
            ..Default::default()
        };
        let t = crate::sim::Scenario::new(config).truth_file();
        let back: TruthFile =
            serde_json::from_slice(&serde_json::to_vec(&t).expect("writes")).expect("reads");
        assert_eq!(
            (back.seed, back.enterprises, back.clean_share),
            (Some(9), Some(2), Some(0.3))
        );
    }
}

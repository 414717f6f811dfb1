//! `sentinel eval`: a server's anomalies scored against a ground-truth file, as a table, JSON, or a Markdown report
//! for docs/EVALUATION.md (also written by `sentinel demo --markdown`).

use super::demo::{list_all, score, score_table};
use super::feed;
use super::table::beijing;
use crate::eval::Report;
use crate::sim::TruthFile;
use std::path::{Path, PathBuf};

/// The commit this binary was built from (`unknown` outside a git checkout); set by build.rs.
pub const GIT_COMMIT: &str = env!("SENTINEL_GIT_COMMIT");

/// `sentinel eval` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Ground-truth file (from `sentinel simulate` or `sentinel demo --data-dir`).
    #[arg(long)]
    truth: PathBuf,
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
    /// Scores the anomalies of `server` against the truth file and prints (and optionally writes) the report.
    ///
    /// # Errors
    /// An unreadable truth file, a failed call, or a Markdown file that cannot be written.
    pub async fn run(self, server: &str) -> anyhow::Result<()> {
        let truth: TruthFile = serde_json::from_slice(&std::fs::read(&self.truth)?)?;
        let channel = feed::connect(server).await?;
        let anomalies = list_all(&channel, Default::default()).await?;
        let report = score(&truth, &anomalies);
        match self.format {
            Format::Table => print!("{}", score_table(&report)),
            Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        }
        if let Some(path) = &self.markdown {
            let source = format!(
                "`sentinel eval` of {server} against `{}`",
                self.truth.display()
            );
            write_markdown(path, &report, &truth, &source)?;
        }
        Ok(())
    }
}

/// Writes [`markdown`] to `path`.
///
/// # Errors
/// When the file cannot be written.
pub fn write_markdown(
    path: &Path,
    report: &Report,
    truth: &TruthFile,
    source: &str,
) -> anyhow::Result<()> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    std::fs::write(
        path,
        markdown(report, truth, source, &beijing(now_ms)[..10]),
    )
    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{:.0} %", x * 100.0))
}

/// The score report as Markdown: what was scored (seed and scenario when the truth file records them, date,
/// commit), a table with one row per kind, and the overall figures.
pub fn markdown(report: &Report, truth: &TruthFile, source: &str, date: &str) -> String {
    let r = report;
    let mut scenario = match truth.seed {
        Some(seed) => format!("simulator seed {seed}"),
        None => "simulator seed not recorded".to_string(),
    };
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
        let md = markdown(&report(), &truth(Some(7)), "a test", "2025-06-01");
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
        let md = markdown(&report(), &t, "a test", "2025-06-01");
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

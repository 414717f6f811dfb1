//! `sentinel replay-epa`: real US EPA hourly CEMS data ([`crate::eval::epa`]) through the real service, on an
//! embedded store: every unit registered as an enterprise, its hours streamed over gRPC `Push` as hour averages,
//! the anomalies scored against what was injected, and every alarm on a clean unit listed (each is a false alarm on
//! real data).

use super::demo::{list_all, score, score_table};
use super::feed;
use super::feed::Conn;
use super::table::{beijing, render};
use crate::api::points_to_records;
use crate::domain::{AnomalyKind, MS_PER_DAY};
use crate::eval::epa::{self, Case, Injection, Replay};
use crate::eval::Report;
use crate::pb;
use crate::pb::ingest_service_client::IngestServiceClient;
use crate::server::{self, ServeConfig};
use std::path::PathBuf;

/// The copy the default plan writes each violation into, and from which day of the replay on.
pub const DEFAULT_CASES: [(&str, Injection, usize); 4] = [
    ("8042-2", Injection::GainCut, 20),
    ("2709-2", Injection::ReplayedWeek, 40),
    ("2718-3", Injection::StuckDay, 60),
    ("2721-5", Injection::Clamp, 30),
];

/// The default plan as cases.
pub fn default_cases() -> Vec<Case> {
    DEFAULT_CASES
        .iter()
        .map(|&(unit_id, injection, from_day)| Case {
            unit_id: unit_id.into(),
            injection,
            from_day,
        })
        .collect()
}

/// `sentinel replay-epa` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayEpaArgs {
    /// SMOKE CEM file (the repo's copy of ten North Carolina 2007 units by default).
    #[arg(long, default_value = "tests/data/real/epa_cems_2007_NC_10_units.txt")]
    file: PathBuf,
    /// First month replayed (1–12).
    #[arg(long, default_value_t = 1)]
    from_month: u32,
    /// Last month replayed (1–12).
    #[arg(long, default_value_t = 12)]
    to_month: u32,
    /// Also write the report as Markdown to this file.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Also write every anomaly, with its evidence, as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// What a replay measured.
pub struct RealReport {
    /// The score against the injections (clean enterprises are the real units).
    pub report: Report,
    /// Every anomaly the service raised.
    pub anomalies: Vec<pb::Anomaly>,
    /// Clean unit-months replayed.
    pub clean_unit_months: f64,
}

impl RealReport {
    /// Anomalies raised on the real, clean units.
    pub fn on_clean<'a>(&'a self, replay: &'a Replay) -> impl Iterator<Item = &'a pb::Anomaly> {
        self.anomalies
            .iter()
            .filter(|a| replay.truth.clean_enterprises.contains(&a.enterprise_id))
    }
}

/// The replay window of months `from..=to` of 2007 (UTC month starts, close enough for a year of data).
pub fn window(from_month: u32, to_month: u32) -> (i64, i64) {
    let start = |m: u32| {
        if m > 12 {
            crate::domain::days_from_civil(2008, 1, 1) * MS_PER_DAY
        } else {
            crate::domain::days_from_civil(2007, m, 1) * MS_PER_DAY
        }
    };
    (start(from_month), start(to_month + 1))
}

/// Registers the replay's units, streams its hours in day batches through `Push`, finalises detection and scores.
///
/// # Errors
/// A refused registration, a failed stream or call.
pub async fn replay_through(channel: &Conn, replay: &Replay) -> anyhow::Result<RealReport> {
    feed::register_all(
        channel,
        &replay.enterprises,
        &replay.outlets,
        &replay.meters,
        &[],
    )
    .await?;
    let mut batches: Vec<pb::RecordBatch> = Vec::new();
    for day in replay
        .points
        .chunk_by(|a, b| a.time_ms.div_euclid(MS_PER_DAY) == b.time_ms.div_euclid(MS_PER_DAY))
    {
        batches.push(pb::RecordBatch {
            seq: batches.len() as u64 + 1,
            records: points_to_records(day.to_vec()),
        });
    }
    let stats = feed::push(channel, batches, None).await?;
    anyhow::ensure!(
        stats.rejected == 0,
        "{} measurements rejected",
        stats.rejected
    );
    IngestServiceClient::new(channel.clone())
        .sync(pb::SyncRequest { finalize: true })
        .await?;
    let anomalies = list_all(channel, pb::ListAnomaliesRequest::default()).await?;
    let report = score(&replay.truth, &anomalies);
    let clean_unit_months = report.clean_enterprise_days / (365.25 / 12.0);
    Ok(RealReport {
        report,
        anomalies,
        clean_unit_months,
    })
}

fn alarms_table(replay: &Replay, r: &RealReport) -> String {
    let rows: Vec<Vec<String>> = r
        .on_clean(replay)
        .map(|a| {
            vec![
                a.enterprise_id.clone(),
                AnomalyKind::from_number(a.kind)
                    .map_or("?", |k| k.as_str())
                    .to_string(),
                beijing(a.start_ms),
                format!("{:.0}", (a.end_ms - a.start_ms) as f64 / 3_600_000.0),
                format!("{:.2}", a.score),
            ]
        })
        .collect();
    render(&["unit", "kind", "start (UTC+8)", "hours", "score"], &rows)
}

impl ReplayEpaArgs {
    /// Runs the replay on an embedded service.
    ///
    /// # Errors
    /// An unreadable or malformed file, a service that cannot start, a failed call.
    pub async fn run(self) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(&self.file)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", self.file.display()))?;
        let units = epa::parse(&text)?;
        let (from_ms, to_ms) = window(self.from_month, self.to_month);
        let replay = epa::replay(&units, &default_cases(), from_ms, to_ms);
        for c in &replay.unplaced {
            println!("not placed (no fully measured stretch): {c:?}");
        }
        let dir = tempfile::tempdir()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let running = server::start(ServeConfig::new(dir.path().to_path_buf()), listener).await?;
        let channel =
            feed::connect_as(&running.addr.to_string(), running.admin_token.as_deref()).await?;
        println!(
            "replaying {} units ({} with a violation written in) over months {}–{} of 2007: {} points",
            units.len(),
            replay.truth.events.len(),
            self.from_month,
            self.to_month,
            replay.points.len()
        );
        let r = replay_through(&channel, &replay).await?;
        running.shutdown().await?;
        let on_clean = r.on_clean(&replay).count();
        let summary = format!(
            "{} alarms on {:.1} clean unit-months: {:.3} per unit-month\n",
            on_clean,
            r.clean_unit_months,
            on_clean as f64 / r.clean_unit_months.max(1e-9)
        );
        print!(
            "\n{}\n{summary}\n{}",
            score_table(&r.report),
            alarms_table(&replay, &r)
        );
        if let Some(path) = &self.json {
            let all: Vec<_> = r.anomalies.iter().map(super::anomalies::json_of).collect();
            std::fs::write(path, serde_json::to_vec_pretty(&all)?)?;
        }
        if let Some(path) = &self.markdown {
            let md = format!(
                "# Real data: US EPA hourly CEMS, North Carolina 2007\n\n> Generated by `sentinel replay-epa --from-month {} --to-month {} --markdown {}` at commit `{}`. Detectors are developed on months 1–6 of these units; months 7–12 are held out and the figures to quote.\n\n{}\n\n## Score against the injected violations\n\n```\n{}```\n\n## Alarms on the clean units\n\n```\n{}```\n",
                self.from_month,
                self.to_month,
                path.display(),
                env!("SENTINEL_GIT_COMMIT"),
                summary.trim_end(),
                score_table(&r.report),
                alarms_table(&replay, &r)
            );
            std::fs::write(path, md)?;
        }
        Ok(())
    }
}

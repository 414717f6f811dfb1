//! `sentinel demo`: the whole product in one command. Starts the service on an embedded store, registers simulated
//! enterprises, streams a week of minute data through the real gRPC path, and prints the enforcement list and the
//! score against the injected ground truth.

use super::feed;
use super::feed::Conn;
use super::principals;
use super::simulate::SimArgs;
use super::table::{beijing, render, truncate};
use crate::auth::Role;
use crate::domain::AnomalyKind;
use crate::domain::Language;
use crate::eval::{self, Detection, Report};
use crate::pb;
use crate::pb::enforcement_service_client::EnforcementServiceClient;
use crate::pb::ingest_service_client::IngestServiceClient;
use crate::server::{self, ServeConfig};
use crate::sim::{Scenario, TruthFile};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

/// `sentinel demo` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
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
    language: Language,
    /// Also write the score report as Markdown (as `sentinel eval --markdown` does) to this file.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
}

/// Lists every anomaly, all pages, in rank order.
///
/// # Errors
/// A failed call.
pub async fn list_all(
    channel: &Conn,
    mut req: pb::ListAnomaliesRequest,
) -> anyhow::Result<Vec<pb::Anomaly>> {
    let mut client = EnforcementServiceClient::new(channel.clone());
    let mut out = Vec::new();
    req.page_size = 1000;
    loop {
        let page = client.list_anomalies(req.clone()).await?.into_inner();
        out.extend(page.anomalies);
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        req.page_token = page.next_page_token;
    }
}

/// Scores a server's anomalies against a truth file.
pub fn score(truth: &TruthFile, anomalies: &[pb::Anomaly]) -> Report {
    let detections: Vec<Detection> = anomalies
        .iter()
        .filter_map(|a| {
            Some(Detection {
                enterprise_id: a.enterprise_id.clone(),
                outlet_id: a.outlet_id.clone(),
                kind: AnomalyKind::from_number(a.kind)?,
                start_ms: a.start_ms,
                end_ms: a.end_ms,
                detected_at_ms: a.detected_at_ms,
            })
        })
        .collect();
    eval::score(
        &truth.events,
        &detections,
        &truth.clean_enterprises,
        truth.days,
        eval::DEFAULT_TOLERANCE_MS,
    )
}

fn kind_name(n: i32) -> String {
    AnomalyKind::from_number(n).map_or_else(|| n.to_string(), |k| k.as_str().to_string())
}

/// The enforcement list as a table.
pub fn anomaly_table(anomalies: &[pb::Anomaly], names: &dyn Fn(&str) -> String) -> String {
    let rows: Vec<Vec<String>> = anomalies
        .iter()
        .enumerate()
        .map(|(i, a)| {
            vec![
                (i + 1).to_string(),
                truncate(&names(&a.enterprise_id), 22),
                kind_name(a.kind),
                beijing(a.start_ms),
                format!("{:.0}", (a.end_ms - a.start_ms) as f64 / 60_000.0),
                format!("{:.2}", a.score),
                truncate(&a.summary, 70),
            ]
        })
        .collect();
    render(
        &[
            "#",
            "enterprise",
            "kind",
            "start (UTC+8)",
            "min",
            "score",
            "summary",
        ],
        &rows,
    )
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{:.0}%", x * 100.0))
}

/// The score report as a table.
pub fn score_table(r: &Report) -> String {
    let rows: Vec<Vec<String>> = r
        .kinds
        .iter()
        .map(|k| {
            vec![
                k.kind.as_str().to_string(),
                k.events.to_string(),
                k.detected.to_string(),
                pct(k.recall),
                k.alarms.to_string(),
                pct(k.precision),
                k.median_delay_min
                    .map_or_else(|| "-".into(), |d| format!("{d:.0}")),
                k.false_alarms_on_clean.to_string(),
            ]
        })
        .collect();
    let mut out = render(
        &[
            "kind",
            "events",
            "found",
            "recall",
            "alarms",
            "precision",
            "delay min",
            "alarms on clean",
        ],
        &rows,
    );
    out.push_str(&format!(
        "overall recall {}, precision {}; false alarms {:.3} per clean enterprise-day ({:.0} enterprise-days); match tolerance ±{:.0} min\n",
        pct(r.overall_recall),
        pct(r.overall_precision),
        r.false_alarms_per_enterprise_day,
        r.clean_enterprise_days,
        r.tolerance_min
    ));
    out
}

impl DemoArgs {
    /// Runs the demo.
    ///
    /// # Errors
    /// When the service cannot start, a call fails, or the Markdown report cannot be written.
    pub async fn run(self) -> anyhow::Result<()> {
        let temp = match &self.data_dir {
            Some(_) => None,
            None => Some(tempfile::tempdir()?),
        };
        let data_dir = match (&self.data_dir, &temp) {
            (Some(d), _) => d.clone(),
            (None, Some(t)) => t.path().to_path_buf(),
            (None, None) => anyhow::bail!("no data directory"),
        };
        let mut config = ServeConfig::new(data_dir.clone());
        config.language = self.language;
        let listener = tokio::net::TcpListener::bind(self.listen).await?;
        let running = server::start(config, listener).await?;
        let addr = running.addr;
        println!(
            "cems-sentinel demo: service on {addr}, store in {}",
            data_dir.display()
        );

        let t0 = Instant::now();
        let mut scenario = Scenario::new(self.sim.config());
        // The demo sets up its own principals: the admin registers the enterprises, a monitoring platform's
        // `source` principal uploads their data, an `officer` reads the list.
        let admin = feed::connect_as(&addr.to_string(), running.admin_token.as_deref()).await?;
        feed::register(&admin, &scenario).await?;
        let enterprise_ids: Vec<String> =
            scenario.enterprises.iter().map(|e| e.id.clone()).collect();
        let (source, source_token) = principals::create(
            &admin,
            Role::Source,
            "监控平台上传 (demo platform)",
            enterprise_ids,
            vec![],
        )
        .await?;
        let (officer, officer_token) = principals::create(
            &admin,
            Role::Officer,
            "执法人员 (demo officer)",
            vec![],
            vec![],
        )
        .await?;
        for (file, token) in [
            ("source.token", &source_token),
            ("officer.token", &officer_token),
        ] {
            server::write_secret(&data_dir.join(file), token)?;
        }
        println!(
            "principals: admin token in {0}/admin.token, {1} {2} (source) in {0}/source.token, {3} {4} (officer) in {0}/officer.token",
            data_dir.display(),
            source.id,
            source.name,
            officer.id,
            officer.name
        );
        let channel = feed::connect_as(&addr.to_string(), Some(&source_token)).await?;
        let officer_channel = feed::connect_as(&addr.to_string(), Some(&officer_token)).await?;
        let batches = feed::batches(&mut scenario, 10);
        let truth = scenario.truth_file();
        println!(
            "simulated {} enterprises × {} days ({} injected violations, {} clean enterprises) in {:.1} s",
            scenario.enterprises.len(),
            self.sim.days,
            truth.events.len(),
            truth.clean_enterprises.len(),
            t0.elapsed().as_secs_f64()
        );
        if self.data_dir.is_some() {
            let path = data_dir.join("truth.json");
            std::fs::write(&path, serde_json::to_vec_pretty(&truth)?)?;
            println!("ground truth written to {}", path.display());
        }
        let t1 = Instant::now();
        let stats = feed::push(&channel, batches, None).await?;
        let ingest_s = t1.elapsed().as_secs_f64();
        let sync = IngestServiceClient::new(admin.clone())
            .sync(pb::SyncRequest { finalize: true })
            .await?
            .into_inner();
        let total_s = t1.elapsed().as_secs_f64();
        println!(
            "streamed {} measurements in {} batches over gRPC Push: {:.1} s to durable acks ({:.0}/s), {:.1} s including detection; {} rejected, {} late",
            stats.measurements,
            stats.batches,
            ingest_s,
            stats.measurements as f64 / ingest_s,
            total_s,
            stats.rejected,
            sync.measurements_late_total
        );

        let anomalies = list_all(&officer_channel, pb::ListAnomaliesRequest::default()).await?;
        let names: std::collections::HashMap<String, String> = scenario
            .enterprises
            .iter()
            .map(|e| (e.id.clone(), format!("{} {}", e.id, e.name)))
            .collect();
        let name = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_string());
        println!(
            "\n== Enforcement list: top {} of {} anomalies ==\n",
            self.top.min(anomalies.len()),
            anomalies.len()
        );
        print!(
            "{}",
            anomaly_table(&anomalies[..self.top.min(anomalies.len())], &name)
        );
        let report = score(&truth, &anomalies);
        println!("\n== Score against the injected ground truth ==\n");
        print!("{}", score_table(&report));
        if let Some(path) = &self.markdown {
            super::eval::write_markdown(
                path,
                &report,
                &super::eval::describe_truth(&truth),
                "`sentinel demo`",
            )?;
            println!("\nScore report written to {} (Markdown).", path.display());
        }
        if let Some(top) = anomalies.first() {
            let out = data_dir.join("evidence").join(&top.id);
            super::evidence::export(&officer_channel, &top.id, &out).await?;
            let head = pb::enforcement_service_client::EnforcementServiceClient::new(
                officer_channel.clone(),
            )
            .get_log_head(pb::GetLogHeadRequest::default())
            .await?
            .into_inner();
            let key = crate::domain::secret::hex(&head.public_key);
            println!("\n== Evidence for court: the top anomaly's bundle, checked offline ==\n");
            match super::evidence::verify_dir(&out, Some(&key))? {
                Ok(v) => println!(
                    "{}: {} records as received, in {} receipts of the signed log ({} leaves), verified against key {}…",
                    out.display(),
                    v.records,
                    v.leaves,
                    v.head.size,
                    &key[..16]
                ),
                Err(e) => anyhow::bail!("the demo's own evidence bundle does not verify: {e}"),
            }
            println!(
                "  sentinel evidence verify {} --public-key {key}",
                out.display()
            );
        }
        println!("\nEvery anomaly carries its evidence. While the service runs (--keep-serving):");
        let dir = data_dir.display();
        println!(
            "  sentinel anomalies --server {addr} --token-file {dir}/officer.token --format json --limit 5"
        );
        println!(
            "  sentinel incidents --server {addr} --token-file {dir}/officer.token   |   sentinel hotspots … --by-region"
        );
        println!(
            "  grpcurl -plaintext -H \"authorization: Bearer $(cat {dir}/officer.token)\" -d '{{\"page_size\":5}}' {addr} sentinel.v1.EnforcementService/ListAnomalies"
        );
        println!(
            "  sentinel models list --server {addr} --token-file {dir}/admin.token   |   sentinel train … --outlet {}   (then models evaluate / activate)",
            truth
                .events
                .first()
                .map_or("<outlet>", |e| e.outlet_id.as_str())
        );
        if self.keep_serving {
            println!("\nService still running on {addr} (Ctrl-C to stop).");
            tokio::signal::ctrl_c().await?;
        } else {
            println!(
                "\nTo explore further, keep the service running: `sentinel demo --keep-serving` (or `--data-dir DIR`, then `sentinel serve --data-dir DIR`)."
            );
        }
        running.shutdown().await?;
        drop(temp);
        Ok(())
    }
}

//! `sentinel anomalies`, `incidents`, `hotspots` and `review`: the enforcement list from the command line.

use super::demo::{anomaly_table, list_all};
use super::feed;
use super::table::beijing;
use crate::domain::{AnomalyKind, ReviewStatus};
use crate::pb;
use crate::pb::enforcement_service_client::EnforcementServiceClient;
use crate::pb::registry_service_client::RegistryServiceClient;
use std::collections::HashMap;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned table for a terminal.
    Table,
    /// CSV with evidence as a JSON column.
    Csv,
    /// JSON array of anomalies (the wire fields).
    Json,
}

/// Filters as given on the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filter {
    /// Only these enterprises (repeatable).
    #[arg(long = "enterprise")]
    pub enterprises: Vec<String>,
    /// Only this region.
    #[arg(long, default_value = "")]
    pub region: String,
    /// Only these kinds, e.g. bypass_suspected (repeatable).
    #[arg(long = "kind")]
    pub kinds: Vec<String>,
    /// Only these review statuses, e.g. open (repeatable).
    #[arg(long = "status")]
    pub statuses: Vec<String>,
    /// Minimum score.
    #[arg(long, default_value_t = 0.0)]
    pub min_score: f64,
    /// Overlapping this window start (Unix ms).
    #[arg(long, default_value_t = 0)]
    pub from_ms: i64,
    /// Overlapping this window end (Unix ms).
    #[arg(long, default_value_t = 0)]
    pub to_ms: i64,
    /// At most this many rows (0 = all).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// `sentinel anomalies` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct AnomaliesArgs {
    #[command(flatten)]
    filter: Filter,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

impl AnomaliesArgs {
    /// Prints the filtered enforcement list of `server`.
    ///
    /// # Errors
    /// Unknown kind/status names, or a failed call.
    pub async fn run(self, server: &str) -> anyhow::Result<()> {
        print!("{}", list(server, self.filter, self.format).await?);
        Ok(())
    }
}

/// `sentinel incidents` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct IncidentsArgs {
    /// Only these enterprises (repeatable).
    #[arg(long = "enterprise")]
    enterprises: Vec<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

impl IncidentsArgs {
    /// Prints the incidents of `server`.
    ///
    /// # Errors
    /// A failed call.
    pub async fn run(self, server: &str) -> anyhow::Result<()> {
        print!(
            "{}",
            incidents(server, self.enterprises, self.limit, self.format).await?
        );
        Ok(())
    }
}

/// `sentinel hotspots` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct HotspotsArgs {
    /// Rank regions instead of enterprises.
    #[arg(long)]
    by_region: bool,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    limit: u32,
}

impl HotspotsArgs {
    /// Prints the hotspot ranking of `server`.
    ///
    /// # Errors
    /// A failed call.
    pub async fn run(self, server: &str) -> anyhow::Result<()> {
        print!("{}", hotspots(server, self.by_region, self.limit).await?);
        Ok(())
    }
}

/// `sentinel review` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ReviewArgs {
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
}

impl ReviewArgs {
    /// Moves the anomaly on `server` to the target status and prints the outcome.
    ///
    /// # Errors
    /// Unknown status, a refused transition, or a failed call.
    pub async fn run(self, server: &str) -> anyhow::Result<()> {
        println!(
            "{}",
            review(server, &self.id, &self.status, &self.note, &self.reviewer).await?
        );
        Ok(())
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// An anomaly as JSON, its evidence included.
pub fn json_of(a: &pb::Anomaly) -> serde_json::Value {
    let evidence: std::collections::BTreeMap<&String, &f64> = a.evidence.iter().collect();
    serde_json::json!({
        "id": a.id,
        "enterprise_id": a.enterprise_id,
        "outlet_id": a.outlet_id,
        "source_ids": a.source_ids,
        "kind": AnomalyKind::from_number(a.kind).map(AnomalyKind::as_str),
        "start_ms": a.start_ms,
        "end_ms": a.end_ms,
        "score": a.score,
        "detector": a.detector,
        "summary": a.summary,
        "evidence": evidence,
        "status": ReviewStatus::from_number(a.status).map(ReviewStatus::as_str),
        "detected_at_ms": a.detected_at_ms,
        "note": a.note,
        "ongoing": a.ongoing,
    })
}

/// Renders anomalies in a format.
pub fn render(anomalies: &[pb::Anomaly], format: Format, names: &dyn Fn(&str) -> String) -> String {
    match format {
        Format::Table => anomaly_table(anomalies, names),
        Format::Json => {
            serde_json::to_string_pretty(&anomalies.iter().map(json_of).collect::<Vec<_>>())
                .unwrap_or_default()
        }
        Format::Csv => {
            let mut out = String::from("id,enterprise_id,outlet_id,kind,start_utc8,end_utc8,score,status,detected_at_utc8,summary,evidence\n");
            for a in anomalies {
                let j = json_of(a);
                let row = [
                    a.id.clone(),
                    a.enterprise_id.clone(),
                    a.outlet_id.clone(),
                    j["kind"].as_str().unwrap_or_default().to_string(),
                    beijing(a.start_ms),
                    beijing(a.end_ms),
                    format!("{:.3}", a.score),
                    j["status"].as_str().unwrap_or_default().to_string(),
                    beijing(a.detected_at_ms),
                    a.summary.clone(),
                    j["evidence"].to_string(),
                ];
                out.push_str(
                    &row.iter()
                        .map(|f| csv_field(f))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                out.push('\n');
            }
            out
        }
    }
}

/// Lists anomalies from a server.
///
/// # Errors
/// Unknown kind/status names, or a failed call.
pub async fn list(server: &str, f: Filter, format: Format) -> anyhow::Result<String> {
    let kinds = f
        .kinds
        .iter()
        .map(|k| {
            AnomalyKind::parse(k)
                .map(AnomalyKind::number)
                .ok_or_else(|| anyhow::anyhow!("unknown kind {k:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let statuses = f
        .statuses
        .iter()
        .map(|s| {
            ReviewStatus::ALL
                .iter()
                .find(|x| x.as_str() == s)
                .map(|x| x.number())
                .ok_or_else(|| anyhow::anyhow!("unknown status {s:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let channel = feed::connect(server).await?;
    let mut anomalies = list_all(
        &channel,
        pb::ListAnomaliesRequest {
            enterprise_ids: f.enterprises,
            region: f.region,
            kinds,
            from_ms: f.from_ms,
            to_ms: f.to_ms,
            min_score: f.min_score,
            statuses,
            ..Default::default()
        },
    )
    .await?;
    if f.limit > 0 {
        anomalies.truncate(f.limit);
    }
    let names: HashMap<String, String> = RegistryServiceClient::new(channel)
        .list_enterprises(pb::ListEnterprisesRequest::default())
        .await?
        .into_inner()
        .enterprises
        .into_iter()
        .map(|e| (e.id.clone(), format!("{} {}", e.id, e.name)))
        .collect();
    Ok(render(&anomalies, format, &|id: &str| {
        names.get(id).cloned().unwrap_or_else(|| id.to_string())
    }))
}

/// Reviews one anomaly.
///
/// # Errors
/// Unknown status or a refused transition.
pub async fn review(
    server: &str,
    id: &str,
    status: &str,
    note: &str,
    reviewer: &str,
) -> anyhow::Result<String> {
    let status = ReviewStatus::ALL
        .iter()
        .find(|x| x.as_str() == status)
        .ok_or_else(|| anyhow::anyhow!("unknown status {status:?}: one of open, dispatched, confirmed, false_positive, rectified, closed"))?;
    let channel = feed::connect(server).await?;
    let a = EnforcementServiceClient::new(channel)
        .review_anomaly(pb::ReviewAnomalyRequest {
            id: id.to_string(),
            status: status.number(),
            note: note.to_string(),
            reviewer: reviewer.to_string(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    Ok(format!(
        "{} is now {} ({})",
        a.id,
        ReviewStatus::from_number(a.status).map_or("?", ReviewStatus::as_str),
        a.summary
    ))
}

/// Lists incidents (overlapping anomalies of one enterprise) from a server, as a table or JSON.
///
/// # Errors
/// A failed call.
pub async fn incidents(
    server: &str,
    enterprises: Vec<String>,
    limit: u32,
    format: Format,
) -> anyhow::Result<String> {
    let channel = feed::connect(server).await?;
    let list = EnforcementServiceClient::new(channel)
        .list_incidents(pb::ListIncidentsRequest {
            filter: Some(pb::ListAnomaliesRequest {
                enterprise_ids: enterprises,
                ..Default::default()
            }),
            max_gap_minutes: 0,
            limit,
        })
        .await?
        .into_inner()
        .incidents;
    let kinds = |ks: &[i32]| {
        ks.iter()
            .filter_map(|k| AnomalyKind::from_number(*k).map(AnomalyKind::as_str))
            .collect::<Vec<_>>()
            .join("+")
    };
    Ok(match format {
        Format::Json | Format::Csv => serde_json::to_string_pretty(
            &list
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "id": i.id, "enterprise_id": i.enterprise_id, "outlet_ids": i.outlet_ids,
                        "start_ms": i.start_ms, "end_ms": i.end_ms, "score": i.score, "kinds": kinds(&i.kinds),
                        "anomaly_ids": i.anomaly_ids, "summary": i.summary,
                    })
                })
                .collect::<Vec<_>>(),
        )?,
        Format::Table => super::table::render(
            &["#", "enterprise", "start (UTC+8)", "end (UTC+8)", "score", "anomalies", "kinds"],
            &list
                .iter()
                .enumerate()
                .map(|(n, i)| {
                    vec![
                        (n + 1).to_string(),
                        i.enterprise_id.clone(),
                        beijing(i.start_ms),
                        beijing(i.end_ms),
                        format!("{:.2}", i.score),
                        i.anomaly_ids.len().to_string(),
                        kinds(&i.kinds),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    })
}

/// Ranks enterprises (or regions) by unresolved anomaly severity.
///
/// # Errors
/// A failed call.
pub async fn hotspots(server: &str, by_region: bool, limit: u32) -> anyhow::Result<String> {
    let channel = feed::connect(server).await?;
    let list = EnforcementServiceClient::new(channel)
        .list_hotspots(pb::ListHotspotsRequest {
            level: if by_region {
                pb::HotspotLevel::Region
            } else {
                pb::HotspotLevel::Enterprise
            } as i32,
            limit,
            ..Default::default()
        })
        .await?
        .into_inner()
        .hotspots;
    Ok(super::table::render(
        &[
            "#",
            "key",
            "name",
            "region",
            "anomalies",
            "severity",
            "max score",
            "enterprises",
        ],
        &list
            .iter()
            .enumerate()
            .map(|(n, h)| {
                vec![
                    (n + 1).to_string(),
                    h.key.clone(),
                    super::table::truncate(&h.name, 24),
                    h.region.clone(),
                    h.anomalies.to_string(),
                    format!("{:.2}", h.severity),
                    format!("{:.2}", h.max_score),
                    h.enterprises.to_string(),
                ]
            })
            .collect::<Vec<_>>(),
    ))
}

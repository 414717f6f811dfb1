//! `sentinel train` and `sentinel models …`: the retraining loop from the command line, over `ModelService`, plus
//! `models build-priors`, which fits the shipped per-industry priors offline from simulated clean enterprises.

use super::feed;
use super::simulate::SimArgs;
use super::table::{beijing, render};
use crate::domain::AnomalyKind;
use crate::models::artifact::ModelScope;
use crate::models::calibrate::Calibration;
use crate::models::dataset::{self, OutletSeries};
use crate::models::features::targets_of;
use crate::models::train::{self, TrainSpec};
use crate::pb;
use crate::pb::model_service_client::ModelServiceClient;
use crate::sim::{Scenario, SimConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `sentinel train` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// One model per outlet (repeatable).
    #[arg(long = "outlet", conflicts_with = "industry")]
    outlets: Vec<String>,
    /// Or one pooled prior over every stack outlet of this industry.
    #[arg(long)]
    industry: Option<String>,
    /// Training window start (Unix ms; default 14 days before its end).
    #[arg(long, default_value_t = 0)]
    from_ms: i64,
    /// Training window end (Unix ms; default the latest data).
    #[arg(long, default_value_t = 0)]
    to_ms: i64,
    /// Activate each new version once trained.
    #[arg(long)]
    activate: bool,
    /// False alarms per enterprise-day to calibrate the thresholds for (default 0.01).
    #[arg(long, default_value_t = 0.0)]
    false_alarms_per_day: f64,
    /// Return once the job has started instead of waiting for it.
    #[arg(long)]
    no_wait: bool,
}

impl TrainArgs {
    /// Starts a training job on `server` and (unless `--no-wait`) follows it to the end.
    ///
    /// # Errors
    /// A failed call or a failed job.
    pub async fn run(self, server: &str) -> anyhow::Result<()> {
        let req = pb::TrainRequest {
            outlet_ids: self.outlets,
            industry: self.industry.unwrap_or_default(),
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            activate: self.activate,
            false_alarms_per_day: self.false_alarms_per_day,
        };
        println!("{}", train(server, req, !self.no_wait).await?);
        Ok(())
    }
}

/// `sentinel models …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ModelsCommand {
    /// Every version (optionally of one scope) with its state, training window and fit.
    List {
        /// `outlet:<id>` or `industry:<name>`.
        #[arg(long, default_value = "")]
        scope: String,
    },
    /// One version as JSON (the format of the shipped priors); to a file with --out.
    Show {
        /// Model id, e.g. outlet:E01-S1@2.
        id: String,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Make a version the active one of its scope (activating the previous version rolls back).
    Activate {
        /// Model id.
        id: String,
    },
    /// Score a version on a holdout period and on the reviewed anomalies in it.
    Evaluate {
        /// Model id.
        id: String,
        /// Period start (Unix ms; default 14 days before its end).
        #[arg(long, default_value_t = 0)]
        from_ms: i64,
        /// Period end (Unix ms; default the latest data).
        #[arg(long, default_value_t = 0)]
        to_ms: i64,
    },
    /// The aligned feature rows with reviewed labels (CONFIRMED / FALSE_POSITIVE), as CSV for pandas.
    Export {
        /// Outlets (repeatable; default all stack outlets).
        #[arg(long = "outlet")]
        outlets: Vec<String>,
        /// Period start (Unix ms; default 14 days before its end).
        #[arg(long, default_value_t = 0)]
        from_ms: i64,
        /// Period end (Unix ms; default the latest data).
        #[arg(long, default_value_t = 0)]
        to_ms: i64,
        /// CSV file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Fit the shipped per-industry priors offline from simulated clean enterprises (writes models/priors/*.json).
    BuildPriors {
        /// The simulated enterprises to fit on (kept all clean).
        #[command(flatten)]
        sim: SimArgs,
        /// Output directory.
        #[arg(long, default_value = "models/priors")]
        out: PathBuf,
    },
}

impl ModelsCommand {
    /// Runs the command against `server` (`build-priors` needs none).
    ///
    /// # Errors
    /// A failed call, or a file that cannot be written.
    pub async fn run(self, server: &str) -> anyhow::Result<()> {
        match self {
            Self::List { scope } => print!("{}", list(server, &scope).await?),
            Self::Show { id, out } => {
                let json = show(server, &id).await?;
                match out {
                    Some(path) => {
                        std::fs::write(&path, json + "\n")?;
                        println!("wrote {id} to {}", path.display());
                    }
                    None => println!("{json}"),
                }
            }
            Self::Activate { id } => println!("{}", activate(server, &id).await?),
            Self::Evaluate { id, from_ms, to_ms } => {
                print!("{}", evaluate(server, &id, from_ms, to_ms).await?)
            }
            Self::Export {
                outlets,
                from_ms,
                to_ms,
                out,
            } => {
                let n = export(server, outlets, from_ms, to_ms, &out).await?;
                println!("wrote {n} rows to {}", out.display());
            }
            Self::BuildPriors { sim, out } => print!("{}", build_priors(sim.config(), &out)?),
        }
        Ok(())
    }
}

async fn client(server: &str) -> anyhow::Result<ModelServiceClient<feed::Conn>> {
    Ok(ModelServiceClient::new(feed::connect(server).await?))
}

/// Starts training and (unless `wait` is false) polls the job until it ends, printing progress to stderr.
pub async fn train(server: &str, req: pb::TrainRequest, wait: bool) -> anyhow::Result<String> {
    let mut c = client(server).await?;
    let mut job = c.train(req).await?.into_inner();
    if !wait {
        return Ok(format!("training job {} started", job.id));
    }
    let mut last = String::new();
    while job.state == pb::JobState::Running as i32 {
        let line = format!("{:>3.0} %  {}", 100.0 * job.progress, job.message);
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        job = c
            .get_training_job(pb::GetTrainingJobRequest { id: job.id })
            .await?
            .into_inner();
    }
    if job.state == pb::JobState::Failed as i32 {
        anyhow::bail!("training job {} failed: {}", job.id, job.message);
    }
    Ok(format!("trained: {}", job.model_ids.join(", ")))
}

/// The model versions as a table.
pub async fn list(server: &str, scope: &str) -> anyhow::Result<String> {
    let models = client(server)
        .await?
        .list_models(pb::ListModelsRequest {
            scope: scope.into(),
        })
        .await?
        .into_inner()
        .models;
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|m| {
            let accepted = m.targets.iter().filter(|t| t.accepted).count();
            vec![
                m.id.clone(),
                if m.active { "active" } else { "" }.into(),
                if m.has_rollback {
                    format!("v{}", m.rollback_to)
                } else {
                    String::new()
                },
                if m.builtin {
                    "shipped prior".into()
                } else {
                    beijing(m.created_ms)
                },
                format!(
                    "{} – {}",
                    beijing(m.training_from_ms),
                    beijing(m.training_to_ms)
                ),
                format!("{accepted}/{}", m.targets.len()),
                m.thresholds.len().to_string(),
                if m.has_joint {
                    format!("{:.0} %", 100.0 * m.joint_explained_variance)
                } else {
                    "-".into()
                },
                format!("{}", m.false_alarms_per_day),
            ]
        })
        .collect();
    Ok(render(
        &[
            "model",
            "state",
            "rollback",
            "created",
            "training window",
            "accepted targets",
            "alarming tests",
            "joint var.",
            "FA/day",
        ],
        &rows,
    ))
}

/// The full artifact as JSON.
pub async fn show(server: &str, id: &str) -> anyhow::Result<String> {
    Ok(client(server)
        .await?
        .get_model(pb::GetModelRequest { id: id.into() })
        .await?
        .into_inner()
        .json)
}

/// Activates a version (also the way to roll back).
pub async fn activate(server: &str, id: &str) -> anyhow::Result<String> {
    let m = client(server)
        .await?
        .activate_model(pb::ActivateModelRequest { id: id.into() })
        .await?
        .into_inner();
    Ok(if m.has_rollback {
        format!(
            "{} active; roll back with: sentinel models activate {}@{}",
            m.id, m.scope, m.rollback_to
        )
    } else {
        format!("{} active", m.id)
    })
}

/// Evaluation of a version on a period, as text.
pub async fn evaluate(server: &str, id: &str, from_ms: i64, to_ms: i64) -> anyhow::Result<String> {
    let e = client(server)
        .await?
        .evaluate_model(pb::EvaluateModelRequest {
            id: id.into(),
            from_ms,
            to_ms,
        })
        .await?
        .into_inner();
    let mut out = format!(
        "{}  on {} – {}: {} running minutes, {:.1} outlet-days, {} episodes ({:.3} per outlet-day)\n\n",
        e.model_id,
        beijing(e.from_ms),
        beijing(e.to_ms),
        e.rows,
        e.outlet_days,
        e.episodes,
        e.episodes_per_outlet_day
    );
    let rows: Vec<Vec<String>> = e
        .targets
        .iter()
        .map(|t| {
            vec![
                t.target.clone(),
                t.n.to_string(),
                format!("{:.3}", t.r2),
                format!("{:.1} %", 100.0 * t.relative_accuracy),
            ]
        })
        .collect();
    out += &render(&["target", "rows", "R²", "rel. accuracy"], &rows);
    if !e.labels.is_empty() {
        let rows: Vec<Vec<String>> = e
            .labels
            .iter()
            .map(|l| {
                vec![
                    AnomalyKind::from_number(l.kind)
                        .map_or("?", AnomalyKind::as_str)
                        .into(),
                    format!("{}/{}", l.confirmed_found, l.confirmed),
                    format!("{}/{}", l.false_positive_flagged, l.false_positive),
                ]
            })
            .collect();
        out += "\nreviewed anomalies (found by the model / reviewed):\n";
        out += &render(
            &["kind", "confirmed found", "false positives repeated"],
            &rows,
        );
    }
    if e.has_precision {
        out += &format!(
            "\nprecision on reviewed: {:.2} (episodes over a confirmed anomaly / episodes over any reviewed one)\n",
            e.precision_on_reviewed
        );
    }
    Ok(out)
}

/// Streams the labelled dataset into a CSV file (one row per outlet-minute; value columns are the union of targets).
/// Returns the number of rows.
pub async fn export(
    server: &str,
    outlet_ids: Vec<String>,
    from_ms: i64,
    to_ms: i64,
    out: &Path,
) -> anyhow::Result<usize> {
    let mut stream = client(server)
        .await?
        .export_dataset(pb::ExportDatasetRequest {
            outlet_ids,
            from_ms,
            to_ms,
        })
        .await?
        .into_inner();
    let mut rows = Vec::new();
    while let Some(chunk) = stream.message().await? {
        rows.extend(chunk.rows);
    }
    let columns: BTreeSet<String> = rows.iter().flat_map(|r| r.values.keys().cloned()).collect();
    let mut w = std::io::BufWriter::new(std::fs::File::create(out)?);
    write!(w, "enterprise_id,outlet_id,minute_ms,production_fraction")?;
    for c in &columns {
        write!(w, ",{c}")?;
    }
    writeln!(w, ",label,label_kinds,flagged_kinds")?;
    let kinds = |ks: &[i32]| {
        ks.iter()
            .filter_map(|k| AnomalyKind::from_number(*k))
            .map(AnomalyKind::as_str)
            .collect::<Vec<_>>()
            .join(";")
    };
    for r in &rows {
        write!(
            w,
            "{},{},{},{}",
            r.enterprise_id, r.outlet_id, r.minute_ms, r.production_fraction
        )?;
        for c in &columns {
            match r.values.get(c) {
                Some(v) => write!(w, ",{v}")?,
                None => write!(w, ",")?,
            }
        }
        writeln!(
            w,
            ",{},{},{}",
            r.label,
            kinds(&r.label_kinds),
            kinds(&r.flagged_kinds)
        )?;
    }
    w.flush()?;
    Ok(rows.len())
}

/// Fits one prior per simulated industry from clean enterprises and writes `<industry>.json` into `dir`.
pub fn build_priors(sim: SimConfig, dir: &Path) -> anyhow::Result<String> {
    let mut scenario = Scenario::new(SimConfig {
        clean_share: 1.0,
        ..sim
    });
    let topologies = scenario_topologies(&scenario)?;
    let mut points: BTreeMap<String, Vec<crate::domain::Point>> = BTreeMap::new();
    let source_to_outlets = crate::domain::routing(&topologies);
    for m in 0..scenario.total_minutes() {
        for p in scenario.minute(m) {
            for outlet in source_to_outlets.get(&p.source_id).into_iter().flatten() {
                points.entry(outlet.clone()).or_default().push(p.clone());
            }
        }
    }
    let config = crate::detect::DetectConfig::default();
    let mut by_industry: BTreeMap<String, (Vec<OutletSeries>, BTreeSet<String>)> = BTreeMap::new();
    for t in &topologies {
        let rows = dataset::align(t, points.get(&t.outlet.id).map_or(&[][..], |v| v));
        let entry = by_industry
            .entry(t.enterprise.industry.clone())
            .or_default();
        entry.0.push(dataset::series(
            t,
            &rows,
            config.equipment,
            config.exceedance.o2_ceiling_pct,
        ));
        entry.1.extend(targets_of(t));
    }
    std::fs::create_dir_all(dir)?;
    let mut report = String::new();
    for (industry, (series, targets)) in by_industry {
        let spec = TrainSpec {
            scope: ModelScope::Industry(industry.clone()),
            version: 0,
            targets: targets.into_iter().collect(),
            from_ms: sim.start_ms,
            to_ms: sim.start_ms + i64::from(sim.days) * crate::domain::MS_PER_DAY,
            created_ms: sim.start_ms,
            calibration: Calibration::default(),
        };
        let artifact = train::fit(&spec, &series, &|_| {});
        let path = dir.join(format!("{industry}.json"));
        std::fs::write(
            &path,
            artifact.to_json().map_err(anyhow::Error::msg)? + "\n",
        )?;
        report += &format!(
            "{industry}: {} outlets, {} rows, accepted {:?} → {}\n",
            series.len(),
            artifact.metrics.get("rows").copied().unwrap_or(0.0),
            artifact.thresholds.keys().collect::<Vec<_>>(),
            path.display()
        );
    }
    Ok(report)
}

/// The stack topologies of a scenario, through a throwaway registry (the same builder the server uses).
fn scenario_topologies(s: &Scenario) -> anyhow::Result<Vec<crate::domain::OutletTopology>> {
    let dir = tempfile::tempdir()?;
    let registry =
        crate::registry::Registry::load(crate::store::Store::open(dir.path(), 16 << 20)?)?;
    for e in &s.enterprises {
        registry.upsert_enterprise(e.clone())?;
    }
    for o in &s.outlets {
        registry.upsert_outlet(o.clone())?;
    }
    for m in &s.meters {
        registry.upsert_meter(m.clone())?;
    }
    Ok(registry.stack_topologies())
}

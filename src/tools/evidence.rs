//! `sentinel evidence export|verify|head`: an anomaly's evidence bundle out of the server, and its check offline
//! (no server, no store: the bundle and the bureau's public key are enough).

use super::feed;
use super::table::beijing;
use crate::domain::secret::{from_hex, hex};
use crate::ledger::bundle::{self, Files, Verified, FILE_NAMES};
use crate::ledger::{merkle, Hash, SignedHeadFile, TreeHead};
use crate::pb;
use crate::pb::enforcement_service_client::EnforcementServiceClient;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio_stream::StreamExt as _;

/// `sentinel evidence` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum EvidenceCommand {
    /// Write an anomaly's evidence bundle to a directory (officer or admin).
    Export {
        /// Anomaly id.
        anomaly_id: String,
        /// Directory to write (created; existing bundle files are replaced).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a bundle offline: exit 0 when it holds, 1 with the reason when it does not.
    Verify {
        /// The bundle's directory.
        dir: PathBuf,
        /// The bureau's public key (hex, from `sentinel evidence head`); without it the bundle's own key is used
        /// and printed, for you to compare.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Print the copy of record's signed head and the server's public key; with `--since`, prove the log only
    /// grew since a head you kept (a bundle's `head.json`, or one saved with `--save`).
    Head {
        /// Write the signed head to this file (JSON), to check the log against later.
        #[arg(long)]
        save: Option<PathBuf>,
        /// A head kept earlier: check that today's log extends it, unchanged (exit 1 if not).
        #[arg(long)]
        since: Option<PathBuf>,
    },
}

/// A head as the server sent it, in the form it is kept and checked in.
///
/// # Errors
/// A root that is not 32 bytes.
fn head_file(head: &pb::SignedLogHead) -> Result<SignedHeadFile, String> {
    let root = head
        .root
        .as_slice()
        .try_into()
        .map_err(|_| "the server's root is not 32 bytes".to_string())?;
    Ok(SignedHeadFile::new(
        &TreeHead {
            size: head.tree_size,
            root,
            signed_at_ms: head.signed_at_ms,
        },
        &head.public_key,
        &head.signature,
    ))
}

/// Checks that `new` (with its consistency proof) extends `old`: both signed by the same key, the old tree a prefix
/// of the new one.
///
/// # Errors
/// The reason it does not.
pub fn check_extends(old: &SignedHeadFile, new: &pb::SignedLogHead) -> Result<(), String> {
    let old_head = old.verified().map_err(|e| format!("the kept head: {e}"))?;
    let new_file = head_file(new)?;
    if new_file.public_key != old.public_key {
        return Err(format!(
            "the server now signs with key {}, not the kept head's {}",
            new_file.public_key, old.public_key
        ));
    }
    let new_head = new_file
        .verified()
        .map_err(|e| format!("the new head: {e}"))?;
    if new.consistent_with_size != old_head.size {
        return Err("the server did not prove consistency with the kept head's size".into());
    }
    let proof: Vec<Hash> = new
        .consistency_proof
        .iter()
        .map(|h| {
            Hash::try_from(h.as_slice()).map_err(|_| "a proof hash is not 32 bytes".to_string())
        })
        .collect::<Result<_, _>>()?;
    if merkle::verify_consistency(
        old_head.size,
        new_head.size,
        &old_head.root,
        &new_head.root,
        &proof,
    ) {
        Ok(())
    } else {
        Err(format!(
            "the log of {} leaves is not an extension of the kept head of {}: history was changed",
            new_head.size, old_head.size
        ))
    }
}

/// Exports `anomaly_id`'s bundle into `out`; returns the files written.
///
/// # Errors
/// A refused or failed call, or a file that cannot be written.
pub async fn export(conn: &feed::Conn, anomaly_id: &str, out: &Path) -> anyhow::Result<Files> {
    let mut stream = EnforcementServiceClient::new(conn.clone())
        .export_evidence(pb::ExportEvidenceRequest {
            anomaly_id: anomaly_id.to_string(),
        })
        .await?
        .into_inner();
    let mut files = Files::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if !FILE_NAMES.contains(&chunk.name.as_str()) {
            anyhow::bail!("the server sent an unexpected file {:?}", chunk.name);
        }
        files.entry(chunk.name).or_default().extend(chunk.data);
    }
    std::fs::create_dir_all(out)?;
    for (name, bytes) in &files {
        std::fs::write(out.join(name), bytes)?;
    }
    Ok(files)
}

/// Reads a bundle's files from `dir` (files of other names are not part of it and are not read).
///
/// # Errors
/// A file that exists but cannot be read.
pub fn read_bundle(dir: &Path) -> anyhow::Result<Files> {
    let mut files = Files::new();
    for name in FILE_NAMES {
        match std::fs::read(dir.join(name)) {
            Ok(b) => {
                files.insert(name.to_string(), b);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", dir.join(name).display())),
        }
    }
    Ok(files)
}

/// Verifies the bundle in `dir`, against `public_key_hex` when given.
///
/// # Errors
/// An unreadable directory or a key that is not 32 bytes of hex; a bundle that fails is `Ok(Err(reason))`.
pub fn verify_dir(
    dir: &Path,
    public_key_hex: Option<&str>,
) -> anyhow::Result<Result<Verified, bundle::BundleError>> {
    let key = match public_key_hex {
        Some(k) => Some(
            from_hex(k.trim())
                .filter(|b| b.len() == 32)
                .ok_or_else(|| anyhow::anyhow!("--public-key must be 64 hex digits"))?,
        ),
        None => None,
    };
    Ok(bundle::verify(&read_bundle(dir)?, key.as_deref()))
}

impl EvidenceCommand {
    /// Runs the subcommand; `server` is not contacted by `verify`.
    ///
    /// # Errors
    /// A failed call or unreadable files (a bundle that does not verify exits 1, not an error).
    pub async fn run(self, server: &str) -> anyhow::Result<ExitCode> {
        match self {
            Self::Export { anomaly_id, out } => {
                let conn = feed::connect(server).await?;
                let files = export(&conn, &anomaly_id, &out).await?;
                let records = files
                    .get("records.jsonl")
                    .map_or(0, |b| b.iter().filter(|c| **c == b'\n').count());
                println!(
                    "evidence bundle of {anomaly_id} written to {} ({records} records, {} files); check it with \
                     `sentinel evidence verify {}`",
                    out.display(),
                    files.len(),
                    out.display()
                );
                Ok(ExitCode::SUCCESS)
            }
            Self::Verify { dir, public_key } => match verify_dir(&dir, public_key.as_deref())? {
                Ok(v) => {
                    println!(
                        "VERIFIED: anomaly {}: {} records in {} receipts, included in the log of {} leaves \
                         (root {}) signed {} (UTC+8) by key {}{}",
                        v.anomaly_id,
                        v.records,
                        v.leaves,
                        v.head.size,
                        hex(&v.head.root),
                        beijing(v.head.signed_at_ms),
                        v.public_key,
                        if public_key.is_some() {
                            " (the pinned key)"
                        } else {
                            ": compare it with the key the bureau publishes, or pass --public-key"
                        }
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("FAILED: {e}");
                    Ok(ExitCode::from(1))
                }
            },
            Self::Head { save, since } => {
                let kept: Option<SignedHeadFile> = match &since {
                    Some(path) => {
                        Some(serde_json::from_slice(&std::fs::read(path)?).map_err(|e| {
                            anyhow::anyhow!("{}: not a signed head: {e}", path.display())
                        })?)
                    }
                    None => None,
                };
                let head = EnforcementServiceClient::new(feed::connect(server).await?)
                    .get_log_head(pb::GetLogHeadRequest {
                        consistent_with_size: kept.as_ref().map_or(0, |k| k.tree_size),
                    })
                    .await?
                    .into_inner();
                println!("tree_size    {}", head.tree_size);
                println!("root         {}", hex(&head.root));
                println!("signed_at    {} (UTC+8)", beijing(head.signed_at_ms));
                println!("public_key   {}", hex(&head.public_key));
                println!("signature    {}", hex(&head.signature));
                if let Some(path) = &save {
                    let file = head_file(&head).map_err(anyhow::Error::msg)?;
                    std::fs::write(path, serde_json::to_vec_pretty(&file)?)?;
                    println!("saved to     {}", path.display());
                }
                if let Some(old) = &kept {
                    match check_extends(old, &head) {
                        Ok(()) => println!(
                            "CONSISTENT: the log grew from {} to {} leaves without changing any of the first {}",
                            old.tree_size, head.tree_size, old.tree_size
                        ),
                        Err(e) => {
                            println!("INCONSISTENT: {e}");
                            return Ok(ExitCode::from(1));
                        }
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

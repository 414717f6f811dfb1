//! The copy of record at the API edge: the signed log head and an anomaly's evidence bundle, assembled from the
//! store's leaves and proofs and signed with the server's key (the checks themselves are in [`crate::ledger`]).

use crate::domain::{Anomaly, MS_PER_HOUR};
use crate::ingest::system_now_ms;
use crate::ledger::bundle::{self, Files, Part};
use crate::ledger::{item_source, Signer, TreeHead};
use crate::pb;
use crate::store::Store;
use tonic::Status;

/// Context either side of an episode: the hour before shows the baseline the alarm departs from.
const CONTEXT_MS: i64 = MS_PER_HOUR;
/// Most receipts one bundle may rest on (a week of one packet a minute from three sources is ~30,000).
pub const MAX_BUNDLE_LEAVES: usize = 100_000;
/// Largest bundle assembled, in bytes (estimated before it is built: each leaf lists every item digest, so the
/// receipts of large platform batches weigh more than the anomaly's own records).
pub const MAX_BUNDLE_BYTES: usize = 256 << 20;
/// Size of the chunks a bundle streams in.
const CHUNK_BYTES: usize = 1 << 20;

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("copy of record: {e}"))
}

/// The log's current head, signed, with the proof that the log of `consistent_with_size` leaves is its prefix.
///
/// # Errors
/// `INTERNAL` when the store fails or the log is damaged; `OUT_OF_RANGE` for a size beyond the log.
pub fn signed_head(
    store: &Store,
    signer: &Signer,
    consistent_with_size: u64,
) -> Result<pb::SignedLogHead, Status> {
    let head = current_head(store)?;
    if consistent_with_size > head.size {
        return Err(Status::out_of_range(format!(
            "the log has {} leaves, fewer than {consistent_with_size}",
            head.size
        )));
    }
    let proof = store
        .ledger_consistency(consistent_with_size, head.size)
        .map_err(internal)?;
    Ok(pb::SignedLogHead {
        tree_size: head.size,
        root: head.root.to_vec(),
        signed_at_ms: head.signed_at_ms,
        public_key: signer.public_key().to_vec(),
        signature: signer.sign(&head.signed_bytes()).to_vec(),
        consistent_with_size,
        consistency_proof: proof.iter().map(|h| h.to_vec()).collect(),
    })
}

fn current_head(store: &Store) -> Result<TreeHead, Status> {
    let size = store.ledger_size().map_err(internal)?;
    Ok(TreeHead {
        size,
        root: store.ledger_root(size).map_err(internal)?,
        signed_at_ms: system_now_ms(),
    })
}

/// The leaves holding data of `a`'s sources over its episode and an hour either side, ascending.
///
/// # Errors
/// `INTERNAL` on a store failure; `FAILED_PRECONDITION` when the anomaly rests on more than
/// [`MAX_BUNDLE_LEAVES`] receipts.
pub fn leaves_of(store: &Store, a: &Anomaly) -> Result<Vec<u64>, Status> {
    let (from, to) = (
        a.start_ms.saturating_sub(CONTEXT_MS),
        a.end_ms.saturating_add(CONTEXT_MS),
    );
    let mut leaves = std::collections::BTreeSet::new();
    for source in &a.source_ids {
        leaves.extend(
            store
                .ledger_leaves_for(source, from, to, MAX_BUNDLE_LEAVES)
                .map_err(internal)?,
        );
        if leaves.len() > MAX_BUNDLE_LEAVES {
            return Err(Status::failed_precondition(format!(
                "anomaly {:?} rests on more than {MAX_BUNDLE_LEAVES} receipts: too large for one bundle",
                a.id
            )));
        }
    }
    Ok(leaves.into_iter().collect())
}

/// The evidence bundle of `a`: the items of its sources in its leaves, every such leaf with its proof against the
/// current head, and the anomaly with the leaves it rests on.
///
/// # Errors
/// As [`leaves_of`]; `INTERNAL` when a leaf the index names is missing (a damaged log).
pub fn bundle_of(store: &Store, signer: &Signer, a: &Anomaly) -> Result<Files, Status> {
    let indices = leaves_of(store, a)?;
    let head = current_head(store)?;
    let mut parts = Vec::with_capacity(indices.len());
    let mut estimate = 0usize;
    for index in &indices {
        let (leaf, items) = store
            .ledger_leaf(*index)
            .map_err(internal)?
            .ok_or_else(|| internal(format!("leaf {index} is indexed but missing")))?;
        // Hex digests and proof in leaves.jsonl; the items kept, twice (hex and readable), in records.jsonl.
        estimate += 70 * (leaf.item_digests.len() + 64) + 200;
        let items = items
            .into_iter()
            .enumerate()
            .filter(|(_, item)| {
                item_source(leaf.transport, item).is_some_and(|s| a.source_ids.contains(&s))
            })
            .map(|(i, item)| (u32::try_from(i).unwrap_or(u32::MAX), item))
            .collect::<Vec<_>>();
        estimate += items.iter().map(|(_, b)| 4 * b.len() + 100).sum::<usize>();
        if estimate > MAX_BUNDLE_BYTES {
            return Err(Status::failed_precondition(format!(
                "anomaly {:?}: its evidence bundle would exceed {} MiB (its receipts are large batches)",
                a.id,
                MAX_BUNDLE_BYTES >> 20
            )));
        }
        parts.push(Part {
            index: *index,
            proof: store.ledger_proof(*index, head.size).map_err(internal)?,
            leaf,
            items,
        });
    }
    let mut anomaly = serde_json::to_value(a).map_err(internal)?;
    if let Some(map) = anomaly.as_object_mut() {
        map.insert("record_log_leaves".into(), serde_json::json!(indices));
    }
    let anomaly_json = serde_json::to_vec_pretty(&anomaly).map_err(internal)?;
    Ok(bundle::build(
        &a.id,
        anomaly_json,
        &parts,
        &head,
        signer,
        system_now_ms(),
    ))
}

/// A bundle as the stream of chunks `ExportEvidence` sends.
pub fn chunks(files: Files) -> Vec<pb::EvidenceFileChunk> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        if bytes.is_empty() {
            out.push(pb::EvidenceFileChunk {
                name,
                data: Vec::new(),
            });
            continue;
        }
        for piece in bytes.chunks(CHUNK_BYTES) {
            out.push(pb::EvidenceFileChunk {
                name: name.clone(),
                data: piece.to_vec(),
            });
        }
    }
    out
}

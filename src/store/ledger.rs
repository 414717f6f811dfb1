//! The copy of record on disk: leaves with their items, perfect subtrees of the Merkle tree, and an index from a
//! source's hours to the leaves that carried them. Appended inside the commit that stores the points, so a point is
//! acknowledged only with its receipt in the log.

use super::{corrupt, decode_versioned, encode_versioned, keys, Result, Store};
use crate::domain::Point;
use crate::ledger::{merkle, Hash, Leaf, Receipt};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A leaf as stored: the leaf and its items' bytes.
#[derive(Deserialize)]
struct StoredLeaf {
    leaf: Leaf,
    items: Vec<Vec<u8>>,
}

/// [`StoredLeaf`] as written, borrowing (the same encoding, no copy of the items).
#[derive(Serialize)]
struct StoredLeafRef<'a> {
    leaf: &'a Leaf,
    items: &'a [Vec<u8>],
}

const SIZE: &str = "ledger_size";

/// The (source, hour) pairs a receipt's points fall in: the index from a source's hours to its leaves.
pub type SourceHours = BTreeSet<(String, i64)>;

/// The source-hours of `points`, for the receipt that carried them.
pub fn source_hours<'a>(points: impl IntoIterator<Item = &'a Point>) -> SourceHours {
    points
        .into_iter()
        .map(|p| (p.source_id.clone(), keys::chunk_start(p.time_ms)))
        .collect()
}

impl Store {
    /// Leaves in the log.
    ///
    /// # Errors
    /// Engine failure.
    pub fn ledger_size(&self) -> Result<u64> {
        Ok(self.meta_u64(SIZE)?.unwrap_or(0))
    }

    /// Adds one leaf per receipt to `batch`: the leaf and its items, the subtrees it completes, the index of the
    /// source-hours its points cover (given with it: a batch committed in slices carries its receipt in the first
    /// slice, with the hours of all of them), and the new size.
    pub(super) fn append_leaves(
        &self,
        batch: &mut sled::Batch,
        receipts: &[(Receipt, SourceHours)],
        received_at_ms: i64,
    ) -> Result<()> {
        if receipts.is_empty() {
            return Ok(());
        }
        let mut size = self.ledger_size()?;
        let mut new_nodes: HashMap<(u8, u64), Hash> = HashMap::new();
        let mut index: BTreeMap<(&str, i64), Vec<u64>> = BTreeMap::new();
        for (receipt, hours) in receipts {
            let leaf = Leaf::of(receipt, received_at_ms);
            let completed =
                merkle::completed_by_append(size, leaf.hash(), |level, position| match new_nodes
                    .get(&(level, position))
                {
                    Some(h) => Ok(*h),
                    None => self.ledger_node(level, position),
                })?;
            for (level, position, hash) in completed {
                batch.insert(&keys::ledger_node_key(level, position)[..], &hash[..]);
                new_nodes.insert((level, position), hash);
            }
            for (source, hour) in hours {
                index
                    .entry((source.as_str(), *hour))
                    .or_default()
                    .push(size);
            }
            let stored = StoredLeafRef {
                leaf: &leaf,
                items: &receipt.items,
            };
            batch.insert(
                &keys::seq_key(keys::LEDGER_LEAF, size)[..],
                encode_versioned("ledger leaf", &stored)?,
            );
            size += 1;
        }
        // One index value per source-hour and commit (not per leaf): the leaves are appended to the stored list.
        for ((source, hour), leaves) in index {
            let key = keys::ledger_index_key(source, hour);
            let mut value = self.db.get(&key)?.map(|v| v.to_vec()).unwrap_or_default();
            for leaf in leaves {
                value.extend_from_slice(&leaf.to_be_bytes());
            }
            batch.insert(key, value);
        }
        batch.insert(keys::str_key(keys::META, SIZE), &size.to_be_bytes()[..]);
        Ok(())
    }

    fn ledger_node(&self, level: u8, position: u64) -> Result<Hash> {
        let key = keys::ledger_node_key(level, position);
        let v = self
            .db
            .get(key)?
            .ok_or_else(|| corrupt(&key, "ledger subtree missing"))?;
        Hash::try_from(v.as_ref()).map_err(|_| corrupt(&key, "ledger subtree is not 32 bytes"))
    }

    /// Root of the first `size` leaves.
    ///
    /// # Errors
    /// Engine failure or a missing subtree (a damaged log).
    pub fn ledger_root(&self, size: u64) -> Result<Hash> {
        merkle::root(size, |l, p| self.ledger_node(l, p))
    }

    /// Inclusion proof of leaf `index` in the tree of the first `size` leaves.
    ///
    /// # Errors
    /// Engine failure or a missing subtree.
    pub fn ledger_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        merkle::inclusion_proof(index, size, |l, p| self.ledger_node(l, p))
    }

    /// Proof that the first `old_size` leaves are a prefix of the first `new_size`.
    ///
    /// # Errors
    /// Engine failure or a missing subtree.
    pub fn ledger_consistency(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>> {
        merkle::consistency_proof(old_size, new_size, |l, p| self.ledger_node(l, p))
    }

    /// Leaf `index` and its items' bytes.
    ///
    /// # Errors
    /// Engine failure or a corrupt leaf.
    pub fn ledger_leaf(&self, index: u64) -> Result<Option<(Leaf, Vec<Vec<u8>>)>> {
        let key = keys::seq_key(keys::LEDGER_LEAF, index);
        match self.db.get(key)? {
            Some(v) => {
                let s: StoredLeaf = decode_versioned(&key, &v)?;
                Ok(Some((s.leaf, s.items)))
            }
            None => Ok(None),
        }
    }

    /// The leaves that carried points of `source_id` in hours overlapping `[from_ms, to_ms)`, ascending, at most
    /// `limit` (the caller says when a window has more).
    ///
    /// # Errors
    /// Engine failure.
    pub fn ledger_leaves_for(
        &self,
        source_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<u64>> {
        let lo = keys::ledger_index_key(source_id, keys::chunk_start(from_ms));
        let hi = keys::ledger_index_key(source_id, keys::chunk_start(to_ms.saturating_sub(1)));
        let mut out = BTreeSet::new();
        for kv in self.db.range(lo..=hi) {
            let (k, v) = kv?;
            if !v.len().is_multiple_of(8) {
                return Err(corrupt(&k, "ledger index value"));
            }
            out.extend(
                v.chunks_exact(8)
                    .filter_map(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes),
            );
            if out.len() > limit {
                break;
            }
        }
        Ok(out.into_iter().collect())
    }
}

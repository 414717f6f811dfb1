//! The copy of record: every acknowledged commit's received bytes, in an append-only Merkle log (RFC 6962) whose
//! signed head lets anyone check, offline, that a record shown in court is the one received, unaltered since.
//!
//! A *leaf* is one acknowledged batch: when it arrived, who sent it (the principal), how (gRPC or HJ 212), and the
//! SHA-256 of each *item* it carried: a protobuf `Record` as received over gRPC, or an HJ 212 data segment (the text
//! between the length field and the CRC, both checked). The items themselves are stored beside the leaf, so an
//! evidence bundle can carry the items an anomaly rests on and only the digests of a batch's other items (another
//! enterprise's data never leaves in someone else's bundle).
//!
//! Pure: hashing, proofs, signatures and bundle checks take bytes and return results. The store appends leaves in
//! the same atomic commit as the points they carried.

pub mod bundle;
mod head;
pub mod merkle;

pub use head::{SignedHeadFile, Signer, SignerError, TreeHead};
pub use merkle::Hash;

use sha2::{Digest as _, Sha256};

/// How a leaf's items arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// `IngestService.Write`/`Push`: each item is one protobuf `sentinel.v1.Record`, as received.
    Grpc,
    /// The HJ 212 gateway: each item is one data segment, as received.
    Hj212,
}

impl Transport {
    fn byte(self) -> u8 {
        match self {
            Self::Grpc => 1,
            Self::Hj212 => 2,
        }
    }

    /// Name used in bundles.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::Hj212 => "hj212",
        }
    }
}

/// What the ingest front door knows about a batch when it arrives: the receipt the log keeps.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// Who sent it: `name (id)`, or `anonymous` when the server runs without authentication.
    pub principal: String,
    /// How.
    pub transport: Transport,
    /// The items, as received.
    pub items: Vec<Vec<u8>>,
}

/// One leaf: a receipt's header and its items' digests. Its hash is over [`Leaf::canonical_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Leaf {
    /// Server wall time at receipt, Unix ms.
    pub received_at_ms: i64,
    /// Who sent it.
    pub principal: String,
    /// How it arrived.
    pub transport: Transport,
    /// SHA-256 of each item, in the order received.
    pub item_digests: Vec<Hash>,
}

/// Digest of one item.
pub fn item_digest(item: &[u8]) -> Hash {
    Sha256::digest(item).into()
}

impl Leaf {
    /// The leaf of a receipt.
    pub fn of(receipt: &Receipt, received_at_ms: i64) -> Self {
        Self {
            received_at_ms,
            principal: receipt.principal.clone(),
            transport: receipt.transport,
            item_digests: receipt.items.iter().map(|i| item_digest(i)).collect(),
        }
    }

    /// The bytes the leaf hash covers, in a fixed layout a verifier rebuilds from the bundle's fields:
    /// tag, receipt time (i64 BE), principal (u32 BE length + UTF-8), transport byte, item count (u32 BE), digests.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        const TAG: &[u8] = b"cems-sentinel leaf v1\0";
        let mut b = Vec::with_capacity(
            TAG.len() + 17 + self.principal.len() + 32 * self.item_digests.len(),
        );
        b.extend_from_slice(TAG);
        b.extend_from_slice(&self.received_at_ms.to_be_bytes());
        b.extend_from_slice(&(self.principal.len() as u32).to_be_bytes());
        b.extend_from_slice(self.principal.as_bytes());
        b.push(self.transport.byte());
        b.extend_from_slice(&(self.item_digests.len() as u32).to_be_bytes());
        for d in &self.item_digests {
            b.extend_from_slice(d);
        }
        b
    }

    /// The Merkle leaf hash.
    pub fn hash(&self) -> Hash {
        merkle::leaf_hash(&self.canonical_bytes())
    }
}

/// The source an item reports for, read from the item itself (`None` when it does not decode, which a stored item
/// always does: it was validated before it was acknowledged).
pub fn item_source(transport: Transport, item: &[u8]) -> Option<String> {
    match transport {
        Transport::Grpc => <crate::pb::Record as prost::Message>::decode(item)
            .ok()
            .map(|r| r.source_id),
        Transport::Hj212 => crate::hj212::Packet::parse(item).ok().and_then(|p| p.mn),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_a_leaf_is_covered_by_its_hash() {
        let base = Leaf {
            received_at_ms: 1_700_000_000_000,
            principal: "plant-a (p1)".into(),
            transport: Transport::Grpc,
            item_digests: vec![item_digest(b"one"), item_digest(b"two")],
        };
        let h = base.hash();
        let mut changed = vec![base.clone(); 5];
        changed[0].received_at_ms += 1;
        changed[1].principal.push('x');
        changed[2].transport = Transport::Hj212;
        changed[3].item_digests.pop();
        changed[4].item_digests.swap(0, 1);
        for c in changed {
            assert_ne!(c.hash(), h, "{c:?}");
        }
    }
}

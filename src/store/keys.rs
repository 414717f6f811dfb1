//! Key layout of the one sled tree. Everything lives in one tree so that a commit (points, its replay-log entry, the
//! audit of conflicting rewrites) is one atomic `apply_batch`: after a crash either all of it is there or none.
//!
//! | prefix | key after the prefix                               | value                                  |
//! |--------|----------------------------------------------------|----------------------------------------|
//! | `p`    | source `\0` code `\0` hour-block start (8 B, BE)   | chunk: version byte + postcard points  |
//! | `l`    | commit seq (8 B, BE)                               | replay log: points not yet detected    |
//! | `a`    | anomaly id                                         | version byte + postcard [`Anomaly`]    |
//! | `r`    | kind byte + id                                     | JSON registry object                   |
//! | `u`    | audit seq (8 B, BE)                                | JSON conflicting-rewrite record        |
//! | `g`    | change-audit seq (8 B, BE)                         | JSON audit entry (who changed what)    |
//! | `m`    | name                                               | metadata (checkpoint, counters)        |
//! | `M`    | model scope `\0` version (4 B, BE)                  | model artifact (own format header)     |
//! | `R`    | ledger leaf index (8 B, BE)                        | version byte + postcard leaf and items |
//! | `T`    | level (1 B) + position (8 B, BE)                   | perfect Merkle subtree hash (32 B)     |
//! | `X`    | source `\0` hour start (8 B)                       | leaf indices (8 B BE each) of the hour |
//!
//! Ids and codes never contain `\0` (ingest rejects them), which keeps the `p` keys unambiguous.
//!
//! [`Anomaly`]: crate::domain::Anomaly

use crate::domain::MS_PER_HOUR;

pub(crate) const POINTS: u8 = b'p';
pub(crate) const LOG: u8 = b'l';
pub(crate) const ANOMALY: u8 = b'a';
pub(crate) const REGISTRY: u8 = b'r';
pub(crate) const AUDIT: u8 = b'u';
pub(crate) const CHANGES: u8 = b'g';
pub(crate) const META: u8 = b'm';
pub(crate) const MODEL: u8 = b'M';
pub(crate) const LEDGER_LEAF: u8 = b'R';
pub(crate) const LEDGER_NODE: u8 = b'T';
pub(crate) const LEDGER_INDEX: u8 = b'X';

/// Width of one stored chunk of a series: one key per series per hour keeps sled's per-key overhead off every point.
pub(crate) const CHUNK_MS: i64 = MS_PER_HOUR;

/// Start of the chunk that holds `time_ms`.
pub(crate) fn chunk_start(time_ms: i64) -> i64 {
    time_ms.div_euclid(CHUNK_MS) * CHUNK_MS
}

/// Order-preserving encoding of an i64 (flip the sign bit so negatives sort first).
pub(crate) fn i64_be(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

/// Inverse of [`i64_be`].
pub(crate) fn i64_from_be(b: &[u8]) -> Option<i64> {
    let arr: [u8; 8] = b.try_into().ok()?;
    Some((u64::from_be_bytes(arr) ^ (1 << 63)) as i64)
}

/// `p` source `\0`: every code of a source.
pub(crate) fn source_prefix(source_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(source_id.len() + 2);
    k.push(POINTS);
    k.extend_from_slice(source_id.as_bytes());
    k.push(0);
    k
}

/// `p` source `\0` code `\0`: every chunk of a series.
pub(crate) fn series_prefix(source_id: &str, code: &str) -> Vec<u8> {
    let mut k = source_prefix(source_id);
    k.extend_from_slice(code.as_bytes());
    k.push(0);
    k
}

/// Full chunk key.
pub(crate) fn chunk_key(source_id: &str, code: &str, chunk_start_ms: i64) -> Vec<u8> {
    let mut k = series_prefix(source_id, code);
    k.extend_from_slice(&i64_be(chunk_start_ms));
    k
}

/// Key with a one-byte prefix and a big-endian u64.
pub(crate) fn seq_key(prefix: u8, seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// `T` level position: one perfect subtree of the ledger.
pub(crate) fn ledger_node_key(level: u8, position: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = LEDGER_NODE;
    k[1] = level;
    k[2..].copy_from_slice(&position.to_be_bytes());
    k
}

/// `X` source `\0`: every ledger-index entry of a source.
pub(crate) fn ledger_index_prefix(source_id: &str) -> Vec<u8> {
    let mut k = str_key(LEDGER_INDEX, source_id);
    k.push(0);
    k
}

/// `X` source `\0` hour: the leaves that carried the source's points of that hour.
pub(crate) fn ledger_index_key(source_id: &str, hour_start_ms: i64) -> Vec<u8> {
    let mut k = ledger_index_prefix(source_id);
    k.extend_from_slice(&i64_be(hour_start_ms));
    k
}

/// `M` scope `\0` version: one stored model version.
pub(crate) fn model_key(scope: &str, version: u32) -> Vec<u8> {
    let mut k = str_key(MODEL, scope);
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// Key with a one-byte prefix and a string.
pub(crate) fn str_key(prefix: u8, s: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(s.len() + 1);
    k.push(prefix);
    k.extend_from_slice(s.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i64_keys_sort_like_numbers() {
        let vals = [-5_000_000_000_000i64, -1, 0, 1, 1_700_000_000_000];
        for w in vals.windows(2) {
            assert!(i64_be(w[0]) < i64_be(w[1]));
        }
        for v in vals {
            assert_eq!(i64_from_be(&i64_be(v)), Some(v));
        }
    }

    #[test]
    fn chunks_are_hour_aligned_for_negative_times_too() {
        assert_eq!(chunk_start(3_599_999), 0);
        assert_eq!(chunk_start(3_600_000), 3_600_000);
        assert_eq!(chunk_start(-1), -3_600_000);
    }
}

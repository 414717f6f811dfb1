//! Durable storage on sled, behind our own API so that nothing above this module knows sled exists (and sled can be
//! replaced if it ever fails our crash tests).
//!
//! Points are stored one key per series per hour ([`keys`]), which is what makes sled fast enough: one key per point
//! costs ~10× the throughput and ~15× the disk. A commit of many batches is written with one atomic `apply_batch`
//! and made durable with one `flush` (group commit); an ack is sent only after that flush.

mod chunk;
mod keys;
mod ledger;
pub use ledger::{source_hours, SourceHours};

use crate::domain::{Anomaly, Enterprise, Meter, OperatingChange, Outlet, Point, RestrictionOrder};
use chunk::{Chunk, Insert};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Everything that can go wrong below the storage boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded engine failed (I/O, corruption it detected).
    #[error("storage engine: {0}")]
    Engine(#[from] sled::Error),
    /// A stored value could not be decoded: a bug or a format from a newer version.
    #[error("corrupt stored value under {key}: {reason}")]
    Corrupt {
        /// Printable key.
        key: String,
        /// What failed.
        reason: String,
    },
    /// A value could not be encoded (nothing was written).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being written.
        what: &'static str,
        /// What failed.
        reason: String,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Attempts (100 ms apart) to take over the store's file lock from a handle that is still closing.
const LOCK_RETRIES: u32 = 30;

/// Format version of postcard values (anomalies, checkpoints, log entries). Bump and migrate; never reuse.
/// Version 2: anomalies keep typed evidence and no summary (rendered when served). Version 1 values of unchanged
/// layout (log entries) still read; a version 1 anomaly does not, and says so.
const VALUE_FORMAT_V1: u8 = 1;
const VALUE_FORMAT_V2: u8 = 2;

/// What a commit did with one point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointOutcome {
    /// New data, stored.
    Stored,
    /// Identical to the stored reading: accepted, not stored twice.
    Duplicate,
    /// Differs from the stored reading: refused, the original stays, the attempt is audited.
    ConflictingRewrite,
}

/// A refused rewrite of stored history, kept because rewriting history is itself a fraud signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictAudit {
    /// The reading that stays.
    pub stored: Point,
    /// The reading somebody tried to put in its place.
    pub attempted: Point,
    /// Wall time of the attempt, Unix ms.
    pub received_at_ms: i64,
}

/// The registry objects, as one enum so they share one storage path.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RegistryItem {
    /// An enterprise.
    Enterprise(Enterprise),
    /// An outlet.
    Outlet(Outlet),
    /// A meter.
    Meter(Meter),
    /// A restriction order.
    Restriction(RestrictionOrder),
    /// A declared operating change.
    OperatingChange(OperatingChange),
}

impl RegistryItem {
    fn key(&self) -> Vec<u8> {
        let (tag, id) = match self {
            Self::Enterprise(e) => (b'e', &e.id),
            Self::Outlet(o) => (b'o', &o.id),
            Self::Meter(m) => (b'm', &m.id),
            Self::Restriction(r) => (b'r', &r.id),
            Self::OperatingChange(c) => (b'c', &c.id),
        };
        let mut k = vec![keys::REGISTRY, tag];
        k.extend_from_slice(id.as_bytes());
        k
    }
}

/// The embedded store. Cheap to clone (sled handles are reference counted).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    conflict_audit_cap: u64,
}

/// Refused rewrites kept in full: beyond this many only their count grows, so a client sending rewrite after
/// rewrite cannot fill the disk with their audit (the first ones, which show the pattern, stay).
pub const MAX_CONFLICT_AUDITS: u64 = 100_000;
const CONFLICTS_KEPT: &str = "conflict_audits_kept";
const CONFLICT_ATTEMPTS: &str = "conflict_attempts";

impl Store {
    /// Opens (or creates) the store in `dir`.
    ///
    /// # Errors
    /// When the directory cannot be opened or sled's recovery fails.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        // sled's background threads keep the previous handle's file lock for a moment after it is dropped (a
        // restart in the same process, a service manager restarting at once): wait for it, briefly, rather than fail.
        let mut attempts = 0;
        loop {
            let opened = sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes)
                .mode(sled::Mode::HighThroughput)
                .open();
            match opened {
                Ok(db) => {
                    return Ok(Self {
                        db,
                        conflict_audit_cap: MAX_CONFLICT_AUDITS,
                    })
                }
                Err(sled::Error::Io(e))
                    if attempts < LOCK_RETRIES
                        && e.to_string().contains("could not acquire lock") =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Makes everything written so far durable.
    ///
    /// # Errors
    /// On I/O failure: nothing written since the last successful flush may be acknowledged.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Writes one group commit: every batch's points, de-duplicated against stored data and against each other, a
    /// replay-log entry (under `log_seq`) holding the newly stored points, and one ledger leaf per receipt (with the
    /// source-hours it covers), atomically. Does **not** flush: the caller flushes once and only then acknowledges.
    ///
    /// Returns one outcome per input point, per batch, in order.
    ///
    /// # Errors
    /// Engine failure or a corrupt stored chunk; nothing of the commit is written then.
    pub fn write_commit(
        &self,
        log_seq: u64,
        batches: &[Vec<Point>],
        receipts: &[(crate::ledger::Receipt, SourceHours)],
        now_ms: i64,
    ) -> Result<Vec<Vec<PointOutcome>>> {
        let mut chunks: HashMap<Vec<u8>, Chunk> = HashMap::new();
        let mut new_points: Vec<Point> = Vec::new();
        let mut audits: Vec<ConflictAudit> = Vec::new();
        let mut outcomes = Vec::with_capacity(batches.len());
        for batch in batches {
            let mut out = Vec::with_capacity(batch.len());
            for p in batch {
                let key = keys::chunk_key(&p.source_id, &p.code, keys::chunk_start(p.time_ms));
                let chunk = match chunks.entry(key) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        let loaded = match self.db.get(e.key())? {
                            Some(v) => Chunk::decode(&v).map_err(|reason| StoreError::Corrupt {
                                key: printable(e.key()),
                                reason,
                            })?,
                            None => Chunk::new(keys::chunk_start(p.time_ms)),
                        };
                        e.insert(loaded)
                    }
                };
                match chunk.insert(p) {
                    Insert::Stored => {
                        new_points.push(p.clone());
                        out.push(PointOutcome::Stored);
                    }
                    Insert::Same => out.push(PointOutcome::Duplicate),
                    Insert::Different(stored) => {
                        audits.push(ConflictAudit {
                            stored: stored.into_point(&p.source_id, &p.code),
                            attempted: p.clone(),
                            received_at_ms: now_ms,
                        });
                        out.push(PointOutcome::ConflictingRewrite);
                    }
                }
            }
            outcomes.push(out);
        }
        let mut batch = sled::Batch::default();
        for (key, chunk) in chunks.iter().filter(|(_, c)| c.dirty) {
            batch.insert(
                key.as_slice(),
                chunk.encode().map_err(|reason| StoreError::Encode {
                    what: "chunk",
                    reason,
                })?,
            );
        }
        if !new_points.is_empty() {
            batch.insert(
                &keys::seq_key(keys::LOG, log_seq)[..],
                encode_versioned("log entry", &new_points)?,
            );
        }
        if !audits.is_empty() {
            let kept = self.meta_u64(CONFLICTS_KEPT)?.unwrap_or(0);
            let room =
                usize::try_from(self.conflict_audit_cap.saturating_sub(kept)).unwrap_or(usize::MAX);
            let keep = audits.len().min(room);
            for a in &audits[..keep] {
                let id = self.db.generate_id()?;
                batch.insert(&keys::seq_key(keys::AUDIT, id)[..], json("audit entry", a)?);
            }
            let attempts = self.meta_u64(CONFLICT_ATTEMPTS)?.unwrap_or(0) + audits.len() as u64;
            batch.insert(
                keys::str_key(keys::META, CONFLICTS_KEPT),
                &(kept + keep as u64).to_be_bytes()[..],
            );
            batch.insert(
                keys::str_key(keys::META, CONFLICT_ATTEMPTS),
                &attempts.to_be_bytes()[..],
            );
        }
        self.append_leaves(&mut batch, receipts, now_ms)?;
        self.db.apply_batch(batch)?;
        Ok(outcomes)
    }

    /// Replay-log entries with a sequence number greater than `after`, in order: acknowledged data detection has not
    /// checkpointed yet.
    ///
    /// # Errors
    /// Engine failure or a corrupt entry.
    pub fn log_after(&self, after: u64) -> Result<Vec<(u64, Vec<Point>)>> {
        let start = keys::seq_key(keys::LOG, after.saturating_add(1));
        let mut out = Vec::new();
        for kv in self.db.range(start..).take_while(is_prefix(keys::LOG)) {
            let (k, v) = kv?;
            let seq = u64::from_be_bytes(k[1..9].try_into().map_err(|_| corrupt(&k, "log key"))?);
            out.push((seq, decode_versioned(&k, &v)?));
        }
        Ok(out)
    }

    /// The highest replay-log sequence number ever written (0 if none), so that sequence numbers are never reused.
    ///
    /// # Errors
    /// Engine failure.
    pub fn last_log_seq(&self) -> Result<u64> {
        let mut last = self.meta_u64("log_seq_floor")?.unwrap_or(0);
        if let Some(kv) = self
            .db
            .range(keys::seq_key(keys::LOG, 0)..=keys::seq_key(keys::LOG, u64::MAX))
            .next_back()
        {
            let (k, _) = kv?;
            let seq = u64::from_be_bytes(k[1..9].try_into().map_err(|_| corrupt(&k, "log key"))?);
            last = last.max(seq);
        }
        Ok(last)
    }

    /// Stores detection's checkpoint together with the anomalies it produced, and drops the replay log up to
    /// `through_seq`, atomically, then flushes. After a crash, detection resumes from here and replays the rest of
    /// the log, so no acknowledged point is missed and no anomaly is lost.
    ///
    /// The state blob (megabytes with many outlets) is written first under its own key, outside the atomic batch:
    /// a large batch holds sled's write lock, and every ingest commit would wait behind it. The batch then only
    /// points at the new blob, drops the previous one and the log it covers (by sequence number, without reading
    /// it). A crash between the two leaves an unreferenced blob, dropped by the next checkpoint.
    ///
    /// # Errors
    /// Engine failure.
    pub fn save_checkpoint(
        &self,
        through_seq: u64,
        state: &[u8],
        anomalies: &[Anomaly],
    ) -> Result<()> {
        let previous = self.meta_u64(DETECT_STATE_AT)?;
        let blob_key = detect_state_key(through_seq);
        self.db.insert(&blob_key, state)?;
        let mut batch = sled::Batch::default();
        for a in anomalies {
            batch.insert(
                keys::str_key(keys::ANOMALY, &a.id),
                encode_versioned("anomaly", a)?,
            );
        }
        batch.insert(
            keys::str_key(keys::META, DETECT_STATE_AT),
            &through_seq.to_be_bytes()[..],
        );
        match previous {
            Some(p) if p != through_seq => batch.remove(detect_state_key(p)),
            Some(_) => {}
            None => batch.remove(keys::str_key(keys::META, "detect_state")),
        }
        batch.insert(
            keys::str_key(keys::META, "detect_seq"),
            &through_seq.to_be_bytes()[..],
        );
        batch.insert(
            keys::str_key(keys::META, "log_seq_floor"),
            &through_seq.to_be_bytes()[..],
        );
        match self.meta_u64("log_seq_floor")? {
            // Sequence numbers are consecutive: the log since the last checkpoint is exactly these keys.
            Some(floor) if floor <= through_seq => {
                for seq in floor + 1..=through_seq {
                    batch.remove(&keys::seq_key(keys::LOG, seq)[..]);
                }
            }
            _ => {
                for kv in self
                    .db
                    .range(keys::seq_key(keys::LOG, 0)..=keys::seq_key(keys::LOG, through_seq))
                {
                    let (k, _) = kv?;
                    batch.remove(k);
                }
            }
        }
        self.db.apply_batch(batch)?;
        self.flush()
    }

    /// Detection's last checkpoint: the log sequence it covers and its state blob.
    ///
    /// # Errors
    /// Engine failure.
    pub fn checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let Some(seq) = self.meta_u64("detect_seq")? else {
            return Ok(None);
        };
        let key = match self.meta_u64(DETECT_STATE_AT)? {
            Some(at) => detect_state_key(at),
            None => keys::str_key(keys::META, "detect_state"),
        };
        let state = self.db.get(key)?.map(|v| v.to_vec()).unwrap_or_default();
        Ok(Some((seq, state)))
    }

    fn meta_u64(&self, name: &str) -> Result<Option<u64>> {
        match self.db.get(keys::str_key(keys::META, name))? {
            Some(v) => {
                let arr: [u8; 8] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| corrupt(name.as_bytes(), "meta u64"))?;
                Ok(Some(u64::from_be_bytes(arr)))
            }
            None => Ok(None),
        }
    }

    /// Stored points of one source in `[from_ms, to_ms)`, for the given codes (all codes when empty), sorted by time
    /// then code.
    ///
    /// # Errors
    /// Engine failure or a corrupt chunk.
    pub fn read_points(
        &self,
        source_id: &str,
        codes: &[String],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Point>> {
        let codes = if codes.is_empty() {
            self.codes_of(source_id)?
        } else {
            codes.to_vec()
        };
        let mut out = Vec::new();
        if from_ms >= to_ms {
            return Ok(out);
        }
        for code in &codes {
            let lo = keys::chunk_key(source_id, code, keys::chunk_start(from_ms));
            let hi = keys::chunk_key(source_id, code, keys::chunk_start(to_ms - 1));
            for kv in self.db.range(lo..=hi) {
                let (k, v) = kv?;
                let chunk = Chunk::decode(&v).map_err(|reason| corrupt(&k, &reason))?;
                out.extend(
                    chunk
                        .points()
                        .filter(|sp| sp.time_ms >= from_ms && sp.time_ms < to_ms)
                        .map(|sp| sp.into_point(source_id, code)),
                );
            }
        }
        out.sort_by(|a, b| a.time_ms.cmp(&b.time_ms).then_with(|| a.code.cmp(&b.code)));
        Ok(out)
    }

    /// Time span covered by the stored chunks of a source (given codes, or all): `(first chunk start, last chunk
    /// end - 1)`, or `None` when nothing is stored. Lets readers skip empty stretches.
    ///
    /// # Errors
    /// Engine failure.
    pub fn time_bounds(&self, source_id: &str, codes: &[String]) -> Result<Option<(i64, i64)>> {
        let codes = if codes.is_empty() {
            self.codes_of(source_id)?
        } else {
            codes.to_vec()
        };
        let mut bounds: Option<(i64, i64)> = None;
        for code in &codes {
            let prefix = keys::series_prefix(source_id, code);
            let chunk_time = |k: &[u8]| keys::i64_from_be(&k[prefix.len()..]);
            let first = self.db.scan_prefix(&prefix).next().transpose()?;
            let last = self.db.scan_prefix(&prefix).next_back().transpose()?;
            if let (Some((fk, _)), Some((lk, _))) = (first, last) {
                if let (Some(f), Some(l)) = (chunk_time(&fk), chunk_time(&lk)) {
                    let l = l + keys::CHUNK_MS - 1;
                    bounds = Some(bounds.map_or((f, l), |(a, b)| (a.min(f), b.max(l))));
                }
            }
        }
        Ok(bounds)
    }

    /// The codes a source has ever reported, found by skipping from series to series (not by reading every chunk).
    ///
    /// # Errors
    /// Engine failure.
    pub fn codes_of(&self, source_id: &str) -> Result<Vec<String>> {
        let prefix = keys::source_prefix(source_id);
        let mut codes = Vec::new();
        let mut cursor = prefix.clone();
        while let Some(kv) = self.db.range(cursor.clone()..).next() {
            let (k, _) = kv?;
            if !k.starts_with(&prefix) {
                break;
            }
            let rest = &k[prefix.len()..];
            let Some(end) = rest.iter().position(|b| *b == 0) else {
                return Err(corrupt(&k, "point key without code terminator"));
            };
            let code = String::from_utf8_lossy(&rest[..end]).into_owned();
            // Next series: the code followed by \x01 sorts after every chunk of this one.
            cursor = keys::source_prefix(source_id);
            cursor.extend_from_slice(code.as_bytes());
            cursor.push(1);
            codes.push(code);
        }
        Ok(codes)
    }

    /// Every refused rewrite ever attempted, including those beyond [`MAX_CONFLICT_AUDITS`] not kept in full.
    ///
    /// # Errors
    /// Engine failure.
    pub fn conflict_attempts(&self) -> Result<u64> {
        Ok(self.meta_u64(CONFLICT_ATTEMPTS)?.unwrap_or(0))
    }

    /// The same store keeping at most `cap` refused rewrites in full (tests use a small one).
    pub fn with_conflict_audit_cap(mut self, cap: u64) -> Self {
        self.conflict_audit_cap = cap;
        self
    }

    /// Refused rewrites, oldest first.
    ///
    /// # Errors
    /// Engine failure or a corrupt entry.
    pub fn conflict_audits(&self) -> Result<Vec<ConflictAudit>> {
        self.db
            .scan_prefix([keys::AUDIT])
            .map(|kv| {
                let (k, v) = kv?;
                serde_json::from_slice(&v).map_err(|e| corrupt(&k, &e.to_string()))
            })
            .collect()
    }

    /// Inserts or replaces a registry object.
    ///
    /// # Errors
    /// Engine failure.
    pub fn put_registry(&self, item: &RegistryItem) -> Result<()> {
        self.db.insert(item.key(), json("registry item", item)?)?;
        Ok(())
    }

    /// Every registry object.
    ///
    /// # Errors
    /// Engine failure or a corrupt entry.
    pub fn registry_items(&self) -> Result<Vec<RegistryItem>> {
        self.db
            .scan_prefix([keys::REGISTRY])
            .map(|kv| {
                let (k, v) = kv?;
                serde_json::from_slice(&v).map_err(|e| corrupt(&k, &e.to_string()))
            })
            .collect()
    }

    /// Writes (inserts or replaces) one anomaly; used by reviews, which must not wait for a detection checkpoint.
    ///
    /// # Errors
    /// Engine failure.
    pub fn put_anomaly(&self, a: &Anomaly) -> Result<()> {
        self.db.insert(
            keys::str_key(keys::ANOMALY, &a.id),
            encode_versioned("anomaly", a)?,
        )?;
        Ok(())
    }

    /// Writes many anomalies in one atomic batch (bulk loads, benchmarks) and flushes.
    ///
    /// # Errors
    /// Engine failure.
    pub fn put_anomalies(&self, anomalies: &[Anomaly]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for a in anomalies {
            batch.insert(
                keys::str_key(keys::ANOMALY, &a.id),
                encode_versioned("anomaly", a)?,
            );
        }
        self.db.apply_batch(batch)?;
        self.flush()
    }

    /// Every stored anomaly (loaded once at start into the enforcement index).
    ///
    /// # Errors
    /// Engine failure or a corrupt entry.
    pub fn anomalies(&self) -> Result<Vec<Anomaly>> {
        self.db
            .scan_prefix([keys::ANOMALY])
            .map(|kv| {
                let (k, v) = kv?;
                decode_versioned(&k, &v)
            })
            .collect()
    }

    /// Stores one model version (the blob carries its own format header) and flushes: a trained model is
    /// expensive to lose.
    ///
    /// # Errors
    /// Engine failure.
    pub fn put_model(&self, scope: &str, version: u32, blob: &[u8]) -> Result<()> {
        self.db.insert(keys::model_key(scope, version), blob)?;
        self.flush()
    }

    /// Every stored model blob.
    ///
    /// # Errors
    /// Engine failure.
    pub fn model_blobs(&self) -> Result<Vec<Vec<u8>>> {
        self.db
            .scan_prefix([keys::MODEL])
            .map(|kv| Ok(kv?.1.to_vec()))
            .collect()
    }

    /// Appends an entry to the change audit (who changed what) and flushes; returns its sequence number.
    ///
    /// # Errors
    /// Engine failure.
    pub fn append_change<T: Serialize>(&self, entry: &T) -> Result<u64> {
        let seq = self.db.generate_id()? + 1;
        let mut key = vec![keys::CHANGES];
        key.extend_from_slice(&seq.to_be_bytes());
        self.db.insert(key, json("audit entry", entry)?)?;
        self.flush()?;
        Ok(seq)
    }

    /// Change-audit entries after `after_seq`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// Engine failure or a corrupt entry.
    pub fn changes_after<T: DeserializeOwned>(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, T)>> {
        let mut from = vec![keys::CHANGES];
        from.extend_from_slice(&after_seq.saturating_add(1).to_be_bytes());
        self.db
            .range(from..vec![keys::CHANGES + 1])
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                let seq = k
                    .get(1..9)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| corrupt(&k, "audit key"))?;
                let entry = serde_json::from_slice(&v).map_err(|e| corrupt(&k, &e.to_string()))?;
                Ok((seq, entry))
            })
            .collect()
    }

    /// Writes a JSON metadata document (e.g. which model versions are active) and flushes.
    ///
    /// # Errors
    /// Engine failure.
    pub fn put_meta_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.db.insert(
            keys::str_key(keys::META, name),
            json("meta document", value)?,
        )?;
        self.flush()
    }

    /// Reads [`Store::put_meta_json`].
    ///
    /// # Errors
    /// Engine failure or a corrupt document.
    pub fn meta_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        match self.db.get(keys::str_key(keys::META, name))? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| corrupt(name.as_bytes(), &e.to_string())),
            None => Ok(None),
        }
    }

    /// Bytes sled reports on disk, for benchmarks and the data-layout notes.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

fn is_prefix(prefix: u8) -> impl Fn(&sled::Result<(sled::IVec, sled::IVec)>) -> bool {
    move |kv| match kv {
        Ok((k, _)) => k.first() == Some(&prefix),
        Err(_) => true,
    }
}

fn encode_versioned<T: Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>> {
    let mut out = vec![VALUE_FORMAT_V2];
    let body = postcard::to_stdvec(v).map_err(|e| StoreError::Encode {
        what,
        reason: e.to_string(),
    })?;
    out.extend(body);
    Ok(out)
}

fn decode_versioned<T: DeserializeOwned>(key: &[u8], v: &[u8]) -> Result<T> {
    match v.split_first() {
        Some((&VALUE_FORMAT_V2, body)) => {
            postcard::from_bytes(body).map_err(|e| corrupt(key, &e.to_string()))
        }
        Some((&VALUE_FORMAT_V1, body)) => postcard::from_bytes(body).map_err(|e| {
            corrupt(
                key,
                &format!("value format 1 of an older version, not readable here: {e}"),
            )
        }),
        Some((other, _)) => Err(corrupt(key, &format!("unknown value format {other}"))),
        None => Err(corrupt(key, "empty value")),
    }
}

fn json<T: Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Encode {
        what,
        reason: e.to_string(),
    })
}

fn corrupt(key: &[u8], reason: &str) -> StoreError {
    StoreError::Corrupt {
        key: printable(key),
        reason: reason.to_string(),
    }
}

fn printable(key: &[u8]) -> String {
    key.iter()
        .map(|b| {
            if b.is_ascii_graphic() {
                (*b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// State blobs (detection checkpoints) use the same versioned postcard encoding as stored values.
///
/// # Errors
/// [`StoreError::Encode`] when the state cannot be encoded.
pub fn encode_state<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    encode_versioned("detection state", v)
}

/// Inverse of [`encode_state`].
///
/// # Errors
/// [`StoreError::Corrupt`] when the blob is not a state of this version.
pub fn decode_state<T: for<'de> Deserialize<'de>>(blob: &[u8]) -> Result<T> {
    decode_versioned(b"detect_state", blob)
}

/// Meta key: the sequence of the checkpoint whose state blob is current.
const DETECT_STATE_AT: &str = "detect_state_at";

/// Key of the detection state blob of the checkpoint through `seq`.
fn detect_state_key(seq: u64) -> Vec<u8> {
    keys::str_key(keys::META, &format!("detect_state@{seq:020}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Interval, ValueFlag};

    fn point(source: &str, code: &str, t: i64, v: f64) -> Point {
        Point {
            source_id: source.into(),
            code: code.into(),
            time_ms: t,
            interval: Interval::Minute,
            value: v,
            flag: ValueFlag::Normal,
            converted: None,
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 16 << 20).unwrap();
        (dir, store)
    }

    #[test]
    fn duplicates_are_idempotent_and_rewrites_are_refused_and_audited() {
        let (_dir, store) = open();
        let t = 1_700_000_000_000;
        let first = vec![
            point("o1", "a21026", t, 12.5),
            point("o1", "a21026", t + 60_000, 13.0),
        ];
        let out = store.write_commit(1, &[first], &[], 1).unwrap();
        assert_eq!(out[0], vec![PointOutcome::Stored, PointOutcome::Stored]);

        let again = vec![
            point("o1", "a21026", t, 12.5),
            point("o1", "a21026", t + 60_000, 99.0),
        ];
        let out = store.write_commit(2, &[again], &[], 2).unwrap();
        assert_eq!(
            out[0],
            vec![PointOutcome::Duplicate, PointOutcome::ConflictingRewrite]
        );
        let stored = store.read_points("o1", &[], t, t + 120_000).unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[1].value, 13.0, "the original stays");
        let audits = store.conflict_audits().unwrap();
        assert_eq!(audits.len(), 1);
        assert_eq!(audits[0].attempted.value, 99.0);
        assert_eq!(audits[0].stored.value, 13.0);
    }

    #[test]
    fn same_point_twice_in_one_commit_is_a_duplicate() {
        let (_dir, store) = open();
        let p = point("m1", "power_kw", 1_000, 5.0);
        let out = store
            .write_commit(1, &[vec![p.clone()], vec![p.clone()]], &[], 0)
            .unwrap();
        assert_eq!(out[0], vec![PointOutcome::Stored]);
        assert_eq!(out[1], vec![PointOutcome::Duplicate]);
        assert_eq!(store.log_after(0).unwrap()[0].1.len(), 1);
    }

    #[test]
    fn reads_span_chunks_codes_and_respect_bounds() {
        let (_dir, store) = open();
        let base = 10 * keys::CHUNK_MS;
        let mut pts = Vec::new();
        for i in 0..180 {
            pts.push(point("o1", "a21026", base + i * 60_000, i as f64));
            pts.push(point("o1", "a19001", base + i * 60_000, 6.0));
        }
        pts.push(point("o10", "a21026", base, 1.0)); // a source whose id extends "o1"
        store.write_commit(1, &[pts], &[], 0).unwrap();
        let got = store
            .read_points(
                "o1",
                &["a21026".into()],
                base + 30 * 60_000,
                base + 150 * 60_000,
            )
            .unwrap();
        assert_eq!(got.len(), 120);
        assert_eq!(got.first().unwrap().value, 30.0);
        assert_eq!(got.last().unwrap().value, 149.0);
        assert!(got.windows(2).all(|w| w[0].time_ms < w[1].time_ms));
        assert_eq!(store.codes_of("o1").unwrap(), vec!["a19001", "a21026"]);
        assert_eq!(
            store
                .read_points("o1", &[], base, base + 60_000)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn checkpoint_truncates_log_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 16 << 20).unwrap();
            store
                .write_commit(1, &[vec![point("s", "c", 1, 1.0)]], &[], 0)
                .unwrap();
            store
                .write_commit(2, &[vec![point("s", "c", 2, 1.0)]], &[], 0)
                .unwrap();
            store.save_checkpoint(1, b"state", &[]).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path(), 16 << 20).unwrap();
        let (seq, state) = store.checkpoint().unwrap().unwrap();
        assert_eq!((seq, state.as_slice()), (1, &b"state"[..]));
        let rest = store.log_after(seq).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].0, 2);
        assert_eq!(store.last_log_seq().unwrap(), 2);
    }

    #[test]
    fn every_commit_appends_provable_leaves_that_survive_reopen() {
        use crate::ledger::{merkle, Leaf, Receipt, Transport};
        let dir = tempfile::tempdir().unwrap();
        let t = 1_699_999_200_000; // on the hour
        let receipt = |n: u8| Receipt {
            principal: format!("p{n}"),
            transport: Transport::Grpc,
            items: vec![vec![n; 3]],
        };
        {
            let store = Store::open(dir.path(), 1 << 20).unwrap();
            for round in 0..5u8 {
                let batches: Vec<Vec<Point>> = (0..round + 1)
                    .map(|b| {
                        vec![point(
                            &format!("o{b}"),
                            "a21026",
                            t + i64::from(round) * 3_600_000,
                            1.0,
                        )]
                    })
                    .collect();
                let receipts: Vec<(Receipt, ledger::SourceHours)> = (0..=round)
                    .map(|b| (receipt(b), ledger::source_hours(&batches[usize::from(b)])))
                    .collect();
                store
                    .write_commit(u64::from(round) + 1, &batches, &receipts, 7)
                    .unwrap();
            }
            store.flush().unwrap();
        }
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let size = store.ledger_size().unwrap();
        assert_eq!(size, 15, "1 + 2 + 3 + 4 + 5 receipts");
        let root = store.ledger_root(size).unwrap();
        for i in 0..size {
            let (leaf, items) = store.ledger_leaf(i).unwrap().unwrap();
            assert_eq!(leaf.received_at_ms, 7);
            assert_eq!(
                leaf,
                Leaf::of(
                    &Receipt {
                        principal: leaf.principal.clone(),
                        transport: Transport::Grpc,
                        items
                    },
                    7
                )
            );
            let proof = store.ledger_proof(i, size).unwrap();
            assert!(
                merkle::verify_inclusion(&leaf.hash(), i, size, &proof, &root),
                "leaf {i}"
            );
        }
        // o0 had a point in every round: leaves 0, 1, 3, 6, 10; o4 only in the last: leaf 14.
        let o0 = store
            .ledger_leaves_for("o0", t, t + 5 * 3_600_000, 100)
            .unwrap();
        assert_eq!(o0, vec![0, 1, 3, 6, 10]);
        assert_eq!(
            store
                .ledger_leaves_for("o0", t + 3_600_000, t + 2 * 3_600_000, 100)
                .unwrap(),
            vec![1]
        );
        assert_eq!(
            store
                .ledger_leaves_for("o4", t, t + 5 * 3_600_000, 100)
                .unwrap(),
            vec![14]
        );
        assert!(store
            .ledger_leaves_for("o9", t, t + 5 * 3_600_000, 100)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn refused_rewrites_are_kept_up_to_the_cap_and_counted_beyond_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20)
            .unwrap()
            .with_conflict_audit_cap(5);
        let t = 1_699_999_200_000;
        let honest: Vec<Point> = (0..20)
            .map(|i| point("o1", "a21026", t + i * 60_000, 1.0))
            .collect();
        store.write_commit(1, &[honest], &[], 0).unwrap();
        for round in 0..3 {
            let rewrites: Vec<Point> = (0..20)
                .map(|i| point("o1", "a21026", t + i * 60_000, 2.0 + f64::from(round)))
                .collect();
            let out = store
                .write_commit(2 + round as u64, &[rewrites], &[], 0)
                .unwrap();
            assert!(out[0]
                .iter()
                .all(|o| *o == PointOutcome::ConflictingRewrite));
        }
        assert_eq!(
            store.conflict_audits().unwrap().len(),
            5,
            "the first five kept in full"
        );
        assert_eq!(
            store.conflict_attempts().unwrap(),
            60,
            "every attempt counted"
        );
        assert_eq!(store.conflict_audits().unwrap()[0].attempted.value, 2.0);
    }
}

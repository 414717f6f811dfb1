//! The anomaly book: the in-memory index over stored anomalies.
//!
//! Ordering is kept in a `BTreeSet` keyed by (score desc, start desc, id), so a page is a range scan from the page
//! token: pagination is stable while anomalies are added, and a page costs O(page + skipped by filters) rather than a
//! sort of everything. The store is the truth; the book is rebuilt from it at start.

use crate::domain::{Anomaly, AnomalyFilter, ReviewEntry, ReviewStatus, ReviewTransitionError};
use crate::store::{Store, StoreError};
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::broadcast;

/// Default page size of `ListAnomalies`.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page size served.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Why a book operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    /// No anomaly with this id.
    #[error("anomaly {0:?} not found")]
    NotFound(String),
    /// The page token was not issued by us.
    #[error("invalid page token")]
    BadPageToken,
    /// A review was not a legal transition.
    #[error(transparent)]
    Transition(#[from] ReviewTransitionError),
    /// A review request field was invalid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Field.
        field: &'static str,
        /// Reason.
        reason: String,
    },
    /// Persisting failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One page of the list.
#[derive(Debug, Clone)]
pub struct Page {
    /// Anomalies in rank order.
    pub anomalies: Vec<Anomaly>,
    /// Token for the next page; empty when this is the last.
    pub next_page_token: String,
}

/// A review of one anomaly.
#[derive(Debug, Clone)]
pub struct ReviewRequest {
    /// Anomaly id.
    pub id: String,
    /// Target status.
    pub status: ReviewStatus,
    /// Note for the audit trail.
    pub note: String,
    /// Who.
    pub reviewer: String,
    /// Wall time, Unix ms.
    pub at_ms: i64,
}

type RankKey = (Reverse<u64>, Reverse<i64>, String);

fn rank_key(a: &Anomaly) -> RankKey {
    // Scores are in 0..1, so the IEEE bits of a non-negative float order like the float.
    (
        Reverse(a.score.max(0.0).to_bits()),
        Reverse(a.start_ms),
        a.id.clone(),
    )
}

fn encode_token(k: &RankKey) -> String {
    format!("{:016x}{:016x}{}", k.0 .0, k.1 .0 as u64, k.2)
}

fn decode_token(t: &str) -> Option<RankKey> {
    if t.len() < 33 || !t.is_char_boundary(32) {
        return None;
    }
    let score = u64::from_str_radix(t.get(..16)?, 16).ok()?;
    let start = u64::from_str_radix(t.get(16..32)?, 16).ok()? as i64;
    Some((Reverse(score), Reverse(start), t.get(32..)?.to_string()))
}

#[derive(Default)]
struct Index {
    by_id: HashMap<String, Anomaly>,
    ranked: BTreeSet<RankKey>,
    /// The same ranking per enterprise: an officer's list for one enterprise must not scan the whole city.
    by_enterprise: HashMap<String, BTreeSet<RankKey>>,
}

impl Index {
    fn put(&mut self, a: Anomaly) {
        if let Some(old) = self.by_id.get(&a.id) {
            let key = rank_key(old);
            self.ranked.remove(&key);
            if let Some(set) = self.by_enterprise.get_mut(&old.enterprise_id) {
                set.remove(&key);
            }
        }
        let key = rank_key(&a);
        self.ranked.insert(key.clone());
        self.by_enterprise
            .entry(a.enterprise_id.clone())
            .or_default()
            .insert(key);
        self.by_id.insert(a.id.clone(), a);
    }
}

/// The book. Shared between the detection thread (upserts), the API (lists, reviews) and watchers.
pub struct AnomalyBook {
    store: Store,
    index: RwLock<Index>,
    /// Ids changed by detection since the last checkpoint.
    dirty: Mutex<HashSet<String>>,
    /// Serializes every write of anomalies to the store, so a checkpoint can never overwrite a newer review.
    persist: Mutex<()>,
    events: broadcast::Sender<Arc<Anomaly>>,
}

impl AnomalyBook {
    /// Loads every stored anomaly.
    ///
    /// # Errors
    /// Store failure.
    pub fn load(store: Store) -> Result<Self, StoreError> {
        let mut index = Index::default();
        for a in store.anomalies()? {
            index.put(a);
        }
        let (events, _) = broadcast::channel(4096);
        Ok(Self {
            store,
            index: RwLock::new(index),
            dirty: Mutex::new(HashSet::new()),
            persist: Mutex::new(()),
            events,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of anomalies.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One anomaly.
    pub fn get(&self, id: &str) -> Option<Anomaly> {
        self.read().by_id.get(id).cloned()
    }

    /// Applies a detection update through `f(existing) -> new`, marks it for the next checkpoint and notifies
    /// watchers. Not persisted here: the checkpoint persists it together with the detection state it came from.
    pub fn upsert_with(&self, id: &str, f: impl FnOnce(Option<&Anomaly>) -> Anomaly) {
        let updated = {
            let mut index = self.write();
            let a = f(index.by_id.get(id));
            index.put(a.clone());
            a
        };
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(updated.id.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(Arc::new(updated));
    }

    /// Persists the detection checkpoint with every anomaly changed since the last one.
    ///
    /// # Errors
    /// Store failure; the dirty set is kept so the next checkpoint retries.
    pub fn checkpoint(&self, through_seq: u64, state: &[u8]) -> Result<(), StoreError> {
        let _guard = self.persist.lock().unwrap_or_else(|e| e.into_inner());
        let ids: Vec<String> = self
            .dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        let current: Vec<Anomaly> = {
            let index = self.read();
            ids.iter()
                .filter_map(|id| index.by_id.get(id).cloned())
                .collect()
        };
        if let Err(e) = self.store.save_checkpoint(through_seq, state, &current) {
            self.dirty
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(ids);
            return Err(e);
        }
        Ok(())
    }

    /// A page of the ranked list. `region_of` resolves an enterprise's region (looked up once per enterprise).
    ///
    /// # Errors
    /// [`BookError::BadPageToken`].
    pub fn list(
        &self,
        filter: &AnomalyFilter,
        page_size: usize,
        page_token: &str,
        region_of: impl Fn(&str) -> String,
    ) -> Result<Page, BookError> {
        let page_size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let start = if page_token.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(decode_token(page_token).ok_or(BookError::BadPageToken)?)
        };
        let mut regions: HashMap<String, String> = HashMap::new();
        let index = self.read();
        let mut anomalies = Vec::with_capacity(page_size);
        let mut last = None;
        let mut more = false;
        // With enterprises named, walk only their rankings (merged); otherwise the city's.
        let merged: BTreeSet<RankKey>;
        let ranked: &BTreeSet<RankKey> = if filter.enterprise_ids.is_empty() {
            &index.ranked
        } else {
            merged = filter
                .enterprise_ids
                .iter()
                .filter_map(|e| index.by_enterprise.get(e))
                .flat_map(|set| set.range((start.clone(), Bound::Unbounded)).cloned())
                .collect();
            &merged
        };
        for key in ranked.range((start, Bound::Unbounded)) {
            let Some(a) = index.by_id.get(&key.2) else {
                continue;
            };
            let region = if !filter.needs_region() {
                ""
            } else {
                regions
                    .entry(a.enterprise_id.clone())
                    .or_insert_with(|| region_of(&a.enterprise_id))
                    .as_str()
            };
            if !filter.matches(a, region) {
                continue;
            }
            if anomalies.len() == page_size {
                more = true;
                break;
            }
            anomalies.push(a.clone());
            last = Some(key.clone());
        }
        Ok(Page {
            anomalies,
            next_page_token: match (more, last) {
                (true, Some(k)) => encode_token(&k),
                _ => String::new(),
            },
        })
    }

    /// Every anomaly matching a filter, in rank order (for incidents and hotspots, which need the whole set).
    pub fn matching(
        &self,
        filter: &AnomalyFilter,
        region_of: impl Fn(&str) -> String,
    ) -> Vec<Anomaly> {
        let index = self.read();
        let mut regions: HashMap<String, String> = HashMap::new();
        index
            .ranked
            .iter()
            .filter_map(|k| index.by_id.get(&k.2))
            .filter(|a| {
                let region = if !filter.needs_region() {
                    String::new()
                } else {
                    regions
                        .entry(a.enterprise_id.clone())
                        .or_insert_with(|| region_of(&a.enterprise_id))
                        .clone()
                };
                filter.matches(a, &region)
            })
            .cloned()
            .collect()
    }

    /// Moves an anomaly through the review workflow, appends to its audit trail and persists it before returning.
    ///
    /// # Errors
    /// Unknown id, an illegal transition, an empty reviewer, or store failure (nothing changes then).
    pub fn review(&self, req: ReviewRequest) -> Result<Anomaly, BookError> {
        if req.reviewer.trim().is_empty() {
            return Err(BookError::Invalid {
                field: "reviewer",
                reason: "every transition is audited: say who made it".into(),
            });
        }
        let _guard = self.persist.lock().unwrap_or_else(|e| e.into_inner());
        let mut a = self
            .get(&req.id)
            .ok_or_else(|| BookError::NotFound(req.id.clone()))?;
        let to = a.status.transition(req.status)?;
        a.reviews.push(ReviewEntry {
            from: a.status,
            to,
            reviewer: req.reviewer,
            at_ms: req.at_ms,
            note: req.note.clone(),
        });
        a.status = to;
        if !req.note.is_empty() {
            a.note = req.note;
        }
        self.store.put_anomaly(&a)?;
        self.store.flush()?;
        self.write().put(a.clone());
        let _ = self.events.send(Arc::new(a.clone()));
        Ok(a)
    }

    /// A stream of every anomaly as it is created or updated.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Anomaly>> {
        self.events.subscribe()
    }
}

impl crate::pipeline::AnomalySink for AnomalyBook {
    fn upsert_with(&self, id: &str, f: &mut dyn FnMut(Option<&Anomaly>) -> Anomaly) {
        AnomalyBook::upsert_with(self, id, f);
    }

    fn checkpoint(&self, through_seq: u64, state: &[u8]) -> Result<(), StoreError> {
        AnomalyBook::checkpoint(self, through_seq, state)
    }

    fn anomaly_count(&self) -> usize {
        self.len()
    }
}

impl crate::training::ReviewedAnomalies for AnomalyBook {
    fn matching(&self, filter: &AnomalyFilter) -> Vec<Anomaly> {
        AnomalyBook::matching(self, filter, |_| String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AnomalyKind;

    fn anomaly(id: &str, ent: &str, score: f64, start: i64) -> Anomaly {
        Anomaly {
            id: id.into(),
            enterprise_id: ent.into(),
            outlet_id: "s".into(),
            source_ids: vec![],
            kind: AnomalyKind::TreatmentNotRunning,
            start_ms: start,
            end_ms: start + 10,
            score,
            detector: "d/1".into(),
            evidence: Default::default(),
            status: ReviewStatus::Open,
            detected_at_ms: start,
            note: String::new(),
            ongoing: false,
            reviews: vec![],
        }
    }

    fn book() -> (tempfile::TempDir, AnomalyBook) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        (dir, AnomalyBook::load(store).unwrap())
    }

    #[test]
    fn pages_are_ranked_complete_and_stable_under_inserts() {
        let (_d, b) = book();
        for i in 0..250 {
            let a = anomaly(
                &format!("a{i:03}"),
                if i % 2 == 0 { "e1" } else { "e2" },
                (i % 10) as f64 / 10.0,
                i,
            );
            b.upsert_with(&a.id.clone(), |_| a);
        }
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = b
                .list(&AnomalyFilter::default(), 100, &token, |_| String::new())
                .unwrap();
            seen.extend(
                page.anomalies
                    .iter()
                    .map(|a| (a.score, a.start_ms, a.id.clone())),
            );
            if seen.len() == 100 {
                // An insert between pages ranks above the cursor: it does not shift what follows.
                let x = anomaly("zz", "e1", 0.99, 1);
                b.upsert_with("zz", |_| x);
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(seen.len(), 250);
        let mut sorted = seen.clone();
        sorted.sort_by(|x, y| y.0.total_cmp(&x.0).then(y.1.cmp(&x.1)));
        assert_eq!(seen, sorted);
        let e1 = b
            .list(
                &AnomalyFilter {
                    enterprise_ids: vec!["e1".into()],
                    min_score: 0.5,
                    ..Default::default()
                },
                1000,
                "",
                |_| String::new(),
            )
            .unwrap();
        assert!(e1
            .anomalies
            .iter()
            .all(|a| a.enterprise_id == "e1" && a.score >= 0.5));
        // Even i with i % 10 in {6, 8}: 50, plus the inserted "zz".
        assert_eq!(e1.anomalies.len(), 51);
        assert!(b
            .list(&AnomalyFilter::default(), 10, "nonsense", |_| String::new())
            .is_err());
    }

    #[test]
    fn reviews_follow_the_workflow_persist_and_survive_detection_updates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        let b = AnomalyBook::load(store.clone()).unwrap();
        let a = anomaly("a1", "e1", 0.9, 5);
        b.upsert_with("a1", |_| a);
        let req = |status, who: &str| ReviewRequest {
            id: "a1".into(),
            status,
            note: "n".into(),
            reviewer: who.into(),
            at_ms: 7,
        };
        assert!(matches!(
            b.review(req(ReviewStatus::Closed, "li")),
            Err(BookError::Transition(_))
        ));
        assert!(matches!(
            b.review(req(ReviewStatus::Dispatched, " ")),
            Err(BookError::Invalid { .. })
        ));
        b.review(req(ReviewStatus::Dispatched, "li")).unwrap();
        // A later checkpoint must not overwrite the review with a stale copy.
        b.checkpoint(1, b"s").unwrap();
        let reloaded = AnomalyBook::load(store).unwrap();
        let got = reloaded.get("a1").unwrap();
        assert_eq!(got.status, ReviewStatus::Dispatched);
        assert_eq!(got.reviews.len(), 1);
        assert_eq!(got.reviews[0].reviewer, "li");
    }
}

//! The change audit: every registry change, review, model activation, declared operating change, principal change
//! and refused attempt, with who (the authenticated principal), when, and the state before and after. Appended to
//! the store, flushed before the change is answered, readable by `admin` (`AdminService.GetAuditLog`,
//! `sentinel audit`).

use super::Principal;
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// One audited event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, Unix ms (server clock).
    pub at_ms: i64,
    /// Who: principal id and name.
    pub principal_id: String,
    /// Its name when it acted.
    pub principal_name: String,
    /// What: the RPC.
    pub action: String,
    /// On what: an id (enterprise, outlet, anomaly, model, principal).
    pub target: String,
    /// `ok`, or why it was refused.
    pub outcome: String,
    /// State before, as JSON (`null` for a creation or a refusal).
    pub before: serde_json::Value,
    /// State after, as JSON (`null` for a refusal).
    pub after: serde_json::Value,
}

/// The audit trail of one store.
#[derive(Clone)]
pub struct AuditLog {
    store: Store,
}

impl AuditLog {
    /// The audit trail kept in `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Appends a done change.
    ///
    /// # Errors
    /// A store failure (the caller answers it as an internal error: an unaudited change is not acknowledged).
    pub fn changed<B: Serialize, A: Serialize>(
        &self,
        who: &Principal,
        action: &str,
        target: &str,
        before: Option<&B>,
        after: &A,
    ) -> Result<u64, StoreError> {
        let value = |v: Option<serde_json::Value>| v.unwrap_or(serde_json::Value::Null);
        self.store.append_change(&AuditEntry {
            at_ms: crate::ingest::system_now_ms(),
            principal_id: who.id.clone(),
            principal_name: who.name.clone(),
            action: action.to_string(),
            target: target.to_string(),
            outcome: "ok".into(),
            before: value(before.and_then(|b| serde_json::to_value(b).ok())),
            after: value(serde_json::to_value(after).ok()),
        })
    }

    /// Appends a refused attempt (a failure to record it is logged, not answered: the refusal stands either way).
    pub fn refused(&self, who: &Principal, action: &str, target: &str, why: &str) {
        let entry = AuditEntry {
            at_ms: crate::ingest::system_now_ms(),
            principal_id: who.id.clone(),
            principal_name: who.name.clone(),
            action: action.to_string(),
            target: target.to_string(),
            outcome: format!("refused: {why}"),
            before: serde_json::Value::Null,
            after: serde_json::Value::Null,
        };
        if let Err(e) = self.store.append_change(&entry) {
            tracing::error!(error = %e, "Could not audit a refused attempt.");
        }
    }

    /// Entries after `after_seq`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// A store failure.
    pub fn read(&self, after_seq: u64, limit: usize) -> Result<Vec<(u64, AuditEntry)>, StoreError> {
        self.store.changes_after(after_seq, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_back_in_order_after_a_sequence_number_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let who = Principal::anonymous_admin();
        let first = {
            let log = AuditLog::new(Store::open(dir.path(), 1 << 20).unwrap());
            let a = log
                .changed(
                    &who,
                    "UpsertEnterprise",
                    "E01",
                    None::<&()>,
                    &serde_json::json!({"grade": "B"}),
                )
                .unwrap();
            log.refused(&who, "ActivateModel", "m1", "PERMISSION_DENIED");
            a
        };
        let log = AuditLog::new(Store::open(dir.path(), 1 << 20).unwrap());
        let all = log.read(0, 10).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0, first);
        assert_eq!(all[0].1.after["grade"], "B");
        assert!(all[1].1.outcome.starts_with("refused"));
        assert_eq!(log.read(first, 10).unwrap().len(), 1);
    }
}

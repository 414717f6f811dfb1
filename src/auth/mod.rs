//! Who may do what. Every gRPC request carries a credential (`authorization: Bearer <token>`); the gate
//! ([`layer::AuthLayer`]) finds its principal, checks the RPC's required roles in [`policy::RPC_ROLES`] and hands the
//! principal to the handler, which applies the principal's scope (a `source` writes only for its enterprises; the
//! reviewer of record is the principal, not a typed name).
//!
//! Tokens are 32 random bytes, shown once when created and stored only as their SHA-256; they can expire and be
//! revoked. The principals live in the store's metadata (a handful of documents, read at start and on every change).

pub mod audit;
pub mod layer;
pub mod policy;

use crate::store::{Store, StoreError};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};

/// Metadata document holding the principals.
const DOCUMENT: &str = "principals";
/// Prefix of every token, so a leaked one is recognisable in logs and scanners.
pub const TOKEN_PREFIX: &str = "snt_";

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An enterprise's or a monitoring platform's uploader: writes and reads back records of its enterprises,
    /// declares their operating changes.
    Source,
    /// An enforcement officer: reads the enforcement list, evidence and data of its regions, reviews anomalies.
    Officer,
    /// A data scientist: trains, evaluates and exports models and data.
    Analyst,
    /// The registry, model activation and the principals.
    Admin,
}

impl Role {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Officer => "officer",
            Self::Analyst => "analyst",
            Self::Admin => "admin",
        }
    }
}

/// One identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    /// Stable id (`p-<n>`).
    pub id: String,
    /// Who it is, as the audit trail names it.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// `source`: the enterprises it may write for (required, never empty).
    pub enterprises: Vec<String>,
    /// `officer`: the regions it may see; empty = all.
    pub regions: Vec<String>,
    /// Hex SHA-256 of the token.
    pub token_sha256: String,
    /// Created, Unix ms.
    pub created_ms: i64,
    /// Expiry, Unix ms (`None`: does not expire).
    pub expires_ms: Option<i64>,
    /// Revoked principals authenticate no more.
    pub revoked: bool,
    /// mTLS: hex SHA-256 of the client certificate (DER) that authenticates it without a token; empty = none.
    /// Pinned by fingerprint, not subject, so a second certificate the CA issues under the same name gains nothing.
    #[serde(default)]
    pub client_cert_sha256: String,
}

impl Principal {
    /// Whether a `source` principal may act for `enterprise_id` (every other role may).
    pub fn may_act_for(&self, enterprise_id: &str) -> bool {
        self.role != Role::Source || self.enterprises.iter().any(|e| e == enterprise_id)
    }

    /// Whether an `officer` principal may see `region` (every other role may).
    pub fn may_see_region(&self, region: &str) -> bool {
        self.role != Role::Officer
            || self.regions.is_empty()
            || self.regions.iter().any(|r| r == region)
    }

    /// How records of who did what name the principal: `name (id)`.
    pub fn label(&self) -> String {
        if self.is_anonymous() {
            self.name.clone()
        } else {
            format!("{} ({})", self.name, self.id)
        }
    }

    /// Whether this is [`Principal::anonymous_admin`] (authentication off).
    pub fn is_anonymous(&self) -> bool {
        self.id == "anonymous"
    }

    /// The principal `--insecure-no-auth` runs every request as.
    pub fn anonymous_admin() -> Self {
        Self {
            id: "anonymous".into(),
            name: "anonymous (auth disabled)".into(),
            role: Role::Admin,
            enterprises: vec![],
            regions: vec![],
            token_sha256: String::new(),
            created_ms: 0,
            client_cert_sha256: String::new(),
            expires_ms: None,
            revoked: false,
        }
    }
}

/// Why a credential was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization` metadata, or not `Bearer <token>`.
    #[error("no credential: send `authorization: Bearer <token>`")]
    Missing,
    /// No principal has this token.
    #[error("unknown token")]
    Unknown,
    /// The principal was revoked.
    #[error("token revoked")]
    Revoked,
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// A principal could not be created as asked.
    #[error("invalid principal: {0}")]
    Invalid(String),
    /// No principal with that id.
    #[error("no principal {0:?}")]
    NotFound(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        Self::Store(e.to_string())
    }
}

/// What a new principal is to be.
#[derive(Debug, Clone, Default)]
pub struct NewPrincipal {
    /// Who it is.
    pub name: String,
    /// Its enterprises (`source`).
    pub enterprises: Vec<String>,
    /// Its regions (`officer`; empty = all).
    pub regions: Vec<String>,
    /// Lifetime from now, ms (`None`: no expiry).
    pub ttl_ms: Option<i64>,
    /// mTLS: the client certificate's hex SHA-256 (DER), which then authenticates it.
    pub client_cert_sha256: Option<String>,
}

/// Hex SHA-256 of a token.
pub fn token_hash(token: &str) -> String {
    crate::domain::secret::sha256_hex(token.as_bytes())
}

/// A fresh random token.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", crate::domain::secret::hex(&bytes))
}

/// The principals, persisted in the store.
#[derive(Clone)]
pub struct Principals {
    store: Store,
    all: Arc<RwLock<Vec<Principal>>>,
}

impl Principals {
    /// Loads the principals of a store.
    ///
    /// # Errors
    /// A store failure or a corrupt document.
    pub fn load(store: Store) -> Result<Self, AuthError> {
        let all: Vec<Principal> = store.meta_json(DOCUMENT)?.unwrap_or_default();
        Ok(Self {
            store,
            all: Arc::new(RwLock::new(all)),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Principal>> {
        self.all
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every principal (token hashes included; callers strip them before showing).
    pub fn list(&self) -> Vec<Principal> {
        self.read().clone()
    }

    /// Whether there is none yet (a new data directory).
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Creates a principal and returns it with its token, the only time the token exists outside the caller.
    ///
    /// # Errors
    /// A `source` without enterprises, an empty name, or a store failure.
    pub fn add(
        &self,
        role: Role,
        new: NewPrincipal,
        now_ms: i64,
    ) -> Result<(Principal, String), AuthError> {
        if new.name.trim().is_empty() {
            return Err(AuthError::Invalid("name must not be empty".into()));
        }
        if role == Role::Source && new.enterprises.is_empty() {
            return Err(AuthError::Invalid(
                "a source principal needs the enterprises it uploads for".into(),
            ));
        }
        let token = new_token();
        let mut all = self
            .all
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cert = new
            .client_cert_sha256
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !cert.is_empty() && all.iter().any(|p| p.client_cert_sha256 == cert) {
            return Err(AuthError::Invalid(
                "that client certificate already belongs to another principal".into(),
            ));
        }
        let principal = Principal {
            id: format!("p-{}", all.len() + 1),
            name: new.name,
            role,
            enterprises: new.enterprises,
            regions: new.regions,
            token_sha256: token_hash(&token),
            created_ms: now_ms,
            expires_ms: new.ttl_ms.map(|t| now_ms.saturating_add(t)),
            revoked: false,
            client_cert_sha256: cert,
        };
        let mut next = all.clone();
        next.push(principal.clone());
        self.store.put_meta_json(DOCUMENT, &next)?;
        *all = next;
        Ok((principal, token))
    }

    /// Revokes a principal: its token authenticates no more.
    ///
    /// # Errors
    /// An unknown id or a store failure.
    pub fn revoke(&self, id: &str) -> Result<Principal, AuthError> {
        let mut all = self
            .all
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = all.clone();
        let p = next
            .iter_mut()
            .find(|p| p.id == id)
            .ok_or_else(|| AuthError::NotFound(id.to_string()))?;
        p.revoked = true;
        let revoked = p.clone();
        self.store.put_meta_json(DOCUMENT, &next)?;
        *all = next;
        Ok(revoked)
    }

    /// The principal a token belongs to, if it is valid at `now_ms`.
    ///
    /// # Errors
    /// Unknown, revoked or expired.
    pub fn authenticate(&self, token: &str, now_ms: i64) -> Result<Principal, AuthError> {
        let digest = token_hash(token);
        self.valid(
            |p| crate::domain::secret::same_text(&p.token_sha256, &digest),
            now_ms,
        )
    }

    /// The principal a client certificate (hex SHA-256 of its DER) belongs to, if it is valid at `now_ms`.
    ///
    /// # Errors
    /// Unknown, revoked or expired.
    pub fn authenticate_cert(
        &self,
        cert_sha256: &str,
        now_ms: i64,
    ) -> Result<Principal, AuthError> {
        self.valid(
            |p| {
                !p.client_cert_sha256.is_empty()
                    && crate::domain::secret::same_text(&p.client_cert_sha256, cert_sha256)
            },
            now_ms,
        )
    }

    fn valid(
        &self,
        matches: impl Fn(&Principal) -> bool,
        now_ms: i64,
    ) -> Result<Principal, AuthError> {
        let all = self.read();
        let p = all.iter().find(|p| matches(p)).ok_or(AuthError::Unknown)?;
        if p.revoked {
            return Err(AuthError::Revoked);
        }
        if p.expires_ms.is_some_and(|e| now_ms >= e) {
            return Err(AuthError::Expired);
        }
        Ok(p.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principals() -> (tempfile::TempDir, Principals) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        (dir, Principals::load(store).unwrap())
    }

    #[test]
    fn a_token_authenticates_until_revoked_or_expired_and_only_its_hash_is_kept() {
        let (_dir, p) = principals();
        let (officer, token) = p
            .add(
                Role::Officer,
                NewPrincipal {
                    name: "王警官".into(),
                    ttl_ms: Some(1_000),
                    ..NewPrincipal::default()
                },
                10,
            )
            .unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == 68);
        assert_ne!(officer.token_sha256, token);
        assert_eq!(p.authenticate(&token, 500).unwrap().name, "王警官");
        assert_eq!(p.authenticate(&token, 1_010), Err(AuthError::Expired));
        assert_eq!(p.authenticate("snt_guess", 500), Err(AuthError::Unknown));
        let (_, other) = p
            .add(
                Role::Admin,
                NewPrincipal {
                    name: "root".into(),
                    ..Default::default()
                },
                10,
            )
            .unwrap();
        p.revoke(&officer.id).unwrap();
        assert_eq!(p.authenticate(&token, 500), Err(AuthError::Revoked));
        assert_eq!(p.authenticate(&other, i64::MAX).unwrap().role, Role::Admin);
    }

    #[test]
    fn principals_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let token = {
            let store = Store::open(dir.path(), 1 << 20).unwrap();
            let p = Principals::load(store).unwrap();
            p.add(
                Role::Source,
                NewPrincipal {
                    name: "E01 uploader".into(),
                    enterprises: vec!["E01".into()],
                    ..Default::default()
                },
                0,
            )
            .unwrap()
            .1
        };
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let p = Principals::load(store).unwrap();
        let who = p.authenticate(&token, 0).unwrap();
        assert!(who.may_act_for("E01") && !who.may_act_for("E02"));
    }

    #[test]
    fn a_source_needs_its_enterprises() {
        let (_dir, p) = principals();
        let err = p.add(
            Role::Source,
            NewPrincipal {
                name: "x".into(),
                ..Default::default()
            },
            0,
        );
        assert!(matches!(err, Err(AuthError::Invalid(_))));
    }

    #[test]
    fn a_pinned_client_certificate_authenticates_its_principal_only() {
        let (_dir, p) = principals();
        let cert = "AB".repeat(32);
        let (platform, _) = p
            .add(
                Role::Source,
                NewPrincipal {
                    name: "platform".into(),
                    enterprises: vec!["e1".into()],
                    client_cert_sha256: Some(cert.clone()),
                    ..NewPrincipal::default()
                },
                10,
            )
            .unwrap();
        assert_eq!(
            p.authenticate_cert(&cert.to_ascii_lowercase(), 20)
                .unwrap()
                .id,
            platform.id
        );
        assert_eq!(
            p.authenticate_cert(&"cd".repeat(32), 20),
            Err(AuthError::Unknown)
        );
        assert_eq!(p.authenticate_cert("", 20), Err(AuthError::Unknown));
        let again = NewPrincipal {
            name: "copy".into(),
            client_cert_sha256: Some(cert.clone()),
            ..NewPrincipal::default()
        };
        assert!(
            p.add(Role::Admin, again, 30).is_err(),
            "one certificate, one principal"
        );
        p.revoke(&platform.id).unwrap();
        assert_eq!(
            p.authenticate_cert(&cert.to_ascii_lowercase(), 40),
            Err(AuthError::Revoked)
        );
    }
}

//! `AdminService`: principals.

use crate::auth::audit::AuditLog;
use crate::auth::layer::principal_of;
use crate::auth::{AuthError, NewPrincipal, Principal, Principals, Role};
use crate::pb::{self, admin_service_server::AdminService};
use tonic::{Request, Response, Status};

/// The admin service.
pub struct AdminApi {
    /// The principals.
    pub principals: Principals,
    /// Who changed whom.
    pub audit: AuditLog,
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(_) => Status::invalid_argument(e.to_string()),
            AuthError::NotFound(_) => Status::not_found(e.to_string()),
            AuthError::Store(_) => Status::internal(e.to_string()),
            AuthError::Missing | AuthError::Unknown | AuthError::Revoked | AuthError::Expired => {
                Status::unauthenticated(e.to_string())
            }
        }
    }
}

/// Wire role to domain role.
pub fn role_from_pb(n: i32) -> Option<Role> {
    match pb::Role::try_from(n).ok()? {
        pb::Role::Source => Some(Role::Source),
        pb::Role::Officer => Some(Role::Officer),
        pb::Role::Analyst => Some(Role::Analyst),
        pb::Role::Admin => Some(Role::Admin),
        pb::Role::Unspecified => None,
    }
}

/// Domain role to wire role.
pub fn role_to_pb(r: Role) -> pb::Role {
    match r {
        Role::Source => pb::Role::Source,
        Role::Officer => pb::Role::Officer,
        Role::Analyst => pb::Role::Analyst,
        Role::Admin => pb::Role::Admin,
    }
}

/// A principal as the audit records it: everything but the token hash.
fn principal_to_pb_json(p: &Principal) -> serde_json::Value {
    serde_json::json!({
        "id": p.id, "name": p.name, "role": p.role.as_str(), "enterprises": p.enterprises,
        "regions": p.regions, "expires_ms": p.expires_ms, "revoked": p.revoked,
        "client_cert_sha256": p.client_cert_sha256,
    })
}

/// Hex SHA-256 of the DER of the first certificate in `pem`: what an mTLS connection must present.
fn cert_fingerprint(pem: &str) -> Result<String, Status> {
    use tokio_rustls::rustls::pki_types::{pem::PemObject as _, CertificateDer};
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
        Status::invalid_argument(format!("client_cert_pem: not a PEM certificate ({e})"))
    })?;
    Ok(crate::domain::secret::sha256_hex(der.as_ref()))
}

/// A principal as shown: never its token hash.
pub fn principal_to_pb(p: Principal) -> pb::Principal {
    pb::Principal {
        id: p.id,
        name: p.name,
        role: role_to_pb(p.role) as i32,
        enterprises: p.enterprises,
        regions: p.regions,
        created_ms: p.created_ms,
        expires_ms: p.expires_ms.unwrap_or(0),
        revoked: p.revoked,
        client_cert_sha256: p.client_cert_sha256,
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_principal(
        &self,
        req: Request<pb::CreatePrincipalRequest>,
    ) -> Result<Response<pb::CreatedPrincipal>, Status> {
        let who = principal_of(&req)?;
        let r = req.into_inner();
        let role = role_from_pb(r.role).ok_or_else(|| {
            Status::invalid_argument(format!("role: unknown or unspecified {}", r.role))
        })?;
        let client_cert_sha256 = if r.client_cert_pem.trim().is_empty() {
            None
        } else {
            Some(cert_fingerprint(&r.client_cert_pem)?)
        };
        let new = NewPrincipal {
            name: r.name,
            enterprises: r.enterprises,
            regions: r.regions,
            ttl_ms: (r.ttl_ms > 0).then_some(r.ttl_ms),
            client_cert_sha256,
        };
        let principals = self.principals.clone();
        let (p, token) = tokio::task::spawn_blocking(move || {
            principals.add(role, new, crate::ingest::system_now_ms())
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        tracing::info!(id = %p.id, name = %p.name, role = p.role.as_str(), "Principal created.");
        self.audit.changed(
            &who,
            "CreatePrincipal",
            &p.id,
            None::<&()>,
            &principal_to_pb_json(&p),
        )?;
        Ok(Response::new(pb::CreatedPrincipal {
            principal: Some(principal_to_pb(p)),
            token,
        }))
    }

    async fn list_principals(
        &self,
        _req: Request<pb::ListPrincipalsRequest>,
    ) -> Result<Response<pb::ListPrincipalsResponse>, Status> {
        Ok(Response::new(pb::ListPrincipalsResponse {
            principals: self
                .principals
                .list()
                .into_iter()
                .map(principal_to_pb)
                .collect(),
        }))
    }

    async fn get_audit_log(
        &self,
        req: Request<pb::GetAuditLogRequest>,
    ) -> Result<Response<pb::AuditLogPage>, Status> {
        let q = req.into_inner();
        let limit = match q.limit {
            0 => 100,
            n => n.min(1000) as usize,
        };
        let audit = self.audit.clone();
        let entries = tokio::task::spawn_blocking(move || audit.read(q.after_seq, limit))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(pb::AuditLogPage {
            entries: entries
                .into_iter()
                .map(|(seq, e)| pb::AuditEntry {
                    seq,
                    at_ms: e.at_ms,
                    principal_id: e.principal_id,
                    principal_name: e.principal_name,
                    action: e.action,
                    target: e.target,
                    outcome: e.outcome,
                    before_json: e.before.to_string(),
                    after_json: e.after.to_string(),
                })
                .collect(),
        }))
    }

    async fn revoke_principal(
        &self,
        req: Request<pb::RevokePrincipalRequest>,
    ) -> Result<Response<pb::Principal>, Status> {
        let who = principal_of(&req)?;
        let id = req.into_inner().id;
        let principals = self.principals.clone();
        let p = tokio::task::spawn_blocking(move || principals.revoke(&id))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        tracing::info!(id = %p.id, name = %p.name, "Principal revoked.");
        self.audit.changed(
            &who,
            "RevokePrincipal",
            &p.id,
            None::<&()>,
            &principal_to_pb_json(&p),
        )?;
        Ok(Response::new(principal_to_pb(p)))
    }
}

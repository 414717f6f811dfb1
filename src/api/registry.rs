//! `RegistryService`.

use super::convert::*;
use crate::auth::audit::AuditLog;
use crate::auth::layer::principal_of;
use crate::pb::{self, registry_service_server::RegistryService};
use crate::registry::RegistryRef;
use tonic::{Request, Response, Status};

/// The registry service.
pub struct RegistryApi {
    /// The registry.
    pub registry: RegistryRef,
    /// Who changed what.
    pub audit: AuditLog,
}

// Registry writes flush to disk: run them off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(crate::error::task_failed)?
}

/// Passwords are credentials: the audit records that one is set, not what it is.
fn audited_password(password: &str) -> String {
    if password.is_empty() {
        String::new()
    } else {
        "(set)".into()
    }
}

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    async fn upsert_enterprise(
        &self,
        req: Request<pb::Enterprise>,
    ) -> Result<Response<pb::Enterprise>, Status> {
        let who = principal_of(&req)?;
        let r = self.registry.clone();
        let e = enterprise_from_pb(req.into_inner());
        let before = self.registry.enterprise(&e.id);
        let saved = blocking(move || Ok(r.upsert_enterprise(e)?)).await?;
        self.audit
            .changed(&who, "UpsertEnterprise", &saved.id, before.as_ref(), &saved)?;
        Ok(Response::new(enterprise_to_pb(saved)))
    }

    async fn upsert_outlet(
        &self,
        req: Request<pb::Outlet>,
    ) -> Result<Response<pb::Outlet>, Status> {
        let r = self.registry.clone();
        let who = principal_of(&req)?;
        let o = outlet_from_pb(req.into_inner())?;
        let redact = |o: &crate::domain::Outlet| crate::domain::Outlet {
            hj212_password: audited_password(&o.hj212_password),
            ..o.clone()
        };
        let before = self.registry.outlet(&o.id).map(|o| redact(&o));
        let saved = blocking(move || Ok(r.upsert_outlet(o)?)).await?;
        self.audit.changed(
            &who,
            "UpsertOutlet",
            &saved.id,
            before.as_ref(),
            &redact(&saved),
        )?;
        Ok(Response::new(outlet_to_pb(saved)))
    }

    async fn upsert_meter(&self, req: Request<pb::Meter>) -> Result<Response<pb::Meter>, Status> {
        let r = self.registry.clone();
        let who = principal_of(&req)?;
        let m = meter_from_pb(req.into_inner())?;
        let redact = |m: &crate::domain::Meter| crate::domain::Meter {
            hj212_password: audited_password(&m.hj212_password),
            ..m.clone()
        };
        let before = self.registry.meter(&m.id).map(|m| redact(&m));
        let saved = blocking(move || Ok(r.upsert_meter(m)?)).await?;
        self.audit.changed(
            &who,
            "UpsertMeter",
            &saved.id,
            before.as_ref(),
            &redact(&saved),
        )?;
        Ok(Response::new(meter_to_pb(saved)))
    }

    async fn upsert_restriction(
        &self,
        req: Request<pb::RestrictionOrder>,
    ) -> Result<Response<pb::RestrictionOrder>, Status> {
        let r = self.registry.clone();
        let who = principal_of(&req)?;
        let o = restriction_from_pb(req.into_inner());
        let saved = blocking(move || Ok(r.upsert_restriction(o)?)).await?;
        self.audit
            .changed(&who, "UpsertRestriction", &saved.id, None::<&()>, &saved)?;
        Ok(Response::new(restriction_to_pb(saved)))
    }

    async fn set_hj212_password(
        &self,
        req: Request<pb::SetHj212PasswordRequest>,
    ) -> Result<Response<pb::SetHj212PasswordResponse>, Status> {
        let who = principal_of(&req)?;
        let q = req.into_inner();
        let r = self.registry.clone();
        let source = q.source_id.clone();
        let cleared = q.password.is_empty();
        blocking(move || Ok(r.set_hj212_password(&q.source_id, &q.password)?)).await?;
        let after = if cleared { "(cleared)" } else { "(set)" };
        self.audit
            .changed(&who, "SetHj212Password", &source, None::<&()>, &after)?;
        Ok(Response::new(pb::SetHj212PasswordResponse {}))
    }

    async fn record_operating_change(
        &self,
        req: Request<pb::OperatingChange>,
    ) -> Result<Response<pb::OperatingChange>, Status> {
        let principal = principal_of(&req)?;
        let r = self.registry.clone();
        let mut c = operating_change_from_pb(req.into_inner())?;
        if !principal.may_act_for(&c.enterprise_id) {
            return Err(Status::permission_denied(format!(
                "enterprise {} is outside {}'s scope",
                crate::domain::quote::quote(&c.enterprise_id),
                principal.name
            )));
        }
        if !principal.is_anonymous() {
            c.declared_by = principal.label();
        }
        let saved =
            blocking(move || Ok(r.record_operating_change(c, crate::ingest::system_now_ms())?))
                .await?;
        self.audit.changed(
            &principal,
            "RecordOperatingChange",
            &saved.id,
            None::<&()>,
            &saved,
        )?;
        Ok(Response::new(operating_change_to_pb(saved)))
    }

    async fn list_operating_changes(
        &self,
        req: Request<pb::ListOperatingChangesRequest>,
    ) -> Result<Response<pb::ListOperatingChangesResponse>, Status> {
        let changes = self
            .registry
            .operating_changes(&req.into_inner().enterprise_id)
            .into_iter()
            .map(operating_change_to_pb)
            .collect();
        Ok(Response::new(pb::ListOperatingChangesResponse { changes }))
    }

    async fn list_enterprises(
        &self,
        req: Request<pb::ListEnterprisesRequest>,
    ) -> Result<Response<pb::ListEnterprisesResponse>, Status> {
        let q = req.into_inner();
        let enterprises = self
            .registry
            .enterprises(&q.region, &q.industry)
            .into_iter()
            .map(enterprise_to_pb)
            .collect();
        Ok(Response::new(pb::ListEnterprisesResponse { enterprises }))
    }

    async fn get_topology(
        &self,
        req: Request<pb::GetTopologyRequest>,
    ) -> Result<Response<pb::Topology>, Status> {
        let id = req.into_inner().enterprise_id;
        let t = self
            .registry
            .enterprise_topology(&id)
            .ok_or_else(|| Status::not_found(format!("enterprise {id:?} is not registered")))?;
        // HJ 212 passwords are credentials: written by admin, never read back.
        Ok(Response::new(pb::Topology {
            enterprise: Some(enterprise_to_pb(t.enterprise)),
            outlets: t
                .outlets
                .into_iter()
                .map(|o| pb::Outlet {
                    hj212_password: String::new(),
                    ..outlet_to_pb(o)
                })
                .collect(),
            meters: t
                .meters
                .into_iter()
                .map(|m| pb::Meter {
                    hj212_password: String::new(),
                    ..meter_to_pb(m)
                })
                .collect(),
            restrictions: t.restrictions.into_iter().map(restriction_to_pb).collect(),
        }))
    }
}

//! `sentinel principals add|list|revoke`: who may call the service (admin token needed).

use super::feed;
use super::table::{beijing, render};
use crate::api::{role_from_pb, role_to_pb};
use crate::auth::Role;
use crate::pb;
use crate::pb::admin_service_client::AdminServiceClient;

/// `sentinel principals` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum PrincipalsCommand {
    /// Create a principal and print its token (shown this once).
    Add {
        /// Who it is (named in the audit trail).
        #[arg(long)]
        name: String,
        /// Its role.
        #[arg(long, value_enum)]
        role: Role,
        /// `source`: enterprises it uploads for (comma-separated, required).
        #[arg(long, value_delimiter = ',')]
        enterprises: Vec<String>,
        /// `officer`: regions it may see (comma-separated; none = all).
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
        /// Lifetime in days (default: no expiry).
        #[arg(long)]
        days: Option<u32>,
        /// mTLS: its client certificate (PEM file); presenting it on a TLS connection then authenticates it
        /// without a token (the server pins the certificate's SHA-256).
        #[arg(long)]
        client_cert: Option<std::path::PathBuf>,
    },
    /// List principals (never their tokens).
    List,
    /// Revoke a principal: its token stops working at once.
    Revoke {
        /// Principal id (`p-N`, from `list`).
        id: String,
    },
}

/// Creates a principal through `AdminService` (with an admin connection) and returns it with its token.
///
/// # Errors
/// A failed or refused call.
pub async fn create(
    admin: &feed::Conn,
    role: Role,
    name: &str,
    enterprises: Vec<String>,
    regions: Vec<String>,
) -> anyhow::Result<(pb::Principal, String)> {
    let created = AdminServiceClient::new(admin.clone())
        .create_principal(pb::CreatePrincipalRequest {
            name: name.to_string(),
            role: role_to_pb(role) as i32,
            enterprises,
            regions,
            ttl_ms: 0,
            client_cert_pem: String::new(),
        })
        .await?
        .into_inner();
    Ok((created.principal.unwrap_or_default(), created.token))
}

impl PrincipalsCommand {
    /// Runs the subcommand against `server`.
    ///
    /// # Errors
    /// A failed or refused call.
    pub async fn run(self, server: &str) -> anyhow::Result<()> {
        let mut client = AdminServiceClient::new(feed::connect(server).await?);
        match self {
            Self::Add {
                name,
                role,
                enterprises,
                regions,
                days,
                client_cert,
            } => {
                let client_cert_pem = match client_cert {
                    Some(path) => std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?,
                    None => String::new(),
                };
                let created = client
                    .create_principal(pb::CreatePrincipalRequest {
                        name,
                        role: role_to_pb(role) as i32,
                        enterprises,
                        regions,
                        ttl_ms: days.map_or(0, |d| i64::from(d) * 86_400_000),
                        client_cert_pem,
                    })
                    .await?
                    .into_inner();
                let p = created.principal.unwrap_or_default();
                eprintln!(
                    "created {} ({}, {}); its token, shown this once:",
                    p.id,
                    p.name,
                    role.as_str()
                );
                println!("{}", created.token);
            }
            Self::List => {
                let list = client
                    .list_principals(pb::ListPrincipalsRequest {})
                    .await?
                    .into_inner();
                let rows: Vec<Vec<String>> = list
                    .principals
                    .into_iter()
                    .map(|p| {
                        vec![
                            p.id,
                            p.name,
                            role_from_pb(p.role).map_or("?", Role::as_str).to_string(),
                            if p.enterprises.is_empty() {
                                "–".into()
                            } else {
                                p.enterprises.join(",")
                            },
                            if p.regions.is_empty() {
                                "all".into()
                            } else {
                                p.regions.join(",")
                            },
                            if p.expires_ms == 0 {
                                "never".into()
                            } else {
                                beijing(p.expires_ms)
                            },
                            if p.revoked { "revoked" } else { "active" }.into(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    render(
                        &[
                            "id",
                            "name",
                            "role",
                            "enterprises",
                            "regions",
                            "expires (UTC+8)",
                            "state"
                        ],
                        &rows
                    )
                );
            }
            Self::Revoke { id } => {
                let p = client
                    .revoke_principal(pb::RevokePrincipalRequest { id })
                    .await?
                    .into_inner();
                println!("revoked {} ({})", p.id, p.name);
            }
        }
        Ok(())
    }
}

/// `sentinel audit` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Entries after this sequence number.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// At most this many (the server caps at 1000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

impl AuditArgs {
    /// Prints the change audit of `server` (admin).
    ///
    /// # Errors
    /// A failed or refused call.
    pub async fn run(self, server: &str) -> anyhow::Result<()> {
        let page = AdminServiceClient::new(feed::connect(server).await?)
            .get_audit_log(pb::GetAuditLogRequest {
                after_seq: self.after,
                limit: self.limit,
            })
            .await?
            .into_inner();
        if self.json {
            for e in page.entries {
                println!(
                    "{}",
                    serde_json::json!({
                        "seq": e.seq, "at_ms": e.at_ms, "principal_id": e.principal_id,
                        "principal_name": e.principal_name, "action": e.action, "target": e.target,
                        "outcome": e.outcome,
                        "before": serde_json::from_str::<serde_json::Value>(&e.before_json).unwrap_or_default(),
                        "after": serde_json::from_str::<serde_json::Value>(&e.after_json).unwrap_or_default(),
                    })
                );
            }
            return Ok(());
        }
        let rows: Vec<Vec<String>> = page
            .entries
            .into_iter()
            .map(|e| {
                vec![
                    e.seq.to_string(),
                    beijing(e.at_ms),
                    format!("{} {}", e.principal_id, e.principal_name),
                    e.action,
                    e.target,
                    e.outcome,
                ]
            })
            .collect();
        print!(
            "{}",
            render(
                &[
                    "seq",
                    "at (UTC+8)",
                    "principal",
                    "action",
                    "target",
                    "outcome"
                ],
                &rows
            )
        );
        Ok(())
    }
}

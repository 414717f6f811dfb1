//! The one table of who may call what. Every RPC of the contract has a row; a path not in it is refused (a new RPC
//! is closed until someone decides who may call it). Health checks and reflection need no credential.

use super::Role::{self, Admin, Analyst, Officer, Source};

/// Services that answer without a credential (load balancers' health checks, grpcurl's reflection).
pub const OPEN_SERVICES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Every RPC and the roles allowed to call it. Scope within a role (a source's enterprises, an officer's regions)
/// is applied by the handler.
pub const RPC_ROLES: &[(&str, &[Role])] = &[
    // Ingest: sources write and read back their own records; `Sync` answers anyone who feeds or studies data.
    ("/sentinel.v1.IngestService/Push", &[Source, Admin]),
    ("/sentinel.v1.IngestService/Write", &[Source, Admin]),
    ("/sentinel.v1.IngestService/Sync", &[Source, Analyst, Admin]),
    (
        "/sentinel.v1.IngestService/ReadRecords",
        &[Source, Officer, Analyst, Admin],
    ),
    // Enforcement: officers; analysts read anomalies as labels but do not review.
    (
        "/sentinel.v1.EnforcementService/ListAnomalies",
        &[Officer, Analyst, Admin],
    ),
    (
        "/sentinel.v1.EnforcementService/GetAnomaly",
        &[Officer, Analyst, Admin],
    ),
    (
        "/sentinel.v1.EnforcementService/WatchAnomalies",
        &[Officer, Admin],
    ),
    (
        "/sentinel.v1.EnforcementService/ReviewAnomaly",
        &[Officer, Admin],
    ),
    (
        "/sentinel.v1.EnforcementService/ListIncidents",
        &[Officer, Admin],
    ),
    (
        "/sentinel.v1.EnforcementService/ListHotspots",
        &[Officer, Admin],
    ),
    (
        "/sentinel.v1.EnforcementService/GetReviewHistory",
        &[Officer, Admin],
    ),
    (
        "/sentinel.v1.EnforcementService/GetDataAvailability",
        &[Officer, Analyst, Admin],
    ),
    // The copy of record: anyone who deals with us may check the log's head; evidence goes to officers.
    (
        "/sentinel.v1.EnforcementService/GetLogHead",
        &[Source, Officer, Analyst, Admin],
    ),
    (
        "/sentinel.v1.EnforcementService/ExportEvidence",
        &[Officer, Admin],
    ),
    // Registry: admin writes it; sources declare operating changes of their own enterprises.
    ("/sentinel.v1.RegistryService/UpsertEnterprise", &[Admin]),
    ("/sentinel.v1.RegistryService/UpsertOutlet", &[Admin]),
    ("/sentinel.v1.RegistryService/UpsertMeter", &[Admin]),
    ("/sentinel.v1.RegistryService/UpsertRestriction", &[Admin]),
    (
        "/sentinel.v1.RegistryService/ListEnterprises",
        &[Officer, Analyst, Admin],
    ),
    (
        "/sentinel.v1.RegistryService/GetTopology",
        &[Officer, Analyst, Admin],
    ),
    ("/sentinel.v1.RegistryService/SetHj212Password", &[Admin]),
    (
        "/sentinel.v1.RegistryService/RecordOperatingChange",
        &[Source, Officer, Admin],
    ),
    (
        "/sentinel.v1.RegistryService/ListOperatingChanges",
        &[Source, Officer, Analyst, Admin],
    ),
    // Models: analysts train, evaluate and export; activation changes what detection judges, so it takes an admin
    // or two principals.
    ("/sentinel.v1.ModelService/Train", &[Analyst, Admin]),
    (
        "/sentinel.v1.ModelService/GetTrainingJob",
        &[Analyst, Admin],
    ),
    ("/sentinel.v1.ModelService/ListModels", &[Analyst, Admin]),
    ("/sentinel.v1.ModelService/GetModel", &[Analyst, Admin]),
    // Four eyes: an analyst's activation waits for a second principal (the handler keeps the requests).
    ("/sentinel.v1.ModelService/ActivateModel", &[Analyst, Admin]),
    ("/sentinel.v1.ModelService/EvaluateModel", &[Analyst, Admin]),
    ("/sentinel.v1.ModelService/ExportDataset", &[Analyst, Admin]),
    // Principals.
    ("/sentinel.v1.AdminService/CreatePrincipal", &[Admin]),
    ("/sentinel.v1.AdminService/ListPrincipals", &[Admin]),
    ("/sentinel.v1.AdminService/RevokePrincipal", &[Admin]),
    ("/sentinel.v1.AdminService/GetAuditLog", &[Admin]),
];

/// What a path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credential.
    Open,
    /// One of these roles.
    Roles(&'static [Role]),
    /// Not in the table: refused.
    Unknown,
}

/// The access rule of a request path.
pub fn access(path: &str) -> Access {
    if OPEN_SERVICES.iter().any(|s| path.starts_with(s)) {
        return Access::Open;
    }
    RPC_ROLES
        .iter()
        .find(|(p, _)| *p == path)
        .map_or(Access::Unknown, |(_, roles)| Access::Roles(roles))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_the_contract_has_a_row() {
        let descriptors = contract_rpc_paths();
        for path in &descriptors {
            assert!(
                matches!(access(path), Access::Roles(_)),
                "{path} has no row in RPC_ROLES"
            );
        }
        assert_eq!(descriptors.len(), RPC_ROLES.len(), "{descriptors:?}");
        assert_eq!(access("/sentinel.v1.IngestService/Nope"), Access::Unknown);
        assert_eq!(access("/grpc.health.v1.Health/Check"), Access::Open);
    }

    /// The RPC paths of the compiled contract, from the proto sources (`rpc Name(` lines under `service X {`).
    fn contract_rpc_paths() -> Vec<String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto/sentinel/v1");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let mut service = String::new();
            for line in text.lines().map(str::trim) {
                if let Some(rest) = line.strip_prefix("service ") {
                    service = rest.trim_end_matches(" {").trim().to_string();
                } else if let Some(rest) = line.strip_prefix("rpc ") {
                    let name = rest.split('(').next().unwrap().trim();
                    out.push(format!("/sentinel.v1.{service}/{name}"));
                }
            }
        }
        out.sort();
        out
    }
}

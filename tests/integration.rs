//! End-to-end tests: the real server on an ephemeral port, the real sled store in a temp dir, real tonic clients.
//! One test binary (modules below) keeps link time down.

mod common;

// The dependency order of src/: no module imports a higher layer.
mod architecture;

// Ingest over gRPC: acks, validation, duplicates, ordering, read-back.
mod grpc_ingest;
// Detection to enforcement list: anomalies, filters, pagination, review, watch.
mod enforcement_api;
// Restart and kill -9 of the built binary: nothing acknowledged is lost, no anomaly lost or doubled.
mod durability;
// Health and reflection for generic clients.
mod service_discovery;
// The HJ 212 gateway over real TCP.
mod hj212_tcp;
// Models on real plant data: false alarms on a real turbine, clustering of a real steel plant's power.
mod real_data;
// The registry's declared operating changes.
mod registry_api;
// The retraining loop: train, evaluate, activate, rollback, labelled export.
mod models_api;
// Who may do what: every RPC's roles, a source's scope, the reviewer of record, tokens.
mod auth;
// The copy of record: receipts in a signed Merkle log, evidence bundles verified offline, tampering caught.
mod evidence;
// Bounded under abuse: memory budget under a flood, fairness to a polite client, stop with streams open.
mod bounds;
// Real US EPA hourly CEMS units through the server: injected violations found, real control-device steps bounded.
mod real_epa;

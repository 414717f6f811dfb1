//! Thin gRPC adapters: unpack, convert, call the domain service, map the result. No detection or storage logic here.

mod admin;
mod convert;
mod enforcement;
mod evidence;
mod ingest;
mod models;
mod registry;
mod summary;

/// Resolves once the server is stopping (at once if it already is).
async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    // An error means the sender is gone: the server is going away too.
    let _ = stopping.wait_for(|s| *s).await;
}

/// What an open stream is told when the server stops.
fn shutting_down() -> tonic::Status {
    tonic::Status::unavailable(
        "the server is shutting down: reconnect and resend what was not acknowledged",
    )
}

pub use admin::{principal_to_pb, role_from_pb, role_to_pb, AdminApi};
pub use convert::{
    anomaly_to_pb, enterprise_to_pb, meter_to_pb, operating_change_to_pb, outlet_to_pb,
    points_to_records, restriction_to_pb,
};
pub use enforcement::EnforcementApi;
pub use ingest::IngestApi;
pub use models::ModelApi;
pub use registry::RegistryApi;
pub use summary::{request_language, summary_of, Names, Summaries, LANGUAGE_KEY};

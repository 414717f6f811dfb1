//! Thin gRPC adapters: unpack, convert, call the domain service, map the result. No detection or storage logic here.

mod admin;
mod convert;
mod enforcement;
mod evidence;
mod ingest;
mod models;
mod registry;
mod summary;

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

//! The generated gRPC contract (`proto/sentinel/v1`), entering the crate through this one door. Domain code never
//! takes these types; `api/` converts at the edge.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("sentinel.v1");

/// Encoded descriptor set of the contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("sentinel_descriptor");

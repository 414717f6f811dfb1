//! Client-side tools behind the CLI: feeding a server with simulated enterprises, the demo, scoring a server's
//! anomalies against ground truth, and the ingest benchmark. They talk to the service only through its gRPC API,
//! exactly as a monitoring platform would.

pub mod anomalies;
pub mod bench;
pub mod demo;
pub mod feed;
pub mod hj212;
pub mod models;
pub mod table;

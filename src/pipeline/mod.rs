//! The detection pipeline: accepted points flow from the ingest writer into the detection engine, findings become
//! anomalies in the enforcement book, and checkpoints make all of it survive a crash.

pub mod engine;
pub mod task;

pub use engine::{Engine, EngineConfig, OutletFinding};

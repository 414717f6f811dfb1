//! cems-sentinel: off-site enforcement from continuous emission monitoring (CEMS) and electricity sub-meter data.
//!
//! The flow is visible in the modules and dependencies point downward:
//! `api` (gRPC) → `ingest` (validate, group-commit) → `store` (sled) → `pipeline` (`align` → `detect` → `episode`)
//! → `enforce` (the ranked, reviewable anomaly list). `models` holds the learned outlet behaviour `detect` judges
//! against, and the retraining loop around it. `domain`, `align`, `detect`, `episode` and the fitting parts of
//! `models` are pure: no I/O, no async, no wall clock.

#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod detect;
pub mod domain;
pub mod enforce;
pub mod episode;
mod error;
pub mod eval;
pub mod hj212;
pub mod ingest;
pub mod ledger;
pub mod models;
pub mod pb;
pub mod pipeline;
pub mod registry;
pub mod server;
pub mod signal;
pub mod sim;
pub mod store;
pub mod tools;
pub mod training;

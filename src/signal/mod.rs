//! The derived minute: an outlet's sources aligned into one row per minute in data time, its CEMS readings
//! converted the legal way, and the process and equipment state worked out from its power meters. Computed once
//! and read by both detection and the models, so they agree on what "running" and "converted" mean.

pub mod align;
pub mod availability;
pub mod cems;
pub mod equipment;
pub mod process;

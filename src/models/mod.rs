//! Learned models of each outlet's normal behaviour, and the machinery around them.
//!
//! - [`features`]: the feature space (fractions of normal, so outlet models and industry priors read the same row).
//! - [`regression`], [`joint`], [`states`]: the model families (OLS per target, PCA of the joint streams, k-means
//!   levels of meters), fitted with `linfa`
//!   (`linfa-linear`, `linfa-linalg`, `linfa-clustering`).
//! - [`calibrate`]: thresholds from the empirical null, corrected for multiplicity.
//! - [`train`], [`dataset`]: pure fitting from aligned history; [`artifact`]: the versioned, stored, exportable form.
//! - [`drift`]: whether recent data still fits a model (the scheduled retraining's question).
//! - [`active`]: what detection uses now; [`priors`]: the shipped per-industry defaults.
//!
//! Pure: no store, no clock. Versions in the store, activation, jobs and evaluation are `training`'s.

pub mod active;
pub mod artifact;
pub mod calibrate;
pub mod dataset;
pub mod drift;
pub mod features;
pub mod joint;
pub mod priors;
pub mod regression;
pub mod states;
pub mod train;

pub use active::ActiveModels;
pub use artifact::{ModelArtifact, ModelScope};

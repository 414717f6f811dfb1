//! The enforcement list: every anomaly, ranked by score then time, filterable the way officers work (by enterprise,
//! region, kind, period, score, review status), watchable as it changes, and reviewable through the closed loop of
//! the city plan with an audit trail.

pub mod availability;
mod book;
pub mod cases;

pub use book::{AnomalyBook, BookError, Page, ReviewRequest};

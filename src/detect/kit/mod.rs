//! The detectors' shared kit, so a detector's file holds only its idea: its state, what it observes, its signature
//! and its look-alikes.
//!
//! - [`episode`]: the one episode machinery (grace, bridging, updates, closing) over minutes, hours or days.
//! - [`period`]: the one hour/day boundary.
//! - [`figures`]: a signature's typed figures, stored as evidence (summaries are written from them at the API edge).
//! - [`score`]: the one score function, so kinds rank alike.
//! - [`null`]: the outlet's own empirical null (what its honest history makes likely), [`stats`]: the statistics.
//! - [`window`], [`persist`]: bounded history and checkpointed state.

pub mod episode;
pub mod figures;
pub mod null;
pub mod period;
pub mod persist;
pub mod score;
pub mod stats;
pub mod window;

pub use episode::{Due, Run, Runs, Span, Timing};
pub use figures::Figures;
pub use score::{duration_score, saturating};
pub use window::push_bounded;

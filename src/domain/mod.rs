//! The objects of off-site enforcement, free of wire formats and storage: what an outlet, a meter, a record and an
//! anomaly *are*. Everything above (`api`, `store`) converts to and from these; everything below (`align`, `detect`)
//! reads only these.

mod anomaly;
pub mod codes;
mod record;
mod registry;
pub mod units;

pub use anomaly::{Anomaly, AnomalyKind, ReviewEntry, ReviewStatus, ReviewTransitionError};
pub use record::{Interval, Point, ValueFlag, MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE};
pub use registry::{Enterprise, Meter, MeterRole, Outlet, OutletKind, RestrictionOrder};

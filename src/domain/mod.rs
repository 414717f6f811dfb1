//! The objects of off-site enforcement, free of wire formats and storage: what an outlet, a meter, a record and an
//! anomaly *are*. Everything above (`api`, `store`) converts to and from these; everything below (`signal`, `detect`)
//! reads only these.

mod anomaly;
mod calendar;
pub mod codes;
mod evidence;
mod incoming;
mod language;
pub mod quote;
mod record;
mod registry;
pub mod secret;
mod topology;
pub mod units;

pub use anomaly::{
    Anomaly, AnomalyFilter, AnomalyKind, ReviewEntry, ReviewStatus, ReviewTransitionError,
};
pub use calendar::{beijing_date, days_from_civil, Month, BEIJING_OFFSET_MS};
pub use evidence::{Evidence, Figure};
pub use incoming::{IncomingMeasurement, IncomingRecord};
pub use language::Language;
pub use record::{Clock, Interval, Point, ValueFlag, MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE};
pub use registry::{
    Enterprise, Meter, MeterRole, OperatingChange, OperatingChangeKind, Outlet, OutletKind,
    RestrictionOrder,
};
pub use topology::{routing, EnterpriseTopology, OutletTopology, SourceRole};

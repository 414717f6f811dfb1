//! Records as a client sent them, before validation: what a gRPC `Push` and an HJ 212 data packet both become, so
//! every path into the store goes through the same checks (flag and interval are still raw contract numbers here).

/// A measurement as a client sent it, before validation (flag and interval still raw contract numbers).
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingMeasurement {
    /// Code.
    pub code: String,
    /// Value.
    pub value: f64,
    /// Contract `DataFlag` number.
    pub flag: i32,
    /// Reported converted value.
    pub converted: Option<f64>,
}

/// A record as a client sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingRecord {
    /// Source id.
    pub source_id: String,
    /// Sample time, Unix ms.
    pub time_ms: i64,
    /// Contract `Interval` number.
    pub interval: i32,
    /// Measurements.
    pub values: Vec<IncomingMeasurement>,
}

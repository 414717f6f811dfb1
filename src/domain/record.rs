//! A measured value as it arrives from the field: one (source, code, time) point with its HJ 212 data flag.

use serde::{Deserialize, Serialize};

/// Milliseconds in a minute: the alignment step of detection.
pub const MS_PER_MINUTE: i64 = 60_000;
/// Milliseconds in an hour: the unit of HJ 75 validity and of limits.
pub const MS_PER_HOUR: i64 = 3_600_000;
/// Milliseconds per day.
pub const MS_PER_DAY: i64 = 86_400_000;

/// HJ 212-2017 per-value data flag. Only some flags make a value valid for exceedance decisions, which is why a
/// false flag is itself a fraud route: the flag is kept with every point and never normalised away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ValueFlag {
    /// N: normal.
    #[default]
    Normal,
    /// F: the instrument or process reported stopped.
    Stopped,
    /// M: maintenance.
    Maintenance,
    /// S: value set manually.
    Manual,
    /// D: instrument fault.
    Fault,
    /// C: calibration.
    Calibration,
    /// T: over the instrument's range.
    OverRange,
    /// B: communication error.
    CommError,
}

impl ValueFlag {
    /// Whether a value with this flag may count toward an exceedance decision (HJ 75-2017: F/M/D/C/B data are not
    /// valid; S and T values are kept, T because an over-range reading still proves a high concentration).
    pub fn is_valid_for_exceedance(self) -> bool {
        matches!(self, Self::Normal | Self::Manual | Self::OverRange)
    }

    /// The HJ 212 letter, for evidence and exports.
    pub fn letter(self) -> char {
        match self {
            Self::Normal => 'N',
            Self::Stopped => 'F',
            Self::Maintenance => 'M',
            Self::Manual => 'S',
            Self::Fault => 'D',
            Self::Calibration => 'C',
            Self::OverRange => 'T',
            Self::CommError => 'B',
        }
    }

    /// Compact stable code for storage (a stored byte is never reassigned).
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Normal => 0,
            Self::Stopped => 1,
            Self::Maintenance => 2,
            Self::Manual => 3,
            Self::Fault => 4,
            Self::Calibration => 5,
            Self::OverRange => 6,
            Self::CommError => 7,
        }
    }

    /// Inverse of [`ValueFlag::to_u8`]; unknown bytes read as `Fault` so that a corrupt flag never makes data valid.
    pub fn from_u8(b: u8) -> Self {
        match b {
            0 => Self::Normal,
            1 => Self::Stopped,
            2 => Self::Maintenance,
            3 => Self::Manual,
            5 => Self::Calibration,
            6 => Self::OverRange,
            7 => Self::CommError,
            _ => Self::Fault,
        }
    }
}

/// The reporting interval of a record (HJ 212 CN 2011 / 2051 / 2061).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Interval {
    /// Real-time samples (CN 2011), typically every 30 s to 1 min.
    Realtime,
    /// Minute averages (CN 2051); the default when a client does not say.
    #[default]
    Minute,
    /// Hour averages (CN 2061).
    Hour,
    /// Day values (CN 2031 averages, CN 2041 run times).
    Day,
}

impl Interval {
    /// Stable storage byte.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Realtime => 1,
            Self::Minute => 2,
            Self::Hour => 3,
            Self::Day => 4,
        }
    }

    /// Inverse of [`Interval::to_u8`]; unknown bytes read as `Minute`.
    pub fn from_u8(b: u8) -> Self {
        match b {
            1 => Self::Realtime,
            3 => Self::Hour,
            4 => Self::Day,
            _ => Self::Minute,
        }
    }
}

/// One accepted measurement: the unit of storage, de-duplication and detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Outlet id (CEMS) or meter id the value was reported under.
    pub source_id: String,
    /// HJ 212 pollutant/parameter code or power code (`power_kw`, ...).
    pub code: String,
    /// Sample time, Unix ms UTC.
    pub time_ms: i64,
    /// Reporting interval of the record the value came in.
    pub interval: Interval,
    /// The measured (raw) value.
    pub value: f64,
    /// The data flag reported with it.
    pub flag: ValueFlag,
    /// O2-converted value as reported by the data acquisition unit, if any.
    pub converted: Option<f64>,
}

impl Point {
    /// Whether `other` carries the same reading: a re-send of it is an idempotent duplicate, anything else at the
    /// same (source, code, time) is a conflicting rewrite. Bitwise so that `-0.0` vs `0.0` is still "different data".
    pub fn same_reading(&self, other: &Point) -> bool {
        self.value.to_bits() == other.value.to_bits()
            && self.flag == other.flag
            && self.interval == other.interval
            && self.converted.map(f64::to_bits) == other.converted.map(f64::to_bits)
    }
}

/// The wall clock in Unix ms, passed in wherever wall time is unavoidable (a sample's allowed future, audit and
/// creation times), so tests can fix it and pure code never reads it.
pub type Clock = fn() -> i64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_bytes_round_trip_and_unknown_is_invalid() {
        for f in [
            ValueFlag::Normal,
            ValueFlag::Stopped,
            ValueFlag::Maintenance,
            ValueFlag::Manual,
            ValueFlag::Fault,
            ValueFlag::Calibration,
            ValueFlag::OverRange,
            ValueFlag::CommError,
        ] {
            assert_eq!(ValueFlag::from_u8(f.to_u8()), f);
        }
        assert!(!ValueFlag::from_u8(200).is_valid_for_exceedance());
    }

    #[test]
    fn validity_follows_hj75() {
        assert!(ValueFlag::Normal.is_valid_for_exceedance());
        for f in [
            ValueFlag::Stopped,
            ValueFlag::Maintenance,
            ValueFlag::Fault,
            ValueFlag::Calibration,
            ValueFlag::CommError,
        ] {
            assert!(!f.is_valid_for_exceedance(), "{f:?}");
        }
    }
}

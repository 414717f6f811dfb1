//! Data availability of stack outlets over Beijing months, read from the store (`GetDataAvailability`). The
//! counting is `signal::availability`'s; this is the reading, a month at a time, so a year of minute data is never
//! held at once.

use crate::domain::{Month, OutletTopology};
use crate::models::dataset;
use crate::signal::availability::{AvailabilityCounter, MonthAvailability};
use crate::signal::equipment::Thresholds;
use crate::signal::process::ProcessTracker;
use crate::store::{Store, StoreError};

/// Most months one request may span (a bound on the work one call can ask for).
pub const MAX_MONTHS: usize = 12;

/// The months `from..=to`, or why not.
///
/// # Errors
/// `to` before `from`, or more than [`MAX_MONTHS`].
pub fn months(from: Month, to: Month) -> Result<Vec<Month>, String> {
    if to < from {
        return Err(format!("to_month {to} is before from_month {from}"));
    }
    let mut out = vec![from];
    while let Some(&last) = out.last() {
        if last == to {
            break;
        }
        if out.len() == MAX_MONTHS {
            return Err(format!("at most {MAX_MONTHS} months per request"));
        }
        out.push(last.next());
    }
    Ok(out)
}

/// The outlet's availability in each of `months` (consecutive), judging equipment by `thresholds` as detection
/// does.
///
/// # Errors
/// Store failure.
pub fn of_outlet(
    store: &Store,
    t: &OutletTopology,
    months: &[Month],
    thresholds: Thresholds,
) -> Result<Vec<(Month, MonthAvailability)>, StoreError> {
    let monitored = t.monitored_codes();
    let mut tracker = ProcessTracker::default();
    let mut counter = AvailabilityCounter::default();
    for month in months {
        let (from_ms, to_ms) = (month.start_ms(), month.next().start_ms());
        let mut points = Vec::new();
        for source in t.source_ids() {
            points.extend(store.read_points(&source, &[], from_ms, to_ms)?);
        }
        for row in dataset::align(t, &points) {
            let process = tracker.observe(t, &row, thresholds);
            counter.observe(&row, &process, &monitored);
        }
    }
    let counted = counter.finish();
    Ok(months
        .iter()
        .map(|m| {
            let found = counted.iter().find(|(c, _)| c == m).map(|(_, a)| *a);
            (*m, found.unwrap_or_default())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_spans_at_most_a_year_in_order() {
        let m = |s: &str| s.parse::<Month>().unwrap();
        assert_eq!(months(m("2025-11"), m("2026-02")).unwrap().len(), 4);
        assert_eq!(
            months(m("2025-03"), m("2025-03")).unwrap(),
            vec![m("2025-03")]
        );
        assert!(months(m("2025-03"), m("2025-02")).is_err());
        assert!(months(m("2025-01"), m("2026-01")).is_err());
        assert_eq!(months(m("2025-01"), m("2025-12")).unwrap().len(), 12);
    }
}

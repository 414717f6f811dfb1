//! The one hour/day boundary: which period a minute belongs to, and when the period in progress has ended. Hourly
//! and daily detectors judge a period once its last minute has been seen, the same way for all of them. Beijing
//! calendar days, months and years are `domain::calendar`'s.

use serde::{Deserialize, Serialize};

/// Start of the period of length `period_ms` containing `t_ms` (periods aligned to the Unix epoch).
pub fn period_start_ms(t_ms: i64, period_ms: i64) -> i64 {
    t_ms.div_euclid(period_ms) * period_ms
}

/// The period in progress for one detector (or one channel of it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodClock {
    start_ms: Option<i64>,
}

impl PeriodClock {
    /// Moves to the period of the minute at `minute_ms`. Returns the start of the period that just ended when this
    /// minute is the first of a later one (the caller judges it, then adds this minute to the new one).
    pub fn advance(&mut self, minute_ms: i64, period_ms: i64) -> Option<i64> {
        let start = period_start_ms(minute_ms, period_ms);
        match self.start_ms {
            Some(current) if current == start => None,
            previous => {
                self.start_ms = Some(start);
                previous
            }
        }
    }

    /// The start of the period in progress, if a minute has been seen.
    pub fn current_ms(&self) -> Option<i64> {
        self.start_ms
    }

    /// End of data: the period in progress, now to be judged as it stands.
    pub fn finish(&mut self) -> Option<i64> {
        self.start_ms.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MS_PER_HOUR;

    #[test]
    fn a_period_ends_at_the_first_minute_of_the_next() {
        let mut clock = PeriodClock::default();
        assert_eq!(clock.advance(0, MS_PER_HOUR), None);
        assert_eq!(clock.advance(59 * 60_000, MS_PER_HOUR), None);
        assert_eq!(clock.advance(MS_PER_HOUR, MS_PER_HOUR), Some(0));
        // A gap of hours closes only the hour in progress.
        assert_eq!(
            clock.advance(5 * MS_PER_HOUR + 1, MS_PER_HOUR),
            Some(MS_PER_HOUR)
        );
        assert_eq!(clock.current_ms(), Some(5 * MS_PER_HOUR));
        assert_eq!(clock.finish(), Some(5 * MS_PER_HOUR));
        assert_eq!(clock.finish(), None);
        assert_eq!(period_start_ms(-1, MS_PER_HOUR), -MS_PER_HOUR);
    }
}

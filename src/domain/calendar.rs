//! Calendar months in Beijing time (UTC+8), the months a bureau reports by (HJ 75's monthly transmission rates).

use super::{MS_PER_DAY, MS_PER_HOUR};

/// Beijing time is UTC+8 all year (no daylight saving).
pub const BEIJING_OFFSET_MS: i64 = 8 * MS_PER_HOUR;

/// The Beijing calendar date (year, month, day) of a Unix-ms time.
pub fn beijing_date(t_ms: i64) -> (i32, u32, u32) {
    civil_from_days((t_ms + BEIJING_OFFSET_MS).div_euclid(MS_PER_DAY))
}

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    /// Year.
    pub year: i32,
    /// 1..=12.
    pub month: u32,
}

impl Month {
    /// The Beijing month a Unix-ms time falls in.
    pub fn of_ms(t_ms: i64) -> Self {
        let (year, month, _) = beijing_date(t_ms);
        Self { year, month }
    }

    /// Its first instant, Unix ms.
    pub fn start_ms(self) -> i64 {
        days_from_civil(self.year, self.month, 1) * MS_PER_DAY - BEIJING_OFFSET_MS
    }

    /// The month after.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl std::str::FromStr for Month {
    type Err = String;

    /// `YYYY-MM`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("month {s:?} is not YYYY-MM");
        let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || !(1970..=9999).contains(&year) {
            return Err(bad());
        }
        Ok(Self { year, month })
    }
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beijing_months_begin_at_local_midnight() {
        // 2025-03-01T00:00+08:00 is 2025-02-28T16:00Z.
        let march = Month {
            year: 2025,
            month: 3,
        };
        assert_eq!(march.start_ms(), 1_740_758_400_000);
        assert_eq!(Month::of_ms(march.start_ms()), march);
        assert_eq!(Month::of_ms(march.start_ms() - 1).month, 2);
        assert_eq!(march.next().start_ms() - march.start_ms(), 31 * MS_PER_DAY);
        assert_eq!(
            Month {
                year: 2024,
                month: 12
            }
            .next(),
            Month {
                year: 2025,
                month: 1
            }
        );
        assert_eq!("2025-03".parse(), Ok(march));
        assert_eq!(march.to_string(), "2025-03");
        assert!("2025-13".parse::<Month>().is_err());
        assert!("2025-3".parse::<Month>().is_err());
        for days in [-1000, 0, 59, 60, 11_016, 20_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}

//! Unit rules of the trade, in one place so no detector grows its own copy.
//!
//! Converted concentration (折算浓度, HJ 75-2017 / GB 13223): `Cz = C × (21 − O2ref) / (21 − O2)`. The factor diverges
//! as O2 approaches ambient air (20.9 %): above a process O2 ceiling (start-up, shutdown, a leak) the converted value is
//! not evaluable, and we say so instead of returning a huge number.

/// O2 (%) of ambient air.
pub const AMBIENT_O2_PCT: f64 = 20.9;

/// Default ceiling (%) above which a converted concentration is not evaluable (HJ 75 practice for most combustion
/// sources; flue gas at 19 %+ O2 is mostly air).
pub const DEFAULT_O2_CEILING_PCT: f64 = 19.0;

/// Converts a raw concentration to the reference O2. `None` when the measured O2 is at or above `o2_ceiling_pct`
/// (not evaluable) or any input is not finite.
pub fn converted_mg_m3(
    raw_mg_m3: f64,
    o2_pct: f64,
    reference_o2_pct: f64,
    o2_ceiling_pct: f64,
) -> Option<f64> {
    if !(raw_mg_m3.is_finite() && o2_pct.is_finite() && reference_o2_pct.is_finite()) {
        return None;
    }
    if o2_pct >= o2_ceiling_pct || o2_pct >= 21.0 {
        return None;
    }
    Some(raw_mg_m3 * (21.0 - reference_o2_pct) / (21.0 - o2_pct))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_follows_formula() {
        // 30 mg/m³ at 9 % O2, reference 6 %: 30 × 15 / 12 = 37.5
        let cz = converted_mg_m3(30.0, 9.0, 6.0, DEFAULT_O2_CEILING_PCT).unwrap();
        assert!((cz - 37.5).abs() < 1e-12);
        // At the reference O2 the value is unchanged.
        let same = converted_mg_m3(30.0, 6.0, 6.0, DEFAULT_O2_CEILING_PCT).unwrap();
        assert!((same - 30.0).abs() < 1e-12);
    }

    #[test]
    fn not_evaluable_near_ambient_o2() {
        assert_eq!(
            converted_mg_m3(5.0, 19.5, 6.0, DEFAULT_O2_CEILING_PCT),
            None
        );
        assert_eq!(
            converted_mg_m3(f64::NAN, 5.0, 6.0, DEFAULT_O2_CEILING_PCT),
            None
        );
    }
}

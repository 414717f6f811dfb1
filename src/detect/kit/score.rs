//! The one score function, so scores of different kinds rank alike on the enforcement list: 0.5 where a signature
//! just passes its bar, rising toward 1 as the excess grows.

/// Saturating score of an excess over the bar, in units of the signature's own scale (e.g. minutes beyond the
/// grace period over a time constant, or the ratio to a limit above 1 over a tolerance): `1 − ½·e^(−excess)`.
pub fn saturating(excess: f64) -> f64 {
    (1.0 - 0.5 * (-excess.max(0.0)).exp()).clamp(0.0, 1.0)
}

/// [`saturating`] in minutes: how long an episode has lasted beyond what is tolerated, with time constant `tau_min`.
pub fn duration_score(excess_min: f64, tau_min: f64) -> f64 {
    saturating(excess_min.max(0.0) / tau_min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_at_the_bar_rising_toward_one() {
        assert_eq!(saturating(0.0), 0.5);
        assert_eq!(saturating(-3.0), 0.5);
        assert!(saturating(1.0) > 0.8 && saturating(1.0) < 0.82);
        assert!(saturating(50.0) <= 1.0);
        assert_eq!(duration_score(60.0, 60.0), saturating(1.0));
    }
}

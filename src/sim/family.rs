//! Scenario families: two independently parameterised generators of plant life and cheating.
//!
//! `District` is the generator the detectors were developed on. `Field` differs from it the ways real plants do
//! (DOMAIN.md §5, issue 13): heavy-tailed, autocorrelated analyzer noise; slow analyzer drift between calibrations;
//! honest outages of minutes to hours whose data is never re-sent; fuel changes that move every pollutant at
//! unchanged production (half of them declared); weekly and seasonal load; outlets that report only hour
//! averages; honest plants held just under their limit by a controller. Its violations are carried out with other
//! magnitudes, lags and lengths. Detectors may be developed against a few of its seeds (`tuning_seeds`), never
//! against the others: `sentinel eval` reports those as held-out figures and refuses tuning seeds.

use serde::{Deserialize, Serialize};

/// Which generator a scenario comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// The development family: detectors were tuned on its seeds 42, 1, 2 and 3.
    #[default]
    District,
    /// The held-out family: only its seeds 101–104 were looked at while tuning.
    Field,
}

impl std::str::FromStr for Family {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "district" => Ok(Self::District),
            "field" => Ok(Self::Field),
            other => Err(format!("unknown family {other:?}: district or field")),
        }
    }
}

impl Family {
    /// Its name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::District => "district",
            Self::Field => "field",
        }
    }

    /// Seeds of this family that thresholds were tuned on: figures measured on them are not held-out figures.
    pub fn tuning_seeds(self) -> &'static [u64] {
        match self {
            Self::District => &[42, 1, 2, 3],
            Self::Field => &[101, 102, 103, 104],
        }
    }

    /// The family's parameters.
    pub fn params(self) -> Params {
        match self {
            Self::District => Params::DISTRICT,
            Self::Field => Params::FIELD,
        }
    }
}

/// Everything a family changes, in one place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Relative analyzer noise (sd of a reading's relative error).
    pub analyzer_noise: f64,
    /// Degrees of freedom of the analyzer noise's Student-t innovations (`None`: Gaussian).
    pub noise_df: Option<u32>,
    /// AR(1) coefficient of the analyzer noise from one minute to the next (0: independent).
    pub noise_ar: f64,
    /// Largest relative analyzer drift per day between daily calibrations (each gas draws its own rate).
    pub drift_per_day: f64,
    /// Honest communication outages per plant and 30 days whose data is never re-sent (Poisson mean).
    pub lost_outages_per_month: f64,
    /// Their length, minutes: log-uniform between these.
    pub lost_outage_min: (f64, f64),
    /// Load on Saturdays and Sundays relative to weekdays, continuous plants.
    pub weekend_load: f64,
    /// Amplitude of a slow load trend over the scenario (seasonal demand).
    pub seasonal_load: f64,
    /// Share of outlets that report only hour averages (CN 2061).
    pub hourly_share: f64,
    /// Share of plants with a legitimate fuel change that steps every pollutant down; half of them declare it.
    pub fuel_step_share: f64,
    /// Honest near-limit plants hold their converted value with a controller around this fraction of the limit
    /// (`None`: a fixed efficiency cap, as District does).
    pub controller_target: Option<f64>,
    /// Careful parameter tampering: the analyzer gain is multiplied by this.
    pub tampering_gain: f64,
    /// Replay lags, minutes: (lazy, careful).
    pub replay_lag_min: (i64, i64),
    /// Replay lengths, minutes.
    pub replay_len_min: (i64, i64),
    /// Flat-line lengths, minutes.
    pub flatline_len_min: (i64, i64),
    /// A clamp's ceiling and the width of the band below it its capped values spread over (fractions of the limit).
    pub clamp: (f64, f64),
    /// Share of the flue gas kept in the stack during a bypass: (lazy, careful).
    pub bypass_kept: (f64, f64),
}

impl Params {
    /// The development family.
    pub const DISTRICT: Self = Self {
        analyzer_noise: 0.02,
        noise_df: None,
        noise_ar: 0.0,
        drift_per_day: 0.0,
        lost_outages_per_month: 0.0,
        lost_outage_min: (0.0, 0.0),
        weekend_load: 1.0,
        seasonal_load: 0.0,
        hourly_share: 0.0,
        fuel_step_share: 0.0,
        controller_target: None,
        tampering_gain: 0.65,
        replay_lag_min: (1440, 1620),
        replay_len_min: (360, 900),
        flatline_len_min: (240, 600),
        clamp: (0.96, 0.01),
        bypass_kept: (0.25, 0.6),
    };

    /// The held-out family.
    pub const FIELD: Self = Self {
        analyzer_noise: 0.025,
        noise_df: Some(3),
        noise_ar: 0.8,
        drift_per_day: 0.02,
        lost_outages_per_month: 4.0,
        lost_outage_min: (5.0, 180.0),
        weekend_load: 0.85,
        seasonal_load: 0.08,
        hourly_share: 0.25,
        fuel_step_share: 0.3,
        controller_target: Some(0.9),
        tampering_gain: 0.75,
        replay_lag_min: (2 * 1440, 1440 + 300),
        replay_len_min: (480, 1440),
        flatline_len_min: (300, 1800),
        clamp: (0.98, 0.09),
        bypass_kept: (0.3, 0.65),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_families_differ_in_what_the_detectors_were_tuned_on() {
        let (d, f) = (Params::DISTRICT, Params::FIELD);
        assert_ne!(d.tampering_gain, f.tampering_gain);
        assert_ne!(d.replay_lag_min, f.replay_lag_min);
        assert!(f.clamp.1 > 5.0 * d.clamp.1);
        assert!(f.hourly_share > 0.0 && d.hourly_share == 0.0);
        assert!(!Family::Field.tuning_seeds().contains(&201));
    }
}

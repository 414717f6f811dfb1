//! `LIMIT_BUNCHING`: converted values piled up under the limit with nothing above: a hard ceiling clamped into the
//! reporting chain.
//!
//! A density-discontinuity test against the outlet's own distribution. Every day, over the last 28 days (a rolling
//! month) of valid readings as shares of the limit, in bins of 1 %: for each candidate ceiling `e` from 90 % to
//! 100 % of the limit and each pile width of 2 % and 4 % (a ceiling applied to raw values and converted through a
//! measured O2 is smeared), a Poisson log-linear density is fitted to the outlet's own counts in the 8 % below the
//! pile `[e − w, e)` and extrapolated to the pile and to the tail `[e, e + 4 %)` a smooth density leaves above it. A
//! ceiling is raised when the pile stands **above** and the tail **below** the extrapolation, both one-sided at
//! `α = false alarms per day / (channels × 22 candidates)` (an intersection-union test: each must hold on its own),
//! with at least `MIN_PEAK` minutes in the pile and a tail under `DEFICIT` of it.
//!
//! Why log-linear and why both: an honest density that bends down (log-concave, as every unimodal bell is) makes the
//! straight extrapolation overshoot pile and tail alike, so the pile cannot stand above it; one that bends up makes
//! it undershoot both, so the tail cannot fall below it. Only a kink (a pile with nothing after it) passes both.
//! Both are compared on the log scale, where the fit's extrapolation is normal: the fit's own uncertainty plus the
//! observed count's, overdispersed (autocorrelation) by the fit's Pearson dispersion. Readings are spread over their
//! resolution step before binning.
//!
//! Look-alikes: plants honestly running near their limit (their density is smooth through the limit), set-points
//! deliberately just under the limit with real scatter (a pile, but with the tail above it that real control leaves:
//! no deficit), plants far under their limit (too few minutes near the limit to judge), tightly controlled plants
//! just under the limit (a bell bends the straight extrapolation over their pile).

use super::kit::period::PeriodClock;
use super::kit::{push_bounded, Span};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::{units, AnomalyKind, MS_PER_MINUTE};
use crate::signal::cems::{self, Resolution};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};
use std::collections::{BTreeMap, VecDeque};

/// Detector name and version.
pub const NAME: &str = "limit_bunching/2";
/// Days in the judged window (a rolling month).
const DAYS: usize = 28;
/// Minutes a day, and its length in ms.
const DAY_MIN: i64 = 1440;
const DAY_MS: i64 = DAY_MIN * MS_PER_MINUTE;
/// Lowest share of the limit binned, and the bin width.
const LOW: f64 = 0.50;
pub(crate) const BIN: f64 = 0.01;
/// Bins from 50 % to 110 % of the limit.
const BINS: usize = 60;
/// Candidate ceilings: the upper edges of the pile, in bins (90 % … 100 % of the limit).
const EDGES: std::ops::RangeInclusive<usize> = 40..=50;
/// Widths of the pile, of the tail above it, and of the fitted region below the pile, in bins.
const PILES: [usize; 2] = [2, 4];
pub(crate) const TAIL: usize = 4;
const FIT: usize = 8;
/// Candidate ceilings judged: every edge with every pile width.
const CANDIDATES: usize = (*EDGES.end() - *EDGES.start() + 1) * PILES.len();
/// Readings needed in the pile (minute data; an hourly outlet needs a day of hour averages, see [`minimums`]).
const MIN_PEAK: f64 = 120.0;
/// Tail minutes allowed as a share of the pile.
const DEFICIT: f64 = 0.05;
/// Readings needed in the fitted region.
const MIN_FIT: f64 = 200.0;

/// The readings a pile and its fitted region need for a channel whose readings average over `span_min` minutes:
/// counts are of readings (an hour average counts once, not sixty times), so the Poisson test sees the evidence
/// there is, and an hourly outlet needs a day of hours in the pile.
fn minimums(span_min: u32) -> (f64, f64) {
    if span_min <= 1 {
        (MIN_PEAK, MIN_FIT)
    } else {
        (24.0, 40.0)
    }
}

/// Minute counts of one day per bin, plus when values near the limit (≥ 85 %) happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Day {
    /// Minutes per bin (fractional: a reading is spread over its resolution step, see [`spread`]).
    counts: Vec<f32>,
    first_near_ms: Option<i64>,
    last_near_ms: i64,
}

impl Default for Day {
    fn default() -> Self {
        Self {
            counts: vec![0.0; BINS],
            first_near_ms: None,
            last_near_ms: 0,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Channel {
    resolution: Resolution,
    days: VecDeque<Day>,
    /// Minutes the channel's latest reading averaged over.
    #[serde(default)]
    span_min: u32,
    /// The open episode (start, raised at) and its latest figures.
    open: Option<(i64, i64)>,
    last: Option<Ceiling>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    /// The day in progress (UTC).
    day: PeriodClock,
    channels: BTreeMap<String, Channel>,
}

/// A ceiling the test found, with the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    /// The ceiling (upper edge of the pile), as a share of the limit.
    pub edge: f64,
    /// Lower edge of the pile, as a share of the limit.
    pub pile_from: f64,
    /// Minutes in the pile `[pile_from, edge)`.
    pub pile: f64,
    /// Minutes the density below the pile gives it.
    pub pile_expected: f64,
    /// Minutes in the tail `[edge, edge + 4 %)`.
    pub tail: f64,
    /// Minutes the density below the pile gives the tail.
    pub tail_expected: f64,
    /// One-sided z of the pile's excess.
    pub z_pile: f64,
    /// One-sided z of the tail's deficit.
    pub z_tail: f64,
    /// Variance inflation used (≥ 1).
    pub dispersion: f64,
    /// The test's p-value (the larger of the two one-sided ones).
    pub p_value: f64,
    /// Days of counts judged.
    pub window_days: usize,
}

/// The figures of a ceiling.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Figures {
    /// The pollutant.
    pub(crate) code: String,
    pub(crate) limit_mg_m3: f64,
    pub(crate) pile_from_pct_of_limit: f64,
    pub(crate) pile_to_pct_of_limit: f64,
    pub(crate) minutes_in_pile: f64,
    /// Minutes the outlet's own density below the pile gives it.
    pub(crate) minutes_expected_in_pile: f64,
    /// Minutes in the tail `[pile_to, pile_to + 4 %)` above the pile.
    pub(crate) minutes_in_tail_above: f64,
    pub(crate) minutes_expected_in_tail_above: f64,
    /// One-sided z of the pile's excess.
    pub(crate) z_pile_excess: f64,
    /// One-sided z of the tail's deficit.
    pub(crate) z_tail_deficit: f64,
    /// Variance inflation used (≥ 1).
    pub(crate) dispersion: f64,
    pub(crate) p_value: f64,
    pub(crate) window_days: u32,
}

/// The finding of a ceiling found on `code` over `span`, raised at `raised`. Bunching keeps its own episodes: an
/// episode starts at the first near-limit minute of the judged month (back-dated, not at the day it is judged), ends
/// after the last one, and is judged once a day over a rolling window.
fn finding(
    ctx: &OutletContext<'_>,
    code: &str,
    c: &Ceiling,
    span: (i64, i64),
    raised: i64,
    ongoing: bool,
) -> Finding {
    let t = ctx.topology;
    let figures = Figures {
        code: code.to_string(),
        limit_mg_m3: t.outlet.limits_mg_m3.get(code).copied().unwrap_or(f64::NAN),
        pile_from_pct_of_limit: 100.0 * c.pile_from,
        pile_to_pct_of_limit: 100.0 * c.edge,
        minutes_in_pile: c.pile,
        minutes_expected_in_pile: c.pile_expected,
        minutes_in_tail_above: c.tail,
        minutes_expected_in_tail_above: c.tail_expected,
        z_pile_excess: c.z_pile,
        z_tail_deficit: c.z_tail,
        dispersion: c.dispersion,
        p_value: c.p_value,
        window_days: u32::try_from(c.window_days).unwrap_or(u32::MAX),
    };
    let score = (1.0 - 0.5 * (c.p_value.max(1e-300).log10() / -6.0).recip().min(1.0))
        .clamp(0.5, 1.0)
        * if c.tail == 0.0 { 1.0 } else { 0.9 };
    Span {
        key: code.to_string(),
        start_ms: span.0,
        end_ms: span.1,
        detected_at_ms: raised,
        ongoing,
    }
    .finding(
        AnomalyKind::LimitBunching,
        NAME,
        score,
        vec![t.outlet.id.clone()],
        &figures,
    )
}

/// Poisson log-linear fit `ln μ = β₀ + β₁ u` of counts `y` at positions `u`: coefficients and their unscaled
/// covariance `(Xᵀ W X)⁻¹`, by iteratively reweighted least squares. `None` when it does not converge to finite
/// values.
fn poisson_fit(u: &[f64], y: &[f64]) -> Option<([f64; 2], [[f64; 2]; 2])> {
    // Start from least squares on ln(y + 0.5).
    let mut beta = weighted_least_squares(
        &u.iter().map(|ui| (*ui, 1.0)).collect::<Vec<_>>(),
        &y.iter().map(|yi| (yi + 0.5).ln()).collect::<Vec<_>>(),
    )?
    .0;
    let mut cov = [[0.0; 2]; 2];
    for _ in 0..50 {
        let eta = |ui: f64| beta[0] + beta[1] * ui;
        let rows: Vec<(f64, f64)> = u
            .iter()
            .map(|ui| (*ui, eta(*ui).clamp(-30.0, 30.0).exp()))
            .collect();
        let z: Vec<f64> = rows
            .iter()
            .zip(y)
            .map(|((ui, mu), yi)| eta(*ui) + (yi - mu) / mu.max(1e-9))
            .collect();
        let (next, c) = weighted_least_squares(&rows, &z)?;
        let change = (next[0] - beta[0]).abs().max((next[1] - beta[1]).abs());
        beta = next;
        cov = c;
        if change < 1e-9 {
            break;
        }
    }
    beta.iter().all(|b| b.is_finite()).then_some((beta, cov))
}

/// Weighted least squares of `z` on `[1, u]` with weights `w`, from `(u, w)` rows: the solution and `(Xᵀ W X)⁻¹`.
fn weighted_least_squares(rows: &[(f64, f64)], z: &[f64]) -> Option<([f64; 2], [[f64; 2]; 2])> {
    let (mut s0, mut s1, mut s2, mut b0, mut b1) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for ((u, w), zi) in rows.iter().zip(z) {
        s0 += w;
        s1 += w * u;
        s2 += w * u * u;
        b0 += w * zi;
        b1 += w * u * zi;
    }
    let det = s0 * s2 - s1 * s1;
    if !det.is_finite() || det.abs() < 1e-12 {
        return None;
    }
    let inv = [[s2 / det, -s1 / det], [-s1 / det, s0 / det]];
    let beta = [
        inv[0][0] * b0 + inv[0][1] * b1,
        inv[1][0] * b0 + inv[1][1] * b1,
    ];
    Some((beta, inv))
}

/// Adds one minute at `share` of the limit, spread evenly over its resolution step `[share − step/2, share + step/2)`:
/// values reported at a resolution that does not divide the bins (0.1 mg in bins of 0.35 mg) would otherwise fill
/// alternate bins unevenly, a comb that reads as a misfit of the density.
fn spread(counts: &mut [f32], share: f64, step: f64, weight: f64) {
    let width = step.max(1e-9);
    let (lo, hi) = (
        (share - width / 2.0 - LOW) / BIN,
        (share + width / 2.0 - LOW) / BIN,
    );
    let (first, last) = (lo.floor().max(0.0), hi.ceil().min(BINS as f64));
    let mut b = first;
    while b < last {
        let overlap = (hi.min(b + 1.0) - lo.max(b)).max(0.0);
        if let Some(c) = counts.get_mut(b as usize) {
            *c += (weight * overlap / (hi - lo)) as f32;
        }
        b += 1.0;
    }
}

/// The test on one channel's month of daily bin counts, at per-candidate level `alpha`: the strongest ceiling found,
/// if any. Pure, so it is tested on its own.
pub fn test_ceiling(
    days: &[Vec<f32>],
    alpha: f64,
    (min_peak, min_fit): (f64, f64),
) -> Option<Ceiling> {
    let total: Vec<f64> = (0..BINS)
        .map(|b| {
            days.iter()
                .map(|d| f64::from(d.get(b).copied().unwrap_or(0.0)))
                .sum()
        })
        .collect();
    let z_crit = Normal::new(0.0, 1.0)
        .ok()?
        .inverse_cdf(1.0 - alpha.clamp(1e-300, 0.5));
    let mut best: Option<Ceiling> = None;
    for (edge, width) in EDGES.flat_map(|e| PILES.map(|w| (e, w))) {
        let pile_lo = edge - width;
        let fit_lo = pile_lo - FIT;
        let pile: f64 = total[pile_lo..edge].iter().sum();
        let tail: f64 = total[edge..(edge + TAIL).min(BINS)].iter().sum();
        let fitted: f64 = total[fit_lo..pile_lo].iter().sum();
        if pile < min_peak || tail >= DEFICIT * pile || fitted < min_fit {
            continue;
        }
        // Positions in units of the fitted width, 0 at the pile's lower edge.
        let pos = |b: usize| (b as f64 + 0.5 - pile_lo as f64) / FIT as f64;
        let u: Vec<f64> = (fit_lo..pile_lo).map(pos).collect();
        let y = &total[fit_lo..pile_lo];
        let Some((beta, xtwx_inv)) = poisson_fit(&u, y) else {
            continue;
        };
        let mu = |ui: f64| (beta[0] + beta[1] * ui).clamp(-30.0, 30.0).exp();
        let pearson: f64 = u
            .iter()
            .zip(y)
            .map(|(ui, yi)| (yi - mu(*ui)).powi(2) / mu(*ui).max(1e-9))
            .sum();
        let dispersion = (pearson / (FIT - 2) as f64).max(1.0);
        // Compared on the log scale, where the log-linear fit's extrapolation is normal: the expected count of a band
        // and the variance of its logarithm (the fit's uncertainty), against the observed count's (overdispersed
        // counting noise, φ / n).
        let band = |lo: usize, hi: usize| {
            let (mut m, mut g) = (0.0, [0.0; 2]);
            for b in lo..hi {
                let ui = pos(b);
                let mi = mu(ui);
                m += mi;
                g[0] += mi;
                g[1] += mi * ui;
            }
            let fit_var: f64 = (0..2)
                .map(|r| (0..2).map(|c| g[r] * xtwx_inv[r][c] * g[c]).sum::<f64>())
                .sum::<f64>()
                * dispersion;
            (m, fit_var.max(0.0) / (m * m).max(1e-300))
        };
        let log_z = |observed: f64, (expected, fit_log_var): (f64, f64)| {
            let n = observed + 0.5;
            (n.ln() - (expected + 0.5).ln()) / (fit_log_var + dispersion / n).sqrt()
        };
        let (pile_band, tail_band) = (band(pile_lo, edge), band(edge, edge + TAIL));
        let (pile_expected, tail_expected) = (pile_band.0, tail_band.0);
        let z_pile = log_z(pile, pile_band);
        let z_tail = -log_z(tail, tail_band);
        let z = z_pile.min(z_tail);
        if z <= z_crit {
            continue;
        }
        let p_value = Normal::new(0.0, 1.0).map_or(1.0, |n| 1.0 - n.cdf(z));
        // Of the significant candidates, the sharpest pile (most over its extrapolation) is the ceiling reported: a
        // wide band that merely contains a narrow pile dilutes it with honest readings.
        let sharpness = pile / pile_expected.max(1e-9);
        if best
            .as_ref()
            .is_none_or(|b| sharpness > b.pile / b.pile_expected.max(1e-9))
        {
            best = Some(Ceiling {
                edge: LOW + edge as f64 * BIN,
                pile_from: LOW + pile_lo as f64 * BIN,
                pile,
                pile_expected,
                tail,
                tail_expected,
                z_pile,
                z_tail,
                dispersion,
                p_value,
                window_days: days.len(),
            });
        }
    }
    best
}

/// The detector.
pub struct Bunching {
    false_alarms_per_day: f64,
    state: State,
}

impl Bunching {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            false_alarms_per_day: config.false_alarms_per_day,
            state: State::default(),
        })
    }

    /// Judges each channel over the window at a day's end.
    fn judge(&mut self, ctx: &OutletContext<'_>, now: i64, out: &mut Vec<Finding>) {
        let channels = self.state.channels.len().max(1);
        let alpha = self.false_alarms_per_day / (channels * CANDIDATES) as f64;
        let codes: Vec<String> = self.state.channels.keys().cloned().collect();
        for code in codes {
            let Some(ch) = self.state.channels.get(&code) else {
                continue;
            };
            let counts: Vec<Vec<f32>> = ch.days.iter().map(|d| d.counts.clone()).collect();
            let ceiling = test_ceiling(&counts, alpha, minimums(ch.span_min));
            let first = ch.days.iter().filter_map(|d| d.first_near_ms).min();
            let last = ch.days.iter().map(|d| d.last_near_ms).max().unwrap_or(now);
            let open = ch.open;
            let finding = match (ceiling, open, first) {
                (Some(c), _, Some(first)) => {
                    let start = open.map_or(first, |(s, _)| s);
                    let raised = open.map_or(now, |(_, r)| r);
                    let f = finding(ctx, &code, &c, (start, last + MS_PER_MINUTE), raised, true);
                    if let Some(ch) = self.state.channels.get_mut(&code) {
                        ch.open = Some((start, raised));
                        ch.last = Some(c);
                    }
                    Some(f)
                }
                (None, Some((start, raised)), _) => {
                    let last_ceiling = self.state.channels.get_mut(&code).and_then(|ch| {
                        ch.open = None;
                        ch.last.take()
                    });
                    // The closing update keeps the figures of the last raised judgement.
                    last_ceiling.map(|c| {
                        finding(ctx, &code, &c, (start, last + MS_PER_MINUTE), raised, false)
                    })
                }
                _ => None,
            };
            out.extend(finding);
        }
    }
}

impl Detector for Bunching {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let t = ctx.topology;
        if t.outlet.limits_mg_m3.is_empty() {
            return;
        }
        let now = minute.row.minute_ms;
        if self.state.day.advance(now, DAY_MS).is_some() {
            self.judge(ctx, now, out);
            for ch in self.state.channels.values_mut() {
                push_bounded(&mut ch.days, Day::default(), DAYS);
            }
        }
        for (code, limit) in &t.outlet.limits_mg_m3 {
            let Some(cz) = cems::converted(
                minute.row,
                code,
                t.outlet.reference_o2_pct,
                units::DEFAULT_O2_CEILING_PCT,
            )
            .valid() else {
                continue;
            };
            let span = minute.row.cems.get(code).map_or(1, |r| r.span_min.max(1));
            let ch = self.state.channels.entry(code.clone()).or_default();
            ch.span_min = span;
            ch.resolution.observe(cz);
            let step = ch.resolution.step();
            if ch.days.is_empty() {
                ch.days.push_back(Day::default());
            }
            let Some(d) = ch.days.back_mut() else {
                continue;
            };
            let share = cz / limit;
            spread(&mut d.counts, share, step / limit, 1.0 / f64::from(span));
            if (0.85..1.0).contains(&share) {
                d.first_near_ms.get_or_insert(now);
                d.last_near_ms = now;
            }
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        let now = self.state.day.current_ms().map_or(0, |d| d + DAY_MS);
        self.judge(ctx, now, out);
        let codes: Vec<String> = self.state.channels.keys().cloned().collect();
        for code in codes {
            if let Some(f) = out
                .iter_mut()
                .rev()
                .find(|f| f.key == code && f.kind == AnomalyKind::LimitBunching)
            {
                f.ongoing = false;
            }
        }
        for ch in self.state.channels.values_mut() {
            ch.open = None;
        }
    }

    persist_state!(state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{row, run_detector, topology, with_cems};
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// Shares of the limit, minute by minute: a daily load cycle and autocorrelated process noise (correlation time
    /// `tau_min`), as real stacks have; `lognormal` skews it.
    fn honest(
        rng: &mut Xoshiro256PlusPlus,
        minutes: usize,
        center: f64,
        spread: f64,
        tau_min: f64,
        lognormal: bool,
    ) -> Vec<f64> {
        let rho = (-1.0 / tau_min).exp();
        let mut ar = 0.0;
        (0..minutes)
            .map(|i| {
                ar = rho * ar + (1.0 - rho * rho).sqrt() * crate::sim::plant::gaussian(rng);
                let cycle = 0.3 * (std::f64::consts::TAU * i as f64 / 1440.0).sin();
                let z = ar + cycle;
                if lognormal {
                    center * (spread / center * z).exp()
                } else {
                    center + spread * z
                }
            })
            .collect()
    }

    fn daily_counts(shares: &[f64]) -> Vec<Vec<f32>> {
        shares
            .chunks(1440)
            .map(|day| {
                let mut d = Day::default();
                for s in day {
                    spread(&mut d.counts, *s, 0.1 / 35.0, 1.0);
                }
                d.counts
            })
            .collect()
    }

    fn run(shares: &[f64]) -> Vec<Finding> {
        let mut t = topology();
        t.outlet.limits_mg_m3.insert("a21026".into(), 35.0);
        run_detector(
            Bunching::boxed,
            &t,
            shares.iter().enumerate().map(|(i, s)| {
                with_cems(
                    row(i as i64, &[]),
                    &[
                        ("a21026", (35.0 * s * 10.0).round() / 10.0),
                        ("a19001", 6.0),
                    ],
                )
            }),
        )
    }

    #[test]
    fn the_poisson_fit_recovers_a_known_log_linear_density() {
        let u: Vec<f64> = (0..8).map(|b| (b as f64 - 7.5) / 8.0).collect();
        let truth = [6.0, 2.5];
        let y: Vec<f64> = u
            .iter()
            .map(|x| (truth[0] + truth[1] * x).exp().round())
            .collect();
        let (beta, cov) = poisson_fit(&u, &y).unwrap();
        for k in 0..2 {
            assert!((beta[k] - truth[k]).abs() < 0.02, "{beta:?}");
            assert!(cov[k][k] > 0.0);
        }
        // A single position cannot fix a slope.
        assert!(weighted_least_squares(&[(0.5, 1.0), (0.5, 2.0)], &[1.0, 2.0]).is_none());
    }

    #[test]
    fn a_ceiling_under_the_limit_is_found() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        // Lazy: the plant really runs around the limit (85–115 %); the report is clamped at 96 %.
        let real = honest(&mut rng, 8 * 1440, 1.0, 0.08, 20.0, false);
        let clamped: Vec<f64> = real.iter().map(|v| v.min(0.96)).collect();
        let out = run(&clamped);
        let last = out.last().expect("found");
        assert!(!last.ongoing);
        let pile = |f: &Finding| {
            (
                f.evidence["pile_from_pct_of_limit"].round(),
                f.evidence["pile_to_pct_of_limit"].round(),
            )
        };
        let (from, to) = pile(last);
        assert!(from <= 96.0 && 96.0 < to, "{last:#?}");
        assert_eq!(last.evidence["minutes_in_tail_above"], 0.0);
        assert!(last.evidence["minutes_in_pile"] > 3.0 * last.evidence["minutes_expected_in_pile"]);
        // Raised within days (the missing tail is judged against an extrapolation that is uncertain until days of
        // the outlet's own distribution below it are known).
        assert!(
            out[0].detected_at_ms - out[0].start_ms <= 4 * DAY_MIN * MS_PER_MINUTE,
            "{:#?}",
            out[0]
        );

        // Careful: a plant at 88 % of its limit whose minutes above 95 % (about one in eight) are replaced by
        // 93–95 %, spread so that no value repeats, for two weeks.
        let real = honest(&mut rng, 14 * 1440, 0.88, 0.06, 30.0, false);
        let clamped: Vec<f64> = real
            .iter()
            .map(|v| {
                if *v > 0.95 {
                    0.93 + 0.02 * rng.gen::<f64>()
                } else {
                    *v
                }
            })
            .collect();
        let out = run(&clamped);
        let last = out.last().expect("careful ceiling found");
        let (from, to) = pile(last);
        assert!(from <= 94.0 && 94.0 < to, "{last:#?}");
        // The same plant unclamped is not.
        assert!(run(&real).is_empty());
    }

    #[test]
    fn honest_near_limit_plants_and_set_points_under_the_limit_are_not() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(6);
        // Tuned to run at 85 % of the limit: density falls off smoothly through the limit.
        assert!(run(&honest(&mut rng, 10 * 1440, 0.85, 0.08, 20.0, false)).is_empty());
        // Controlled to a set-point at 97 % with real scatter: a pile, but with a tail above the limit.
        assert!(run(&honest(&mut rng, 10 * 1440, 0.97, 0.04, 10.0, false)).is_empty());
        // Skewed honest data near the limit.
        assert!(run(&honest(&mut rng, 10 * 1440, 0.80, 0.08, 45.0, true)).is_empty());
    }

    #[test]
    fn false_alarms_on_honest_months_stay_within_the_level() {
        // 400 honest months, autocorrelated, half of every shape near the limit and half tightly controlled just
        // under it (the look-alike closest to a ceiling), at a per-candidate level of 0.001: the test may reject
        // at most 22 × 0.001 of them in expectation (Bonferroni over the candidate ceilings), 8.8.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let mut raised = 0;
        for trial in 0..400 {
            let (center, spread) = if trial % 2 == 0 {
                (0.6 + 0.4 * rng.gen::<f64>(), 0.02 + 0.12 * rng.gen::<f64>())
            } else {
                (
                    0.88 + 0.1 * rng.gen::<f64>(),
                    0.004 + 0.02 * rng.gen::<f64>(),
                )
            };
            let tau = 2.0 + 60.0 * rng.gen::<f64>();
            let shares = honest(&mut rng, DAYS * 1440, center, spread, tau, trial % 3 == 0);
            if let Some(c) = test_ceiling(&daily_counts(&shares), 0.001, minimums(1)) {
                raised += 1;
                eprintln!("honest month raised: center {center:.3} spread {spread:.3} tau {tau:.0}: {c:?}");
            }
        }
        assert!(raised <= 8, "{raised} of 400 honest months raised");
    }
}

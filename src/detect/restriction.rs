//! `RESTRICTION_VIOLATION`: production above the allowed share of its normal power during a heavy-pollution or
//! staggered-production order (plan 七(三)).
//!
//! Production is compared with its own learned normal running power (learned outside reduced periods, so a week of
//! compliance does not lower the bar). Look-alikes: security and heat-keeping loads of a stopped plant (an absolute
//! floor of `min_fraction` applies to stop orders), the first hour of an order (plants ramp down on notice), and
//! A-grade enterprises, which are exempt from mandatory cuts.

use super::kit::{duration_score, Due, Runs, Timing};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::{AnomalyKind, RestrictionOrder, MS_PER_MINUTE};
use serde::{Deserialize, Serialize};

/// Detector name and version.
pub const NAME: &str = "restriction/1";

/// Timing: an hour over the allowed load before raising; gaps under 15 min bridged.
const TIMING: Timing = Timing::minutes(60, 15, 120);
/// Load above the allowed fraction tolerated as measurement and control noise.
const TOLERANCE: f64 = 0.15;
/// Floor under a stop order (security, heat keeping).
const MIN_FRACTION: f64 = 0.1;
/// Minutes at the start of an order in which plants ramp down.
const RAMP_DOWN_MIN: i64 = 60;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stats {
    fraction_sum: f64,
    production_kw_sum: f64,
    normal_kw_sum: f64,
}

/// The figures of an episode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Figures {
    /// The order's level (yellow, orange, red, staggered).
    pub(crate) level: String,
    pub(crate) duration_min: f64,
    /// The share of normal load the order allows.
    pub(crate) max_load_fraction: f64,
    pub(crate) production_fraction_of_normal_mean: f64,
    pub(crate) production_kw_mean: f64,
    pub(crate) production_normal_kw: f64,
    /// The order's window, when the order is still registered.
    pub(crate) order_start_ms: Option<f64>,
    pub(crate) order_end_ms: Option<f64>,
}

/// The detector.
pub struct Restriction {
    runs: Runs<Stats>,
}

impl Restriction {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(_config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            runs: Runs::default(),
        })
    }

    fn finding(
        &self,
        ctx: &OutletContext<'_>,
        order: Option<&RestrictionOrder>,
        due: &Due<Stats>,
    ) -> Finding {
        let t = ctx.topology;
        let (run, s) = (&due.run, &due.run.stats);
        let n = f64::from(run.held.max(1));
        let minutes = run.duration_min();
        let fraction = s.fraction_sum / n;
        let allowed = order.map_or(0.0, |o| o.max_load_fraction);
        let excess = fraction - allowed;
        let score = duration_score(minutes - f64::from(TIMING.grace_min), 180.0)
            * (0.6 + excess).clamp(0.6, 1.0);
        let figures = Figures {
            level: order.map_or("", |o| o.level.as_str()).to_string(),
            duration_min: minutes,
            max_load_fraction: allowed,
            production_fraction_of_normal_mean: fraction,
            production_kw_mean: s.production_kw_sum / n,
            production_normal_kw: s.normal_kw_sum / n,
            order_start_ms: order.map(|o| o.start_ms as f64),
            order_end_ms: order.map(|o| o.end_ms as f64),
        };
        let mut source_ids: Vec<String> = t.production.iter().map(|m| m.id.clone()).collect();
        source_ids.insert(0, t.outlet.id.clone());
        due.finding(
            AnomalyKind::RestrictionViolation,
            NAME,
            score,
            source_ids,
            &figures,
        )
    }
}

impl Detector for Restriction {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let t = ctx.topology;
        let now = minute.row.minute_ms;
        if t.enterprise.performance_grade == "A" {
            return;
        }
        for order in &t.restrictions {
            let active =
                now >= order.start_ms + RAMP_DOWN_MIN * MS_PER_MINUTE && now < order.end_ms;
            let affected: Vec<_> = t
                .production
                .iter()
                .filter(|m| order.meter_ids.is_empty() || order.meter_ids.contains(&m.id))
                .filter_map(|m| minute.process.meters.get(&m.id))
                .filter(|m| m.kw.is_some() && m.normal_kw.is_some())
                .collect();
            let kw: f64 = affected.iter().filter_map(|m| m.kw).sum();
            let normal: f64 = affected.iter().filter_map(|m| m.normal_kw).sum();
            let due = if !active {
                // Outside the window: any run of this order ends (at the window's end at the latest).
                self.runs.good(
                    &order.id,
                    now.max(order.end_ms),
                    Timing {
                        close_after_min: 0,
                        ..TIMING
                    },
                )
            } else if affected.is_empty() || normal <= 0.0 {
                None
            } else {
                let fraction = kw / normal;
                let allowed = order.max_load_fraction.max(MIN_FRACTION) + TOLERANCE;
                if fraction > allowed {
                    self.runs.bad(&order.id, now, TIMING, Stats::default, |s| {
                        s.fraction_sum += fraction;
                        s.production_kw_sum += kw;
                        s.normal_kw_sum += normal;
                    })
                } else {
                    self.runs.good(&order.id, now, TIMING)
                }
            };
            if let Some(due) = due {
                out.push(self.finding(ctx, Some(order), &due));
            }
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        for due in self.runs.finish() {
            let order = ctx.topology.restrictions.iter().find(|o| o.id == due.key);
            out.push(self.finding(ctx, order, &due));
        }
    }

    persist_state!(runs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{row, run_detector, topology, T0};
    use crate::domain::OutletTopology;

    const M: i64 = MS_PER_MINUTE;

    fn topo(grade: &str) -> OutletTopology {
        let mut t = topology();
        t.enterprise.performance_grade = grade.into();
        t.restrictions.push(RestrictionOrder {
            id: "o1".into(),
            enterprise_id: "e1".into(),
            meter_ids: vec![],
            start_ms: T0 + 600 * M,
            end_ms: T0 + 1200 * M,
            max_load_fraction: 0.5,
            level: "orange".into(),
        });
        t
    }

    fn run(t: &OutletTopology, during_order_kw: f64) -> Vec<Finding> {
        run_detector(
            Restriction::boxed,
            t,
            (0..1500).map(|i| {
                let kw = if (600..1200).contains(&i) {
                    during_order_kw
                } else {
                    800.0
                };
                row(i, &[("p1", Some(kw)), ("t1", Some(150.0))])
            }),
        )
    }

    #[test]
    fn full_production_during_an_orange_order_is_a_violation() {
        let out = run(&topo("B"), 790.0);
        let closed: Vec<_> = out.iter().filter(|f| !f.ongoing).collect();
        assert_eq!(closed.len(), 1, "{out:#?}");
        assert_eq!(
            (closed[0].start_ms, closed[0].end_ms),
            (T0 + 660 * M, T0 + 1200 * M)
        );
        assert!(closed[0].evidence["production_fraction_of_normal_mean"] > 0.9);
        assert_eq!(closed[0].evidence["max_load_fraction"], 0.5);
    }

    #[test]
    fn compliance_heat_keeping_and_a_grade_exemption_are_not() {
        assert!(
            run(&topo("B"), 350.0).is_empty(),
            "cut to ~44 % of normal: complies"
        );
        let mut stop = topo("C");
        stop.restrictions[0].max_load_fraction = 0.0;
        assert!(
            run(&stop, 40.0).is_empty(),
            "5 % heat-keeping load under a stop order"
        );
        assert!(
            run(&topo("A"), 800.0).is_empty(),
            "A-grade enterprises are exempt"
        );
    }
}

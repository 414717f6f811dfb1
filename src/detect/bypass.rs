//! `BYPASS_SUSPECTED`: flue gas leaving by a way the CEMS does not see.
//!
//! Two signals, either of which holds a minute as suspicious while production runs:
//! - **flow deficit**: the stack's flow falls well below what production power implies. The relation flow ≈ a + b ·
//!   production kW is learned per outlet online (exponentially weighted least squares), only from minutes that fit
//!   it, so a bypass never teaches the model that low flow is normal. A real load drop lowers production power too,
//!   so the prediction falls with it: no deficit.
//! - **bypass monitor active**: a registered bypass duct of the outlet carries flow (its own flow/temperature
//!   monitor, plan 六(三)), or reports its damper open (`damper_open_pct` > 5 %).
//!
//! Stack switching (production feeding several stacks) makes one stack's flow meaningless on its own; the flow-deficit
//! signal is off for an outlet whose production meters also feed another outlet.

use super::kit::{duration_score, Due, Runs, Timing};
use super::{DetectConfig, Detector, Finding, Minute, OutletContext};
use crate::domain::codes::{DAMPER_OPEN_PCT, FLOW, TEMPERATURE};
use crate::domain::AnomalyKind;
use serde::{Deserialize, Serialize};

/// Detector name and version.
pub const NAME: &str = "bypass/1";

/// Timing: 15 minutes of evidence before raising; gaps under 10 min bridged.
const TIMING: Timing = Timing::minutes(15, 10, 60);
/// A stack flow below this share of the predicted flow is a deficit.
const DEFICIT_RATIO: f64 = 0.7;
/// Minutes that fit the model must be within this relative error of it to be learned from.
const LEARN_BAND: f64 = 0.15;
/// Minutes learned before the model is trusted.
const MATURE_MINUTES: f64 = 360.0;
/// Forgetting factor per learned minute (~1 week memory).
const FORGET: f64 = 1.0 - 1.0 / 10_080.0;
/// Production below this share of normal is a transition (start-up, shutdown), not judged for a deficit.
const MIN_PRODUCTION_FRACTION: f64 = 0.3;
/// A bypass damper opened further than this (%) is active.
const DAMPER_OPEN_THRESHOLD_PCT: f64 = 5.0;
/// A bypass duct carrying more than this share of the stack's normal flow is active.
const BYPASS_ACTIVE_FRACTION: f64 = 0.05;

/// Weighted least squares of flow on production power.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct FlowModel {
    w: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    sxy: f64,
}

impl FlowModel {
    fn learn(&mut self, x: f64, y: f64) {
        self.w = self.w * FORGET + 1.0;
        self.sx = self.sx * FORGET + x;
        self.sy = self.sy * FORGET + y;
        self.sxx = self.sxx * FORGET + x * x;
        self.sxy = self.sxy * FORGET + x * y;
    }

    fn predict(&self, x: f64) -> Option<f64> {
        if self.w < 1.0 {
            return None;
        }
        let (mx, my) = (self.sx / self.w, self.sy / self.w);
        let var = (self.sxx / self.w - mx * mx).max(0.0);
        let cov = self.sxy / self.w - mx * my;
        // Flow proportional to power through the origin: the physical fallback.
        let proportional = if mx > 0.0 { my * x / mx } else { my };
        // The fitted line is trusted inside the range it was learned on. Below it (a restriction order, a deep
        // turndown) a slope fitted on a narrow band can extrapolate far too high, so the lower of the two
        // predictions is used: an unexplained deficit must be large to count.
        let y = if var > (0.02 * mx).powi(2) {
            let linear = my + cov / var * (x - mx);
            if x < mx - 2.0 * var.sqrt() {
                linear.min(proportional)
            } else {
                linear
            }
        } else {
            proportional
        };
        Some(y.max(0.0))
    }

    fn mature(&self) -> bool {
        self.w >= MATURE_MINUTES
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stats {
    deficit_minutes: u32,
    bypass_minutes: u32,
    flow_sum: f64,
    predicted_sum: f64,
    production_kw_sum: f64,
    bypass_flow_sum: f64,
    bypass_temperature_sum: f64,
    bypass_temperature_n: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    model: FlowModel,
    runs: Runs<Stats>,
}

/// The figures of an episode.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Figures {
    pub(crate) duration_min: f64,
    pub(crate) minutes_flow_deficit: u32,
    pub(crate) minutes_bypass_monitor_active: u32,
    pub(crate) stack_flow_mean_m3_s: f64,
    pub(crate) predicted_flow_mean_m3_s: f64,
    /// Share of the predicted flow missing from the stack.
    pub(crate) flow_deficit_fraction: f64,
    pub(crate) production_kw_mean: f64,
    /// Over the minutes the bypass monitor was active.
    pub(crate) bypass_flow_mean_m3_s: Option<f64>,
    pub(crate) bypass_temperature_mean_c: Option<f64>,
}

/// The detector.
pub struct Bypass {
    state: State,
}

impl Bypass {
    /// Factory for [`super::DETECTORS`].
    pub fn boxed(_config: &DetectConfig) -> Box<dyn Detector> {
        Box::new(Self {
            state: State::default(),
        })
    }

    fn finding(&self, ctx: &OutletContext<'_>, due: &Due<Stats>) -> Finding {
        let t = ctx.topology;
        let (run, s) = (&due.run, &due.run.stats);
        let n = f64::from(run.held.max(1));
        let minutes = run.duration_min();
        let flow = s.flow_sum / n;
        let predicted = s.predicted_sum / n;
        let deficit = if predicted > 0.0 {
            1.0 - flow / predicted
        } else {
            0.0
        };
        // The duct's own monitor is direct evidence; a flow deficit alone is inference.
        let strength = if s.bypass_minutes > 0 {
            1.0
        } else {
            (deficit / 0.6).clamp(0.5, 1.0)
        };
        let score = duration_score(minutes - f64::from(TIMING.grace_min), 60.0) * strength;
        let figures = Figures {
            duration_min: minutes,
            minutes_flow_deficit: s.deficit_minutes,
            minutes_bypass_monitor_active: s.bypass_minutes,
            stack_flow_mean_m3_s: flow,
            predicted_flow_mean_m3_s: predicted,
            flow_deficit_fraction: deficit,
            production_kw_mean: s.production_kw_sum / n,
            bypass_flow_mean_m3_s: (s.bypass_minutes > 0)
                .then(|| s.bypass_flow_sum / f64::from(s.bypass_minutes)),
            bypass_temperature_mean_c: (s.bypass_temperature_n > 0)
                .then(|| s.bypass_temperature_sum / f64::from(s.bypass_temperature_n)),
        };
        let mut source_ids = vec![t.outlet.id.clone()];
        source_ids.extend(t.production.iter().map(|m| m.id.clone()));
        source_ids.extend(t.bypasses.iter().map(|b| b.id.clone()));
        due.finding(
            AnomalyKind::BypassSuspected,
            NAME,
            score,
            source_ids,
            &figures,
        )
    }
}

impl Detector for Bypass {
    fn observe(&mut self, ctx: &OutletContext<'_>, minute: &Minute<'_>, out: &mut Vec<Finding>) {
        let t = ctx.topology;
        let p = minute.process;
        let row = minute.row;
        let now = row.minute_ms;
        let shared_production = t.production.iter().any(|m| m.outlet_ids.len() > 1);
        // Bypass ducts: active if any carries a meaningful share of the stack's normal flow.
        let normal = p.flow_normal_m3_s.unwrap_or(f64::INFINITY);
        let mut bypass_flow = 0.0;
        let mut bypass_temperature = None;
        let mut damper_open = false;
        for b in &t.bypasses {
            if let Some(duct) = row.bypass.get(&b.id) {
                if let Some(f) = duct.get(FLOW).filter(|r| r.is_valid()) {
                    bypass_flow += f.value.max(0.0);
                }
                if let Some(temp) = duct.get(TEMPERATURE).filter(|r| r.is_valid()) {
                    bypass_temperature = Some(temp.value);
                }
                if duct
                    .get(DAMPER_OPEN_PCT)
                    .filter(|r| r.is_valid())
                    .is_some_and(|r| r.value > DAMPER_OPEN_THRESHOLD_PCT)
                {
                    damper_open = true;
                }
            }
        }
        let bypass_active = damper_open || bypass_flow > BYPASS_ACTIVE_FRACTION * normal;

        let mut deficit = None;
        let mut predicted = None;
        if let (Some(flow), Some(fraction)) = (p.flow_m3_s, p.production_fraction()) {
            if p.running() && fraction >= MIN_PRODUCTION_FRACTION && !shared_production {
                predicted = self.state.model.predict(p.production_kw);
                match predicted {
                    Some(pred) if self.state.model.mature() => {
                        if flow < DEFICIT_RATIO * pred {
                            deficit = Some(true);
                        } else {
                            deficit = Some(false);
                            if (flow - pred).abs() <= LEARN_BAND * pred && !bypass_active {
                                self.state.model.learn(p.production_kw, flow);
                            }
                        }
                    }
                    _ if !bypass_active => self.state.model.learn(p.production_kw, flow),
                    _ => {}
                }
            }
        }
        let suspicious = p.running() && (bypass_active || deficit == Some(true));
        let due = if suspicious {
            let flow = p.flow_m3_s.unwrap_or(0.0);
            let pred = predicted.unwrap_or(flow);
            self.state.runs.bad("", now, TIMING, Stats::default, |s| {
                if deficit == Some(true) {
                    s.deficit_minutes += 1;
                }
                if bypass_active {
                    s.bypass_minutes += 1;
                    s.bypass_flow_sum += bypass_flow;
                }
                if let Some(temp) = bypass_temperature {
                    s.bypass_temperature_sum += temp;
                    s.bypass_temperature_n += 1;
                }
                s.flow_sum += flow;
                s.predicted_sum += pred;
                s.production_kw_sum += p.production_kw;
            })
        } else if p.production_on == Some(false)
            || deficit == Some(false)
            || (!bypass_active && p.running() && deficit.is_none() && !t.bypasses.is_empty())
        {
            self.state.runs.good("", now, TIMING)
        } else {
            None
        };
        if let Some(due) = due {
            out.push(self.finding(ctx, &due));
        }
    }

    fn finish(&mut self, ctx: &OutletContext<'_>, out: &mut Vec<Finding>) {
        for due in self.state.runs.finish() {
            out.push(self.finding(ctx, &due));
        }
    }

    persist_state!(state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testutil::{row, run_detector, topology, with_cems, T0};
    use crate::domain::{Outlet, OutletKind, ValueFlag, MS_PER_MINUTE};
    use crate::signal::align::{OutletRow, Reading};

    /// Production follows a daily swing; stack flow follows production unless `stack_share` < 1.
    fn minute(i: i64, load: f64, stack_share: f64, bypass_flow: Option<f64>) -> OutletRow {
        let production = 300.0 + 600.0 * load;
        let flow = (100.0 + 200.0 * load) * stack_share;
        let mut r = with_cems(
            row(i, &[("p1", Some(production)), ("t1", Some(150.0))]),
            &[("a00000", flow)],
        );
        if let Some(b) = bypass_flow {
            let duct = r.bypass.entry("b1".into()).or_default();
            duct.insert(FLOW.into(), Reading::of(b, ValueFlag::Normal, None));
            duct.insert(
                TEMPERATURE.into(),
                Reading::of(120.0, ValueFlag::Normal, None),
            );
        }
        r
    }

    fn load(i: i64) -> f64 {
        0.75 + 0.2 * ((i as f64) / 240.0).sin()
    }

    #[test]
    fn flow_lost_while_production_stays_is_a_bypass() {
        let t = topology();
        let out = run_detector(
            Bypass::boxed,
            &t,
            (0..1500).map(|i| {
                minute(
                    i,
                    load(i),
                    if (1000..1120).contains(&i) { 0.4 } else { 1.0 },
                    None,
                )
            }),
        );
        let closed: Vec<_> = out.iter().filter(|f| !f.ongoing).collect();
        assert_eq!(closed.len(), 1, "{out:#?}");
        assert_eq!(
            (closed[0].start_ms, closed[0].end_ms),
            (T0 + 1000 * MS_PER_MINUTE, T0 + 1120 * MS_PER_MINUTE)
        );
        assert!((closed[0].evidence["flow_deficit_fraction"] - 0.6).abs() < 0.05);
    }

    #[test]
    fn a_careful_partial_bypass_is_found_too() {
        let t = topology();
        let out = run_detector(
            Bypass::boxed,
            &t,
            (0..1500).map(|i| {
                minute(
                    i,
                    load(i),
                    if (1000..1120).contains(&i) { 0.62 } else { 1.0 },
                    None,
                )
            }),
        );
        assert_eq!(out.iter().filter(|f| !f.ongoing).count(), 1, "{out:#?}");
    }

    #[test]
    fn a_real_load_drop_is_not_a_bypass() {
        let t = topology();
        // Load falls from ~0.75 to 0.5 for two hours: production and flow fall together.
        let out = run_detector(
            Bypass::boxed,
            &t,
            (0..1500).map(|i| {
                minute(
                    i,
                    if (1000..1120).contains(&i) {
                        0.5
                    } else {
                        load(i)
                    },
                    1.0,
                    None,
                )
            }),
        );
        assert!(out.is_empty(), "{out:#?}");
    }

    #[test]
    fn an_open_damper_is_direct_evidence() {
        let mut t = topology();
        t.bypasses.push(Outlet {
            id: "b1".into(),
            kind: OutletKind::Bypass,
            main_outlet_id: "s1".into(),
            ..Default::default()
        });
        let out = run_detector(
            Bypass::boxed,
            &t,
            (0..300).map(|i| {
                let mut r = minute(i, 0.8, 1.0, None);
                let open = if (100..130).contains(&i) { 100.0 } else { 0.0 };
                r.bypass.entry("b1".into()).or_default().insert(
                    DAMPER_OPEN_PCT.into(),
                    Reading::of(open, ValueFlag::Normal, None),
                );
                r
            }),
        );
        let closed: Vec<_> = out.iter().filter(|f| !f.ongoing).collect();
        assert_eq!(closed.len(), 1, "{out:#?}");
        assert_eq!(closed[0].evidence["minutes_bypass_monitor_active"], 30.0);
    }

    #[test]
    fn an_active_bypass_duct_is_direct_evidence_even_before_the_model_matures() {
        let mut t = topology();
        t.bypasses.push(Outlet {
            id: "b1".into(),
            kind: OutletKind::Bypass,
            main_outlet_id: "s1".into(),
            ..Default::default()
        });
        let out = run_detector(
            Bypass::boxed,
            &t,
            (0..300).map(|i| {
                if (100..160).contains(&i) {
                    minute(i, 0.8, 0.7, Some(80.0))
                } else {
                    minute(i, 0.8, 1.0, Some(0.02))
                }
            }),
        );
        let closed: Vec<_> = out.iter().filter(|f| !f.ongoing).collect();
        assert_eq!(closed.len(), 1, "{out:#?}");
        assert_eq!(closed[0].evidence["minutes_bypass_monitor_active"], 60.0);
        assert_eq!(closed[0].evidence["bypass_temperature_mean_c"], 120.0);
    }
}

//! The sentence of each detector's anomalies, written from its typed figures at the edge: one section per
//! detector, in the registry's order. A detector raises figures; how they read to an officer, in Chinese or English,
//! is decided here, when the anomaly is served.
#![allow(clippy::too_many_lines)]

use super::Names;
use super::{render, RenderFn, Summary};
use crate::detect;
use crate::domain::codes::display_name;
use crate::domain::{Evidence, Language};
#[allow(unused_imports)]
use std::collections::BTreeMap;

/// Each detector's renderer, by name with version.
pub(super) const SENTENCES: &[(&str, RenderFn)] = &[
    (
        detect::treatment_not_running::NAME,
        render::<detect::treatment_not_running::Figures>,
    ),
    (
        detect::exceedance::NAME,
        render::<detect::exceedance::Figures>,
    ),
    (
        detect::unmonitored::NAME,
        render::<detect::unmonitored::Figures>,
    ),
    (
        detect::flag_abuse::NAME,
        render::<detect::flag_abuse::Figures>,
    ),
    (detect::bypass::NAME, render::<detect::bypass::Figures>),
    (
        detect::restriction::NAME,
        render::<detect::restriction::Figures>,
    ),
    (
        detect::treatment_low_power::NAME,
        render::<detect::treatment_low_power::Figures>,
    ),
    (detect::permit::NAME, render::<detect::permit::Figures>),
    (detect::flatline::NAME, render::<detect::flatline::Figures>),
    (
        detect::calibration_gas::NAME,
        render::<detect::calibration_gas::Figures>,
    ),
    (detect::dilution::NAME, render::<detect::dilution::Figures>),
    (detect::tampering::NAME, tampering::summary),
    (
        detect::substitution::NAME,
        render::<detect::substitution::Figures>,
    ),
    (
        detect::low_variance::NAME,
        render::<detect::low_variance::Figures>,
    ),
    (detect::replay::NAME, replay::summary),
    (
        detect::replay_hourly::NAME,
        render::<detect::replay_hourly::Figures>,
    ),
    (detect::bunching::NAME, render::<detect::bunching::Figures>),
    (detect::selective_gap::NAME, selective_gap::summary),
    (detect::model_residual::NAME, model_residual::summary),
];

mod treatment_not_running {
    use {super::*, crate::detect::treatment_not_running::*};

    impl Summary for Figures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let phase_zh = match (self.late_start, self.early_stop) {
                (true, _) => "（生产先于治污设施启动）",
                (_, true) => "（治污设施先于生产停运）",
                _ => "",
            };
            let phase_en = match (self.late_start, self.early_stop) {
                (true, _) => " (production started before treatment)",
                (_, true) => " (treatment stopped before production)",
                _ => "",
            };
            match language {
                Language::Zh => format!(
                    "{}{}：生产设施运行（平均 {:.0} kW）期间，治污设施 {}（{}）未运行（平均 {:.1} kW，正常 {:.0} kW），持续 {:.0} 分钟{}。",
                    n.enterprise, n.outlet, self.production_kw_mean, self.meter_id, self.equipment, self.treatment_kw_mean, self.treatment_normal_kw, self.duration_min, phase_zh
                ),
                Language::En => format!(
                    "{} {}: treatment {} ({}) not running ({:.1} kW vs normal {:.0} kW) while production ran ({:.0} kW) for {:.0} min{}.",
                    n.enterprise, n.outlet, self.meter_id, self.equipment, self.treatment_kw_mean, self.treatment_normal_kw, self.production_kw_mean, self.duration_min, phase_en
                ),
            }
        }
    }
}

/// The clause naming the channels of a multi-channel episode (`channels`, comma-separated) other than the one that
/// speaks for it (`code`), joined by `sep` and worded by `clause`; empty when it stood alone.
fn other_channels(channels: &str, code: &str, sep: &str, clause: fn(String) -> String) -> String {
    let others: Vec<&str> = channels
        .split(',')
        .filter(|c| !c.is_empty() && *c != code)
        .collect();
    if others.is_empty() {
        String::new()
    } else {
        clause(others.join(sep))
    }
}

mod exceedance {
    use {super::*, crate::detect::exceedance::*};

    impl Summary for Figures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let (zh, en) = display_name(&self.code);
            match language {
                Language::Zh => format!(
                    "{}{}：{}（{}）小时折算均值连续 {} 小时超标，最高 {:.1} mg/m³，限值 {:.1} mg/m³（{:.1} 倍）。",
                    n.enterprise, n.outlet, zh, self.code, self.exceeding_hours, self.max_hour_mean_mg_m3, self.limit_mg_m3, self.max_ratio_to_limit
                ),
                Language::En => format!(
                    "{} {}: hourly converted {} ({}) over the limit for {} h, peak {:.1} mg/m³ vs limit {:.1} ({:.1}×).",
                    n.enterprise, n.outlet, en, self.code, self.exceeding_hours, self.max_hour_mean_mg_m3, self.limit_mg_m3, self.max_ratio_to_limit
                ),
            }
        }
    }
}

mod unmonitored {
    use {super::*, crate::detect::unmonitored::*};

    impl Summary for Figures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            if let Some(rate) = self.transmission_rate {
                return match language {
                    Language::Zh => format!(
                        "{}{}：本月生产运行 {} 分钟，其中有效监测数据仅 {} 分钟，数据传输有效率 {:.1}%，低于 {:.0}% 的要求。",
                        n.enterprise, n.outlet, self.month_production_min, self.month_valid_min, 100.0 * rate, 100.0 * self.transmission_floor
                    ),
                    Language::En => format!(
                        "{} {}: of {} minutes production ran this month, {} had valid CEMS data: a transmission rate of {:.1}%, below the {:.0}% floor.",
                        n.enterprise, n.outlet, self.month_production_min, self.month_valid_min, 100.0 * rate, 100.0 * self.transmission_floor
                    ),
                };
            }
            let silence = self.minutes_silent
                >= self.minutes_flag_stopped
                    + self.minutes_flag_fault
                    + self.minutes_flag_comm_error;
            match language {
                Language::Zh => format!(
                    "{}{}：生产设施运行（平均 {:.0} kW）期间，在线监测{}，持续 {:.0} 分钟。",
                    n.enterprise,
                    n.outlet,
                    self.production_kw_mean,
                    if silence {
                        "无数据上传"
                    } else {
                        "标记停运/故障/通讯异常"
                    },
                    self.duration_min
                ),
                Language::En => format!(
                    "{} {}: CEMS {} for {:.0} min while production ran ({:.0} kW).",
                    n.enterprise,
                    n.outlet,
                    if silence {
                        "sent no data"
                    } else {
                        "flagged stopped/fault/comm error"
                    },
                    self.duration_min,
                    self.production_kw_mean
                ),
            }
        }
    }
}

mod flag_abuse {
    use {super::*, crate::detect::flag_abuse::*};

    impl Summary for Figures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let flow_pct = 100.0 * self.flow_fraction_of_normal_mean;
            let (stopped, over) = (
                self.minutes_flag_stopped,
                self.minutes_over_limit_under_flag,
            );
            match language {
                Language::Zh => format!(
                    "{}{}：生产运行、烟气流量为正常的 {:.0}% 时，在线监测标记停运/维护/校准 {:.0} 分钟（停运标记 {} 分钟，标记下超标 {} 分钟）。",
                    n.enterprise, n.outlet, flow_pct, self.duration_min, stopped, over
                ),
                Language::En => format!(
                    "{} {}: CEMS flagged stopped/maintenance/calibration for {:.0} min while production ran and the stack carried {:.0}% of normal flow ({} min stop flags, {} min over the limit under the flags).",
                    n.enterprise, n.outlet, self.duration_min, flow_pct, stopped, over
                ),
            }
        }
    }
}

mod bypass {
    use {super::*, crate::detect::bypass::*};

    impl Summary for Figures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let duct_seen = self.minutes_bypass_monitor_active > 0;
            match language {
                Language::Zh => format!(
                    "{}{}：生产设施运行（平均 {:.0} kW）期间，排口烟气流量 {:.1} m³/s，仅为按生产负荷应有的 {:.0}%{}，持续 {:.0} 分钟，疑似旁路排放。",
                    n.enterprise,
                    n.outlet,
                    self.production_kw_mean,
                    self.stack_flow_mean_m3_s,
                    100.0 * (1.0 - self.flow_deficit_fraction),
                    if duct_seen { "，旁路烟道监测到烟气流动" } else { "" },
                    self.duration_min
                ),
                Language::En => format!(
                    "{} {}: stack flow {:.1} m³/s, {:.0}% of what production ({:.0} kW) implies{}, for {:.0} min: suspected bypass.",
                    n.enterprise,
                    n.outlet,
                    self.stack_flow_mean_m3_s,
                    100.0 * (1.0 - self.flow_deficit_fraction),
                    self.production_kw_mean,
                    if duct_seen { "; the bypass duct monitor shows flow" } else { "" },
                    self.duration_min
                ),
            }
        }
    }
}

mod restriction {
    use {super::*, crate::detect::restriction::*};

    impl Summary for Figures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let (allowed, fraction) = (
                self.max_load_fraction,
                self.production_fraction_of_normal_mean,
            );
            match language {
                Language::Zh => format!(
                    "{}：{}级管控期间（允许负荷 {:.0}%），生产负荷为正常的 {:.0}%（平均 {:.0} kW），持续 {:.0} 分钟。",
                    n.enterprise, self.level, 100.0 * allowed, 100.0 * fraction, self.production_kw_mean,
                    self.duration_min
                ),
                Language::En => format!(
                    "{}: production at {:.0}% of normal ({:.0} kW) for {:.0} min during a {} order allowing {:.0}%.",
                    n.enterprise, 100.0 * fraction, self.production_kw_mean, self.duration_min, self.level,
                    100.0 * allowed
                ),
            }
        }
    }
}

mod treatment_low_power {
    use {super::*, crate::detect::treatment_low_power::*};

    impl Summary for Figures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            match language {
                Language::Zh => format!(
                    "{}{}：治污设施 {}（{}）功率仅为正常的 {:.0}%（平均 {:.0} kW），而生产负荷为正常的 {:.0}%，持续 {:.0} 分钟，疑似不正常运行。",
                    n.enterprise, n.outlet, self.meter_id, self.equipment, 100.0 * self.treatment_fraction_of_normal, self.treatment_kw_mean, 100.0 * self.production_fraction_of_normal_mean, self.duration_min
                ),
                Language::En => format!(
                    "{} {}: treatment {} ({}) at {:.0}% of its normal power ({:.0} kW) while production ran at {:.0}% of normal, for {:.0} min.",
                    n.enterprise, n.outlet, self.meter_id, self.equipment, 100.0 * self.treatment_fraction_of_normal, self.treatment_kw_mean, 100.0 * self.production_fraction_of_normal_mean, self.duration_min
                ),
            }
        }
    }
}

mod permit {
    use {super::*, crate::detect::permit::*};

    impl Summary for Figures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let (zh, en) = display_name(&self.code);
            let (cumulative, days, projected) = (
                self.cumulative_t,
                self.observed_days,
                self.projected_t_per_year,
            );
            let (permitted, ratio) = (self.permitted_t_per_year, self.projected_ratio_to_permit);
            match language {
                Language::Zh => format!(
                    "{}{}：{}（{}）本年已排放 {:.2} t（{:.1} 天），按此推算全年 {:.1} t，为许可排放量 {:.1} t 的 {:.1} 倍。",
                    n.enterprise, n.outlet, zh, self.code, cumulative, days, projected, permitted, ratio
                ),
                Language::En => format!(
                    "{} {}: {} ({}) {:.2} t emitted in {:.1} days projects to {:.1} t/year, {:.1}× the permitted {:.1} t.",
                    n.enterprise, n.outlet, en, self.code, cumulative, days, projected, ratio, permitted
                ),
            }
        }
    }
}

mod flatline {
    use {super::*, crate::detect::flatline::*};

    impl Summary for Figures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let (zh, en) = display_name(&self.code);
            match language {
                Language::Zh => format!(
                    "{}{}：{}（{}）读数在 {:.0} 分钟内恒定为 {}（变化不超过 {}）{}，而烟气流量与生产负荷仍在变化。",
                    n.enterprise, n.outlet, zh, self.code, self.duration_min, self.stuck_value, self.range_during_run,
                    other_channels(&self.channels, &self.code, "、", |o| format!("，{o} 同时恒定"))
                ),
                Language::En => format!(
                    "{} {}: {} ({}) stuck at {} (range {}) for {:.0} min{} while flow and production kept varying.",
                    n.enterprise, n.outlet, en, self.code, self.stuck_value, self.range_during_run, self.duration_min,
                    other_channels(&self.channels, &self.code, ", ", |o| format!(", and {o} with it"))
                ),
            }
        }
    }
}

mod calibration_gas {
    use {super::*, crate::detect::calibration_gas::*};

    impl Summary for Figures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let gas = if self.o2_mean_pct <= ZERO_GAS_O2 {
                ("氮气/零气", "nitrogen / zero gas")
            } else {
                ("空气", "air")
            };
            // In channel-code order, as the detector saw them.
            let constants: BTreeMap<&str, f64> = self
                .constants
                .iter()
                .filter_map(|(name, v)| name.strip_suffix(CONSTANT).map(|code| (code, *v)))
                .collect();
            let values: Vec<String> = constants.iter().map(|(c, v)| format!("{c}={v}")).collect();
            match language {
                Language::Zh => format!(
                    "{}{}：氧含量 {:.2}%（{}特征），污染物读数恒定（{}），烟气流量为正常的 {:.0}%，持续 {:.0} 分钟，且无校准标记，疑似通入标气/零气冒充样气。",
                    n.enterprise, n.outlet, self.o2_mean_pct, gas.0, values.join(", "), 100.0 * self.flow_fraction_of_normal_mean, self.duration_min
                ),
                Language::En => format!(
                    "{} {}: O2 {:.2}% ({}) with constant pollutant readings ({}) while the stack carried {:.0}% of normal flow, for {:.0} min without a calibration flag: standard/zero gas fed as sample.",
                    n.enterprise, n.outlet, self.o2_mean_pct, gas.1, values.join(", "), 100.0 * self.flow_fraction_of_normal_mean, self.duration_min
                ),
            }
        }
    }
}

mod dilution {
    use {super::*, crate::detect::dilution::*};

    impl Summary for Figures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            match language {
                Language::Zh => format!(
                    "{}{}：正常负荷下氧含量 {:.1}%（正常 {:.1}%），折算污染物同时降至正常的 {:.0}%，持续 {:.0} 分钟，疑似{}稀释。",
                    n.enterprise, n.outlet, self.o2_mean_pct, self.o2_normal_pct, 100.0 * self.pollutants_fraction_of_normal, self.duration_min, if self.air_dilution { "空气" } else { "氮气/零气" }
                ),
                Language::En => format!(
                    "{} {}: O2 {:.1}% (normal {:.1}%) at normal load while converted pollutants fell to {:.0}% of normal, for {:.0} min: suspected {} dilution.",
                    n.enterprise, n.outlet, self.o2_mean_pct, self.o2_normal_pct, 100.0 * self.pollutants_fraction_of_normal, self.duration_min, if self.air_dilution { "air" } else { "nitrogen/zero-gas" }
                ),
            }
        }
    }
}

mod tampering {
    use {super::*, crate::detect::tampering::*};

    impl Summary for Formula {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let (zh, en) = display_name(&self.code);
            let (reported, formula) = (self.reported_converted_mean, self.formula_converted_mean);
            match language {
                Language::Zh => format!(
                    "{}{}：{}（{}）上报折算值平均 {:.1}，按实测值与氧含量公式计算应为 {:.1}（{:.0}%），持续 {:.0} 分钟，折算参数疑被篡改。",
                    n.enterprise, n.outlet, zh, self.code, reported, formula, 100.0 * reported / formula, self.duration_min
                ),
                Language::En => format!(
                    "{} {}: reported converted {} ({}) averages {:.1} where the formula from raw and O2 gives {:.1} ({:.0}%), for {:.0} min: conversion tampered.",
                    n.enterprise, n.outlet, en, self.code, reported, formula, 100.0 * reported / formula, self.duration_min
                ),
            }
        }
    }

    impl Summary for Step {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let (zh, en) = display_name(&self.code);
            let level_pct = 100.0 * self.level_ratio_to_previous_days;
            let production_pct = 100.0 * self.production_ratio_to_previous_days;
            // The other channels that stepped with it: one shift of the outlet, named once.
            match language {
                Language::Zh => format!(
                    "{}{}：{}（{}）折算浓度水平降至前几日的 {level_pct:.0}%{}，而生产负荷为前几日的 {production_pct:.0}%，持续 {:.0} 分钟，疑似仪器增益/斜率被修改。",
                    n.enterprise, n.outlet, zh, self.code, other_channels(&self.channels, &self.code, "、", |o| format!("（{o} 同时下降）")), self.duration_min
                ),
                Language::En => format!(
                    "{} {}: converted {} ({}) level fell to {level_pct:.0}% of the previous days{} while production ran at {production_pct:.0}% of them, for {:.0} min: gain or slope changed.",
                    n.enterprise, n.outlet, en, self.code, other_channels(&self.channels, &self.code, ", ", |o| format!(" (with {o})")), self.duration_min
                ),
            }
        }
    }

    impl Summary for Door {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let (zh, en) = display_name(&self.code);
            let (ratio, production_ratio) = (
                self.level_ratio_after_to_before_door,
                self.production_ratio_after_to_before_door,
            );
            match language {
                Language::Zh => format!(
                    "{}{}：分析小屋门禁开启后，{}（{}）折算浓度水平降至开门前 6 小时的 {:.0}%，生产负荷为开门前的 {:.0}%，期间无校准/维护标记，疑似现场人为改动仪器。",
                    n.enterprise, n.outlet, zh, self.code, 100.0 * ratio, 100.0 * production_ratio
                ),
                Language::En => format!(
                    "{} {}: after the analyzer shelter's door opened, converted {} ({}) fell to {:.0}% of its level in the 6 h before, with production at {:.0}% of then and no calibration or maintenance flag: the analyzer was touched.",
                    n.enterprise, n.outlet, en, self.code, 100.0 * ratio, 100.0 * production_ratio
                ),
            }
        }
    }

    impl Summary for Parameter {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            match language {
                Language::Zh => format!(
                    "{}{}：仪器参数 {} 在无校准/维护标记时由 {} 改为 {}。",
                    n.enterprise, n.outlet, self.code, self.old_value, self.new_value
                ),
                Language::En => format!(
                    "{} {}: instrument parameter {} changed from {} to {} outside any calibration or maintenance window.",
                    n.enterprise, n.outlet, self.code, self.old_value, self.new_value
                ),
            }
        }
    }

    /// The summary of a tampering anomaly, rendered from its evidence through the figures of its signature.
    pub(super) fn summary(
        evidence: &Evidence,
        names: &Names<'_>,
        language: Language,
    ) -> Option<String> {
        match evidence.text("signature")? {
            "formula" => render::<Formula>(evidence, names, language),
            "step" => render::<Step>(evidence, names, language),
            "door" => render::<Door>(evidence, names, language),
            "param" => render::<Parameter>(evidence, names, language),
            _ => None,
        }
    }
}

mod substitution {
    use {super::*, crate::detect::substitution::*};

    impl Summary for Figures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let (a, b) = (self.code_a.as_str(), self.code_b.as_str());
            let ((za, ea), (zb, eb)) = (display_name(a), display_name(b));
            let hours = f64::from(self.hours_matched.max(1));
            let r_min = self.min_abs_correlation_of_changes;
            match language {
                Language::Zh => format!(
                    "{}{}：{}（{}）与{}（{}）两个本应各自独立的监测因子，逐分钟变化的相关系数持续 {:.0} 小时 ≥ {:.3}，疑似一个因子由另一个因子换算生成。",
                    n.enterprise, n.outlet, za, a, zb, b, hours, r_min
                ),
                Language::En => format!(
                    "{} {}: {} ({}) and {} ({}), measured by separate instruments, change minute by minute in lockstep (|r| ≥ {:.3}) for {:.0} h: one channel is generated from the other.",
                    n.enterprise, n.outlet, ea, a, eb, b, r_min, hours
                ),
            }
        }
    }
}

mod low_variance {
    use {super::*, crate::detect::low_variance::*};

    impl Summary for Figures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let comovement = self
                .production_correlation_window
                .zip(self.production_correlation_usual)
                .filter(|_| self.hours_raised_by_comovement_only > 0);
            let (channels, ratio, p) = (
                self.channels_tested,
                self.variance_ratio_to_history,
                self.p_value,
            );
            match (language, comovement) {
                (Language::Zh, None) => format!(
                    "{}{}：{} 个监测因子的分钟变化方差仅为自身历史同工况的 {:.0}%（p={:.1e}），数据异常平滑，疑似编造。",
                    n.enterprise, n.outlet, channels, 100.0 * ratio, p
                ),
                (Language::Zh, Some((r, usual))) => format!(
                    "{}{}：{} 个监测因子的分钟变化方差降至自身历史同工况的 {:.0}%（p={:.1e}），且不再随生产负荷变化（相关系数 {:.2}，平时 {:.2}），疑似编造。",
                    n.enterprise, n.outlet, channels, 100.0 * ratio, p, r, usual
                ),
                (Language::En, None) => format!(
                    "{} {}: minute-to-minute variance of {} channels at {:.0}% of their own history in the same operating state (p={:.1e}): implausibly smooth data.",
                    n.enterprise, n.outlet, channels, 100.0 * ratio, p
                ),
                (Language::En, Some((r, usual))) => format!(
                    "{} {}: minute-to-minute variance of {} channels down to {:.0}% of their own history in the same operating state (p={:.1e}), and no longer following production (correlation {:.2}, usually {:.2}): invented data.",
                    n.enterprise, n.outlet, channels, 100.0 * ratio, p, r, usual
                ),
            }
        }
    }
}

mod replay_hourly {
    use {super::*, crate::detect::replay_hourly::*};

    impl Summary for Figures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let (d, h) = ((self.lag_hours / 24.0).floor(), self.lag_hours % 24.0);
            match language {
                Language::Zh => format!(
                    "{}{}：{} 个监测因子的小时均值{}与 {:.0} 天 {:.0} 小时前的数据一致，持续 {:.0} 小时，疑似重复上传历史数据。",
                    n.enterprise, n.outlet, self.channels_matched, if self.exact_copy { "逐值" } else { "变化趋势" }, d, h, self.duration_min / 60.0
                ),
                Language::En => format!(
                    "{} {}: the hour averages of {} channels repeat {} those of {:.0} d {:.0} h earlier for {:.0} h: replayed data.",
                    n.enterprise, n.outlet, self.channels_matched, if self.exact_copy { "value for value" } else { "the changes of" }, d, h, self.duration_min / 60.0
                ),
            }
        }
    }
}

mod replay {
    use {super::*, crate::detect::replay::*};

    impl Summary for CorrelationFigures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let lag_min = self.lag_min as i64;
            let (d, h) = (lag_min / 1440, (lag_min % 1440) as f64 / 60.0);
            match language {
                Language::Zh => format!(
                    "{}{}：{} 个监测因子的数据与 {} 天 {:.1} 小时前的数据高度一致（相关系数 ≥ {:.3}），持续 {} 小时，疑似重复上传历史数据。",
                    n.enterprise, n.outlet, self.channels_matched, d, h, self.min_correlation, self.hours_matched
                ),
                Language::En => format!(
                    "{} {}: {} channels repeat the data of {} d {:.1} h earlier (correlation ≥ {:.3}) for {} h: replayed data.",
                    n.enterprise, n.outlet, self.channels_matched, d, h, self.min_correlation, self.hours_matched
                ),
            }
        }
    }

    impl Summary for ExactFigures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let lag_min = self.lag_min as i64;
            let (d, h) = (lag_min / 1440, (lag_min % 1440) as f64 / 60.0);
            let ((zs, es), (zt, et)) = (display_name(&self.source), display_name(&self.target));
            match language {
                Language::Zh => format!(
                    "{}{}：{}（{}）有 {} 段各 {} 分钟的数据与 {} 天 {:.1} 小时前{}（{}）的数据逐值完全相同，疑似复制历史数据上传。",
                    n.enterprise, n.outlet, zt, self.target, self.copied_windows, self.window_min, d, h, zs, self.source
                ),
                Language::En => format!(
                    "{} {}: {} ({}) repeats, value for value, {} {}-minute stretches of {} ({}) from {} d {:.1} h earlier: copied data.",
                    n.enterprise, n.outlet, et, self.target, self.copied_windows, self.window_min, es, self.source, d, h
                ),
            }
        }
    }

    /// The summary of a replay anomaly, from its evidence: an exact copy names the channels it pairs (`target`), a
    /// correlated copy does not.
    pub(super) fn summary(
        evidence: &Evidence,
        names: &Names<'_>,
        language: Language,
    ) -> Option<String> {
        if evidence.text("target").is_some() {
            render::<ExactFigures>(evidence, names, language)
        } else {
            render::<CorrelationFigures>(evidence, names, language)
        }
    }
}

mod bunching {
    use {super::*, crate::detect::bunching::*};

    impl Summary for Figures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let (zh, en) = display_name(&self.code);
            let (lo, hi) = (self.pile_from_pct_of_limit, self.pile_to_pct_of_limit);
            let tail_hi = hi + 100.0 * TAIL as f64 * BIN;
            let days = self.window_days;
            match language {
                Language::Zh => format!(
                    "{}{}：{}（{}）近 {} 天折算值有 {:.0} 分钟堆积在限值的 {:.0}–{:.0}%（按本排口自身分布应约 {:.0} 分钟），其上 {:.0}–{:.0}% 仅 {:.0} 分钟（应约 {:.0} 分钟），p={:.1e}，疑似在限值下方被截顶。",
                    n.enterprise, n.outlet, zh, self.code, days, self.minutes_in_pile, lo, hi, self.minutes_expected_in_pile, hi, tail_hi, self.minutes_in_tail_above, self.minutes_expected_in_tail_above, self.p_value
                ),
                Language::En => format!(
                    "{} {}: {} ({}) converted values pile up at {:.0}–{:.0}% of the limit over {} days ({:.0} min where the outlet's own distribution gives {:.0}), with {:.0} min at {:.0}–{:.0}% where {:.0} were expected (p={:.1e}): clamped under the limit.",
                    n.enterprise, n.outlet, en, self.code, lo, hi, days, self.minutes_in_pile, self.minutes_expected_in_pile, self.minutes_in_tail_above, hi, tail_hi, self.minutes_expected_in_tail_above, self.p_value
                ),
            }
        }
    }
}

mod selective_gap {
    use {super::*, crate::detect::selective_gap::*};

    impl Summary for Figures {
        fn summary(&self, n: &Names<'_>, language: Language) -> String {
            let (by_observed_climb, by_model) = self.tests().unwrap_or_default();
            let names = |zh: bool| {
                self.high_codes
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(|c| {
                        let (z, e) = display_name(c);
                        if zh {
                            format!("{z}（{c}）")
                        } else {
                            format!("{e} ({c})")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(if zh { "、" } else { ", " })
            };
            let model_id = &self.model_id;
            let predicted_high = self.gaps_predicted_high.unwrap_or(0);
            let pct = |x: Option<f64>| 100.0 * x.unwrap_or(f64::NAN);
            let mean_rank_pct = pct(self.mean_predicted_rank_of_high_gaps);
            let q_pct = pct(self.chance_of_predicted_high_gap);
            let mean_level_pct = self.mean_predicted_pct_of_limit_in_gaps.unwrap_or(f64::NAN);
            let median_level_pct = self.median_predicted_pct_of_limit.unwrap_or(f64::NAN);
            let p_model = self.p_value_model.unwrap_or(f64::NAN);
            let mut parts = Vec::new();
            match language {
                Language::Zh => {
                    if by_observed_climb {
                        parts.push(format!(
                            "{} 次紧接在{}异常升高之后（正常仅 {:.1}% 的时间处于该状态，p={:.1e}）",
                            self.gaps_after_high_values,
                            names(true),
                            100.0 * self.share_of_high_minutes,
                            self.p_value
                        ));
                    }
                    if by_model {
                        parts.push(format!(
                            "{} 次落在模型 {model_id} 预测排放偏高的时段（预测值平均位于本排口的第 {:.0} 百分位，预测 {:.0}% 限值，中位 {:.0}%；随机缺失落在该时段的概率 {:.0}%，p={:.1e}）",
                            predicted_high,
                            mean_rank_pct,
                            mean_level_pct,
                            median_level_pct,
                            q_pct,
                            p_model
                        ));
                    }
                }
                Language::En => {
                    if by_observed_climb {
                        parts.push(format!(
                            "{} began right after {} climbed unusually high, a state seen only {:.1}% of the time (p={:.1e})",
                            self.gaps_after_high_values,
                            names(false),
                            100.0 * self.share_of_high_minutes,
                            self.p_value
                        ));
                    }
                    if by_model {
                        parts.push(format!(
                            "{} fell where model {model_id} predicts high emissions (mean rank {:.0}% of the outlet's predictions, {:.0}% of the limit predicted vs a median {:.0}%; a random gap falls there with probability {:.0}%, p={:.1e})",
                            predicted_high,
                            mean_rank_pct,
                            mean_level_pct,
                            median_level_pct,
                            q_pct,
                            p_model
                        ));
                    }
                }
            }
            match language {
                Language::Zh => format!(
                    "{}{}：近一周生产期间 {} 次整段数据缺失中，{}，疑似选择性缺失。",
                    n.enterprise,
                    n.outlet,
                    self.gaps,
                    parts.join("；")
                ),
                Language::En => format!(
                    "{} {}: of {} gaps while production ran this week, {}: data missing where emissions are high.",
                    n.enterprise,
                    n.outlet,
                    self.gaps,
                    parts.join("; ")
                ),
            }
        }
    }

    /// The summary of a selective-gap anomaly, rendered from its evidence (whichever tests raised it).
    pub(super) fn summary(
        evidence: &Evidence,
        names: &Names<'_>,
        language: Language,
    ) -> Option<String> {
        let figures = evidence.fields::<Figures>()?;
        figures.tests()?;
        Some(<Figures as Summary>::summary(&figures, names, language))
    }
}

mod model_residual {
    use {super::*, crate::detect::model_residual::*};

    /// A test's name for an officer.
    fn describe(test: &str, language: Language) -> String {
        let zh = language == Language::Zh;
        if test == crate::models::features::FLOW_TARGET {
            return if zh { "烟气流量" } else { "Stack flow" }.into();
        }
        if test == crate::models::features::TREATMENT_TARGET {
            return if zh {
                "治污设施用电"
            } else {
                "Treatment power"
            }
            .into();
        }
        if test == crate::models::artifact::JOINT_TEST {
            return if zh {
                "各监测量的联合关系"
            } else {
                "The joint pattern of the streams"
            }
            .into();
        }
        let code = test.trim_end_matches("_limit_fraction");
        let (zh_name, en_name) = display_name(code);
        if zh {
            format!("{zh_name}（{code}）折算浓度（占限值比例）")
        } else {
            format!("{en_name} ({code}) converted concentration (share of limit)")
        }
    }

    impl Summary for Figures {
        fn summary(&self, _names: &Names<'_>, language: Language) -> String {
            let what = describe(&self.test, language);
            let minutes = self.duration_min;
            let id = &self.model_id;
            let (z, threshold) = (self.window_z, self.threshold_z);
            match (language, self.test == crate::models::artifact::JOINT_TEST) {
                (Language::Zh, false) => format!(
                    "{what}与模型预测持续偏离：窗口均值实测 {:.2}、预测 {:.2}，标准化残差 {:.1}（阈值 {:.1}），持续 {minutes:.0} 分钟（模型 {id}）",
                    self.observed_window_mean.unwrap_or(f64::NAN),
                    self.predicted_window_mean.unwrap_or(f64::NAN),
                    z,
                    threshold
                ),
                (Language::En, false) => format!(
                    "{what} departs from the model: window mean observed {:.2} vs predicted {:.2}, standardized residual \
                     {:.1} (threshold {:.1}) for {minutes:.0} min (model {id})",
                    self.observed_window_mean.unwrap_or(f64::NAN),
                    self.predicted_window_mean.unwrap_or(f64::NAN),
                    z,
                    threshold
                ),
                (Language::Zh, true) => format!(
                    "{what}偏离正常工况：重构误差 Q 窗口均值 {:.2}，标准化 {:.1}（阈值 {:.1}），持续 {minutes:.0} 分钟（模型 {id}）",
                    self.q_window_mean.unwrap_or(f64::NAN),
                    z,
                    threshold
                ),
                (Language::En, true) => format!(
                    "{what} leaves its normal plane: reconstruction error Q window mean {:.2}, standardized {:.1} \
                     (threshold {:.1}) for {minutes:.0} min (model {id})",
                    self.q_window_mean.unwrap_or(f64::NAN),
                    z,
                    threshold
                ),
            }
        }
    }

    /// The summary of one of its anomalies, for the registry: the variant (a target or the joint test) is the figures'
    /// `test`.
    pub(super) fn summary(
        evidence: &Evidence,
        names: &Names<'_>,
        language: Language,
    ) -> Option<String> {
        render::<Figures>(evidence, names, language)
    }
}

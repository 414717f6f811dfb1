//! HJ 212-2017 codes the detectors name, with the words an officer reads (PROTOCOL.md's code table).

/// Flue-gas flow (m³/s).
pub const FLOW: &str = "a00000";
/// Flue-gas velocity (m/s).
pub const VELOCITY: &str = "a01011";
/// Flue-gas temperature (°C).
pub const TEMPERATURE: &str = "a01012";
/// Flue-gas humidity (%).
pub const HUMIDITY: &str = "a01014";
/// O2 (%).
pub const O2: &str = "a19001";
/// SO2 (mg/m³).
pub const SO2: &str = "a21026";
/// NOx (mg/m³).
pub const NOX: &str = "a21002";
/// Particulate (mg/m³).
pub const PM: &str = "a34013";
/// NH3 slip (mg/m³).
pub const NH3: &str = "a21001";
/// Non-methane hydrocarbons (mg/m³).
pub const NMHC: &str = "a24088";

/// Bypass damper opening (%), reported by a bypass duct's monitor. HJ 212 has no national code for it; the gateway's
/// per-deployment code dictionary maps a plant's process code onto this name.
pub const DAMPER_OPEN_PCT: &str = "damper_open_pct";

/// Display name of a code: (Chinese, English); the code itself when unknown.
pub fn display_name(code: &str) -> (&str, &str) {
    match code {
        FLOW => ("烟气流量", "flue-gas flow"),
        VELOCITY => ("烟气流速", "flue-gas velocity"),
        TEMPERATURE => ("烟气温度", "flue-gas temperature"),
        HUMIDITY => ("烟气湿度", "flue-gas humidity"),
        O2 => ("氧含量", "O2"),
        SO2 => ("二氧化硫", "SO2"),
        NOX => ("氮氧化物", "NOx"),
        PM => ("颗粒物", "particulate"),
        NH3 => ("氨逃逸", "NH3 slip"),
        NMHC => ("非甲烷总烃", "NMHC"),
        other => (other, other),
    }
}

//! The figures behind an anomaly, as stored and served: named numbers, flags and texts. A detector fills it from its
//! own typed record (named fields per signature, see `detect::kit::Figures`), so no figure's name is typed twice;
//! the summary an officer reads is rendered from it at the API edge, in the language of the request, so a stored
//! anomaly keeps facts, not prose.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Figure {
    /// A measured or derived quantity (its unit is in its name).
    Number(f64),
    /// A yes/no fact (late start, door opened, ...).
    Flag(bool),
    /// An identifier or label (a channel code, a meter id, the equipment, a signature's variant).
    Text(String),
}

/// The figures of one anomaly, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence(BTreeMap<String, Figure>);

impl Evidence {
    /// The evidence of a typed record: each field becomes a figure of its name. Absent options and non-finite
    /// numbers are left out (a figure that could not be computed is not evidence).
    pub fn of<T: Serialize>(fields: &T) -> Self {
        let mut out = BTreeMap::new();
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(fields) {
            for (name, value) in map {
                let figure = match value {
                    serde_json::Value::Bool(b) => Figure::Flag(b),
                    serde_json::Value::Number(n) => match n.as_f64() {
                        Some(x) if x.is_finite() => Figure::Number(x),
                        _ => continue,
                    },
                    serde_json::Value::String(s) => Figure::Text(s),
                    _ => continue,
                };
                out.insert(name, figure);
            }
        }
        Self(out)
    }

    /// The typed record back (for rendering a summary), if the figures fit it.
    pub fn fields<T: DeserializeOwned>(&self) -> Option<T> {
        let map: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .map(|(name, f)| {
                let v = match f {
                    // Whole numbers as integers, so a record may count in u32 and measure in f64.
                    Figure::Number(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => {
                        serde_json::Value::from(*x as i64)
                    }
                    Figure::Number(x) => serde_json::Value::from(*x),
                    Figure::Flag(b) => serde_json::Value::Bool(*b),
                    Figure::Text(s) => serde_json::Value::String(s.clone()),
                };
                (name.clone(), v)
            })
            .collect();
        serde_json::from_value(serde_json::Value::Object(map)).ok()
    }

    /// A number (a flag reads as 1 or 0), if present.
    pub fn number(&self, name: &str) -> Option<f64> {
        match self.0.get(name)? {
            Figure::Number(x) => Some(*x),
            Figure::Flag(b) => Some(if *b { 1.0 } else { 0.0 }),
            Figure::Text(_) => None,
        }
    }

    /// A text, if present.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.0.get(name)? {
            Figure::Text(s) => Some(s),
            _ => None,
        }
    }

    /// Whether a figure of this name is present.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Sets a number (for figures computed outside a detector's record, e.g. in tests or tools).
    pub fn set_number(&mut self, name: &str, value: f64) {
        self.0.insert(name.to_string(), Figure::Number(value));
    }

    /// The numbers and flags (as 1/0): the contract's `evidence` map.
    pub fn numbers(&self) -> BTreeMap<String, f64> {
        self.0
            .keys()
            .filter_map(|k| self.number(k).map(|v| (k.clone(), v)))
            .collect()
    }

    /// The texts: the contract's `evidence_text` map.
    pub fn texts(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .filter_map(|(k, f)| match f {
                Figure::Text(s) => Some((k.clone(), s.clone())),
                _ => None,
            })
            .collect()
    }

    /// Figures in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Figure)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// No figures.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Index<&str> for Evidence {
    type Output = f64;

    /// The number `name`.
    ///
    /// # Panics
    /// When there is no number of that name (for tests, which state what they expect).
    fn index(&self, name: &str) -> &f64 {
        match self.0.get(name) {
            Some(Figure::Number(x)) => x,
            Some(Figure::Flag(true)) => &1.0,
            Some(Figure::Flag(false)) => &0.0,
            _ => panic!("evidence has no number {name:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Figures {
        duration_min: f64,
        late_start: bool,
        code: String,
        nox_mean_mg_m3: Option<f64>,
        hours: u32,
    }

    #[test]
    fn a_typed_record_round_trips_and_serves_the_contracts_maps() {
        let f = Figures {
            duration_min: 42.0,
            late_start: true,
            code: "a21026".into(),
            nox_mean_mg_m3: None,
            hours: 3,
        };
        let e = Evidence::of(&f);
        assert_eq!(e.fields::<Figures>(), Some(f));
        assert_eq!(e["duration_min"], 42.0);
        assert_eq!(e["late_start"], 1.0);
        assert!(!e.contains("nox_mean_mg_m3"));
        assert_eq!(e.numbers().len(), 3);
        assert_eq!(e.texts()["code"], "a21026");
        assert_eq!(e.text("code"), Some("a21026"));
    }

    #[test]
    fn non_finite_figures_are_left_out() {
        #[derive(Serialize)]
        struct F {
            x: f64,
            y: f64,
        }
        let e = Evidence::of(&F {
            x: f64::NAN,
            y: 1.0,
        });
        assert!(!e.contains("x"));
        assert_eq!(e.number("y"), Some(1.0));
    }
}

//! The language an anomaly's summary is written in for its reader.

use serde::{Deserialize, Serialize};

/// Language of the one-sentence summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Language {
    /// 中文 (default: the officers' language).
    #[default]
    Zh,
    /// English.
    En,
}

impl std::str::FromStr for Language {
    type Err = String;

    /// `zh` or `en` (also `zh-CN`, `en-US` and the like, case-insensitive: the primary subtag decides).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let primary = s.trim().split(['-', '_']).next().unwrap_or("");
        match primary.to_ascii_lowercase().as_str() {
            "zh" => Ok(Self::Zh),
            "en" => Ok(Self::En),
            _ => Err(format!("unknown language {s:?} (expected zh or en)")),
        }
    }
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Zh => "zh",
            Self::En => "en",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_by_their_primary_subtag() {
        assert_eq!("zh".parse(), Ok(Language::Zh));
        assert_eq!("en-US".parse(), Ok(Language::En));
        assert_eq!("ZH_cn".parse(), Ok(Language::Zh));
        assert!("fr".parse::<Language>().is_err());
        assert_eq!(Language::En.to_string().parse(), Ok(Language::En));
    }
}

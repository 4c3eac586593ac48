//! Configuration from environment variables. Loading fails closed: a missing or invalid
//! required variable stops the function at start, with a message that names the variable.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required environment variable {0}")]
    Missing(&'static str),
    #[error("invalid environment variable {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("missing configuration: set {0}, or {1}")]
    MissingOneOf(&'static str, &'static str),
}

impl ConfigError {
    /// The variable the error is about.
    pub fn variable(&self) -> &'static str {
        match self {
            ConfigError::Missing(name)
            | ConfigError::Invalid { name, .. }
            | ConfigError::MissingOneOf(name, _) => name,
        }
    }
}

/// Where variables come from: the process environment, or a map in tests and in the local server.
pub trait Vars {
    /// The value, with an empty value treated as unset.
    fn get(&self, name: &str) -> Option<String>;

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or(ConfigError::Missing(name))
    }

    fn parsed_or<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    name,
                    reason: e.to_string(),
                }),
        }
    }

    /// A comma-separated list, with blanks dropped.
    fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|text| {
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub struct ProcessEnv;

impl Vars for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl Vars for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name)
            .filter(|v| !v.trim().is_empty())
            .cloned()
    }
}

impl<const N: usize> Vars for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(key, value)| *key == name && !value.trim().is_empty())
            .map(|(_, value)| (*value).to_owned())
    }
}

/// A secret value: never printed, compared in constant time.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, candidate: &[u8]) -> bool {
        crate::auth::constant_time_eq(self.0.as_bytes(), candidate)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What every function reads besides its own secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    /// `MAX_BODY_BYTES`: larger bodies are refused with 413.
    pub max_body_bytes: usize,
    /// `EVENT_TTL_DAYS`: retention of stored events; `None` keeps them forever.
    pub event_ttl_days: Option<u32>,
}

impl EdgeConfig {
    pub const DEFAULT_MAX_BODY_BYTES: usize = 1_048_576;

    pub fn from_vars(vars: &impl Vars) -> Result<Self, ConfigError> {
        let max_body_bytes = vars.parsed_or("MAX_BODY_BYTES", Self::DEFAULT_MAX_BODY_BYTES)?;
        if max_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                name: "MAX_BODY_BYTES",
                reason: "must be positive".into(),
            });
        }
        let days: u32 = vars.parsed_or("EVENT_TTL_DAYS", 0)?;
        Ok(EdgeConfig {
            max_body_bytes,
            event_ttl_days: (days > 0).then_some(days),
        })
    }
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            event_ttl_days: None,
        }
    }
}

/// `EVENTS_TABLE`, required by every Lambda function.
pub fn events_table(vars: &impl Vars) -> Result<String, ConfigError> {
    vars.required("EVENTS_TABLE")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_variables_name_themselves() {
        let vars = [("EVENTS_TABLE", "  ")];
        let err = events_table(&vars).unwrap_err();
        assert_eq!(err, ConfigError::Missing("EVENTS_TABLE"));
        assert!(err.to_string().contains("EVENTS_TABLE"));
    }

    #[test]
    fn edge_defaults_and_overrides() {
        assert_eq!(
            EdgeConfig::from_vars(&[("X", "")]).unwrap(),
            EdgeConfig::default()
        );
        let vars = [("MAX_BODY_BYTES", "2048"), ("EVENT_TTL_DAYS", "7")];
        let edge = EdgeConfig::from_vars(&vars).unwrap();
        assert_eq!(edge.max_body_bytes, 2048);
        assert_eq!(edge.event_ttl_days, Some(7));
        assert_eq!(
            EdgeConfig::from_vars(&[("EVENT_TTL_DAYS", "0")])
                .unwrap()
                .event_ttl_days,
            None
        );
    }

    #[test]
    fn invalid_numbers_fail_closed() {
        let err = EdgeConfig::from_vars(&[("MAX_BODY_BYTES", "lots")]).unwrap_err();
        assert_eq!(err.variable(), "MAX_BODY_BYTES");
        assert!(EdgeConfig::from_vars(&[("MAX_BODY_BYTES", "0")]).is_err());
        assert!(EdgeConfig::from_vars(&[("EVENT_TTL_DAYS", "-1")]).is_err());
    }

    #[test]
    fn lists_drop_blanks() {
        let vars = [("SOME_LIST", " a, ,b ,")];
        assert_eq!(vars.list("SOME_LIST"), vec!["a", "b"]);
        assert!(vars.list("OTHER").is_empty());
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert!(secret.matches(b"hunter2"));
        assert!(!secret.matches(b"hunter3"));
    }
}

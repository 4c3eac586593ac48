//! mns-endpoint: Alibaba MNS topic pushes to an HTTP endpoint, verified by RSA signature and
//! stored once per message.

pub mod body;
pub mod handler;
pub mod signature;

pub use handler::MnsHandler;

use hub_core::certs::HttpsFetcher;
use hub_core::clock::SystemClock;
use hub_core::config::{ConfigError, EdgeConfig, Vars};
use hub_core::setup::Setup;
use hub_core::store::EventWriter;

#[derive(Debug, Clone)]
pub struct MnsConfig {
    pub edge: EdgeConfig,
    /// `MNS_CERT_URL_PREFIXES`, else [`signature::DEFAULT_CERT_URL_PREFIXES`].
    pub cert_url_prefixes: Vec<String>,
    /// `MNS_MAX_AGE_SECS` (default 900; 0 disables).
    pub max_age_secs: u64,
}

impl MnsConfig {
    pub fn from_vars(vars: &impl Vars, edge: EdgeConfig) -> Result<Self, ConfigError> {
        let mut prefixes = vars.list("MNS_CERT_URL_PREFIXES");
        if prefixes.is_empty() {
            prefixes = signature::DEFAULT_CERT_URL_PREFIXES
                .iter()
                .map(|p| p.to_string())
                .collect();
        }
        for prefix in &prefixes {
            // "https://host/" at least, so that a prefix can never match another host.
            let host_ends = prefix
                .strip_prefix("https://")
                .and_then(|rest| rest.find('/'));
            if !matches!(host_ends, Some(i) if i > 0) {
                return Err(ConfigError::Invalid {
                    name: "MNS_CERT_URL_PREFIXES",
                    reason: format!("{prefix:?} must be https://<host>/…"),
                });
            }
        }
        Ok(MnsConfig {
            edge,
            cert_url_prefixes: prefixes,
            max_age_secs: vars.parsed_or("MNS_MAX_AGE_SECS", 900)?,
        })
    }
}

/// The function as Lambda and the local server run it.
pub type MnsFunction<S> = MnsHandler<S, SystemClock, HttpsFetcher>;

/// Reads the whole configuration once and builds the handler over `store`.
pub async fn build<S: EventWriter>(store: S, setup: &Setup) -> Result<MnsFunction<S>, ConfigError> {
    let config = MnsConfig::from_vars(setup, setup.edge().clone())?;
    Ok(MnsHandler::new(
        store,
        SystemClock,
        setup.certificates()?,
        config,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_default_and_must_name_a_host() {
        let config = MnsConfig::from_vars(&[("X", "")], EdgeConfig::default()).unwrap();
        assert_eq!(config.cert_url_prefixes.len(), 2);
        assert_eq!(config.max_age_secs, 900);
        let custom = MnsConfig::from_vars(
            &[("MNS_CERT_URL_PREFIXES", "https://certs.example.com/mns/")],
            EdgeConfig::default(),
        )
        .unwrap();
        assert_eq!(custom.cert_url_prefixes, ["https://certs.example.com/mns/"]);
        for bad in [
            "https://certs.example.com",
            "http://certs.example.com/",
            "https:///x/",
        ] {
            let err =
                MnsConfig::from_vars(&[("MNS_CERT_URL_PREFIXES", bad)], EdgeConfig::default())
                    .unwrap_err();
            assert_eq!(err.variable(), "MNS_CERT_URL_PREFIXES", "{bad}");
        }
    }
}
